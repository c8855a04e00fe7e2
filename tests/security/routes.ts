/**
 * The routes of a running Krater, read from its `/openapi.json`, with what the attack tests need to know about
 * each: the service it belongs to, its path parameters, and a plausible body derived from its schema.
 */
import type { RawResult } from './raw-http.js';

export type ServiceName = 'keystone' | 'zun' | 'neutron' | 'glance';

export interface Route {
  method: string;
  /** OpenAPI template, e.g. `/network/v2.0/networks/{id}`. */
  path: string;
  service: ServiceName;
  params: string[];
  bodySchema?: any;
}

export function serviceOf(path: string): ServiceName | undefined {
  if (path.startsWith('/identity')) return 'keystone';
  if (path.startsWith('/container')) return 'zun';
  if (path.startsWith('/network')) return 'neutron';
  if (path.startsWith('/image')) return 'glance';
  return undefined;
}

export function routesOf(openapi: any): Route[] {
  const out: Route[] = [];
  for (const [path, ops] of Object.entries<any>(openapi.paths)) {
    const service = serviceOf(path);
    if (!service) continue;
    for (const [method, op] of Object.entries<any>(ops)) {
      const params = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      out.push({
        method: method.toUpperCase(),
        path,
        service,
        params,
        bodySchema: op.requestBody?.content?.['application/json']?.schema,
      });
    }
  }
  return out;
}

/** Fills a path template; values are inserted as given (callers encode what should be encoded). */
export function fill(path: string, values: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name) => values[name] ?? 'x');
}

/** The collection segment a path parameter follows (`/v2.0/ports/{id}` → `ports`). */
export function collectionOf(path: string, param: string): string {
  const segs = path.split('/');
  const i = segs.indexOf(`{${param}}`);
  return i > 0 ? segs[i - 1] : '';
}

const NEUTRON_SINGULAR: Record<string, string> = {
  networks: 'network',
  subnets: 'subnet',
  subnetpools: 'subnetpool',
  ports: 'port',
  'security-groups': 'security_group',
  'security-group-rules': 'security_group_rule',
  routers: 'router',
  floatingips: 'floatingip',
  quotas: 'quota',
};

/** A value that satisfies `schema` as far as a simple walk can tell (required properties, right types). */
export function sample(schema: any, depth = 0): unknown {
  if (!schema || typeof schema !== 'object' || depth > 8) return 'x';
  if (schema.anyOf) return sample(schema.anyOf[0], depth + 1);
  if (schema.oneOf) return sample(schema.oneOf[0], depth + 1);
  if (schema.enum) return schema.enum[0];
  if (schema.const !== undefined) return schema.const;
  switch (schema.type) {
    case 'object': {
      const o: Record<string, unknown> = {};
      for (const k of schema.required ?? []) o[k] = sample(schema.properties?.[k], depth + 1);
      return o;
    }
    case 'array':
      return Array.from({ length: Math.max(1, schema.minItems ?? 0) }, () => sample(schema.items, depth + 1));
    case 'string':
      return 'x'.repeat(Math.max(1, schema.minLength ?? 1));
    case 'integer':
    case 'number':
      return schema.minimum ?? 1;
    case 'boolean':
      return false;
    default:
      return 'x';
  }
}

/** A plausible body for a route: from its schema, or from the service's conventions where the schema is generic. */
export function plausibleBody(route: Route): unknown {
  if (route.service === 'neutron') {
    const m = /\/v2\.0\/([\w-]+)(?:\/\{id\})?(\/tags)?$/.exec(route.path);
    if (m?.[2]) return { tags: ['t1'] };
    const singular = m ? NEUTRON_SINGULAR[m[1]] : undefined;
    if (singular) return { [singular]: route.method === 'POST' ? { name: 'fuzz' } : { description: 'fuzz' } };
    if (route.path.endsWith('_router_interface')) return { subnet_id: 'x' };
  }
  if (route.service === 'zun' && route.method !== 'GET') {
    if (/\/containers$/.test(route.path)) return { image: 'busybox', name: 'fuzz', run: false };
    if (route.path.endsWith('/registries'))
      return { registry: { domain: 'fuzz.example', username: 'u', password: 'p' } };
    if (route.path.endsWith('/rename')) return { name: 'fuzz2' };
    if (route.path.endsWith('/execute')) return { command: 'true' };
    if (route.path.endsWith('/kill')) return { signal: 'SIGTERM' };
    return {};
  }
  if (route.bodySchema) return sample(route.bodySchema);
  return undefined;
}

/** Why `r` is not an error in `service`'s envelope, or undefined when it is. */
export function envelopeProblem(service: ServiceName, r: RawResult): string | undefined {
  const j = r.json;
  const keystoneShape = (x: any) =>
    x?.error && x.error.code === r.status && typeof x.error.title === 'string' && typeof x.error.message === 'string';
  // keystonemiddleware answers 401 for every service in Keystone's shape.
  if (r.status === 401 && keystoneShape(j)) return undefined;
  switch (service) {
    case 'keystone':
      return keystoneShape(j) ? undefined : 'not a Keystone {"error":{code,title,message}} body';
    case 'zun': {
      const e = j?.errors?.[0];
      return Array.isArray(j?.errors) &&
        e?.status === r.status &&
        typeof e.code === 'string' &&
        /^(container|zun)\./.test(e.code) &&
        typeof e.title === 'string' &&
        typeof e.detail === 'string'
        ? undefined
        : 'not a Zun {"errors":[{status,code,title,detail}]} body';
    }
    case 'neutron': {
      const e = j?.NeutronError;
      return e && typeof e.type === 'string' && typeof e.message === 'string' && 'detail' in e
        ? undefined
        : 'not a {"NeutronError":{type,message,detail}} body';
    }
    case 'glance': {
      // Asked for JSON (the tests send Accept: application/json): webob's flat JSON error.
      if (j && typeof j.code === 'string' && j.code.startsWith(`${r.status} `) && typeof j.message === 'string')
        return undefined;
      if (String(r.headers['content-type']).startsWith('text/html') && r.text.includes(`<h1>${r.status} `))
        return undefined;
      return 'not a Glance error page ({"code":"NNN Title","title","message"} or HTML)';
    }
  }
}
