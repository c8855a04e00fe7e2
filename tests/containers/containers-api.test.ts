import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Krater, REPO_ROOT } from '../helpers/krater.js';
import { startCloud, waitContainer, waitGone, ZUN } from './fixtures.js';

let k: Krater;
let token: string;

const api = (method: string, path: string, body?: unknown, v = '1.40') =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(v), body });
const run = async (body: Record<string, unknown>) => {
  const r = await api('POST', '/containers?run=true', { image: 'busybox', ...body });
  expect(r.status, r.text).toBe(202);
  return r.json;
};

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('Zun version documents and microversions', () => {
  it('serves the root and v1 documents without a token', async () => {
    const root = await k.http('GET', '/container/');
    expect(root.status).toBe(200);
    const v1 = root.json.versions.find((v: any) => v.status === 'CURRENT');
    expect(v1).toMatchObject({ id: 'v1', min_version: '1.1', max_version: '1.40' });
    expect(root.json.default_version).toEqual(v1);
    const doc = await k.http('GET', '/container/v1');
    expect(doc.status).toBe(200);
    expect(doc.json.media_types[0].type).toBe('application/vnd.openstack.zun.v1+json');
  });
  it('negotiates versions and echoes them', async () => {
    const none = await k.http('GET', '/container/v1/containers', { token });
    expect(none.headers.get('openstack-api-version')).toBe('container 1.1');
    expect(none.headers.get('openstack-api-minimum-version')).toBe('container 1.1');
    expect(none.headers.get('openstack-api-maximum-version')).toBe('container 1.40');
    expect(none.headers.get('vary')).toContain('OpenStack-API-Version');
    const latest = await k.http('GET', '/container/v1/containers', {
      token,
      headers: { 'OpenStack-API-Version': 'container latest' },
    });
    expect(latest.headers.get('openstack-api-version')).toBe('container 1.40');
    expect(latest.json).toEqual({ containers: expect.any(Array), next: null });
    const bad = await k.http('GET', '/container/v1/containers', {
      token,
      headers: { 'OpenStack-API-Version': 'container 1.41' },
    });
    expect(bad.status).toBe(406);
    expect(bad.json.errors[0]).toMatchObject({
      code: 'zun.microversion-unsupported',
      max_version: '1.40',
      min_version: '1.1',
    });
  });
  it('requires a token on v1 resources', async () => {
    const r = await k.http('GET', '/container/v1/containers');
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toContain('Keystone uri=');
  });
  it('gates fields by microversion and rejects unknown fields', async () => {
    const gated = await api('POST', '/containers', { image: 'busybox', hostname: 'h1' }, '1.8');
    expect(gated.status).toBe(400);
    expect(gated.json.errors[0].code).toBe('container.invalid-param-in-version');
    const unknown = await api('POST', '/containers', { image: 'busybox', colour: 'blue' });
    expect(unknown.status).toBe(400);
    expect(unknown.json.errors[0].code).toBe('container.schema-validation-error');
    const tiny = await api('POST', '/containers', { image: 'busybox', memory: '2' });
    expect(tiny.status).toBe(400);
    const listFilter = await api('GET', '/containers?colour=blue');
    expect(listFilter.status).toBe(400);
  });
});

