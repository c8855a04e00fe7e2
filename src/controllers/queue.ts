import { type Db, sql } from '../core/store/db.js';

/** A queue entry this replica holds the lease on. */
export interface Claim {
  kind: string;
  id: string;
  /** The row's generation when claimed: an enqueue during the reconcile makes the row's newer. */
  generation: number;
  /** Failed attempts before this one. */
  attempts: number;
}

export interface QueueOptions {
  /** This replica's lease owner id (unique per process). */
  owner: string;
  leaseMs: number;
  backoffMs: number;
  backoffMaxMs: number;
  /** Milliseconds since the epoch; injectable so tests can move time. */
  now?: () => number;
}

const MAX_ERROR = 2000;

/**
 * The controllers' work queue in the store, keyed by (kind, object id), with a lease per object.
 *
 * Every step is one conditional statement on one row, so it is atomic in both engines (SQLite serialises writers;
 * PostgreSQL re-checks the WHERE clause on the row it locked): a claim succeeds only if the row is due and unleased
 * or its lease has expired; renewals and releases only if this replica still holds it. Lease times come from each
 * replica's clock, so replicas' clocks must agree to well within a lease (as with Kubernetes leases).
 */
export class WorkQueue {
  readonly owner: string;
  private readonly now: () => number;

  constructor(
    private readonly db: Db,
    private readonly opts: QueueOptions,
  ) {
    this.owner = opts.owner;
    this.now = opts.now ?? Date.now;
  }

  private at(offsetMs = 0): string {
    return new Date(this.now() + offsetMs).toISOString();
  }

  /**
   * Asks for a reconcile of (kind, id) after `delayMs` (default now). Idempotent: an existing entry keeps the earlier
   * of its due time and the new one, and its generation is bumped so that a reconcile running now is followed by
   * another.
   */
  async enqueue(kind: string, id: string, delayMs = 0): Promise<void> {
    const now = this.at();
    const due = this.at(Math.max(0, delayMs));
    await this.db
      .insertInto('controller_queue')
      .values({
        kind,
        object_id: id,
        generation: 1,
        not_before: due,
        attempts: 0,
        last_error: null,
        lease_owner: null,
        lease_expires_at: null,
        created_at: now,
        updated_at: now,
      })
      .onConflict((oc) =>
        oc.columns(['kind', 'object_id']).doUpdateSet({
          generation: sql`controller_queue.generation + 1`,
          not_before: sql`case when controller_queue.not_before < excluded.not_before then controller_queue.not_before else excluded.not_before end`,
          updated_at: now,
        }),
      )
      .execute();
  }

  /**
   * Claims up to `limit` due entries of `kinds`, skipping `skip` (keys `kind\0id` this process is already working
   * on). Two replicas may look at the same candidates; the compare-and-set decides, and the loser moves on.
   */
  async claim(kinds: string[], limit: number, skip: ReadonlySet<string> = new Set()): Promise<Claim[]> {
    if (kinds.length === 0 || limit <= 0) return [];
    const now = this.at();
    const candidates = await this.db
      .selectFrom('controller_queue')
      .select(['kind', 'object_id'])
      .where('kind', 'in', kinds)
      .where('not_before', '<=', now)
      .where((eb) => eb.or([eb('lease_owner', 'is', null), eb('lease_expires_at', '<', now)]))
      .orderBy('not_before')
      // More than we want: a replica racing us for the first few must not leave us idle.
      .limit(limit * 4 + skip.size)
      .execute();
    const claims: Claim[] = [];
    for (const c of candidates) {
      if (claims.length >= limit) break;
      if (skip.has(queueKey(c.kind, c.object_id))) continue;
      const row = await this.db
        .updateTable('controller_queue')
        .set({ lease_owner: this.owner, lease_expires_at: this.at(this.opts.leaseMs), updated_at: now })
        .where('kind', '=', c.kind)
        .where('object_id', '=', c.object_id)
        .where('not_before', '<=', now)
        .where((eb) => eb.or([eb('lease_owner', 'is', null), eb('lease_expires_at', '<', now)]))
        .returning(['generation', 'attempts'])
        .executeTakeFirst();
      if (row) claims.push({ kind: c.kind, id: c.object_id, generation: row.generation, attempts: row.attempts });
    }
    return claims;
  }

  /** Extends the lease; false when this replica no longer holds it (expired and taken, or the row is gone). */
  async renew(c: Claim): Promise<boolean> {
    const r = await this.db
      .updateTable('controller_queue')
      .set({ lease_expires_at: this.at(this.opts.leaseMs) })
      .where('kind', '=', c.kind)
      .where('object_id', '=', c.id)
      .where('lease_owner', '=', this.owner)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** The reconcile succeeded: the entry goes, unless it was enqueued again meanwhile (then it stays due). */
  async done(c: Claim): Promise<void> {
    const r = await this.db
      .deleteFrom('controller_queue')
      .where('kind', '=', c.kind)
      .where('object_id', '=', c.id)
      .where('lease_owner', '=', this.owner)
      .where('generation', '=', c.generation)
      .executeTakeFirst();
    if (Number(r.numDeletedRows) > 0) return;
    await this.held(c)
      .set({ lease_owner: null, lease_expires_at: null, attempts: 0, last_error: null, updated_at: this.at() })
      .execute();
  }

  /** Look again after `ms` (or sooner if it was enqueued meanwhile). */
  async requeue(c: Claim, ms: number): Promise<void> {
    const due = this.at(Math.max(0, ms));
    await this.held(c)
      .set({
        lease_owner: null,
        lease_expires_at: null,
        attempts: 0,
        last_error: null,
        not_before: sql`case when generation = ${c.generation} then ${due} when not_before < ${due} then not_before else ${due} end`,
        updated_at: this.at(),
      })
      .execute();
  }

  /** The reconcile failed: retry after the back-off for one more failed attempt. Returns that delay. */
  async fail(c: Claim, error: string): Promise<number> {
    const attempts = c.attempts + 1;
    const delay = this.backoff(attempts);
    await this.held(c)
      .set({
        lease_owner: null,
        lease_expires_at: null,
        attempts,
        last_error: error.slice(0, MAX_ERROR),
        not_before: this.at(delay),
        updated_at: this.at(),
      })
      .execute();
    return delay;
  }

  /** Gives the lease back without judging the attempt (shutdown): another replica may claim it at once. */
  async release(c: Claim): Promise<void> {
    await this.held(c).set({ lease_owner: null, lease_expires_at: null, updated_at: this.at() }).execute();
  }

  /** base · 2^(attempts − 1), capped. */
  backoff(attempts: number): number {
    const exp = Math.min(Math.max(attempts - 1, 0), 40);
    return Math.min(this.opts.backoffMs * 2 ** exp, this.opts.backoffMaxMs);
  }

  private held(c: Claim) {
    return this.db
      .updateTable('controller_queue')
      .where('kind', '=', c.kind)
      .where('object_id', '=', c.id)
      .where('lease_owner', '=', this.owner);
  }
}

export const queueKey = (kind: string, id: string) => `${kind}\0${id}`;
