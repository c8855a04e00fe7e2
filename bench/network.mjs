#!/usr/bin/env node
// Network benchmark: Zun API create → Running with a Neutron port on the kernel dataplane (veth, bridge, nftables,
// DNS) against the same work without one (KRATER_NETWORKING=none: an empty namespace), in the same run; then
// Neutron port creation under concurrency and concurrent container starts with ports.
//
//   sudo node bench/network.mjs            (after `npm run build`; BENCH_N=100 BENCH_CONCURRENCY=20 BENCH_PORTS=200)
//
// Prints p50/p99 of both, the added cost of the port, and the rates; writes bench/results/network-*.json.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ms, pct, startKrater, writeResults } from './lib/cloud.mjs';

const N = Number(process.env.BENCH_N ?? 100);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 20);
const PORTS = Number(process.env.BENCH_PORTS ?? 200);
const work = mkdtempSync(join(tmpdir(), 'krater-bench-net-'));
const results = { n: N, concurrency: CONCURRENCY };
const stats = (xs) => ({ p50: pct(xs, 50), p99: pct(xs, 99), n: xs.length });

try {
  console.error('without networking: starting krater');
  const plain = await startKrater(join(work, 'none'), { KRATER_NETWORKING: 'none' });
  try {
    results.without_port = stats(await plain.sequentialStarts(N));
  } finally {
    await plain.stop();
  }

  console.error('with the kernel dataplane: starting krater');
  const k = await startKrater(join(work, 'kernel'), { KRATER_NETWORKING: 'kernel' });
  try {
    const neutron = `${k.base}/network/v2.0`;
    const post = async (path, body) => {
      const r = await fetch(`${neutron}/${path}`, { method: 'POST', headers: k.H, body: JSON.stringify(body) });
      if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`);
      return r.json();
    };
    // A /16 of its own so that a bench next to other workloads meets no address it did not make.
    const o2 = 100 + Math.floor(Math.random() * 150);
    const { network } = await post('networks', { network: { name: 'bench-net' } });
    await post('subnets', { subnet: { network_id: network.id, ip_version: 4, cidr: `10.${o2}.0.0/16` } });
    const nets = [{ network: network.id }];

    results.with_port = stats(await k.sequentialStarts(N, { nets }));
    console.error('sequential starts measured');

    let t0 = process.hrtime.bigint();
    const batch = await Promise.all(Array.from({ length: CONCURRENCY }, () => k.apiStart({ nets })));
    let wall = ms(t0);
    results.concurrent_with_port = { containers: CONCURRENCY, wall_ms: wall, per_second: (CONCURRENCY / wall) * 1000 };
    await k.cleanup(batch.map((b) => b.uuid));

    // Port creation: PORTS ports, CONCURRENCY requests in flight; each one allocates an address (IPAM) and a MAC.
    const ports = [];
    const latencies = [];
    let next = 0;
    t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < PORTS) {
          next++;
          const s = process.hrtime.bigint();
          ports.push((await post('ports', { port: { network_id: network.id } })).port);
          latencies.push(ms(s));
        }
      }),
    );
    wall = ms(t0);
    const addresses = new Set(ports.map((p) => p.fixed_ips[0].ip_address));
    if (addresses.size !== ports.length) throw new Error('IPAM handed out a duplicate address');
    results.port_create = {
      ports: PORTS,
      in_flight: CONCURRENCY,
      per_second: (PORTS / wall) * 1000,
      ...stats(latencies),
    };
    for (const p of ports) await fetch(`${neutron}/ports/${p.id}`, { method: 'DELETE', headers: k.H });
    await fetch(`${neutron}/networks/${network.id}`, { method: 'DELETE', headers: k.H });
  } finally {
    await k.stop();
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const f = (x) => (x === undefined ? 'n/a' : x.toFixed(1));
console.log(`\nContainer start with and without a port, ${N} sequential starts each (ms):`);
console.log('                                p50      p99');
for (const [key, label] of [
  ['without_port', 'create → Running, no port'],
  ['with_port', 'create → Running, with port'],
]) {
  console.log(`${label.padEnd(30)} ${f(results[key]?.p50).padStart(6)}   ${f(results[key]?.p99).padStart(6)}`);
}
results.port_cost_p50_ms = results.with_port.p50 - results.without_port.p50;
results.ratio_p50 = results.with_port.p50 / results.without_port.p50;
console.log(
  `\nthe port adds ${f(results.port_cost_p50_ms)} ms at p50 (ratio ${results.ratio_p50.toFixed(2)}; goal ≤ ~20 ms)`,
);
const c = results.concurrent_with_port;
console.log(
  `concurrent: ${c.containers} creates with ports → Running in ${c.wall_ms.toFixed(0)} ms (${f(c.per_second)}/s)`,
);
const p = results.port_create;
console.log(
  `port create: ${p.ports} ports, ${p.in_flight} in flight: ${f(p.per_second)}/s (latency p50 ${f(p.p50)} ms, p99 ${f(p.p99)} ms)`,
);
console.log(`results: ${writeResults('network', results)}`);
