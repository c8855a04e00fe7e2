/**
 * What a create cut short by a crash leaves behind, and how it is rolled back (issue 12, item 3). `ContainerApi.create`
 * writes the placed row (Creating), makes the Neutron ports, records the action and queues the agent's task, in that
 * order and not in one transaction: a process killed in between leaves a row in Creating that no agent will ever
 * settle, or ports bound to a container row that is gone (a failed create removes its row). The sweeper (src/controllers/sweeper.ts) finds both once
 * they are older than a grace period no live create takes, and rolls them back here.
 */
import { randomUUID } from 'node:crypto';
import { type Expression, type Kysely, type SqlBool, sql } from 'kysely';
import type { ContainerRow, Database } from '../core/store/schema.js';
import { type ContainerNetworking, DEVICE_OWNER } from './networking.js';
import type { ContainerRepo } from './repo.js';
import { Status } from './states.js';

/** The status reason of a container whose create was rolled back by the sweeper. */
export const INTERRUPTED_CREATE =
  'The create was interrupted before its host got the work (an API process stopped halfway); delete and create it again.';
const CREATE_EVENT = 'compute__do_container_create';

/** No agent task of any state (pending or running; done tasks are deleted) names the container. */
const noTask = (uuid: Expression<string>) =>
  sql<SqlBool>`not exists (select 1 from agent_tasks t where t.container_uuid = ${uuid})`;

/**
 * Containers to roll back: in Creating, neither created nor updated since `cutoff`, with no agent task; and those the
 * sweeper already moved to Error whose rollback a crash cut short (ports still recorded or still bound to it, or the
 * create action open).
 */
export async function interruptedCreates(db: Kysely<Database>, cutoff: Date): Promise<ContainerRow[]> {
  const before = cutoff.toISOString();
  return db
    .selectFrom('containers')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb.and([
          eb('status', '=', Status.Creating),
          eb('created_at', '<', before),
          eb.or([eb('updated_at', 'is', null), eb('updated_at', '<', before)]),
          noTask(eb.ref('containers.uuid')),
        ]),
        eb.and([
          eb('status', '=', Status.Error),
          eb('status_reason', '=', INTERRUPTED_CREATE),
          eb.or([
            eb('addresses', 'is not', null),
            eb.exists(eb.selectFrom('net_ports as p').select('p.id').whereRef('p.device_id', '=', 'containers.uuid')),
            eb.exists(
              eb
                .selectFrom('container_actions as a')
                .select('a.id')
                .whereRef('a.container_uuid', '=', 'containers.uuid')
                .where('a.action', '=', 'create')
                .where('a.finish_time', 'is', null),
            ),
          ]),
        ]),
      ]),
    )
    .orderBy('created_at')
    .execute();
}

/**
 * Rolls one interrupted create back: the row goes to Error (compare-and-set: only from Creating and only while no
 * task names it, so a create that did reach its agent is never touched), its create action is finished with an error
 * event (one is recorded if the crash came before the action), and its Neutron ports and exposed-ports group are
 * released (a user's own port is unbound and kept). Idempotent: a repeat finishes what a crash left undone.
 * Returns false when the container moved on meanwhile.
 */
export async function rollBackCreate(
  repo: ContainerRepo,
  networking: ContainerNetworking | undefined,
  c: ContainerRow,
): Promise<boolean> {
  if (c.status === Status.Creating) {
    const res = await repo.db
      .updateTable('containers')
      .set({
        status: Status.Error,
        status_reason: INTERRUPTED_CREATE,
        task_state: null,
        updated_at: new Date().toISOString(),
      })
      .where('uuid', '=', c.uuid)
      .where('status', '=', Status.Creating)
      .where((eb) => noTask(eb.ref('containers.uuid')))
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) return false;
    repo.changed(c.uuid);
  }
  const actions = await repo.db
    .selectFrom('container_actions')
    .select(['id', 'finish_time'])
    .where('container_uuid', '=', c.uuid)
    .where('action', '=', 'create')
    .execute();
  const open = actions.filter((a) => !a.finish_time).map((a) => a.id);
  if (!actions.length) open.push(await repo.startAction(c, 'create', `req-${randomUUID()}`, c.user_id, c.project_id));
  for (const id of open) await repo.finishAction(id, CREATE_EVENT, INTERRUPTED_CREATE);
  // By the ports' device id, not the row's `addresses`: the row is written before its ports are made, so a crash
  // between making them and recording them leaves ports the row does not name.
  await networking?.releaseAll(c);
  if (c.addresses !== null) await repo.update(c.uuid, { addresses: null });
  return true;
}

/** A Neutron port bound to Zun (`device_owner` compute:zun) whose container row does not exist. */
export interface OrphanedPort {
  id: string;
  project_id: string;
  device_id: string;
  revision_number: number;
}

/** Zun's ports created before `cutoff` whose `device_id` names no container row (a create that died before its row). */
export async function orphanedPorts(db: Kysely<Database>, cutoff: Date): Promise<OrphanedPort[]> {
  // Neutron's timestamps have no fraction of a second (services/network/context.ts).
  const before = cutoff.toISOString().replace(/\.\d{3}Z$/, 'Z');
  const rows = await db
    .selectFrom('net_ports as p')
    .select(['p.id', 'p.project_id', 'p.device_id', 'p.revision_number'])
    .where('p.device_owner', '=', DEVICE_OWNER)
    .where('p.device_id', '!=', '')
    .where('p.created_at', '<', before)
    .where((eb) =>
      eb.not(eb.exists(eb.selectFrom('containers as c').select('c.uuid').whereRef('c.uuid', '=', 'p.device_id'))),
    )
    .orderBy('p.created_at')
    .execute();
  return rows.map((r) => ({ ...r, revision_number: Number(r.revision_number) }));
}

/**
 * Gives back an orphaned port. A port Zun made for the create was created already bound (device id, owner, host) and
 * nothing updates it before the agent sees its container, so it is still at revision 0: it is deleted. A port at a
 * later revision may be a user's own port the create took (`--net port=`): it is unbound and kept, as a delete does
 * with `preserve_on_delete` (at worst a port Zun made stays, unbound, instead of a user's port being lost).
 */
export async function releaseOrphanedPort(networking: ContainerNetworking, port: OrphanedPort): Promise<void> {
  await networking.releasePort(port.project_id, port.id, port.revision_number > 0);
}
