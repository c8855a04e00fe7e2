/**
 * The Engine: what the container API (Zun) asks of a container runtime, and its containerd implementation.
 *
 * Lifecycle of a container in `ContainerdEngine`:
 *  - `create`: resolve the image (unpack it if needed), build the OCI spec, then under a lease prepare the
 *    rootfs snapshot (key = container id) and create the containerd container. Log files are created
 *    (`<stateDir>/containers/<id>/stdout.log`, `stderr.log`); the shim appends to them.
 *  - `start`: create a task on the snapshot's mounts and start it (a stopped task left over is deleted first,
 *    so start also restarts). A `Tasks.Wait` is armed for every task.
 *  - When a task exits, the engine reaps it: `Tasks.Delete` (which also flushes the log copy) and the exit
 *    status is recorded as container labels (`krater.io/exit-status`, `krater.io/exited-at`). No stopped
 *    tasks (and so no idle shims) are left behind.
 *  - `stop`: SIGTERM → wait up to the timeout → SIGKILL (all processes) → wait → reap.
 *  - `delete`: Kill → Wait → Tasks.Delete → Containers.Delete → Snapshots.Remove → remove the state dir
 *    (this order matters: containerd.md pitfall 2).
 * Lifecycle operations on one container are serialised; exec, stats and status are not.
 */
