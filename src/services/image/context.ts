import type { FastifyRequest } from 'fastify';
import { policyCredentials } from '../../core/auth/context.js';
import type { ImageSettings } from '../../core/config/images.js';
import { ApiError } from '../../core/http/errors.js';
import type { CoreContext } from '../../core/http/server.js';
import type { ImageRow } from '../../core/store/schema.js';
import type { ImageDataStore } from './data-store.js';
import type { ImageRepo } from './repo.js';

/** What the image service's route modules share. */
export interface ImageContext {
  core: CoreContext;
  repo: ImageRepo;
  data: ImageDataStore;
  settings: ImageSettings;
  /** `<public url>/image` */
  base: string;
}

/** Glance's errors carry only a status and a message (the envelope is the webob error page). */
export const glanceError = (status: number, message: string, headers: Record<string, string> = {}) =>
  new ApiError(status, message, undefined, headers);

export function allowed(
  ix: ImageContext,
  req: FastifyRequest,
  action: string,
  target: Record<string, unknown> = {},
): boolean {
  return ix.core.policy.enforce(action, target, policyCredentials(req.auth));
}

export function authorize(
  ix: ImageContext,
  req: FastifyRequest,
  action: string,
  target: Record<string, unknown> = {},
): void {
  if (!allowed(ix, req, action, target)) throw glanceError(403, `You are not authorized to complete ${action} action.`);
}

/** Glance's `context.is_admin`: the `context_is_admin` rule. */
export const isAdmin = (ix: ImageContext, req: FastifyRequest) => allowed(ix, req, 'context_is_admin');

/** Glance's ImageTarget: the policy target of an image (owner as `project_id`, caller's membership as `member_id`). */
export function imageTarget(img: ImageRow, memberId?: string): Record<string, unknown> {
  return {
    id: img.id,
    project_id: img.owner ?? undefined,
    owner: img.owner ?? undefined,
    visibility: img.visibility,
    member_id: memberId,
  };
}
