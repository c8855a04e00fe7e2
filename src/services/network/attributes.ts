/**
 * Request-body handling as Neutron's API layer does it (neutron-lib's RESOURCE_ATTRIBUTE_MAP): each resource
 * declares its attributes (allowed on POST / PUT, required, a validator that also converts), unknown attributes are
 * refused, and attributes with their own policy rule (`create_port:binding:host_id`) are checked when present.
 */

import type { NetContext, NeutronActor } from './context.js';
import { badRequest, invalidAttr } from './errors.js';
import { normalizeCidr, normalizeIp, normalizeMac, parseCidr } from './ipam.js';

export type Convert = (value: unknown, attr: string) => unknown;

export interface AttrSpec {
  post?: boolean;
  put?: boolean;
  required?: boolean;
  convert?: Convert;
  /** Has `create_<res>:<attr>` / `update_<res>:<attr>` rules. */
  policy?: boolean;
}

export type AttrMap = Record<string, AttrSpec>;

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

// ---- validators (each converts and throws Neutron's 400 on bad input)

export const str =
  (max = 255): Convert =>
  (v, a) => {
    if (typeof v !== 'string') throw invalidAttr(a, `'${show(v)}' is not a valid string`);
    if (v.length > max) throw invalidAttr(a, `'${v}' exceeds maximum length of ${max}`);
    return v;
  };

export const toBool: Convert = (v, a) => {
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  if (typeof v === 'string') {
    const l = v.toLowerCase();
    if (l === 'true' || l === '1') return true;
    if (l === 'false' || l === '0') return false;
  }
  throw invalidAttr(a, `'${show(v)}' cannot be converted to boolean`);
};

export const int =
  (min: number, max: number): Convert =>
  (v, a) => {
    const n = typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) throw invalidAttr(a, `'${show(v)}' is not an integer`);
    if (n < min) throw invalidAttr(a, `'${n}' is too small - must be at least '${min}'`);
    if (n > max) throw invalidAttr(a, `'${n}' is too large - must be no larger than '${max}'`);
    return n;
  };

export const nullable =
  (inner: Convert): Convert =>
  (v, a) =>
    v === null ? null : inner(v, a);

export const oneOf =
  (values: (string | null)[]): Convert =>
  (v, a) => {
    if (!values.includes(v as string))
      throw invalidAttr(a, `'${show(v)}' is not in ${JSON.stringify(values).replace(/"/g, "'").replace(/,/g, ', ')}`);
    return v;
  };

export const uuid: Convert = (v, a) => {
  if (typeof v !== 'string' || !/^[0-9a-fA-F-]{1,64}$/.test(v))
    throw invalidAttr(a, `'${show(v)}' is not a valid UUID`);
  return v;
};

export const ipAddress: Convert = (v, a) => {
  const n = normalizeIp(v);
  if (n === null) throw invalidAttr(a, `'${show(v)}' is not a valid IP address`);
  return n;
};

export const cidr: Convert = (v, a) => {
  const n = normalizeCidr(v);
  if (n === null || typeof v !== 'string' || !v.includes('/'))
    throw invalidAttr(a, `'${show(v)}' is not a valid IP subnet`);
  return n;
};

/** A subnet CIDR: host bits must be zero (Neutron suggests the network address). */
export const subnetCidr: Convert = (v, a) => {
  const c = parseCidr(v);
  if (!c || typeof v !== 'string' || !v.includes('/')) throw invalidAttr(a, `'${show(v)}' is not a valid IP subnet`);
  if (c.hostBits)
    throw invalidAttr(a, `'${v}' isn't a recognized IP subnet cidr, '${normalizeCidr(v)}' is recommended`);
  return normalizeCidr(v);
};

export const mac: Convert = (v, a) => {
  const m = normalizeMac(v);
  if (m === null) throw invalidAttr(a, `'${show(v)}' is not a valid MAC address`);
  return m;
};

