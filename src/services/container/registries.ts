/**
 * Zun's registries (`/v1/registries`): per-project credentials for private registries, named by containers at
 * create time (`registry`, ≥1.31). Passwords are encrypted at rest (src/images/credentials.ts) and never rendered;
 * their records are `RegistryRepo` (src/compute/image-records.ts).
 */
import type { RegistryRow } from '../../core/store/schema.js';

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
