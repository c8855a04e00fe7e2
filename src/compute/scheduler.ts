/**
 * Where a new container runs, as Zun's scheduler decides (zun.md §16): the hosts whose `zun-compute` is enabled
 * and up, through Zun's default filters — AvailabilityZoneFilter, ComputeFilter (the candidates already are),
 * RuntimeFilter — and a capacity check against what the host reported (Placement's role: CPUs × 16 and memory ×
 * 1.5, Zun's default allocation ratios, minus what the host's containers hold). Of the hosts that pass, a weigher
 * picks: `spread` (default; the most free RAM, then CPU) or `pack` (the least). The choice is a pure function; the
 * claim that makes it stick under concurrency is compute/placement.ts.
 */
import type { Kysely } from 'kysely';
import type { WeigherName } from '../core/config/scheduler.js';
import type { Database } from '../core/store/schema.js';
import { memoryMiB } from './model.js';

export type { WeigherName };

export const CPU_ALLOCATION_RATIO = 16;
export const RAM_ALLOCATION_RATIO = 1.5;

/** What one candidate host offers and holds. */
export interface HostCandidate {
  host: string;
  availabilityZone: string;
  /** Runtimes the host's agent offers (Zun's `runtime` names). */
  runtimes: string[];
  cpus: number;
  memoryMb: number;
  usedCpu: number;
  usedMemoryMb: number;
}

export interface Request {
  cpu: number;
  memoryMb: number;
  availabilityZone?: string | null;
  runtime?: string | null;
  /** `host` (admin): only that one. */
  host?: string;
}

/** Whether `h` passes the filters and has room for `req`. */
export function fits(h: HostCandidate, req: Request): boolean {
  if (req.host && h.host !== req.host) return false;
  if (req.availabilityZone && h.availabilityZone !== req.availabilityZone) return false;
  if (!h.runtimes.includes(req.runtime ?? 'runc')) return false;
  // A host that reported no inventory yet is not refused for it.
  if (h.cpus > 0 && h.usedCpu + req.cpu > h.cpus * CPU_ALLOCATION_RATIO) return false;
  if (h.memoryMb > 0 && h.usedMemoryMb + req.memoryMb > h.memoryMb * RAM_ALLOCATION_RATIO) return false;
  return true;
}

/** Free RAM (MiB) and CPU left on a host under the allocation ratios; null when it reported no inventory. */
function free(h: HostCandidate): { ram: number; cpu: number } | null {
  if (!(h.cpus > 0 && h.memoryMb > 0)) return null;
  return { ram: h.memoryMb * RAM_ALLOCATION_RATIO - h.usedMemoryMb, cpu: h.cpus * CPU_ALLOCATION_RATIO - h.usedCpu };
}

/**
 * Orders `a` before `b` (negative) when the weigher prefers it: `spread` the most free RAM then CPU, `pack` the
 * least. A host that reported no inventory weighs last either way; equal hosts keep their order (registration).
 */
export function compareHosts(weigher: WeigherName, a: HostCandidate, b: HostCandidate): number {
  const fa = free(a);
  const fb = free(b);
  if (!fa || !fb) return fa ? -1 : fb ? 1 : 0;
  const sign = weigher === 'pack' ? 1 : -1;
  return sign * (fa.ram - fb.ram) || sign * (fa.cpu - fb.cpu);
}

/** The candidates that pass the filters and have room, best first by the weigher. */
export function rankHosts(candidates: HostCandidate[], req: Request, weigher: WeigherName = 'spread'): HostCandidate[] {
  return candidates.filter((h) => fits(h, req)).sort((a, b) => compareHosts(weigher, a, b));
}

/** The best candidate that passes the filters and has room, or undefined (NoValidHost). */
export function chooseHost(
  candidates: HostCandidate[],
  req: Request,
  weigher: WeigherName = 'spread',
): string | undefined {
  return rankHosts(candidates, req, weigher)[0]?.host;
}

/** What the containers placed on a host claim (Zun's resource tracker: `*_used` of a host). */
export interface HostUse {
  containers: number;
  cpu: number;
  /** MiB. */
  memory: number;
  disk: number;
}
export const NO_USE: HostUse = { containers: 0, cpu: 0, memory: 0, disk: 0 };

/** Claims per host, from the container rows (of `hosts` only, when given). */
export async function hostUsage(db: Kysely<Database>, hosts?: string[]): Promise<Map<string, HostUse>> {
  let q = db.selectFrom('containers').select(['host', 'cpu', 'memory', 'disk']);
  if (hosts) q = q.where('host', 'in', hosts);
  const m = new Map<string, HostUse>();
  for (const r of await q.execute()) {
    if (!r.host) continue;
    const u = m.get(r.host) ?? { ...NO_USE };
    u.containers += 1;
    u.cpu += Number(r.cpu ?? 0);
    u.memory += memoryMiB(r);
    u.disk += Number(r.disk ?? 0);
    m.set(r.host, u);
  }
  return m;
}

/** The candidates among `hosts` (schedulable, in order) with their inventory and current use, from the store. */
export async function loadCandidates(db: Kysely<Database>, hosts: string[]): Promise<HostCandidate[]> {
  if (!hosts.length) return [];
  const [infos, services, usage] = await Promise.all([
    db.selectFrom('compute_hosts').select(['hostname', 'info']).where('hostname', 'in', hosts).execute(),
    db
      .selectFrom('compute_services')
      .select(['host', 'availability_zone'])
      .where('binary', '=', 'zun-compute')
      .where('host', 'in', hosts)
      .execute(),
    hostUsage(db, hosts),
  ]);
  return hosts.map((host) => {
    let info: { cpus?: number; mem_total?: number; runtimes?: string[] } = {};
    try {
      info = JSON.parse(infos.find((i) => i.hostname === host)?.info ?? '{}');
    } catch {}
    const use = usage.get(host) ?? NO_USE;
    return {
      host,
      availabilityZone: services.find((s) => s.host === host)?.availability_zone ?? 'nova',
      runtimes: info.runtimes?.length ? info.runtimes : ['runc'],
      cpus: Number(info.cpus ?? 0),
      memoryMb: Number(info.mem_total ?? 0),
      usedCpu: use.cpu,
      usedMemoryMb: use.memory,
    };
  });
}
