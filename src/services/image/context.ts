import type { FastifyRequest } from 'fastify';
import { policyCredentials } from '../../core/auth/context.js';
import { ApiError } from '../../core/http/errors.js';
import type { CoreContext } from '../../core/http/server.js';
import type { ImageRow } from '../../core/store/schema.js';
import type { ImageDataStore } from './data-store.js';
import type { ImageRepo } from './repo.js';

/** Limits of the image service; each has an environment variable. */
export interface ImageSettings {
  /** Largest accepted upload (Glance's `image_size_cap`); KRATER_IMAGE_MAX_UPLOAD_BYTES, default 10 GiB. */
  maxUploadBytes: number;
  /** Image storage per project (Glance's `user_storage_quota`); KRATER_IMAGE_QUOTA_BYTES, default unlimited. */
  quotaBytes: number | null;
  /** Glance's `image_property_quota` and `image_tag_quota`. */
  maxProperties: number;
  maxTags: number;
  /** Glance's `limit_param_default` and `api_limit_max`. */
  defaultLimit: number;
  maxLimit: number;
}

function envBytes(name: string, fallback: number | null, env: NodeJS.ProcessEnv): number | null {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const t = raw.trim().toLowerCase();
  if (t === 'unlimited' || t === '-1') return null;
  const m = /^(\d+)\s*([kmgt]i?b?|b)?$/.exec(t);
  if (!m) throw new Error(`${name}: not a byte count: ${raw}`);
  const unit = m[2]?.[0] ?? 'b';
  const mult = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  return Number(m[1]) * mult;
}

export function imageSettings(env: NodeJS.ProcessEnv = process.env): ImageSettings {
  return {
    maxUploadBytes: envBytes('KRATER_IMAGE_MAX_UPLOAD_BYTES', 10 * 1024 ** 3, env) ?? Number.MAX_SAFE_INTEGER,
    quotaBytes: envBytes('KRATER_IMAGE_QUOTA_BYTES', null, env),
    maxProperties: 128,
    maxTags: 128,
    defaultLimit: 25,
    maxLimit: 1000,
  };
}

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
