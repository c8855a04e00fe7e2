import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataplaneTag } from '../../src/app/control-plane.js';
import { startCloud, waitContainer, ZUN } from '../containers/fixtures.js';
import { fetchUntil, freePort, type Krater, sleep } from '../helpers/krater.js';

/**
 * Published ports (`krater run -p`, label `krater.publish`) as users meet them: bound in the kernel (nftables DNAT in
 * Krater's host table) while the container runs, no process per port, the host-port policy for members, 409 for a
 * second binding of a socket, the `published_ports` quota — on a real `krater up` with real containers.
 */
let k: Krater;
let admin: string;
let member: string;
let memberProject: string;
let adminProject: string;
let tag: string;

const HTTPD = (text: string) => [
  'sh',
  '-c',
  `mkdir -p /www && echo ${text} > /www/index.html && httpd -f -p 80 -h /www`,
];

async function create(token: string, body: Record<string, unknown>, run = true) {
  return k.http('POST', `/container/v1/containers?run=${run}`, {
    token,
    headers: ZUN(),
    body: { image: 'busybox', ...body },
  });
}
const action = (token: string, id: string, what: string) =>
  k.http('POST', `/container/v1/containers/${id}/${what}`, { token, headers: ZUN() });

/** Answers within a second, or '' (refused, reset, timed out). */
async function get(port: number, timeoutMs = 1000): Promise<string> {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(timeoutMs) })).text();
  } catch {
    return '';
  }
}

async function until(pred: () => Promise<boolean>, what: string, tries = 50): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await pred()) return;
    await sleep(200);
  }
  throw new Error(`never: ${what}\n${k.output().slice(-2000)}`);
}

/** `n` consecutive TCP ports free on 127.0.0.1 (checked by binding each). */
async function freeRange(n: number): Promise<number> {
  for (;;) {
    // Below the ephemeral range (32768+), where outgoing connections of the machine take ports at any time.
    const base = randomInt(20000, 32000 - n);
    let ok = true;
    for (let p = base; p < base + n && ok; p++) {
      ok = await new Promise<boolean>((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(false));
        s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
      });
    }
    if (ok) return base;
  }
}

/** Whether something on this host holds 127.0.0.1:port (Krater's reservation of a bound published port). */
function held(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(true));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
  });
}

function kraterPid(): number {
  return Number(
    execFileSync('pgrep', ['-f', `bin/krater.js up --data-dir ${k.dataDir}`])
      .toString()
      .trim()
      .split('\n')[0],
  );
}

/** Every process below Krater's (its agent's containerd, shims, helpers). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone */
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [c, pp] of parent)
      if (pp === p) {
        out.push(c);
        walk(c);
      }
  };
  walk(root);
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

function hostTable(): string {
  try {
    return execFileSync('nft', ['list', 'table', 'ip', `krater-${tag}`], { encoding: 'utf8' });
  } catch {
    return '';
  }
}

beforeAll(async () => {
  k = await startCloud();
  tag = dataplaneTag(k.dataDir);
  const t = await k.passwordToken();
  admin = t.token;
  adminProject = t.body.token.project.id;
  const proj = await k.http('POST', '/identity/v3/projects', {
    token: admin,
    body: { project: { name: 'pub-demo', domain_id: 'default' } },
  });
  memberProject = proj.json.project.id;
  const user = await k.http('POST', '/identity/v3/users', {
    token: admin,
    body: { user: { name: 'pub-member', domain_id: 'default', password: 'pw-pub-member' } },
  });
  const role = (await k.http('GET', '/identity/v3/roles?name=member', { token: admin })).json.roles[0];
  await k.http('PUT', `/identity/v3/projects/${memberProject}/users/${user.json.user.id}/roles/${role.id}`, {
    token: admin,
  });
  member = (await k.passwordToken('pub-member', 'pw-pub-member', 'pub-demo')).token;
}, 180_000);

afterAll(async () => {
  await k?.destroy();
  // Purge removed the host table with everything else.
  if (tag) expect(hostTable()).toBe('');
});

