import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Krater } from '../helpers/krater.js';
import { startCloud, waitContainer } from './fixtures.js';

/** The real python3-zunclient through `openstack appcontainer`, as users drive it. */
let k: Krater;
let token: string;
const appc = (args: string[]) => k.oscOk(['appcontainer', ...args], { json: true });
const status = async (name: string) => (await appc(['show', name])).status;

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('openstack appcontainer (python3-zunclient)', () => {
  it('runs a container and waits for it', async () => {
    // `-f json` must precede the image: everything after it is the container's command.
    const c = await k.oscOk(
      [
        'appcontainer',
        'run',
        '-f',
        'json',
        '--wait',
        '--name',
        'cli1',
        '--memory',
        '64',
        '--cpu',
        '0.5',
        '--environment',
        'GREETING=hello',
        '--label',
        'tier=web',
        'busybox',
        'sh',
        '-c',
        'echo $GREETING from cli1; sleep 600',
      ],
      { json: false },
    );
    expect(c.name).toBe('cli1');
    expect(await status('cli1')).toBe('Running');
    const list = await appc(['list']);
    expect(list.map((x: any) => x.name)).toContain('cli1');
    const show = await appc(['show', 'cli1']);
    expect(show).toMatchObject({ memory: '64', cpu: 0.5, environment: { GREETING: 'hello' }, labels: { tier: 'web' } });
  });
  it('shows logs and runs exec with the exit code', async () => {
    const logs = await k.osc(['appcontainer', 'logs', 'cli1'], { json: false });
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('hello from cli1');
    const exec = await k.osc(['appcontainer', 'exec', 'cli1', 'sh', '-c', 'echo inside; exit 4'], { json: false });
    expect(exec.stdout).toContain('inside');
    expect(exec.code).toBe(4);
  });
  it('copies files in and out', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'krater-cp-'));
    writeFileSync(join(dir, 'in.txt'), 'copied in\n');
    const cpIn = await k.osc(['appcontainer', 'cp', join(dir, 'in.txt'), 'cli1:/tmp/'], { json: false });
    expect(cpIn.code, cpIn.stderr).toBe(0);
    const cpOut = await k.osc(['appcontainer', 'cp', 'cli1:/tmp/in.txt', join(dir, 'out')], { json: false });
    expect(cpOut.code, cpOut.stderr).toBe(0);
    expect(readFileSync(join(dir, 'out', 'in.txt'), 'utf8')).toBe('copied in\n');
  });
  it('stops, starts, restarts, pauses, unpauses and kills', async () => {
    const uuid = (await appc(['show', 'cli1'])).uuid;
    const step = async (cmd: string[], want: string) => {
      const r = await k.osc(['appcontainer', ...cmd], { json: false });
      expect(r.code, `${cmd.join(' ')}: ${r.stderr}`).toBe(0);
      await waitContainer(k, token, uuid, (c) => c.status === want && c.task_state === null, want);
    };
    await step(['stop', 'cli1', '--timeout', '1'], 'Stopped');
    await step(['start', 'cli1'], 'Running');
    await step(['restart', 'cli1', '--timeout', '1'], 'Running');
    await step(['pause', 'cli1'], 'Paused');
    await step(['unpause', 'cli1'], 'Running');
    await step(['kill', 'cli1'], 'Stopped');
  });
  it('refuses an action in the wrong state with the server message', async () => {
    // zunclient reports a failed action and still exits 0: the server's message is what users see.
    const r = await k.osc(['appcontainer', 'unpause', 'cli1'], { json: false });
    expect(r.stdout + r.stderr).toMatch(/Cannot unpause container .* in Stopped state\. \(HTTP 409\)/);
  });
  it('updates, lists actions and deletes with --wait', async () => {
    const set = await appc(['set', '--cpu', '0.25', 'cli1']);
    expect(set.cpu).toBe(0.25);
    const actions = await appc(['action', 'list', 'cli1']);
    expect(actions.map((a: any) => a.action)).toEqual(
      expect.arrayContaining(['create', 'stop', 'start', 'reboot', 'pause', 'unpause', 'kill']),
    );
    const create = actions.find((a: any) => a.action === 'create');
    const one = await appc(['action', 'show', 'cli1', create.request_id]);
    expect(one.action).toBe('create');
    const del = await k.osc(['appcontainer', 'delete', '--wait', 'cli1'], { json: false });
    expect(del.code, del.stderr).toBe(0);
    const gone = await k.osc(['appcontainer', 'show', 'cli1']);
    expect(gone.code).not.toBe(0);
  });
  it('manages quotas and shows hosts and services to admins', async () => {
    const project = (await k.passwordToken()).body.token.project.id;
    const updated = await appc(['quota', 'update', '--containers', '7', project]);
    expect(updated.containers).toBe(7);
    const got = await appc(['quota', 'get', '--usages', project]);
    expect(got.containers).toMatchObject({ limit: 7 });
    await appc(['quota', 'delete', project]).catch(() => undefined);
    const hosts = await appc(['host', 'list']);
    expect(hosts.length).toBeGreaterThan(0);
    const services = await appc(['service', 'list']);
    expect(services[0]).toMatchObject({ Binary: 'zun-compute', State: 'up' });
  });
});
