/**
 * OCI runtime spec generation for simple Linux containers, modelled on containerd's and Docker's
 * defaults: standard mounts, pid/ipc/uts/mount/network namespaces, Docker's default capability set,
 * masked and read-only /proc and /sys paths, no_new_privileges, a cgroupsPath below a caller-chosen
 * parent, memory/cpu/pids limits (and a cpuset), rlimits capped at this host's hard limits, Krater's
 * default seccomp profile (seccomp.ts), Docker's `--privileged` when asked, and a user namespace when asked
 * (container root mapped to an unprivileged host range, as Docker's userns-remap).
 *
 * Not done here (later work): AppArmor profiles, user-name resolution from /etc/passwd. (/etc/hosts and
 * resolv.conf come from the network dataplane.)
 */
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultSeccomp } from './seccomp.js';

/** An OCI runtime spec (loosely typed: the fields we set are typed in the builder). */
export type OciSpec = Record<string, any> & {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  linux: Record<string, any>;
};

export interface OciRlimit {
  type: string;
  soft: number;
  hard: number;
}

export interface OciProcess {
  terminal: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: {
    bounding: string[];
    effective: string[];
    permitted: string[];
    inheritable: string[];
    ambient: string[];
  };
  rlimits: OciRlimit[];
  noNewPrivileges: boolean;
  oomScoreAdj?: number;
  consoleSize?: { height: number; width: number };
}

/** Docker's default capability set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Every capability Linux defines, in number order (0–40). */
export const ALL_CAPABILITIES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
].map((c) => `CAP_${c}`);

/** What a privileged container gets: every capability in this process' bounding set (as Docker does). */
export function hostCapabilities(): string[] {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  const bits = m ? BigInt(`0x${m[1]}`) : 0n;
  return ALL_CAPABILITIES.filter((_, i) => (bits >> BigInt(i)) & 1n);
}

export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface ProcessOptions {
  /** argv; must not be empty. */
  args: string[];
  /** `KEY=value` entries (a PATH is added if missing). */
  env?: string[];
  /** Working directory (absolute; default `/`). */
  cwd?: string;
  uid?: number;
  gid?: number;
  additionalGids?: number[];
  terminal?: boolean;
  /** Capabilities added to / dropped from the default set (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL` drops all). */
  capAdd?: string[];
  capDrop?: string[];
  /** Resource limits; values above this host's hard limits are lowered to them. */
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
}

export interface SpecOptions extends ProcessOptions {
  /** Container id: names the cgroup (`<cgroupParent>/<id>`) and is the default hostname. */
  id: string;
  /** Absolute cgroup parent, unique per Krater installation/test (e.g. `/krater-ab12`). */
  cgroupParent: string;
  hostname?: string;
  /** Memory limit in bytes. */
  memoryLimitBytes?: number;
  /** Memory+swap limit in bytes (-1 = unlimited swap); unset leaves the runtime default. */
  memorySwapBytes?: number;
  /** CPUs as a fraction (1.5 = 150 000 µs quota per 100 000 µs period). */
  cpus?: number;
  cpuShares?: number;
  /** Host CPUs the container may run on (`0,2-3`). */
  cpusetCpus?: string;
  cpuQuota?: number;
  cpuPeriod?: number;
  /** Maximum number of processes/threads in the container. */
  pidsLimit?: number;
  readonlyRootfs?: boolean;
  /**
   * Docker's `--privileged`: every capability, no seccomp profile, no masked or read-only paths, `/sys` writable,
   * all device access in the cgroup, privilege escalation allowed. Zun lets only what policy allows ask for it.
   */
  privileged?: boolean;
  /** Krater's default seccomp profile (seccomp.ts); `false` runs without one. Default: on (off when privileged). */
  seccomp?: boolean;
  /** Join this network namespace (e.g. `/var/run/netns/x`); default: a new, empty one. */
  netnsPath?: string;
  /**
   * Run in a user namespace: container ids 0..size-1 are host ids uid..uid+size-1 (gid likewise). The rootfs must
   * be owned accordingly (the engine remaps the image's snapshot). Ignored for privileged containers; needs the
   * container's own network namespace.
   */
  userns?: UsernsMapping;
  /** Share the host's network namespace (no network namespace entry). */
  hostNetwork?: boolean;
  /** Extra mounts, after the defaults (a mount on the same destination replaces the default). */
  mounts?: OciMount[];
  sysctl?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface OciDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/** Directories of /dev that are not devices of the host to hand over (runc mounts its own pts, shm, mqueue). */
const DEV_SKIP = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);

