/**
 * Brings the rows of this host in line with what the engine has, through the one engine → status mapping
 * (`statusFromEngine`), then Zun's rules for what the engine lost (auto_remove → gone, auto_heal → created again).
 */
import { type EngineState, Status, statusFromEngine } from '../compute/states.js';
import type { ContainerRow } from '../core/store/schema.js';
import type { ContainerStatus } from '../engine/engine.js';
import { type AgentContext, engineId } from './context.js';
import type { Lifecycle } from './lifecycle.js';

export async function reconcileContainers(
  ctx: AgentContext,
  lifecycle: Lifecycle,
  skip: (c: ContainerRow) => boolean,
): Promise<void> {
  const db = ctx.store.db;
  const engineStates = new Map((await ctx.engine.list()).map((s) => [s.id, s]));
  const rows = await db.selectFrom('containers').selectAll().where('host', '=', ctx.host).execute();
  for (const c of rows) {
    if (skip(c)) continue;
    // A queued task (an interrupted one runs again) decides this container's state.
    const pending = await db
      .selectFrom('agent_tasks')
      .select('id')
      .where('container_uuid', '=', c.uuid)
      .executeTakeFirst();
    if (pending) continue;
    await reconcileContainer(ctx, lifecycle, c, engineStates.get(engineId(c.uuid)));
  }
}

/** One container brought in line with the engine's view of it (`st` undefined: the engine does not have it). */
export async function reconcileContainer(
  ctx: AgentContext,
  lifecycle: Lifecycle,
  c: ContainerRow,
  st: ContainerStatus | undefined,
): Promise<void> {
  const state: EngineState = st ? st.state : 'missing';
  const status = statusFromEngine(state, c.status);
  if (!status) return;
  switch (state) {
    case 'missing':
      if (c.auto_remove) {
        await ctx.network?.unplug(c);
        await ctx.repo.remove(c.uuid);
      } else if (c.auto_heal) {
        await ctx.repo.update(c.uuid, { status: Status.Creating });
        await ctx.repo.enqueue(ctx.host, c.uuid, 'create', { run: c.desired === 'running' }, null);
      } else await ctx.repo.update(c.uuid, { status, status_reason: 'No such container', task_state: null });
      break;
    case 'running':
      await ctx.repo.update(c.uuid, { status, task_state: null });
      await ctx.network?.publish(c, true).catch((err) => ctx.log.error({ err, container: c.uuid }, 'published ports'));
      lifecycle.watch(c.uuid);
      lifecycle.startHealthcheck(c);
      break;
    case 'paused':
      await ctx.repo.update(c.uuid, { status, task_state: null });
      lifecycle.watch(c.uuid);
      break;
    case 'stopped':
      await ctx.repo.update(c.uuid, {
        status,
        task_state: null,
        exit_code: st?.exitCode ?? c.exit_code,
        finished_at: st?.exitedAt?.toISOString() ?? c.finished_at,
      });
      await lifecycle.unpublish(c);
      lifecycle.restartIfPolicy(c, st?.exitCode ?? 0, false);
      break;
    default:
      await ctx.repo.update(c.uuid, { status, task_state: null });
  }
}
