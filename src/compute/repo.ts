import type { Kysely } from 'kysely';
import { isUniqueViolation } from '../core/store/db.js';
import type { ContainerRow, Database } from '../core/store/schema.js';
import { containerChanges } from './changes.js';
import { computeError as zunError } from './errors.js';
import { memoryMiB } from './model.js';
import { type PublishedPort, portsOverlap } from './publish.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `published_ports`: host ports a project may hold (Krater's, beyond Zun's resources). */
export const QUOTA_DEFAULTS: Record<string, number> = {
  containers: 40,
  memory: 51200,
  cpu: 20,
  disk: 100,
  published_ports: 100,
};
export const QUOTA_RESOURCES = Object.keys(QUOTA_DEFAULTS);

/** Container data access shared by the API and the agent. */
export class ContainerRepo {
  constructor(readonly db: Kysely<Database>) {}

  /** `ident` is a uuid or a name; lookups are project-scoped unless `allProjects`. */
  async find(ident: string, projectId: string | undefined, allProjects: boolean): Promise<ContainerRow> {
    let q = this.db.selectFrom('containers').selectAll();
    if (!allProjects) q = q.where('project_id', '=', projectId ?? '');
    if (UUID.test(ident)) {
      const row = await q.where('uuid', '=', ident.toLowerCase()).executeTakeFirst();
      if (row) return row;
    }
    const rows = await q.where('name', '=', ident).limit(2).execute();
    if (rows.length === 0) throw zunError(404, 'ContainerNotFound', `Container ${ident} could not be found.`);
    if (rows.length > 1)
      throw zunError(
        409,
        'Conflict',
        'Multiple containers exist with same name. Please use the container uuid instead.',
      );
    return rows[0];
  }

  /**
   * Containers of a project (every project when `projectId` is null) whose columns equal `filters`, ordered by
   * `order.column` then uuid.
   */
  async list(
    projectId: string | null,
    filters: Record<string, string | number>,
    order: { column: string; sortDir: 'asc' | 'desc' },
  ): Promise<ContainerRow[]> {
    let sel = this.db.selectFrom('containers').selectAll();
    if (projectId !== null) sel = sel.where('project_id', '=', projectId);
    for (const [f, v] of Object.entries(filters)) sel = sel.where(f as 'name', '=', v as string);
    return sel
      .orderBy(order.column as 'created_at', order.sortDir)
      .orderBy('uuid', order.sortDir)
      .execute();
  }

  /** What the event stream compares between two reads: status fields of a project's (or every) container. */
  statusSnapshot(projectId: string | null) {
    let q = this.db
      .selectFrom('containers')
      .select(['uuid', 'name', 'project_id', 'status', 'task_state', 'status_reason', 'exit_code']);
    if (projectId !== null) q = q.where('project_id', '=', projectId);
    return q.execute();
  }

  async get(uuid: string): Promise<ContainerRow | undefined> {
    return this.db.selectFrom('containers').selectAll().where('uuid', '=', uuid).executeTakeFirst();
  }

  async insert(row: ContainerRow): Promise<void> {
    await this.db.insertInto('containers').values(row).execute();
    this.changed(row.uuid);
  }

  async update(uuid: string, values: Partial<ContainerRow>): Promise<void> {
    await this.db
      .updateTable('containers')
      .set({ ...values, updated_at: new Date().toISOString() })
      .where('uuid', '=', uuid)
      .execute();
    this.changed(uuid);
  }

  async remove(uuid: string): Promise<void> {
    await this.db.deleteFrom('container_published_ports').where('container_uuid', '=', uuid).execute();
    await this.db.deleteFrom('containers').where('uuid', '=', uuid).execute();
    this.changed(uuid);
  }