/**
 * The host's device nodes under `dir` (default /dev), as Docker gives them to a privileged container: character
 * and block devices, recursively, without /dev/console (runc makes the container's own) or symlinks.
 */
export function hostDevices(dir = '/dev'): OciDevice[] {
  const out: OciDevice[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const path = join(dir, name);
    let st: import('node:fs').BigIntStats;
    try {
      st = lstatSync(path, { bigint: true }); // symlinks (stdin, fd, …) are not devices of their own
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      if (!DEV_SKIP.has(name)) out.push(...hostDevices(path));
      continue;
    }
    if ((!st.isCharacterDevice() && !st.isBlockDevice()) || path === '/dev/console') continue;
    // glibc's major()/minor() encoding of dev_t.
    const rdev = st.rdev;
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n));
    out.push({
      path,
      type: st.isCharacterDevice() ? 'c' : 'b',
      major,
      minor,
      fileMode: Number(st.mode & 0o777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
    });
  }
  return out;
}

export interface UsernsMapping {
  uid: number;
  gid: number;
  size: number;
}

/** Host hard limits from /proc/self/limits (processes cannot raise an rlimit above them). */
export function hostHardLimits(): Map<string, number> {
  const names: Record<string, string> = {
    'Max open files': 'RLIMIT_NOFILE',
    'Max processes': 'RLIMIT_NPROC',
    'Max locked memory': 'RLIMIT_MEMLOCK',
    'Max core file size': 'RLIMIT_CORE',
    'Max stack size': 'RLIMIT_STACK',
    'Max file size': 'RLIMIT_FSIZE',
    'Max pending signals': 'RLIMIT_SIGPENDING',
    'Max msgqueue size': 'RLIMIT_MSGQUEUE',
  };
  const out = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    for (const [label, key] of Object.entries(names)) {
      if (!line.startsWith(label)) continue;
      const fields = line.slice(label.length).trim().split(/\s+/);
      const hard = fields[1];
      if (hard && hard !== 'unlimited' && /^\d+$/.test(hard)) out.set(key, Number(hard));
    }
  }
  return out;
}

let hardLimitsCache: Map<string, number> | undefined;

/** Lower soft/hard values to the host's hard limit (and soft to hard). */
export function capRlimits(rlimits: OciRlimit[], hardLimits?: Map<string, number>) {
  if (!hardLimits) hardLimitsCache ??= hostHardLimits();
  const hard = hardLimits ?? hardLimitsCache!;
  return rlimits.map((r) => {
    const type = r.type.startsWith('RLIMIT_') ? r.type : `RLIMIT_${r.type.toUpperCase()}`;
    const max = hard.get(type);
    const h = max === undefined ? r.hard : Math.min(r.hard, max);
    return { type, hard: h, soft: Math.min(r.soft, h) };
  });
}

function normCap(c: string): string {
  const u = c.toUpperCase();
  return u.startsWith('CAP_') ? u : `CAP_${u}`;
}

/** The capability list after adds and drops. */
export function capabilitySet(capAdd: string[] = [], capDrop: string[] = []): string[] {
  let caps = [...DEFAULT_CAPABILITIES];
  if (capDrop.some((c) => c.toUpperCase() === 'ALL')) caps = [];
  const drops = new Set(capDrop.map(normCap));
  caps = caps.filter((c) => !drops.has(c));
  for (const c of capAdd.map(normCap)) if (!caps.includes(c)) caps.push(c);
  return caps;
}

