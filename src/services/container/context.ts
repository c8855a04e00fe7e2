import type { FastifyRequest } from 'fastify';
import type { AgentDirectory, AgentRpc } from '../../compute/agent-port.js';
import type { Actor, ContainerApi } from '../../compute/container-api.js';
import { hostErrorToCompute, isHostFailure, toHostError } from '../../compute/host-errors.js';
import type { HostRepo } from '../../compute/hosts.js';
import type { RegistryRepo, ZunImageRepo } from '../../compute/image-records.js';
import { decodeContainer } from '../../compute/model.js';
import type { ContainerNetworking } from '../../compute/networking.js';
import type { ContainerRepo } from '../../compute/repo.js';
import { canDo, invalidStateMessage } from '../../compute/states.js';
import type { ZunNetworkRepo } from '../../compute/zun-networks.js';
import { policyCredentials } from '../../core/auth/context.js';
import type { Version } from '../../core/http/microversion.js';
import type { CoreContext } from '../../core/http/server.js';
import type { ContainerRow } from '../../core/store/schema.js';
import type { GlancePort } from '../../images/glance-port.js';
import { parseBool, zunError } from './params.js';
import { renderContainer } from './view.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The negotiated Zun microversion (set on every /v1 route). */
    zunVersion: Version;
  }
}

export interface ZunContext {
  core: CoreContext;
  repo: ContainerRepo;
  /** Hosts and their `zun-compute` services (the admin API). */
  hosts: HostRepo;
  /** Zun's image records (`/v1/images`) and registries. */
  images: ZunImageRepo;
  registries: RegistryRepo;
  /** Neutron networks registered through `/v1/networks`. */
  zunNetworks: ZunNetworkRepo;
  /** The container operations (create, delete, actions, update, wait) the routes call after their policy checks. */
  api: ContainerApi;
  agents: AgentDirectory;
  /** The image service, in-process: Glance images for search and commits. */
  glance: GlancePort;
  /** `<public url>/container` */
  base: string;
  /** Where exec and attach WebSockets connect: `ws://<public host>/container/ws`. */
  wsBase: string;
  /** Neutron ports and security groups of containers; absent when Krater runs without networking. */
  networking?: ContainerNetworking;
}

const creds = (req: FastifyRequest) => policyCredentials(req.auth);

/** The caller as the container API sees it; the action records carry this request's id. */
export function actorOf(req: FastifyRequest): Actor {
  const { projectId, userId, roles, isAdmin } = req.auth;
  return { projectId, userId, roles, isAdmin, requestId: req.id };
}

export function authorize(zx: ZunContext, req: FastifyRequest, action: string, target: Record<string, unknown>): void {
  if (!zx.core.policy.enforce(action, target, creds(req)))
    throw zunError(403, 'PolicyNotAuthorized', `Policy doesn't allow ${action} to be performed.`);
}

/**
 * Looks a container up as every container route does (Zun's `get_container` under `all_projects`): `all_projects`
 * needs `container:get_one_all_projects` first (refused before any lookup, so the answer never depends on what
 * exists), the lookup is scoped to the caller's project unless it is widened (admins, `all_projects`), then
 * `container:<action>` is checked against the container.
 */
export async function loadContainer(zx: ZunContext, req: FastifyRequest, action: string): Promise<ContainerRow> {
  const allProjects = parseBool('all_projects', (req.query as Record<string, unknown>).all_projects);
  if (allProjects) authorize(zx, req, 'container:get_one_all_projects', { project_id: req.auth.projectId });
  const id = (req.params as { id: string }).id;
  const c = await zx.repo.find(id, req.auth.projectId, allProjects || req.auth.isAdmin);
  authorize(zx, req, `container:${action}`, c as unknown as Record<string, unknown>);
  return c;
}

export function allowed(zx: ZunContext, req: FastifyRequest, action: string, target: Record<string, unknown>): boolean {
  return zx.core.policy.enforce(action, target, creds(req));
}

/**
 * Zun's per-field rules (`container:get_one:<field>`, `registry:get_one:<field>`): a field without a rule is
 * visible and filterable; a rule that exists decides.
 */
export function fieldAllowed(
  zx: ZunContext,
  req: FastifyRequest,
  rule: string,
  target: Record<string, unknown>,
): boolean {
  return zx.core.policy.ruleText(rule) === undefined || allowed(zx, req, rule, target);
}

export function view(zx: ZunContext, req: FastifyRequest, row: ContainerRow) {
  return renderContainer(decodeContainer(row), zx.base, (field) =>
    fieldAllowed(zx, req, `container:get_one:${field}`, row as unknown as Record<string, unknown>),
  );
}

export function checkState(c: ContainerRow, action: string): void {
  if (!canDo(action, c.status))
    throw zunError(409, 'InvalidStateException', invalidStateMessage(action, c.uuid, c.status));
}

/** An engine (host) error as Zun's envelope (`notFoundClass`: the exception class of a 404, e.g. `ImageNotFound`). */
export const engineErrorToZun = hostErrorToCompute;

/** Whether an error came from the engine or containerd (and so has an engine kind), rather than from Krater. */
export const isEngineFailure = isHostFailure;

/**
 * Calls the agent of the container's host; a container without a reachable host is a 500 (Zun's
 * ContainerHostNotUp), and engine errors become Zun's codes instead of bare 500s: containerd unavailable → 503,
 * and a task that stopped under the call (exec/top/stats racing a stop or kill) → 409 "Cannot <action> container
 * <uuid> in <state> state." as Zun says when the state check fails.
 */
export async function callAgent<T>(
  zx: ZunContext,
  c: ContainerRow,
  fn: (agent: AgentRpc) => Promise<T>,
  action?: string,
): Promise<T> {
  const agent = c.host ? await zx.agents.forHost(c.host) : undefined;
  if (!agent) throw zunError(500, 'ContainerHostNotUp', `Container ${c.uuid}'s host ${c.host ?? '(none)'} is not up.`);
  try {
    return await fn(agent);
  } catch (err) {
    if (!isEngineFailure(err)) throw err;
    const e = toHostError(err);
    if (e.code === 'conflict' && action) {
      const now = await zx.repo.get(c.uuid);
      if (!now) throw zunError(404, 'ContainerNotFound', `Container ${c.uuid} could not be found.`);
      // The row may not show the exit yet (the agent records it a moment later); the engine already saw it.
      const state = now.status === c.status && c.status === 'Running' ? 'Stopped' : now.status;
      throw zunError(409, 'InvalidStateException', invalidStateMessage(action, c.uuid, state));
    }
    throw engineErrorToZun(e);
  }
}
