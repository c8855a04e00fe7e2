#!/usr/bin/env node
// Published-ports benchmark: one container publishing BENCH_PORTS (default 1,000) host ports on 127.0.0.1, bound in
// the kernel (nftables DNAT maps in Krater's host table, one publish leg per container) — no process per port.
//
//   sudo node bench/ports.mjs            (after `npm run build`; BENCH_PORTS=1000)
//
// Measures, against the same Krater with one running container without published ports: the extra resident memory
// of Krater and of every process below it (and how many new processes there are), the kernel's slab growth (noisy:
// the whole machine's), and the time from the create request until every port has answered once; then the time a
// stop takes to free all ports and a start to bind them again. Docker's iptables driver is not installed here (no
// Docker, no registry access), so there is no anchor run. Writes bench/results/ports-*.json.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ms, sleep, startKrater, writeResults } from './lib/cloud.mjs';

const PORTS = Number(process.env.BENCH_PORTS ?? 1000);
const work = mkdtempSync(join(tmpdir(), 'krater-bench-ports-'));

/** Resident memory (KiB) of a process. */
function rssKiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}
/** Every process below `root`. */
function descendants(root) {
  const parent = new Map();
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const out = [];
  const walk = (p) => {
    for (const [c, pp] of parent) if (pp === p) out.push(c), walk(c);
  };
  walk(root);
  return out;
}
const slabKiB = () => Number(/Slab:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))[1]);
/** Memory of Krater and everything below it, and which processes there are. */
function snapshot(pid) {
  const procs = descendants(pid);
  return {
    kraterKiB: rssKiB(pid),
    belowKiB: procs.reduce((s, p) => s + rssKiB(p), 0),
    procs: new Set(procs),
    slabKiB: slabKiB(),
  };
}
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
const answers = (port) =>
  fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) }).then(
    (r) => r.text().then((t) => t.includes('bench-port')),
    () => false,
  );
/** Polls every port (8 at a time: busybox httpd listens with a backlog of 9 and forks per request, more at once
 * only measures its SYN drops) until each has answered once; returns ms since t0 and when the first answered. */
async function untilAllAnswer(base, t0, want = true, first = {}) {
  const left = new Set(Array.from({ length: PORTS }, (_, i) => base + i));
  while (left.size) {
    const batch = [...left].slice(0, 8);
    const ok = await Promise.all(batch.map(answers));
    if (first.ms === undefined && ok.some((x) => x === want)) first.ms = Math.round(ms(t0));
    for (const [i, p] of batch.entries()) if (ok[i] === want) left.delete(p);
    if (left.size && ok.every((x) => x !== want)) await sleep(20);
  }
  return ms(t0);
}

const results = { ports: PORTS };
const k = await startKrater(join(work, 'data'), { KRATER_NETWORKING: 'kernel' });
try {
  const { zun, H } = k;
  const call = async (method, path, body) => {
    const r = await fetch(`${zun}${path}`, { method, headers: H, body: body && JSON.stringify(body) });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    const text = await r.text();
    return text ? JSON.parse(text) : undefined;
  };
  const project = (
    await (await fetch(`${k.base}/identity/v3/auth/tokens`, { headers: { ...H, 'X-Subject-Token': k.token } })).json()
  ).token.project.id;
  await call('PUT', `/quotas/${project}`, { published_ports: PORTS + 10 });
  const httpd = ['sh', '-c', 'mkdir -p /www && echo bench-port > /www/index.html && httpd -f -p 80 -h /www'];
  // The baseline: a running container without published ports (its network, name server and shim exist).
  const plain = await k.apiStart({ name: 'plain', command: httpd });
  await sleep(2000);
  const pid = k.proc.pid;
  const before = snapshot(pid);

  const base = await freeRange(PORTS);
  const spec = Array.from({ length: PORTS }, (_, i) => `127.0.0.1:${base + i}:80`).join(',');
  const t0 = process.hrtime.bigint();
  const { uuid } = await call('POST', '/containers?run=true', {
    name: 'web',
    image: 'busybox',
    command: httpd,
    labels: { 'krater.publish': spec },
  });
  const first = {};
  results.create_to_all_answer_ms = Math.round(await untilAllAnswer(base, t0, true, first));
  results.create_to_first_answer_ms = first.ms;
  await sleep(2000);
  const after = snapshot(pid);
  const fresh = [...after.procs].filter((p) => !before.procs.has(p));
  results.new_processes = fresh.map((p) =>
    readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ').trim().slice(0, 80),
  );
  results.extra_krater_rss_mib = +((after.kraterKiB - before.kraterKiB) / 1024).toFixed(1);
  results.extra_new_processes_rss_mib = +(fresh.reduce((s, p) => s + rssKiB(p), 0) / 1024).toFixed(1);
  results.extra_below_krater_rss_mib = +((after.belowKiB - before.belowKiB) / 1024).toFixed(1);
  results.slab_growth_mib = +((after.slabKiB - before.slabKiB) / 1024).toFixed(1);

  let t = process.hrtime.bigint();
  await call('POST', `/containers/${uuid}/stop?timeout=1`);
  results.stop_to_all_refused_ms = Math.round(await untilAllAnswer(base, t, false));
  t = process.hrtime.bigint();
  await call('POST', `/containers/${uuid}/start`);
  const again = {};
  results.start_to_all_answer_ms = Math.round(await untilAllAnswer(base, t, true, again));
  results.start_to_first_answer_ms = again.ms;
  await k.cleanup([uuid, plain.uuid]);
} finally {
  await k.stop();
  rmSync(work, { recursive: true, force: true });
}
console.log(JSON.stringify(results, null, 2));
console.error(`results: ${writeResults('ports', results)}`);