function withPath(env: string[]): string[] {
  return env.some((e) => e.startsWith('PATH=')) ? env : [DEFAULT_PATH_ENV, ...env];
}

/** The `process` section; also used on its own for exec. */
export function buildProcess(opts: ProcessOptions): OciProcess {
  if (!opts.args?.length) throw new Error('process args must not be empty');
  const cwd = opts.cwd || '/';
  if (!cwd.startsWith('/')) throw new Error(`working directory must be absolute: ${cwd}`);
  const uid = opts.uid ?? 0;
  const caps = capabilitySet(opts.capAdd, opts.capDrop);
  const p: OciProcess = {
    terminal: opts.terminal ?? false,
    user: { uid, gid: opts.gid ?? 0, ...(opts.additionalGids?.length ? { additionalGids: opts.additionalGids } : {}) },
    args: [...opts.args],
    env: withPath(opts.env ?? []),
    cwd,
    capabilities: {
      bounding: caps,
      // As Docker does: a non-root user keeps the bounding set but starts without effective capabilities.
      effective: uid === 0 ? caps : [],
      permitted: uid === 0 ? caps : [],
      inheritable: [],
      ambient: [],
    },
    rlimits: capRlimits(opts.rlimits ?? [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 }]),
    noNewPrivileges: opts.noNewPrivileges ?? true,
  };
  if (opts.oomScoreAdj !== undefined) p.oomScoreAdj = opts.oomScoreAdj;
  return p;
}

export function defaultMounts(): OciMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
    },
  ];
}

/** cgroupsPath for a container: `<parent>/<id>`. */
export function cgroupsPathFor(cgroupParent: string, id: string): string {
  if (!cgroupParent.startsWith('/')) throw new Error(`cgroup parent must be absolute: ${cgroupParent}`);
  return `${cgroupParent.replace(/\/+$/, '')}/${id}`;
}

