/**
 * Starts, adopts and stops a private containerd: its own root, state, gRPC and ttrpc sockets and
 * config under one data directory, metrics disabled, CRI disabled. Readiness = a successful Version call.
 * Stopping sends SIGTERM to the daemon's PID (SIGKILL after a timeout). Tasks keep running across a
 * daemon stop (their shims are separate processes): delete containers first if they must go too.
 *
 * Not everything is private (containerd.md §1): shim sockets live in /run/containerd/s/<hash>, and runc
 * state goes to /run/containerd/runc/<ns> unless a container sets `Options.root` (the Engine does:
 * `runcRoot` below).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ContainerdClient, type VersionInfo } from './containerd-client.js';

export interface SupervisorOptions {
  /** Everything the daemon writes goes below this directory (created if missing). */
  dataDir: string;
  /** containerd binary (default `containerd` from PATH). */
  binary?: string;
  /** containerd log level (default `info`); the log is `<dataDir>/containerd.log`. */
  logLevel?: string;
  /** How long to wait for the first successful Version call (default 15 s). */
  readyTimeoutMs?: number;
  /** TOML appended to the generated config (plugin sections). */
  extraConfig?: string;
  /** Keep the daemon running when this Node process exits (own process group; default false). */
  detached?: boolean;
  /**
   * If `<dataDir>/containerd.pid` names a live containerd serving our socket, use it instead of starting
   * another one (default true). Lets an agent restart without restarting containerd.
   */
  adopt?: boolean;
}

export interface StopOptions {
  /** Grace period after SIGTERM before SIGKILL (default 10 s). */
  timeoutMs?: number;
  /** Leave the clients made by `client()` open (a daemon that is started again is reached through them). */
  keepClients?: boolean;
}

/** A Unix socket path must fit in sockaddr_un.sun_path (108 bytes including the NUL). */
const MAX_SOCKET_PATH = 107;

export interface ContainerdPaths {
  dataDir: string;
  config: string;
  root: string;
  state: string;
  address: string;
  ttrpcAddress: string;
  log: string;
  pidFile: string;
  /** Per-container runc state root (`containerd.runc.v1.Options.root`). */
  runcRoot: string;
  opt: string;
}

export function containerdPaths(dataDir: string): ContainerdPaths {
  const d = resolve(dataDir);
  return {
    dataDir: d,
    config: join(d, 'config.toml'),
    root: join(d, 'root'),
    state: join(d, 'state'),
    address: join(d, 'containerd.sock'),
    ttrpcAddress: join(d, 'containerd-ttrpc.sock'),
    log: join(d, 'containerd.log'),
    pidFile: join(d, 'containerd.pid'),
    runcRoot: join(d, 'runc'),
    opt: join(d, 'opt'),
  };
}

const tomlString = (s: string) => JSON.stringify(s);

