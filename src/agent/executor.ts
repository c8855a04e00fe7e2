/**
 * The agent's task pump and executor: claims the tasks the API queued for this host (a compare-and-set on the
 * row, so several agents or restarts never run a task twice), runs the tasks of one subject in order and different
 * subjects concurrently, and runs each through the action table (`ACTIONS`, src/compute/states.ts): desired state,
 * task state, the work, then the table's success or error status.
 */
import { performance } from 'node:perf_hooks';
import type { Selectable } from 'kysely';
import { type ActionRule, type AgentWork, actionRule, Status } from '../compute/states.js';
import type { AgentTaskRow as AgentTaskTable, ContainerRow } from '../core/store/schema.js';
import { EngineError, toEngineError } from '../engine/engine.js';
import type { UsernsMapping } from '../engine/oci-spec.js';
import { type AgentContext, engineId, type Lanes } from './context.js';
import type { CpuPinning } from './host.js';
import type { Lifecycle, RunPatch } from './lifecycle.js';
import { reconcileContainer } from './reconcile.js';

export type AgentTaskRow = Selectable<AgentTaskTable>;

/** An agent task that keeps meeting an unavailable containerd is given up after this many tries. */
const MAX_UNAVAILABLE_RETRIES = 5;

/** The subject a task acts on: a container uuid, or a host image (`zun_images` uuid). */
export function taskSubject(task: Pick<AgentTaskRow, 'kind' | 'image_uuid' | 'container_uuid' | 'action'>): {
  kind: 'container' | 'image';
  id: string;
} {
  if (task.kind === 'image') return { kind: 'image', id: task.image_uuid ?? '' };
  // An image task queued through `enqueue` (by an API that predates `kind`) names its image in `container_uuid`.
  return { kind: actionRule(task.action)?.kind ?? 'container', id: task.container_uuid ?? '' };
}

/** What a handler gets: the container, the task's parameters, and how to record the table's success. */
interface Work {
  c: ContainerRow;
  params: Record<string, unknown>;
  /** Writes the rule's success status (task state cleared) with `patch`; the executor does it after the work if the work did not. */
  succeed(patch?: RunPatch): Promise<void>;
}
type Handler = (w: Work) => Promise<void>;

export class TaskExecutor {
  private pumping = false;
  private repump = false;
  /** Tries per agent task that met an unavailable containerd (they are put back, not failed). */
  private readonly unavailableRetries = new Map<number, number>();
  /** Tasks an earlier agent was running when it stopped or died: their work may be done in part or in full. */
  private readonly interrupted = new Set<number>();
  private readonly handlers: Record<Exclude<AgentWork, 'image_pull' | 'image_delete'>, Handler>;

  constructor(
    private readonly ctx: AgentContext,
    private readonly lanes: Lanes,
    private readonly lifecycle: Lifecycle,
    private readonly pinning: CpuPinning,
    private readonly opts: { shimGrouping?: 'project' | 'none'; userns?: UsernsMapping } = {},
  ) {
    this.handlers = this.makeHandlers();
  }

  wake(): void {
    if (this.ctx.closed) return;
    if (this.pumping) {
      this.repump = true;
      return;
    }
    this.pumping = true;
    void this.pump()
      .catch((err) => this.ctx.log.error({ err }, 'agent task pump failed'))
      .finally(() => {
        this.pumping = false;
        if (this.repump) {
          this.repump = false;
          this.wake();
        }
      });
  }

  /** Tasks a stopped agent left running are pending again (they run again from the start). */
  async requeueInterrupted(): Promise<void> {
    const db = this.ctx.store.db;
    const left = await db
      .selectFrom('agent_tasks')
      .select('id')
      .where('host', '=', this.ctx.host)
      .where('state', '=', 'running')
      .execute();
    for (const t of left) this.interrupted.add(t.id);
    await db
      .updateTable('agent_tasks')
      .set({ state: 'pending' })
      .where('host', '=', this.ctx.host)
      .where('state', '=', 'running')
      .execute();
  }

