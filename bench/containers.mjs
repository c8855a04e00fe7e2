#!/usr/bin/env node
// Container start benchmark: Zun API create → Running (request sent until status Running is observed, warm image)
// against `ctr run -d` and `runc run -d` of the same busybox image, on the same containerd, in the same run.
//
//   sudo node bench/containers.mjs            (after `npm run build`; BENCH_N=100 BENCH_CONCURRENCY=20)
//
// Prints p50/p99 per system, the ratios, and the concurrent create throughput; writes bench/results/containers-*.json.
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_N ?? 100);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 20);
const work = mkdtempSync(join(tmpdir(), 'krater-bench-ctr-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
/** Runs a command with a deadline; output goes to a file because a task started by it may inherit its stdio. */
const sh = (cmd, args) =>
  new Promise((resolve, reject) => {
    const out = join(work, `out-${process.hrtime.bigint()}`);
    const fd = openSync(out, 'w');
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const text = readFileSync(out, 'utf8');
      rmSync(out, { force: true });
      if (code === 0) resolve(text);
      else reject(new Error(`${cmd} ${args.join(' ')}: ${signal ?? code}: ${text}`));
    });
  });
const run = (cmd, args, opts = {}) =>
  (execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts }) ?? '').toString();

async function freePort() {
  return new Promise((res) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
}

const archive = join(REPO, 'tmp', 'busybox.oci.tar');
mkdirSync(dirname(archive), { recursive: true });
if (!existsSync(archive)) run('sh', [join(REPO, 'scripts/engine-build-busybox.sh'), archive]);

const port = await freePort();
const dataDir = join(work, 'data');
const krater = spawn(
  process.execPath,
  [
    join(REPO, 'bin/krater.js'),
    'up',
    '--data-dir',
    dataDir,
    '--port',
    String(port),
    '--log-level',
    'warn',
    '--no-clouds-yaml',
  ],
  {
    env: { ...process.env, KRATER_DEFAULT_IMAGE: archive, KRATER_AGENT_SHUTDOWN: 'purge' },
    stdio: ['ignore', 'ignore', 'inherit'],
  },
);
const base = `http://127.0.0.1:${port}`;
const results = {};
try {
  for (let i = 0; ; i++) {
    if (
      await fetch(`${base}/identity/v3`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 300) throw new Error('krater did not start');
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
  for (let i = 0; i < 50; i++) {
    const s = await (await fetch(`${zun}/services`, { headers: H })).json();
    if (s.services?.length) break;
    await sleep(100);
  }

  /** One API start: POST run=true, then poll until Running. */
  const apiStart = async () => {
    const t0 = process.hrtime.bigint();
    const r = await fetch(`${zun}/containers?run=true`, {
      method: 'POST',
      headers: H,
      body: JSON.stringify({ image: 'busybox', command: ['sleep', '3600'] }),
    });
    if (r.status !== 202) throw new Error(`create: ${r.status} ${await r.text()}`);
    const { uuid } = await r.json();
    for (;;) {
      const c = await (await fetch(`${zun}/containers/${uuid}`, { headers: H })).json();
      if (c.status === 'Running') return { uuid, ms: ms(t0) };
      if (c.status === 'Error') throw new Error(`container failed: ${c.status_reason}`);
      await sleep(1);
    }
  };
  const cleanup = async (uuids) => {
    for (const u of uuids) await fetch(`${zun}/containers/${u}?stop=true`, { method: 'DELETE', headers: H });
    for (const u of uuids) {
      while ((await fetch(`${zun}/containers/${u}`, { headers: H })).status !== 404) await sleep(20);
    }
  };

  console.error('krater ready; warming up');
  await cleanup([(await apiStart()).uuid]); // warm-up: image unpacked, code paths hot
  const apiTimes = [];
  const uuids = [];
  for (let i = 0; i < N; i++) {
    const r = await apiStart();
    apiTimes.push(r.ms);
    uuids.push(r.uuid);
    if (uuids.length >= 20) await cleanup(uuids.splice(0));
  }
  await cleanup(uuids.splice(0));
  console.error('api starts measured');
  results.krater_api = { p50: pct(apiTimes, 50), p99: pct(apiTimes, 99), n: apiTimes.length };

  const t0 = process.hrtime.bigint();
  const batch = await Promise.all(Array.from({ length: CONCURRENCY }, () => apiStart()));
  const wall = ms(t0);
  results.krater_concurrent = { containers: CONCURRENCY, wall_ms: wall, per_second: (CONCURRENCY / wall) * 1000 };
  await cleanup(batch.map((b) => b.uuid));

  console.error('concurrent measured; ctr next');
  // ctr on the same containerd, its own namespace.
  const sock = join(dataDir, 'agent/containerd/containerd.sock');
  const ctr = (args) => sh('ctr', ['--address', sock, '--namespace', 'krater-bench', ...args]);
  await ctr(['image', 'import', archive]);
  const ref = (await ctr(['image', 'ls', '-q'])).trim().split('\n')[0];
  const ctrTimes = [];
  for (let i = 0; i < N + 1; i++) {
    const id = `bench-${i}`;
    const s = process.hrtime.bigint();
    await ctr(['run', '-d', ref, id, 'sleep', '3600']);
    if (i > 0) ctrTimes.push(ms(s)); // the first run is the warm-up
    await ctr(['task', 'rm', '-f', id]);
    await ctr(['container', 'rm', id]);
  }
  await ctr(['image', 'rm', ref]);
  // ctr puts tasks under the cgroup /<namespace>/<id>: remove what it leaves behind.
  for (const ctl of [
    'cpu',
    'cpuacct',
    'cpuset',
    'memory',
    'devices',
    'freezer',
    'blkio',
    'pids',
    'hugetlb',
    'net_cls',
    'perf_event',
    'systemd',
  ]) {
    try {
      rmdirSync(join('/sys/fs/cgroup', ctl, 'krater-bench'));
    } catch {}
  }
  results.ctr_run = { p50: pct(ctrTimes, 50), p99: pct(ctrTimes, 99), n: ctrTimes.length };
} catch (err) {
  console.error('ctr measurement failed:', err.message, err.stderr?.toString());
}

// runc directly: one bundle with a read-only busybox rootfs shared by every run (no image, no shim, no logs).
try {
  const bundle = join(work, 'runc-bundle');
  const rootfs = join(bundle, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  run('cp', ['/bin/busybox', join(rootfs, 'bin/busybox')]);
  for (const d of ['proc', 'sys', 'dev', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
  run('runc', ['spec', '--bundle', bundle]);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['/bin/busybox', 'sleep', '3600'];
  spec.root.readonly = true;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const root = join(work, 'runc-root');
  const runcTimes = [];
  for (let i = 0; i < N + 1; i++) {
    const id = `krater-bench-${process.pid}-${i}`;
    const s = process.hrtime.bigint();
    await sh('runc', ['--root', root, 'run', '-d', '--bundle', bundle, id]);
    if (i > 0) runcTimes.push(ms(s));
    await sh('runc', ['--root', root, 'delete', '-f', id]);
  }
  results.runc_run = { p50: pct(runcTimes, 50), p99: pct(runcTimes, 99), n: runcTimes.length };
} catch (err) {
  console.error('runc measurement failed:', err.message, err.stderr?.toString());
}

krater.kill('SIGTERM');
await new Promise((r) => krater.once('exit', r));
rmSync(work, { recursive: true, force: true });

const f = (x) => (x === undefined ? 'n/a' : x.toFixed(1));
console.log(`\nContainer start, ${N} sequential starts each (ms):`);
console.log('system                          p50      p99');
for (const [k, label] of [
  ['krater_api', 'Krater API create → Running'],
  ['ctr_run', 'ctr run -d'],
  ['runc_run', 'runc run -d'],
]) {
  console.log(`${label.padEnd(30)} ${f(results[k]?.p50).padStart(6)}   ${f(results[k]?.p99).padStart(6)}`);
}
if (results.krater_api && results.ctr_run) {
  results.ratio_p50_vs_ctr = results.krater_api.p50 / results.ctr_run.p50;
  console.log(
    `\nratio Krater/ctr (p50): ${results.ratio_p50_vs_ctr.toFixed(2)}  (goal ≤ 1.5; p50 ≤ 100 ms, p99 ≤ 250 ms)`,
  );
}
if (results.krater_concurrent)
  console.log(
    `concurrent: ${CONCURRENCY} creates → Running in ${results.krater_concurrent.wall_ms.toFixed(0)} ms (${results.krater_concurrent.per_second.toFixed(1)}/s)`,
  );
mkdirSync(join(REPO, 'bench/results'), { recursive: true });
const out = join(REPO, 'bench/results', `containers-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(out, JSON.stringify({ n: N, ...results }, null, 2));
console.log(`results: ${out}`);
