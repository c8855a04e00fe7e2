import type { ApiError } from '../../core/http/errors.js';
import { invalid, parseNumber } from './params.js';

/** Zun's collection paging: `limit` (default and cap 1000, ≤0 → 400), `sort_key`, `sort_dir`, `marker`. */
export interface Paging {
  limit: number;
  sortKey: string;
  sortDir: 'asc' | 'desc';
  /** The column to order by (`id` is creation order). */
  column: string;
  marker?: string;
}

export const PAGING_PARAMS = ['limit', 'marker', 'sort_key', 'sort_dir', 'all_projects'];

export function parsePaging(q: Record<string, string | undefined>, sortable: string[]): Paging {
  const limit = q.limit === undefined ? 1000 : Math.min(1000, parseNumber('limit', q.limit, -Infinity, Infinity, true));
  if (limit <= 0) throw invalid('Limit must be positive integer');
  const sortDir = q.sort_dir ?? 'asc';
  if (sortDir !== 'asc' && sortDir !== 'desc')
    throw invalid(`Invalid sort direction: ${sortDir}. Acceptable values are 'asc' or 'desc'`);
  const sortKey = q.sort_key ?? 'id';
  if (!sortable.includes(sortKey)) throw invalid(`The sort_key value "${sortKey}" is an invalid field for sorting`);
  return { limit, sortKey, sortDir, column: sortKey === 'id' ? 'created_at' : sortKey, marker: q.marker };
}

/**
 * One page of rows already ordered by `p.column` then uuid: the rows after the marker, and `next` (a followable
 * URL under `collectionUrl`) only when the page is full and more remain.
 */
export function pageOf<T extends { uuid: string }>(
  rows: T[],
  p: Paging,
  collectionUrl: string,
  markerNotFound: (marker: string) => ApiError,
): { page: T[]; next: string | null } {
  let rest = rows;
  if (p.marker) {
    const at = rows.findIndex((r) => r.uuid === p.marker);
    if (at < 0) throw markerNotFound(p.marker);
    rest = rows.slice(at + 1);
  }
  const page = rest.slice(0, p.limit);
  const next =
    page.length === p.limit && rest.length > p.limit
      ? `${collectionUrl}?sort_key=${p.sortKey}&sort_dir=${p.sortDir}&limit=${p.limit}&marker=${page[page.length - 1].uuid}`
      : null;
  return { page, next };
}
