import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
    rmSync(dir, { recursive: true, force: true });
  });
  it('shows stats and top', async () => {
    const stats = await appc(['stats', 'cli1']);
    expect(stats).toMatchObject({ CONTAINER: 'cli1', 'MEM LIMIT(MiB)': 64 });
    // zunclient's `top` fails on Python 3 before printing ("unsupported operand type(s) for %"); what it asked
    // for is right, as the API shows.
    const top = await k.osc(['appcontainer', 'top', 'cli1'], { json: false });
    expect(top.stdout + top.stderr).toMatch(/unsupported operand|PID/);
    const uuid = (await appc(['show', 'cli1'])).uuid;
    const api = await k.http('GET', `/container/v1/containers/${uuid}/top?ps_args=None`, {
      token,
      headers: { 'OpenStack-API-Version': 'container 1.40' },
    });
    expect(api.json.Processes.map((p: string[]) => p.join(' ')).join('\n')).toContain('sleep 600');
  });
  it('commits a container into a Glance image and runs it with --image-driver glance', async () => {
    const exec = await k.osc(['appcontainer', 'exec', 'cli1', 'sh', '-c', 'echo committed-state > /committed.txt'], {
      json: false,
    });
    expect(exec.code, exec.stderr).toBe(0);
    const commit = await k.osc(['appcontainer', 'commit', 'cli1', 'cli1-snap:v1'], { json: false });
    expect(commit.code, commit.stderr).toBe(0);
    let image: any;
    for (let i = 0; i < 100 && image?.status !== 'active'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      image = await k.oscOk(['image', 'show', 'cli1-snap'], { json: true }).catch(() => undefined);
    }
    expect(image?.status).toBe('active');
    const run = await k.oscOk(
      [
        'appcontainer',
        'run',
        '-f',
        'json',
        '--name',
        'fromsnap',
        '--image-driver',
        'glance',
        'cli1-snap',
        'cat',
        '/committed.txt',
      ],
      { json: false },
    );
    await waitContainer(k, token, run.uuid, (c) => c.status === 'Stopped', 'Stopped');
    const logs = await k.osc(['appcontainer', 'logs', 'fromsnap'], { json: false });
    expect(logs.stdout).toContain('committed-state');
    expect((await k.osc(['appcontainer', 'delete', 'fromsnap'], { json: false })).code).toBe(0);
  });
  it('rebuilds a container and waits for it', async () => {
    const r = await k.osc(['appcontainer', 'rebuild', '--wait', 'cli1'], { json: false });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('rebuild container cli1 success');
    expect(await status('cli1')).toBe('Running');
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
    // A member of the same project is refused the admin APIs.
    await k.oscOk(['user', 'create', '--project', 'admin', '--password', 'member-secret', 'member1'], { json: true });
    await k.oscOk(['role', 'add', '--project', 'admin', '--user', 'member1', 'member'], { json: false });
    k.addPasswordCloud('member1', 'member1', 'member-secret', 'admin');
    for (const what of [
      ['service', 'list'],
      ['host', 'list'],
    ]) {
      const denied = await k.osc(['appcontainer', ...what], { json: false, cloud: 'member1' });
      expect(denied.code, what.join(' ')).not.toBe(0);
      expect(denied.stdout + denied.stderr).toMatch(/HTTP 403/);
    }
  });
});
