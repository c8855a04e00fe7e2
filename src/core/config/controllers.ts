/**
 * The controller manager's knobs:
 *
 * - KRATER_CONTROLLER_CONCURRENCY (4): reconciles running at once in one process;
 * - KRATER_CONTROLLER_LEASE_MS (15000): how long a claim lasts without renewal; the holder renews every third of
 *   it, and a replica that dies is replaced after at most this long (plus one poll);
 * - KRATER_CONTROLLER_POLL_MS (1000): how often the store is asked for due work besides in-process wake-ups;
 * - KRATER_CONTROLLER_BACKOFF_MS (1000) and KRATER_CONTROLLER_BACKOFF_MAX_MS (300000): a failed reconcile is retried
 *   after base · 2^(attempts − 1), capped;
 * - KRATER_CONTROLLER_GC_INTERVAL_MS (30000): how often the garbage collector looks for objects whose owner is gone
 *   when nothing woke it (an owner deleted by a process that crashed before the cascade);
 * - KRATER_CONTROLLER_SWEEP_INTERVAL_MS (60000): how often the sweeper looks for what an interrupted create left
 *   (a container in Creating with no agent task, Zun's ports whose container row was never written);
 * - KRATER_CONTROLLER_SWEEP_GRACE_MS (120000): how old such a leftover must be before it is swept;
 * - KRATER_CONTROLLER_MODULES: comma-separated paths of extra controller modules to load (each exports
 *   `controllers(deps)`); the seam tests use to register their test-only kinds.
 */
import { type Env, intVar, listVar } from './values.js';

/**
 * A create writes its ports, row, action and task within a second or so; one still half-made after this long was cut
 * short (the margin covers a slow store, e.g. a PostgreSQL failover in the middle of a create).
 */
export const SWEEP_GRACE_DEFAULT_MS = 120_000;

export interface ControllerSettings {
  concurrency: number;
  leaseMs: number;
  pollMs: number;
  backoffMs: number;
  backoffMaxMs: number;
  gcIntervalMs: number;
  sweepIntervalMs: number;
  /** How old a half-made create or an orphaned port must be before the sweeper takes it as interrupted. */
  sweepGraceMs: number;
  modules: string[];
}

export function controllerSettings(env: Env): ControllerSettings {
  const leaseMs = intVar(env, 'KRATER_CONTROLLER_LEASE_MS', 15_000, 300, 3_600_000);
  const backoffMs = intVar(env, 'KRATER_CONTROLLER_BACKOFF_MS', 1000, 1, 3_600_000);
  return {
    concurrency: intVar(env, 'KRATER_CONTROLLER_CONCURRENCY', 4, 1, 256),
    leaseMs,
    pollMs: intVar(env, 'KRATER_CONTROLLER_POLL_MS', 1000, 10, 600_000),
    backoffMs,
    backoffMaxMs: Math.max(backoffMs, intVar(env, 'KRATER_CONTROLLER_BACKOFF_MAX_MS', 300_000, 1, 86_400_000)),
    gcIntervalMs: intVar(env, 'KRATER_CONTROLLER_GC_INTERVAL_MS', 30_000, 100, 86_400_000),
    sweepIntervalMs: intVar(env, 'KRATER_CONTROLLER_SWEEP_INTERVAL_MS', 60_000, 100, 86_400_000),
    sweepGraceMs: intVar(env, 'KRATER_CONTROLLER_SWEEP_GRACE_MS', SWEEP_GRACE_DEFAULT_MS, 1000, 86_400_000),
    modules: listVar(env, 'KRATER_CONTROLLER_MODULES'),
  };
}
