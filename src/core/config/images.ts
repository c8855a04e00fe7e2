/**
 * Images: Glance's limits and the registries pulls reach over plain HTTP.
 *
 * - KRATER_IMAGE_MAX_UPLOAD_BYTES (10 GiB; suffixes k, m, g, t): largest accepted upload (Glance's `image_size_cap`);
 * - KRATER_IMAGE_QUOTA_BYTES (unlimited): image storage per project (Glance's `user_storage_quota`);
 * - KRATER_INSECURE_REGISTRIES: registries spoken to over HTTP besides loopback (comma or space separated).
 */
import { bytesVar, type Env, listVar } from './values.js';

/** Limits of the image service. */
export interface ImageSettings {
  maxUploadBytes: number;
  quotaBytes: number | null;
  /** Glance's `image_property_quota` and `image_tag_quota`. */
  maxProperties: number;
  maxTags: number;
  /** Glance's `limit_param_default` and `api_limit_max`. */
  defaultLimit: number;
  maxLimit: number;
}

export function imageSettings(env: Env): ImageSettings {
  return {
    maxUploadBytes: bytesVar(env, 'KRATER_IMAGE_MAX_UPLOAD_BYTES', 10 * 1024 ** 3) ?? Number.MAX_SAFE_INTEGER,
    quotaBytes: bytesVar(env, 'KRATER_IMAGE_QUOTA_BYTES', null),
    maxProperties: 128,
    maxTags: 128,
    defaultLimit: 25,
    maxLimit: 1000,
  };
}

/** `KRATER_INSECURE_REGISTRIES` as host[:port] entries (a scheme or trailing slash is dropped). */
export function insecureRegistries(env: Env): string[] {
  return listVar(env, 'KRATER_INSECURE_REGISTRIES', /[\s,]+/).map((s) =>
    s.replace(/^https?:\/\//, '').replace(/\/+$/, ''),
  );
}
