/**
 * Zun's container operations as in-process calls: what `POST /containers`, `DELETE`, the actions, `PATCH` and the
 * long-poll wait do, for the Zun facade and for every other caller in the process (the dashboard, controllers,
 * tests). Policy (oslo rules) is the caller's business: the facade enforces it before calling; the API enforces the
 * domain's rules (project scope, quota, VALID_STATES, scheduling, host-port claims) and throws `ComputeError`s.
 */
import { randomUUID } from 'node:crypto';
import type { ContainerRow } from '../core/store/schema.js';
import type { AgentDirectory } from './agent-port.js';
import { changeOrTimeout } from './changes.js';
import { computeError } from './errors.js';
import { type Container, type ContainerSpec, decodeContainer, encodeLimits, newContainerRow } from './model.js';
import { allocateForNewContainer, type ContainerNetworking } from './networking.js';
import { type OwnerRef, validOwnerRef } from './ownership.js';
import { placeContainer } from './placement.js';
import type { ContainerRepo } from './repo.js';
import type { WeigherName } from './scheduler.js';
import { canDo, invalidStateMessage, Status, VALID_STATES } from './states.js';

/** Who asks. `requestId` becomes the action record's request id (Zun shows it as the response's). */
export interface Actor {
  projectId: string | undefined;
  userId: string;
  roles: string[];
  isAdmin: boolean;
  requestId?: string;
}

export interface CreateRequest {
  spec: ContainerSpec;
  /** Start it once created (`run`). */
  run?: boolean;
  /** Only this host (`host`, admin). */
  host?: string;
  /** The object this container belongs to (a capsule, a cluster): deleted with it (compute/ownership.ts). */
  owner?: OwnerRef;
}

/** The asynchronous actions and their parameters (Zun's `POST /containers/{id}/<action>`). */
export type ActionRequest =
  | { action: 'start' }
  | { action: 'stop'; timeout?: number }
  | { action: 'reboot'; timeout?: number }
  | { action: 'pause' }
  | { action: 'unpause' }
  | { action: 'kill'; signal?: string }
  | { action: 'rebuild'; image?: string; imageDriver?: 'docker' | 'glance' };

export interface UpdateRequest {
  name?: string;
  autoHeal?: boolean;
  cpu?: number;
  memoryMiB?: number;
}

export interface WaitRequest {
  /** Statuses to wait for (with no task in flight); none: until no task is in flight. */
  statuses?: string[];
  /** Also until this action (by request id) has finished. */
  requestId?: string;
  timeoutMs: number;
  /** Stop waiting early (the client went away). */
  cancelled?: () => boolean;
}

const WAIT_POLL_MS = 50;

/** A container named by the caller: a uuid or name (looked up in the actor's project), or a row already loaded. */
export type ContainerRef = string | ContainerRow;

export class ContainerApi {
  constructor(
    readonly repo: ContainerRepo,
    private readonly agents: AgentDirectory,
    /** Neutron ports of containers; absent when Krater runs without networking. */
    readonly networking?: ContainerNetworking,
    /** How hosts that fit are weighed (KRATER_SCHEDULER_WEIGHER). */
    private readonly weigher: WeigherName = 'spread',
  ) {}

  /** A container of the actor's project (any project for admins); 404 otherwise. */
  async get(actor: Actor, ident: string): Promise<Container> {
    return decodeContainer(await this.repo.find(ident, actor.projectId, actor.isAdmin));
  }

  private async load(actor: Actor, ref: ContainerRef): Promise<ContainerRow> {
    return typeof ref === 'string' ? this.repo.find(ref, actor.projectId, actor.isAdmin) : ref;
  }

