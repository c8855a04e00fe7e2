#!/usr/bin/env node
// Published-ports benchmark: one container publishing BENCH_PORTS (default 1,000) host ports on 127.0.0.1, bound in
// the kernel (nftables DNAT maps in Krater's host table, one publish leg per container) — no process per port — and,
// in the same run, the anchor: Docker publishing as many ports on one container running the same busybox httpd,
// twice: with Docker's default userland proxy (one `docker-proxy` process per port next to its iptables DNAT rules)
// and with `--userland-proxy=false` (iptables DNAT only).
//
//   sudo node bench/ports.mjs            (after `npm run build`; BENCH_PORTS=1000, BENCH_DOCKER=0 skips the anchor)
//
// Measures, for each system against itself with one running container without published ports: the extra memory
// (RSS and PSS) of the whole system — Krater and every process below it, or dockerd, its containerd and the
// docker-proxy processes — plus the containerd shims it started, and how many processes are new; the kernel's slab
// growth (noisy: the whole machine's); the time from the create request (`docker run`) until every port has answered
// once; then the time from the stop until all ports are refused and from the start until all answer again.
// Docker is Debian's docker.io (20.10), installed with scripts/lib.sh's apt_ensure and run privately by
// bench/lib/docker.mjs: inside a network namespace of its own (docker0 and its iptables rules exist only there, and
// its ports are probed from there), with its own data/exec roots, managed containerd, socket and cgroup parent, all
// removed afterwards. Writes bench/results/ports-*.json.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ms, sleep, startKrater, writeResults } from './lib/cloud.mjs';
import { dockerSandbox, ensureDocker } from './lib/docker.mjs';
import { untilAll } from './lib/probe.mjs';
import { growth, systemSnapshot } from './lib/procs.mjs';

const PORTS = Number(process.env.BENCH_PORTS ?? 1000);
const work = mkdtempSync(join(tmpdir(), 'krater-bench-ports-'));
const httpd = ['sh', '-c', 'mkdir -p /www && echo bench-port > /www/index.html && httpd -f -p 80 -h /www'];

/** `n` consecutive TCP ports free on 127.0.0.1, below the ephemeral range. */
async function freeRange(n) {
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * (12000 - n));
    let ok = true;
    for (let p = base; p < base + n && ok; p++)
      ok = await new Promise((resolve) => {
        const s = createServer();
        s.once('error', () => resolve(false));
        s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
      });
    if (ok) return base;
  }
}
/** Probes in this namespace; {first, all}: ms from t0 until one / every port gave `want`. */
async function probeHere(base, want, t0) {
  const out = {};
  await untilAll(base, PORTS, want, () => {
    out.first = Math.round(ms(t0));
  });
  out.all = Math.round(ms(t0));
  return out;
}
const load = () => loadavg().map((x) => +x.toFixed(1));

/** Krater: one container publishing PORTS ports through the Zun API, kernel dataplane. */
async function kraterRun(base) {
  const r = {};
  const k = await startKrater(join(work, 'data'), { KRATER_NETWORKING: 'kernel' });
  try {
    const { zun, H } = k;
    const call = async (method, path, body) => {
      const res = await fetch(`${zun}${path}`, { method, headers: H, body: body && JSON.stringify(body) });
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      const text = await res.text();
      return text ? JSON.parse(text) : undefined;
    };
    const project = (
      await (await fetch(`${k.base}/identity/v3/auth/tokens`, { headers: { ...H, 'X-Subject-Token': k.token } })).json()
    ).token.project.id;
    await call('PUT', `/quotas/${project}`, { published_ports: PORTS + 10 });
    // The baseline: a running container without published ports (its network, name server and shim exist).
    const plain = await k.apiStart({ name: 'plain', command: httpd });
    await sleep(2000);
    const before = systemSnapshot(k.proc.pid, work);

    const spec = Array.from({ length: PORTS }, (_, i) => `127.0.0.1:${base + i}:80`).join(',');
    const t0 = process.hrtime.bigint();
    const { uuid } = await call('POST', '/containers?run=true', {
      name: 'web',
      image: 'busybox',
      command: httpd,
      labels: { 'krater.publish': spec },
    });
    const up = await probeHere(base, true, t0);
    r.create_to_first_answer_ms = up.first;
    r.create_to_all_answer_ms = up.all;
    await sleep(2000);
    r.memory = growth(before, systemSnapshot(k.proc.pid, work));

    let t = process.hrtime.bigint();
    await call('POST', `/containers/${uuid}/stop?timeout=1`);
    r.stop_to_all_refused_ms = (await probeHere(base, false, t)).all;
    // The ports are unbound before the task has exited: a start is refused (409) until the container is Stopped.
    await call('GET', `/containers/${uuid}/wait?status=Stopped`);
    t = process.hrtime.bigint();
    await call('POST', `/containers/${uuid}/start`);
    const again = await probeHere(base, true, t);
    r.start_to_first_answer_ms = again.first;
    r.start_to_all_answer_ms = again.all;
    await k.cleanup([uuid, plain.uuid]);
  } finally {
    await k.stop();
  }
  return r;
}

