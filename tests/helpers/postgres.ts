/**
 * PostgreSQL for end-to-end tests.
 *
 * `KRATER_TEST_POSTGRES_URL` names a server whose role may `CREATE DATABASE` (e.g. the one printed by
 * `scripts/test-postgres.sh`). When it is unset, the first caller in a test file starts a private cluster with
 * `scripts/test-postgres.sh start <dir>` and the last release stops and removes it. Every suite gets its own fresh
 * database (`krater_e2e_<random>`), dropped afterwards.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const SCRIPT = join(REPO_ROOT, 'scripts/test-postgres.sh');

interface Server {
  url: string;
  /** Set when this process started the cluster (and must stop it). */
  dir?: string;
}

let server: Promise<Server> | undefined;
let users = 0;
/** Cluster directory started by this process and not yet stopped: stopped synchronously if the process exits. */
let startedDir: string | undefined;
process.once('exit', () => {
  if (!startedDir) return;
  try {
    execFileSync(SCRIPT, ['stop', startedDir], { stdio: 'ignore', timeout: 60_000 });
  } catch {}
});

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(
          new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`),
        );
      } else {
        resolvePromise({ stdout, stderr });
      }
    });
  });
}

async function startServer(): Promise<Server> {
  const fromEnv = process.env.KRATER_TEST_POSTGRES_URL;
  if (fromEnv) return { url: fromEnv };
  // Under /tmp (not the repo) so that user `postgres` can always reach it; short enough for a Unix socket path.
  const dir = mkdtempSync('/tmp/krater-pg-');
  startedDir = dir;
  try {
    // apt-get install may run on a fresh machine: allow minutes.
    const { stdout } = await run(SCRIPT, ['start', dir], 600_000);
    const url = stdout.trim().split('\n').pop() ?? '';
    if (!/^postgres(ql)?:\/\//.test(url)) throw new Error(`test-postgres.sh printed no URL: ${JSON.stringify(stdout)}`);
    return { url, dir };
  } catch (err) {
    await run(SCRIPT, ['stop', dir], 120_000).catch(() => rmSync(dir, { recursive: true, force: true }));
    startedDir = undefined;
    throw err;
  }
}

async function acquireServer(): Promise<Server> {
  users++;
  server ??= startServer();
  try {
    return await server;
  } catch (err) {
    users--;
    server = undefined;
    throw err;
  }
}

async function releaseServer(): Promise<void> {
  users--;
  if (users > 0 || !server) return;
  const s = await server.catch(() => undefined);
  server = undefined;
  if (s?.dir) {
    await run(SCRIPT, ['stop', s.dir], 120_000);
    if (startedDir === s.dir) startedDir = undefined;
  }
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

async function query(url: string, sql: string): Promise<any[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  /** URL of the fresh database, for `krater up --database`. */
  url: string;
  name: string;
  /** Runs one SQL statement in the test database and returns its rows. */
  query(sql: string): Promise<any[]>;
  /** Drops the database (terminating leftover connections) and releases the server. */
  drop(): Promise<void>;
}

/** A fresh, empty database on the test server (started on demand). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const s = await acquireServer();
  const name = `krater_e2e_${randomBytes(6).toString('hex')}`;
  try {
    await query(s.url, `CREATE DATABASE ${name}`);
  } catch (err) {
    await releaseServer();
    throw err;
  }
  let dropped = false;
  return {
    url: withDatabase(s.url, name),
    name,
    query: (sql: string) => query(withDatabase(s.url, name), sql),
    async drop() {
      if (dropped) return;
      dropped = true;
      try {
        await query(s.url, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await releaseServer();
      }
    },
  };
}