import { createHash, randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { existsSync } from 'node:fs';
import { lstat, mkdir, open, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { readCgroupUsage } from './cgroups.js';
import {
  type Container,
  type ContainerdClient,
  isAlreadyExists,
  isNotFound,
  isUnavailable,
  type Labels,
  type Process,
  toDate,
} from './containerd-client.js';
import { EngineError } from './errors.js';
import { type ResolvedImage, resolveImage, unpackLayers } from './image-import.js';
import {
  buildSpec,
  type OciMount,
  type OciRlimit,
  type OciSpec,
  processFromImage,
  type UsernsMapping,
} from './oci-spec.js';
import { jsonAny, OCI_SPEC_TYPE_URL, packAny, unpackAny } from './protos.js';
import { RUNC_GROUP_ANNOTATION, ShimGroupLocks } from './shim-groups.js';
import { FifoStdin, LogFollower, mergeStreams, mkfifo, openFifoReader, openFifoWriter } from './stdio.js';
import { remappedParent } from './userns-snapshot.js';

// ───────────────────────────── the interface ─────────────────────────────

export { EngineError, type EngineErrorCode, toEngineError } from './errors.js';

export type ContainerState = 'created' | 'running' | 'paused' | 'stopped' | 'unknown';

export interface CreateContainerOptions {
  /** Image name as recorded in containerd (e.g. `docker.io/kr/busybox:latest`). */
  image: string;
  /** Replaces the image's Cmd. */
  command?: string[];
  /** Replaces the image's Entrypoint (and drops its Cmd unless `command` is given). */
  entrypoint?: string[];
  /** `KEY=value`; overrides image variables of the same name. */
  env?: string[];
  workdir?: string;
  /** Numeric `uid[:gid]`. */
  user?: string;
  hostname?: string;
  memoryLimitBytes?: number;
  /** CPUs as a fraction (0.5 = half a CPU). */
  cpus?: number;
  cpuShares?: number;
  /** Pin to these host CPUs (`0,1`). */
  cpusetCpus?: string;
  /** Docker's `--privileged` (see oci-spec.ts). */
  privileged?: boolean;
  /** containerd runtime type for this container (default: the engine's, `io.containerd.runc.v2`). */
  runtime?: string;
  pidsLimit?: number;
  readonlyRootfs?: boolean;
  /** Join an existing network namespace (path); default: a new, empty one. */
  netnsPath?: string;
  hostNetwork?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  rlimits?: OciRlimit[];
  mounts?: OciMount[];
  sysctl?: Record<string, string>;
  /** Labels stored on the containerd container (keys under `krater.io/` are reserved). */
  labels?: Labels;
  annotations?: Record<string, string>;
  /**
   * Share one runc shim with the engine's other containers of this group (shim-groups.ts). Only for the
   * engine's own runtime; ignored for others.
   */
  shimGroup?: string;
  /**
   * Run in a user namespace: container root is host uid/gid `userns.uid`/`.gid` (a range of `size` ids), the
   * rootfs a remapped copy of the image's snapshot (userns-snapshot.ts). Ignored for privileged containers.
   */
  userns?: UsernsMapping;
  /**
   * Give the main process a stdin that `attach()` sessions write to: a FIFO in the container's state dir,
   * kept across restarts. Without it the process' stdin is /dev/null.
   */
  openStdin?: boolean;
  /**
   * Run the main process on a pseudo-terminal (`TERM=xterm` is added unless set). Its output (stdout and
   * stderr, merged by the terminal) is appended to the stdout log; the stderr log stays empty.
   */
  tty?: boolean;
}

export interface ExitInfo {
  exitCode: number;
  exitedAt?: Date;
}

export interface ContainerStatus {
  id: string;
  image: string;
  state: ContainerState;
  labels: Labels;
  /** PID of the init process (host pid namespace) while running or paused. */
  pid?: number;
  /** Set once the container has exited (and not been restarted since). */
  exitCode?: number;
  exitedAt?: Date;
  createdAt?: Date;
}

export interface ExecOptions {
  args: string[];
  /** Added to / overriding the container's environment. */
  env?: string[];
  cwd?: string;
  /** Numeric `uid[:gid]` (default: the container's user). */
  user?: string;
  /** Kill the exec'd process (SIGKILL) after this long; the result then has `timedOut: true`. */
  timeoutMs?: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Terminal size in character cells. */
export interface TerminalSize {
  cols: number;
  rows: number;
}

export interface InteractiveExecOptions {
  args: string[];
  /** Allocate a pseudo-terminal (`TERM=xterm` is added unless `env` sets it). */
  tty: boolean;
  /** Added to / overriding the container's environment. */
  env?: string[];
  cwd?: string;
  /** Numeric `uid[:gid]` (default: the container's user). */
  user?: string;
  /** Initial terminal size (tty only); later changes with `resize`. */
  size?: TerminalSize;
}

/**
 * A process started by `execInteractive`. Consume `output` (or `resume()` it): while nobody reads it the
 * process blocks once the pipes are full, and `exit` waits for the output to be delivered.
 */
export interface InteractiveProcess {
  execId: string;
  /**
   * The process' stdin. `end()` closes it (the process reads EOF; with a tty the terminal is hung up).
   * Writes after the process has exited are discarded.
   */
  stdin: Writable;
  /** stdout and stderr merged (with a tty: the terminal's output). Ends after the process has exited. */
  output: Readable;
  /** Set the terminal size (`Tasks.ResizePty`); a no-op without a tty or after exit. */
  resize(cols: number, rows: number): Promise<void>;
  /** Resolves after the process has exited, was deleted from the shim and `output` has ended. */
  exit: Promise<ExitInfo>;
  /** Signal the process (default SIGKILL); a no-op once it has exited. */
  kill(signal?: string | number): Promise<void>;
}

/** A session attached to a container's main process (`attach`). */
export interface AttachSession {
  /**
   * Writes go to the main process' stdin (interleaved with other sessions). `end()` only releases this
   * session's handle: the process' stdin stays open. Without `openStdin` writes are discarded.
   */
  stdin: Writable;
  /** The stdout (and stderr, unless tty) log from its end at attach time. Ends when the run exits or on `close()`. */
  output: Readable;
  /** `Tasks.ResizePty` on the main process; a no-op without a tty or when the task is gone. */
  resize(cols: number, rows: number): Promise<void>;
  /** Detach: ends `output`, releases stdin. The container keeps running. */
  close(): void;
  /** Whether the container was created with `tty` / `openStdin`. */
  readonly tty: boolean;
  readonly stdinOpen: boolean;
  /** Resolves with the exit of the attached run (after `output` ended), or undefined after `close()`. */
  done: Promise<ExitInfo | undefined>;
}

export interface ContainerStats {
  timestamp: Date;
  /** Cumulative CPU time in nanoseconds. */
  cpuUsageNs: number;
  memoryUsageBytes: number;
  /** The enforced limit (a huge number or Infinity when unlimited). */
  memoryLimitBytes: number;
  memoryMaxUsageBytes?: number;
  pids: number;
  pidsLimit?: number;
}

export interface LogPaths {
  stdout: string;
  stderr: string;
}

/**
 * A container runtime as the container API needs it. Ids are caller-chosen
 * (`[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, at most 76 characters).
 */
export interface Engine {
  /** Create a container (not started) from an image already in the engine. */
  create(id: string, opts: CreateContainerOptions): Promise<ContainerStatus>;
  /** Start (or restart after exit) the container's main process. Conflict if it is running or paused. */
  start(id: string): Promise<ContainerStatus>;
  /** SIGTERM (or `signal`), wait up to `timeoutMs` (default 10 s), then SIGKILL. Resolves with the exit (undefined if it was not running). */
  stop(id: string, opts?: { timeoutMs?: number; signal?: string | number }): Promise<ExitInfo | undefined>;
  /** Send a signal (default SIGKILL) to the main process (`all`: every process). */
  kill(id: string, signal?: string | number, opts?: { all?: boolean }): Promise<void>;
  /** Resolves when the current (or last) run has exited and been reaped (waiting through containerd restarts). */
  wait(id: string): Promise<ExitInfo>;
  pause(id: string): Promise<void>;
  unpause(id: string): Promise<void>;
  /** New memory and CPU limits: kept in the container's spec for later starts and applied to a live task. */
  updateResources(id: string, limits: { memoryLimitBytes?: number; cpus?: number }): Promise<void>;
  /** Run a command in the running container and capture its output (non-interactive). */
  exec(id: string, opts: ExecOptions): Promise<ExecResult>;
  /** Start a process in the running container with stdin/output streams (and optionally a tty). */
  execInteractive(id: string, opts: InteractiveExecOptions): Promise<InteractiveProcess>;
  /** Attach to the running main process: its stdin (`openStdin` containers) and its log output from now on. */
  attach(id: string): Promise<AttachSession>;
  /** Files the container's stdout/stderr are appended to (they persist across restarts). */
  logPaths(id: string): LogPaths;
  /** CPU, memory and pids usage of a running container. */
  stats(id: string): Promise<ContainerStats>;
  status(id: string): Promise<ContainerStatus>;
  list(): Promise<ContainerStatus[]>;
  /** Remove the container and its rootfs; a running container needs `force` (killed first). */
  delete(id: string, opts?: { force?: boolean }): Promise<void>;
  /** Removes whatever an unfinished create left under `id` (task, container, snapshot, state), if anything. */
  discard(id: string): Promise<void>;
  /** After a restart of the engine's host process: re-arm exit tracking for existing tasks, reap exited ones. */
  recover(): Promise<void>;
  /** Stop background work (pending waits are cancelled, exits are no longer reaped). Does not touch containers. */
  close(): void;
}

// ───────────────────────────── containerd implementation ─────────────────────────────

export interface ContainerdEngineOptions {
  /** Client bound to Krater's containerd namespace. */
  client: ContainerdClient;
  /** Directory for container logs and exec output (`<stateDir>/containers/<id>/…`). */
  stateDir: string;
  /** Absolute cgroup parent for all containers (`<parent>/<id>`), unique per installation. */
  cgroupParent: string;
  /** runc state root (`containerd.runc.v1.Options.root`); default runc's `/run/containerd/runc/<ns>`. */
  runcRoot?: string;
  /** Runtime binary for the runc shim (e.g. a gVisor wrapper); default runc. */
  runtimeBinary?: string;
  /** containerd runtime (default `io.containerd.runc.v2`). */
  runtime?: string;
}

/** The containerd runtime a container gets unless told otherwise. */
export const DEFAULT_RUNTIME = 'io.containerd.runc.v2';
export const LABEL_MANAGED = 'krater.io/managed';
export const LABEL_EXIT_STATUS = 'krater.io/exit-status';
export const LABEL_EXITED_AT = 'krater.io/exited-at';
/** Set on containers created with `openStdin`: their tasks get the stdin FIFO. */
export const LABEL_OPEN_STDIN = 'krater.io/open-stdin';
/** The shim group of a container created with `shimGroup`. */
export const LABEL_SHIM_GROUP = 'krater.io/shim-group';

const ID_RE = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

function signalNumber(signal: string | number): number {
  if (typeof signal === 'number') return signal;
  const name = signal.toUpperCase().startsWith('SIG') ? signal.toUpperCase() : `SIG${signal.toUpperCase()}`;
  const n = (osConstants.signals as Record<string, number>)[name];
  if (n === undefined) {
    if (/^\d+$/.test(signal)) return Number(signal);
    throw new EngineError('invalid', `unknown signal ${signal}`);
  }
  return n;
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function checkSize(cols: number, rows: number): void {
  for (const v of [cols, rows]) {
    if (!Number.isInteger(v) || v < 1 || v > 65535) {
      throw new EngineError('invalid', `invalid terminal size ${cols}x${rows}`);
    }
  }
}

function hasEnv(env: string[], name: string): boolean {
  return env.some((e) => e === name || e.startsWith(`${name}=`));
}

const shQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const CAT = ['/usr/bin/cat', '/bin/cat'].find((p) => existsSync(p)) ?? 'cat';

/**
 * stdout for a task with a terminal. The runc shim opens a plain-path stdout of a tty process with
 * O_WRONLY at offset 0 (it expects a FIFO there), which would overwrite the log from its start on every
 * run. A `binary://` logger appends instead: the shim starts it with the pty output on fd 3 and waits for
 * fd 5 to close (containerd.md §3c); it ends when the process' terminal closes. It writes its pid to
 * `marker` before it signals readiness and removes the file when the log is complete (see `reap`).
 */
function ttyLogUri(logPath: string, marker: string): string {
  const script = `exec 4>&-; echo $$ >${shQuote(marker)}; exec 5>&-; ${CAT} <&3 >>${shQuote(logPath)}; rm -f ${shQuote(marker)}`;
  return `binary:///bin/sh?-c=${encodeURIComponent(script)}`;
}

/** Wait (bounded) until a tty logger has finished: its marker is gone or its pid is dead. */
async function waitTtyLogger(marker: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const pid = Number((await readFile(marker, 'utf8').catch(() => '')).trim());
    if (!pid) return;
    try {
      process.kill(pid, 0);
    } catch {
      await rm(marker, { force: true });
      return;
    }
    await delay(5);
  }
}

/** Where the runc shim of a task listens: `/run/containerd/s/<sha256(<containerd address>/<ns>/<id>)>` (containerd 1.6). */
export function shimSocketPath(containerdAddress: string, namespace: string, id: string): string {
  const address = containerdAddress.replace(/^unix:\/\//, '');
  return `/run/containerd/s/${createHash('sha256')
    .update(join(address, namespace, id))
    .digest('hex')}`;
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Wait (bounded) until nothing listens on a shim socket any more. */
async function waitShimGone(path: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!existsSync(path) || !(await canConnect(path))) return;
    await delay(10);
  }
}

interface Tracker {
  pid: number;
  /** Raw exit from Tasks.Wait. */
  exit: Promise<ExitInfo>;
  /** Exit after the task has been deleted and the status recorded. */
  reaped: Promise<ExitInfo>;
}

export class ContainerdEngine implements Engine {
  private readonly client: ContainerdClient;
  private readonly opts: ContainerdEngineOptions;
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly trackers = new Map<string, Tracker>();
  /** Container id → shim group (containers with one; filled at create, start and recover). */
  private readonly shimGroups = new Map<string, string>();
  private readonly groupLocks = new ShimGroupLocks();
  /** Resolved images by target digest (resolveImage's cache). */
  private readonly resolvedImages = new Map<string, ResolvedImage>();
  private closed = false;
  private readonly abort = new AbortController();

  constructor(opts: ContainerdEngineOptions) {
    this.opts = opts;
    this.client = opts.client;
    // Every pending Tasks.Wait (one per task and per exec) listens on this signal.
    setMaxListeners(0, this.abort.signal);
  }

  // ── helpers ──

  private checkId(id: string): void {
    if (!ID_RE.test(id) || id.length > 76) throw new EngineError('invalid', `invalid container id: ${id}`);
  }

  private containerDir(id: string): string {
    return join(this.opts.stateDir, 'containers', id);
  }

  logPaths(id: string): LogPaths {
    this.checkId(id);
    const dir = this.containerDir(id);
    return { stdout: join(dir, 'stdout.log'), stderr: join(dir, 'stderr.log') };
  }

  /** Serialise lifecycle operations per container. */
  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  private async getContainer(id: string): Promise<Container> {
    this.checkId(id);
    try {
      return await this.client.containers.get(id);
    } catch (err) {
      if (isNotFound(err)) throw new EngineError('not_found', `container ${id} not found`, { cause: err });
      throw err;
    }
  }

  private async getTask(id: string): Promise<Process | undefined> {
    try {
      return await this.client.tasks.get(id);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private ttyLoggerMarker(id: string): string {
    return join(this.containerDir(id), 'tty-logger.pid');
  }

  private stdinFifoPath(id: string): string {
    return join(this.containerDir(id), 'stdin');
  }

  /** The main process' stdin FIFO (`openStdin` containers), created if missing. */
  private async ensureStdinFifo(id: string): Promise<string> {
    const path = this.stdinFifoPath(id);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isFIFO()) return path;
    if (st) await rm(path, { force: true });
    await mkdir(this.containerDir(id), { recursive: true, mode: 0o700 });
    await mkfifo([path]);
    return path;
  }

  private async ensureLogFiles(id: string): Promise<LogPaths> {
    const paths = this.logPaths(id);
    await mkdir(this.containerDir(id), { recursive: true, mode: 0o700 });
    // The shim only appends to existing files (containerd.md §3c): create them, never truncate.
    for (const p of [paths.stdout, paths.stderr]) await (await open(p, 'a', 0o640)).close();
    return paths;
  }

  private runtimeOptions() {
    const o: Record<string, unknown> = {};
    if (this.opts.runcRoot) o.root = this.opts.runcRoot;
    if (this.opts.runtimeBinary) o.binary_name = this.opts.runtimeBinary;
    return Object.keys(o).length ? packAny('containerd.runc.v1.Options', o) : null;
  }

  private toStatus(c: Container, task: Process | undefined): ContainerStatus {
    const labels = c.labels ?? {};
    const st: ContainerStatus = {
      id: c.id,
      image: c.image ?? '',
      state: 'created',
      labels,
      createdAt: toDate(c.created_at),
    };
    if (task) {
      switch (task.status) {
        case 'RUNNING':
          st.state = 'running';
          break;
        case 'PAUSED':
        case 'PAUSING':
          st.state = 'paused';
          break;
        case 'STOPPED':
          st.state = 'stopped';
          st.exitCode = task.exit_status;
          st.exitedAt = toDate(task.exited_at);
          break;
        case 'CREATED':
          st.state = 'created';
          break;
        default:
          st.state = 'unknown';
      }
      if (st.state !== 'stopped') st.pid = task.pid;
    } else if (labels[LABEL_EXIT_STATUS] !== undefined) {
      st.state = 'stopped';
      st.exitCode = Number(labels[LABEL_EXIT_STATUS]);
      st.exitedAt = labels[LABEL_EXITED_AT] ? new Date(labels[LABEL_EXITED_AT]) : undefined;
    }
    return st;
  }

  // ── exit tracking ──

  /** Tasks.Wait, re-issued while containerd is unreachable (restarts). */
  private async waitLoop(id: string, execId = ''): Promise<ExitInfo> {
    for (;;) {
      try {
        const r = await this.client.tasks.wait(id, execId, { signal: this.abort.signal });
        return { exitCode: r.exit_status, exitedAt: toDate(r.exited_at) };
      } catch (err) {
        if (isUnavailable(err) && !this.closed) {
          await delay(250);
          continue;
        }
        throw err;
      }
    }
  }

  private track(id: string, pid: number): Tracker {
    const existing = this.trackers.get(id);
    if (existing && existing.pid === pid) return existing;
    const exit = this.waitLoop(id);
    const reaped = exit.then((info) => this.withLock(id, () => this.reap(id, pid, info)).then(() => info));
    exit.catch(() => undefined);
    reaped.catch(() => undefined);
    const t: Tracker = { pid, exit, reaped };
    this.trackers.set(id, t);
    return t;
  }

  /** Delete an exited task (if it is still the one we tracked) and record its exit status. Caller holds the lock. */
  private async reap(id: string, pid: number, info: ExitInfo): Promise<void> {
    try {
      const task = await this.getTask(id);
      if (!task || task.pid !== pid || task.status !== 'STOPPED') return;
      await this.deleteTask(id);
      // A tty's output reaches the log through a logger that may still be writing (ttyLogUri).
      await waitTtyLogger(this.ttyLoggerMarker(id));
      await this.recordExit(id, info);
    } finally {
      // Only now: `wait()` must find the tracker until the exit is recorded.
      if (this.trackers.get(id)?.pid === pid) this.trackers.delete(id);
    }
  }

  /**
   * Tasks.Delete, then wait for the task's shim to go away. containerd 1.6 asks the shim to shut down but
   * does not wait for it; a task created right after with the same id would be handed to the dying shim
   * (the runc shim reuses a live socket at the same address) and be lost with it.
   */
  private async deleteTask(id: string): Promise<void> {
    const remove = async () => {
      try {
        await this.client.tasks.delete(id);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    };
    const group = await this.shimGroupOf(id);
    if (!group) {
      await remove();
      await waitShimGone(shimSocketPath(this.client.address, this.client.namespace, id));
      return;
    }
    // A shared shim exits with its group's last task (shim-groups.ts).
    await this.groupLocks.exclusive(group, async () => {
      await remove();
      const others = (await this.client.tasks.list()).some((t) => t.id !== id && this.shimGroups.get(t.id) === group);
      if (!others) await waitShimGone(shimSocketPath(this.client.address, this.client.namespace, group));
    });
  }

  private async shimGroupOf(id: string): Promise<string | undefined> {
    const known = this.shimGroups.get(id);
    if (known) return known;
    const c = await this.client.containers.get(id).catch(() => undefined);
    const group = c?.labels?.[LABEL_SHIM_GROUP];
    if (group) this.shimGroups.set(id, group);
    return group;
  }

  private async recordExit(id: string, info: ExitInfo): Promise<void> {
    const labels: Labels = {
      [LABEL_EXIT_STATUS]: String(info.exitCode),
      [LABEL_EXITED_AT]: (info.exitedAt ?? new Date()).toISOString(),
    };
    try {
      await this.client.containers.update(
        { id, labels } as Container,
        Object.keys(labels).map((k) => `labels.${k}`),
      );
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  // ── Engine ──

  async create(id: string, o: CreateContainerOptions): Promise<ContainerStatus> {
    this.checkId(id);
    return this.withLock(id, async () => {
      for (const k of Object.keys(o.labels ?? {})) {
        if (k.startsWith('krater.io/')) throw new EngineError('invalid', `label ${k} is reserved`);
      }
      const ownRuntime = !o.runtime || o.runtime === (this.opts.runtime ?? DEFAULT_RUNTIME);
      if (o.shimGroup !== undefined && !(ID_RE.test(o.shimGroup) && o.shimGroup.length <= 76))
        throw new EngineError('invalid', `invalid shim group: ${o.shimGroup}`);
      const shimGroup = ownRuntime ? o.shimGroup : undefined;
      let image: ResolvedImage;
      try {
        image = await resolveImage(this.client, o.image, undefined, this.resolvedImages);
      } catch (err) {
        if (isNotFound(err)) throw new EngineError('not_found', `image ${o.image} not found`, { cause: err });
        throw err;
      }
      const proc = (() => {
        try {
          return processFromImage(image.config.config ?? {}, {
            command: o.command,
            entrypoint: o.entrypoint,
            env: o.env,
            workdir: o.workdir,
            user: o.user,
          });
        } catch (err) {
          throw new EngineError('invalid', (err as Error).message, { cause: err });
        }
      })();
      let spec: OciSpec;
      try {
        if (o.tty && !hasEnv(proc.env, 'TERM')) proc.env.push('TERM=xterm');
        spec = buildSpec({
          id,
          cgroupParent: this.opts.cgroupParent,
          ...proc,
          terminal: o.tty ?? false,
          hostname: o.hostname,
          memoryLimitBytes: o.memoryLimitBytes,
          cpus: o.cpus,
          cpusetCpus: o.cpusetCpus,
          privileged: o.privileged,
          cpuShares: o.cpuShares,
          pidsLimit: o.pidsLimit,
          readonlyRootfs: o.readonlyRootfs,
          netnsPath: o.netnsPath,
          hostNetwork: o.hostNetwork,
          capAdd: o.capAdd,
          capDrop: o.capDrop,
          rlimits: o.rlimits,
          mounts: o.mounts,
          sysctl: o.sysctl,
          annotations: shimGroup ? { ...o.annotations, [RUNC_GROUP_ANNOTATION]: shimGroup } : o.annotations,
          userns: o.userns,
        });
      } catch (err) {
        throw new EngineError('invalid', (err as Error).message, { cause: err });
      }
      await this.ensureLogFiles(id);
      if (o.openStdin) await this.ensureStdinFifo(id);
      const created = await this.client.withTemporaryLease(async (leased) => {
        if (image.chainId && !(await leased.snapshots.stat(image.chainId))) {
          await unpackLayers(leased, image.layers, image.diffIds);
        }
        try {
          const parent =
            o.userns && !o.privileged && image.chainId
              ? await remappedParent(leased, image.chainId, o.userns, this.opts.stateDir)
              : image.chainId;
          await leased.snapshots.prepare(id, parent);
        } catch (err) {
          if (isAlreadyExists(err)) throw new EngineError('conflict', `container ${id} already exists`, { cause: err });
          throw err;
        }
        try {
          return await leased.containers.create({
            id,
            image: image.name,
            labels: {
              ...(o.labels ?? {}),
              [LABEL_MANAGED]: 'true',
              ...(o.openStdin ? { [LABEL_OPEN_STDIN]: 'true' } : {}),
              ...(shimGroup ? { [LABEL_SHIM_GROUP]: shimGroup } : {}),
            },
            // The engine's own runtime carries its options (binary, cgroup settings); another one is taken as is.
            runtime:
              o.runtime && o.runtime !== (this.opts.runtime ?? DEFAULT_RUNTIME)
                ? { name: o.runtime }
                : { name: this.opts.runtime ?? DEFAULT_RUNTIME, options: this.runtimeOptions() },
            spec: jsonAny(OCI_SPEC_TYPE_URL, spec),
            snapshotter: leased.snapshotter,
            snapshot_key: id,
          });
        } catch (err) {
          await leased.snapshots.remove(id).catch(() => undefined);
          if (isAlreadyExists(err)) throw new EngineError('conflict', `container ${id} already exists`, { cause: err });
          throw err;
        }
      });
      if (shimGroup) this.shimGroups.set(id, shimGroup);
      return this.toStatus(created, undefined);
    });
  }

  async start(id: string): Promise<ContainerStatus> {
    const c = await this.getContainer(id);
    return this.withLock(id, async () => {
      let task = await this.getTask(id);
      if (task && (task.status === 'RUNNING' || task.status === 'PAUSED' || task.status === 'PAUSING')) {
        throw new EngineError('conflict', `container ${id} is ${task.status.toLowerCase()}`);
      }
      if (task && task.status === 'STOPPED') {
        // Exited but not reaped yet (e.g. the engine was restarted): record and clear it.
        await this.reap(id, task.pid, { exitCode: task.exit_status, exitedAt: toDate(task.exited_at) });
        task = undefined;
      }
      if (!task) {
        const logs = await this.ensureLogFiles(id);
        const tty = unpackAny<OciSpec>(c.spec)?.process?.terminal === true;
        const openStdin = c.labels?.[LABEL_OPEN_STDIN] === 'true';
        const stdin = openStdin ? await this.ensureStdinFifo(id) : '';
        const mounts = await this.client.snapshots.mounts(c.snapshot_key || id, c.snapshotter || undefined);
        const group = c.labels?.[LABEL_SHIM_GROUP];
        const createTask = () =>
          this.client.tasks.create({
            container_id: id,
            rootfs: mounts,
            stdin,
            stdout: tty ? ttyLogUri(logs.stdout, this.ttyLoggerMarker(id)) : logs.stdout,
            stderr: tty ? '' : logs.stderr,
            terminal: tty,
          });
        let created: { pid: number };
        try {
          if (group) this.shimGroups.set(id, group);
          created = group ? await this.groupLocks.shared(group, createTask) : await createTask();
        } catch (err) {
          throw new EngineError('failed', `cannot create task for ${id}: ${(err as Error).message}`, { cause: err });
        }
        task = { pid: created.pid } as Process;
      }
      const tracker = this.track(id, task.pid);
      try {
        await this.client.tasks.start(id);
      } catch (err) {
        // Do not leave a created-but-dead task behind.
        await this.client.tasks.kill(id, 9, { all: true }).catch(() => undefined);
        await Promise.race([tracker.exit.catch(() => undefined), delay(5000)]);
        await this.deleteTask(id).catch(() => undefined);
        this.trackers.delete(id);
        throw new EngineError('failed', `cannot start ${id}: ${(err as Error).message}`, { cause: err });
      }
      return this.toStatus(c, await this.getTask(id));
    });
  }

  async stop(id: string, opts: { timeoutMs?: number; signal?: string | number } = {}): Promise<ExitInfo | undefined> {
    await this.getContainer(id);
    const signal = signalNumber(opts.signal ?? 'SIGTERM');
    return this.withLock(id, () => this.stopLocked(id, signal, opts.timeoutMs ?? 10_000));
  }

  private async stopLocked(id: string, signal: number, timeoutMs: number): Promise<ExitInfo | undefined> {
    const task = await this.getTask(id);
    if (!task) return undefined;
    const tracker = this.track(id, task.pid);
    if (task.status !== 'STOPPED') {
      await this.signal(id, task, signal, false);
      const exited = await Promise.race([tracker.exit, delay(timeoutMs).then(() => undefined)]);
      if (!exited) await this.signal(id, task, 9, true);
    }
    const info = await tracker.exit;
    await this.reap(id, task.pid, info);
    return info;
  }

  /** Kill, tolerating an already-finished process; a paused container is thawed so the signal is delivered. */
  private async signal(id: string, task: Process, signal: number, all: boolean): Promise<void> {
    try {
      await this.client.tasks.kill(id, signal, { all });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    if (task.status === 'PAUSED' || task.status === 'PAUSING') {
      await this.client.tasks.resume(id).catch(() => undefined);
    }
  }

  async kill(id: string, signal: string | number = 'SIGKILL', opts: { all?: boolean } = {}): Promise<void> {
    await this.getContainer(id);
    const n = signalNumber(signal);
    const task = await this.getTask(id);
    if (!task || task.status === 'STOPPED') throw new EngineError('conflict', `container ${id} is not running`);
    this.track(id, task.pid);
    try {
      await this.client.tasks.kill(id, n, { all: opts.all ?? false });
    } catch (err) {
      if (isNotFound(err)) throw new EngineError('conflict', `container ${id} is not running`, { cause: err });
      throw err;
    }
  }

  async wait(id: string): Promise<ExitInfo> {
    // Like the Tasks.Wait under it, a wait outlives a containerd restart: the lookups are retried while it is away.
    for (;;) {
      let c: Container;
      let task: Process | undefined;
      try {
        c = await this.getContainer(id);
        const tracker = this.trackers.get(id);
        if (tracker) return tracker.reaped;
        task = await this.getTask(id);
      } catch (err) {
        if (isUnavailable(err) && !this.closed) {
          await delay(250);
          continue;
        }
        throw err;
      }
      if (task) return this.track(id, task.pid).reaped;
      const st = this.toStatus(c, undefined);
      if (st.state === 'stopped') return { exitCode: st.exitCode ?? -1, exitedAt: st.exitedAt };
      throw new EngineError('conflict', `container ${id} has not been started`);
    }
  }

  async updateResources(id: string, limits: { memoryLimitBytes?: number; cpus?: number }): Promise<void> {
    await this.withLock(id, async () => {
      const c = await this.getContainer(id);
      const spec = unpackAny<OciSpec>(c.spec);
      if (!spec) throw new EngineError('failed', `container ${id} has no runtime spec`);
      spec.linux.resources ??= {};
      const res = spec.linux.resources as Record<string, any>;
      if (limits.memoryLimitBytes !== undefined) res.memory = { ...res.memory, limit: limits.memoryLimitBytes };
      if (limits.cpus !== undefined) {
        const period = res.cpu?.period ?? 100_000;
        res.cpu = { ...res.cpu, period, quota: Math.round(limits.cpus * period) };
      }
      const task = await this.getTask(id);
      // The live task first: if the kernel refuses (memory below what is in use), the spec stays as it was.
      if (task && ['RUNNING', 'PAUSED', 'PAUSING'].includes(task.status)) {
        try {
          await this.client.tasks.update(id, { memory: res.memory, cpu: res.cpu });
        } catch (err) {
          throw new EngineError('failed', `cannot update the limits of ${id}: ${(err as Error).message}`, {
            cause: err,
          });
        }
      }
      await this.client.containers.update({ id, spec: jsonAny(OCI_SPEC_TYPE_URL, spec) } as Container, ['spec']);
    });
  }

  async pause(id: string): Promise<void> {
    await this.getContainer(id);
    await this.withLock(id, async () => {
      const task = await this.getTask(id);
      if (task?.status !== 'RUNNING') {
        throw new EngineError('conflict', `container ${id} is ${task ? task.status.toLowerCase() : 'not running'}`);
      }
      await this.client.tasks.pause(id);
    });
  }

  async unpause(id: string): Promise<void> {
    await this.getContainer(id);
    await this.withLock(id, async () => {
      const task = await this.getTask(id);
      if (!task || (task.status !== 'PAUSED' && task.status !== 'PAUSING')) {
        throw new EngineError('conflict', `container ${id} is not paused`);
      }
      await this.client.tasks.resume(id);
    });
  }

  /** Checks for exec: a command, a running task; returns the exec process spec (from the container's). */
  private async execProcess(
    id: string,
    o: { args: string[]; env?: string[]; cwd?: string; user?: string },
    terminal: boolean,
  ): Promise<Record<string, unknown>> {
    const c = await this.getContainer(id);
    if (!o.args?.length) throw new EngineError('invalid', 'exec needs a command');
    const task = await this.getTask(id);
    if (task?.status !== 'RUNNING') {
      throw new EngineError('conflict', `container ${id} is ${task ? task.status.toLowerCase() : 'not running'}`);
    }
    const spec = unpackAny<OciSpec>(c.spec);
    if (!spec?.process) throw new EngineError('failed', `container ${id} has no process spec`);
    const env = new Map<string, string>();
    for (const e of [...(spec.process.env ?? []), ...(o.env ?? [])]) {
      const i = e.indexOf('=');
      env.set(i < 0 ? e : e.slice(0, i), e);
    }
    const process: Record<string, unknown> = {
      ...spec.process,
      terminal,
      args: o.args,
      env: [...env.values()],
      cwd: o.cwd ?? spec.process.cwd ?? '/',
    };
    if (o.user !== undefined) {
      const [u, g] = o.user.split(':');
      const uid = Number(u);
      const gid = g === undefined ? uid : Number(g);
      if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0) {
        throw new EngineError('invalid', `unsupported user ${o.user}: only numeric uid[:gid]`);
      }
      process.user = { uid, gid };
    }
    return process;
  }

  async exec(id: string, o: ExecOptions): Promise<ExecResult> {
    const process = await this.execProcess(id, o, false);
    const execId = `exec-${randomUUID().slice(0, 12)}`;
    const dir = join(this.containerDir(id), 'exec');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const out = join(dir, `${execId}.out`);
    const err = join(dir, `${execId}.err`);
    for (const p of [out, err]) await (await open(p, 'w', 0o600)).close();
    let created = false;
    try {
      await this.client.tasks.exec({ container_id: id, exec_id: execId, process, stdout: out, stderr: err });
      created = true;
      // A finished exec stays until DeleteProcess, so Wait may be issued before or after Start.
      const exit = this.waitLoop(id, execId);
      exit.catch(() => undefined);
      try {
        await this.client.tasks.start(id, execId);
      } catch (e) {
        // As Docker: a command that cannot be started is the exec's result (126/127), not a failure of the API.
        const failed = execStartFailure((e as Error).message);
        if (failed) return failed;
        throw new EngineError('failed', `exec in ${id} failed: ${(e as Error).message}`, { cause: e });
      }
      let timedOut = false;
      let info: ExitInfo | undefined;
      if (o.timeoutMs) {
        info = await Promise.race([exit, delay(o.timeoutMs).then(() => undefined)]);
        if (!info) {
          timedOut = true;
          await this.client.tasks.kill(id, 9, { execId }).catch(() => undefined);
        }
      }
      info ??= await exit;
      // DeleteProcess waits for the shim to finish copying output into the files.
      await this.client.tasks.deleteProcess(id, execId);
      created = false;
      const [stdout, stderr] = await Promise.all([readFile(out, 'utf8'), readFile(err, 'utf8')]);
      return { exitCode: info.exitCode, stdout, stderr, timedOut };
    } finally {
      if (created) await this.client.tasks.deleteProcess(id, execId).catch(() => undefined);
      await rm(out, { force: true });
      await rm(err, { force: true });
    }
  }

  async execInteractive(id: string, o: InteractiveExecOptions): Promise<InteractiveProcess> {
    const tty = o.tty === true;
    if (o.size) checkSize(o.size.cols, o.size.rows);
    const process = await this.execProcess(id, o, tty);
    if (tty) {
      const env = process.env as string[];
      if (!hasEnv(env, 'TERM')) env.push('TERM=xterm');
      if (o.size) process.consoleSize = { height: o.size.rows, width: o.size.cols };
    }
    const execId = `exec-${randomUUID().slice(0, 12)}`;
    const dir = join(this.containerDir(id), 'exec');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const fifos = { in: join(dir, `${execId}.in`), out: join(dir, `${execId}.out`), err: join(dir, `${execId}.err`) };
    const paths = tty ? [fifos.in, fifos.out] : [fifos.in, fifos.out, fifos.err];
    await mkfifo(paths);
    // Our ends are opened before Exec/Start, without blocking (stdio.ts): the shim opens its writers on the
    // output FIFOs synchronously in Start and needs a reader there.
    let stdinSock: ReturnType<typeof openFifoWriter> | undefined;
    const readers: ReturnType<typeof openFifoReader>[] = [];
    let merged: ReturnType<typeof mergeStreams> | undefined;
    let created = false;
    let exitWait: Promise<ExitInfo>;
    try {
      stdinSock = openFifoWriter(fifos.in);
      readers.push(openFifoReader(fifos.out));
      if (!tty) readers.push(openFifoReader(fifos.err));
      // Merged now, before any await: a process that exits at once may close its FIFOs while we still wait on
      // Start, and a source that closed before the merge listened would never count as closed.
      merged = mergeStreams(readers.map((r) => r.stream));
      await this.client.tasks.exec({
        container_id: id,
        exec_id: execId,
        process,
        stdin: fifos.in,
        stdout: fifos.out,
        stderr: tty ? '' : fifos.err,
        terminal: tty,
      });
      created = true;
      exitWait = this.waitLoop(id, execId);
      exitWait.catch(() => undefined);
      try {
        await this.client.tasks.start(id, execId);
      } catch (e) {
        throw new EngineError('failed', `exec in ${id} failed: ${(e as Error).message}`, { cause: e });
      }
    } catch (err) {
      stdinSock?.destroy();
      for (const r of readers) r.stream.destroy();
      merged?.output.destroy();
      if (created) await this.client.tasks.deleteProcess(id, execId).catch(() => undefined);
      if (isNotFound(err)) throw new EngineError('conflict', `container ${id} is not running`, { cause: err });
      throw err;
    } finally {
      // The shim has opened every FIFO by now (through O_PATH handles taken in Start), or never will:
      // the names can go, and so can the placeholder writers.
      for (const r of readers) r.releaseHold();
      await Promise.all(paths.map((p) => rm(p, { force: true })));
    }

    const { output, closed: outputClosed } = merged!;
    const stdin = new FifoStdin(stdinSock, async () => {
      await this.client.tasks.closeIO(id, execId).catch(() => undefined);
    });
    const exit = (async () => {
      let info: ExitInfo;
      try {
        info = await exitWait;
      } catch (err) {
        stdin.detach();
        output.destroy();
        await this.client.tasks.deleteProcess(id, execId).catch(() => undefined);
        throw err;
      }
      stdin.detach();
      // DeleteProcess waits (up to 2 s) for the shim's output copy; afterwards its writers are closed.
      await this.client.tasks.deleteProcess(id, execId).catch(() => undefined);
      await outputClosed;
      return info;
    })();
    exit.catch(() => undefined);
    let exited = false;
    void exit.finally(() => {
      exited = true;
    });
    return {
      execId,
      stdin,
      output,
      exit,
      resize: async (cols: number, rows: number) => {
        checkSize(cols, rows);
        if (!tty || exited) return;
        try {
          await this.client.tasks.resizePty(id, cols, rows, execId);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      },
      kill: async (signal: string | number = 'SIGKILL') => {
        const n = signalNumber(signal);
        if (exited) return;
        try {
          await this.client.tasks.kill(id, n, { execId });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      },
    };
  }

  async attach(id: string): Promise<AttachSession> {
    const c = await this.getContainer(id);
    const task = await this.getTask(id);
    if (!task || (task.status !== 'RUNNING' && task.status !== 'PAUSED' && task.status !== 'PAUSING')) {
      throw new EngineError('conflict', `container ${id} is ${task ? task.status.toLowerCase() : 'not running'}`);
    }
    const tty = unpackAny<OciSpec>(c.spec)?.process?.terminal === true;
    const stdinOpen = c.labels?.[LABEL_OPEN_STDIN] === 'true';
    const logs = this.logPaths(id);
    const tracker = this.track(id, task.pid);
    const follower = await LogFollower.follow(tty ? [logs.stdout] : [logs.stdout, logs.stderr]);
    let stdin: FifoStdin;
    try {
      stdin = new FifoStdin(stdinOpen ? openFifoWriter(await this.ensureStdinFifo(id)) : undefined);
    } catch (err) {
      follower.destroy();
      throw err;
    }
    let detached = false;
    let resolveDone!: (info: ExitInfo | undefined) => void;
    const done = new Promise<ExitInfo | undefined>((r) => {
      resolveDone = r;
    });
    const close = () => {
      if (detached) return;
      detached = true;
      stdin.detach();
      follower.stop();
      resolveDone(undefined);
    };
    tracker.reaped.then(
      async (info) => {
        if (detached) return;
        detached = true;
        stdin.detach();
        // The log is complete once the task is deleted (a tty logger may lag a little: finish() waits).
        await follower.finish();
        resolveDone(info);
      },
      () => close(),
    );
    follower.once('close', close);
    return {
      stdin,
      output: follower,
      tty,
      stdinOpen,
      done,
      close,
      resize: async (cols: number, rows: number) => {
        checkSize(cols, rows);
        if (!tty) return;
        try {
          await this.client.tasks.resizePty(id, cols, rows);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      },
    };
  }

  async stats(id: string): Promise<ContainerStats> {
    const c = await this.getContainer(id);
    const task = await this.getTask(id);
    if (!task || task.status === 'STOPPED') throw new EngineError('conflict', `container ${id} is not running`);
    const metrics = await this.client.tasks.metrics([`id==${id}`]);
    const m = metrics.find((x) => x.id === id);
    if (m?.data) {
      const d = m.data;
      const ts = toDate(m.timestamp) ?? new Date();
      if (m.type_url.includes('cgroups.v2')) {
        return {
          timestamp: ts,
          cpuUsageNs: Number(d.cpu?.usage_usec ?? 0) * 1000,
          memoryUsageBytes: Number(d.memory?.usage ?? 0),
          memoryLimitBytes: Number(d.memory?.usage_limit ?? 0),
          memoryMaxUsageBytes: d.memory?.max_usage !== undefined ? Number(d.memory.max_usage) : undefined,
          pids: Number(d.pids?.current ?? 0),
          pidsLimit: d.pids?.limit !== undefined ? Number(d.pids.limit) : undefined,
        };
      }
      return {
        timestamp: ts,
        cpuUsageNs: Number(d.cpu?.usage?.total ?? 0),
        memoryUsageBytes: Number(d.memory?.usage?.usage ?? 0),
        memoryLimitBytes: Number(d.memory?.usage?.limit ?? 0),
        memoryMaxUsageBytes: d.memory?.usage?.max !== undefined ? Number(d.memory.usage.max) : undefined,
        pids: Number(d.pids?.current ?? 0),
        pidsLimit: d.pids?.limit !== undefined ? Number(d.pids.limit) : undefined,
      };
    }
    // The shim returns no metrics when it cannot load the cgroup (containerd.md §3e): read cgroupfs.
    const spec = unpackAny<OciSpec>(c.spec);
    const cgPath: string | undefined = spec?.linux?.cgroupsPath;
    if (!cgPath) throw new EngineError('failed', `no metrics for ${id}`);
    const u = readCgroupUsage(cgPath);
    if (u.memoryUsageBytes === undefined) throw new EngineError('failed', `no metrics for ${id}`);
    return {
      timestamp: new Date(),
      cpuUsageNs: u.cpuUsageNs ?? 0,
      memoryUsageBytes: u.memoryUsageBytes,
      memoryLimitBytes: u.memoryLimitBytes ?? Number.POSITIVE_INFINITY,
      memoryMaxUsageBytes: u.memoryMaxUsageBytes,
      pids: u.pids ?? 0,
      pidsLimit: u.pidsLimit,
    };
  }

  async status(id: string): Promise<ContainerStatus> {
    const c = await this.getContainer(id);
    return this.toStatus(c, await this.getTask(id));
  }

  async list(): Promise<ContainerStatus[]> {
    const [containers, tasks] = await Promise.all([
      this.client.containers.list([`labels."${LABEL_MANAGED}"==true`]),
      this.client.tasks.list(),
    ]);
    const byId = new Map(tasks.map((t) => [t.id, t]));
    return containers.map((c) => this.toStatus(c, byId.get(c.id)));
  }

  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    const c = await this.getContainer(id);
    await this.withLock(id, async () => {
      const task = await this.getTask(id);
      if (task) {
        if (task.status !== 'STOPPED' && task.status !== 'CREATED' && !opts.force) {
          throw new EngineError('conflict', `container ${id} is ${task.status.toLowerCase()}; stop it or use force`);
        }
        const tracker = this.track(id, task.pid);
        if (task.status !== 'STOPPED') await this.signal(id, task, 9, true);
        await tracker.exit.catch(() => undefined);
        await this.deleteTask(id);
      }
      this.trackers.delete(id);
      try {
        await this.client.containers.delete(id);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      this.shimGroups.delete(id);
      try {
        await this.client.snapshots.remove(c.snapshot_key || id, c.snapshotter || undefined);
      } catch (err) {
        // GC may already have removed it after the container went away (containerd.md pitfall 3).
        if (!isNotFound(err)) throw err;
      }
      await rm(this.containerDir(id), { recursive: true, force: true });
    });
  }

  async discard(id: string): Promise<void> {
    try {
      await this.delete(id, { force: true });
      return;
    } catch (err) {
      if (!(err instanceof EngineError && err.code === 'not_found')) throw err;
    }
    // No container record: a create stopped between preparing the snapshot and recording the container.
    await this.withLock(id, async () => {
      try {
        await this.client.snapshots.remove(id);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      await rm(this.containerDir(id), { recursive: true, force: true });
    });
  }

  async recover(): Promise<void> {
    const containers = await this.client.containers.list([`labels."${LABEL_MANAGED}"==true`]);
    const managed = new Set(containers.map((c) => c.id));
    for (const c of containers) {
      const group = c.labels?.[LABEL_SHIM_GROUP];
      if (group) this.shimGroups.set(c.id, group);
    }
    for (const t of await this.client.tasks.list()) {
      if (!managed.has(t.id)) continue;
      const tracker = this.track(t.id, t.pid);
      if (t.status === 'STOPPED') await tracker.reaped.catch(() => undefined);
    }
  }

  close(): void {
    this.closed = true;
    this.abort.abort(new EngineError('failed', 'engine closed'));
    this.trackers.clear();
  }
}

/** The runtime's "cannot start this command" errors as Docker reports them: exit 127 (not found) or 126 (not
 * executable), the runtime's message on stderr. Other errors are not the command's fault (undefined). */
export function execStartFailure(message: string): ExecResult | undefined {
  const i = message.indexOf('OCI runtime exec failed');
  if (i < 0) return undefined;
  const text = `${message.slice(i)}\n`;
  if (/executable file not found|no such file or directory/.test(message))
    return { exitCode: 127, stdout: '', stderr: text, timedOut: false };
  if (/permission denied|is a directory/.test(message))
    return { exitCode: 126, stdout: '', stderr: text, timedOut: false };
  return undefined;
}
