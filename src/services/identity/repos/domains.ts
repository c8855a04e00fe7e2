import type { DomainRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

export interface DomainFilter {
  name?: string;
  enabled?: boolean;
}

/** Domains: lists, writes and the cascade of a delete. Single reads stay on `IdentityRepo.domain`. */
export class DomainRepo {
  constructor(private readonly repo: IdentityRepo) {}

  list(filter: DomainFilter): Promise<DomainRow[]> {
    let sel = this.repo.db.selectFrom('domains').selectAll().orderBy('name');
    if (filter.name !== undefined) sel = sel.where('name', '=', filter.name);
    if (filter.enabled !== undefined) sel = sel.where('enabled', '=', filter.enabled ? 1 : 0);
    return sel.execute();
  }

  async create(domain: DomainRow, duplicateMessage: string): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('domains').values(domain).execute(), duplicateMessage);
  }

  async update(id: string, changes: Partial<Omit<DomainRow, 'id'>>, duplicateMessage: string): Promise<void> {
    await this.repo.write(
      (trx) => trx.updateTable('domains').set(changes).where('id', '=', id).execute(),
      duplicateMessage,
    );
  }

  /**
   * Deletes a domain with everything in it: its projects, users, groups and domain-specific roles, and every role
   * assignment on it, on its projects or held by its users and groups.
   */
  async deleteWithContents(id: string): Promise<void> {
    await this.repo.write(async (trx) => {
      const idsIn = async (table: 'projects' | 'users' | 'groups') =>
        (await trx.selectFrom(table).select('id').where('domain_id', '=', id).execute()).map((r) => r.id);
      const projects = await idsIn('projects');
      const users = await idsIn('users');
      const groups = await idsIn('groups');
      const targets = [id, ...projects];
      const actors = [...users, ...groups];
      await trx.deleteFrom('assignments').where('target_id', 'in', targets).execute();
      if (actors.length) await trx.deleteFrom('assignments').where('actor_id', 'in', actors).execute();
      await trx.deleteFrom('roles').where('domain_key', '=', id).execute();
      await trx.deleteFrom('projects').where('domain_id', '=', id).execute();
      await trx.deleteFrom('groups').where('domain_id', '=', id).execute();
      await trx.deleteFrom('users').where('domain_id', '=', id).execute();
      await trx.deleteFrom('domains').where('id', '=', id).execute();
    });
  }
}