describe('container lists', () => {
  it('pages with limit, marker and a followable next link', async () => {
    const a = (await api('POST', '/containers', { image: 'busybox', name: 'page-a' })).json;
    const b = (await api('POST', '/containers', { image: 'busybox', name: 'page-b' })).json;
    const first = await api('GET', '/containers?limit=1&sort_key=name&sort_dir=asc&name=page-a');
    expect(first.json.containers.map((c: any) => c.name)).toEqual(['page-a']);
    const all = await api('GET', '/containers?limit=1&sort_key=created_at&sort_dir=asc');
    expect(all.json.next).toMatch(/\/container\/v1\/containers\?sort_key=created_at&sort_dir=asc&limit=1&marker=/);
    const names: string[] = [];
    let url: string | null = `${k.baseUrl}/container/v1/containers?limit=1&sort_key=created_at&sort_dir=asc`;
    while (url) {
      const page: any = await k.http('GET', url, { token, headers: ZUN() });
      names.push(...page.json.containers.map((c: any) => c.name));
      url = page.json.next;
    }
    expect(names.slice(-2)).toEqual(['page-a', 'page-b']);
    expect((await api('GET', '/containers?limit=0')).status).toBe(400);
    expect((await api('GET', '/containers?sort_dir=up')).status).toBe(400);
    expect((await api('GET', '/containers?sort_key=colour')).status).toBe(400);
    for (const c of [a, b]) await waitContainer(k, token, c.uuid, (x) => x.status === 'Created', 'Created');
    for (const c of [a, b]) expect((await api('DELETE', `/containers/${c.uuid}`)).status).toBe(204);
    for (const c of [a, b]) await waitGone(k, token, c.uuid);
  });
});

