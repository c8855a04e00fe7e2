// Process accounting for the benchmarks: which processes make up a system (a daemon's tree plus the containerd
// shims it left to init) and how much memory they hold, measured the same way for Krater and for Docker.
import { readdirSync, readFileSync } from 'node:fs';

const read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};
const kiB = (text, field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(text)?.[1] ?? 0);
/** Resident memory (KiB) of a process. */
export const rssKiB = (pid) => kiB(read(`/proc/${pid}/status`), 'VmRSS');
/** Proportional set size (KiB): shared pages split between their users, so 1,000 copies of one binary count once. */
export const pssKiB = (pid) => kiB(read(`/proc/${pid}/smaps_rollup`), 'Pss');
export const cmdline = (pid) => read(`/proc/${pid}/cmdline`).replaceAll('\0', ' ').trim();
export const comm = (pid) => read(`/proc/${pid}/comm`).trim();
export const slabKiB = () => kiB(read('/proc/meminfo'), 'Slab');

/** Every process below `root`. */
export function descendants(root) {
  const parent = new Map();
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    const stat = read(`/proc/${d}/stat`);
    if (stat) parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
  }
  const out = [];
  const walk = (p) => {
    for (const [c, pp] of parent) {
      if (pp !== p) continue;
      out.push(c);
      walk(c);
    }
  };
  walk(root);
  return out;
}

/** containerd shims whose command line names `marker` (their containerd's socket path): they are re-parented to
 * init, so they are not below the daemon that started them. The container processes below them are not counted. */
export function shims(marker) {
  return readdirSync('/proc')
    .filter((x) => /^\d+$/.test(x))
    .map(Number)
    .filter((p) => comm(p).startsWith('containerd-shim') && cmdline(p).includes(marker));
}

/** The processes of a system rooted at `root` (itself, everything below it, its shims) with their memory. */
export function systemSnapshot(root, marker) {
  const pids = new Set([root, ...descendants(root), ...shims(marker)]);
  const procs = new Map();
  for (const pid of pids) {
    const rss = rssKiB(pid);
    if (rss) procs.set(pid, { comm: comm(pid), rss, pss: pssKiB(pid) });
  }
  return { procs, slabKiB: slabKiB() };
}

const mib = (k) => +(k / 1024).toFixed(1);
const sum = (procs, f) => [...procs].reduce((s, p) => s + p[f], 0);

/** What a system gained between two snapshots: memory in total and per program, and the new processes. */
export function growth(before, after) {
  const fresh = [...after.procs].filter(([pid]) => !before.procs.has(pid)).map(([, p]) => p);
  const byComm = {};
  for (const [pid, p] of after.procs) {
    const b = before.procs.get(pid);
    byComm[p.comm] ??= { processes: 0, new_processes: 0, extra_rss_mib: 0, extra_pss_mib: 0 };
    const e = byComm[p.comm];
    e.processes++;
    if (!b) e.new_processes++;
    e.extra_rss_mib += (p.rss - (b?.rss ?? 0)) / 1024;
    e.extra_pss_mib += (p.pss - (b?.pss ?? 0)) / 1024;
  }
  for (const e of Object.values(byComm)) {
    e.extra_rss_mib = +e.extra_rss_mib.toFixed(1);
    e.extra_pss_mib = +e.extra_pss_mib.toFixed(1);
  }
  const newShims = fresh.filter((p) => p.comm.startsWith('containerd-shim'));
  const extraRss = sum(after.procs.values(), 'rss') - sum(before.procs.values(), 'rss');
  const extraPss = sum(after.procs.values(), 'pss') - sum(before.procs.values(), 'pss');
  return {
    processes_before: before.procs.size,
    processes_after: after.procs.size,
    new_processes: fresh.length,
    extra_rss_mib: mib(extraRss),
    extra_pss_mib: mib(extraPss),
    // The new container's shim is the container's cost, not its ports': the ratios compare without it.
    extra_rss_without_new_shim_mib: mib(extraRss - sum(newShims, 'rss')),
    extra_pss_without_new_shim_mib: mib(extraPss - sum(newShims, 'pss')),
    slab_growth_mib: mib(after.slabKiB - before.slabKiB),
    by_program: byComm,
  };
}
