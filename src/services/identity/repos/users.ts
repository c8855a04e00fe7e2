import type { GroupRow, UserRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

export interface UserFilter {
  name?: string;
  domainId?: string;
  enabled?: boolean;
}

/** Users: lists, writes and the cascade of a delete. Cached single reads stay on `IdentityRepo.user`. */
export class UserRepo {
  constructor(private readonly repo: IdentityRepo) {}

  /** By name; `enabled` compares the stored flag. */
  list(filter: UserFilter): Promise<UserRow[]> {
    let sel = this.repo.db.selectFrom('users').selectAll().orderBy('name');
    if (filter.name !== undefined) sel = sel.where('name', '=', filter.name);
    if (filter.domainId !== undefined) sel = sel.where('domain_id', '=', filter.domainId);
    if (filter.enabled !== undefined) sel = sel.where('enabled', '=', filter.enabled ? 1 : 0);
    return sel.execute();
  }

  async create(user: UserRow, duplicateMessage: string): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('users').values(user).execute(), duplicateMessage);
  }

  async update(id: string, changes: Partial<Omit<UserRow, 'id'>>, duplicateMessage?: string): Promise<void> {
    await this.repo.write(
      (trx) => trx.updateTable('users').set(changes).where('id', '=', id).execute(),
      duplicateMessage,
    );
  }

  /** Deletes a user with its role assignments, group memberships and application credentials. */
  async delete(id: string): Promise<void> {
    await this.repo.write(async (trx) => {
      await trx.deleteFrom('assignments').where('actor_id', '=', id).execute();
      await trx.deleteFrom('group_members').where('user_id', '=', id).execute();
      await trx.deleteFrom('application_credentials').where('user_id', '=', id).execute();
      await trx.deleteFrom('users').where('id', '=', id).execute();
    });
  }

  /** The groups a user belongs to, by name. */
  async groups(userId: string): Promise<GroupRow[]> {
    const ids = await this.repo.groupIdsOfUser(userId);
    if (!ids.length) return [];
    return this.repo.db.selectFrom('groups').selectAll().where('id', 'in', ids).orderBy('name').execute();
  }
}
