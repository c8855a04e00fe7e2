/**
 * Controllers across API replicas: two `krater api` processes on one PostgreSQL run a test-only kind
 * (`test.probe`, tests/controllers/probe-controller.mjs, registered through KRATER_CONTROLLER_MODULES). Work
 * enqueued in the store is shared by both replicas, no object is ever reconciled by two at once, and kill -9 of the
 * replica holding an object's lease hands the object to the other once the lease runs out (a short lease here).
 *
 *   npx vitest run tests/controllers
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { cleanEnv, ensureBuilt, freePort, http, REPO_ROOT, sleep } from '../helpers/krater.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 900_000 });

const LEASE_MS = 3000;
const POLL_MS = 200;
const ROUNDS = 3;
const KIND = 'test.probe';
/** Replicas of one deployment share the master key sealing the store's secrets (else the second refuses to start). */
const MASTER_KEY = randomBytes(32).toString('base64');

interface ProbeEvent {
  ev: 'start' | 'end' | 'overlap';
  id: string;
  run: string;
  pid: number;
  t: number;
}

/** One `krater api` replica with its own data dir and port, on the shared database. */
class Replica {
  proc!: ChildProcess;
  out = '';
  killedAt?: number;
  constructor(
    readonly dataDir: string,
    readonly port: number,
  ) {}
  get pid(): number {
    return this.proc.pid!;
  }
  async start(database: string, probeDir: string): Promise<void> {
    const args = ['api', '--data-dir', this.dataDir, '--bind', '127.0.0.1', '--port', String(this.port)];
    this.proc = spawn(
      process.execPath,
      [join(REPO_ROOT, 'bin/krater.js'), ...args, '--database', database, '--log-level', 'warn', '--no-clouds-yaml'],
      {
        cwd: REPO_ROOT,
        env: {
          ...cleanEnv(),
          HOME: this.dataDir,
          KRATER_MASTER_KEY: MASTER_KEY,
          KRATER_CONTROLLER_MODULES: join(REPO_ROOT, 'tests/controllers/probe-controller.mjs'),
          KRATER_CONTROLLER_LEASE_MS: String(LEASE_MS),
          KRATER_CONTROLLER_POLL_MS: String(POLL_MS),
          KRATER_CONTROLLER_CONCURRENCY: '2',
          KRATER_TEST_PROBE_DIR: probeDir,
          KRATER_TEST_PROBE_ROUNDS: String(ROUNDS),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    this.proc.stdout!.on('data', (b: Buffer) => {
      this.out += b.toString();
    });
    this.proc.stderr!.on('data', (b: Buffer) => {
      this.out += b.toString();
    });
    for (let i = 0; i < 600; i++) {
      if (this.proc.exitCode !== null) throw new Error(`krater api exited (${this.proc.exitCode}):\n${this.out}`);
      const r = await http('GET', `http://127.0.0.1:${this.port}/identity/v3`).catch(() => undefined);
      if (r?.status === 200) return;
      await sleep(100);
    }
    throw new Error(`krater api not ready:\n${this.out}`);
  }
  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
  stop(signal: NodeJS.Signals): Promise<void> {
    if (!this.alive) return Promise.resolve();
    return new Promise((resolve) => {
      this.proc.once('exit', () => resolve());
      if (signal === 'SIGKILL') this.killedAt = Date.now();
      this.proc.kill(signal);
    });
  }
}

let db: TestDatabase;
let work: string;
let probeDir: string;
const replicas: Replica[] = [];

function events(): ProbeEvent[] {
  const file = join(probeDir, 'events.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ProbeEvent);
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}\n${replicas.map((r) => r.out.slice(-2000)).join('\n---\n')}`);
    await sleep(50);
  }
}

async function enqueue(id: string): Promise<void> {
  const now = new Date().toISOString();
  await db.query(
    `INSERT INTO controller_queue (kind, object_id, generation, not_before, attempts, created_at, updated_at)
     VALUES ('${KIND}', '${id}', 1, '${now}', 0, '${now}', '${now}')`,
  );
}

const queueRow = async (id: string) =>
  (await db.query(`SELECT * FROM controller_queue WHERE kind = '${KIND}' AND object_id = '${id}'`))[0];

/**
 * Every reconcile as an interval (a run without an end lasted until its process was killed), and the pairs of
 * intervals of one object that overlap.
 */
function overlaps(): string[] {
  const runs = new Map<string, { id: string; pid: number; start: number; end?: number }>();
  for (const e of events()) {
    if (e.ev === 'start') runs.set(e.run, { id: e.id, pid: e.pid, start: e.t });
    if (e.ev === 'end') runs.get(e.run)!.end = e.t;
  }
  const found: string[] = [];
  const byObject = new Map<string, { pid: number; start: number; end: number }[]>();
  for (const r of runs.values()) {
    const end = r.end ?? replicas.find((x) => x.pid === r.pid)?.killedAt ?? Number.POSITIVE_INFINITY;
    byObject.set(r.id, [...(byObject.get(r.id) ?? []), { pid: r.pid, start: r.start, end }]);
  }
  for (const [id, list] of byObject) {
    list.sort((a, b) => a.start - b.start);
    for (let i = 1; i < list.length; i++)
      if (list[i].start < list[i - 1].end)
        found.push(`${id}: ${JSON.stringify(list[i - 1])} and ${JSON.stringify(list[i])}`);
  }
  return found;
}

beforeAll(async () => {
  await ensureBuilt();
  db = await createTestDatabase();
  work = mkdtempSync(join(tmpdir(), 'krater-controllers-'));
  probeDir = join(work, 'probe');
  mkdirSync(probeDir);
  // One after the other: the first migrates and bootstraps the empty database.
  for (const name of ['a', 'b']) {
    const r = new Replica(join(work, name), await freePort());
    replicas.push(r);
    await r.start(db.url, probeDir);
  }
});

afterAll(async () => {
  for (const r of replicas) await r.stop('SIGTERM');
  await db?.drop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('controllers on two krater api replicas (PostgreSQL)', () => {
  it('share the work and never reconcile one object twice at a time', async () => {
    const ids = Array.from({ length: 12 }, (_, i) => `work-${i}`);
    for (const id of ids) await enqueue(id);
    await until('the queue to drain', async () => {
      const [{ n }] = await db.query(`SELECT count(*)::int AS n FROM controller_queue WHERE kind = '${KIND}'`);
      return n === 0 ? true : undefined;
    });
    const evs = events();
    expect(evs.filter((e) => e.ev === 'overlap')).toEqual([]);
    expect(overlaps()).toEqual([]);
    for (const id of ids) {
      // Exactly ROUNDS reconciles each, and none lost its counter update to a concurrent one.
      expect(evs.filter((e) => e.ev === 'start' && e.id === id)).toHaveLength(ROUNDS);
      expect(readFileSync(join(probeDir, `${id}.count`), 'utf8')).toBe(String(ROUNDS));
    }
    // A lease per object: both replicas did some of the work.
    const pids = new Set(evs.filter((e) => e.ev === 'start').map((e) => e.pid));
    expect([...pids].sort()).toEqual(replicas.map((r) => r.pid).sort());
  });

  it('kill -9 of the replica holding the lease hands the object to the other within the lease time', async () => {
    const id = 'hold-1';
    await enqueue(id);
    const first = await until('the first reconcile', () => events().find((e) => e.ev === 'start' && e.id === id));
    const holder = replicas.find((r) => r.pid === first.pid)!;
    const other = replicas.find((r) => r !== holder)!;
    expect((await queueRow(id)).lease_owner).toContain(`:${holder.pid}:`);
    // It keeps the object while it lives (renewing), however long the reconcile takes.
    await sleep(LEASE_MS * 1.5);
    expect(events().filter((e) => e.ev === 'start' && e.id === id)).toHaveLength(1);

    await holder.stop('SIGKILL');
    const killedAt = holder.killedAt!;
    const row = await queueRow(id);
    expect(row.lease_owner).toContain(`:${holder.pid}:`);
    const expiresAt = Date.parse(row.lease_expires_at);

    const second = await until(
      'the takeover',
      () => events().find((e) => e.ev === 'start' && e.id === id && e.pid === other.pid),
      LEASE_MS + 30_000,
    );
    // Not before the dead holder's lease ran out; within one lease (plus a poll and some scheduling slack) of the kill.
    expect(second.t).toBeGreaterThanOrEqual(expiresAt);
    expect(second.t - killedAt).toBeLessThanOrEqual(LEASE_MS + POLL_MS + 2000);
    process.stderr.write(
      `[controllers] takeover ${second.t - killedAt} ms after kill -9 (lease ${LEASE_MS} ms, expired ${expiresAt - killedAt} ms after the kill)\n`,
    );
    expect((await queueRow(id)).lease_owner).toContain(`:${other.pid}:`);

    writeFileSync(join(probeDir, `release-${id}`), '');
    await until('the object to be done', async () => ((await queueRow(id)) === undefined ? true : undefined));
    expect(events().find((e) => e.ev === 'end' && e.run === second.run)).toBeDefined();
    expect(overlaps()).toEqual([]);
  });
});
