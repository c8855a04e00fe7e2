import { hostname as osHostname } from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import type { AgentRpc, StreamSession } from '../compute/agent-port.js';
import type { ContainerNetworking, NeutronClient } from '../compute/networking.js';
import { ContainerRepo } from '../compute/repo.js';
import { restartDelayMs, Status } from '../compute/states.js';
import type { Store } from '../core/store/db.js';
import type { ContainerRow } from '../core/store/schema.js';
import type { ContainerdClient } from '../engine/containerd-client.js';
import type { ContainerdSupervisor } from '../engine/containerd-supervisor.js';
import { ContainerdWatchdog } from '../engine/containerd-watchdog.js';
import { DEFAULT_RUNTIME, type Engine } from '../engine/engine.js';
import type { UsernsMapping } from '../engine/oci-spec.js';
import type { HostImages } from '../images/host.js';
import { type AgentContext, type AgentImageWork, type AgentTiming, Lanes } from './context.js';
import { TaskExecutor } from './executor.js';
import { CpuPinning, HostRegistration, schedulableHosts } from './host.js';
import { Lifecycle } from './lifecycle.js';
import { LogIndexer } from './log-index.js';
import { AgentNetwork, type DataplaneDriver } from './network.js';
import { reconcileContainers } from './reconcile.js';
import { SyncCalls } from './sync-calls.js';

export { engineId } from './context.js';
export { AUTO_DISABLED_PREFIX } from './host.js';

/** The containerd behind a `ContainerdEngine` (absent when the engine is a fake in unit tests). */
export interface ContainerdHost {
  client: ContainerdClient;
  supervisor: ContainerdSupervisor;
  /** Ends the connection (`purge`: stops a private containerd and removes the containers' cgroup parent). */
  close(purge: boolean): Promise<void>;
}

export interface AgentOptions {
  store: Store;
  log: FastifyBaseLogger;
  /** The container engine of this host (src/app makes it: `createEngine`). */
  engine: Engine;
  /** The containerd behind the engine: OOM events, supervision (restart with back-off), shutdown. */
  containerd?: ContainerdHost;
  /** The image side: pulls and Glance imports before create, commits, `zun_images` tasks. */
  images: AgentImageWork;
  /** The API's image calls on this host (the same object as `images` in production). */
  hostImages?: HostImages;
  /** Host name this agent registers as (default: the machine's). */
  host?: string;
  availabilityZone?: string;
  /** Tenant networking (Neutron ports plugged by the kernel dataplane); without it containers get an empty
   * network namespace of their own. */
  network?: { dataplane: DataplaneDriver; neutron: NeutronClient; networking: ContainerNetworking };
  /** Zun `runtime` names this host offers besides `runc` (the engine's default) → containerd runtime types. */
  runtimes?: Record<string, string>;
  /** Containers of one project share a runc shim (`project`, the default) or each has its own (`none`). */
  shimGrouping?: 'project' | 'none';
  /** Run (non-privileged) containers in user namespaces with this mapping. */
  userns?: UsernsMapping;
  /** Shorter timings for tests. */
  timing?: Partial<AgentTiming>;
  /** Intervals of the heartbeat and of the store poll (tests turn them off with 0). */
  heartbeatMs?: number;
  pollMs?: number;
}

const DEFAULT_TIMING: AgentTiming = {
  restartDelayMs,
  healthIntervalMs: (s) => s * 1000,
  oomGraceMs: 1500,
  readoptDelayMs: 200,
};

/**
 * The per-host agent: claims the tasks the API queued for this host and runs them through the action table
 * (executor.ts); watches exits and applies restart policies, auto_remove and healthchecks (lifecycle.ts);
 * registers and heartbeats as Zun's `zun-compute` (host.ts); answers synchronous calls (sync-calls.ts).
 * Containers keep running when the agent stops: on start it adopts what the engine has and reconciles the store.
 */