  /**
   * Creates a container in the actor's project: quota, synchronous scheduling (the best host, by the weigher, that
   * passes Zun's filters and has room, claimed in the transaction that inserts the row, Creating), Neutron ports
   * bound to that host, the host-port claims, the `create` action and the agent's task. No host: the container is kept in Error ("There are not enough hosts available."), as Zun does.
   */
  async create(actor: Actor, req: CreateRequest): Promise<Container> {
    if (!actor.projectId)
      throw computeError(403, 'PolicyNotAuthorized', 'A project-scoped token is required to create containers.');
    const published = req.spec.publishedPorts ?? [];
    if (published.length && !this.networking)
      throw computeError(
        400,
        'InvalidValue',
        'Published ports need tenant networking (this Krater runs with KRATER_NETWORKING=none).',
      );
    const row = newContainerRow(req.spec, { projectId: actor.projectId, userId: actor.userId }, randomUUID());
    if (req.owner) {
      if (!validOwnerRef(req.owner)) throw computeError(400, 'InvalidValue', 'Invalid owner reference.');
      row.owner_kind = req.owner.kind;
      row.owner_id = req.owner.id;
    }
    const { limits } = decodeContainer(row);
    const quotaDelta = {
      containers: 1,
      cpu: limits.cpu,
      memory: limits.memoryMiB,
      disk: limits.diskGiB ?? 0,
      published_ports: published.length,
    };
    await this.repo.checkQuota(row.project_id, quotaDelta);
    if (req.host && !(await this.repo.hostExists(req.host)))
      throw computeError(404, 'RequestedHostNotFound', `Requested host ${req.host} does not exist.`);
    row.desired = req.run ? 'running' : 'stopped';
    // The claim and the row commit together (compute/placement.ts): concurrent creates never over-book a host.
    const host = await placeContainer(
      this.repo.db,
      await this.agents.schedulableHosts(),
      {
        cpu: limits.cpu,
        memoryMb: limits.memoryMiB,
        availabilityZone: row.availability_zone,
        runtime: row.runtime,
        host: req.host,
      },
      this.weigher,
      row,
    );
    if (host) this.repo.changed(row.uuid);
    else {
      row.status = Status.Error;
      row.status_reason = 'There are not enough hosts available.';
      await this.repo.insert(row);
    }
    // Ports are bound to the chosen host, so they follow the placed row; failing, the row goes (and its claim).
    let undoNetwork: (() => Promise<void>) | undefined;
    if (this.networking && host) {
      try {
        undoNetwork = await allocateForNewContainer(
          this.networking,
          { projectId: row.project_id, userId: actor.userId, isAdmin: actor.isAdmin },
          row,
        );
        await this.repo.update(row.uuid, { addresses: row.addresses, security_groups: row.security_groups });
      } catch (err) {
        await undoNetwork?.().catch(() => undefined);
        await this.repo.remove(row.uuid);
        throw err;
      }
    }
    // Concurrent creates all passed the first check: now that this row counts, check again (see checkQuota).
    try {
      await this.repo.claimPublishedPorts(row, published);
      await this.repo.checkQuota(row.project_id, quotaDelta, { included: true });
    } catch (err) {
      await this.repo.remove(row.uuid);
      await undoNetwork?.().catch(() => undefined);
      throw err;
    }
    const actionId = await this.repo.startAction(row, 'create', requestId(actor), actor.userId, row.project_id);
    if (host) {
      await this.repo.enqueue(host, row.uuid, 'create', { run: !!req.run }, actionId);
      this.agents.wake(host);
    } else {
      await this.repo.finishAction(actionId, 'compute__do_container_create', row.status_reason!);
    }
    return decodeContainer(row);
  }

  /**
   * Deletes a container: at once when it never got a host, else it goes to Deleting and its host's agent removes
   * it (`force`: in any status; `stop`: a running one is stopped first).
   */
  async delete(actor: Actor, ref: ContainerRef, opts: { force?: boolean; stop?: boolean } = {}): Promise<void> {
    const c = await this.load(actor, ref);
    const check = opts.force ? 'delete_force' : opts.stop ? 'delete_after_stop' : 'delete';
    if (!canDo(check, c.status))
      throw computeError(409, 'InvalidStateException', invalidStateMessage('delete', c.uuid, c.status));
    if (!c.host) {
      await this.networking?.releaseAll(c);
      await this.repo.remove(c.uuid);
      return;
    }
    const ok = await this.repo.transition(c.uuid, VALID_STATES[check], {
      status: Status.Deleting,
      task_state: 'container_deleting',
      desired: 'deleted',
    });
    if (!ok)
      throw computeError(
        409,
        'InvalidStateException',
        invalidStateMessage('delete', c.uuid, (await this.repo.get(c.uuid))?.status ?? 'Deleted'),
      );
    await this.dispatch(actor, c, 'delete', 'delete', { force: !!opts.force, stop: !!opts.stop });
  }

  /** An asynchronous action (start, stop, reboot, pause, unpause, kill, rebuild): state check, record, task. */
  async action(actor: Actor, ref: ContainerRef, req: ActionRequest): Promise<void> {
    const c = await this.load(actor, ref);
    const { action } = req;
    if (!canDo(action, c.status))
      throw computeError(409, 'InvalidStateException', invalidStateMessage(action, c.uuid, c.status));
    let params: Record<string, unknown> = {};
    let patch: Partial<ContainerRow> | undefined;
    switch (req.action) {
      case 'stop':
        params = { timeout: req.timeout ?? 10 };
        break;
      case 'reboot':
        params = { timeout: req.timeout ?? 10 };
        patch = { status: Status.Restarting };
        break;
      case 'kill':
        params = { signal: req.signal ?? 'SIGKILL' };
        break;
      case 'rebuild':
        patch = { status: Status.Rebuilding };
        if (req.image !== undefined) patch.image = req.image;
        if (req.imageDriver !== undefined) patch.image_driver = req.imageDriver;
        params = { wasRunning: c.status === Status.Running };
        break;
    }
    if (patch && !(await this.repo.transition(c.uuid, VALID_STATES[action], patch)))
      throw computeError(409, 'InvalidStateException', invalidStateMessage(action, c.uuid, c.status));
    await this.dispatch(actor, c, action, action, params);
  }

