/**
 * `GET /v2/images` query parameters as Glance's `RequestDeserializer.index` reads them: paging (`limit`,
 * `marker`), sorting (`sort_key`/`sort_dir`, repeatable, or `sort=k:dir,…`), `member_status`, and every other
 * parameter as a filter (base attributes, `in:` lists, `tag` (ANDed), `size_min`/`size_max`, `created_at` /
 * `updated_at` with an operator, custom properties).
 */
import type { ImageRow } from '../../core/store/schema.js';
import { glanceError } from './context.js';
import type { ImageFilter, TimeOp } from './repo.js';
import { MEMBER_STATUSES, VISIBILITIES } from './schemas.js';

export type Query = Record<string, string | string[] | undefined>;

export const SORT_KEYS = [
  'name',
  'status',
  'container_format',
  'disk_format',
  'size',
  'id',
  'created_at',
  'updated_at',
  'min_disk',
  'min_ram',
  'owner',
  'visibility',
  'virtual_size',
] as const;
type SortKey = (typeof SORT_KEYS)[number];

export interface ListRequest {
  filter: ImageFilter;
  limit: number;
  marker?: string;
  sort: Array<{ key: SortKey; dir: 'asc' | 'desc' }>;
}

const all = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const last = (v: string | string[] | undefined): string | undefined => {
  const a = all(v);
  return a.length ? a[a.length - 1] : undefined;
};

function bool(name: string, v: string): boolean {
  const t = v.toLowerCase();
  if (['true', '1', 'yes', 'on', 't', 'y'].includes(t)) return true;
  if (['false', '0', 'no', 'off', 'f', 'n'].includes(t)) return false;
  throw glanceError(400, `Invalid value '${v}' for parameter '${name}': the value must be a boolean.`);
}

function int(name: string, v: string): number {
  if (!/^-?\d+$/.test(v.trim())) throw glanceError(400, `${name} param must be an integer`);
  return Number(v);
}

/** `in:a,"b,c",d` → ['a', 'b,c', 'd'] (Glance's `split_filter_value_for_quotes`). */
export function splitInList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let wasQuoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"' && (quoted || cur === '')) {
      quoted = !quoted;
      wasQuoted = true;
    } else if (c === '\\' && quoted && i + 1 < text.length) {
      cur += text[++i];
    } else if (c === ',' && !quoted) {
      out.push(cur);
      cur = '';
      wasQuoted = false;
    } else {
      cur += c;
    }
  }
  if (quoted) throw glanceError(400, `Invalid filter value ${text}. The quote is not closed.`);
  if (cur !== '' || wasQuoted || text.endsWith(',')) out.push(cur);
  return out;
}

