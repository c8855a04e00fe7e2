import type { ProjectRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

export interface ProjectFilter {
  name?: string;
  domainId?: string;
  enabled?: boolean;
  /** A project's children, or the top-level projects of a domain (Keystone treats the domain as their parent). */
  parentId?: string;
  /** Projects carrying every one of these tags. */
  tags?: string[];
  /** Only these projects. */
  ids?: string[];
}

/** Projects: lists, writes and the cascade of a delete. Single reads stay on `IdentityRepo.project`. */
export class ProjectRepo {
  constructor(private readonly repo: IdentityRepo) {}

  /** By name. */
  async list(filter: ProjectFilter): Promise<ProjectRow[]> {
    let sel = this.repo.db.selectFrom('projects').selectAll().orderBy('name');
    if (filter.name !== undefined) sel = sel.where('name', '=', filter.name);
    if (filter.domainId !== undefined) sel = sel.where('domain_id', '=', filter.domainId);
    if (filter.enabled !== undefined) sel = sel.where('enabled', '=', filter.enabled ? 1 : 0);
    const parentId = filter.parentId;
    if (parentId !== undefined)
      sel = sel.where((eb) =>
        eb.or([eb('parent_id', '=', parentId), eb.and([eb('parent_id', 'is', null), eb('domain_id', '=', parentId)])]),
      );
    if (filter.ids) {
      if (filter.ids.length === 0) return [];
      sel = sel.where('id', 'in', filter.ids);
    }
    const rows = await sel.execute();
    const wanted = filter.tags;
    if (!wanted) return rows;
    return rows.filter((p) => wanted.every((t) => (JSON.parse(p.tags) as string[]).includes(t)));
  }

  async create(project: ProjectRow, duplicateMessage: string): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('projects').values(project).execute(), duplicateMessage);
  }

  async update(id: string, changes: Partial<Omit<ProjectRow, 'id'>>, duplicateMessage: string): Promise<void> {
    await this.repo.write(
      (trx) => trx.updateTable('projects').set(changes).where('id', '=', id).execute(),
      duplicateMessage,
    );
  }

  async hasChildren(id: string): Promise<boolean> {
    return !!(await this.repo.db.selectFrom('projects').select('id').where('parent_id', '=', id).executeTakeFirst());
  }

  /** Deletes a project with its role assignments and application credentials; users keep no default on it. */
  async delete(id: string): Promise<void> {
    await this.repo.write(async (trx) => {
      await trx.deleteFrom('assignments').where('target_id', '=', id).execute();
      await trx.deleteFrom('application_credentials').where('project_id', '=', id).execute();
      await trx.updateTable('users').set({ default_project_id: null }).where('default_project_id', '=', id).execute();
      await trx.deleteFrom('projects').where('id', '=', id).execute();
    });
  }
}