  /**
   * Claims the container's published ports on its host; 409 when another container holds the same
   * address:port:protocol (or the port on 0.0.0.0 against an address, either way). The unique index refuses exact
   * duplicates atomically; overlaps with 0.0.0.0 are checked after the insert, so of two concurrent creates each
   * sees the other's claim (both may be refused, never both granted). Nothing stays claimed when it throws.
   */
  async claimPublishedPorts(
    c: Pick<ContainerRow, 'uuid' | 'project_id' | 'host'>,
    ports: PublishedPort[],
  ): Promise<void> {
    if (!ports.length || !c.host) return;
    const host = c.host;
    const taken = (p: PublishedPort) =>
      zunError(
        409,
        'Conflict',
        `Bind for ${p.hostIp}:${p.hostPort}/${p.protocol} failed: the port is already published by another container on host ${host}.`,
      );
    try {
      for (const p of ports) {
        try {
          await this.db
            .insertInto('container_published_ports')
            .values({
              container_uuid: c.uuid,
              project_id: c.project_id,
              host,
              host_ip: p.hostIp,
              host_port: p.hostPort,
              protocol: p.protocol,
              container_port: p.containerPort,
            })
            .execute();
        } catch (err) {
          if (isUniqueViolation(err)) throw taken(p);
          throw err;
        }
      }
      const others = await this.db
        .selectFrom('container_published_ports')
        .select(['host_ip', 'host_port', 'protocol', 'container_port'])
        .where('host', '=', host)
        .where('container_uuid', '!=', c.uuid)
        .where(
          'host_port',
          'in',
          ports.map((p) => p.hostPort),
        )
        .execute();
      for (const p of ports) {
        const o = others.find((r) =>
          portsOverlap(p, {
            hostIp: r.host_ip,
            hostPort: r.host_port,
            protocol: r.protocol as PublishedPort['protocol'],
            containerPort: r.container_port,
          }),
        );
        if (o) throw taken(p);
      }
    } catch (err) {
      await this.db.deleteFrom('container_published_ports').where('container_uuid', '=', c.uuid).execute();
      throw err;
    }
  }

  /** Tells this process' waiters (changes.ts). */
  changed(uuid: string): void {
    containerChanges(this.db).emit('change', uuid);
  }

  /** Sets fields only if the container is still in `fromStatus` (a compare-and-set against concurrent requests). */
  async transition(uuid: string, fromStatus: readonly string[], values: Partial<ContainerRow>): Promise<boolean> {
    const res = await this.db
      .updateTable('containers')
      .set({ ...values, updated_at: new Date().toISOString() })
      .where('uuid', '=', uuid)
      .where('status', 'in', [...fromStatus])
      .executeTakeFirst();
    const done = Number(res.numUpdatedRows) > 0;
    if (done) this.changed(uuid);
    return done;
  }

  // ---- actions (what `container_actions` shows)

