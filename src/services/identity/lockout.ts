import type { Kysely } from 'kysely';
import { unauthorized } from '../../core/http/errors.js';
import type { Database, UserRow } from '../../core/store/schema.js';

export interface LockoutPolicy {
  /** Failed checks in a row that lock a user; 0 turns lockout off (Keystone's default). */
  failureAttempts: number;
  /** How long a lock lasts; 0: until an admin enables the user again or sets a new password. */
  durationMs: number;
}

/** Keystone's `AccountLocked` (401), without the user id Keystone puts in it: the caller is not authenticated. */
export const ACCOUNT_LOCKED_MESSAGE =
  'The account is locked: too many failed authentication attempts. Try again later or ask an administrator.';

/** Keystone's per-user option that exempts a user (typically a service account) from lockout. */
const IGNORE_OPTION = 'ignore_lockout_failure_attempts';

/**
 * Keystone's `[security_compliance]` lockout: consecutive failed password checks are counted per user in the store
 * (so every API replica sees the same count); once they reach `failureAttempts` the user is refused — the right
 * password included — until `durationMs` after the last failure, then the count starts over. A success resets it.
 * Nothing is read or written while lockout is off.
 */
export class Lockout {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly policy: LockoutPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.policy.failureAttempts > 0;
  }

  private exempt(user: Pick<UserRow, 'options'>): boolean {
    try {
      return (JSON.parse(user.options) as Record<string, unknown>)[IGNORE_OPTION] === true;
    } catch {
      return false;
    }
  }

  /** Throws 401 when `user` is locked; true when failures are on record (a success must then clear them). */
  async check(user: Pick<UserRow, 'id' | 'options'>): Promise<boolean> {
    if (!this.enabled || this.exempt(user)) return false;
    const row = await this.db
      .selectFrom('auth_failures')
      .select(['count', 'last_failed_at'])
      .where('user_id', '=', user.id)
      .executeTakeFirst();
    if (!row) return false;
    if (Number(row.count) < this.policy.failureAttempts) return true;
    const expired = this.policy.durationMs > 0 && Number(row.last_failed_at) + this.policy.durationMs <= this.now();
    if (!expired) throw unauthorized(ACCOUNT_LOCKED_MESSAGE);
    await this.reset(user.id);
    return false;
  }

  /** Counts one failed check (one statement: concurrent failures on several replicas all count). */
  async failed(user: Pick<UserRow, 'id' | 'options'>): Promise<void> {
    if (!this.enabled || this.exempt(user)) return;
    const at = String(this.now());
    await this.db
      .insertInto('auth_failures')
      .values({ user_id: user.id, count: 1, last_failed_at: at })
      .onConflict((oc) =>
        oc.column('user_id').doUpdateSet((eb) => ({ count: eb('auth_failures.count', '+', 1), last_failed_at: at })),
      )
      .execute();
  }

  /** Clears the count: a successful check, or an administrator enabling the user or setting its password. */
  async reset(userId: string): Promise<void> {
    await this.db.deleteFrom('auth_failures').where('user_id', '=', userId).execute();
  }
}
