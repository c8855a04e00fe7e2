/**
 * Neutron's collection queries over rendered views: filters on any attribute (a repeated key is OR, booleans as
 * True/true/1, `tenant_id` = `project_id`, list attributes match when they contain the value), the tag filters,
 * `fields=`, `sort_key`/`sort_dir`, and `limit`/`marker`/`page_reverse` paging with `<plural>_links`.
 */
import { badRequest } from './errors.js';

export type Query = Record<string, string | string[] | undefined>;
export type View = Record<string, any>;

/** A filter a resource evaluates itself (e.g. ports' `fixed_ips=subnet_id=X`). */
export type CustomFilter = (view: View, values: string[]) => boolean;

export interface ListQuery {
  filters: Map<string, string[]>;
  tags: { all: string[]; any: string[]; notAll: string[]; notAny: string[] };
  fields?: string[];
  sort: { key: string; dir: 'asc' | 'desc' }[];
  limit?: number;
  marker?: string;
  pageReverse: boolean;
}

const CONTROL = new Set(['fields', 'sort_key', 'sort_dir', 'limit', 'marker', 'page_reverse']);
const TAG_KEYS = new Set(['tags', 'tags-any', 'not-tags', 'not-tags-any']);

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const splitTags = (v: string | string[] | undefined) =>
  asList(v)
    .flatMap((s) => s.split(','))
    .filter((s) => s !== '');

function parseBool(v: string): boolean | undefined {
  const l = v.toLowerCase();
  if (l === 'true' || l === '1') return true;
  if (l === 'false' || l === '0') return false;
  return undefined;
}

export function parseListQuery(q: Query): ListQuery {
  const filters = new Map<string, string[]>();
  for (const [k, v] of Object.entries(q)) {
    if (CONTROL.has(k) || TAG_KEYS.has(k) || v === undefined) continue;
    const key = k === 'tenant_id' ? 'project_id' : k;
    filters.set(key, [...(filters.get(key) ?? []), ...asList(v)]);
  }
  const keys = asList(q.sort_key);
  const dirs = asList(q.sort_dir);
  if (dirs.length && dirs.length !== keys.length)
    throw badRequest('The number of sort_keys and sort_dirs must be same');
  const sort = keys.map((key, i) => {
    const dir = (dirs[i] ?? 'asc').toLowerCase();
    if (dir !== 'asc' && dir !== 'desc')
      throw badRequest(`${dirs[i]} is invalid value for sort_dirs, valid value is 'asc' and 'desc'`);
    return { key: key === 'tenant_id' ? 'project_id' : key, dir: dir as 'asc' | 'desc' };
  });
  let limit: number | undefined;
  const rawLimit = asList(q.limit)[0];
  if (rawLimit !== undefined) {
    if (!/^\d+$/.test(rawLimit)) throw badRequest(`Limit must be an integer 0 or greater and not '${rawLimit}'`);
    limit = Number(rawLimit) || undefined;
  }
  const reverse = asList(q.page_reverse)[0];
  const fields = asList(q.fields).flatMap((f) => f.split(','));
  return {
    filters,
    tags: {
      all: splitTags(q.tags),
      any: splitTags(q['tags-any']),
      notAll: splitTags(q['not-tags']),
      notAny: splitTags(q['not-tags-any']),
    },
    fields: fields.length ? fields : undefined,
    sort,
    limit,
    marker: asList(q.marker)[0],
    pageReverse: reverse !== undefined && parseBool(reverse) === true,
  };
}

function matchesValue(actual: unknown, wanted: string): boolean {
  if (Array.isArray(actual)) return actual.some((a) => matchesValue(a, wanted));
  if (typeof actual === 'boolean') return parseBool(wanted) === actual;
  if (actual === null || actual === undefined) return wanted === '' || wanted.toLowerCase() === 'none';
  if (typeof actual === 'object') return false;
  return String(actual) === wanted;
}