  async startAction(
    c: Pick<ContainerRow, 'uuid'>,
    action: string,
    requestId: string,
    userId: string,
    projectId: string,
  ): Promise<number> {
    const row = await this.db
      .insertInto('container_actions')
      .values({
        action,
        container_uuid: c.uuid,
        request_id: requestId,
        user_id: userId,
        project_id: projectId,
        start_time: new Date().toISOString(),
        finish_time: null,
        message: null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
  }

  async finishAction(actionId: number, event: string, error?: string, startedAt?: string): Promise<void> {
    const now = new Date().toISOString();
    await this.db
      .updateTable('container_actions')
      .set({ finish_time: now, message: error ? 'Error' : null })
      .where('id', '=', actionId)
      .execute();
    await this.db
      .insertInto('container_action_events')
      .values({
        action_id: actionId,
        event,
        start_time: startedAt ?? now,
        finish_time: now,
        result: error ? 'Error' : 'Success',
        traceback: error ?? null,
      })
      .execute();
  }

  /** The action a request started on a container (by the request's id). */
  async findAction(uuid: string, requestId: string) {
    return this.db
      .selectFrom('container_actions')
      .selectAll()
      .where('container_uuid', '=', uuid)
      .where('request_id', '=', requestId)
      .executeTakeFirst();
  }

  /** Whether an action has finished (true for one that no longer exists). */
  async actionFinished(actionId: number): Promise<boolean> {
    const a = await this.db
      .selectFrom('container_actions')
      .select('finish_time')
      .where('id', '=', actionId)
      .executeTakeFirst();
    return !a || !!a.finish_time;
  }

  /** A container's actions, newest first. */
  async listActions(uuid: string) {
    return this.db
      .selectFrom('container_actions')
      .selectAll()
      .where('container_uuid', '=', uuid)
      .orderBy('id', 'desc')
      .execute();
  }

  /** The events of an action, in order. */
  async actionEvents(actionId: number) {
    return this.db
      .selectFrom('container_action_events')
      .selectAll()
      .where('action_id', '=', actionId)
      .orderBy('id')
      .execute();
  }

  // ---- hosts

  async hostExists(hostname: string): Promise<boolean> {
    return !!(await this.db
      .selectFrom('compute_hosts')
      .select('uuid')
      .where('hostname', '=', hostname)
      .executeTakeFirst());
  }

  // ---- agent tasks

  async enqueue(
    host: string,
    uuid: string,
    action: string,
    params: Record<string, unknown>,
    actionId: number | null,
  ): Promise<void> {
    await this.db
      .insertInto('agent_tasks')
      .values({
        host,
        container_uuid: uuid,
        action,
        params: JSON.stringify(params),
        action_id: actionId,
        state: 'pending',
        created_at: new Date().toISOString(),
      })
      .execute();
  }

  // ---- quotas

  async quotaLimits(projectId: string): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('quotas')
      .selectAll()
      .where('scope', 'in', [`project:${projectId}`, 'class:default'])
      .execute();
    const limits = { ...QUOTA_DEFAULTS };
    for (const r of rows.filter((r) => r.scope === 'class:default')) limits[r.resource] = r.hard_limit;
    for (const r of rows.filter((r) => r.scope !== 'class:default')) limits[r.resource] = r.hard_limit;
    return limits;
  }

  /** The limits set for one scope (`project:<id>`, `class:<name>`), without defaults. */
  async quotaScope(scope: string): Promise<Record<string, number>> {
    const rows = await this.db.selectFrom('quotas').selectAll().where('scope', '=', scope).execute();
    return Object.fromEntries(rows.map((r) => [r.resource, r.hard_limit]));
  }

  async setQuotas(scope: string, limits: Array<{ resource: string; limit: number }>): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      for (const { resource, limit } of limits) {
        await trx.deleteFrom('quotas').where('scope', '=', scope).where('resource', '=', resource).execute();
        await trx.insertInto('quotas').values({ scope, resource, hard_limit: limit }).execute();
      }
    });
  }

  async deleteQuotas(scope: string): Promise<void> {
    await this.db.deleteFrom('quotas').where('scope', '=', scope).execute();
  }

  async quotaUsage(projectId: string): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom('containers')
      .select(['cpu', 'memory', 'disk'])
      .where('project_id', '=', projectId)
      .execute();
    const published = await this.db
      .selectFrom('container_published_ports')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('project_id', '=', projectId)
      .executeTakeFirst();
    return {
      published_ports: Number(published?.n ?? 0),
      containers: rows.length,
      cpu: Math.round(rows.reduce((s, r) => s + r.cpu, 0) * 1000) / 1000,
      memory: rows.reduce((s, r) => s + memoryMiB(r), 0),
      disk: rows.reduce((s, r) => s + (r.disk ?? 0), 0),
    };
  }

  /**
   * 403 when adding `delta` would exceed the project's quota (−1 = unlimited). With `included`, the delta is already in the store
   * (a row written first): the check then counts it once. Writing first and checking after makes concurrent
   * creates safe without a lock — each sees the others' rows; one that finds the sum over removes its own.
   */
  async checkQuota(projectId: string, delta: Record<string, number>, opts: { included?: boolean } = {}): Promise<void> {
    const [limits, usage] = await Promise.all([this.quotaLimits(projectId), this.quotaUsage(projectId)]);
    const over = Object.entries(delta)
      .filter(([res, d]) => d > 0 && limits[res] >= 0 && usage[res] + (opts.included ? 0 : d) > limits[res])
      .map(([res]) => res);
    if (over.length) throw zunError(403, 'OverQuota', `Quota exceeded for resources: ['${over.join("', '")}']`);
  }

  // ---- agent tasks on host images

  /** Queues an `image_pull` / `image_delete` of a `zun_images` row for its host's agent (a task whose subject is the image). */
  async enqueueImageTask(host: string, imageUuid: string, action: 'image_pull' | 'image_delete'): Promise<void> {
    await this.db
      .insertInto('agent_tasks')
      .values({
        host,
        kind: 'image',
        container_uuid: null,
        image_uuid: imageUuid,
        action,
        params: '{}',
        action_id: null,
        state: 'pending',
        created_at: new Date().toISOString(),
      })
      .execute();
  }
}
