/**
 * The domain's host errors: what a host's engine (containerd) reports, by kind, as the container API sees it. They
 * are the engine's error kinds (src/engine/errors.ts: classified once there); callers above the domain (the Zun
 * facade) take them from here and never import the engine.
 */
import { EngineError, type EngineErrorCode, toEngineError } from '../engine/errors.js';
import { type ComputeError, computeError } from './errors.js';

export { EngineError as HostError, type EngineErrorCode as HostErrorKind, toEngineError as toHostError };

/** Every host error kind has its status and Zun exception class (a new kind fails to compile until mapped). */
const HOST_STATUS: Record<EngineErrorCode, { status: number; klass: string }> = {
  not_found: { status: 404, klass: 'NotFound' },
  conflict: { status: 409, klass: 'Conflict' },
  invalid: { status: 400, klass: 'Invalid' },
  unavailable: { status: 503, klass: 'ContainerHostNotReady' },
  failed: { status: 500, klass: 'DockerError' },
};

/** A host error as a domain error (`notFoundClass`: the exception class of a 404, e.g. `ImageNotFound`). */
export function hostErrorToCompute(err: EngineError, notFoundClass = 'NotFound'): ComputeError {
  const { status, klass } = HOST_STATUS[err.code];
  return computeError(status, status === 404 ? notFoundClass : klass, err.message);
}

/** Whether an error came from the engine or containerd (and so has a host error kind), rather than from Krater. */
export function isHostFailure(err: unknown): boolean {
  return err instanceof EngineError || typeof (err as { code?: unknown } | null)?.code === 'number';
}
