import type { FastifyRequest } from 'fastify';
import type { AgentDirectory, AgentRpc } from '../../agent/rpc.js';
import { policyCredentials } from '../../core/auth/context.js';
import type { CoreContext } from '../../core/http/server.js';
import type { Version } from '../../core/http/microversion.js';
import type { ContainerRow } from '../../core/store/schema.js';
import { zunError } from './params.js';
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
}

const creds = (req: FastifyRequest) => policyCredentials(req.auth);

export function authorize(zx: ZunContext, req: FastifyRequest, action: string, target: Record<string, unknown>): void {
  if (!zx.core.policy.enforce(action, target, creds(req))) throw zunError(403, 'PolicyNotAuthorized', `Policy doesn't allow ${action} to be performed.`);
}

export function allowed(zx: ZunContext, req: FastifyRequest, action: string, target: Record<string, unknown>): boolean {
  return zx.core.policy.enforce(action, target, creds(req));
}

export function view(zx: ZunContext, req: FastifyRequest, c: ContainerRow) {
  return renderContainer(c, zx.base, (field) => allowed(zx, req, `container:get_one:${field}`, c as unknown as Record<string, unknown>));
}

export function checkState(c: ContainerRow, action: string): void {
  if (!canDo(action, c.status)) throw zunError(409, 'InvalidStateException', invalidStateMessage(action, c.uuid, c.status));
}

/** The agent of the container's host; a container without a host (or a host without an agent) cannot be reached. */
export function agentFor(zx: ZunContext, c: ContainerRow): AgentRpc {
  const agent = c.host ? zx.agents.forHost(c.host) : undefined;
  if (!agent) throw zunError(500, 'ContainerHostNotUp', `Container ${c.uuid}'s host ${c.host ?? '(none)'} is not up.`);
  return agent;
}