export const list =
  (item?: Convert, max?: number): Convert =>
  (v, a) => {
    if (!Array.isArray(v)) throw invalidAttr(a, `'${show(v)}' is not a list`);
    if (max !== undefined && v.length > max)
      throw invalidAttr(a, `'${show(v)}' exceeds maximum number of items ${max}`);
    return item ? v.map((x) => item(x, a)) : v;
  };

export const dict: Convert = (v, a) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalidAttr(a, `'${show(v)}' is not a dictionary`);
  return v;
};

/** Tags: strings of 1..255 characters without commas (commas separate tags in filters). */
export const tag: Convert = (v, a) => {
  if (typeof v !== 'string' || v.length === 0 || v.length > 255 || v.includes(','))
    throw invalidAttr(a, `'${show(v)}' is not a valid tag`);
  return v;
};
export const tags = list(tag, 50);

/** Attributes every Neutron resource takes. */
export const STD: AttrMap = {
  project_id: { post: true, convert: str(255) },
  tenant_id: { post: true, convert: str(255) },
  description: { post: true, put: true, convert: str(255) },
};

/** The resource body of a request: `{"<singular>": {…}}`, or the bulk form `{"<plural>": [{…}, …]}`. */
export function unwrap(
  body: unknown,
  singular: string,
  plural?: string,
): { items: Record<string, unknown>[]; bulk: boolean } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('Resource body required');
  const b = body as Record<string, unknown>;
  if (plural && plural in b) {
    const list = b[plural];
    if (!Array.isArray(list) || list.length === 0) throw badRequest('Resources required');
    return {
      items: list.map((x) => {
        if (x === null || typeof x !== 'object' || Array.isArray(x)) throw badRequest('Resource body required');
        return x as Record<string, unknown>;
      }),
      bulk: true,
    };
  }
  const item = b[singular];
  if (item === undefined) throw badRequest(`Unable to find '${singular}' in request body`);
  if (item === null || typeof item !== 'object' || Array.isArray(item))
    throw badRequest(`Unable to find '${singular}' in request body`);
  return { items: [item as Record<string, unknown>], bulk: false };
}

/**
 * Validates and converts a POST or PUT body against the resource's attributes; enforces attribute policies.
 * Returns only the attributes present (defaults are the caller's business).
 */
export function parseBody(
  nx: NetContext,
  actor: NeutronActor,
  op: 'create' | 'update',
  resource: string,
  spec: AttrMap,
  body: Record<string, unknown>,
  policyTarget: Record<string, unknown> = {},
): Record<string, unknown> {
  const all: AttrMap = { ...STD, ...spec };
  const unknown = Object.keys(body).filter((k) => !(k in all));
  if (unknown.length) throw badRequest(`Unrecognized attribute(s) '${unknown.join(', ')}'`);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) {
    const s = all[k];
    if (op === 'create' && !s.post) throw badRequest(`Attribute '${k}' not allowed in POST`);
    if (op === 'update' && !s.put) throw badRequest(`Cannot update read-only attribute ${k}`);
    out[k] = s.convert ? s.convert(v, k) : v;
  }
  if (op === 'create')
    for (const [k, s] of Object.entries(all))
      if (s.required && !(k in out))
        throw badRequest(`Failed to parse request. Required attribute '${k}' not specified`);
  for (const k of Object.keys(out))
    if (all[k].policy) nx.enforce(actor, `${op}_${resource}:${k}`, { ...policyTarget, [k]: out[k] });
  return out;
}

/**
 * The owner of a new resource: `project_id`/`tenant_id` of the body (they must agree), else the caller's project.
 * Only admins may name another project.
 */
export function ownerOf(actor: NeutronActor, attrs: Record<string, unknown>): string {
  const p = attrs.project_id as string | undefined;
  const t = attrs.tenant_id as string | undefined;
  if (p !== undefined && t !== undefined && p !== t) throw badRequest("'project_id' and 'tenant_id' do not match");
  const owner = p ?? t ?? actor.projectId;
  if (!actor.isAdmin && owner !== actor.projectId)
    throw badRequest(
      "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires admin privileges",
    );
  if (!owner) throw badRequest("'project_id' must be specified (the token is not scoped to a project)");
  return owner;
}
