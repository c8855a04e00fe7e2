/**
 * Input hygiene shared by every service, applied before any handler sees a request: JSON bodies are decoded as
 * strict UTF-8, bounded in nesting depth, and refused when a string could not be stored as sent (a lone UTF-16
 * surrogate, a NUL, which PostgreSQL cannot keep) or when a `name` holds control characters. Path parameters and
 * query values get the same string check. A refusal is an ApiError(400), so each service renders it in its own
 * envelope.
 */
import { ApiError } from './errors.js';

/** Deeper than any OpenStack body (Keystone auth is 6 levels); deep enough to refuse recursion bombs early. */
export const MAX_JSON_DEPTH = 32;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** C0 controls and DEL: no real service's name holds one, and terminals and logs interpret them. */
const hasControl = (s: string) => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
};

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

const bad = (message: string) => new ApiError(400, message);

/** Why `s` cannot be stored as sent, or undefined when it can. */
export function unstorableReason(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character';
  if (LONE_SURROGATE.test(s)) return 'contains an unpaired UTF-16 surrogate';
  return undefined;
}

/** Why `s` is not acceptable as a resource name, or undefined. */
export function badNameReason(s: string): string | undefined {
  return unstorableReason(s) ?? (hasControl(s) ? 'contains control characters' : undefined);
}

/**
 * The nesting depth of the JSON text `text` exceeds `max`? Scans brackets outside strings without building
 * anything, so a 5,000-deep body is refused before a recursive consumer can overflow its stack.
 */
export function jsonTooDeep(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** Walks a parsed JSON value: every key and string must be storable, every `name` string a valid name. */
export function checkJsonStrings(value: unknown, path = ''): void {
  if (typeof value === 'string') {
    const key = path.slice(path.lastIndexOf('.') + 1);
    const why = key === 'name' ? badNameReason(value) : unstorableReason(value);
    if (why) throw bad(`Invalid input for field '${path || 'body'}': the value ${why}.`);
    return;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) checkJsonStrings(value[i], `${path}[${i}]`);
    return;
  }
  if (value && typeof value === 'object') {
    // A json-patch operation on a name (Glance's `{"op":"replace","path":"/name","value":…}`) is a name too.
    const op = value as { path?: unknown; value?: unknown };
    if (op.path === '/name' && typeof op.value === 'string') {
      const why = badNameReason(op.value);
      if (why) throw bad(`Invalid input for field 'name': the value ${why}.`);
    }
    for (const [k, v] of Object.entries(value)) {
      const why = unstorableReason(k);
      if (why) throw bad(`Invalid input: a key of '${path || 'body'}' ${why}.`);
      // Prototype pollution through a handler's object spread or merge.
      if (k === '__proto__' || (k === 'prototype' && path.endsWith('constructor')))
        throw bad(`Invalid input: the key '${k}' is not accepted.`);
      checkJsonStrings(v, path ? `${path}.${k}` : k);
    }
  }
}

/** Decodes and parses a JSON request body under the rules above; throws ApiError(400) with the reason. */
export function parseJsonBody(raw: Buffer | string): unknown {
  let text: string;
  if (typeof raw === 'string') text = raw;
  else {
    try {
      text = utf8.decode(raw);
    } catch {
      throw bad('Malformed request body: the body is not valid UTF-8.');
    }
  }
  if (text.trim() === '') return undefined;
  if (jsonTooDeep(text))
    throw bad(`Malformed request body: JSON nested deeper than ${MAX_JSON_DEPTH} levels is not accepted.`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('Malformed request body: the body is not valid JSON.');
  }
  checkJsonStrings(value);
  return value;
}

/** Path parameters and query values: storable strings, and no control characters in path parameters (ids, tags). */
export function checkRequestStrings(params: unknown, query: unknown): void {
  for (const [k, v] of Object.entries((params as Record<string, unknown>) ?? {})) {
    if (typeof v === 'string') {
      const why = badNameReason(v);
      if (why) throw bad(`Invalid input for path parameter '${k}': the value ${why}.`);
    }
  }
  for (const [k, v] of Object.entries((query as Record<string, unknown>) ?? {})) {
    for (const s of [k, ...(Array.isArray(v) ? v : [v])]) {
      if (typeof s !== 'string') continue;
      const why = unstorableReason(s);
      if (why) throw bad(`Invalid input for query parameter '${k}': the value ${why}.`);
    }
  }
}
