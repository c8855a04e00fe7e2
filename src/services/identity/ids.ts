import { randomUUID } from 'node:crypto';

/** Keystone ids are uuid4 hex without dashes. */
export const newId = () => randomUUID().replace(/-/g, '');

/** Keystone renders times as `2015-11-07T02:58:43.000000Z` (UTC, microseconds). */
export function keystoneTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Parses the ISO-8601 forms clients send for `expires_at` (with or without zone; no zone = UTC). */
export function parseClientTime(text: string): number | null {
  const t = /[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : `${text}Z`;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}