export class Agent implements AgentRpc, AgentContext {
  readonly host: string;
  readonly store: Store;
  readonly repo: ContainerRepo;
  readonly log: FastifyBaseLogger;
  readonly engine: Engine;
  readonly timing: AgentTiming;
  readonly runtimes: Record<string, string>;
  /** The network side: ports into namespaces, kernel reconcile. */
  network: AgentNetwork | undefined;
  closed = false;
  private readonly lanes = new Lanes();
  private readonly registration: HostRegistration;
  private readonly lifecycle: Lifecycle;
  private readonly executor: TaskExecutor;
  private readonly calls: SyncCalls;
  /** When each log line arrived (for `timestamps`, `since` and stdout/stderr interleaving). */
  private readonly logIndex: LogIndexer;
  private timer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private oomEvents?: { close(): void };
  /** Watches containerd: restarts a private one, marks the host unavailable meanwhile, re-adopts tasks after. */
  private watchdog?: ContainerdWatchdog;

  constructor(private readonly opts: AgentOptions) {
    this.host = opts.host ?? osHostname();
    this.store = opts.store;
    this.repo = new ContainerRepo(opts.store.db);
    this.log = opts.log;
    this.engine = opts.engine;
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.runtimes = { runc: DEFAULT_RUNTIME, ...opts.runtimes };
    this.logIndex = new LogIndexer({ warn: (obj, msg) => opts.log.warn(obj, msg) });
    this.registration = new HostRegistration({
      store: opts.store,
      host: this.host,
      availabilityZone: opts.availabilityZone,
      runtimes: Object.keys(opts.runtimes ?? {}),
    });
    this.lifecycle = new Lifecycle(this, this.lanes, this.logIndex, () => this.readopt());
    this.executor = new TaskExecutor(
      this,
      this.lanes,
      this.lifecycle,
      new CpuPinning({ store: opts.store, repo: this.repo, host: this.host }),
      { shimGrouping: opts.shimGrouping, userns: opts.userns },
    );
    this.calls = new SyncCalls(this, this.logIndex);
  }

  get imageWork(): AgentImageWork {
    return this.opts.images;
  }
  /** The API's image calls on this host (AgentRpc). */
  get images(): HostImages | undefined {
    return this.opts.hostImages;
  }

  async start(): Promise<void> {
    await this.engine.recover();
    this.oomEvents = this.opts.containerd?.client.subscribe(['topic=="/tasks/oom"'], (ev) =>
      this.lifecycle.oomEvent(String(ev.event?.container_id ?? '')),
    );
    await this.registration.register();
    if (this.opts.network) {
      // Before containers are reconciled: restarting ones need their namespaces back.
      this.network = new AgentNetwork({ store: this.store, host: this.host, log: this.log, ...this.opts.network });
      await this.network.start();
    }
    await this.reconcile();
    this.logIndex.start();
    const heartbeatMs = this.opts.heartbeatMs ?? 10_000;
    if (heartbeatMs > 0)
      this.heartbeatTimer = setInterval(
        () => void this.registration.heartbeat().catch((err) => this.log.warn({ err }, 'heartbeat failed')),
        heartbeatMs,
      );
    const pollMs = this.opts.pollMs ?? 1_000;
    if (pollMs > 0) this.timer = setInterval(() => this.wake(), pollMs);
    const ctd = this.opts.containerd;
    if (ctd) {
      this.watchdog = new ContainerdWatchdog(ctd.supervisor, {
        client: ctd.client,
        log: this.log,
        onDown: (reason) => this.registration.markEngineLost(reason),
        onUp: () => this.engineBack(),
      });
      this.watchdog.start();
    }
    this.wake();
  }

  /** Why containerd is unavailable on this host right now (undefined: it is up). */
  get engineDown(): string | undefined {
    return this.watchdog?.downReason;
  }

  /** containerd's OOM verdict for an engine container (the `/tasks/oom` event; tests call it directly). */
  oomEvent(engineContainerId: string): void {
    this.lifecycle.oomEvent(engineContainerId);
  }

  /** containerd answers again: exits and tasks are taken up again, then the host is schedulable again. */
  private async engineBack(): Promise<void> {
    await this.engine.recover();
    await this.readopt();
    await this.registration.enableIfAutoDisabled();
    // Tasks held back during the outage run now (the watchdog clears the down reason when this returns).
    setImmediate(() => this.wake());
  }

