/**
 * An in-memory `Engine` for unit tests of what sits above the engine (the agent's executor, lifecycle and
 * recovery): no containerd, no processes, milliseconds per test. Containers move through the same states as with
 * containerd; a test decides when a "process" exits (`exit`), crashes the engine (`crash`: containers are lost,
 * as when containerd's state is wiped) or makes the next call of a method fail (`failNext`). Every call is recorded
 * in `calls` so a test can assert what the layer above asked for.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  type AttachSession,
  type ContainerStats,
  type ContainerStatus,
  type CreateContainerOptions,
  type Engine,
  EngineError,
  type ExecOptions,
  type ExecResult,
  type ExitInfo,
  type InteractiveExecOptions,
  type InteractiveProcess,
  type LogPaths,
} from './engine.js';

interface FakeContainer {
  status: ContainerStatus;
  opts: CreateContainerOptions;
  /** Resolvers of `wait()` calls for the current run. */
  waiters: ((exit: ExitInfo) => void)[];
  starts: number;
}

type Method = keyof Engine;

export class FakeEngine implements Engine {
  readonly calls: { method: Method; id?: string }[] = [];
  /** Exit code given to a process stopped by `stop`/`kill` (SIGKILL → 137 as with runc). */
  killExitCode = 137;
  private readonly containers = new Map<string, FakeContainer>();
  private readonly failures = new Map<Method, Error[]>();
  private nextPid = 1000;
  private readonly logDir: string;

