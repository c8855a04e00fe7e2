/**
 * Zun's registries (`/v1/registries`): per-project credentials for private registries, named by containers at
 * create time (`registry`, ≥1.31). Passwords are encrypted at rest (src/images/credentials.ts) and never rendered.
 */
import type { Kysely } from 'kysely';
import type { Database, RegistryRow } from '../../core/store/schema.js';
import { zunError } from './params.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `ident` is a uuid or a name; project-scoped unless `allProjects` (Zun's `get_registry`). */
export async function findRegistry(
  db: Kysely<Database>,
  ident: string,
  projectId: string | undefined,
  allProjects: boolean,
): Promise<RegistryRow> {
  let q = db.selectFrom('registries').selectAll();
  if (!allProjects) q = q.where('project_id', '=', projectId ?? '');
  if (UUID.test(ident)) {
    const row = await q.where('uuid', '=', ident.toLowerCase()).executeTakeFirst();
    if (row) return row;
  }
  const rows = await q.where('name', '=', ident).limit(2).execute();
  if (rows.length === 0) throw zunError(404, 'RegistryNotFound', `Registry ${ident} could not be found.`);
  if (rows.length > 1)
    throw zunError(409, 'Conflict', 'Multiple registries exist with same name. Please use the registry uuid instead.');
  return rows[0]!;
}

/** `views/registries_view.py`: the password is always `***`. */
export function renderRegistry(
  r: RegistryRow,
  base: string,
  canSee: (field: string) => boolean = () => true,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields: [string, unknown][] = [
    ['uuid', r.uuid],
    [
      'links',
      [
        { href: `${base}/v1/registries/${r.uuid}`, rel: 'self' },
        { href: `${base}/registries/${r.uuid}`, rel: 'bookmark' },
      ],
    ],
    ['user_id', r.user_id],
    ['project_id', r.project_id],
    ['name', r.name],
    ['domain', r.domain],
    ['username', r.username],
    ['password', '***'],
  ];
  for (const [k, v] of fields) if (k === 'links' || canSee(k)) out[k] = v;
  return out;
}