describe('container lifecycle on containerd', () => {
  let c: any;
  it('runs a container: 202 Creating, then Running, with Zun field types', async () => {
    const r = await api('POST', '/containers?run=true', {
      image: 'busybox',
      name: 'web1',
      command: ['sh', '-c', 'echo started; sleep 600'],
      memory: '64',
      cpu: '0.5',
      environment: { A: '1' },
      labels: {},
      hints: {},
      nets: [],
      mounts: [],
      auto_remove: false,
    });
    expect(r.status, r.text).toBe(202);
    expect(r.headers.get('location')).toMatch(/\/container\/v1\/containers\/[0-9a-f-]{36}$/);
    expect(r.json.status).toBe('Creating');
    expect(r.json.memory).toBe('64');
    expect(r.json.cpu).toBe(0.5);
    c = await waitContainer(k, token, r.json.uuid, (x) => x.status === 'Running', 'Running');
    expect(c.status_detail).toMatch(/^Up/);
    expect(c.command).toEqual(['sh', '-c', 'echo started; sleep 600']);
    expect(c.links[0].href).toContain(`/container/v1/containers/${c.uuid}`);
    expect(c.host).toBeDefined();
    // The action's request id is the create response's.
    const actions = await api('GET', `/containers/${c.uuid}/container_actions`);
    expect(actions.json.containerActions.map((a: any) => a.request_id)).toContain(
      r.headers.get('x-openstack-request-id'),
    );
  });
  it('finds it by name, returns logs as a JSON string and runs exec', async () => {
    const byName = await api('GET', '/containers/web1');
    expect(byName.json.uuid).toBe(c.uuid);
    const logs = await api('GET', `/containers/${c.uuid}/logs?stdout=True&stderr=True&timestamps=False&tail=all`);
    expect(logs.status).toBe(200);
    expect(logs.json).toBe('started\n');
    const exec = await api(
      'POST',
      `/containers/${c.uuid}/execute?command=${encodeURIComponent('sh -c "echo $A; exit 3"')}`,
    );
    expect(exec.status, exec.text).toBe(200);
    expect(exec.json).toEqual({ output: '1\n', exit_code: 3, exec_id: null, proxy_url: null });
    // The default seccomp profile: no user namespaces, no swap; ordinary work goes on.
    for (const cmd of ['unshare -U true', 'swapon /dev/null']) {
      const denied = await api('POST', `/containers/${c.uuid}/execute?command=${encodeURIComponent(cmd)}`);
      expect(denied.json.exit_code, cmd).not.toBe(0);
      expect(denied.json.output, cmd).toMatch(/Operation not permitted/);
    }
    // A command that does not exist is the exec's result (as Docker: 127), not a server error.
    const missing = await api('POST', `/containers/${c.uuid}/execute?command=no-such-command`);
    expect(missing.status, missing.text).toBe(200);
    expect(missing.json).toMatchObject({ exit_code: 127, output: expect.stringContaining('no-such-command') });
  });
  it('reports top and stats', async () => {
    const top = await api('GET', `/containers/${c.uuid}/top?ps_args=None`);
    expect(top.status, top.text).toBe(200);
    expect(top.json.Titles).toContain('PID');
    expect(top.json.Processes.some((p: string[]) => p.join(' ').includes('sleep 600'))).toBe(true);
    const stats = await api('GET', `/containers/${c.uuid}/stats`);
    expect(Object.keys(stats.json).sort()).toEqual([
      'BLOCK I/O(B)',
      'CONTAINER',
      'CPU %',
      'MEM %',
      'MEM LIMIT(MiB)',
      'MEM USAGE(MiB)',
      'NET I/O(B)',
    ]);
    expect(stats.json['MEM LIMIT(MiB)']).toBe(64);
  });
  it('updates memory and cpu of a running container in place', async () => {
    const patched = await api('PATCH', `/containers/${c.uuid}`, { memory: '96', cpu: 0.5 });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.json).toMatchObject({ memory: '96', cpu: 0.5, status: 'Running' });
    let limit = 0;
    for (let i = 0; i < 50 && limit !== 96; i++) {
      await new Promise((r) => setTimeout(r, 100));
      limit = (await api('GET', `/containers/${c.uuid}/stats`)).json['MEM LIMIT(MiB)'];
    }
    expect(limit).toBe(96);
  });
  it('round-trips files with put_archive and get_archive (base64 tar)', async () => {
    const write = await api(
      'POST',
      `/containers/${c.uuid}/execute?command=${encodeURIComponent('sh -c "mkdir -p /data && echo payload-42 > /data/src.txt"')}`,
    );
    expect(write.json.exit_code).toBe(0);
    const got = await api('GET', `/containers/${c.uuid}/get_archive?path=/data/src.txt`);
    expect(got.status, got.text).toBe(200);
    expect(got.json.stat).toMatchObject({ name: 'src.txt', size: 11 });
    const put = await api('POST', `/containers/${c.uuid}/put_archive?path=/tmp`, { data: got.json.data });
    expect(put.status, put.text).toBe(200);
    const check = await api('POST', `/containers/${c.uuid}/execute?command=${encodeURIComponent('cat /tmp/src.txt')}`);
    expect(check.json).toMatchObject({ exit_code: 0, output: 'payload-42\n' });
    const missing = await api('GET', `/containers/${c.uuid}/get_archive?path=/no/such/file`);
    expect(missing.status).toBe(404);
  });
  it('puts an archive larger than a command line can carry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'krater-put-'));
    try {
      const payload = randomBytes(600 * 1024);
      writeFileSync(join(dir, 'big.bin'), payload);
      const tar = execFileSync('tar', ['-C', dir, '-cf', '-', 'big.bin']);
      const put = await api('POST', `/containers/${c.uuid}/put_archive?path=/tmp`, { data: tar.toString('base64') });
      expect(put.status, put.text).toBe(200);
      const sum = await api(
        'POST',
        `/containers/${c.uuid}/execute?command=${encodeURIComponent('md5sum /tmp/big.bin')}`,
      );
      expect(sum.json.output.split(' ')[0]).toBe(createHash('md5').update(payload).digest('hex'));
      const bad = await api('POST', `/containers/${c.uuid}/put_archive?path=/no/such/dir`, {
        data: tar.toString('base64'),
      });
      expect(bad.status).toBeGreaterThanOrEqual(400);
      expect(bad.status).toBeLessThan(500);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('refuses actions in the wrong state with 409', async () => {
    for (const [path, method] of [
      ['unpause', 'POST'],
      ['start', 'POST'],
    ] as const) {
      const r = await api(method, `/containers/${c.uuid}/${path}`);
      expect(r.status, path).toBe(409);
      expect(r.json.errors[0].code).toBe('container.invalid-state-exception');
    }
    const del = await api('DELETE', `/containers/${c.uuid}`);
    expect(del.status).toBe(409);
  });
  it('pauses, unpauses, stops, starts and kills', async () => {
    expect((await api('POST', `/containers/${c.uuid}/pause`)).status).toBe(202);
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Paused', 'Paused');
    expect((await api('POST', `/containers/${c.uuid}/execute?command=true`)).status).toBe(409);
    expect((await api('POST', `/containers/${c.uuid}/unpause`)).status).toBe(202);
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    expect((await api('POST', `/containers/${c.uuid}/stop?timeout=1`)).status).toBe(202);
    const stopped = await waitContainer(k, token, c.uuid, (x) => x.status === 'Stopped', 'Stopped');
    expect(stopped.status_detail).toMatch(/^Exited\(137\)/);
    expect((await api('POST', `/containers/${c.uuid}/start`)).status).toBe(202);
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running again');
    expect((await api('POST', `/containers/${c.uuid}/kill?signal=SIGKILL`)).status).toBe(202);
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Stopped', 'Stopped after kill');
  });
  it('deletes: the container leaves lists and show gives 404', async () => {
    expect((await api('DELETE', `/containers/${c.uuid}`)).status).toBe(204);
    await waitGone(k, token, c.uuid);
    expect((await api('GET', `/containers/${c.uuid}`)).status).toBe(404);
  });
  it('deletes a running container with ?stop=true', async () => {
    const x = await run({ command: ['sleep', '600'] });
    await waitContainer(k, token, x.uuid, (y) => y.status === 'Running', 'Running');
    expect((await api('DELETE', `/containers/${x.uuid}?stop=true`)).status).toBe(204);
    await waitGone(k, token, x.uuid);
  });
});

describe('lifecycle behaviour', () => {
  it('restarts a crashing container under on-failure up to its retry count', async () => {
    const x = await run({
      command: ['sh', '-c', 'echo run; exit 2'],
      restart_policy: { Name: 'on-failure', MaximumRetryCount: '2' },
    });
    expect(x.restart_policy).toEqual({ Name: 'on-failure', MaximumRetryCount: '2' });
    const logsHaveThreeRuns = async () => {
      for (let i = 0; i < 100; i++) {
        const logs = await api('GET', `/containers/${x.uuid}/logs`);
        if (logs.status === 200 && (logs.json.match(/run/g) ?? []).length >= 3) return logs.json;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('container was not restarted twice');
    };
    expect((await logsHaveThreeRuns()).match(/run/g)).toHaveLength(3);
    const final = await waitContainer(k, token, x.uuid, (y) => y.status === 'Stopped', 'Stopped');
    expect(final.status_detail).toMatch(/^Exited\(2\)/);
    await api('DELETE', `/containers/${x.uuid}`);
  });
  // The shim copies each stream on its own, so writes to both within a fraction of a millisecond may swap (as in
  // Docker); writes further apart keep their order.
  it('logs: timestamps, since, and stdout/stderr in the order they were written', async () => {
    const x = await run({
      command: ['sh', '-c', 'echo one; sleep 1.5; echo two >&2; sleep 0.2; echo three; sleep 600'],
    });
    let text = '';
    for (let i = 0; i < 100 && !text.includes('three'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      const r = await api('GET', `/containers/${x.uuid}/logs?stdout=True&stderr=True`);
      if (r.status === 200) text = r.json;
    }
    expect(text).toBe('one\ntwo\nthree\n');
    const stamped = (await api('GET', `/containers/${x.uuid}/logs?timestamps=True`)).json as string;
    const lines = stamped.trimEnd().split('\n');
    expect(lines.map((l) => l.split(' ')[1])).toEqual(['one', 'two', 'three']);
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z /);
    const times = lines.map((l) => Date.parse(l.split(' ')[0]!.replace(/\d{6}Z$/, 'Z')));
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(1000);
    // since (Zun's `YYYY-MM-DD HH:MM:SS,fff`, UTC): what came after the pause only.
    const mid = new Date((times[0]! + times[1]!) / 2).toISOString();
    const since = `${mid.slice(0, 10)} ${mid.slice(11, 19)},${mid.slice(20, 23)}`;
    const after = await api('GET', `/containers/${x.uuid}/logs?since=${encodeURIComponent(since)}`);
    expect(after.status, after.text).toBe(200);
    expect(after.json).toBe('two\nthree\n');
    expect((await api('GET', `/containers/${x.uuid}/logs?stderr=False`)).json).toBe('one\nthree\n');
    expect((await api('GET', `/containers/${x.uuid}/logs?tail=1`)).json).toBe('three\n');
    await api('DELETE', `/containers/${x.uuid}?stop=true`);
  });
  it('pins cpu_policy=dedicated containers to host CPUs of their own', async () => {
    const pinned: string[] = [];
    const uuids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const x = await run({ command: ['sleep', '600'], cpu: 1, cpu_policy: 'dedicated' });
      uuids.push(x.uuid);
      await waitContainer(k, token, x.uuid, (y) => y.status === 'Running', 'Running');
      const r = await api(
        'POST',
        `/containers/${x.uuid}/execute?command=${encodeURIComponent('grep Cpus_allowed_list /proc/self/status')}`,
      );
      pinned.push(r.json.output.split(':')[1].trim());
    }
    for (const p of pinned) expect(p).toMatch(/^\d+$/);
    expect(pinned[0]).not.toBe(pinned[1]);
    // Asking for every CPU of the host while two are held cannot be met: Error with the reason.
    const greedy = await run({ command: ['sleep', '600'], cpu: cpus().length, cpu_policy: 'dedicated' });
    const e = await waitContainer(k, token, greedy.uuid, (y) => y.status === 'Error', 'Error');
    expect(e.status_reason).toMatch(/Not enough dedicated CPUs/);
    for (const u of [...uuids, greedy.uuid]) await api('DELETE', `/containers/${u}?force=true`);
  });
  it('reports an OOM kill in status_reason', async () => {
    const x = await run({ memory: '8', command: ['sh', '-c', 'x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done'] });
    const oom = await waitContainer(k, token, x.uuid, (y) => y.status === 'Stopped', 'Stopped');
    expect(oom.status_reason).toMatch(/OOMKilled/);
    expect(oom.status_detail).toMatch(/^Exited\(137\)/);
    await api('DELETE', `/containers/${x.uuid}`);
  });
  it('turns a failing healthcheck unhealthy and a passing one healthy', async () => {
    const x = await run({
      command: ['sleep', '600'],
      healthcheck: { cmd: 'test -f /tmp/ok', interval: 1, retries: 2, timeout: 1 },
    });
    expect(x.healthcheck).toEqual({ test: 'test -f /tmp/ok', interval: 1, retries: 2, timeout: 1 });
    await waitContainer(k, token, x.uuid, (y) => /\(unhealthy\)/.test(y.status_detail ?? ''), 'unhealthy');
    await api('POST', `/containers/${x.uuid}/execute?command=${encodeURIComponent('touch /tmp/ok')}`);
    await waitContainer(k, token, x.uuid, (y) => /\(healthy\)/.test(y.status_detail ?? ''), 'healthy');
    await api('DELETE', `/containers/${x.uuid}?stop=true`);
  });
  it('removes an auto_remove container when it exits', async () => {
    const x = await run({ command: ['true'], auto_remove: true });
    await waitGone(k, token, x.uuid);
  });
  it('puts a container asking for a runtime no host offers in Error (RuntimeFilter); runc is there', async () => {
    const bad = await run({ command: ['true'], runtime: 'no-such-runtime' });
    const e = await waitContainer(k, token, bad.uuid, (y) => y.status === 'Error', 'Error');
    expect(e.status_reason).toBe('There are not enough hosts available.');
    expect(e.host).toBeNull();
    const good = await run({ command: ['sleep', '60'], runtime: 'runc' });
    await waitContainer(k, token, good.uuid, (y) => y.status === 'Running', 'Running');
    for (const u of [bad.uuid, good.uuid]) await api('DELETE', `/containers/${u}?force=true`);
  });
  it('puts a container with an unknown image in Error with the reason', async () => {
    const x = await run({ image: 'no-such-image-xyz' });
    const e = await waitContainer(k, token, x.uuid, (y) => y.status === 'Error', 'Error');
    expect(e.status_reason).toMatch(/no-such-image-xyz|not found/i);
    expect((await api('DELETE', `/containers/${x.uuid}`)).status).toBe(204);
  });
});

describe('quotas and tenancy', () => {
  it('enforces the project quota with 403', async () => {
    const project = (await api('GET', '/containers')).json;
    void project;
    const token2 = (await k.passwordToken()).body.token.project.id as string;
    expect((await api('PUT', `/quotas/${token2}`, { containers: 0 })).status).toBe(200);
    const r = await api('POST', '/containers', { image: 'busybox' });
    expect(r.status).toBe(403);
    expect(r.json.errors[0].title).toMatch(/Quota exceeded for resources: \['containers'\]/);
    const usage = await api('GET', `/quotas/${token2}?usages=True`);
    expect(usage.json.containers.limit).toBe(0);
    // Concurrent creates never overshoot the limit: room for two more, eight ask at once. Earlier tests' deletes
    // finish asynchronously (a Deleting row still counts), so wait for them before taking the baseline.
    await expect
      .poll(
        async () =>
          ((await api('GET', '/containers')).json.containers as { status: string }[]).filter(
            (c) => c.status === 'Deleting',
          ).length,
        { timeout: 30_000 },
      )
      .toBe(0);
    const inUse = (await api('GET', `/quotas/${token2}?usages=True`)).json.containers.in_use as number;
    const made: { json: { uuid: string } }[] = [];
    try {
      expect((await api('PUT', `/quotas/${token2}`, { containers: inUse + 2 })).status).toBe(200);
      const burst = await Promise.all(
        Array.from({ length: 8 }, () => api('POST', '/containers', { image: 'busybox' })),
      );
      made.push(...burst.filter((b) => b.status === 202));
      // (Never more than fits; a burst that meets at the limit may refuse one that would have fitted.)
      expect(made.length).toBeLessThanOrEqual(2);
      for (const b of burst.filter((x) => x.status !== 202)) expect(b.status).toBe(403);
      expect((await api('GET', `/quotas/${token2}?usages=True`)).json.containers.in_use).toBe(inUse + made.length);
    } finally {
      for (const m of made) await api('DELETE', `/containers/${m.json.uuid}?force=true`);
      expect((await api('DELETE', `/quotas/${token2}`)).status).toBe(200);
    }
  });
  it("hides another project's containers and refuses admin APIs to members", async () => {
    const x = await run({ command: ['sleep', '600'] });
    const admin = { token, base: '/identity/v3' };
    const proj = await k.http('POST', `${admin.base}/projects`, {
      token,
      body: { project: { name: 'zun-other', domain_id: 'default' } },
    });
    const user = await k.http('POST', `${admin.base}/users`, {
      token,
      body: { user: { name: 'zun-member', domain_id: 'default', password: 'pw-member-1' } },
    });
    const member = (await k.http('GET', `${admin.base}/roles?name=member`, { token })).json.roles[0];
    expect(
      (
        await k.http(
          'PUT',
          `${admin.base}/projects/${proj.json.project.id}/users/${user.json.user.id}/roles/${member.id}`,
          { token },
        )
      ).status,
    ).toBe(204);
    const other = (await k.passwordToken('zun-member', 'pw-member-1', 'zun-other')).token;
    const show = await k.http('GET', `/container/v1/containers/${x.uuid}`, { token: other, headers: ZUN() });
    expect(show.status).toBe(404);
    const list = await k.http('GET', '/container/v1/containers', { token: other, headers: ZUN() });
    expect(list.json.containers).toEqual([]);
    const services = await k.http('GET', '/container/v1/services', { token: other, headers: ZUN() });
    expect(services.status).toBe(403);
    expect(services.json.errors[0].code).toBe('container.policy-not-authorized');
    const mine = await k.http('GET', `/container/v1/containers/${x.uuid}`, { token, headers: ZUN() });
    expect(mine.json.host).toBeDefined();
    await api('DELETE', `/containers/${x.uuid}?stop=true`);
  });
  it('lists the compute service and host for admins', async () => {
    const s = await api('GET', '/services');
    expect(s.json.services[0]).toMatchObject({ binary: 'zun-compute', state: 'up', disabled: false });
    const h = await api('GET', '/hosts');
    expect(h.json.hosts[0].hostname).toBe(s.json.services[0].host);
    expect((await api('GET', '/hosts', undefined, '1.3')).status).toBe(406);
    // `*_used` are the containers' claims (as Zun's resource tracker), here one more container's worth.
    const before = (await api('GET', `/hosts/${h.json.hosts[0].uuid}`)).json;
    const x = await run({ command: ['sleep', '60'], cpu: 0.5, memory: '64' });
    const after = (await api('GET', `/hosts/${h.json.hosts[0].uuid}`)).json;
    expect(after.total_containers).toBe(before.total_containers + 1);
    expect(after.cpu_used).toBeCloseTo(before.cpu_used + 0.5, 3);
    expect(after.mem_used).toBe(before.mem_used + 64);
    expect(after.cpus).toBeGreaterThan(0);
    await api('DELETE', `/containers/${x.uuid}?force=true`);
  });
});

describe('the Docker-like krater CLI', () => {
  const krater = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [join(REPO_ROOT, 'bin/krater.js'), ...args],
        { env: k.oscEnv(), timeout: 60_000 },
        (err, stdout, stderr) => {
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
        },
      );
    });
  it('runs attached, streams the output and returns the exit code; --rm removes it', async () => {
    const r = await krater([
      'run',
      '--rm',
      '--name',
      'cli-att',
      'busybox',
      'sh',
      '-c',
      'echo one; sleep 0.5; echo two; exit 3',
    ]);
    expect(r.stdout).toBe('one\ntwo\n');
    expect(r.code).toBe(3);
    expect((await api('GET', '/containers/cli-att')).status).toBe(404);
  });
  it('runs detached, lists, execs, follows logs and removes', async () => {
    const d = await krater([
      'run',
      '-d',
      '--name',
      'cli-det',
      '-e',
      'X=42',
      '-m',
      '32m',
      'busybox',
      'sh',
      '-c',
      'echo ready; sleep 600',
    ]);
    expect(d.code, d.stderr).toBe(0);
    const uuid = d.stdout.trim();
    expect((await api('GET', `/containers/${uuid}`)).json.memory).toBe('32');
    const ps = await krater(['ps']);
    expect(ps.stdout).toContain('cli-det');
    const ex = await krater(['exec', 'cli-det', 'sh', '-c', 'echo $X; exit 2']);
    expect(ex).toMatchObject({ stdout: '42\n', code: 2 });
    const logs = await krater(['logs', 'cli-det']);
    expect(logs.stdout).toBe('ready\n');
    const rm = await krater(['rm', '-f', 'cli-det']);
    expect(rm.code).toBe(0);
    await waitGone(k, token, uuid);
    const missing = await krater(['stop', 'no-such-container']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('could not be found');
  });
});
