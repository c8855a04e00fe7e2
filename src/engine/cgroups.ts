/**
 * Small helpers for the host's cgroup filesystem: where a container's cgroup lives (v1 hierarchies or the
 * v2 unified tree), reading a few values, and removing a cgroup parent after its containers are gone
 * (runc removes a container's own cgroup on delete but keeps the parent of `cgroupsPath`).
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** `v2` on a unified host, `v1` on legacy and hybrid hosts. */
export function cgroupMode(): 'v1' | 'v2' {
  return existsSync(join(CGROUP_ROOT, 'cgroup.controllers')) ? 'v2' : 'v1';
}

/** Every mounted hierarchy root (v1: one per controller mount, plus `unified` on hybrid hosts). */
export function cgroupHierarchies(): string[] {
  if (cgroupMode() === 'v2') return [CGROUP_ROOT];
  const out: string[] = [];
  for (const name of readdirSync(CGROUP_ROOT)) {
    const dir = join(CGROUP_ROOT, name);
    try {
      if (statSync(dir).isDirectory() && existsSync(join(dir, 'cgroup.procs'))) out.push(dir);
    } catch {
      // not a hierarchy
    }
  }
  return out;
}

/** Directory of a cgroup path for one controller (v1) or in the unified tree (v2). */
export function cgroupDir(cgroupPath: string, controller: string): string {
  const rel = cgroupPath.replace(/^\/+/, '');
  return cgroupMode() === 'v2' ? join(CGROUP_ROOT, rel) : join(CGROUP_ROOT, controller, rel);
}

function readNumber(file: string): number | undefined {
  try {
    const s = readFileSync(file, 'utf8').trim();
    if (s === 'max') return Number.POSITIVE_INFINITY;
    const n = Number(s);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** The memory limit the kernel enforces for a cgroup (bytes; Infinity if unlimited; undefined if absent). */
export function cgroupMemoryLimit(cgroupPath: string): number | undefined {
  return cgroupMode() === 'v2'
    ? readNumber(join(cgroupDir(cgroupPath, 'memory'), 'memory.max'))
    : readNumber(join(cgroupDir(cgroupPath, 'memory'), 'memory.limit_in_bytes'));
}

/** Raw usage numbers read straight from cgroupfs (fallback when the shim reports no metrics). */
export function readCgroupUsage(cgroupPath: string): {
  cpuUsageNs?: number;
  memoryUsageBytes?: number;
  memoryLimitBytes?: number;
  memoryMaxUsageBytes?: number;
  pids?: number;
  pidsLimit?: number;
} {
  if (cgroupMode() === 'v2') {
    const dir = cgroupDir(cgroupPath, '');
    let cpuUsageNs: number | undefined;
    try {
      const m = /usage_usec (\d+)/.exec(readFileSync(join(dir, 'cpu.stat'), 'utf8'));
      if (m) cpuUsageNs = Number(m[1]) * 1000;
    } catch {
      // no cpu controller
    }
    return {
      cpuUsageNs,
      memoryUsageBytes: readNumber(join(dir, 'memory.current')),
      memoryLimitBytes: readNumber(join(dir, 'memory.max')),
      memoryMaxUsageBytes: readNumber(join(dir, 'memory.peak')),
      pids: readNumber(join(dir, 'pids.current')),
      pidsLimit: readNumber(join(dir, 'pids.max')),
    };
  }
  return {
    cpuUsageNs: readNumber(join(cgroupDir(cgroupPath, 'cpuacct'), 'cpuacct.usage')),
    memoryUsageBytes: readNumber(join(cgroupDir(cgroupPath, 'memory'), 'memory.usage_in_bytes')),
    memoryLimitBytes: readNumber(join(cgroupDir(cgroupPath, 'memory'), 'memory.limit_in_bytes')),
    memoryMaxUsageBytes: readNumber(join(cgroupDir(cgroupPath, 'memory'), 'memory.max_usage_in_bytes')),
    pids: readNumber(join(cgroupDir(cgroupPath, 'pids'), 'pids.current')),
    pidsLimit: readNumber(join(cgroupDir(cgroupPath, 'pids'), 'pids.max')),
  };
}

/** Directories that exist for a cgroup path in any hierarchy. */
export function existingCgroupDirs(cgroupPath: string): string[] {
  const rel = cgroupPath.replace(/^\/+/, '');
  if (!rel) return [];
  return cgroupHierarchies()
    .map((h) => join(h, rel))
    .filter((d) => existsSync(d));
}

/**
 * Remove a cgroup path (and its child cgroups, deepest first) from every hierarchy. Only empty cgroups
 * can be removed: returns the directories that could not be (they still hold processes).
 */
export function removeCgroupTree(cgroupPath: string): string[] {
  const rel = cgroupPath.replace(/^\/+/, '');
  if (!rel || rel.split('/').includes('..')) throw new Error(`refusing to remove cgroup ${cgroupPath}`);
  const failed: string[] = [];
  const remove = (dir: string) => {
    let children: string[] = [];
    try {
      children = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => join(dir, e.name));
    } catch {
      return;
    }
    for (const c of children) remove(c);
    try {
      rmdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') failed.push(dir);
    }
  };
  for (const dir of existingCgroupDirs(cgroupPath)) remove(dir);
  return failed;
}
