/**
 * Atomic placement (issue 12, item 2), as OpenStack Placement claims: the choice of a host and the container's row
 * commit in one transaction that also bumps the host's resource-provider generation compare-and-swap. Two creates
 * that weighed the same view of a host cannot both commit there: the second's `UPDATE … WHERE generation = ?`
 * matches no row (PostgreSQL re-checks it after the first commits), its transaction rolls back and it weighs again
 * on fresh usage. This holds across API replicas on PostgreSQL; on SQLite one process's transactions run one at a
 * time on its single connection, and another process's interleaving write surfaces as SQLITE_BUSY, retried too.
 *
 * The generations are read before the usage, in their own statement: anything that committed after that read
 * bumped a generation and fails the swap; anything before it is in the usage read. After a few conflicts the
 * claim on PostgreSQL locks the candidate providers (`FOR UPDATE`, in host order, so lockers cannot deadlock), which
 * cannot conflict: a burst on one popular host still ends, each create in a bounded number of transactions.
 */
import type { Kysely } from 'kysely';
import { isPostgres } from '../core/store/migrations/util.js';
import type { ContainerRow, Database } from '../core/store/schema.js';
import { computeError } from './errors.js';
import { loadCandidates, type Request, rankHosts, type WeigherName } from './scheduler.js';

/** Optimistic attempts before PostgreSQL takes row locks; SQLite keeps retrying up to MAX_ATTEMPTS. */
const OPTIMISTIC_ATTEMPTS = 4;
const MAX_ATTEMPTS = 12;

class GenerationConflict extends Error {}

/** SQLite refusing a write because another connection wrote since this transaction's read began. */
const sqliteBusy = (err: unknown) => /^SQLITE_BUSY/.test(String((err as { code?: string })?.code ?? ''));

/** Makes sure every host has its provider row (one insert for the missing ones; a racing insert is a no-op). */
async function ensureProviders(db: Kysely<Database>, hosts: string[]): Promise<void> {
  const have = new Set(
    (await db.selectFrom('resource_providers').select('host').where('host', 'in', hosts).execute()).map((r) => r.host),
  );
  const missing = hosts.filter((h) => !have.has(h));
  if (missing.length)
    await db
      .insertInto('resource_providers')
      .values(missing.map((host) => ({ host, generation: 0 })))
      .onConflict((oc) => oc.column('host').doNothing())
      .execute();
}

/**
 * Places `row` on the best of `hosts` that fits `req` and inserts it there (its `host` set), atomically with the
 * claim; the host, or undefined when none fits (nothing inserted).
 */
export async function placeContainer(
  db: Kysely<Database>,
  hosts: string[],
  req: Request,
  weigher: WeigherName,
  row: ContainerRow,
): Promise<string | undefined> {
  if (!hosts.length) return undefined;
  await ensureProviders(db, hosts);
  const postgres = isPostgres(db as Kysely<any>);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const lock = postgres && attempt >= OPTIMISTIC_ATTEMPTS;
    try {
      return await db.transaction().execute(async (trx) => {
        let gq = trx.selectFrom('resource_providers').select(['host', 'generation']).where('host', 'in', hosts);
        if (lock) gq = gq.orderBy('host').forUpdate();
        const generations = new Map((await gq.execute()).map((r) => [r.host, Number(r.generation)]));
        const best = rankHosts(await loadCandidates(trx, hosts), req, weigher)[0];
        if (!best) return undefined;
        const generation = generations.get(best.host);
        if (generation === undefined) throw new GenerationConflict(); // a provider row deleted meanwhile
        const swapped = await trx
          .updateTable('resource_providers')
          .set({ generation: generation + 1 })
          .where('host', '=', best.host)
          .where('generation', '=', generation)
          .executeTakeFirst();
        if (Number(swapped.numUpdatedRows) !== 1) throw new GenerationConflict();
        await trx
          .insertInto('containers')
          .values({ ...row, host: best.host })
          .execute();
        row.host = best.host;
        return best.host;
      });
    } catch (err) {
      if (!(err instanceof GenerationConflict) && !sqliteBusy(err)) throw err;
      // Jitter, so the losers of one round do not collide again in lock-step.
      await new Promise((r) => setTimeout(r, Math.random() * 2 ** Math.min(attempt, 5)));
    }
  }
  throw computeError(409, 'Conflict', 'Too many concurrent placements on the same hosts; try again.');
}
