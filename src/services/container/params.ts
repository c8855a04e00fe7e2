import { atLeast, fmt, type Version } from '../../core/http/microversion.js';

/** Zun's exception classes become `container.<kebab-name>` error codes. */
export { computeError as zunError } from '../../compute/errors.js';

import { computeError as zunError } from '../../compute/errors.js';
export const invalid = (message: string) => zunError(400, 'InvalidValue', message);
export const schemaError = (message: string) => zunError(400, 'SchemaValidationError', message);

/** Zun merges the query string and the JSON body into one argument set (body wins). */
export function mergedParams(query: unknown, body: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(query as Record<string, unknown>) };
  if (body && typeof body === 'object' && !Array.isArray(body)) Object.assign(out, body);
  return out;
}

const TRUE = ['true', '1', 'on', 'yes', 'y', 't'];
const FALSE = ['false', '0', 'off', 'no', 'n', 'f'];

/** oslo's bool_from_string, strict: anything else is a 400. */
export function parseBool(name: string, v: unknown, dflt = false): boolean {
  if (v === undefined || v === null || v === '') return dflt;
  if (typeof v === 'boolean') return v;
  const s = String(v).toLowerCase();
  if (TRUE.includes(s)) return true;
  if (FALSE.includes(s)) return false;
  throw schemaError(`Invalid input for field/attribute ${name}. Value: ${v}. '${v}' is not a valid boolean value.`);
}

/** Refuses a field sent below the microversion that introduced it (Zun's `version_check`). */
export function versionCheck(field: string, since: [number, number], v: Version): void {
  if (!atLeast(v, since[0], since[1])) {
    throw zunError(
      400,
      'InvalidParamInVersion',
      `Invalid param ${field} because current request version is ${fmt(v)}. ${field} is only supported from version ${since[0]}.${since[1]}`,
    );
  }
}

export function parseNumber(name: string, v: unknown, min: number, max: number, integer = false): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  if (Number.isNaN(n) || (integer && !Number.isInteger(n)))
    throw schemaError(
      `Invalid input for field/attribute ${name}. Value: ${v}. '${v}' is not of type '${integer ? 'integer' : 'number'}'`,
    );
  if (n < min)
    throw schemaError(
      `Invalid input for field/attribute ${name}. Value: ${v}. ${v} is less than the minimum of ${min}`,
    );
  if (n > max)
    throw schemaError(
      `Invalid input for field/attribute ${name}. Value: ${v}. ${v} is greater than the maximum of ${max}`,
    );
  return n;
}

export function expectString(
  name: string,
  v: unknown,
  opts: { min?: number; max?: number; pattern?: RegExp } = {},
): string {
  if (typeof v !== 'string')
    throw schemaError(
      `Invalid input for field/attribute ${name}. Value: ${JSON.stringify(v)}. ${JSON.stringify(v)} is not of type 'string'`,
    );
  if (opts.min !== undefined && v.length < opts.min)
    throw schemaError(`Invalid input for field/attribute ${name}. Value: ${v}. '${v}' is too short`);
  if (opts.max !== undefined && v.length > opts.max)
    throw schemaError(`Invalid input for field/attribute ${name}. Value: ${v}. '${v}' is too long`);
  if (opts.pattern && !opts.pattern.test(v))
    throw schemaError(
      `Invalid input for field/attribute ${name}. Value: ${v}. '${v}' does not match '${opts.pattern.source}'`,
    );
  return v;
}

export function expectStringMap(name: string, v: unknown): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v))
    throw schemaError(
      `Invalid input for field/attribute ${name}. Value: ${JSON.stringify(v)}. ${JSON.stringify(v)} is not of type 'object'`,
    );
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string')
      throw schemaError(
        `Invalid input for field/attribute ${name}. Value: ${JSON.stringify(v)}. ${JSON.stringify(val)} for key '${k}' is not of type 'string'`,
      );
  }
  return v as Record<string, string>;
}

/** POSIX-shell-like split (Python's shlex.split), for `command` below 1.20 and `execute`'s command string. */
export function shlexSplit(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < s.length && '"\\$`'.includes(s[i + 1])) cur += s[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw invalid(`Invalid command: unbalanced quotes in ${s}`);
  if (inWord) out.push(cur);
  return out;
}
