/**
 * Malformed requests for one route, derived from its OpenAPI description: bad ids and encodings, odd query
 * strings, bogus microversions, wrong content types, and bodies with wrong types, missing fields, huge strings and
 * deep nesting. Every generator draws from a seeded generator, so a run is reproducible from its seed.
 */
import type { Rng } from './raw-http.js';
import { collectionOf, fill, plausibleBody, type Route, sample } from './routes.js';

export interface FuzzCase {
  kind: string;
  method: string;
  /** The raw request target (already encoded). */
  target: string;
  headers: Record<string, string>;
  body?: Buffer | string | object;
}

/** Real ids to put in path parameters, by collection name (`containers`, `networks`, `users`, …). */
export type IdPool = Record<string, string[]>;

const DEEP = 5000;
const deepObject = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
const deepArray = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
const huge = (n: number) => 'A'.repeat(n);

const BAD_IDS = [
  '%zz',
  '%00',
  'a%00b',
  '%ED%A0%80', // an encoded lone surrogate: not UTF-8
  '%C0%AF', // overlong '/'
  '..%2F..%2Fetc',
  '%F0%9F%92%A5',
  'x'.repeat(200),
  'x'.repeat(3000),
  "'%20OR%201=1--",
  '%25',
  '-1',
  'null',
];

const QUERIES = [
  'name=a&name=b',
  'id=a&id=b&id=c',
  'status=Running&status=Stopped',
  'project_id=a&project_id=b',
  'image=a&image=b',
  'limit=abc',
  'limit=-1',
  'limit=99999999999999999999',
  'marker=00000000-0000-0000-0000-000000000000',
  'sort_key=password&sort_dir=sideways',
  'fields=__proto__',
  'all_projects=maybe',
  'all_projects=True&all_projects=False',
  'all_tenants=1',
  'a[]=1&a[]=2',
  'filter[x]=1',
  '__proto__[polluted]=1',
  'constructor.prototype.polluted=1',
  `name=${huge(60_000)}`,
  `${huge(2000)}=1`,
  'name=%zz',
  'name=%00',
  'name=%ED%A0%80',
  '&&&==&=',
  'unknown_key=1',
];

const MICROVERSIONS = [
  'container 9.99',
  'container 1.0',
  'container 0.1',
  'container latest',
  'container 1.',
  'container one.two',
  'garbage',
  'container',
  `container 1.${'9'.repeat(400)}`,
  'compute 2.1, container 1.99',
];

const CONTENT_TYPES = [
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=latin1',
  'application/openstack-images-v2.1-json-patch',
  '',
  'garbage',
];

const BAD_BODIES: Array<string | Buffer> = [
  '{',
  '[]',
  '"x"',
  'null',
  '1e999999',
  '{"a":1,"a":2}',
  deepObject(DEEP),
  deepArray(DEEP),
  Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), // invalid UTF-8
  '{"__proto__":{"polluted":1}}',
  '{"constructor":{"prototype":{"polluted":1}}}',
];

/** Leaf paths of a JSON value. */
function leaves(v: unknown, path: string[] = []): string[][] {
  if (v && typeof v === 'object') {
    const entries = Object.entries(v);
    if (entries.length === 0) return [path];
    return entries.flatMap(([k, x]) => leaves(x, [...path, k]));
  }
  return [path];
}

function setAt(root: unknown, path: string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy: any = Array.isArray(root) ? [...root] : { ...(root as object) };
  copy[path[0]] = setAt(copy[path[0]], path.slice(1), value);
  return copy;
}

function deleteAt(root: unknown, path: string[]): unknown {
  if (path.length === 0) return undefined;
  const copy: any = Array.isArray(root) ? [...root] : { ...(root as object) };
  if (path.length === 1) delete copy[path[0]];
  else copy[path[0]] = deleteAt(copy[path[0]], path.slice(1));
  return copy;
}

