import type { RoleRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

/** Role writes and implied-role rules. Reads (cached) stay on `IdentityRepo.roles`/`role`/`impliedMap`. */
export class RoleRepo {
  constructor(private readonly repo: IdentityRepo) {}

  async create(role: RoleRow, duplicateMessage: string): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('roles').values(role).execute(), duplicateMessage);
  }

  async update(id: string, changes: Partial<Omit<RoleRow, 'id'>>, duplicateMessage: string): Promise<void> {
    await this.repo.write(
      (trx) => trx.updateTable('roles').set(changes).where('id', '=', id).execute(),
      duplicateMessage,
    );
  }

  /** Deletes a role with its assignments and every implication rule it takes part in. */
  async delete(id: string): Promise<void> {
    await this.repo.write(async (trx) => {
      await trx.deleteFrom('assignments').where('role_id', '=', id).execute();
      await trx
        .deleteFrom('implied_roles')
        .where((eb) => eb.or([eb('prior_role_id', '=', id), eb('implied_role_id', '=', id)]))
        .execute();
      await trx.deleteFrom('roles').where('id', '=', id).execute();
    });
  }

  async addImplication(priorId: string, impliedId: string): Promise<void> {
    await this.repo.write((trx) =>
      trx.insertInto('implied_roles').values({ prior_role_id: priorId, implied_role_id: impliedId }).execute(),
    );
  }

  async removeImplication(priorId: string, impliedId: string): Promise<void> {
    await this.repo.write((trx) =>
      trx
        .deleteFrom('implied_roles')
        .where('prior_role_id', '=', priorId)
        .where('implied_role_id', '=', impliedId)
        .execute(),
    );
  }
}
