/**
 * What happens to a container between user actions: a run is started and stopped here, its exit is watched and
 * recorded (with containerd's OOM verdict), and the container's rules apply — auto_remove, the restart policy with
 * back-off, the healthcheck with auto_heal.
 */
import { performance } from 'node:perf_hooks';
import { type RestartPolicy, Status, shouldRestart } from '../compute/states.js';
import type { ContainerRow } from '../core/store/schema.js';
import { type AgentContext, engineId, type Lanes } from './context.js';
import type { LogIndexer } from './log-index.js';

/** What a run's start or stop records on the row besides the status. */
export type RunPatch = Partial<ContainerRow>;

export class Lifecycle {
  /**
   * Run generation per container: bumped when a new run starts or a user action takes over a run's exit (stop,
   * reboot). An exit watcher only acts for the generation it was armed for, so a late exit of an old run never
   * overwrites the state of a newer one.
   */
  private readonly runs = new Map<string, number>();
  private readonly watching = new Set<string>();
  /** Containers a user action is stopping: their exit must not trigger the restart policy. */
  private readonly expectedExit = new Set<string>();
  /** Containers containerd reported an OOM kill for (its `/tasks/oom` event precedes the exit). */
  private readonly oomSeen = new Set<string>();
  private readonly healthTimers = new Map<string, NodeJS.Timeout>();
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private readopting = false;

  constructor(
    private readonly ctx: AgentContext,
    private readonly lanes: Lanes,
    private readonly logIndex: LogIndexer,
    /** Brings the rows in line with the engine again (after an exit watch lost its task). */
    private readonly readopt: () => Promise<void>,
  ) {}

  /** containerd's `/tasks/oom` for an engine container. */
  oomEvent(id: string): void {
    if (id.startsWith('zun-')) this.oomSeen.add(id.slice(4));
  }

  /** A user action (stop, kill, delete, rebuild) ends the current run: its exit is not the container's own. */
  expectExit(uuid: string): void {
    this.expectedExit.add(uuid);
  }

  /** Whether an exit watch follows a run of this container. */
  isWatched(uuid: string): boolean {
    return [...this.watching].some((k) => k.startsWith(`${uuid}#`));
  }

  /** The current run's exit is no longer its watcher's to record. */
  retire(uuid: string): void {
    this.runs.set(uuid, (this.runs.get(uuid) ?? 0) + 1);
  }

  stop(): void {
    for (const t of this.healthTimers.values()) clearTimeout(t);
    for (const t of this.restartTimers) clearTimeout(t);
  }

  /**
   * Starts a run: ports published first (a host port in use fails the start, as in Docker), the task started,
   * `record` writes the row's Running state (the caller's status and task state, with the run's fields), then the
   * exit is watched and the healthcheck armed.
   */
  async startRun(c: ContainerRow, record: (patch: RunPatch) => Promise<void>): Promise<void> {
    this.expectedExit.delete(c.uuid);
    this.retire(c.uuid);
    const t0 = performance.now();
    await this.ctx.network?.publish(c, true);
    try {
      await this.ctx.engine.start(engineId(c.uuid));
    } catch (err) {
      await this.unpublish(c);
      throw err;
    }
    this.ctx.log.debug({ container: c.uuid, ms: Math.round(performance.now() - t0) }, 'container started');
    await record({
      status_reason: null,
      started_at: new Date().toISOString(),
      exit_code: null,
      health: c.healthcheck ? 'starting' : null,
    });
    this.watch(c.uuid);
    this.startHealthcheck(c);
  }

  /** Stops the run on a user's request; `record` writes the exit (this action records it, not the run's watcher). */
  async stopRun(c: ContainerRow, timeoutMs: number, record: (patch: RunPatch) => Promise<void>): Promise<void> {
    this.expectedExit.add(c.uuid);
    this.retire(c.uuid);
    const exit = await this.ctx.engine.stop(engineId(c.uuid), { timeoutMs });
    // Freed before the container is reported Stopped (a client that saw Stopped finds the port free).
    await this.unpublish(c);
    await record({ exit_code: exit?.exitCode ?? null, finished_at: new Date().toISOString() });
  }

  /** A stopped container's published ports are freed (Docker's semantics); a failure is only logged. */
  async unpublish(c: Pick<ContainerRow, 'uuid' | 'published_ports'>): Promise<void> {
    await this.ctx.network
      ?.publish(c, false)
      .catch((err) => this.ctx.log.warn({ err, container: c.uuid }, 'freeing published ports failed'));
  }