/** Body mutations of a plausible body: wrong types, missing fields, huge and odd strings, deep nesting. */
function bodyMutations(rng: Rng, base: unknown): Array<{ kind: string; body: string | Buffer | object }> {
  const out: Array<{ kind: string; body: string | Buffer | object }> = [];
  const paths = base && typeof base === 'object' ? leaves(base) : [[]];
  const at = () => rng.pick(paths);
  const WRONG = [123, true, null, [], {}, [1, 2], -1, 1.5, 'x', { $gt: '' }];
  out.push({ kind: 'body wrong type', body: setAt(base, at(), rng.pick(WRONG)) as object });
  out.push({ kind: 'body wrong type', body: setAt(base, at(), rng.pick(WRONG)) as object });
  if (paths[0].length > 0) out.push({ kind: 'body missing field', body: (deleteAt(base, at()) ?? {}) as object });
  out.push({ kind: 'body huge string', body: setAt(base, at(), huge(200_000)) as object });
  const deepAt = at();
  const shallow = JSON.stringify(setAt(base, deepAt, '@@DEEP@@'));
  out.push({ kind: 'body deep nesting', body: shallow.replace('"@@DEEP@@"', deepObject(rng.pick([100, 2000, DEEP]))) });
  const strAt = [...at().slice(0, -1), 'name'];
  for (const s of ['a\ud800b', 'a\u0000b', 'a\u0007\u001bb', '\udc00']) {
    const text = JSON.stringify(setAt(base, strAt, s));
    out.push({ kind: 'body odd string', body: text });
  }
  out.push({
    kind: 'body unknown key',
    body: setAt(base, [...at().slice(0, -1), 'zz_unknown'], { a: { b: 1 } }) as object,
  });
  out.push({ kind: 'body raw', body: rng.pick(BAD_BODIES) });
  out.push({ kind: 'body raw', body: rng.pick(BAD_BODIES) });
  return out;
}

const ZUN_HEADERS = { 'OpenStack-API-Version': 'container 1.40' };

/** Every candidate case of a route; the caller samples a bounded number of them. */
export function casesFor(route: Route, rng: Rng, ids: IdPool): FuzzCase[] {
  const baseHeaders: Record<string, string> = route.service === 'zun' ? { ...ZUN_HEADERS } : {};
  const realValues: Record<string, string> = {};
  for (const p of route.params) {
    const pool = ids[collectionOf(route.path, p)] ?? ids[p] ?? [];
    realValues[p] = pool.length ? rng.pick(pool) : rng.uuid();
  }
  const target = fill(route.path, realValues);
  const body = ['POST', 'PUT', 'PATCH'].includes(route.method) ? plausibleBody(route) : undefined;
  const cases: FuzzCase[] = [];
  const add = (kind: string, c: Partial<FuzzCase>) =>
    cases.push({ kind, method: route.method, target, headers: baseHeaders, body, ...c });

  for (const p of route.params)
    for (const bad of rng.sample(BAD_IDS, 4))
      add(`bad id (${p})`, { target: fill(route.path, { ...realValues, [p]: bad }) });
  if (route.params.length)
    add('random id', { target: fill(route.path, Object.fromEntries(route.params.map((p) => [p, rng.uuid()]))) });
  for (const q of rng.sample(QUERIES, 6)) add('odd query', { target: `${target}?${q}` });
  for (const mv of rng.sample(MICROVERSIONS, 3))
    add('bogus microversion', { headers: { ...baseHeaders, 'OpenStack-API-Version': mv } });
  if (body !== undefined) {
    for (const ct of rng.sample(CONTENT_TYPES, 3))
      add('wrong content type', { headers: { ...baseHeaders, 'Content-Type': ct }, body: JSON.stringify(body) });
    for (const m of bodyMutations(rng, body)) add(m.kind, { body: m.body });
  } else if (route.method !== 'GET') {
    add('unexpected body', { body: deepObject(DEEP) });
    add('unexpected body', { body: { zz: huge(100_000) } });
  } else {
    add('body on GET', { body: '{' });
  }
  return cases;
}

export { sample };
