/**
 * The engine's error kinds and the one place that turns whatever a containerd call threw into one of them, so the
 * container API can map every failure to a Zun status (`src/compute/host-errors.ts`) instead of a bare 500.
 */
import * as grpc from '@grpc/grpc-js';

/**
 * `not_found`: no such container · `conflict`: not in a state for this (e.g. its task is gone or stopping) ·
 * `invalid`: bad input · `unavailable`: containerd cannot be reached right now (try later) · `failed`: anything else.
 */
export type EngineErrorCode = 'not_found' | 'conflict' | 'invalid' | 'unavailable' | 'failed';

/** Errors the container API maps to HTTP: not_found → 404, conflict → 409, invalid → 400, unavailable → 503,
 * failed → 500. */
export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'EngineError';
  }
}

/**
 * What containerd and its shims say when a task stops or goes away under a call (exec/top/stats racing a stop or
 * kill): runc's "cannot exec in a stopped state", the shim's "ttrpc: closed" as its process exits, "process already
 * finished", a task or exec that is "not found" any more, "cannot exec a container that has stopped".
 */
const TASK_GONE =
  /(stopped|deleted) state|ttrpc: closed|process already finished|container that has stopped|container not created|task must be (running|created)|is not running|no running task|not running|no such process/i;

function grpcCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/** The call that failed, when a containerd client error names it (`containerd Tasks.Exec: …`). */
function callOf(err: unknown): string {
  const call = (err as { call?: unknown } | null)?.call;
  return typeof call === 'string' ? call : '';
}

/**
 * Classifies an error from an engine operation. EngineErrors keep their kind unless a `failed` one is really a task
 * that went away (then `conflict`); containerd errors go by gRPC code and message; anything else is `failed`.
 */
export function toEngineError(err: unknown): EngineError {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof EngineError) {
    if (err.code === 'failed' && TASK_GONE.test(message))
      return new EngineError('conflict', err.message, { cause: err.cause ?? err });
    return err;
  }
  // A task that ended under the call: checked before the codes, a closed shim connection comes back as UNAVAILABLE
  // or UNKNOWN from containerd.
  if (TASK_GONE.test(message)) return new EngineError('conflict', message, { cause: err });
  switch (grpcCode(err)) {
    case grpc.status.NOT_FOUND:
      // A task or exec that vanished is a container no longer running; a missing record is a missing container.
      return new EngineError(callOf(err).startsWith('Tasks.') ? 'conflict' : 'not_found', message, { cause: err });
    case grpc.status.ALREADY_EXISTS:
    case grpc.status.FAILED_PRECONDITION:
    case grpc.status.ABORTED:
      return new EngineError('conflict', message, { cause: err });
    case grpc.status.INVALID_ARGUMENT:
    case grpc.status.OUT_OF_RANGE:
      return new EngineError('invalid', message, { cause: err });
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
    case grpc.status.CANCELLED:
      return new EngineError('unavailable', `containerd is not available: ${message}`, { cause: err });
    default:
      return new EngineError('failed', message, { cause: err });
  }
}