  /** Follows a running container's exit: records it and applies the restart policy and auto_remove. */
  watch(uuid: string): void {
    const gen = this.runs.get(uuid) ?? 0;
    const key = `${uuid}#${gen}`;
    if (this.watching.has(key)) return;
    this.watching.add(key);
    const id = engineId(uuid);
    const { ctx } = this;
    this.logIndex.track(uuid, ctx.engine.logPaths(id));
    const current = () => this.runs.get(uuid) === gen || (gen === 0 && !this.runs.has(uuid));
    void ctx.engine
      .wait(id)
      .then(async (exit) => {
        this.watching.delete(key);
        await this.logIndex.untrack(uuid);
        if (ctx.closed || !current()) return;
        const expected = this.expectedExit.delete(uuid);
        const c = await ctx.repo.get(uuid);
        if (!c || c.status === Status.Deleting || !current()) return;
        this.stopHealthcheck(uuid);
        // The exit of a stop or kill the user asked for does not wait for an OOM event that is almost never coming.
        const oom = exit.exitCode === 137 && (expected ? this.oomSeen.delete(uuid) : await this.oomKilled(uuid));
        await this.unpublish(c);
        await ctx.repo.update(uuid, {
          status: Status.Stopped,
          exit_code: exit.exitCode,
          finished_at: (exit.exitedAt ?? new Date()).toISOString(),
          status_reason: oom ? 'OOMKilled: the container exceeded its memory limit' : c.status_reason,
        });
        if (expected || c.desired !== 'running') return;
        if (c.auto_remove) {
          await ctx.repo.update(uuid, { status: Status.Deleting, task_state: 'container_deleting' });
          await ctx.repo.enqueue(ctx.host, uuid, 'delete', {}, null);
          ctx.wake();
          return;
        }
        this.restartIfPolicy(c, exit.exitCode, true);
      })
      .catch((err) => {
        this.watching.delete(key);
        if (ctx.closed) return;
        ctx.log.debug({ err, uuid }, 'wait ended');
        // The engine lost the task (e.g. its shim died while containerd was away): what the engine has now decides.
        if (!ctx.engineDown) this.scheduleReadopt();
      });
  }

  /** The restart policy of a container whose run ended on its own: a restart after the back-off (or at once). */
  restartIfPolicy(c: ContainerRow, exitCode: number, backOff: boolean): void {
    const policy = c.restart_policy ? (JSON.parse(c.restart_policy) as RestartPolicy) : null;
    if (c.desired !== 'running' || !shouldRestart(policy, exitCode, c.restart_count)) return;
    if (!backOff) {
      void this.autoRestart(c.uuid);
      return;
    }
    const t = setTimeout(() => {
      this.restartTimers.delete(t);
      void this.autoRestart(c.uuid);
    }, this.ctx.timing.restartDelayMs(c.restart_count));
    t.unref();
    this.restartTimers.add(t);
  }

  /** One re-adoption pass at a time (many watches may end together). */
  private scheduleReadopt(): void {
    if (this.readopting) return;
    this.readopting = true;
    setTimeout(() => {
      void this.readopt()
        .catch((err) => this.ctx.log.warn({ err }, 're-adopting containers failed'))
        .finally(() => {
          this.readopting = false;
        });
    }, this.ctx.timing.readoptDelayMs).unref();
  }

  private async autoRestart(uuid: string): Promise<void> {
    const { ctx } = this;
    const c = await ctx.repo.get(uuid);
    if (c?.desired !== 'running' || c.status !== Status.Stopped || ctx.closed) return;
    await this.lanes.run(uuid, async () => {
      await ctx.repo.update(uuid, { restart_count: c.restart_count + 1 });
      await this.startRun(c, (patch) =>
        ctx.repo.update(uuid, { status: Status.Running, task_state: null, ...patch }),
      ).catch((err) => ctx.log.warn({ err, uuid }, 'restart failed'));
    });
  }

  /** Whether containerd reported an OOM kill (the event may trail the exit by a few milliseconds). */
  private async oomKilled(uuid: string): Promise<boolean> {
    // The event may trail the exit by a while on a busy host; only exits with 137 wait for it.
    const until = Date.now() + this.ctx.timing.oomGraceMs;
    while (!this.oomSeen.has(uuid) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    return this.oomSeen.delete(uuid);
  }

  // ---------------------------------------------------------------- healthchecks

  /**
   * Runs the container's healthcheck command every `interval` seconds (Docker's semantics): `retries` failures in
   * a row make it unhealthy; with auto_heal an unhealthy container is restarted. Shown in status_detail.
   */
  startHealthcheck(c: ContainerRow): void {
    if (!c.healthcheck || this.healthTimers.has(c.uuid)) return;
    const hc = JSON.parse(c.healthcheck) as { test: string | null; interval: number; retries: number; timeout: number };
    if (!hc.test) return;
    const { ctx } = this;
    const intervalMs = ctx.timing.healthIntervalMs(Math.max(1, hc.interval || 30));
    const retries = Math.max(1, hc.retries || 3);
    let failures = 0;
    const again = () => {
      if (this.healthTimers.has(c.uuid))
        this.healthTimers.set(
          c.uuid,
          setTimeout(() => void tick(), intervalMs),
        );
    };
    const tick = async () => {
      if (ctx.closed || !this.healthTimers.has(c.uuid)) return;
      // No verdict while containerd is away: its absence says nothing about the container's health.
      if (ctx.engineDown) return again();
      let ok = false;
      try {
        const r = await ctx.engine.exec(engineId(c.uuid), {
          args: ['sh', '-c', hc.test!],
          timeoutMs: Math.max(1, hc.timeout || 30) * 1000,
        });
        ok = r.exitCode === 0 && !r.timedOut;
      } catch {
        ok = false;
      }
      failures = ok ? 0 : failures + 1;
      const health = ok ? 'healthy' : failures >= retries ? 'unhealthy' : null;
      const row = await ctx.repo.get(c.uuid);
      if (!row || row.status !== Status.Running) return;
      if (health && row.health !== health) await ctx.repo.update(c.uuid, { health });
      if (health === 'unhealthy' && row.auto_heal) {
        failures = 0;
        await ctx.repo.enqueue(ctx.host, c.uuid, 'reboot', { timeout: 1 }, null);
        ctx.wake();
      }
      again();
    };
    this.healthTimers.set(
      c.uuid,
      setTimeout(() => void tick(), intervalMs),
    );
  }

  stopHealthcheck(uuid: string): void {
    const t = this.healthTimers.get(uuid);
    if (t) clearTimeout(t);
    this.healthTimers.delete(uuid);
  }
}
