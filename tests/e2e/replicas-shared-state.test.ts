/**
 * Replicas share state (issue 12, item 1): two `krater api` replicas on one PostgreSQL, behind a load balancer (a
 * TCP round-robin in this test) whose URL is the deployment's `--public-url`, with one master key file and one
 * image directory, plus a `krater agent` for a separate host. A token issued by one replica validates on the other,
 * also after `krater token-keys rotate`; the catalog stays at the configured URL when the second replica starts; an
 * image uploaded through one replica downloads through the other; a commit on the agent's host and a container with
 * `image_driver=glance` there move image data through the image API, not the API's data directory.
 *
 *   npx vitest run tests/e2e/replicas-shared-state.test.ts
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { busyboxArchive, waitContainer, ZUN } from '../containers/fixtures.js';
import {
  cleanEnv,
  ensureBuilt,
  freePort,
  type HttpOptions,
  http,
  type Krater,
  REPO_ROOT,
  sleep,
  uniq,
} from '../helpers/krater.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 600_000 });

let db: TestDatabase;
let work: string;
let lb: Server;
let lbUrl = '';
const targets: number[] = [];
let r1: Replica;
let r2: Replica;
let adminPassword = '';
let agent: AgentProc;
const host = uniq('krater-shared');

/** A TCP round-robin over the replicas: the deployment's public URL, as HAProxy would be. */
async function startBalancer(): Promise<void> {
  let next = 0;
  lb = createServer((client) => {
    const port = targets[next++ % targets.length];
    if (port === undefined) return client.destroy();
    const upstream = connect(port, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => lb.listen(0, '127.0.0.1', resolve));
  const addr = lb.address();
  if (!addr || typeof addr === 'string') throw new Error('no balancer address');
  lbUrl = `http://127.0.0.1:${addr.port}`;
}

function replicaEnv(): Record<string, string> {
  return {
    KRATER_MASTER_KEY_FILE: join(work, 'master.key'),
    KRATER_IMAGE_DIR: join(work, 'images'),
    KRATER_NETWORKING: 'none',
  };
}

/** One `krater api` replica: its own data dir and port, the shared store, master key, image dir and public URL. */
class Replica {
  proc!: ChildProcess;
  out = '';
  port = 0;
  extraEnv: Record<string, string> = {};
  constructor(readonly dataDir: string) {}
  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.port = await freePort();
    const args = ['api', '--data-dir', this.dataDir, '--bind', '127.0.0.1', '--port', String(this.port)];
    args.push('--database', db.url, '--public-url', lbUrl, '--log-level', 'warn', '--no-clouds-yaml');
    this.proc = spawn(process.execPath, [join(REPO_ROOT, 'bin/krater.js'), ...args], {
      cwd: REPO_ROOT,
      env: { ...cleanEnv(), HOME: this.dataDir, ...replicaEnv(), ...this.extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const s of [this.proc.stdout!, this.proc.stderr!])
      s.on('data', (b: Buffer) => {
        this.out += b.toString();
      });
    for (let i = 0; i < 600; i++) {
      if (this.proc.exitCode !== null) throw new Error(`krater api exited (${this.proc.exitCode}):\n${this.out}`);
      const r = await http('GET', `${this.baseUrl}/identity/v3`).catch(() => undefined);
      if (r?.status === 200) return;
      await sleep(100);
    }
    throw new Error(`krater api not ready:\n${this.out}`);
  }
  http(method: string, path: string, opts?: HttpOptions) {
    return http(method, `${this.baseUrl}${path}`, opts);
  }
  async passwordToken(): Promise<{ token: string }> {
    const auth = {
      identity: {
        methods: ['password'],
        password: { user: { name: 'admin', domain: { name: 'Default' }, password: adminPassword } },
      },
      scope: { project: { name: 'admin', domain: { name: 'Default' } } },
    };
    const r = await this.http('POST', '/identity/v3/auth/tokens', { body: { auth } });
    const token = r.headers.get('x-subject-token');
    if (r.status !== 201 || !token) throw new Error(`token request failed: ${r.status} ${r.text}`);
    return { token };
  }
  output(): string {
    return this.out;
  }
  /** What the container fixtures need of a Krater instance (http, output). */
  asKrater(): Krater {
    return this as unknown as Krater;
  }
  stop(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGTERM');
    });
  }
}

/** A `krater agent` for `host` on the replicas' store; image data reaches it through the catalog's image API. */
class AgentProc {
  proc!: ChildProcess;
  out = '';
  async start(): Promise<void> {
    const dataDir = join(work, 'agent');
    this.proc = spawn(
      process.execPath,
      [
        join(REPO_ROOT, 'bin/krater.js'),
        'agent',
        '--data-dir',
        dataDir,
        '--database',
        db.url,
        '--host',
        host,
        '--log-level',
        'warn',
      ],
      {
        env: {
          ...cleanEnv(),
          KRATER_DEFAULT_IMAGE: busyboxArchive(),
          KRATER_AGENT_SHUTDOWN: 'purge',
          KRATER_NETWORKING: 'none',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const ready = new Promise<void>((resolve, reject) => {
      this.proc.stdout!.on('data', (b: Buffer) => {
        this.out += b.toString();
        if (/RPC at (\S+)/.test(this.out)) resolve();
      });
      this.proc.stderr!.on('data', (b: Buffer) => {
        this.out += b.toString();
      });
      this.proc.once('exit', (code) => reject(new Error(`krater agent exited (${code}):\n${this.out}`)));
    });
    await Promise.race([
      ready,
      sleep(90_000).then(() => Promise.reject(new Error(`krater agent not ready:\n${this.out}`))),
    ]);
  }
  stop(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      this.proc.kill('SIGTERM');
    });
  }
}

async function catalogUrls(k: Replica, token: string): Promise<string[]> {
  const r = await k.http('GET', '/identity/v3/auth/catalog', { token });
  expect(r.status, r.text).toBe(200);
  return r.json.catalog.flatMap((s: any) => s.endpoints.map((e: any) => e.url));
}

beforeAll(async () => {
  work = mkdtempSync(join(process.env.KRATER_E2E_TMPDIR ?? tmpdir(), 'krater-shared-'));
  mkdirSync(join(work, 'images'), { mode: 0o700 });
  writeFileSync(join(work, 'master.key'), `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  db = await createTestDatabase();
  await startBalancer();
  await ensureBuilt();
  r1 = new Replica(join(work, 'r1'));
  await r1.start();
  adminPassword = readFileSync(join(r1.dataDir, 'admin-password'), 'utf8').trim();
  targets.push(r1.port);
});

afterAll(async () => {
  await agent?.stop();
  await r2?.stop();
  await r1?.stop();
  lb?.close();
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('two krater api replicas on one store', () => {
  let token: string;

  it('the catalog keeps the configured public URL when the second replica starts', async () => {
    token = (await r1.passwordToken()).token;
    const before = await catalogUrls(r1, token);
    expect(before.length).toBeGreaterThan(0);
    for (const u of before) expect(u.startsWith(lbUrl), u).toBe(true);
    r2 = new Replica(join(work, 'r2'));
    await r2.start();
    targets.push(r2.port);
    // Through the balancer, either replica answers with the same catalog.
    for (let i = 0; i < 2; i++) expect((await http('GET', `${lbUrl}/identity/v3`)).status).toBe(200);
    expect(await catalogUrls(r2, token)).toEqual(before);
    // Neither replica's own address made it into the catalog.
    for (const u of before) for (const r of [r1, r2]) expect(u).not.toContain(`:${r.port}/`);
    // The secrets are in the store, sealed; the replicas wrote no token keys into their data dirs.
    const rows = await db.query(`SELECT name, sealed FROM sealed_secrets`);
    expect(rows.map((r: any) => r.name)).toContain('token_keys');
    for (const r of [r1, r2]) expect(existsSync(join(r.dataDir, 'keys', 'token'))).toBe(false);
  });

  it('a replica given another master key refuses to start, and says why', async () => {
    const r3 = new Replica(join(work, 'r3'));
    r3.extraEnv = { KRATER_MASTER_KEY: randomBytes(32).toString('base64') };
    await expect(r3.start()).rejects.toThrow(/sealed under master key \w+, but this process has master key \w+/);
    expect(r3.out).toMatch(/start every replica with the same master key/);
  });

  it('a token issued by one replica works on the other, also after token-keys rotate', async () => {
    expect((await r2.http('GET', '/image/v2/images', { token })).status).toBe(200);
    const t2 = (await r2.passwordToken()).token;
    expect((await r1.http('GET', '/image/v2/images', { token: t2 })).status).toBe(200);
    // Two rotations: the primary is then a key replica 2 has never seen until it re-reads the store.
    const rotate = () =>
      promisify(execFile)(
        process.execPath,
        [join(REPO_ROOT, 'bin/krater.js'), 'token-keys', 'rotate', '--data-dir', r1.dataDir, '--database', db.url],
        { env: { ...cleanEnv(), ...replicaEnv() } },
      );
    expect((await rotate()).stdout).toMatch(/rotated the token keys in the store/);
    await rotate();
    const fresh = (await r1.passwordToken()).token;
    expect(fresh.slice(0, 8)).not.toBe(token.slice(0, 8)); // another key id in the header
    expect((await r2.http('GET', '/image/v2/images', { token: fresh })).status).toBe(200);
    expect((await r1.http('GET', '/image/v2/images', { token: fresh })).status).toBe(200);
    // A token signed with a key the store never had is still refused.
    const forged = `${fresh.slice(0, 2)}${fresh[2] === 'A' ? 'B' : 'A'}${fresh.slice(3)}`;
    expect((await r2.http('GET', '/image/v2/images', { token: forged })).status).toBe(401);
    token = fresh;
  });

  it('an image uploaded through one replica downloads through the other', async () => {
    const created = await r1.http('POST', '/image/v2/images', {
      token,
      body: { name: uniq('shared'), container_format: 'bare', disk_format: 'raw' },
    });
    expect(created.status, created.text).toBe(201);
    const id = created.json.id;
    const bytes = randomBytes(300_000);
    const put = await fetch(`${r1.baseUrl}/image/v2/images/${id}/file`, {
      method: 'PUT',
      headers: { 'X-Auth-Token': token, 'Content-Type': 'application/octet-stream' },
      body: bytes,
    });
    expect(put.status).toBe(204);
    const got = await fetch(`${r2.baseUrl}/image/v2/images/${id}/file`, { headers: { 'X-Auth-Token': token } });
    expect(got.status).toBe(200);
    expect(Buffer.from(await got.arrayBuffer()).equals(bytes)).toBe(true);
    // The agent's credentials open no other route, and no made-up ones open the data route.
    const forged = { 'x-krater-agent-host': host, 'x-krater-agent-secret': 'nope' };
    expect((await fetch(`${r2.baseUrl}/image/v2/images/${id}/file`, { headers: forged })).status).toBe(401);
    expect((await r2.http('DELETE', `/image/v2/images/${id}`, { token })).status).toBe(204);
  });

  it('a separate agent commits into Glance and runs an image_driver=glance container through the image API', async () => {
    agent = new AgentProc();
    await agent.start();
    const api = (method: string, path: string, body?: unknown) =>
      r2.http(method, `/container/v1${path}`, { token, headers: ZUN(), body });
    const c = await api('POST', '/containers?run=true', {
      image: 'busybox',
      command: ['sh', '-c', 'echo shared-state > /marker; exec sleep 300'],
    });
    expect(c.status, c.text).toBe(202);
    const running = await waitContainer(
      r2 as any,
      token,
      c.json.uuid,
      (x) => x.status === 'Running',
      'Running',
      90_000,
    );
    expect(running.host).toBe(host);
    const commit = await r1.http(
      'POST',
      `/container/v1/containers/${c.json.uuid}/commit?repository=sharedcommit&tag=v1`,
      {
        token,
        headers: ZUN(),
      },
    );
    expect(commit.status, commit.text).toBe(202);
    const imageId = commit.json.uuid;
    let g: any;
    for (let i = 0; i < 600 && g?.status !== 'active'; i++) {
      g = (await r2.http('GET', `/image/v2/images/${imageId}`, { token })).json;
      if (g?.status !== 'active') await sleep(100);
    }
    expect(g, agent.out).toMatchObject({ status: 'active', container_format: 'docker' });
    // The commit's data went into the shared image dir through the API; it downloads through either replica.
    const data = Buffer.from(
      await (
        await fetch(`${r2.baseUrl}/image/v2/images/${imageId}/file`, { headers: { 'X-Auth-Token': token } })
      ).arrayBuffer(),
    );
    expect(createHash('md5').update(data).digest('hex')).toBe(g.checksum);
    expect(readdirSync(join(work, 'images'))).toContain(imageId);
    expect(readdirSync(join(work, 'agent'))).not.toContain('images');
    // The agent's own credentials (host + advertised secret) open the image data routes, and no other route.
    const [{ rpc_secret: secret }] = await db.query(`SELECT rpc_secret FROM compute_hosts WHERE hostname = '${host}'`);
    const creds = { 'x-krater-agent-host': host, 'x-krater-agent-secret': secret };
    expect((await fetch(`${r1.baseUrl}/image/v2/images/${imageId}/file`, { headers: creds })).status).toBe(200);
    expect((await r1.http('GET', '/image/v2/images', { headers: creds })).status).toBe(401);
    expect((await r1.http('GET', '/container/v1/containers', { headers: { ...creds, ...ZUN() } })).status).toBe(401);

    const fromGlance = await api('POST', '/containers?run=true', {
      image: 'sharedcommit:v1',
      image_driver: 'glance',
      command: ['cat', '/marker'],
    });
    expect(fromGlance.status, fromGlance.text).toBe(202);
    const done = await waitContainer(
      r2.asKrater(),
      token,
      fromGlance.json.uuid,
      (x) => x.status === 'Stopped' || x.status === 'Error',
      'Stopped',
      90_000,
    );
    expect(done.status, `${done.status_reason}\n${agent.out}`).toBe('Stopped');
    expect(done.host).toBe(host);
    const logs = await api('GET', `/containers/${fromGlance.json.uuid}/logs`);
    expect(logs.json).toBe('shared-state\n');
    for (const id of [c.json.uuid, fromGlance.json.uuid])
      expect((await api('DELETE', `/containers/${id}?force=True`)).status).toBe(204);
  });
});
