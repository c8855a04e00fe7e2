import type { AppCredRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

/** Application credentials. Single reads (cached) stay on `IdentityRepo.appCred`. */
export class AppCredRepo {
  constructor(private readonly repo: IdentityRepo) {}

  async create(cred: AppCredRow, duplicateMessage: string): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('application_credentials').values(cred).execute(), duplicateMessage);
  }

  /** A user's credentials by name, optionally only those named `name`. */
  listOfUser(userId: string, name?: string): Promise<AppCredRow[]> {
    let sel = this.repo.db
      .selectFrom('application_credentials')
      .selectAll()
      .where('user_id', '=', userId)
      .orderBy('name');
    if (name !== undefined) sel = sel.where('name', '=', name);
    return sel.execute();
  }

  async delete(id: string): Promise<void> {
    await this.repo.write((trx) => trx.deleteFrom('application_credentials').where('id', '=', id).execute());
  }

  /** The access rules of all a user's credentials, one list. */
  async accessRulesOfUser(userId: string): Promise<unknown[]> {
    const rows = await this.repo.db
      .selectFrom('application_credentials')
      .select('access_rules')
      .where('user_id', '=', userId)
      .execute();
    return rows.flatMap((r) => JSON.parse(r.access_rules) as unknown[]);
  }
}
