/**
 * Zun's own image records (`/v1/images`: pulls onto a host) and registries (per-project registry credentials,
 * `/v1/registries`): their data access.
 */
import type { Kysely } from 'kysely';
import type { ContainerRow, Database, RegistryRow, ZunImageRow } from '../core/store/schema.js';
import { computeError } from './errors.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Sort column then uuid (the facade's paging). */
export type Order = { column: string; sortDir: 'asc' | 'desc' };

export class ZunImageRepo {
  constructor(readonly db: Kysely<Database>) {}

  list(order: Order): Promise<ZunImageRow[]> {
    return this.db
      .selectFrom('zun_images')
      .selectAll()
      .orderBy(order.column as 'created_at', order.sortDir)
      .orderBy('uuid', order.sortDir)
      .execute();
  }

  get(uuid: string): Promise<ZunImageRow | undefined> {
    return this.db.selectFrom('zun_images').selectAll().where('uuid', '=', uuid).executeTakeFirst();
  }

  /** 409 ImageAlreadyExists when the host already has a record of that repo and tag. */
  async insert(row: ZunImageRow): Promise<void> {
    const exists = () =>
      computeError(409, 'ImageAlreadyExists', `An image with tag ${row.tag} and repo ${row.repo} already exists.`);
    const dup = await this.db
      .selectFrom('zun_images')
      .select('uuid')
      .where('repo', '=', row.repo)
      .where('tag', '=', row.tag)
      .where('host', '=', row.host)
      .executeTakeFirst();
    if (dup) throw exists();
    try {
      await this.db.insertInto('zun_images').values(row).execute();
    } catch {
      throw exists();
    }
  }

  async setStatus(uuid: string, status: string): Promise<void> {
    await this.db
      .updateTable('zun_images')
      .set({ status, updated_at: new Date().toISOString() })
      .where('uuid', '=', uuid)
      .execute();
  }

  /** Containers on `host` whose image the docker driver pulls, with the domain of their registry (if any). */
  async dockerContainersOn(host: string): Promise<Array<{ container: ContainerRow; registryDomain?: string }>> {
    const rows = await this.db
      .selectFrom('containers')
      .selectAll()
      .where('host', '=', host)
      .where('image_driver', '=', 'docker')
      .execute();
    const regIds = [...new Set(rows.map((r) => r.registry_id).filter((x): x is string => !!x))];
    const domains = new Map(
      (regIds.length
        ? await this.db.selectFrom('registries').select(['uuid', 'domain']).where('uuid', 'in', regIds).execute()
        : []
      ).map((r) => [r.uuid, r.domain]),
    );
    return rows.map((container) => ({
      container,
      registryDomain: container.registry_id ? domains.get(container.registry_id) : undefined,
    }));
  }
}

export class RegistryRepo {
  constructor(readonly db: Kysely<Database>) {}

  /** `ident` is a uuid or a name; project-scoped unless `allProjects` (Zun's `get_registry`). */
  async find(ident: string, projectId: string | undefined, allProjects: boolean): Promise<RegistryRow> {
    let q = this.db.selectFrom('registries').selectAll();
    if (!allProjects) q = q.where('project_id', '=', projectId ?? '');
    if (UUID.test(ident)) {
      const row = await q.where('uuid', '=', ident.toLowerCase()).executeTakeFirst();
      if (row) return row;
    }
    const rows = await q.where('name', '=', ident).limit(2).execute();
    if (rows.length === 0) throw computeError(404, 'RegistryNotFound', `Registry ${ident} could not be found.`);
    if (rows.length > 1)
      throw computeError(
        409,
        'Conflict',
        'Multiple registries exist with same name. Please use the registry uuid instead.',
      );
    return rows[0]!;
  }

  /** A project's registries (undefined project: none), or, with `filters`, those matching every given field. */
  list(opts: {
    projectId?: string;
    allProjects?: boolean;
    filters?: Record<string, string>;
    order?: Order;
  }): Promise<RegistryRow[]> {
    let sel = this.db.selectFrom('registries').selectAll();
    if (!opts.allProjects) sel = sel.where('project_id', '=', opts.projectId ?? '');
    for (const [f, v] of Object.entries(opts.filters ?? {})) sel = sel.where(f as 'name', '=', v);
    if (opts.order)
      sel = sel.orderBy(opts.order.column as 'created_at', opts.order.sortDir).orderBy('uuid', opts.order.sortDir);
    return sel.execute();
  }

  async insert(row: RegistryRow): Promise<void> {
    await this.db.insertInto('registries').values(row).execute();
  }

  async update(uuid: string, values: Partial<RegistryRow>): Promise<RegistryRow> {
    await this.db.updateTable('registries').set(values).where('uuid', '=', uuid).execute();
    return this.db.selectFrom('registries').selectAll().where('uuid', '=', uuid).executeTakeFirstOrThrow();
  }

  async remove(uuid: string): Promise<void> {
    await this.db.deleteFrom('registries').where('uuid', '=', uuid).execute();
  }
}