function parseTimeFilter(name: string, raw: string): { op: TimeOp; ms: number } {
  const m = /^(gt|gte|eq|neq|lt|lte):(.+)$/.exec(raw);
  const op = (m ? m[1] : 'eq') as TimeOp;
  const text = m ? m[2] : raw;
  const withZone = /[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text}Z`;
  const ms = Date.parse(withZone);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(ms))
    throw glanceError(
      400,
      `Invalid ${name} filter: '${raw}'. Use <op>:<ISO 8601 time> with op gt, gte, eq, neq, lt or lte.`,
    );
  return { op, ms };
}

function sortKey(k: string): SortKey {
  const key = k.trim();
  if (!(SORT_KEYS as readonly string[]).includes(key))
    throw glanceError(400, `Invalid sort key: ${key}. It must be one of the following: ${SORT_KEYS.join(', ')}.`);
  return key as SortKey;
}

function sortDir(d: string): 'asc' | 'desc' {
  const dir = d.trim();
  if (dir !== 'asc' && dir !== 'desc') throw glanceError(400, `Invalid sort direction: ${dir}`);
  return dir;
}

const IN_COLUMNS = new Set([
  'id',
  'name',
  'status',
  'container_format',
  'disk_format',
  'owner',
  'checksum',
  'os_hash_value',
]);

export function parseListQuery(q: Query, defaultLimit: number, maxLimit: number): ListRequest {
  const filter: ImageFilter = {
    memberStatus: 'accepted',
    columns: {},
    osHidden: false,
    times: [],
    tags: [],
    properties: {},
  };
  let limit = defaultLimit;
  let marker: string | undefined;
  let sort: ListRequest['sort'] = [];
  const keys: SortKey[] = [];
  const dirs: Array<'asc' | 'desc'> = [];

  for (const [name, value] of Object.entries(q)) {
    const v = last(value);
    if (v === undefined) continue;
    switch (name) {
      case 'limit': {
        const n = int('limit', v);
        if (n < 0) throw glanceError(400, 'limit param must be positive');
        limit = Math.min(n, maxLimit);
        break;
      }
      case 'marker':
        marker = v;
        break;
      case 'sort':
        break;
      case 'sort_key':
        for (const k of all(value)) keys.push(sortKey(k));
        break;
      case 'sort_dir':
        for (const d of all(value)) dirs.push(sortDir(d));
        break;
      case 'member_status':
        if (v !== 'all' && !(MEMBER_STATUSES as readonly string[]).includes(v))
          throw glanceError(400, `Invalid status value: ${v}`);
        filter.memberStatus = v;
        break;
      case 'visibility':
        if (v !== 'all' && !(VISIBILITIES as readonly string[]).includes(v))
          throw glanceError(400, `Invalid visibility value: ${v}`);
        filter.visibility = v;
        break;
      case 'protected':
        filter.protected = bool(name, v);
        break;
      case 'os_hidden':
        filter.osHidden = bool(name, v);
        break;
      case 'size_min':
      case 'size_max': {
        const n = int(name, v);
        if (n < 0) throw glanceError(400, `${name} must be a non-negative integer`);
        if (name === 'size_min') filter.sizeMin = n;
        else filter.sizeMax = n;
        break;
      }
      case 'created_at':
      case 'updated_at':
        for (const raw of all(value)) filter.times.push({ column: name, ...parseTimeFilter(name, raw) });
        break;
      case 'tag':
        filter.tags.push(...all(value));
        break;
      default:
        if (IN_COLUMNS.has(name)) {
          const values = v.startsWith('in:') ? splitInList(v.slice(3)) : [v];
          filter.columns[name as keyof ImageFilter['columns']] = values;
        } else {
          filter.properties[name] = v;
        }
    }
  }

  const sortParam = last(q.sort);
  if (sortParam !== undefined) {
    if (keys.length || dirs.length) throw glanceError(400, 'Old and new sorting syntax cannot be combined');
    for (const part of sortParam.split(',')) {
      const [k, d] = part.split(':');
      sort.push({ key: sortKey(k), dir: d === undefined || d.trim() === '' ? 'desc' : sortDir(d) });
    }
  } else {
    if (dirs.length > 1 && dirs.length !== keys.length)
      throw glanceError(400, 'Number of sort dirs does not match the number of sort keys');
    const ks = keys.length ? keys : (['created_at'] as SortKey[]);
    sort = ks.map((key, i) => ({ key, dir: dirs.length === 0 ? 'desc' : dirs.length === 1 ? dirs[0] : dirs[i] }));
  }
  // Glance appends created_at and id (in the first direction) so the order is total.
  const defaultDir = sort[0]?.dir ?? 'desc';
  for (const key of ['created_at', 'id'] as const)
    if (!sort.some((s) => s.key === key)) sort.push({ key, dir: defaultDir });
  return { filter, limit, marker, sort };
}

/** Compares two rows by the sort spec (NULLs first in ascending order, as MySQL does for Glance). */
export function compareRows(a: ImageRow, b: ImageRow, sort: ListRequest['sort']): number {
  for (const { key, dir } of sort) {
    const x = a[key];
    const y = b[key];
    let c = 0;
    if (x === y) c = 0;
    else if (x === null) c = -1;
    else if (y === null) c = 1;
    else if (typeof x === 'number' || typeof y === 'number') c = Number(x) - Number(y);
    else c = x < y ? -1 : x > y ? 1 : 0;
    if (c !== 0) return dir === 'asc' ? c : -c;
  }
  return 0;
}
