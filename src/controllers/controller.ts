import type { FastifyBaseLogger } from 'fastify';
import type { ContainerApi } from '../compute/container-api.js';
import type { OwnerKinds } from '../compute/ownership.js';
import type { Store } from '../core/store/db.js';

/**
 * A control-plane reconciler that is not tied to a host (a Magnum cluster, a capsule, a sweeper of orphans). It is
 * asked to bring one object of its kind towards its desired state; the manager guarantees that across all API
 * replicas at most one `reconcile` of a given (kind, id) runs at a time, provided the reconciler stops when
 * `ctx.signal` aborts (its lease is gone or the process is stopping).
 *
 * Reconcilers read the desired state from the store every time (the queue carries only the key), so they must be
 * idempotent: a reconcile may be repeated after a crash, a lost lease or an error.
 */
export interface Controller {
  /** The object kind it owns, e.g. `magnum.cluster`; the queue key is (kind, id). */
  readonly kind: string;
  reconcile(id: string, ctx: ReconcileContext): Promise<ReconcileResult>;
}

/**
 * `done`: nothing more to do until someone enqueues the object again. `{ requeueAfterMs }`: look again after that
 * long (polling something external). A thrown error retries with exponential back-off (attempts and the last error
 * are kept on the queue row).
 */
export type ReconcileResult = 'done' | { requeueAfterMs: number };

export interface ReconcileContext {
  /** Aborted when this replica lost the lease (it could not renew in time) or is shutting down: stop promptly. */
  signal: AbortSignal;
  /** 1 on the first try; n after n − 1 failed attempts in a row. */
  attempt: number;
  /** This replica's lease owner id. */
  owner: string;
  /** Queues (kind, id) for reconcile, now or after `delayMs`; idempotent. */
  enqueue(kind: string, id: string, delayMs?: number): Promise<void>;
  log: FastifyBaseLogger;
}

/** What a controller factory gets from the composition root. */
export interface ControllerDeps {
  store: Store;
  log: FastifyBaseLogger;
  /** Zun's container operations in-process (what the cluster and capsule controllers create containers with). */
  containers?: ContainerApi;
  /** The owner kinds the garbage collector knows; a module that defines an owning kind registers it here. */
  owners: OwnerKinds;
  enqueue(kind: string, id: string, delayMs?: number): Promise<void>;
}

/**
 * A module of controllers named in `KRATER_CONTROLLER_MODULES` (the registration seam tests use for their test-only
 * kinds) exports `controllers`.
 */
export type ControllerFactory = (deps: ControllerDeps) => Controller[] | Promise<Controller[]>;