/** The config.toml we run containerd with. */
export function renderContainerdConfig(paths: ContainerdPaths, logLevel = 'info', extra = ''): string {
  return [
    '# Written by Krater (src/engine/containerd-supervisor.ts); regenerated on every start.',
    'version = 2',
    `root = ${tomlString(paths.root)}`,
    `state = ${tomlString(paths.state)}`,
    // CRI is not used; the snapshotters below cannot work here and only log (aufs even runs modprobe).
    'disabled_plugins = [',
    '  "io.containerd.grpc.v1.cri",',
    '  "io.containerd.snapshotter.v1.aufs",',
    '  "io.containerd.snapshotter.v1.btrfs",',
    '  "io.containerd.snapshotter.v1.devmapper",',
    '  "io.containerd.snapshotter.v1.zfs",',
    ']',
    '',
    '[grpc]',
    `  address = ${tomlString(paths.address)}`,
    '',
    '[ttrpc]',
    `  address = ${tomlString(paths.ttrpcAddress)}`,
    '',
    '[debug]',
    '  address = ""',
    `  level = ${tomlString(logLevel)}`,
    '',
    '[metrics]',
    '  address = ""',
    '',
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${tomlString(paths.opt)}`,
    '',
    extra,
    '',
  ].join('\n');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie still answers kill(0); treat it as dead.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function cmdlineOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class ContainerdSupervisor {
  readonly address: string;
  /** Undefined for an external daemon (`attach`). */
  readonly paths: ContainerdPaths | undefined;
  /** PID of the daemon we started or adopted; undefined for an external one. */
  pid: number | undefined;
  /** True if this supervisor owns the daemon (it will stop it). */
  readonly owned: boolean;
  private child: ChildProcess | undefined;
  private options: SupervisorOptions | undefined;
  private exited: Promise<void> | undefined;
  private clients: ContainerdClient[] = [];

  private constructor(address: string, paths: ContainerdPaths | undefined, owned: boolean) {
    this.address = address;
    this.paths = paths;
    this.owned = owned;
  }

  /** Use a containerd somebody else runs (never stopped by us). Waits until it answers Version. */
  static async attach(address: string, readyTimeoutMs = 15_000): Promise<ContainerdSupervisor> {
    const sup = new ContainerdSupervisor(address, undefined, false);
    await sup.waitReady(readyTimeoutMs);
    return sup;
  }

  /** Start (or adopt, see `SupervisorOptions.adopt`) a private containerd under `dataDir`. */
  static async start(opts: SupervisorOptions): Promise<ContainerdSupervisor> {
    const paths = containerdPaths(opts.dataDir);
    if (Buffer.byteLength(paths.ttrpcAddress) > MAX_SOCKET_PATH) {
      throw new Error(`data dir too long for a Unix socket path: ${paths.ttrpcAddress}`);
    }
    const sup = new ContainerdSupervisor(paths.address, paths, true);
    sup.options = opts;
    const existing = ContainerdSupervisor.runningPid(paths);
    if (existing !== undefined && opts.adopt === false)
      throw new Error(`containerd already running for ${paths.dataDir} (pid ${existing})`);
    await sup.launch();
    return sup;
  }

  /**
   * Start the private daemon again after it died (adopting one that is already running again, e.g. started by an
   * operator). Only for a daemon this supervisor owns; an external one is never started by Krater.
   */
  async restart(): Promise<void> {
    if (!this.owned || !this.options) throw new Error('containerd is external: Krater does not restart it');
    if (this.pid !== undefined && pidAlive(this.pid)) throw new Error(`containerd (pid ${this.pid}) is still running`);
    this.pid = undefined;
    this.child = undefined;
    this.exited = undefined;
    await this.launch();
  }

  /** Adopt the daemon named by the pid file if it is alive, else spawn one; then wait until it answers. */
  private async launch(): Promise<void> {
    const opts = this.options!;
    const paths = this.paths!;
    for (const d of [paths.dataDir, paths.root, paths.state, paths.runcRoot, paths.opt]) {
      mkdirSync(d, { recursive: true, mode: 0o711 });
    }
    const readyTimeoutMs = opts.readyTimeoutMs ?? 15_000;

    const existing = ContainerdSupervisor.runningPid(paths);
    if (existing !== undefined && opts.adopt !== false) {
      this.pid = existing;
      await this.waitReady(readyTimeoutMs);
      return;
    }

    writeFileSync(paths.config, renderContainerdConfig(paths, opts.logLevel ?? 'info', opts.extraConfig ?? ''));
    // Stale sockets from a crashed daemon would make us talk to nothing; containerd recreates them.
    for (const s of [paths.address, paths.ttrpcAddress]) await unlink(s).catch(() => undefined);

    const logFd = openSync(paths.log, 'a');
    let child: ChildProcess;
    try {
      child = spawn(opts.binary ?? 'containerd', ['--config', paths.config], {
        stdio: ['ignore', logFd, logFd],
        detached: opts.detached ?? false,
        env: { ...process.env, TMPDIR: process.env.TMPDIR ?? '/tmp' },
      });
    } finally {
      closeSync(logFd);
    }
    this.child = child;
    this.exited = new Promise<void>((res) => {
      child.once('exit', () => res());
      child.once('error', () => res());
    });
    const spawnError = new Promise<Error>((res) => child.once('error', res));
    await Promise.race([
      new Promise<void>((res) => child.once('spawn', () => res())),
      spawnError.then((e) => Promise.reject(e)),
    ]);
    this.pid = child.pid;
    if (opts.detached) child.unref();
    writeFileSync(paths.pidFile, `${child.pid}\n`);
    try {
      await this.waitReady(readyTimeoutMs);
    } catch (err) {
      await this.stop({ timeoutMs: 3000, keepClients: true }).catch(() => undefined);
      throw err;
    }
  }

  /** Resolves when the daemon this supervisor spawned exits (undefined for an adopted or external one). */
  get childExited(): Promise<void> | undefined {
    return this.exited;
  }

  /** SIGKILL the private daemon (a hung one, before it is started again). */
  kill(): void {
    if (!this.owned || this.pid === undefined) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  /** PID from `<dataDir>/containerd.pid` if that process is alive and is containerd with our config. */
  static runningPid(paths: ContainerdPaths): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(paths.pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return undefined;
    const argv = cmdlineOf(pid);
    return argv.some((a) => a.endsWith('containerd')) && argv.includes(paths.config) ? pid : undefined;
  }

  /** A client for this daemon; closed by `stop()`. */
  client(namespace: string, snapshotter = 'overlayfs'): ContainerdClient {
    const c = new ContainerdClient({ address: this.address, namespace, snapshotter });
    this.clients.push(c);
    return c;
  }

  /** Poll Version until it answers (fails early if the daemon we started exits). */
  async waitReady(timeoutMs = 15_000): Promise<VersionInfo> {
    const deadline = Date.now() + timeoutMs;
    const socketPath = this.address.replace(/^unix:\/\//, '');
    let lastErr: unknown;
    let died = false;
    void this.exited?.then(() => {
      died = true;
    });
    // Wait for the socket file first: calls against a missing socket push the channel into backoff.
    while (!existsSync(socketPath)) {
      if (died || (this.pid !== undefined && !pidAlive(this.pid))) throw await this.deathError();
      if (Date.now() > deadline)
        throw new Error(`containerd socket ${socketPath} did not appear within ${timeoutMs} ms`);
      await delay(10);
    }
    const probe = new ContainerdClient({ address: this.address, namespace: 'default', timeoutMs: 1000 });
    try {
      while (Date.now() < deadline) {
        if (died || (this.pid !== undefined && !pidAlive(this.pid))) throw await this.deathError();
        try {
          return await probe.version();
        } catch (err) {
          lastErr = err;
          await delay(20);
        }
      }
    } finally {
      probe.close();
    }
    throw new Error(`containerd at ${this.address} not ready within ${timeoutMs} ms: ${String(lastErr)}`);
  }

  private async deathError(): Promise<Error> {
    let tail = '';
    if (this.paths) {
      const log = await readFile(this.paths.log, 'utf8').catch(() => '');
      tail = log.split('\n').slice(-15).join('\n');
    }
    return new Error(`containerd exited during start-up (code ${this.child?.exitCode ?? '?'}):\n${tail}`);
  }

  /** Whether the daemon process is still alive (always true for an external daemon). */
  get running(): boolean {
    return this.pid === undefined ? !this.owned : pidAlive(this.pid);
  }

  /**
   * Stop the daemon (SIGTERM by PID, SIGKILL after `timeoutMs`) and close clients made by `client()`.
   * An attached (external) daemon is left alone.
   */
  async stop(opts: StopOptions = {}): Promise<void> {
    if (!opts.keepClients) for (const c of this.clients.splice(0)) c.close();
    if (!this.owned || this.pid === undefined) return;
    const pid = this.pid;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const gone = async (ms: number): Promise<boolean> => {
      const until = Date.now() + ms;
      while (Date.now() < until) {
        if (!pidAlive(pid)) return true;
        if (this.exited) {
          // Wake up as soon as our child exits; poll otherwise (adopted daemon).
          await Promise.race([this.exited, delay(50)]);
        } else {
          await delay(50);
        }
      }
      return !pidAlive(pid);
    };
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    if (!(await gone(timeoutMs))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await gone(5000);
    }
    if (this.exited) await Promise.race([this.exited, delay(1000)]);
    this.pid = undefined;
    if (this.paths) await unlink(this.paths.pidFile).catch(() => undefined);
  }
}