  /** Claims pending tasks; tasks of one subject run in order, different subjects run concurrently. */
  private async pump(): Promise<void> {
    // Accepted actions wait in the store while containerd is away; they run once it is back.
    if (this.ctx.engineDown) return;
    const db = this.ctx.store.db;
    const tasks = await db
      .selectFrom('agent_tasks')
      .selectAll()
      .where('host', '=', this.ctx.host)
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
      const s = taskSubject(task);
      this.lanes
        .run(s.kind === 'image' ? `image:${s.id}` : s.id, () => this.runTask(task))
        .catch((err) => this.ctx.log.error({ err, task: task.id }, 'agent task could not be finished'));
    }
  }

  private async runTask(task: AgentTaskRow): Promise<void> {
    const started = new Date().toISOString();
    const subject = taskSubject(task);
    let error: string | undefined;
    try {
      await this.execute(task);
    } catch (err) {
      if (this.isEngineUnavailable(err)) {
        if (await this.putBack(task).catch(() => false)) return;
        // Given up: the row must not keep claiming that the action is under way.
        if (subject.kind === 'container')
          await this.ctx.repo.update(subject.id, { task_state: null }).catch(() => undefined);
      }
      error = err instanceof Error ? err.message : String(err);
      this.ctx.log.warn({ subject: subject.id, action: task.action, err: error }, 'agent task failed');
    }
    await this.finishTask(task, error, started);
  }

  /** containerd went away under this error (or is away now). */
  private isEngineUnavailable(err: unknown): boolean {
    return !!this.ctx.engineDown || toEngineError(err).code === 'unavailable';
  }

  /** A task interrupted by an unavailable containerd goes back to pending (bounded), to run again once it is back. */
  private async putBack(task: AgentTaskRow): Promise<boolean> {
    const tries = (this.unavailableRetries.get(task.id) ?? 0) + 1;
    if (tries > MAX_UNAVAILABLE_RETRIES) {
      this.unavailableRetries.delete(task.id);
      return false;
    }
    this.unavailableRetries.set(task.id, tries);
    this.ctx.log.warn(
      { subject: taskSubject(task).id, action: task.action, tries },
      'containerd unavailable: the task will run again when it is back',
    );
    await this.ctx.store.db.updateTable('agent_tasks').set({ state: 'pending' }).where('id', '=', task.id).execute();
    return true;
  }

  private async finishTask(task: AgentTaskRow, error: string | undefined, started: string): Promise<void> {
    this.unavailableRetries.delete(task.id);
    await this.ctx.store.db.deleteFrom('agent_tasks').where('id', '=', task.id).execute();
    if (task.action_id !== null) {
      await this.ctx.repo.finishAction(task.action_id, `compute__do_container_${task.action}`, error, started);
      const s = taskSubject(task);
      if (s.kind === 'container') this.ctx.repo.changed(s.id);
    }
  }

  private async execute(task: AgentTaskRow): Promise<void> {
    const rule = actionRule(task.action);
    if (!rule) throw new Error(`unknown task ${task.action}`);
    const subject = taskSubject(task);
    if (rule.kind === 'image') return this.ctx.imageWork.runTask(task.action, subject.id);
    const c = await this.ctx.repo.get(subject.id);
    if (!c) return;
    const params = JSON.parse(task.params) as Record<string, unknown>;
    const rerun = this.interrupted.delete(task.id);
    await this.run(rule, c, params, rerun);
  }

  /** One action of the table on a container: desired state, task state, the work, then success or error status. */
  private async run(rule: ActionRule, c: ContainerRow, params: Record<string, unknown>, rerun = false): Promise<void> {
    const { repo } = this.ctx;
    const mark: Partial<ContainerRow> = {};
    if (rule.desired) mark.desired = rule.desired;
    if (rule.taskState) mark.task_state = rule.taskState;
    if (Object.keys(mark).length) await repo.update(c.uuid, mark);
    let succeeded = false;
    const succeed = async (patch: RunPatch = {}) => {
      succeeded = true;
      if (rule.success === Status.Deleted) return; // the work removed the row
      const values: Partial<ContainerRow> = { ...patch };
      if (rule.success) values.status = rule.success;
      if (rule.success || rule.taskState) values.task_state = null;
      if (Object.keys(values).length) await repo.update(c.uuid, values);
    };
    try {
      await this.handlers[rule.work as keyof typeof this.handlers]({ c, params, succeed });
      if (!succeeded) await succeed();
    } catch (err) {
      // Interrupted by containerd going away: the task runs again once it is back (runTask), the row keeps saying
      // what is pending.
      if (this.isEngineUnavailable(err)) throw err;
      // A task run again after the agent died may find its work done (started, killed, paused…): the engine's
      // state is then what the container is in.
      if (rerun && toEngineError(err).code === 'conflict') {
        this.ctx.log.info({ container: c.uuid, err: String(err) }, 'interrupted task found its work done');
        const st = await this.ctx.engine.status(engineId(c.uuid)).catch(() => undefined);
        await repo.update(c.uuid, { task_state: null });
        const fresh = await repo.get(c.uuid);
        if (fresh) await reconcileContainer(this.ctx, this.lifecycle, fresh, st);
        return;
      }
      // Actions that do not mark the row leave it alone when they fail (the action's event carries the error).
      if (rule.taskState || rule.error) {
        const msg = err instanceof Error ? err.message : String(err);
        await repo.update(c.uuid, {
          task_state: null,
          status_reason: msg,
          ...(rule.error ? { status: rule.error } : {}),
        });
      }
      throw err;
    }
    const next = rule.followedBy?.(params);
    if (next) {
      const fresh = await repo.get(c.uuid);
      if (fresh) await this.run(actionRule(next)!, fresh, params, rerun);
    }
  }

  private makeHandlers(): TaskExecutor['handlers'] {
    const { ctx, lifecycle } = this;
    const timeoutMs = (params: Record<string, unknown>) => Number(params.timeout ?? 10) * 1000;
    // Rebuild and delete take over the run's exit: its watcher must not record Stopped over what they record.
    const removeFromEngine = async (c: ContainerRow) => {
      lifecycle.expectExit(c.uuid);
      lifecycle.retire(c.uuid);
      await ctx.engine.delete(engineId(c.uuid), { force: true }).catch((err) => {
        if (!(err instanceof EngineError && err.code === 'not_found')) throw err;
      });
    };
    return {
      create: async ({ c }) => this.createInEngine(c),
      start: async ({ c, succeed }) => lifecycle.startRun(c, succeed),
      stop: async ({ c, params, succeed }) => lifecycle.stopRun(c, timeoutMs(params), succeed),
      kill: async ({ c, params }) => {
        lifecycle.expectExit(c.uuid);
        // The exit watcher records Stopped; a signal that does not end the task leaves it Running.
        await ctx.engine.kill(engineId(c.uuid), String(params.signal ?? 'SIGKILL'));
      },
      reboot: async ({ c, params, succeed }) => {
        await lifecycle.stopRun(c, timeoutMs(params), (patch) =>
          ctx.repo.update(c.uuid, { status: Status.Stopped, task_state: null, ...patch }),
        );
        await ctx.repo.update(c.uuid, { desired: 'running' });
        await lifecycle.startRun(c, succeed);
      },
      pause: async ({ c }) => ctx.engine.pause(engineId(c.uuid)),
      unpause: async ({ c }) => ctx.engine.unpause(engineId(c.uuid)),
      rebuild: async ({ c }) => {
        await removeFromEngine(c);
        await this.createInEngine(c);
      },
      delete: async ({ c }) => {
        await removeFromEngine(c);
        await ctx.network?.unplug(c);
        await ctx.repo.remove(c.uuid);
      },
      commit: async ({ c, params }) =>
        ctx.imageWork.commit(c, engineId(c.uuid), params as { imageId: string; repository: string; tag: string }),
      network_attach: async ({ params }) => ctx.network?.attach([String(params.port)]),
      network_detach: async ({ c, params }) =>
        ctx.network?.detach(c, params.ports as { id: string; preserve: boolean }[]),
      security_groups: async () => ctx.network?.applyNow(),
      // The row holds the new limits (the API wrote them); a container not yet made in the engine gets them at
      // create.
      update_resources: async ({ c }) =>
        ctx.engine.updateResources(engineId(c.uuid), limitsOf(c)).catch((err) => {
          if (!(err instanceof EngineError && err.code === 'not_found')) throw err;
        }),
    };
  }

  private async createInEngine(c: ContainerRow): Promise<void> {
    const { ctx } = this;
    const json = (s: string | null) => (s ? JSON.parse(s) : undefined);
    const env = Object.entries(json(c.environment) ?? {}).map(([k, v]) => `${k}=${v}`);
    const t0 = performance.now();
    const image = await ctx.imageWork.ensureForContainer(c);
    const tImage = performance.now();
    const runtime = ctx.runtimes[c.runtime ?? 'runc'];
    if (!runtime)
      throw new Error(
        `Container runtime ${c.runtime} is not supported on host ${ctx.host} (available: ${Object.keys(ctx.runtimes).join(', ')})`,
      );
    const cpusetCpus = c.cpu_policy === 'dedicated' ? await this.pinning.pin(c) : undefined;
    const net = await ctx.network?.plug(c);
    const tNet = performance.now();
    const create = () =>
      ctx.engine.create(engineId(c.uuid), {
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
      ctx.log.warn({ container: c.uuid }, 'removing what an interrupted create left, then creating again');
      this.lifecycle.expectExit(c.uuid);
      this.lifecycle.retire(c.uuid);
      await ctx.engine.discard(engineId(c.uuid));
      await create();
    }
    ctx.log.debug(
      {
        container: c.uuid,
        imageMs: Math.round(tImage - t0),
        networkMs: Math.round(tNet - tImage),
        engineMs: Math.round(performance.now() - tNet),
      },
      'container created',
    );
    if (!c.hostname) await ctx.repo.update(c.uuid, { hostname: c.uuid.slice(0, 12) });
  }
}

/** A row's memory (MiB, as Zun stores it) and CPUs as the engine takes them. */
export function limitsOf(c: ContainerRow): { memoryLimitBytes: number; cpus: number } {
  return { memoryLimitBytes: Number(c.memory) * 1024 * 1024, cpus: c.cpu };
}
