// What the Node benchmarks share: a private `krater up` from this checkout, an admin token, the Zun calls they time,
// and percentiles. Each instance keeps its state under its own temporary directory and is purged when stopped.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
/** Milliseconds since an hrtime.bigint() stamp. */
export const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
export const run = (cmd, args, opts = {}) =>
  (execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }) ?? '').toString();

export function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
}

/** The offline busybox image every benchmark runs (built once per checkout). */
export function busyboxArchive() {
  const archive = join(REPO, 'tmp', 'busybox.oci.tar');
  mkdirSync(dirname(archive), { recursive: true });
  if (!existsSync(archive)) run('sh', [join(REPO, 'scripts/engine-build-busybox.sh'), archive]);
  return archive;
}

/** Starts `krater up` in `dataDir` with extra environment; resolves once its agent reports as a service. */
export async function startKrater(dataDir, env = {}) {
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    [
      join(REPO, 'bin/krater.js'),
      'up',
      '--data-dir',
      dataDir,
      '--port',
      String(port),
      '--log-level',
      process.env.BENCH_LOG_LEVEL ?? 'warn',
      '--no-clouds-yaml',
    ],
    {
      env: { ...process.env, KRATER_DEFAULT_IMAGE: busyboxArchive(), KRATER_AGENT_SHUTDOWN: 'purge', ...env },
      stdio: ['ignore', process.env.BENCH_LOG_LEVEL ? 'inherit' : 'ignore', 'inherit'],
    },
  );
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const up = await fetch(`${base}/identity/v3`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    if (i > 300 || proc.exitCode !== null) throw new Error('krater did not start');
    await sleep(100);
  }
  const password = readFileSync(join(dataDir, 'admin-password'), 'utf8').trim();
  const tokRes = await fetch(`${base}/identity/v3/auth/tokens`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: 'admin', domain: { name: 'Default' }, password } },
        },
        scope: { project: { name: 'admin', domain: { name: 'Default' } } },
      },
    }),
  });
  const token = tokRes.headers.get('x-subject-token');
  const H = { 'X-Auth-Token': token, 'Content-Type': 'application/json', 'OpenStack-API-Version': 'container 1.40' };
  const zun = `${base}/container/v1`;
  for (let i = 0; i < 100; i++) {
    const s = await (await fetch(`${zun}/services`, { headers: H })).json();
    if (s.services?.length) break;
    await sleep(100);
  }

  /**
   * One API start: POST run=true, then observe Running; `ms` is request sent → Running observed. Observed with
   * Krater's long poll (`GET …/{uuid}/wait?status=Running`, answered as the status changes) unless `pollMs` is
   * given: then `GET …/{uuid}` every `pollMs`, as a client that polls.
   */
  const apiStart = async (extra = {}, { pollMs } = {}) => {
    const t0 = process.hrtime.bigint();
    const r = await fetch(`${zun}/containers?run=true`, {
      method: 'POST',
      headers: H,
      body: JSON.stringify({ image: 'busybox', command: ['sleep', '3600'], ...extra }),
    });
    if (r.status !== 202) throw new Error(`create: ${r.status} ${await r.text()}`);
    const { uuid } = await r.json();
    for (;;) {
      const url = pollMs ? `${zun}/containers/${uuid}` : `${zun}/containers/${uuid}/wait?status=Running&status=Error`;
      const c = await (await fetch(url, { headers: H })).json();
      if (c.status === 'Running') return { uuid, ms: ms(t0), container: c };
      if (c.status === 'Error') throw new Error(`container failed: ${c.status_reason}`);
      if (pollMs) await sleep(pollMs);
    }
  };
  /** Deletes containers (stopping them) and waits until they are gone. */
  const cleanup = async (uuids) => {
    for (const u of uuids) await fetch(`${zun}/containers/${u}?stop=true`, { method: 'DELETE', headers: H });
    for (const u of uuids) {
      while ((await fetch(`${zun}/containers/${u}`, { headers: H })).status !== 404) await sleep(20);
    }
  };
  /** N sequential starts (after one warm-up), deleting in batches of 20; returns the times. */
  const sequentialStarts = async (n, extra = {}, observe = {}) => {
    await cleanup([(await apiStart(extra, observe)).uuid]);
    const times = [];
    const uuids = [];
    for (let i = 0; i < n; i++) {
      const r = await apiStart(extra, observe);
      times.push(r.ms);
      uuids.push(r.uuid);
      if (uuids.length >= 20) await cleanup(uuids.splice(0));
    }
    await cleanup(uuids);
    return times;
  };
  const stop = async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  };
  return { base, zun, H, token, proc, apiStart, cleanup, sequentialStarts, stop };
}

/** Writes bench/results/<name>-<UTC time>.json (ignored by git) and returns its path. */
export function writeResults(name, results) {
  mkdirSync(join(REPO, 'bench/results'), { recursive: true });
  const out = join(REPO, 'bench/results', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  return out;
}