/** Build the runtime spec. `root.path` is `rootfs` (the shim mounts the snapshot there). */
export function buildSpec(opts: SpecOptions): OciSpec {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(opts.id)) throw new Error(`invalid container id: ${opts.id}`);
  const resources: Record<string, any> = { devices: [{ allow: false, access: 'rwm' }] };
  if (opts.memoryLimitBytes !== undefined) {
    resources.memory = { limit: opts.memoryLimitBytes };
    if (opts.memorySwapBytes !== undefined) resources.memory.swap = opts.memorySwapBytes;
  }
  const cpu: Record<string, number> = {};
  if (opts.cpus !== undefined) {
    if (!(opts.cpus > 0)) throw new Error(`cpus must be positive: ${opts.cpus}`);
    cpu.period = opts.cpuPeriod ?? 100_000;
    cpu.quota = Math.round(opts.cpus * cpu.period);
  } else {
    if (opts.cpuQuota !== undefined) cpu.quota = opts.cpuQuota;
    if (opts.cpuPeriod !== undefined) cpu.period = opts.cpuPeriod;
  }
  if (opts.cpuShares !== undefined) cpu.shares = opts.cpuShares;
  const pinned: Record<string, unknown> = opts.cpusetCpus ? { cpus: opts.cpusetCpus } : {};
  if (Object.keys(cpu).length || opts.cpusetCpus) resources.cpu = { ...cpu, ...pinned };
  if (opts.pidsLimit !== undefined) resources.pids = { limit: opts.pidsLimit };

  const namespaces: { type: string; path?: string }[] = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
  ];
  if (!opts.hostNetwork)
    namespaces.push(opts.netnsPath ? { type: 'network', path: opts.netnsPath } : { type: 'network' });
  const userns = opts.privileged ? undefined : opts.userns;
  if (userns) namespaces.push({ type: 'user' });

  const extra = opts.mounts ?? [];
  const replaced = new Set(extra.map((m) => m.destination));
  const mounts = [...defaultMounts().filter((m) => !replaced.has(m.destination)), ...extra];
  // runc 1.1 enters the container's user namespace before its other namespaces (exec), and from there a network
  // namespace owned by the host's user namespace cannot be joined: the container must own its network namespace.
  if (userns && (opts.netnsPath || opts.hostNetwork))
    throw new Error(
      'a container in a user namespace needs a network namespace of its own (no netns path, no host network)',
    );

  const spec: OciSpec = {
    ociVersion: '1.0.2-dev',
    process: buildProcess(
      opts.privileged ? { ...opts, capAdd: hostCapabilities(), noNewPrivileges: opts.noNewPrivileges ?? false } : opts,
    ),
    root: { path: 'rootfs', readonly: opts.readonlyRootfs ?? false },
    hostname: opts.hostname ?? opts.id.slice(0, 63),
    mounts,
    linux: {
      resources,
      cgroupsPath: cgroupsPathFor(opts.cgroupParent, opts.id),
      namespaces,
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  if (userns) {
    for (const n of [userns.uid, userns.gid, userns.size])
      if (!Number.isInteger(n) || n < 0 || n > 2 ** 32 - 1) throw new Error(`invalid user namespace mapping: ${n}`);
    if (userns.size < 1) throw new Error('a user namespace mapping needs at least one id');
    spec.linux.uidMappings = [{ containerID: 0, hostID: userns.uid, size: userns.size }];
    spec.linux.gidMappings = [{ containerID: 0, hostID: userns.gid, size: userns.size }];
  }
  if (opts.privileged) {
    spec.linux.maskedPaths = [];
    spec.linux.readonlyPaths = [];
    resources.devices = [{ allow: true, access: 'rwm' }];
    spec.linux.devices = hostDevices();
    for (const m of spec.mounts) if (m.destination === '/sys') m.options = m.options?.filter((o: string) => o !== 'ro');
  } else if (opts.seccomp !== false) spec.linux.seccomp = defaultSeccomp();
  if (opts.sysctl && Object.keys(opts.sysctl).length) spec.linux.sysctl = { ...opts.sysctl };
  if (opts.annotations && Object.keys(opts.annotations).length) spec.annotations = { ...opts.annotations };
  return spec;
}

/** The parts of an OCI image config that shape a process. */
export interface ImageConfig {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
}

/**
 * Combine an image config with run options the way `docker run` does: `command` replaces Cmd,
 * `entrypoint` replaces Entrypoint (and then Cmd is dropped unless `command` is given), env entries
 * override image entries by name, `workdir`/`user` override the image's.
 */
export function processFromImage(
  image: ImageConfig,
  run: { command?: string[]; entrypoint?: string[]; env?: string[]; workdir?: string; user?: string },
): { args: string[]; env: string[]; cwd: string; uid: number; gid: number } {
  const entrypoint = run.entrypoint ?? image.Entrypoint ?? [];
  const cmd = run.command ?? (run.entrypoint ? [] : (image.Cmd ?? []));
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new Error('no command: the image has no Entrypoint/Cmd and none was given');
  const env = new Map<string, string>();
  for (const e of [...(image.Env ?? []), ...(run.env ?? [])]) {
    const i = e.indexOf('=');
    env.set(i < 0 ? e : e.slice(0, i), e);
  }
  const { uid, gid } = parseUser(run.user ?? image.User ?? '');
  return { args, env: [...env.values()], cwd: run.workdir || image.WorkingDir || '/', uid, gid };
}

/** Numeric `uid[:gid]` (or `root`); names would need the image's /etc/passwd (not supported yet). */
export function parseUser(user: string): { uid: number; gid: number } {
  if (user === '' || user === 'root') return { uid: 0, gid: 0 };
  const [u, g] = user.split(':');
  const uid = u === 'root' ? 0 : Number(u);
  const gid = g === undefined ? uid : g === 'root' ? 0 : Number(g);
  if (!Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0) {
    throw new Error(`unsupported user "${user}": only numeric uid[:gid] is supported`);
  }
  return { uid, gid };
}
