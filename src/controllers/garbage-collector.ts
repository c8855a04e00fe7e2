import type { Kysely } from 'kysely';
import { type OwnerKinds, ownedContainers } from '../compute/ownership.js';
import type { Database } from '../core/store/schema.js';
import type { Controller, ReconcileContext, ReconcileResult } from './controller.js';

export const GC_KIND = 'krater.gc';
/** The collector is a singleton: one fixed object id, so one replica at a time sweeps. */
export const GC_ID = 'owned';

export interface GarbageCollectorDeps {
  db: Kysely<Database>;
  owners: OwnerKinds;
  /** Deletes an orphaned container as an admin's forced delete would (stops it if running); idempotent. */
  deleteContainer(uuid: string): Promise<void>;
  /** How often to sweep when nobody wakes the collector (an owner deleted by another replica, a crash). */
  intervalMs: number;
}

/**
 * Deletes objects whose owner is gone. Owners' delete paths enqueue (GC_KIND, GC_ID) to have it run at once; the
 * periodic requeue catches what a crash or another process left behind.
 */
export function garbageCollector(deps: GarbageCollectorDeps): Controller {
  return {
    kind: GC_KIND,
    async reconcile(_id: string, ctx: ReconcileContext): Promise<ReconcileResult> {
      const owned = await ownedContainers(deps.db);
      let failed = 0;
      for (const [kind, owners] of owned) {
        const k = deps.owners.get(kind);
        if (!k) {
          ctx.log.warn({ kind, owners: owners.size }, 'owned containers of an unknown owner kind are kept');
          continue;
        }
        const alive = await k.existing([...owners.keys()]);
        for (const [owner, uuids] of owners) {
          if (alive.has(owner)) continue;
          for (const uuid of uuids) {
            if (ctx.signal.aborted) return { requeueAfterMs: 0 };
            try {
              await deps.deleteContainer(uuid);
              ctx.log.info({ uuid, owner: `${kind}/${owner}` }, 'deleted a container whose owner is gone');
            } catch (err) {
              failed++;
              ctx.log.warn({ uuid, err: (err as Error).message }, 'could not delete an orphaned container');
            }
          }
        }
      }
      if (failed) throw new Error(`${failed} orphaned containers could not be deleted yet`);
      return { requeueAfterMs: deps.intervalMs };
    },
  };
}