/** The views that pass every filter; unknown filter names are a 400 (Neutron's filter validation). */
export function applyFilters(
  views: View[],
  lq: ListQuery,
  known: Set<string>,
  custom: Record<string, CustomFilter> = {},
): View[] {
  const bad = [...lq.filters.keys()].filter((k) => !known.has(k) && !(k in custom));
  if (bad.length) throw badRequest(`[${bad.map((b) => `'${b}'`).join(', ')}] is invalid attribute for filtering`);
  const t = lq.tags;
  return views.filter((v) => {
    for (const [k, values] of lq.filters) {
      if (custom[k]) {
        if (!custom[k](v, values)) return false;
      } else if (!values.some((w) => matchesValue(v[k], w))) return false;
    }
    if (t.all.length || t.any.length || t.notAll.length || t.notAny.length) {
      const have = new Set<string>(v.tags ?? []);
      if (t.all.length && !t.all.every((x) => have.has(x))) return false;
      if (t.any.length && !t.any.some((x) => have.has(x))) return false;
      if (t.notAll.length && t.notAll.every((x) => have.has(x))) return false;
      if (t.notAny.length && t.notAny.some((x) => have.has(x))) return false;
    }
    return true;
  });
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  const sa = typeof a === 'object' ? JSON.stringify(a) : String(a);
  const sb = typeof b === 'object' ? JSON.stringify(b) : String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/** Sorts by the requested keys (unknown keys: 400), then creation order and id so pages are stable. */
export function sortViews(views: View[], lq: ListQuery, known: Set<string>): View[] {
  for (const s of lq.sort) if (!known.has(s.key)) throw badRequest(`${s.key} is invalid attribute for sort_keys`);
  const keys = [...lq.sort];
  if (!keys.length) keys.push({ key: 'created_at', dir: 'asc' });
  if (!keys.some((k) => k.key === 'id')) keys.push({ key: 'id', dir: keys[keys.length - 1].dir });
  return [...views].sort((a, b) => {
    for (const k of keys) {
      const c = compare(a[k.key], b[k.key]);
      if (c !== 0) return k.dir === 'asc' ? c : -c;
    }
    return 0;
  });
}

export interface Page {
  items: View[];
  links: { rel: 'next' | 'previous'; href: string }[];
}

/**
 * One page of sorted views. `next` is offered while more items follow, `previous` when the page does not start
 * at the beginning; both carry the original query with a new marker (Neutron's emulated pagination).
 */
export function paginate(
  sorted: View[],
  lq: ListQuery,
  collectionUrl: string,
  rawQuery: string,
  markerNotFound: (id: string) => Error,
): Page {
  if (!lq.limit && !lq.marker) return { items: sorted, links: [] };
  let start = 0;
  let end = sorted.length;
  if (lq.marker) {
    const at = sorted.findIndex((v) => v.id === lq.marker);
    if (at < 0) throw markerNotFound(lq.marker);
    if (lq.pageReverse) end = at;
    else start = at + 1;
  }
  if (lq.limit) {
    if (lq.pageReverse) start = Math.max(0, end - lq.limit);
    else end = Math.min(sorted.length, start + lq.limit);
  }
  const items = sorted.slice(start, end);
  const links: Page['links'] = [];
  if (!lq.limit) return { items, links };
  const params = new URLSearchParams(rawQuery);
  params.delete('marker');
  params.delete('page_reverse');
  const href = (marker: string, reverse: boolean) => {
    const p = new URLSearchParams(params);
    p.set('marker', marker);
    if (reverse) p.set('page_reverse', 'True');
    return `${collectionUrl}?${p.toString()}`;
  };
  if (items.length && end < sorted.length) links.push({ rel: 'next', href: href(items[items.length - 1].id, false) });
  if (items.length && start > 0) links.push({ rel: 'previous', href: href(items[0].id, true) });
  return { items, links };
}

/** Keeps only the requested fields (unknown names are ignored, as Neutron does). */
export function selectFields(view: View, fields?: string[]): View {
  if (!fields) return view;
  const out: View = {};
  for (const f of fields) if (f in view) out[f] = view[f];
  return out;
}
