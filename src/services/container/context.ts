import type { FastifyRequest } from 'fastify';
import type { AgentDirectory, AgentRpc } from '../../agent/rpc.js';
import { policyCredentials } from '../../core/auth/context.js';
import type { Version } from '../../core/http/microversion.js';
import type { CoreContext } from '../../core/http/server.js';
import type { ContainerRow } from '../../core/store/schema.js';
import { EngineError } from '../../engine/engine.js';
import type { ContainerNetworking } from './networking.js';
import { parseBool, zunError } from './params.js';
import type { ContainerRepo } from './repo.js';
import { canDo, invalidStateMessage } from './states.js';
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
  agents: AgentDirectory;
  /** `<public url>/container` */
  base: string;
  /** Where exec and attach WebSockets connect: `ws://<public host>/container/ws`. */
  wsBase: string;
  /** Neutron ports and security groups of containers; absent when Krater runs without networking. */
  networking?: ContainerNetworking;
}

const creds = (req: FastifyRequest) => policyCredentials(req.auth);

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

export function view(zx: ZunContext, req: FastifyRequest, c: ContainerRow) {
  return renderContainer(c, zx.base, (field) =>
    fieldAllowed(zx, req, `container:get_one:${field}`, c as unknown as Record<string, unknown>),
  );
}

export function checkState(c: ContainerRow, action: string): void {
  if (!canDo(action, c.status))
    throw zunError(409, 'InvalidStateException', invalidStateMessage(action, c.uuid, c.status));
}

/**
 * Calls the agent of the container's host; a container without a reachable host is a 500 (Zun's
 * ContainerHostNotUp), and engine errors become Zun's codes instead of bare 500s.
 */
export async function callAgent<T>(zx: ZunContext, c: ContainerRow, fn: (agent: AgentRpc) => Promise<T>): Promise<T> {
  const agent = c.host ? await zx.agents.forHost(c.host) : undefined;
  if (!agent) throw zunError(500, 'ContainerHostNotUp', `Container ${c.uuid}'s host ${c.host ?? '(none)'} is not up.`);
  try {
    return await fn(agent);
  } catch (err) {
    if (err instanceof EngineError) {
      const status = { not_found: 404, conflict: 409, invalid: 400, failed: 500 }[err.code];
      throw zunError(
        status,
        status === 404 ? 'NotFound' : status === 409 ? 'Conflict' : status === 400 ? 'Invalid' : 'DockerError',
        err.message,
      );
    }
    throw err;
  }
}