/** Docker: the same container with PORTS `-p 127.0.0.1:<port>:80`, probed from inside its namespace. */
async function dockerRun(sb, userlandProxy, base) {
  const r = { userland_proxy: userlandProxy };
  const pid = await sb.start({ userlandProxy });
  const probe = sb.probe();
  try {
    await probe.ready;
    if (!(await sb.docker('images', '-q', 'kr/busybox:latest'))) await sb.docker('load', '-i', sb.archive);
    await sb.docker('run', '-d', '--name', 'plain', 'kr/busybox:latest', ...httpd);
    await sleep(2000);
    const marker = sb.work;
    const before = systemSnapshot(pid, marker);

    const publish = Array.from({ length: PORTS }, (_, i) => ['-p', `127.0.0.1:${base + i}:80`]).flat();
    const t0 = process.hrtime.bigint();
    const runs = sb.docker('run', '-d', '--name', 'web', ...publish, 'kr/busybox:latest', ...httpd).then(() => {
      r.run_command_ms = Math.round(ms(t0));
    });
    const up = await probe.until(base, PORTS, true, t0);
    await runs;
    r.create_to_first_answer_ms = up.first;
    r.create_to_all_answer_ms = up.all;
    await sleep(2000);
    r.memory = growth(before, systemSnapshot(pid, marker));

    let t = process.hrtime.bigint();
    const stops = sb.docker('stop', '-t', '1', 'web');
    r.stop_to_all_refused_ms = (await probe.until(base, PORTS, false, t)).all;
    await stops;
    t = process.hrtime.bigint();
    const starts = sb.docker('start', 'web');
    const again = await probe.until(base, PORTS, true, t);
    await starts;
    r.start_to_first_answer_ms = again.first;
    r.start_to_all_answer_ms = again.all;
  } finally {
    probe.close();
    await sb.stop();
  }
  return r;
}

const results = { ports: PORTS, load_before: load() };
try {
  const base = await freeRange(PORTS);
  results.krater = await kraterRun(base);
  results.load_after_krater = load();
  const unavailable = process.env.BENCH_DOCKER === '0' ? 'BENCH_DOCKER=0' : ensureDocker();
  if (unavailable) results.docker = { skipped: unavailable };
  else {
    const sb = await dockerSandbox(join(work, 'docker'));
    const stopSignal = () => sb.cleanup().finally(() => process.exit(130));
    process.once('SIGINT', stopSignal);
    process.once('SIGTERM', stopSignal);
    try {
      // Its own namespace: the ports Krater used are free there.
      results.docker_userland_proxy = await dockerRun(sb, true, base);
      results.load_after_docker_userland_proxy = load();
      results.docker_iptables_dnat = await dockerRun(sb, false, base);
      results.load_after_docker_iptables_dnat = load();
    } finally {
      await sb.cleanup();
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

// Docker over Krater: how many times more time or memory Docker needs.
// Only for positive figures: a memory growth within the noise (≤ 0) has no meaningful ratio.
const ratio = (a, b) => (a > 0 && b > 0 ? +(a / b).toFixed(1) : undefined);
const K = results.krater;
for (const key of ['docker_userland_proxy', 'docker_iptables_dnat']) {
  const D = results[key];
  if (!D) continue;
  results[`${key}_over_krater`] = {
    create_to_all_answer: ratio(D.create_to_all_answer_ms, K.create_to_all_answer_ms),
    stop_to_all_refused: ratio(D.stop_to_all_refused_ms, K.stop_to_all_refused_ms),
    start_to_all_answer: ratio(D.start_to_all_answer_ms, K.start_to_all_answer_ms),
    extra_rss_without_new_shim: ratio(D.memory.extra_rss_without_new_shim_mib, K.memory.extra_rss_without_new_shim_mib),
    extra_pss_without_new_shim: ratio(D.memory.extra_pss_without_new_shim_mib, K.memory.extra_pss_without_new_shim_mib),
  };
}
console.log(JSON.stringify(results, null, 2));

const cols = [
  ['Krater', K],
  ['Docker (proxy)', results.docker_userland_proxy],
  ['Docker (DNAT)', results.docker_iptables_dnat],
].filter(([, v]) => v);
const s = (x) => (x === undefined ? '-' : (x / 1000).toFixed(2));
const rows = [
  ['create/run → first port answers (s)', (v) => s(v.create_to_first_answer_ms)],
  [`create/run → all ${PORTS} answered (s)`, (v) => s(v.create_to_all_answer_ms)],
  ['`docker run` returned (s)', (v) => s(v.run_command_ms)],
  ['stop → all refused (s)', (v) => s(v.stop_to_all_refused_ms)],
  ['start → all answer again (s)', (v) => s(v.start_to_all_answer_ms)],
  ['extra RSS, without new shim (MiB)', (v) => String(v.memory.extra_rss_without_new_shim_mib)],
  ['extra PSS, without new shim (MiB)', (v) => String(v.memory.extra_pss_without_new_shim_mib)],
  ['extra RSS incl. new shim (MiB)', (v) => String(v.memory.extra_rss_mib)],
  ['new processes', (v) => String(v.memory.new_processes)],
  ['kernel slab growth (MiB, noisy)', (v) => String(v.memory.slab_growth_mib)],
];
console.log(
  `\nPublished ports: ${PORTS} on one container${results.docker ? ` (Docker skipped: ${results.docker.skipped})` : ''}`,
);
console.log(`${''.padEnd(38)}${cols.map(([n]) => n.padStart(16)).join('')}`);
for (const [label, f] of rows) console.log(`${label.padEnd(38)}${cols.map(([, v]) => f(v).padStart(16)).join('')}`);
console.error(`results: ${writeResults('ports', results)}`);