  /**
   * `keep` (default): containerd and the containers keep running and a restarted agent adopts them.
   * `purge`: every container of this host is removed and a private containerd is stopped (tests, uninstall).
   */
  async stop(mode: 'keep' | 'purge' = 'keep'): Promise<void> {
    this.closed = true;
    // First: a purge stops containerd on purpose, which must not be undone.
    await this.watchdog?.stop();
    this.logIndex.stop();
    if (this.timer) clearInterval(this.timer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.lifecycle.stop();
    this.oomEvents?.close();
    await this.lanes.settle();
    if (mode === 'purge')
      for (const st of await this.engine.list().catch(() => []))
        await this.engine.delete(st.id, { force: true }).catch(() => undefined);
    this.engine.close();
    await this.opts.containerd?.close(mode === 'purge');
    await this.network?.stop(mode === 'purge');
  }

  /** Hosts that may take new containers: enabled, not forced down, heartbeat fresh. */
  static schedulableHosts(store: Store): Promise<string[]> {
    return schedulableHosts(store);
  }

  wake(): void {
    this.executor.wake();
  }

  /**
   * After a (re)start: containers of this host that the engine runs are watched again; ones it lost follow Zun's
   * rules (auto_remove → gone, auto_heal → recreated, else Error); tasks interrupted mid-way are run again.
   */
  async reconcile(): Promise<void> {
    await this.executor.requeueInterrupted();
    await reconcileContainers(this, this.lifecycle, () => false);
  }

  /**
   * After containerd came back: what it runs is watched again and exits it reported meanwhile are recorded. Tasks
   * of this process are still under way (they run again, see the executor), containers with a live exit watch are
   * followed by it, and rows that do not claim a live task (a stopped one may have a restart timer) are left alone.
   */
  private async readopt(): Promise<void> {
    const live: string[] = [Status.Running, Status.Paused, Status.Restarting];
    await reconcileContainers(
      this,
      this.lifecycle,
      (c) => !live.includes(c.status) || this.lanes.has(c.uuid) || this.lifecycle.isWatched(c.uuid),
    );
  }

  // ---------------------------------------------------------------- synchronous calls (sync-calls.ts)

  logs(
    c: ContainerRow,
    opts: { stdout: boolean; stderr: boolean; timestamps: boolean; tail: number | 'all'; since?: number },
  ): Promise<string> {
    return this.calls.logs(c, opts);
  }
  followLogs(c: ContainerRow, opts: { stdout: boolean; stderr: boolean; tail: number | 'all' }): NodeJS.ReadableStream {
    return this.calls.followLogs(c, opts);
  }
  createExec(c: ContainerRow, command: string[]): Promise<{ execId: string; token: string }> {
    return this.calls.createExec(c, command);
  }
  resizeExec(c: ContainerRow, execId: string, cols: number, rows: number): Promise<boolean> {
    return this.calls.resizeExec(c, execId, cols, rows);
  }
  createAttach(c: ContainerRow): Promise<string> {
    return this.calls.createAttach(c);
  }
  resizeAttach(c: ContainerRow, cols: number, rows: number): Promise<void> {
    return this.calls.resizeAttach(c, cols, rows);
  }
  openStream(token: string, uuid: string, execId?: string): Promise<StreamSession | undefined> {
    return this.calls.openStream(token, uuid, execId);
  }
  exec(c: ContainerRow, command: string[], opts: { tty: boolean }): Promise<{ output: string; exitCode: number }> {
    return this.calls.exec(c, command, opts);
  }
  top(c: ContainerRow, psArgs?: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    return this.calls.top(c, psArgs);
  }
  stats(c: ContainerRow): Promise<Record<string, string | number>> {
    return this.calls.stats(c);
  }
  getArchive(
    c: ContainerRow,
    path: string,
  ): Promise<{ tar: Buffer; stat: { name: string; size: number; mode: number; mtime: string; linkTarget: string } }> {
    return this.calls.getArchive(c, path);
  }
  putArchive(c: ContainerRow, path: string, tar: Buffer): Promise<void> {
    return this.calls.putArchive(c, path, tar);
  }
}
