import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import type { ControllerSettings } from '../core/config/controllers.js';
import type { Store } from '../core/store/db.js';
import type { Controller } from './controller.js';
import { type Claim, queueKey, WorkQueue } from './queue.js';

export interface ManagerOptions {
  store: Store;
  log: FastifyBaseLogger;
  settings: Omit<ControllerSettings, 'modules'>;
  /** Default: `<host>:<pid>:<random>`, unique per process. */
  owner?: string;
  now?: () => number;
}

interface Running {
  claim: Claim;
  abort: AbortController;
  /** When the last renewal (or the claim) succeeded, on this process's clock. */
  renewedAt: number;
  done: Promise<void>;
}

/**
 * Runs the registered controllers in this process: a fixed number of workers over the shared work queue, one lease
 * per object so replicas share the work and never reconcile one object twice at a time. Wake-ups: an enqueue in
 * this process, a worker becoming free, the earliest local requeue, and a poll of the store every `pollMs` (which
 * is how other replicas' enqueues, expired leases and back-offs are noticed). One renewal timer serves every lease
 * this process holds; there is no timer or process per object.
 */
export class ControllerManager {
  readonly queue: WorkQueue;
  readonly owner: string;
  private readonly controllers = new Map<string, Controller>();
  private readonly running = new Map<string, Running>();
  private readonly now: () => number;
  private pollTimer?: NodeJS.Timeout;
  private renewTimer?: NodeJS.Timeout;
  private soonTimer?: NodeJS.Timeout;
  private soonAt = Number.POSITIVE_INFINITY;
  private pumping = false;
  private repump = false;
  private closed = false;
  private renewing = false;

  constructor(private readonly opts: ManagerOptions) {
    this.owner = opts.owner ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.now = opts.now ?? Date.now;
    const { leaseMs, backoffMs, backoffMaxMs } = opts.settings;
    this.queue = new WorkQueue(opts.store.db, { owner: this.owner, leaseMs, backoffMs, backoffMaxMs, now: this.now });
  }

  register(controller: Controller): void {
    if (this.controllers.has(controller.kind)) throw new Error(`controller kind registered twice: ${controller.kind}`);
    this.controllers.set(controller.kind, controller);
  }

  get kinds(): string[] {
    return [...this.controllers.keys()];
  }

  /** Reconciles in flight in this process (never more than the configured concurrency). */
  get inFlight(): number {
    return this.running.size;
  }

  start(): void {
    // With no controller registered there is nothing to poll for.
    if (this.controllers.size === 0 || this.pollTimer) return;
    this.pollTimer = setInterval(() => this.wake(), this.opts.settings.pollMs);
    this.renewTimer = setInterval(() => void this.renewAll(), Math.max(50, Math.floor(this.opts.settings.leaseMs / 3)));
    this.pollTimer.unref();
    this.renewTimer.unref();
    this.wake();
  }

  /** Queues (kind, id) and wakes this process's workers. */
  enqueue = async (kind: string, id: string, delayMs = 0): Promise<void> => {
    await this.queue.enqueue(kind, id, delayMs);
    if (delayMs > 0) this.wakeIn(delayMs);
    else this.wake();
  };

  wake(): void {
    if (this.closed || this.controllers.size === 0) return;
    if (this.pumping) {
      this.repump = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((err) => this.opts.log.error({ err }, 'controller queue poll failed'))
      .finally(() => {
        this.pumping = false;
        if (this.repump) {
          this.repump = false;
          this.wake();
        }
      });
  }

  /** Stops claiming, aborts what runs, waits for it (at most one lease time) and hands back the leases. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.soonTimer);
    for (const r of this.running.values()) r.abort.abort(new Error('controller manager stopping'));
    const all = Promise.allSettled([...this.running.values()].map((r) => r.done));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, this.opts.settings.leaseMs)))]);
    clearTimeout(timer);
    clearInterval(this.renewTimer);
  }

  private wakeIn(ms: number): void {
    // A far requeue is the poll's business; one timer for the earliest near one.
    if (this.closed || ms >= this.opts.settings.pollMs) return;
    const at = this.now() + ms;
    if (at >= this.soonAt) return;
    clearTimeout(this.soonTimer);
    this.soonAt = at;
    this.soonTimer = setTimeout(() => {
      this.soonAt = Number.POSITIVE_INFINITY;
      this.wake();
    }, ms);
    this.soonTimer.unref();
  }

  private async pump(): Promise<void> {
    const free = this.opts.settings.concurrency - this.running.size;
    if (free <= 0) return;
    const claims = await this.queue.claim(this.kinds, free, new Set(this.running.keys()));
    for (const claim of claims) this.run(claim);
  }

  private run(claim: Claim): void {
    const key = queueKey(claim.kind, claim.id);
    const abort = new AbortController();
    const entry: Running = { claim, abort, renewedAt: this.now(), done: Promise.resolve() };
    this.running.set(key, entry);
    entry.done = this.reconcile(entry).finally(() => {
      this.running.delete(key);
      this.wake();
    });
  }

  private async reconcile({ claim, abort }: Running): Promise<void> {
    const controller = this.controllers.get(claim.kind)!;
    const log = this.opts.log.child({ controller: claim.kind, object: claim.id });
    let outcome: { ok: true; result: Awaited<ReturnType<Controller['reconcile']>> } | { ok: false; error: unknown };
    try {
      const result = await controller.reconcile(claim.id, {
        signal: abort.signal,
        attempt: claim.attempts + 1,
        owner: this.owner,
        enqueue: this.enqueue,
        log,
      });
      outcome = { ok: true, result };
    } catch (error) {
      outcome = { ok: false, error };
    }
    try {
      if (abort.signal.aborted && this.closed && !(outcome.ok && outcome.result === 'done')) {
        await this.queue.release(claim);
      } else if (!outcome.ok) {
        const message = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
        const delay = await this.queue.fail(claim, message);
        log.warn({ err: message, attempt: claim.attempts + 1, retryInMs: delay }, 'reconcile failed');
        this.wakeIn(delay);
      } else if (outcome.result === 'done') {
        await this.queue.done(claim);
      } else {
        await this.queue.requeue(claim, outcome.result.requeueAfterMs);
        this.wakeIn(outcome.result.requeueAfterMs);
      }
    } catch (err) {
      // The lease runs out and another replica (or this one) takes the object again.
      log.error({ err }, 'could not record the reconcile result');
    }
  }

  /**
   * Renews every lease this process holds. A reconcile whose lease is gone, or could not be renewed before it ran
   * out (store unreachable), is aborted: another replica may own the object now.
   */
  private async renewAll(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      for (const r of [...this.running.values()]) {
        if (r.abort.signal.aborted) continue;
        let held: boolean;
        try {
          held = await this.queue.renew(r.claim);
        } catch (err) {
          this.opts.log.warn({ err, controller: r.claim.kind, object: r.claim.id }, 'lease renewal failed');
          held = this.now() < r.renewedAt + this.opts.settings.leaseMs;
          if (!held) r.abort.abort(new Error('lease could not be renewed in time'));
          continue;
        }
        if (held) r.renewedAt = this.now();
        else r.abort.abort(new Error('lease lost'));
      }
    } finally {
      this.renewing = false;
    }
  }
}
