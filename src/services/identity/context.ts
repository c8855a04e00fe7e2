import type { FastifyRequest } from 'fastify';
import { policyCredentials } from '../../core/auth/context.js';
import { forbidden } from '../../core/http/errors.js';
import type { CoreContext } from '../../core/http/server.js';
import type { Target } from '../../core/policy/engine.js';
import type { IdentityRepo } from './repo.js';
import type { IdentityRepos } from './repos/index.js';
import type { TokenService } from './tokens.js';

/** What identity's route modules share: the core, the cached reads (`repo`) and the repositories by resource. */
export interface IdentityContext extends IdentityRepos {
  core: CoreContext;
  repo: IdentityRepo;
  tokens: TokenService;
  /** `<public url>/identity/v3` */
  base: string;
}

export function authorize(ix: IdentityContext, req: FastifyRequest, action: string, target: Target = {}): void {
  if (!ix.core.policy.enforce(action, target, policyCredentials(req.auth))) {
    throw forbidden(`You are not authorized to perform the requested action: ${action}.`);
  }
}

/** `{ self }` links for one resource and list links for a collection. */
export const selfLink = (ix: IdentityContext, path: string) => ({ self: `${ix.base}/${path}` });
export const listLinks = (ix: IdentityContext, path: string) => ({
  self: `${ix.base}/${path}`,
  previous: null,
  next: null,
});

/** Keystone's boolean query parsing: anything but 0/false/no/off (case-insensitive) is true, and a bare key is true. */
export function queryBool(v: unknown): boolean | undefined {
  if (v === undefined) return undefined;
  return !['0', 'false', 'no', 'off', 'n', 'f'].includes(String(v).toLowerCase());
}
