/**
 * Crash recovery of the agent on the FakeEngine: an engine call failing at every step of every action, the agent
 * dying (kill -9) right after each engine call of a task, and the engine losing its containers; each followed by
 * the reconcile of a new agent, ending in the state the action table and the engine → status mapping say.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ACTIONS, Status } from '../../src/compute/states.js';
import type { ContainerRow } from '../../src/core/store/schema.js';
import { type Engine, EngineError } from '../../src/engine/engine.js';
import { agentHarness, eid, type Harness } from './helpers/agent-harness.js';

let h: Harness;
beforeEach(async () => {
  h = await agentHarness();
});
afterEach(async () => {
  await h.close();
});

type From = 'new' | 'Created' | 'Running' | 'Stopped' | 'Paused';

async function containerIn(from: From, patch: Partial<ContainerRow> = {}): Promise<ContainerRow> {
  const c = await h.container(patch);
  if (from === 'new') return c;
  await h.act(c.uuid, 'create', { run: from !== 'Created' });
  await h.settle();
  if (from === 'Stopped') await h.act(c.uuid, 'stop', { timeout: 1 });
  if (from === 'Paused') await h.act(c.uuid, 'pause');
  await h.settle();
  return c;
}

/** Makes the next successful call of `method` never return: the agent "dies" right after it. */
function hangAfter(method: keyof Engine): { reached: () => boolean } {
  const engine = h.engine as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const original = engine[method as string].bind(h.engine);
  let reached = false;
  engine[method as string] = async (...args: unknown[]) => {
    const r = await original(...args);
    if (!reached) {
      reached = true;
      engine[method as string] = original;
      return new Promise(() => undefined);
    }
    return r;
  };
  return { reached: () => reached };
}

/**
 * Every engine call each action makes, and where the container ends: `failed` after the call fails (the table's
 * error status, then reconcile), `crashed` after the agent died right after the call succeeded and a new agent
 * ran the interrupted task again (undefined: the row is gone).
 */
const steps: {
  action: keyof typeof ACTIONS;
  from: From;
  params?: Record<string, unknown>;
  call: keyof Engine;
  failed: string;
  crashed: string | undefined;
}[] = [
  { action: 'create', from: 'new', params: { run: true }, call: 'create', failed: 'Error', crashed: 'Running' },
  { action: 'create', from: 'new', params: { run: true }, call: 'start', failed: 'Error', crashed: 'Running' },
  { action: 'start', from: 'Created', call: 'start', failed: 'Error', crashed: 'Running' },
  { action: 'stop', from: 'Running', params: { timeout: 1 }, call: 'stop', failed: 'Running', crashed: 'Stopped' },
  { action: 'kill', from: 'Running', call: 'kill', failed: 'Running', crashed: 'Stopped' },
  { action: 'reboot', from: 'Running', params: { timeout: 1 }, call: 'stop', failed: 'Running', crashed: 'Running' },
  { action: 'reboot', from: 'Running', params: { timeout: 1 }, call: 'start', failed: 'Stopped', crashed: 'Running' },
  { action: 'pause', from: 'Running', call: 'pause', failed: 'Running', crashed: 'Paused' },
  { action: 'unpause', from: 'Paused', call: 'unpause', failed: 'Paused', crashed: 'Running' },
  {
    action: 'rebuild',
    from: 'Running',
    params: { wasRunning: true },
    call: 'delete',
    failed: 'Running',
    crashed: 'Running',
  },
  {
    action: 'rebuild',
    from: 'Running',
    params: { wasRunning: true },
    call: 'create',
    failed: 'Error',
    crashed: 'Running',
  },
  {
    action: 'rebuild',
    from: 'Running',
    params: { wasRunning: true },
    call: 'start',
    failed: 'Error',
    crashed: 'Running',
  },
  { action: 'delete', from: 'Stopped', call: 'delete', failed: 'Stopped', crashed: undefined },
];

