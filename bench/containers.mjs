#!/usr/bin/env node
// Container start benchmark: Zun API create → Running (request sent until status Running is observed, warm image;
// observed with Krater's long poll, and again with a client polling every 10 ms)
// against `ctr run -d` and `runc run -d` of the same busybox image, on the same containerd, in the same run.
//
//   sudo node bench/containers.mjs            (after `npm run build`; BENCH_N=100 BENCH_CONCURRENCY=20)
//
// Like `ctr run` and `runc run`, which give a task an empty network namespace, Krater runs here without tenant
// networking (KRATER_NETWORKING=none; BENCH_NETWORKING=kernel to measure with ports — bench/network.mjs compares
// the two). Prints p50/p99 per system, the ratios, and the concurrent create throughput; writes
// bench/results/containers-*.json.
import { spawn } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxArchive, ms, pct, run, startKrater, writeResults } from './lib/cloud.mjs';

const N = Number(process.env.BENCH_N ?? 100);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 20);
const work = mkdtempSync(join(tmpdir(), 'krater-bench-ctr-'));
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
const archive = busyboxArchive();
const dataDir = join(work, 'data');
const krater = await startKrater(dataDir, {
  KRATER_NETWORKING: process.env.BENCH_NETWORKING ?? 'none',
  KRATER_SHIM_GROUPING: process.env.BENCH_SHIM_GROUPING ?? 'project',
});
const sock = join(dataDir, 'agent/containerd/containerd.sock');

/** The runc shims of our containerd (found by the address they were started with) and their resident memory. */
function shimMemory() {
  let count = 0;
  let kib = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (!cmd[0].endsWith('containerd-shim-runc-v2') || !cmd.includes(sock)) continue;
      const rss = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      count += 1;
      kib += Number(rss?.[1] ?? 0);
    } catch {}
  }
  return { shims: count, rss_mib: kib / 1024 };
}
const results = {};
try {
  const { apiStart, cleanup } = krater;
  console.error('krater ready; warming up');
  const apiTimes = await krater.sequentialStarts(N);
  console.error('api starts measured');
  results.krater_api = { p50: pct(apiTimes, 50), p99: pct(apiTimes, 99), n: apiTimes.length };
  // The same, observed the way a client that polls does (GET every 10 ms): the requests cost CPU on 2 cores.
  const pollTimes = await krater.sequentialStarts(N, {}, { pollMs: 10 });
  results.krater_api_poll = { p50: pct(pollTimes, 50), p99: pct(pollTimes, 99), n: pollTimes.length };

  const t0 = process.hrtime.bigint();
  const batch = await Promise.all(Array.from({ length: CONCURRENCY }, () => apiStart()));
  const wall = ms(t0);
  results.krater_concurrent = { containers: CONCURRENCY, wall_ms: wall, per_second: (CONCURRENCY / wall) * 1000 };
  // What the running batch costs in shims (one per project with shim grouping, one per container without).
  results.krater_shims = { containers: CONCURRENCY, ...shimMemory() };
  await cleanup(batch.map((b) => b.uuid));

  console.error('concurrent measured; ctr next');
  // ctr on the same containerd, its own namespace.
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

await krater.stop();
rmSync(work, { recursive: true, force: true });

const f = (x) => (x === undefined ? 'n/a' : x.toFixed(1));
console.log(`\nContainer start, ${N} sequential starts each (ms):`);
console.log('system                          p50      p99');
for (const [k, label] of [
  ['krater_api', 'Krater API create → Running'],
  ['krater_api_poll', '  (observed by 10 ms polls)'],
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
if (results.krater_shims)
  console.log(
    `shims for ${CONCURRENCY} running containers: ${results.krater_shims.shims}, ${results.krater_shims.rss_mib.toFixed(1)} MiB RSS (KRATER_SHIM_GROUPING=${process.env.BENCH_SHIM_GROUPING ?? 'project'})`,
  );
const out = writeResults('containers', { n: N, networking: process.env.BENCH_NETWORKING ?? 'none', ...results });
console.log(`results: ${out}`);