describe('published ports in the kernel', () => {
  let web = '';
  let port = 0;

  it("a member's port on 127.0.0.1 answers and is a field of the container", async () => {
    port = await freePort();
    const r = await create(member, {
      name: 'web',
      command: HTTPD('kernel-published'),
      labels: { 'krater.publish': `127.0.0.1:${port}:80` },
    });
    expect(r.status, r.text).toBe(202);
    web = r.json.uuid;
    expect(r.json.published_ports).toEqual([
      { host_ip: '127.0.0.1', host_port: port, container_port: 80, protocol: 'tcp' },
    ]);
    await waitContainer(k, member, web, (c) => c.status === 'Running', 'Running');
    expect(await fetchUntil(`http://127.0.0.1:${port}/`, 'kernel-published')).toContain('kernel-published');
    expect(hostTable()).toContain(`127.0.0.1 . tcp . ${port}`);
    // No process serves it: nothing of Krater's has the port proxy's marker.
    for (const pid of descendants(kraterPid())) expect(cmdline(pid)).not.toContain('krater-proxy');
  });

  it('stops answering when the container stops, answers again when it starts', async () => {
    expect((await action(member, web, 'stop?timeout=1')).status).toBe(202);
    await waitContainer(k, member, web, (c) => c.status === 'Stopped', 'Stopped');
    await until(async () => (await get(port)) === '', 'the port freed after stop');
    expect(hostTable(), k.output().slice(-3000)).not.toContain(`. ${port} :`);
    expect(await held(port)).toBe(false);
    expect((await action(member, web, 'start')).status).toBe(202);
    await waitContainer(k, member, web, (c) => c.status === 'Running', 'Running');
    expect(await fetchUntil(`http://127.0.0.1:${port}/`, 'kernel-published')).toContain('kernel-published');
  });

  it('answers again after Krater is killed and restarted (the port held again)', async () => {
    process.kill(kraterPid(), 'SIGKILL');
    await sleep(1500);
    await k.restart();
    admin = (await k.passwordToken()).token;
    member = (await k.passwordToken('pub-member', 'pw-pub-member', 'pub-demo')).token;
    await waitContainer(k, member, web, (c) => c.status === 'Running', 'Running after restart');
    expect(await fetchUntil(`http://127.0.0.1:${port}/`, 'kernel-published')).toContain('kernel-published');
    await until(() => held(port), 'the port held by the restarted agent');
  });

  it('200 ports on a container: no process per port, every port answers', async () => {
    const n = 200;
    expect(
      (
        await k.http('PUT', `/container/v1/quotas/${adminProject}`, {
          token: admin,
          headers: ZUN(),
          body: { published_ports: 1000 },
        })
      ).status,
    ).toBe(200);
    const base = await freeRange(n);
    const spec = Array.from({ length: n }, (_, i) => `127.0.0.1:${base + i}:80`).join(',');
    // A container of the project without ports first: the project's network, name server and runc shim exist.
    const plain = await create(admin, { name: 'plain', command: ['sleep', '600'] }, false);
    await waitContainer(k, admin, plain.json.uuid, (c) => c.status === 'Created', 'Created');
    await sleep(1000);
    const pid = kraterPid();
    const before = new Set(descendants(pid));
    const r = await create(
      admin,
      { name: 'many', command: HTTPD('many-ports'), labels: { 'krater.publish': spec } },
      false,
    );
    expect(r.status, r.text).toBe(202);
    await waitContainer(k, admin, r.json.uuid, (c) => c.status === 'Created', 'Created');
    await sleep(1000);
    // (The dataplane keeps `ip -batch`/`nft -f` ready for its namespace pool, replaced as entries are taken: those
    // tools are not counted.)
    const isTool = (p: number) => /^(ip|nft|nsenter)\0/.test(cmdline(p).replace(/^\/usr\/s?bin\//, ''));
    const created = descendants(pid).filter((p) => !before.has(p) && !isTool(p));
    expect(created, 'processes started for a run=false container with 200 published ports').toEqual([]);
    expect((await action(admin, r.json.uuid, 'start')).status).toBe(202);
    await waitContainer(k, admin, r.json.uuid, (c) => c.status === 'Running', 'Running');
    expect(await fetchUntil(`http://127.0.0.1:${base}/`, 'many-ports')).toContain('many-ports');
    const bodies: string[] = [];
    for (let i = 0; i < n; i += 20)
      bodies.push(...(await Promise.all(Array.from({ length: 20 }, (_, j) => get(base + i + j, 5000)))));
    expect(bodies.filter((b) => !b.includes('many-ports')).length).toBe(0);
    // Running it added the container's own processes (its shell/httpd and at most a shim), not one per port.
    const running = descendants(pid).filter((p) => !before.has(p) && !isTool(p));
    expect(running.length).toBeLessThanOrEqual(4);
    for (const id of [r.json.uuid, plain.json.uuid])
      await k.http('DELETE', `/container/v1/containers/${id}?force=true`, { token: admin, headers: ZUN() });
  });
});

describe('host-port policy, conflicts and quota', () => {
  it('a member gets 403 for a privileged port or 0.0.0.0; an admin may', async () => {
    for (const spec of ['127.0.0.1:22:80', `0.0.0.0:${await freePort()}:80`, `${await freePort()}:80`]) {
      const r = await create(member, { labels: { 'krater.publish': spec } }, false);
      expect(r.status, `${spec}: ${r.text}`).toBe(403);
      expect(r.json.errors[0].detail).toMatch(
        /container:create:publish_any_host_port.*outside the host addresses \(127\.0\.0\.1\) and ports \(1024-65535\)/,
      );
    }
    const p = await freePort();
    const ok = await create(admin, {
      name: 'any',
      command: HTTPD('any-address'),
      labels: { 'krater.publish': `0.0.0.0:${p}:80` },
    });
    expect(ok.status, ok.text).toBe(202);
    await waitContainer(k, admin, ok.json.uuid, (c) => c.status === 'Running', 'Running');
    // 0.0.0.0 covers 127.0.0.1 too.
    expect(await fetchUntil(`http://127.0.0.1:${p}/`, 'any-address')).toContain('any-address');
    const priv = await create(admin, { labels: { 'krater.publish': '127.0.0.1:22:80' } }, false);
    expect(priv.status, priv.text).toBe(202);
    // A second binding overlapping 0.0.0.0 (either way round) is a 409, also across projects.
    const dup = await create(member, { labels: { 'krater.publish': `127.0.0.1:${p}:80` } }, false);
    expect(dup.status, dup.text).toBe(409);
    expect(dup.json.errors[0].detail).toMatch(
      new RegExp(`Bind for 127.0.0.1:${p}/tcp failed: the port is already published`),
    );
    for (const c of [ok.json.uuid, priv.json.uuid])
      await k.http('DELETE', `/container/v1/containers/${c}?force=true`, { token: admin, headers: ZUN() });
  });

  it('409 on a duplicate, the same port over UDP is another socket, a deleted container frees its claim', async () => {
    const p = await freePort();
    const first = await create(member, { name: 'first', labels: { 'krater.publish': `127.0.0.1:${p}:80` } }, false);
    expect(first.status, first.text).toBe(202);
    const again = await create(member, { labels: { 'krater.publish': `127.0.0.1:${p}:8080` } }, false);
    expect(again.status).toBe(409);
    const wild = await create(admin, { labels: { 'krater.publish': `0.0.0.0:${p}:80` } }, false);
    expect(wild.status).toBe(409);
    const udp = await create(member, { labels: { 'krater.publish': `127.0.0.1:${p}:53/udp` } }, false);
    expect(udp.status, udp.text).toBe(202);
    // Concurrent creates of one socket: at most one wins.
    const q = await freePort();
    const burst = await Promise.all(
      Array.from({ length: 6 }, () => create(member, { labels: { 'krater.publish': `127.0.0.1:${q}:80` } }, false)),
    );
    expect(burst.filter((b) => b.status === 202).length).toBeLessThanOrEqual(1);
    for (const b of burst) expect([202, 409]).toContain(b.status);
    for (const c of [first, udp, ...burst.filter((b) => b.status === 202)]) {
      await waitContainer(k, member, c.json.uuid, (x) => x.status === 'Created', 'Created');
      await k.http('DELETE', `/container/v1/containers/${c.json.uuid}`, { token: member, headers: ZUN() });
    }
    await until(
      async () =>
        (await k.http('GET', `/container/v1/containers/${first.json.uuid}`, { token: member, headers: ZUN() }))
          .status === 404,
      'deleted',
    );
    const reuse = await create(member, { labels: { 'krater.publish': `127.0.0.1:${p}:80` } }, false);
    expect(reuse.status, reuse.text).toBe(202);
    await waitContainer(k, member, reuse.json.uuid, (x) => x.status === 'Created', 'Created');
    await k.http('DELETE', `/container/v1/containers/${reuse.json.uuid}`, { token: member, headers: ZUN() });
  });

  it('the published_ports quota is shown and enforced', async () => {
    const inUse = (
      await k.http('GET', `/container/v1/quotas/${memberProject}?usages=True`, { token: member, headers: ZUN() })
    ).json.published_ports.in_use as number;
    const set = await k.http('PUT', `/container/v1/quotas/${memberProject}`, {
      token: admin,
      headers: ZUN(),
      body: { published_ports: inUse + 2 },
    });
    expect(set.status, set.text).toBe(200);
    const [a, b, c] = [await freePort(), await freePort(), await freePort()];
    const over = await create(
      member,
      { labels: { 'krater.publish': `127.0.0.1:${a}:80,127.0.0.1:${b}:81,127.0.0.1:${c}:82` } },
      false,
    );
    expect(over.status, over.text).toBe(403);
    expect(over.json.errors[0].title).toMatch(/Quota exceeded for resources: \['published_ports'\]/);
    const fits = await create(member, { labels: { 'krater.publish': `127.0.0.1:${a}:80,127.0.0.1:${b}:81` } }, false);
    expect(fits.status, fits.text).toBe(202);
    const usage = await k.http('GET', `/container/v1/quotas/${memberProject}?usages=True`, {
      token: member,
      headers: ZUN(),
    });
    expect(usage.json.published_ports).toEqual({ limit: inUse + 2, in_use: inUse + 2 });
    await waitContainer(k, member, fits.json.uuid, (x) => x.status === 'Created', 'Created');
    await k.http('DELETE', `/container/v1/containers/${fits.json.uuid}`, { token: member, headers: ZUN() });
    await k.http('DELETE', `/container/v1/quotas/${memberProject}`, { token: admin, headers: ZUN() });
  });

  it('IPv6 host addresses are refused with 400', async () => {
    const r = await create(member, { labels: { 'krater.publish': '[::1]:8080:80' } }, false);
    expect(r.status).toBe(400);
    expect(r.json.errors[0].detail).toMatch(/IPv6 host addresses are not supported/);
  });

  it("a port a host program holds (Krater's own API port) is never taken over: the start fails with the reason", async () => {
    const r = await create(member, {
      command: ['sleep', '600'],
      labels: { 'krater.publish': `127.0.0.1:${k.port}:80` },
    });
    expect(r.status, r.text).toBe(202);
    const c = await waitContainer(k, member, r.json.uuid, (x) => x.status === 'Error', 'Error');
    expect(c.status_reason).toMatch(new RegExp(`Bind for 127.0.0.1:${k.port}/tcp failed: address already in use`));
    // The API still answers on that port.
    expect((await k.http('GET', '/container/v1/containers', { token: member, headers: ZUN() })).status).toBe(200);
    expect(hostTable()).not.toContain(`. ${k.port} :`);
  });
});
