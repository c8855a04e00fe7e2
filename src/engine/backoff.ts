/** Exponential back-off: `initialMs · factor^attempt`, never above `maxMs` (the bound keeps retries going forever). */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
}

/** How a lost containerd is retried: 0.5 s, 1 s, 2 s, … at most 30 s apart. */
export const CONTAINERD_RESTART_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, factor: 2 };

/** The wait before retry number `attempt` (0 = the first retry). */
export function backoffDelay(attempt: number, p: BackoffPolicy = CONTAINERD_RESTART_BACKOFF): number {
  if (!Number.isFinite(attempt) || attempt <= 0) return Math.min(p.initialMs, p.maxMs);
  // Past ~60 doublings the product overflows to Infinity; the bound applies either way.
  return Math.min(p.maxMs, p.initialMs * p.factor ** Math.min(attempt, 64));
}
