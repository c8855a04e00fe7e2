import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { arch, cpus, freemem, hostname as osHostname, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import type { Selectable } from 'kysely';
import type { AgentRpc, StreamSession } from '../compute/agent-port.js';
import type { ContainerNetworking, NeutronClient } from '../compute/networking.js';
import { ContainerRepo } from '../compute/repo.js';
import { type RestartPolicy, restartDelayMs, Status, shouldRestart } from '../compute/states.js';
import type { Store } from '../core/store/db.js';
import type { AgentTaskRow as AgentTaskTable, ContainerRow } from '../core/store/schema.js';
import { removeCgroupTree } from '../engine/cgroups.js';
import { ContainerdWatchdog } from '../engine/containerd-watchdog.js';
import { DEFAULT_RUNTIME, type Engine, EngineError, toEngineError } from '../engine/engine.js';
import { importImageArchive, normalizeImageRef } from '../engine/image-import.js';
import type { UsernsMapping } from '../engine/oci-spec.js';
import type { GlancePort } from '../images/glance-port.js';
import { AgentImages } from '../images/host.js';
import { createEngine, type EngineSetup } from './engine-setup.js';
import { LogIndexer, logTimestamp, readTimedLines } from './log-index.js';
import { AgentNetwork, type DataplaneDriver } from './network.js';
import { StreamSessions } from './sessions.js';

type AgentTaskRow = Selectable<AgentTaskTable>;

export interface AgentOptions {
  dataDir: string;
  store: Store;
  log: FastifyBaseLogger;
  /** The image service (Glance), for `image_driver` glance and commits. */
  glance: GlancePort;
  /** Host name this agent registers as (default: the machine's). */
  host?: string;
  /** An existing containerd socket; default: a private containerd under the data dir. */
  containerdAddress?: string;
  availabilityZone?: string;
  /** An image archive imported at start when its image is missing (the offline default image). */
  defaultImageArchive?: string;
  /** Tenant networking (Neutron ports plugged by the kernel dataplane); without it containers get an empty
   * network namespace of their own. */
  network?: { dataplane: DataplaneDriver; neutron: NeutronClient; networking: ContainerNetworking };
  /** Zun `runtime` names this host offers besides `runc` (the engine's default) → containerd runtime types. */
  runtimes?: Record<string, string>;
  /** Containers of one project share a runc shim (`project`, the default) or each has its own (`none`). */
  shimGrouping?: 'project' | 'none';
  /** Run (non-privileged) containers in user namespaces with this mapping. */
  userns?: UsernsMapping;
  /** Registries pulled from over plain HTTP besides loopback (`KRATER_INSECURE_REGISTRIES`). */
  insecureRegistries?: string[];
}

const HEARTBEAT_MS = 10_000;
/** How a host that lost its containerd shows in `GET /v1/services` (Nova's prefix for automatic disables). */
export const AUTO_DISABLED_PREFIX = 'AUTO: ';
/** An agent task that keeps meeting an unavailable containerd is given up after this many tries. */
const MAX_UNAVAILABLE_RETRIES = 5;
const POLL_MS = 1_000;
const BINARY = 'zun-compute';

/** Engine container ids: Zun names its engine containers `zun-<uuid>`. */
export const engineId = (uuid: string) => `zun-${uuid}`;

/**
 * The per-host agent: claims the tasks the API queued for this host and drives the engine; watches exits and
 * applies restart policies; heartbeats as Zun's `zun-compute`; answers synchronous calls (logs, exec, top, …).
 * Containers keep running when the agent stops: on start it adopts what the engine has and reconciles the store.
 */
export class Agent implements AgentRpc {
  readonly host: string;
  private repo: ContainerRepo;
  private engine!: Engine;
  private imagesHost?: AgentImages;
  /** The image side: pulls and Glance imports before create, commit, and the API's image calls. */
  get images(): AgentImages {
    this.imagesHost ??= new AgentImages({
      client: this.setup.client,
      engine: this.engine,
      store: this.opts.store,
      dataDir: this.opts.dataDir,
      log: this.opts.log,
      glance: this.opts.glance,
      insecureRegistries: this.opts.insecureRegistries,
    });
    return this.imagesHost;
  }
  private setup!: EngineSetup;
  private cgroupParent: string;
  private timer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private busy = new Map<string, Promise<void>>();
  /**
   * Run generation per container: bumped when a new run starts or a user action takes over a run's exit (stop,
   * reboot). An exit watcher only acts for the generation it was armed for, so a late exit of an old run never
   * overwrites the state of a newer one.
   */
  private runs = new Map<string, number>();
  private watching = new Set<string>();
  private pumping = false;
  private repump = false;
  private closed = false;
  /** Containers a user action is stopping: their exit must not trigger the restart policy. */
  private expectedExit = new Set<string>();
  /** Containers containerd reported an OOM kill for (its `/tasks/oom` event precedes the exit). */
  private oomSeen = new Set<string>();
  private oomEvents?: { close(): void };
  private healthTimers = new Map<string, NodeJS.Timeout>();
  private sessions = new StreamSessions(() => this.engine);
  /** Watches containerd: restarts a private one, marks the host unavailable meanwhile, re-adopts tasks after. */
  private watchdog?: ContainerdWatchdog;
  /** Tries per agent task that met an unavailable containerd (they are put back, not failed). */
  private unavailableRetries = new Map<number, number>();
  /** The network side: ports into namespaces, kernel reconcile. */
  network?: AgentNetwork;
  /** Serialises the choice of dedicated CPUs. */
  private pinning: Promise<void> = Promise.resolve();
  /** When each log line arrived (for `timestamps`, `since` and stdout/stderr interleaving). */
  private logIndex = new LogIndexer({ warn: (obj, msg) => this.opts.log.warn(obj, msg) });

  constructor(private opts: AgentOptions) {
    this.host = opts.host ?? osHostname();
    this.repo = new ContainerRepo(opts.store.db);
    // Unique per installation, so that several Krater instances (and tests) on one machine never share cgroups.
    this.cgroupParent = `/krater-${createHash('sha256').update(opts.dataDir).digest('hex').slice(0, 10)}`;
  }

  async start(): Promise<void> {
    const dir = join(this.opts.dataDir, 'agent');
    this.setup = await createEngine({
      dir,
      containerdAddress: this.opts.containerdAddress,
      cgroupParent: this.cgroupParent,
      userns: !!this.opts.userns,
    });
    this.engine = this.setup.engine;
    await this.engine.recover();
    this.oomEvents = this.setup.client.subscribe(['topic=="/tasks/oom"'], (ev) => {
      const id = String(ev.event?.container_id ?? '');
      if (id.startsWith('zun-')) this.oomSeen.add(id.slice(4));
    });
    if (this.opts.defaultImageArchive && existsSync(this.opts.defaultImageArchive))
      await this.ensureDefaultImage(this.opts.defaultImageArchive);
    await this.register();
    if (this.opts.network) {
      // Before containers are reconciled: restarting ones need their namespaces back.
      this.network = new AgentNetwork({
        store: this.opts.store,
        host: this.host,
        log: this.opts.log,
        ...this.opts.network,
      });
      await this.network.start();
    }
    await this.reconcile();
    this.logIndex.start();
    this.heartbeatTimer = setInterval(
      () => void this.heartbeat().catch((err) => this.opts.log.warn({ err }, 'heartbeat failed')),
      HEARTBEAT_MS,
    );
    this.timer = setInterval(() => this.wake(), POLL_MS);
    this.watchdog = new ContainerdWatchdog(this.setup.supervisor, {
      client: this.setup.client,
      log: this.opts.log,
      onDown: (reason) => this.engineLost(reason),
      onUp: () => this.engineBack(),
    });
    this.watchdog.start();
    this.wake();
  }

  /** Why containerd is unavailable on this host right now (undefined: it is up). */
  get engineDown(): string | undefined {
    return this.watchdog?.downReason;
  }

  private unavailable(): EngineError {
    return new EngineError(
      'unavailable',
      `containerd on host ${this.host} is not available (${this.engineDown ?? 'not answering'}); it is being restarted, try again later.`,
    );
  }

  /** containerd is gone: the host takes no new containers (the reason shows in `GET /v1/services`). */
  private async engineLost(reason: string): Promise<void> {
    const now = new Date().toISOString();
    // An admin's own disable (and its reason) is left alone.
    await this.opts.store.db
      .updateTable('compute_services')
      .set({
        disabled: 1,
        disabled_reason: `${AUTO_DISABLED_PREFIX}Connection to containerd lost: ${reason}`.slice(0, 255),
        updated_at: now,
      })
      .where('host', '=', this.host)
      .where('binary', '=', BINARY)
      .where('disabled', '=', 0)
      .execute();
  }

  /** containerd answers again: exits and tasks are taken up again, then the host is schedulable again. */
  private async engineBack(): Promise<void> {
    await this.engine.recover();
    await this.readopt();
    await this.enableIfAutoDisabled();
    // Tasks held back during the outage run now (the watchdog clears the down reason when this returns).
    setImmediate(() => this.wake());
  }

  /** Undo a disable this agent made because containerd was lost (never an admin's). */
  private async enableIfAutoDisabled(): Promise<void> {
    await this.opts.store.db
      .updateTable('compute_services')
      .set({ disabled: 0, disabled_reason: null, updated_at: new Date().toISOString() })
      .where('host', '=', this.host)
      .where('binary', '=', BINARY)
      .where('disabled_reason', 'like', `${AUTO_DISABLED_PREFIX}%`)
      .execute();
  }

  /**
   * Synchronous engine calls: refused with `unavailable` while containerd is down, and errors mapped to an engine
   * kind. A call that failed because its container stopped under it (a stop or kill racing it) is a `conflict`.
   */
  private async engineCall<T>(c: ContainerRow, fn: () => Promise<T>): Promise<T> {
    if (this.engineDown) throw this.unavailable();
    try {
      return await fn();
    } catch (err) {
      if (this.engineDown) throw this.unavailable();
      const e = toEngineError(err);
      if (e.code !== 'failed') throw e;
      const st = await this.engine.status(engineId(c.uuid)).catch(() => undefined);
      if (st?.state === 'running') throw e;
      throw new EngineError('conflict', `container ${c.uuid} is ${st?.state ?? 'gone'}: ${e.message}`, { cause: e });
    }
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
    for (const t of this.healthTimers.values()) clearTimeout(t);
    this.oomEvents?.close();
    await Promise.allSettled([...this.busy.values()]);
    if (!this.setup) return;
    if (mode === 'purge') {
      for (const st of await this.engine.list().catch(() => []))
        await this.engine.delete(st.id, { force: true }).catch(() => undefined);
      this.engine.close();
      await this.setup.supervisor.stop({ timeoutMs: 5000 });
      removeCgroupTree(this.cgroupParent);
    } else {
      this.engine.close();
      this.setup.client.close();
    }
    await this.network?.stop(mode === 'purge');
  }

  private async ensureDefaultImage(archive: string): Promise<void> {
    const client = this.setup.client;
    try {
      if (
        await client.images.get(normalizeImageRef('busybox')).then(
          () => true,
          () => false,
        )
      )
        return;
      await importImageArchive(client, archive, { name: normalizeImageRef('busybox') });
      this.opts.log.info({ archive }, 'default image imported');
    } catch (err) {
      this.opts.log.warn({ err, archive }, 'default image import failed');
    }
  }

  // ---------------------------------------------------------------- registration and heartbeat

  private async register(): Promise<void> {
    const db = this.opts.store.db;
    const now = new Date().toISOString();
    const info = this.hostInfo();
    const existing = await db
      .selectFrom('compute_hosts')
      .select('uuid')
      .where('hostname', '=', this.host)
      .executeTakeFirst();
    if (existing)
      await db
        .updateTable('compute_hosts')
        .set({ info: JSON.stringify(info), updated_at: now })
        .where('uuid', '=', existing.uuid)
        .execute();
    else
      await db
        .insertInto('compute_hosts')
        .values({
          uuid: randomUUID(),
          hostname: this.host,
          info: JSON.stringify(info),
          created_at: now,
          updated_at: null,
        })
        .execute();
    const svc = await db
      .selectFrom('compute_services')
      .select('id')
      .where('host', '=', this.host)
      .where('binary', '=', BINARY)
      .executeTakeFirst();
    if (!svc) {
      await db
        .insertInto('compute_services')
        .values({
          host: this.host,
          binary: BINARY,
          availability_zone: this.opts.availabilityZone ?? 'nova',
          disabled: 0,
          disabled_reason: null,
          forced_down: 0,
          report_count: 0,
          last_seen_up: now,
          created_at: now,
          updated_at: null,
        })
        .execute();
    }
    // containerd answers (start got this far): a disable left by an outage before a restart of the agent is undone.
    await this.enableIfAutoDisabled();
    await this.heartbeat();
  }

  /** What the host reports; the API adds the containers' claims (`cpu_used`, `mem_used`, `disk_used`). */
  private hostInfo() {
    const mb = (b: number) => Math.floor(b / 1024 / 1024);
    return {
      mem_total: mb(totalmem()),
      mem_free: mb(freemem()),
      mem_available: mb(freemem()),
      cpus: cpus().length,
      disk_total: 0,
      disk_quota_supported: false,
      architecture: arch() === 'x64' ? 'x86_64' : arch(),
      os_type: 'linux',
      os: 'Debian GNU/Linux',
      kernel_version: release(),
      labels: {},
      runtimes: ['runc', ...Object.keys(this.opts.runtimes ?? {})],
      enable_cpu_pinning: false,
    };
  }

  private async heartbeat(): Promise<void> {
    const db = this.opts.store.db;
    const now = new Date().toISOString();
    const svc = await db
      .selectFrom('compute_services')
      .select(['id', 'report_count'])
      .where('host', '=', this.host)
      .where('binary', '=', BINARY)
      .executeTakeFirst();
    if (svc)
      await db
        .updateTable('compute_services')
        .set({ report_count: svc.report_count + 1, last_seen_up: now, updated_at: now })
        .where('id', '=', svc.id)
        .execute();
  }

  /** Hosts that may take new containers: enabled, not forced down, heartbeat fresh. */
  static async schedulableHosts(store: Store): Promise<string[]> {
    const since = new Date(Date.now() - 180_000).toISOString();
    const rows = await store.db
      .selectFrom('compute_services')
      .select('host')
      .where('binary', '=', BINARY)
      .where('disabled', '=', 0)
      .where('forced_down', '=', 0)
      .where('last_seen_up', '>', since)
      .orderBy('id')
      .execute();
    return rows.map((r) => r.host);
  }

  // ---------------------------------------------------------------- task pump

  wake(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.repump = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((err) => this.opts.log.error({ err }, 'agent task pump failed'))
      .finally(() => {
        this.pumping = false;
        if (this.repump) {
          this.repump = false;
          this.wake();
        }
      });
  }

  /** Claims pending tasks; tasks of one container run in order, different containers run concurrently. */
  private async pump(): Promise<void> {
    // Accepted actions wait in the store while containerd is away; they run once it is back.
    if (this.engineDown) return;
    const db = this.opts.store.db;
    const tasks = await db
      .selectFrom('agent_tasks')
      .selectAll()
      .where('host', '=', this.host)
      .where('state', '=', 'pending')
      .orderBy('id')
      .limit(64)
      .execute();
    for (const task of tasks) {
      const claimed = await db
        .updateTable('agent_tasks')
        .set({ state: 'running' })
        .where('id', '=', task.id)
        .where('state', '=', 'pending')
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 0) continue;
      const prev = this.busy.get(task.container_uuid) ?? Promise.resolve();
      const next = prev.then(() => this.runTask(task));
      this.busy.set(task.container_uuid, next);
      void next.finally(() => {
        if (this.busy.get(task.container_uuid) === next) this.busy.delete(task.container_uuid);
      });
    }
  }

  private async runTask(task: AgentTaskRow): Promise<void> {
    const started = new Date().toISOString();
    let error: string | undefined;
    try {
      await this.execute(task);
    } catch (err) {
      if (this.isEngineUnavailable(err)) {
        if (await this.putBack(task).catch(() => false)) return;
        // Given up: the row must not keep claiming that the action is under way.
        await this.repo.update(task.container_uuid, { task_state: null }).catch(() => undefined);
      }
      error = err instanceof Error ? err.message : String(err);
      this.opts.log.warn({ container: task.container_uuid, action: task.action, err: error }, 'container task failed');
    }
    await this.finishTask(task, error, started);
  }

  /** containerd went away under this error (or is away now). */
  private isEngineUnavailable(err: unknown): boolean {
    return !!this.engineDown || toEngineError(err).code === 'unavailable';
  }

  /** A task interrupted by an unavailable containerd goes back to pending (bounded), to run again once it is back. */
  private async putBack(task: AgentTaskRow): Promise<boolean> {
    const tries = (this.unavailableRetries.get(task.id) ?? 0) + 1;
    if (tries > MAX_UNAVAILABLE_RETRIES) {
      this.unavailableRetries.delete(task.id);
      return false;
    }
    this.unavailableRetries.set(task.id, tries);
    this.opts.log.warn(
      { container: task.container_uuid, action: task.action, tries },
      'containerd unavailable: the task will run again when it is back',
    );
    await this.opts.store.db.updateTable('agent_tasks').set({ state: 'pending' }).where('id', '=', task.id).execute();
    return true;
  }

  private async finishTask(task: AgentTaskRow, error: string | undefined, started: string): Promise<void> {
    this.unavailableRetries.delete(task.id);
    await this.opts.store.db.deleteFrom('agent_tasks').where('id', '=', task.id).execute();
    if (task.action_id !== null) {
      await this.repo.finishAction(task.action_id, `compute__do_container_${task.action}`, error, started);
      this.repo.changed(task.container_uuid);
    }
  }

  private async execute(task: AgentTaskRow): Promise<void> {
    if (task.action === 'image_pull' || task.action === 'image_delete')
      return this.images.runTask(task.action, task.container_uuid);
    const c = await this.repo.get(task.container_uuid);
    if (!c) return;
    const params = JSON.parse(task.params) as Record<string, unknown>;
    const id = engineId(c.uuid);
    const withTask = async (
      state: string,
      fn: () => Promise<void>,
      onError: (msg: string) => Partial<ContainerRow>,
    ) => {
      await this.repo.update(c.uuid, { task_state: state });
      try {
        await fn();
      } catch (err) {
        // Interrupted by containerd going away: the task runs again once it is back (runTask), the row keeps saying
        // what is pending.
        if (this.isEngineUnavailable(err)) throw err;
        const msg = err instanceof Error ? err.message : String(err);
        await this.repo.update(c.uuid, { task_state: null, ...onError(msg) });
        throw err;
      }
    };
    switch (task.action) {
      case 'create':
        await withTask(
          'container_creating',
          async () => {
            await this.createInEngine(c);
            await this.repo.update(c.uuid, { status: Status.Created, task_state: null });
          },
          (msg) => ({ status: Status.Error, status_reason: msg }),
        );
        if (params.run) await this.startContainer(c, id);
        return;
      case 'start':
        await this.repo.update(c.uuid, { desired: 'running' });
        return this.startContainer(c, id);
      case 'stop':
        await this.repo.update(c.uuid, { desired: 'stopped' });
        return withTask(
          'container_stopping',
          async () => {
            await this.stopInEngine(c, id, Number(params.timeout ?? 10) * 1000);
          },
          (msg) => ({ status_reason: msg }),
        );
      case 'kill':
        await this.repo.update(c.uuid, { desired: 'stopped' });
        return withTask(
          'container_killing',
          async () => {
            this.expectedExit.add(c.uuid);
            await this.engine.kill(id, String(params.signal ?? 'SIGKILL'));
            // The exit watcher records Stopped; a signal that does not end the task leaves it Running.
            await this.repo.update(c.uuid, { task_state: null });
          },
          (msg) => ({ status_reason: msg }),
        );
      case 'reboot':
        return withTask(
          'container_rebooting',
          async () => {
            await this.stopInEngine(c, id, Number(params.timeout ?? 10) * 1000);
            await this.repo.update(c.uuid, { desired: 'running' });
            await this.startInEngine(c, id);
          },
          (msg) => ({ status: Status.Error, status_reason: msg }),
        );
      case 'pause':
        return withTask(
          'container_pausing',
          async () => {
            await this.engine.pause(id);
            await this.repo.update(c.uuid, { status: Status.Paused, task_state: null });
          },
          (msg) => ({ status_reason: msg }),
        );
      case 'unpause':
        return withTask(
          'container_unpausing',
          async () => {
            await this.engine.unpause(id);
            await this.repo.update(c.uuid, { status: Status.Running, task_state: null });
          },
          (msg) => ({ status_reason: msg }),
        );
      case 'rebuild':
        return withTask(
          'container_rebuilding',
          async () => {
            this.expectedExit.add(c.uuid);
            await this.engine.delete(id, { force: true }).catch((err) => {
              if (!(err instanceof EngineError && err.code === 'not_found')) throw err;
            });
            await this.createInEngine(c);
            await this.repo.update(c.uuid, { status: Status.Created, task_state: null });
            if (params.wasRunning) await this.startInEngine(c, id);
          },
          (msg) => ({ status: Status.Error, status_reason: msg }),
        );
      case 'delete':
        return withTask(
          'container_deleting',
          async () => {
            this.expectedExit.add(c.uuid);
            await this.engine.delete(id, { force: true }).catch((err) => {
              if (!(err instanceof EngineError && err.code === 'not_found')) throw err;
            });
            await this.network?.unplug(c);
            await this.repo.remove(c.uuid);
          },
          (msg) => ({ status: Status.Error, status_reason: msg }),
        );
      case 'commit':
        return this.images.commit(c, id, params as { imageId: string; repository: string; tag: string });
      case 'network_attach':
        return withTask(
          'network_attaching',
          async () => {
            await this.network?.attach([String(params.port)]);
            await this.repo.update(c.uuid, { task_state: null });
          },
          (msg) => ({ status_reason: msg }),
        );
      case 'network_detach':
        return withTask(
          'network_detaching',
          async () => {
            await this.network?.detach(c, params.ports as { id: string; preserve: boolean }[]);
            await this.repo.update(c.uuid, { task_state: null });
          },
          (msg) => ({ status_reason: msg }),
        );
      case 'security_groups':
        await this.network?.applyNow();
        return;
      case 'update_resources':
        // The row holds the new limits (the API wrote them); a container not yet made in the engine gets them at
        // create.
        return this.engine.updateResources(id, limitsOf(c)).catch((err) => {
          if (!(err instanceof EngineError && err.code === 'not_found')) throw err;
        });
      default:
        throw new Error(`unknown task ${task.action}`);
    }
  }

  private async createInEngine(c: ContainerRow): Promise<void> {
    const json = (s: string | null) => (s ? JSON.parse(s) : undefined);
    const env = Object.entries(json(c.environment) ?? {}).map(([k, v]) => `${k}=${v}`);
    const t0 = performance.now();
    const image = await this.images.ensureForContainer(c);
    const tImage = performance.now();
    const runtimes: Record<string, string> = { runc: DEFAULT_RUNTIME, ...this.opts.runtimes };
    const runtime = runtimes[c.runtime ?? 'runc'];
    if (!runtime)
      throw new Error(
        `Container runtime ${c.runtime} is not supported on host ${this.host} (available: ${Object.keys(runtimes).join(', ')})`,
      );
    const cpusetCpus = c.cpu_policy === 'dedicated' ? await this.pinCpus(c) : undefined;
    const net = await this.network?.plug(c);
    const tNet = performance.now();
    const create = () =>
      this.engine.create(engineId(c.uuid), {
        netnsPath: net?.netnsPath,
        mounts: net?.mounts,
        image,
        command: json(c.command),
        entrypoint: json(c.entrypoint),
        env,
        workdir: c.workdir ?? undefined,
        hostname: c.hostname ?? c.uuid.slice(0, 12),
        ...limitsOf(c),
        cpusetCpus,
        privileged: !!c.privileged,
        runtime,
        labels: { 'zun.container': c.uuid },
        shimGroup: this.opts.shimGrouping === 'none' ? undefined : `project-${c.project_id}`,
        userns: this.opts.userns,
        // Interactive containers keep a stdin open for `attach`; tty gives them a terminal.
        openStdin: !!c.interactive,
        tty: !!c.tty,
      });
    try {
      await create();
    } catch (err) {
      // A create interrupted by a crash (the task runs again after a restart) left its container behind, maybe
      // even started: the API never reported it, so it is removed and made again from the row.
      if (!(err instanceof EngineError && err.code === 'conflict')) throw err;
      this.opts.log.warn({ container: c.uuid }, 'removing what an interrupted create left, then creating again');
      this.expectedExit.add(c.uuid);
      this.retire(c.uuid);
      await this.engine.discard(engineId(c.uuid));
      await create();
    }
    this.opts.log.debug(
      {
        container: c.uuid,
        imageMs: Math.round(tImage - t0),
        networkMs: Math.round(tNet - tImage),
        engineMs: Math.round(performance.now() - tNet),
      },
      'container created',
    );
    const patch: Partial<ContainerRow> = {};
    if (!c.hostname) patch.hostname = c.uuid.slice(0, 12);
    if (Object.keys(patch).length) await this.repo.update(c.uuid, patch);
  }

  /**
   * `cpu_policy=dedicated`: whole host CPUs (as many as `cpu`, rounded up) that no other dedicated container of this
   * host holds, remembered on the row (a rebuilt or healed container keeps its CPUs). One choice at a time.
   */
  private pinCpus(c: ContainerRow): Promise<string> {
    const choose = async (): Promise<string> => {
      if (c.cpuset) return c.cpuset;
      const want = Math.max(1, Math.ceil(c.cpu));
      const others = await this.opts.store.db
        .selectFrom('containers')
        .select('cpuset')
        .where('host', '=', this.host)
        .where('uuid', '!=', c.uuid)
        .where('cpuset', 'is not', null)
        .execute();
      const taken = new Set(others.flatMap((o) => o.cpuset!.split(',').map(Number)));
      const free = onlineCpus().filter((n) => !taken.has(n));
      if (free.length < want)
        throw new Error(`Not enough dedicated CPUs on host ${this.host}: ${want} requested, ${free.length} free`);
      const cpuset = free.slice(0, want).join(',');
      await this.repo.update(c.uuid, { cpuset });
      return cpuset;
    };
    const next = this.pinning.then(choose, choose);
    this.pinning = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private async startContainer(c: ContainerRow, id: string): Promise<void> {
    await this.repo.update(c.uuid, { task_state: 'container_starting', desired: 'running' });
    try {
      await this.startInEngine(c, id);
    } catch (err) {
      if (this.isEngineUnavailable(err)) throw err;
      const msg = err instanceof Error ? err.message : String(err);
      await this.repo.update(c.uuid, { task_state: null, status: Status.Error, status_reason: msg });
      throw err;
    }
  }

  private retire(uuid: string): void {
    this.runs.set(uuid, (this.runs.get(uuid) ?? 0) + 1);
  }

  private async startInEngine(c: ContainerRow, id: string): Promise<void> {
    this.expectedExit.delete(c.uuid);
    this.retire(c.uuid);
    const t0 = performance.now();
    // Docker binds the ports before the task starts: a host port in use fails the start.
    await this.network?.publish(c, true);
    try {
      await this.engine.start(id);
    } catch (err) {
      await this.unpublish(c);
      throw err;
    }
    this.opts.log.debug({ container: c.uuid, ms: Math.round(performance.now() - t0) }, 'container started');
    await this.repo.update(c.uuid, {
      status: Status.Running,
      task_state: null,
      status_reason: null,
      started_at: new Date().toISOString(),
      exit_code: null,
      health: c.healthcheck ? 'starting' : null,
    });
    this.watch(c.uuid);
    this.startHealthcheck(c);
  }

  private async stopInEngine(c: ContainerRow, id: string, timeoutMs: number): Promise<void> {
    this.expectedExit.add(c.uuid);
    // This action records the exit itself; the run's watcher must not.
    this.retire(c.uuid);
    const exit = await this.engine.stop(id, { timeoutMs });
    // Freed before the container is reported Stopped (a client that saw Stopped finds the port free).
    await this.unpublish(c);
    await this.repo.update(c.uuid, {
      status: Status.Stopped,
      task_state: null,
      exit_code: exit?.exitCode ?? null,
      finished_at: new Date().toISOString(),
    });
  }

  /** A stopped container's published ports are freed (Docker's semantics); a failure is only logged. */
  private async unpublish(c: Pick<ContainerRow, 'uuid' | 'published_ports'>): Promise<void> {
    await this.network
      ?.publish(c, false)
      .catch((err) => this.opts.log.warn({ err, container: c.uuid }, 'freeing published ports failed'));
  }

  /** Follows a running container's exit: records it and applies the restart policy and auto_remove. */
  private watch(uuid: string): void {
    const gen = this.runs.get(uuid) ?? 0;
    const key = `${uuid}#${gen}`;
    if (this.watching.has(key)) return;
    this.watching.add(key);
    const id = engineId(uuid);
    this.logIndex.track(uuid, this.engine.logPaths(id));
    const current = () => this.runs.get(uuid) === gen || (gen === 0 && !this.runs.has(uuid));
    void this.engine
      .wait(id)
      .then(async (exit) => {
        this.watching.delete(key);
        await this.logIndex.untrack(uuid);
        if (this.closed || !current()) return;
        const expected = this.expectedExit.delete(uuid);
        const c = await this.repo.get(uuid);
        if (!c || c.status === Status.Deleting || !current()) return;
        this.stopHealthcheck(uuid);
        // The exit of a stop or kill the user asked for does not wait for an OOM event that is almost never coming.
        const oom = exit.exitCode === 137 && (expected ? this.oomSeen.delete(uuid) : await this.oomKilled(uuid));
        await this.unpublish(c);
        await this.repo.update(uuid, {
          status: Status.Stopped,
          exit_code: exit.exitCode,
          finished_at: (exit.exitedAt ?? new Date()).toISOString(),
          status_reason: oom ? 'OOMKilled: the container exceeded its memory limit' : c.status_reason,
        });
        if (expected || c.desired !== 'running') return;
        if (c.auto_remove) {
          await this.repo.update(uuid, { status: Status.Deleting, task_state: 'container_deleting' });
          await this.repo.enqueue(this.host, uuid, 'delete', {}, null);
          this.wake();
          return;
        }
        const policy = c.restart_policy ? (JSON.parse(c.restart_policy) as RestartPolicy) : null;
        if (shouldRestart(policy, exit.exitCode, c.restart_count)) {
          setTimeout(() => void this.autoRestart(uuid), restartDelayMs(c.restart_count)).unref();
        }
      })
      .catch((err) => {
        this.watching.delete(key);
        if (this.closed) return;
        this.opts.log.debug({ err, uuid }, 'wait ended');
        // The engine lost the task (e.g. its shim died while containerd was away): what the engine has now decides.
        if (!this.engineDown) this.scheduleReadopt();
      });
  }

  private readopting = false;
  /** One re-adoption pass at a time (many watches may end together). */
  private scheduleReadopt(): void {
    if (this.readopting) return;
    this.readopting = true;
    setTimeout(() => {
      void this.readopt()
        .catch((err) => this.opts.log.warn({ err }, 're-adopting containers failed'))
        .finally(() => {
          this.readopting = false;
        });
    }, 200).unref();
  }

  private async autoRestart(uuid: string): Promise<void> {
    const c = await this.repo.get(uuid);
    if (c?.desired !== 'running' || c.status !== Status.Stopped || this.closed) return;
    const prev = this.busy.get(uuid) ?? Promise.resolve();
    const next = prev.then(async () => {
      await this.repo.update(uuid, { restart_count: c.restart_count + 1 });
      await this.startInEngine(c, engineId(uuid)).catch((err) => this.opts.log.warn({ err, uuid }, 'restart failed'));
    });
    this.busy.set(uuid, next);
    await next;
  }

  /** Whether containerd reported an OOM kill (the event may trail the exit by a few milliseconds). */
  private async oomKilled(uuid: string): Promise<boolean> {
    // The event may trail the exit by a while on a busy host; only exits with 137 wait for it.
    for (let i = 0; i < 75 && !this.oomSeen.has(uuid); i++) await new Promise((r) => setTimeout(r, 20));
    return this.oomSeen.delete(uuid);
  }

  // ---------------------------------------------------------------- healthchecks

  /**
   * Runs the container's healthcheck command every `interval` seconds (Docker's semantics): `retries` failures in
   * a row make it unhealthy; with auto_heal an unhealthy container is restarted. Shown in status_detail.
   */
  private startHealthcheck(c: ContainerRow): void {
    if (!c.healthcheck || this.healthTimers.has(c.uuid)) return;
    const hc = JSON.parse(c.healthcheck) as { test: string | null; interval: number; retries: number; timeout: number };
    if (!hc.test) return;
    const intervalMs = Math.max(1, hc.interval || 30) * 1000;
    const retries = Math.max(1, hc.retries || 3);
    let failures = 0;
    const tick = async () => {
      if (this.closed || !this.healthTimers.has(c.uuid)) return;
      if (this.engineDown) {
        // No verdict while containerd is away: its absence says nothing about the container's health.
        this.healthTimers.set(
          c.uuid,
          setTimeout(() => void tick(), intervalMs),
        );
        return;
      }
      let ok = false;
      try {
        const r = await this.engine.exec(engineId(c.uuid), {
          args: ['sh', '-c', hc.test!],
          timeoutMs: Math.max(1, hc.timeout || 30) * 1000,
        });
        ok = r.exitCode === 0 && !r.timedOut;
      } catch {
        ok = false;
      }
      failures = ok ? 0 : failures + 1;
      const health = ok ? 'healthy' : failures >= retries ? 'unhealthy' : null;
      const row = await this.repo.get(c.uuid);
      if (!row || row.status !== Status.Running) return;
      if (health && row.health !== health) await this.repo.update(c.uuid, { health });
      if (health === 'unhealthy' && row.auto_heal) {
        failures = 0;
        await this.repo.enqueue(this.host, c.uuid, 'reboot', { timeout: 1 }, null);
        this.wake();
      }
      if (this.healthTimers.has(c.uuid))
        this.healthTimers.set(
          c.uuid,
          setTimeout(() => void tick(), intervalMs),
        );
    };
    this.healthTimers.set(
      c.uuid,
      setTimeout(() => void tick(), intervalMs),
    );
  }

  private stopHealthcheck(uuid: string): void {
    const t = this.healthTimers.get(uuid);
    if (t) clearTimeout(t);
    this.healthTimers.delete(uuid);
  }

  // ---------------------------------------------------------------- reconcile

  /**
   * After a (re)start: containers of this host that the engine runs are watched again; ones it lost follow Zun's
   * rules (auto_remove → gone, auto_heal → recreated, else Error); tasks interrupted mid-way are run again.
   */
  private async reconcile(): Promise<void> {
    const db = this.opts.store.db;
    await db
      .updateTable('agent_tasks')
      .set({ state: 'pending' })
      .where('host', '=', this.host)
      .where('state', '=', 'running')
      .execute();
    await this.reconcileContainers(() => false);
  }

  /**
   * After containerd came back: what it runs is watched again and exits it reported meanwhile are recorded. Tasks
   * of this process are still under way (they run again, see runTask), containers with a live exit watch are
   * followed by it, and rows that do not claim a live task (a stopped one may have a restart timer) are left alone.
   */
  private async readopt(): Promise<void> {
    const live: string[] = [Status.Running, Status.Paused, Status.Restarting];
    await this.reconcileContainers(
      (c) =>
        !live.includes(c.status) || this.busy.has(c.uuid) || [...this.watching].some((k) => k.startsWith(`${c.uuid}#`)),
    );
  }

  /** Brings the rows of this host in line with the engine (Zun's rules for containers the engine lost). */
  private async reconcileContainers(skip: (c: ContainerRow) => boolean): Promise<void> {
    const db = this.opts.store.db;
    const engineStates = new Map((await this.engine.list()).map((s) => [s.id, s]));
    const rows = await db.selectFrom('containers').selectAll().where('host', '=', this.host).execute();
    for (const c of rows) {
      if (skip(c)) continue;
      const st = engineStates.get(engineId(c.uuid));
      const pending = await db
        .selectFrom('agent_tasks')
        .select('id')
        .where('container_uuid', '=', c.uuid)
        .executeTakeFirst();
      if (pending) continue;
      if (!st) {
        if (c.status === Status.Creating || c.status === Status.Error) continue;
        if (c.auto_remove) {
          await this.network?.unplug(c);
          await this.repo.remove(c.uuid);
        } else if (c.auto_heal) {
          await this.repo.update(c.uuid, { status: Status.Creating });
          await this.repo.enqueue(this.host, c.uuid, 'create', { run: c.desired === 'running' }, null);
        } else
          await this.repo.update(c.uuid, {
            status: Status.Error,
            status_reason: 'No such container',
            task_state: null,
          });
        continue;
      }
      if (st.state === 'running') {
        await this.repo.update(c.uuid, { status: Status.Running, task_state: null });
        await this.network
          ?.publish(c, true)
          .catch((err) => this.opts.log.error({ err, container: c.uuid }, 'published ports'));
        this.watch(c.uuid);
        this.startHealthcheck(c);
      } else if (st.state === 'paused') {
        await this.repo.update(c.uuid, { status: Status.Paused, task_state: null });
        this.watch(c.uuid);
      } else if (st.state === 'stopped') {
        await this.repo.update(c.uuid, {
          status: Status.Stopped,
          task_state: null,
          exit_code: st.exitCode ?? c.exit_code,
          finished_at: st.exitedAt?.toISOString() ?? c.finished_at,
        });
        await this.unpublish(c);
        const policy = c.restart_policy ? (JSON.parse(c.restart_policy) as RestartPolicy) : null;
        if (c.desired === 'running' && shouldRestart(policy, st.exitCode ?? 0, c.restart_count))
          void this.autoRestart(c.uuid);
      } else if (st.state === 'created' && c.status === Status.Creating) {
        await this.repo.update(c.uuid, { status: Status.Created, task_state: null });
      }
    }
  }

  // ---------------------------------------------------------------- synchronous calls

  async logs(
    c: ContainerRow,
    opts: { stdout: boolean; stderr: boolean; timestamps: boolean; tail: number | 'all'; since?: number },
  ): Promise<string> {
    await this.logIndex.flush(c.uuid);
    let lines = await readTimedLines(this.engine.logPaths(engineId(c.uuid)), opts);
    if (opts.since !== undefined) lines = lines.filter((l) => l.time >= opts.since!);
    if (opts.tail !== 'all') lines = opts.tail > 0 ? lines.slice(-opts.tail) : [];
    return lines.map((l) => (opts.timestamps ? `${logTimestamp(l.time)} ${l.text}` : l.text)).join('');
  }

  followLogs(c: ContainerRow, opts: { stdout: boolean; stderr: boolean; tail: number | 'all' }): NodeJS.ReadableStream {
    const paths = this.engine.logPaths(engineId(c.uuid));
    const files = [opts.stdout ? paths.stdout : null, opts.stderr ? paths.stderr : null].filter(
      (f): f is string => !!f,
    );
    const offsets = new Map<string, number>();
    const out = new PassThrough();
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    out.on('close', () => {
      closed = true;
      if (timer) clearTimeout(timer);
    });
    const live = ['Running', 'Paused', 'Restarting', 'Creating', 'Created', 'Rebuilding'];
    const poll = async () => {
      if (closed) return;
      let grew = false;
      for (const f of files) {
        const size = await stat(f).then(
          (s) => s.size,
          () => 0,
        );
        const from = offsets.get(f) ?? 0;
        if (size > from) {
          const fh = await open(f, 'r');
          try {
            const buf = Buffer.alloc(size - from);
            await fh.read(buf, 0, buf.length, from);
            out.write(buf);
          } finally {
            await fh.close();
          }
          offsets.set(f, size);
          grew = true;
        }
      }
      const row = await this.repo.get(c.uuid);
      if (!grew && (!row || !live.includes(row.status))) {
        out.end();
        return;
      }
      timer = setTimeout(() => void poll().catch((err) => out.destroy(err)), 200);
    };
    void (async () => {
      // Start with the requested tail of what is already there, then follow from the end of each file.
      out.write(await this.logs(c, { stdout: opts.stdout, stderr: opts.stderr, timestamps: false, tail: opts.tail }));
      for (const f of files)
        offsets.set(
          f,
          await stat(f).then(
            (s) => s.size,
            () => 0,
          ),
        );
      await poll();
    })().catch((err) => out.destroy(err));
    return out;
  }

  async createExec(c: ContainerRow, command: string[]): Promise<{ execId: string; token: string }> {
    return this.engineCall(c, async () => this.sessions.createExec(c.uuid, engineId(c.uuid), command));
  }
  resizeExec(c: ContainerRow, execId: string, cols: number, rows: number): Promise<boolean> {
    return this.sessions.resizeExec(c.uuid, execId, cols, rows);
  }
  async createAttach(c: ContainerRow): Promise<string> {
    return this.engineCall(c, async () => this.sessions.createAttach(c.uuid, engineId(c.uuid)));
  }
  resizeAttach(c: ContainerRow, cols: number, rows: number): Promise<void> {
    return this.sessions.resizeAttach(c.uuid, cols, rows);
  }
  openStream(token: string, uuid: string, execId?: string): Promise<StreamSession | undefined> {
    return this.sessions.open(token, uuid, execId);
  }

  async exec(
    c: ContainerRow,
    command: string[],
    opts: { tty: boolean },
  ): Promise<{ output: string; exitCode: number }> {
    void opts;
    const r = await this.engineCall(c, () => this.engine.exec(engineId(c.uuid), { args: command, timeoutMs: 60_000 }));
    return { output: r.stdout + r.stderr, exitCode: r.exitCode };
  }

  async top(c: ContainerRow, psArgs?: string): Promise<{ Titles: string[]; Processes: string[][] }> {
    const r = await this.engineCall(c, () =>
      this.engine.exec(engineId(c.uuid), { args: ['ps', ...(psArgs ? psArgs.split(/\s+/) : [])], timeoutMs: 10_000 }),
    );
    const lines = r.stdout.trim().split('\n');
    const titles = lines.shift()?.trim().split(/\s+/) ?? [];
    const processes = lines.map((l) => {
      const cols = l.trim().split(/\s+/);
      return [...cols.slice(0, titles.length - 1), cols.slice(titles.length - 1).join(' ')];
    });
    return { Titles: titles, Processes: processes };
  }

  async stats(c: ContainerRow): Promise<Record<string, string | number>> {
    const s = await this.engineCall(c, () => this.engine.stats(engineId(c.uuid)));
    const mib = (b: number) => Math.round((b / 1024 / 1024) * 100) / 100;
    const limit = s.memoryLimitBytes || Number(c.memory) * 1024 * 1024;
    return {
      CONTAINER: c.name,
      'CPU %': 0,
      'MEM USAGE(MiB)': mib(s.memoryUsageBytes),
      'MEM LIMIT(MiB)': mib(limit),
      'MEM %': limit ? Math.round((s.memoryUsageBytes / limit) * 10000) / 100 : 0,
      'BLOCK I/O(B)': '0/0',
      'NET I/O(B)': '0/0',
    };
  }

  getArchive(
    c: ContainerRow,
    path: string,
  ): Promise<{ tar: Buffer; stat: { name: string; size: number; mode: number; mtime: string; linkTarget: string } }> {
    return this.engineCall(c, () => this.readArchive(c, path));
  }

  private async readArchive(
    c: ContainerRow,
    path: string,
  ): Promise<{ tar: Buffer; stat: { name: string; size: number; mode: number; mtime: string; linkTarget: string } }> {
    const id = engineId(c.uuid);
    const st = await this.engine.exec(id, { args: ['stat', '-c', '%n|%s|%f|%Y|%N', path], timeoutMs: 10_000 });
    if (st.exitCode !== 0) throw new EngineError('not_found', `Could not find the file ${path} in container ${c.uuid}`);
    const [name, size, modeHex, mtime] = st.stdout.trim().split('|');
    const dir = path.replace(/\/[^/]*\/?$/, '') || '/';
    const base = path.replace(/\/+$/, '').split('/').pop() || '.';
    const tar = await this.engine.exec(id, {
      args: ['sh', '-c', 'tar -C "$1" -cf - "$2" | base64', 'sh', dir, base],
      timeoutMs: 60_000,
    });
    if (tar.exitCode !== 0) throw new EngineError('failed', `tar failed: ${tar.stderr}`);
    return {
      tar: Buffer.from(tar.stdout.replace(/\s+/g, ''), 'base64'),
      stat: {
        name: name.split('/').pop() ?? name,
        size: Number(size),
        mode: Number.parseInt(modeHex, 16),
        mtime: new Date(Number(mtime) * 1000).toISOString(),
        linkTarget: '',
      },
    };
  }

  putArchive(c: ContainerRow, path: string, tar: Buffer): Promise<void> {
    return this.engineCall(c, () => this.writeArchive(c, path, tar));
  }

  private async writeArchive(c: ContainerRow, path: string, tar: Buffer): Promise<void> {
    const id = engineId(c.uuid);
    const sh = async (script: string, ...args: string[]) => {
      const r = await this.engine.exec(id, { args: ['sh', '-c', script, 'sh', ...args], timeoutMs: 60_000 });
      if (r.exitCode !== 0) throw new EngineError('failed', `extracting the archive failed: ${r.stderr || r.stdout}`);
    };
    const dir = await this.engine.exec(id, { args: ['test', '-d', path], timeoutMs: 10_000 });
    if (dir.exitCode !== 0)
      throw new EngineError('not_found', `Could not find the file ${path} in container ${c.uuid}`);
    // The archive travels as base64 in argv pieces (one argument may hold at most 128 KiB) into a staging file,
    // which the container's own tar unpacks: it sees the container's mounts and cannot write outside them.
    const staging = `/tmp/.krater-put-${randomUUID()}`;
    const b64 = tar.toString('base64');
    const PIECE = 96 * 1024;
    try {
      await sh('mkdir -p /tmp && : > "$1"', staging);
      for (let i = 0; i < b64.length; i += PIECE) await sh('printf %s "$1" >> "$2"', b64.slice(i, i + PIECE), staging);
      await sh('base64 -d "$2" | tar -C "$1" -xf -', path, staging);
    } finally {
      await this.engine.exec(id, { args: ['rm', '-f', staging], timeoutMs: 10_000 }).catch(() => undefined);
    }
  }
}

/** A row's memory (MiB, as Zun stores it) and CPUs as the engine takes them. */
function limitsOf(c: ContainerRow): { memoryLimitBytes: number; cpus: number } {
  return { memoryLimitBytes: Number(c.memory) * 1024 * 1024, cpus: c.cpu };
}

/** This host's online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-3,6`), as numbers. */
function onlineCpus(): number[] {
  try {
    return readFileSync('/sys/devices/system/cpu/online', 'utf8')
      .trim()
      .split(',')
      .flatMap((part) => {
        const [a, b] = part.split('-').map(Number);
        return Array.from({ length: (b ?? a!) - a! + 1 }, (_, i) => a! + i);
      });
  } catch {
    return cpus().map((_, i) => i);
  }
}