  /**
   * Renames and changes `auto_heal`, `cpu` and `memory` (`resize_container`: the same without the quota check, as
   * Zun); new limits reach a running task through its host's agent.
   */
  async update(
    actor: Actor,
    ref: ContainerRef,
    req: UpdateRequest,
    action: 'update' | 'resize_container' = 'update',
  ): Promise<Container> {
    const c = await this.load(actor, ref);
    const current = decodeContainer(c);
    const patch: Partial<ContainerRow> = {
      ...encodeLimits({ cpu: req.cpu, memoryMiB: req.memoryMiB }),
    };
    if (req.name !== undefined) patch.name = req.name;
    if (req.autoHeal !== undefined) patch.auto_heal = req.autoHeal ? 1 : 0;
    const resized = req.cpu !== undefined || req.memoryMiB !== undefined;
    if (resized) {
      if (!canDo(action, c.status))
        throw computeError(409, 'InvalidStateException', invalidStateMessage(action, c.uuid, c.status));
      if (action === 'update')
        await this.repo.checkQuota(c.project_id, {
          cpu: (req.cpu ?? current.limits.cpu) - current.limits.cpu,
          memory: (req.memoryMiB ?? current.limits.memoryMiB) - current.limits.memoryMiB,
        });
    }
    await this.repo.update(c.uuid, patch);
    if (resized && c.host) {
      await this.repo.enqueue(c.host, c.uuid, 'update_resources', {}, null);
      this.agents.wake(c.host);
    }
    const now = await this.repo.get(c.uuid);
    if (!now) throw computeError(404, 'ContainerNotFound', `Container ${c.uuid} could not be found.`);
    return decodeContainer(now);
  }

  /**
   * Waits until the container matches (a status among `statuses` with no task in flight; the action of
   * `requestId` finished) or the time is up; a container that goes away is a 404.
   */
  async wait(actor: Actor, ref: ContainerRef, req: WaitRequest): Promise<{ container: Container; matched: boolean }> {
    let c = await this.load(actor, ref);
    const statuses = req.statuses ?? [];
    let actionId: number | undefined;
    if (req.requestId !== undefined) {
      const a = await this.repo.findAction(c.uuid, req.requestId);
      if (!a)
        throw computeError(
          404,
          'ResourceNotFound',
          `Action ${req.requestId} on container ${c.uuid} could not be found.`,
        );
      actionId = a.id;
    }
    const deadline = Date.now() + req.timeoutMs;
    const matches = async (row: ContainerRow) => {
      if (statuses.length && !(statuses.includes(row.status) && row.task_state === null)) return false;
      if (!statuses.length && actionId === undefined && row.task_state !== null) return false;
      if (actionId !== undefined && !(await this.repo.actionFinished(actionId))) return false;
      return true;
    };
    let matched = await matches(c);
    while (!matched && !req.cancelled?.() && Date.now() < deadline) {
      await changeOrTimeout(this.repo.db, c.uuid, Math.min(WAIT_POLL_MS, Math.max(0, deadline - Date.now())));
      const row = await this.repo.get(c.uuid);
      if (!row) throw computeError(404, 'ContainerNotFound', `Container ${c.uuid} could not be found.`);
      c = row;
      matched = await matches(c);
    }
    return { container: decodeContainer(c), matched };
  }

  /** Records the action (its request id is the actor's) and hands the work to the container's host's agent. */
  async dispatch(
    actor: Actor,
    c: ContainerRow,
    action: string,
    task: string,
    taskParams: Record<string, unknown> = {},
  ): Promise<void> {
    const actionId = await this.repo.startAction(
      c,
      action,
      requestId(actor),
      actor.userId,
      actor.projectId ?? c.project_id,
    );
    if (!c.host) {
      await this.repo.finishAction(actionId, `compute__do_container_${action}`, 'Container has no host.');
      throw computeError(500, 'ContainerHostNotUp', `Container ${c.uuid} is not scheduled on any host.`);
    }
    await this.repo.enqueue(c.host, c.uuid, task, taskParams, actionId);
    this.agents.wake(c.host);
  }
}

const requestId = (actor: Actor) => actor.requestId ?? `req-${randomUUID()}`;
