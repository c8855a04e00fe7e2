/**
 * The agent's executor on the FakeEngine: each queued action runs through the action table (ACTIONS in
 * src/compute/states.ts) and ends in the table's success status, or its error status when the engine call it
 * makes fails.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Lanes } from '../../src/agent/context.js';
import { ACTIONS, type ActionRule, canDo, Status } from '../../src/compute/states.js';
import type { ContainerRow } from '../../src/core/store/schema.js';
import type { Engine } from '../../src/engine/engine.js';
import { actionResult, agentHarness, eid, type Harness, HOST } from './helpers/agent-harness.js';

let h: Harness;
beforeEach(async () => {
  h = await agentHarness();
});
afterEach(async () => {
  await h.close();
});

/** A container brought to `state` through the agent itself. */
async function containerIn(state: 'Created' | 'Running' | 'Stopped' | 'Paused', patch: Partial<ContainerRow> = {}) {
  const c = await h.container(patch);
  await h.act(c.uuid, 'create', { run: state !== 'Created' });
  await h.settle();
  if (state === 'Stopped') await h.act(c.uuid, 'stop', { timeout: 1 });
  if (state === 'Paused') await h.act(c.uuid, 'pause');
  await h.settle();
  expect((await h.row(c.uuid))?.status).toBe(state);
  return c;
}