describe('agent recovery on a fake engine', () => {
  it.each(steps)('$action, $call fails: the table error status, kept by the reconcile of a new agent', async (s) => {
    const c = await containerIn(s.from);
    h.engine.failNext(s.call);
    await h.act(c.uuid, s.action, s.params);
    await h.settle();
    const rule = ACTIONS[s.action];
    const afterTask = await h.row(c.uuid);
    expect(afterTask?.task_state).toBeNull();
    if (rule.error) expect(afterTask?.status).toBe(rule.error);
    await h.restart();
    // The engine has the last word where it has the container (statusFromEngine): a failed delete left it stopped,
    // a failed reboot running (stop failed) or stopped (start failed).
    expect((await h.row(c.uuid))?.status).toBe(s.failed);
  });

  it.each(steps)('$action, the agent dies right after $call: a new agent finishes the task', async (s) => {
    const c = await containerIn(s.from);
    const hang = hangAfter(s.call);
    await h.act(c.uuid, s.action, s.params);
    await h.until(hang.reached, `${s.call} called`);
    // The task is still claimed by the dead agent: the row says what was under way.
    const claimed = await h.store.db.selectFrom('agent_tasks').select('state').executeTakeFirst();
    expect(claimed?.state).toBe('running');
    await h.crash();
    await h.settle();
    await h.until(async () => (await h.row(c.uuid))?.status === s.crashed, `${s.crashed} after recovery`);
    const row = await h.row(c.uuid);
    if (row) expect(row.task_state).toBeNull();
    else expect(h.engine.has(eid(c.uuid))).toBe(false);
  });

  it('the engine loses its containers: Error "No such container", auto_remove gone, auto_heal made again', async () => {
    const plain = await containerIn('Running');
    const removed = await containerIn('Running', { auto_remove: 1 });
    const healed = await containerIn('Running', { auto_heal: 1 });
    const stopped = await containerIn('Stopped');
    await h.agent.stop('keep');
    h.engine.crash();
    await h.crash();
    await h.settle();
    expect(await h.row(plain.uuid)).toMatchObject({ status: Status.Error, status_reason: 'No such container' });
    expect(await h.row(removed.uuid)).toBeUndefined();
    await h.until(async () => (await h.row(healed.uuid))?.status === Status.Running, 'healed');
    expect(h.engine.startCount(eid(healed.uuid))).toBe(1);
    expect(await h.row(stopped.uuid)).toMatchObject({ status: Status.Error, status_reason: 'No such container' });
  });

  it('exits while the agent was away are recorded by the new agent, and the restart policy applies', async () => {
    const c = await containerIn('Running', {
      restart_policy: JSON.stringify({ Name: 'always', MaximumRetryCount: '0' }),
    });
    const other = await containerIn('Running');
    h.agent.closed = true; // dead: it records nothing
    h.engine.exit(eid(c.uuid), 2);
    h.engine.exit(eid(other.uuid), 5);
    await h.crash();
    await h.until(() => h.engine.startCount(eid(c.uuid)) === 2, 'restarted by the new agent');
    await h.until(async () => (await h.row(c.uuid))?.status === Status.Running, 'Running');
    expect(await h.row(other.uuid)).toMatchObject({ status: Status.Stopped, exit_code: 5 });
  });

  it('an unavailable engine puts the task back; it runs when the agent is woken again', async () => {
    const c = await containerIn('Created');
    h.engine.failNext('start', new EngineError('unavailable', 'containerd is away'));
    await h.act(c.uuid, 'start');
    await h.until(
      async () =>
        h.engine.calls.some((x) => x.method === 'start') &&
        (await h.store.db.selectFrom('agent_tasks').select('state').executeTakeFirst())?.state === 'pending',
      'task pending again',
    );
    // The row still says what is pending.
    expect((await h.row(c.uuid))?.task_state).toBe('container_starting');
    h.agent.wake();
    await h.settle();
    expect(await h.row(c.uuid)).toMatchObject({ status: Status.Running, task_state: null });
  });
});
