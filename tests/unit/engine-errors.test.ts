import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { backoffDelay, CONTAINERD_RESTART_BACKOFF } from '../../src/engine/backoff.js';
import { ContainerdError } from '../../src/engine/containerd-client.js';
import { EngineError, type EngineErrorCode, toEngineError } from '../../src/engine/errors.js';
import { engineErrorToZun } from '../../src/services/container/context.js';

describe('backoffDelay', () => {
  it('doubles from the initial delay and stays at the bound', () => {
    const p = { initialMs: 500, maxMs: 30_000, factor: 2 };
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((a) => backoffDelay(a, p))).toEqual([
      500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000,
    ]);
    expect(backoffDelay(10_000, p)).toBe(30_000);
    expect(backoffDelay(Number.POSITIVE_INFINITY, p)).toBe(500);
    expect(backoffDelay(-3, p)).toBe(500);
  });
  it('the default policy retries within half a second and never waits more than 30 s', () => {
    expect(backoffDelay(0)).toBe(CONTAINERD_RESTART_BACKOFF.initialMs);
    expect(backoffDelay(1000)).toBe(30_000);
  });
});

const grpcErr = (call: string, code: grpc.status, details: string) => new ContainerdError(call, code, details);

describe('toEngineError', () => {
  it('a task that stopped or vanished under exec/top/stats is a conflict', () => {
    const cases = [
      grpcErr('Tasks.Exec', grpc.status.UNKNOWN, 'cannot exec in a stopped state: unknown'),
      grpcErr('Tasks.Exec', grpc.status.UNKNOWN, 'cannot exec in a deleted state: unknown'),
      grpcErr('Tasks.Start', grpc.status.UNAVAILABLE, 'ttrpc: closed: unavailable'),
      grpcErr('Tasks.Exec', grpc.status.UNKNOWN, 'ttrpc: closed: unknown'),
      grpcErr('Tasks.Kill', grpc.status.NOT_FOUND, 'process already finished: not found'),
      grpcErr('Tasks.Metrics', grpc.status.NOT_FOUND, 'task zun-x not found: not found'),
      grpcErr('Tasks.Wait', grpc.status.NOT_FOUND, 'no such task'),
      grpcErr('Tasks.Exec', grpc.status.FAILED_PRECONDITION, 'task must be running'),
      new EngineError(
        'failed',
        'exec in zun-x failed: OCI runtime exec failed: exec failed: cannot exec a container that has stopped',
      ),
    ];
    for (const e of cases) expect(toEngineError(e).code, e.message).toBe('conflict');
  });
  it('containerd unreachable is unavailable; records and input keep their kind; the rest is failed', () => {
    const is = (e: unknown, code: EngineErrorCode) => expect(toEngineError(e).code, String(e)).toBe(code);
    is(grpcErr('Tasks.Exec', grpc.status.UNAVAILABLE, 'No connection established'), 'unavailable');
    is(grpcErr('Version.Version', grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'), 'unavailable');
    is(grpcErr('Tasks.Wait', grpc.status.CANCELLED, 'Cancelled on client'), 'unavailable');
    is(grpcErr('Containers.Get', grpc.status.NOT_FOUND, 'container "x" in namespace "krater": not found'), 'not_found');
    is(grpcErr('Containers.Create', grpc.status.ALREADY_EXISTS, 'already exists'), 'conflict');
    is(grpcErr('Tasks.Exec', grpc.status.INVALID_ARGUMENT, 'bad spec'), 'invalid');
    is(grpcErr('Tasks.Exec', grpc.status.INTERNAL, 'boom'), 'failed');
    is(new Error('ENOENT: no such file or directory'), 'failed');
    is('a string', 'failed');
    const own = new EngineError('not_found', 'container x not found');
    expect(toEngineError(own)).toBe(own);
    expect(toEngineError(new EngineError('unavailable', 'down')).code).toBe('unavailable');
  });
});

describe('engineErrorToZun', () => {
  it('maps every kind to a Zun status, never a bare 500 for an outage or a state conflict', () => {
    const status = (code: EngineErrorCode) => engineErrorToZun(new EngineError(code, 'm')).status;
    expect(status('not_found')).toBe(404);
    expect(status('conflict')).toBe(409);
    expect(status('invalid')).toBe(400);
    expect(status('unavailable')).toBe(503);
    expect(status('failed')).toBe(500);
    expect(engineErrorToZun(new EngineError('not_found', 'm'), 'ImageNotFound').kind).toBe('ImageNotFound');
  });
});
