/**
 * What the agent does between user actions, on the FakeEngine: restart policies with back-off, auto_remove,
 * healthchecks with auto_heal, and OOM kills. Timings are shortened by the harness (milliseconds).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Status } from '../../src/compute/states.js';
import type { ContainerRow } from '../../src/core/store/schema.js';
import { agentHarness, eid, type Harness } from './helpers/agent-harness.js';

let h: Harness;
beforeEach(async () => {
  h = await agentHarness();
});
afterEach(async () => {
  await h.close();
});

const policy = (Name: string, max = '0') => JSON.stringify({ Name, MaximumRetryCount: max });

async function running(patch: Partial<ContainerRow> = {}): Promise<ContainerRow> {
  const c = await h.container(patch);
  await h.act(c.uuid, 'create', { run: true });
  await h.settle();
  expect((await h.row(c.uuid))?.status).toBe(Status.Running);
  return c;
}

/** Waits for the n-th start of a container's engine container. */
const started = (c: ContainerRow, n: number) =>
  h
    .until(() => h.engine.startCount(eid(c.uuid)) === n, `start #${n}`)
    .then(() => h.until(async () => (await h.row(c.uuid))?.status === Status.Running, 'Running again'));

describe('agent lifecycle on a fake engine', () => {
  it('without a restart policy an exit is recorded and the container stays Stopped', async () => {
    const c = await running();
    h.engine.exit(eid(c.uuid), 3);
    await h.until(async () => (await h.row(c.uuid))?.status === Status.Stopped, 'Stopped');
    expect(await h.row(c.uuid)).toMatchObject({ exit_code: 3, restart_count: 0, status_reason: null });
    expect(h.engine.startCount(eid(c.uuid))).toBe(1);
    expect(h.backoffs).toEqual([]);
  });

  it('restart policy always: every exit restarts after the back-off of its restart count', async () => {
    const c = await running({ restart_policy: policy('always') });
    for (let n = 1; n <= 3; n++) {
      h.engine.exit(eid(c.uuid), n % 2);
      await started(c, n + 1);
      await h.until(async () => (await h.row(c.uuid))?.restart_count === n, `restart_count ${n}`);
    }
    // The back-off grows with the restarts made (restartDelayMs(0), (1), (2)).
    expect(h.backoffs).toEqual([0, 1, 2]);
  });

  it('restart policy on-failure:2 restarts failures twice, then leaves it Stopped; a clean exit is not restarted', async () => {
    const c = await running({ restart_policy: policy('on-failure', '2') });
    h.engine.exit(eid(c.uuid), 1);
    await started(c, 2);
    h.engine.exit(eid(c.uuid), 1);
    await started(c, 3);
    h.engine.exit(eid(c.uuid), 1);
    await h.until(async () => (await h.row(c.uuid))?.status === Status.Stopped, 'Stopped for good');
    expect(await h.row(c.uuid)).toMatchObject({ restart_count: 2, exit_code: 1 });

    const clean = await running({ restart_policy: policy('on-failure') });
    h.engine.exit(eid(clean.uuid), 0);
    await h.until(async () => (await h.row(clean.uuid))?.status === Status.Stopped, 'Stopped');
    expect(h.engine.startCount(eid(clean.uuid))).toBe(1);
  });

  it('a user stop is not restarted by the policy', async () => {
    const c = await running({ restart_policy: policy('always') });
    await h.act(c.uuid, 'stop', { timeout: 1 });
    await h.settle();
    expect((await h.row(c.uuid))?.status).toBe(Status.Stopped);
    expect(h.backoffs).toEqual([]);
    expect(h.engine.startCount(eid(c.uuid))).toBe(1);
  });

  it('auto_remove: a container whose process exits is deleted, row and engine container', async () => {
    const c = await running({ auto_remove: 1 });
    h.engine.exit(eid(c.uuid), 0);
    await h.until(async () => (await h.row(c.uuid)) === undefined, 'row removed');
    expect(h.engine.has(eid(c.uuid))).toBe(false);
  });

  it('auto_remove does not remove a container the user stopped', async () => {
    const c = await running({ auto_remove: 1 });
    await h.act(c.uuid, 'stop', { timeout: 1 });
    await h.settle();
    expect((await h.row(c.uuid))?.status).toBe(Status.Stopped);
  });

  const healthcheck = JSON.stringify({ test: 'test -f /ok', interval: 1, retries: 2, timeout: 1 });

  it('healthcheck: passing makes it healthy; `retries` failures in a row unhealthy (no auto_heal: left running)', async () => {
    const c = await running({ healthcheck });
    await h.until(async () => (await h.row(c.uuid))?.health === 'healthy', 'healthy');
    h.engine.failNext('exec');
    h.engine.failNext('exec');
    await h.until(async () => (await h.row(c.uuid))?.health === 'unhealthy', 'unhealthy');
    expect((await h.row(c.uuid))?.status).toBe(Status.Running);
    expect(h.engine.startCount(eid(c.uuid))).toBe(1);
  });

  it('auto_heal: an unhealthy container is rebooted', async () => {
    const c = await running({ healthcheck, auto_heal: 1 });
    h.engine.failNext('exec');
    h.engine.failNext('exec');
    await started(c, 2);
    await h.until(async () => (await h.row(c.uuid))?.health === 'healthy', 'healthy again');
    expect(h.engine.calls.some((x) => x.method === 'stop' && x.id === eid(c.uuid))).toBe(true);
  });

  it('OOM: an exit with 137 after containerd reported an OOM kill says so in status_reason', async () => {
    const c = await running();
    h.agent.oomEvent(eid(c.uuid));
    h.engine.exit(eid(c.uuid), 137);
    await h.until(async () => (await h.row(c.uuid))?.status === Status.Stopped, 'Stopped');
    expect(await h.row(c.uuid)).toMatchObject({
      exit_code: 137,
      status_reason: 'OOMKilled: the container exceeded its memory limit',
    });
  });

  it('OOM: a 137 without the event (a SIGKILL from elsewhere) is a plain exit; the OOM event may trail the exit', async () => {
    const plain = await running();
    h.engine.exit(eid(plain.uuid), 137);
    await h.until(async () => (await h.row(plain.uuid))?.status === Status.Stopped, 'Stopped');
    expect((await h.row(plain.uuid))?.status_reason).toBeNull();

    const late = await running();
    h.engine.exit(eid(late.uuid), 137);
    h.agent.oomEvent(eid(late.uuid));
    await h.until(async () => (await h.row(late.uuid))?.status === Status.Stopped, 'Stopped');
    expect((await h.row(late.uuid))?.status_reason).toMatch(/^OOMKilled/);
  });

  it('an OOM-killed container with restart policy always is restarted', async () => {
    const c = await running({ restart_policy: policy('always') });
    h.agent.oomEvent(eid(c.uuid));
    h.engine.exit(eid(c.uuid), 137);
    await started(c, 2);
    expect((await h.row(c.uuid))?.status_reason).toBeNull();
  });
});