  constructor(opts: { logDir?: string } = {}) {
    this.logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'krater-fake-engine-'));
  }

  // ───────────── test controls

  /** The next call of `method` throws `err` (queued: several calls fail in order). */
  failNext(method: Method, err: Error = new EngineError('failed', `${method} failed (injected)`)): void {
    this.failures.set(method, [...(this.failures.get(method) ?? []), err]);
  }

  /** The main process of a running container exits with `exitCode` (e.g. 137 with `oom` for an OOM kill). */
  exit(id: string, exitCode: number): void {
    const c = this.get(id);
    if (c.status.state !== 'running' && c.status.state !== 'paused') throw new Error(`fake: ${id} is not running`);
    this.finish(c, exitCode);
  }

  /** The engine loses every container (as after containerd's state is wiped). */
  crash(): void {
    for (const c of this.containers.values()) if (c.status.state === 'running') this.finish(c, 255);
    this.containers.clear();
  }

  /** The options a container was created with (undefined when it does not exist). */
  options(id: string): CreateContainerOptions | undefined {
    return this.containers.get(id)?.opts;
  }

  /** How many times a container was started. */
  startCount(id: string): number {
    return this.containers.get(id)?.starts ?? 0;
  }

  has(id: string): boolean {
    return this.containers.has(id);
  }

  // ───────────── Engine

  async create(id: string, opts: CreateContainerOptions): Promise<ContainerStatus> {
    this.enter('create', id);
    if (this.containers.has(id)) throw new EngineError('conflict', `container ${id} already exists`);
    const status: ContainerStatus = {
      id,
      image: opts.image,
      state: 'created',
      labels: { ...(opts.labels ?? {}) },
      createdAt: new Date(),
    };
    this.containers.set(id, { status, opts, waiters: [], starts: 0 });
    mkdirSync(join(this.logDir, id), { recursive: true });
    for (const f of ['stdout.log', 'stderr.log']) writeFileSync(join(this.logDir, id, f), '', { flag: 'a' });
    return { ...status };
  }

  async start(id: string): Promise<ContainerStatus> {
    this.enter('start', id);
    const c = this.get(id);
    if (c.status.state === 'running' || c.status.state === 'paused')
      throw new EngineError('conflict', `container ${id} is ${c.status.state}`);
    c.status = { ...c.status, state: 'running', pid: this.nextPid++, exitCode: undefined, exitedAt: undefined };
    c.starts++;
    return { ...c.status };
  }

  async stop(id: string): Promise<ExitInfo | undefined> {
    this.enter('stop', id);
    const c = this.get(id);
    if (c.status.state !== 'running' && c.status.state !== 'paused') return undefined;
    return this.finish(c, this.killExitCode);
  }

  async kill(id: string): Promise<void> {
    this.enter('kill', id);
    const c = this.get(id);
    if (c.status.state !== 'running' && c.status.state !== 'paused')
      throw new EngineError('conflict', `container ${id} is not running`);
    this.finish(c, this.killExitCode);
  }

  async wait(id: string): Promise<ExitInfo> {
    this.enter('wait', id);
    const c = this.get(id);
    if (c.status.state !== 'running' && c.status.state !== 'paused')
      return { exitCode: c.status.exitCode ?? 0, exitedAt: c.status.exitedAt };
    return new Promise((resolve) => c.waiters.push(resolve));
  }

  async pause(id: string): Promise<void> {
    this.enter('pause', id);
    const c = this.get(id);
    if (c.status.state !== 'running') throw new EngineError('conflict', `container ${id} is not running`);
    c.status = { ...c.status, state: 'paused' };
  }

  async unpause(id: string): Promise<void> {
    this.enter('unpause', id);
    const c = this.get(id);
    if (c.status.state !== 'paused') throw new EngineError('conflict', `container ${id} is not paused`);
    c.status = { ...c.status, state: 'running' };
  }

  async updateResources(id: string, limits: { memoryLimitBytes?: number; cpus?: number }): Promise<void> {
    this.enter('updateResources', id);
    const c = this.get(id);
    c.opts = { ...c.opts, ...limits };
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecResult> {
    this.enter('exec', id);
    this.running(id);
    return { exitCode: 0, stdout: `${opts.args.join(' ')}\n`, stderr: '', timedOut: false };
  }

  async execInteractive(id: string, _opts: InteractiveExecOptions): Promise<InteractiveProcess> {
    this.enter('execInteractive', id);
    this.running(id);
    // An echo process: what is written to stdin comes back on output; ending stdin exits with 0.
    const stdin = new PassThrough();
    const output = new PassThrough();
    stdin.pipe(output);
    const exit = new Promise<ExitInfo>((resolve) => output.on('end', () => resolve({ exitCode: 0 })));
    output.resume();
    return {
      execId: `fake-exec-${this.nextPid++}`,
      stdin,
      output,
      exit,
      resize: async () => {},
      kill: async () => {
        stdin.end();
      },
    };
  }

  async attach(id: string): Promise<AttachSession> {
    this.enter('attach', id);
    const c = this.running(id);
    const output = new PassThrough();
    let closed = false;
    const done = new Promise<ExitInfo | undefined>((resolve) => {
      c.waiters.push((exit) => {
        output.end();
        resolve(closed ? undefined : exit);
      });
      output.on('close', () => resolve(undefined));
    });
    return {
      stdin: new PassThrough(),
      output,
      resize: async () => {},
      close: () => {
        closed = true;
        output.end();
      },
      tty: c.opts.tty ?? false,
      stdinOpen: c.opts.openStdin ?? false,
      done,
    };
  }

  logPaths(id: string): LogPaths {
    return { stdout: join(this.logDir, id, 'stdout.log'), stderr: join(this.logDir, id, 'stderr.log') };
  }

  async stats(id: string): Promise<ContainerStats> {
    this.enter('stats', id);
    const c = this.running(id);
    return {
      timestamp: new Date(),
      cpuUsageNs: 0,
      memoryUsageBytes: 1 << 20,
      memoryLimitBytes: c.opts.memoryLimitBytes ?? Number.MAX_SAFE_INTEGER,
      pids: 1,
      pidsLimit: c.opts.pidsLimit,
    };
  }

  async status(id: string): Promise<ContainerStatus> {
    this.enter('status', id);
    return { ...this.get(id).status };
  }

  async list(): Promise<ContainerStatus[]> {
    this.enter('list');
    return [...this.containers.values()].map((c) => ({ ...c.status }));
  }

  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    this.enter('delete', id);
    const c = this.get(id);
    if (c.status.state === 'running' || c.status.state === 'paused') {
      if (!opts.force) throw new EngineError('conflict', `container ${id} is running`);
      this.finish(c, this.killExitCode);
    }
    this.containers.delete(id);
  }

  async discard(id: string): Promise<void> {
    this.enter('discard', id);
    this.containers.delete(id);
  }

  async recover(): Promise<void> {
    this.enter('recover');
  }

  close(): void {
    this.enter('close');
  }

  // ───────────── internals

  private enter(method: Method, id?: string): void {
    this.calls.push({ method, id });
    const queued = this.failures.get(method);
    const err = queued?.shift();
    if (queued && queued.length === 0) this.failures.delete(method);
    if (err) throw err;
  }

  private get(id: string): FakeContainer {
    const c = this.containers.get(id);
    if (!c) throw new EngineError('not_found', `container ${id} not found`);
    return c;
  }

  private running(id: string): FakeContainer {
    const c = this.get(id);
    if (c.status.state !== 'running') throw new EngineError('conflict', `container ${id} is not running`);
    return c;
  }

  private finish(c: FakeContainer, exitCode: number): ExitInfo {
    const exit: ExitInfo = { exitCode, exitedAt: new Date() };
    c.status = { ...c.status, state: 'stopped', pid: undefined, exitCode, exitedAt: exit.exitedAt };
    const waiters = c.waiters.splice(0);
    for (const w of waiters) w(exit);
    return exit;
  }
}
