import type { AssignmentRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

/** One grant: who (`actor_id`) holds a role on what (`target_id`), `type` naming both kinds (`UserProject`, …). */
export interface Grant {
  type: string;
  actor_id: string;
  target_id: string;
}

/** Role assignment writes and the reads behind the assignment and project lists. Filtered reads: `IdentityRepo.assignments`. */
export class AssignmentRepo {
  constructor(private readonly repo: IdentityRepo) {}

  async grant(grant: Grant, roleId: string): Promise<void> {
    await this.repo.write((trx) =>
      trx
        .insertInto('assignments')
        .values({ ...grant, role_id: roleId, inherited: 0 })
        .execute(),
    );
  }

  async revoke(grant: Grant, roleId: string): Promise<void> {
    await this.repo.write((trx) =>
      trx
        .deleteFrom('assignments')
        .where('type', '=', grant.type)
        .where('actor_id', '=', grant.actor_id)
        .where('target_id', '=', grant.target_id)
        .where('role_id', '=', roleId)
        .execute(),
    );
  }

  /** Every assignment that is not inherited (Krater makes no inherited ones). */
  direct(): Promise<AssignmentRow[]> {
    return this.repo.db.selectFrom('assignments').selectAll().where('inherited', '=', 0).execute();
  }

  /** The targets of assignments of one type held by any of `actorIds`, one entry per assignment. */
  async targetIds(type: string, actorIds: string[]): Promise<string[]> {
    if (!actorIds.length) return [];
    const rows = await this.repo.db
      .selectFrom('assignments')
      .select('target_id')
      .where('type', '=', type)
      .where('actor_id', 'in', actorIds)
      .execute();
    return rows.map((r) => r.target_id);
  }
}
