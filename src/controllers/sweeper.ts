import { interruptedCreates, orphanedPorts, releaseOrphanedPort, rollBackCreate } from '../compute/interrupted.js';
import type { ContainerNetworking } from '../compute/networking.js';
import type { ContainerRepo } from '../compute/repo.js';
import type { Controller, ReconcileContext, ReconcileResult } from './controller.js';

export const SWEEPER_KIND = 'krater.sweeper';
/** A singleton, as the garbage collector: one fixed object id, so one replica at a time sweeps. */
export const SWEEPER_ID = 'interrupted';
export interface SweeperDeps {
  repo: ContainerRepo;
  /** Absent when Krater runs without networking (then there are no ports to give back). */
  networking?: ContainerNetworking;
  intervalMs: number;
  /** How old a half-made create or an orphaned port must be before it is swept. */
  graceMs: number;
  now?: () => number;
}

/**
 * Rolls back what a crash in the middle of a create left (see src/compute/interrupted.ts): containers in Creating
 * with no agent task go to Error with their ports released and their action finished; Zun's ports whose container
 * row was never written are deleted. Runs at every start and then every `intervalMs`.
 */
export function sweeper(deps: SweeperDeps): Controller {
  const now = deps.now ?? Date.now;
  return {
    kind: SWEEPER_KIND,
    async reconcile(_id: string, ctx: ReconcileContext): Promise<ReconcileResult> {
      const cutoff = new Date(now() - deps.graceMs);
      let failed = 0;
      for (const c of await interruptedCreates(deps.repo.db, cutoff)) {
        if (ctx.signal.aborted) return { requeueAfterMs: 0 };
        try {
          if (await rollBackCreate(deps.repo, deps.networking, c))
            ctx.log.warn({ uuid: c.uuid, host: c.host }, 'rolled back a create that was interrupted (now Error)');
        } catch (err) {
          failed++;
          ctx.log.warn({ uuid: c.uuid, err: (err as Error).message }, 'could not roll back an interrupted create');
        }
      }
      const networking = deps.networking;
      if (networking)
        for (const port of await orphanedPorts(deps.repo.db, cutoff)) {
          if (ctx.signal.aborted) return { requeueAfterMs: 0 };
          try {
            await releaseOrphanedPort(networking, port);
            ctx.log.warn({ port: port.id, device: port.device_id }, 'released a port whose container was never made');
          } catch (err) {
            failed++;
            ctx.log.warn({ port: port.id, err: (err as Error).message }, 'could not release an orphaned port');
          }
        }
      if (failed) throw new Error(`${failed} leftovers of interrupted creates could not be swept yet`);
      return { requeueAfterMs: deps.intervalMs };
    },
  };
}