describe('agent executor: the action table on a fake engine', () => {
  it('create makes the engine container from the row and ends Created; the action gets its event', async () => {
    const c = await h.container();
    const actionId = await h.act(c.uuid, 'create', { run: false });
    await h.settle();
    const row = await h.row(c.uuid);
    expect(row).toMatchObject({ status: Status.Created, task_state: null, hostname: c.uuid.slice(0, 12) });
    const opts = h.engine.options(eid(c.uuid));
    expect(opts).toMatchObject({
      image: 'docker.io/library/busybox:latest',
      command: ['sleep', '600'],
      env: ['A=1'],
      memoryLimitBytes: 64 * 1024 * 1024,
      cpus: 1,
      labels: { 'zun.container': c.uuid },
      shimGroup: 'project-p1',
    });
    expect(h.engine.startCount(eid(c.uuid))).toBe(0);
    await h.until(async () => (await actionResult(h.store, actionId)) === 'Success', 'create event');
  });

  it('create with run starts it: Running, started, desired running', async () => {
    const c = await containerIn('Running');
    const row = await h.row(c.uuid);
    expect(row).toMatchObject({ status: Status.Running, task_state: null, desired: 'running', exit_code: null });
    expect(row?.started_at).toBeTruthy();
    expect(h.engine.startCount(eid(c.uuid))).toBe(1);
  });

  it('stop records the exit and desired stopped; start runs it again', async () => {
    const c = await containerIn('Running');
    await h.act(c.uuid, 'stop', { timeout: 1 });
    await h.settle();
    expect(await h.row(c.uuid)).toMatchObject({ status: Status.Stopped, exit_code: 137, desired: 'stopped' });
    await h.act(c.uuid, 'start');
    await h.settle();
    expect(await h.row(c.uuid)).toMatchObject({ status: Status.Running, desired: 'running', exit_code: null });
    expect(h.engine.startCount(eid(c.uuid))).toBe(2);
  });

  it('pause and unpause', async () => {
    const c = await containerIn('Paused');
    await h.act(c.uuid, 'unpause');
    await h.settle();
    expect((await h.row(c.uuid))?.status).toBe(Status.Running);
  });

  it('kill leaves the status to the exit watch: Stopped, and no restart even with restart policy always', async () => {
    const c = await containerIn('Running', {
      restart_policy: JSON.stringify({ Name: 'always', MaximumRetryCount: '0' }),
    });
    await h.act(c.uuid, 'kill', { signal: 'SIGKILL' });
    await h.settle();
    await h.until(async () => (await h.row(c.uuid))?.status === Status.Stopped, 'Stopped after kill');
    expect(await h.row(c.uuid)).toMatchObject({ desired: 'stopped', task_state: null, exit_code: 137 });
    expect(h.engine.startCount(eid(c.uuid))).toBe(1);
  });

  it('reboot stops and starts the same container', async () => {
    const c = await containerIn('Running');
    await h.act(c.uuid, 'reboot', { timeout: 1 });
    await h.settle();
    expect(await h.row(c.uuid)).toMatchObject({ status: Status.Running, task_state: null });
    expect(h.engine.startCount(eid(c.uuid))).toBe(2);
  });

  it('rebuild of a running container makes it again and runs it; of a stopped one leaves it Created', async () => {
    const running = await containerIn('Running');
    await h.act(running.uuid, 'rebuild', { wasRunning: true });
    await h.settle();
    expect((await h.row(running.uuid))?.status).toBe(Status.Running);
    expect(h.engine.calls.filter((x) => x.id === eid(running.uuid) && x.method === 'create')).toHaveLength(2);
    expect(h.engine.startCount(eid(running.uuid))).toBe(1); // a new engine container, started once

    const stopped = await containerIn('Stopped');
    await h.act(stopped.uuid, 'rebuild', { wasRunning: false });
    await h.settle();
    expect((await h.row(stopped.uuid))?.status).toBe(Status.Created);
    expect(h.engine.startCount(eid(stopped.uuid))).toBe(0);
  });

  it('delete removes the engine container and the row', async () => {
    const c = await containerIn('Running');
    await h.act(c.uuid, 'delete');
    await h.settle();
    expect(await h.row(c.uuid)).toBeUndefined();
    expect(h.engine.has(eid(c.uuid))).toBe(false);
  });

  it('update_resources hands the row limits to the engine', async () => {
    const c = await containerIn('Running');
    await h.repo.update(c.uuid, { memory: '128', cpu: 2 });
    await h.act(c.uuid, 'update_resources');
    await h.settle();
    expect(h.engine.options(eid(c.uuid))).toMatchObject({ memoryLimitBytes: 128 * 1024 * 1024, cpus: 2 });
  });

  it('image tasks name their image, not a container (kind image), and old-style rows still run', async () => {
    await h.repo.enqueueImageTask(HOST, 'img-1', 'image_pull');
    await h.repo.enqueue(HOST, 'img-2', 'image_delete', {}, null);
    h.agent.wake();
    await h.settle();
    expect(h.images.tasks).toEqual([
      { action: 'image_pull', uuid: 'img-1' },
      { action: 'image_delete', uuid: 'img-2' },
    ]);
  });

  /** Per action: how to get a container into a state the API would queue it from, and the engine call its work makes. */
  const cases: {
    action: keyof typeof ACTIONS;
    from: 'new' | 'Created' | 'Running' | 'Stopped' | 'Paused';
    call: keyof Engine;
    params?: Record<string, unknown>;
  }[] = [
    { action: 'create', from: 'new', call: 'create', params: { run: false } },
    { action: 'start', from: 'Created', call: 'start' },
    { action: 'stop', from: 'Running', call: 'stop', params: { timeout: 1 } },
    { action: 'kill', from: 'Running', call: 'kill' },
    { action: 'reboot', from: 'Running', call: 'stop', params: { timeout: 1 } },
    { action: 'pause', from: 'Running', call: 'pause' },
    { action: 'unpause', from: 'Paused', call: 'unpause' },
    { action: 'rebuild', from: 'Stopped', call: 'create', params: { wasRunning: false } },
    { action: 'delete', from: 'Stopped', call: 'delete' },
    { action: 'update_resources', from: 'Running', call: 'updateResources' },
  ];

  it.each(cases)(
    '$action: the table says its task state, success and error status',
    async ({ action, from, call, params }) => {
      const rule: ActionRule = ACTIONS[action];
      // The guard the API checks admits the state the case starts from.
      if (from !== 'new' && rule.guard) expect(canDo(rule.guard, from)).toBe(true);
      const setup = async () => (from === 'new' ? h.container() : containerIn(from));

      // Success: the table's status (or the status unchanged when the table leaves it to others), task state cleared.
      const ok = await setup();
      const before = (await h.row(ok.uuid))!.status;
      const actionId = await h.act(ok.uuid, action, params);
      await h.settle();
      await h.until(async () => (await actionResult(h.store, actionId)) !== undefined, `${action} event`);
      expect(await actionResult(h.store, actionId)).toBe('Success');
      const after = await h.row(ok.uuid);
      if (rule.success === Status.Deleted) expect(after).toBeUndefined();
      else {
        expect(after?.task_state).toBeNull();
        if (action !== 'kill') expect(after?.status).toBe(rule.success ?? before);
      }

      // Failure of the engine call: the table's error status (or unchanged) with the message as status_reason.
      const bad = await setup();
      const beforeBad = (await h.row(bad.uuid))!.status;
      h.engine.failNext(call);
      const badId = await h.act(bad.uuid, action, params);
      await h.settle();
      await h.until(async () => (await actionResult(h.store, badId)) !== undefined, `${action} event`);
      expect(await actionResult(h.store, badId)).toBe('Error');
      const failed = await h.row(bad.uuid);
      expect(failed?.status).toBe(rule.error ?? beforeBad);
      expect(failed?.task_state).toBeNull();
      if (rule.taskState || rule.error) expect(failed?.status_reason).toContain('failed (injected)');
      else expect(failed?.status_reason).toBeNull();
    },
  );

  it('marks the row with the table task state while the work runs', async () => {
    const c = await containerIn('Running');
    const states: (string | null)[] = [];
    const original = h.engine.stop.bind(h.engine);
    h.engine.stop = async (id, o) => {
      states.push((await h.row(c.uuid))?.task_state ?? null);
      return original(id, o);
    };
    await h.act(c.uuid, 'stop', { timeout: 1 });
    await h.settle();
    expect(states).toEqual([ACTIONS.stop.taskState]);
  });
});

describe('agent lanes', () => {
  it('run the work of one subject in order, also after a failure, and other subjects meanwhile', async () => {
    const lanes = new Lanes();
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const a = lanes.run('x', async () => {
      await gate;
      order.push('x1');
      throw new Error('boom');
    });
    const b = lanes.run('x', async () => {
      order.push('x2');
    });
    await lanes.run('y', async () => {
      order.push('y1');
    });
    expect(lanes.has('x')).toBe(true);
    release();
    await expect(a).rejects.toThrow('boom');
    await b;
    expect(order).toEqual(['y1', 'x1', 'x2']);
  });
});
