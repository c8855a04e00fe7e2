import type { GroupRow, UserRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

export interface GroupFilter {
  name?: string;
  domainId?: string;
}

/** Groups and their members. Single reads stay on `IdentityRepo.group`. */
export class GroupRepo {
  constructor(private readonly repo: IdentityRepo) {}

  list(filter: GroupFilter): Promise<GroupRow[]> {
    let sel = this.repo.db.selectFrom('groups').selectAll().orderBy('name');
    if (filter.name !== undefined) sel = sel.where('name', '=', filter.name);
    if (filter.domainId !== undefined) sel = sel.where('domain_id', '=', filter.domainId);
    return sel.execute();
  }

  async create(group: GroupRow, duplicateMessage: string): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('groups').values(group).execute(), duplicateMessage);
  }

  async update(id: string, changes: Partial<Omit<GroupRow, 'id'>>, duplicateMessage: string): Promise<void> {
    await this.repo.write(
      (trx) => trx.updateTable('groups').set(changes).where('id', '=', id).execute(),
      duplicateMessage,
    );
  }

  /** Deletes a group with its role assignments and memberships. */
  async delete(id: string): Promise<void> {
    await this.repo.write(async (trx) => {
      await trx.deleteFrom('assignments').where('actor_id', '=', id).execute();
      await trx.deleteFrom('group_members').where('group_id', '=', id).execute();
      await trx.deleteFrom('groups').where('id', '=', id).execute();
    });
  }

  async memberIds(groupId: string): Promise<string[]> {
    const rows = await this.repo.db
      .selectFrom('group_members')
      .select('user_id')
      .where('group_id', '=', groupId)
      .execute();
    return rows.map((r) => r.user_id);
  }

  /** The members of a group, by name. */
  members(groupId: string): Promise<UserRow[]> {
    return this.repo.db
      .selectFrom('users')
      .innerJoin('group_members', 'group_members.user_id', 'users.id')
      .selectAll('users')
      .where('group_members.group_id', '=', groupId)
      .orderBy('users.name')
      .execute();
  }

  async hasMember(groupId: string, userId: string): Promise<boolean> {
    const row = await this.repo.db
      .selectFrom('group_members')
      .select('user_id')
      .where('group_id', '=', groupId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return !!row;
  }

  async addMember(groupId: string, userId: string): Promise<void> {
    await this.repo.write((trx) =>
      trx.insertInto('group_members').values({ group_id: groupId, user_id: userId }).execute(),
    );
  }

  /** False when the user was not a member. */
  async removeMember(groupId: string, userId: string): Promise<boolean> {
    const res = await this.repo.write((trx) =>
      trx.deleteFrom('group_members').where('group_id', '=', groupId).where('user_id', '=', userId).executeTakeFirst(),
    );
    return Number(res.numDeletedRows) > 0;
  }
}
