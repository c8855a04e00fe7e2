/** Parsers shared by the configuration areas: each failure names the variable, so a bad value stops the start. */

/** The environment as configuration reads it (`process.env`, or a plain object in tests). */
export type Env = Readonly<Record<string, string | undefined>>;

/** Unset or blank: the default applies. */
export function unset(value: string | undefined): value is undefined {
  return value === undefined || value.trim() === '';
}

export function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (unset(raw)) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name}: expected an integer ${min}…${max}: ${raw}`);
  return n;
}

export function nonNegativeInt(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (unset(raw)) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`invalid ${name}: ${raw} (expected a whole number ≥ 0)`);
  return n;
}

/** One of a few words; unset or blank is the first. */
export function choice<T extends string>(env: Env, name: string, allowed: readonly [T, ...T[]]): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return allowed[0];
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw new Error(`invalid ${name}: ${raw} (expected ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)})`);
}

/** A byte count with an optional binary suffix (`10g`, `512MiB`); `unlimited` or `-1` is null. */
export function bytesVar(env: Env, name: string, fallback: number | null): number | null {
  const raw = env[name];
  if (unset(raw)) return fallback;
  const t = raw.trim().toLowerCase();
  if (t === 'unlimited' || t === '-1') return null;
  const m = /^(\d+)\s*([kmgt]i?b?|b)?$/.exec(t);
  if (!m) throw new Error(`${name}: not a byte count: ${raw}`);
  const unit = m[2]?.[0] ?? 'b';
  const mult = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  return Number(m[1]) * mult;
}

/** A comma-separated list, trimmed, empty entries dropped. */
export function listVar(env: Env, name: string, separators = /,/): string[] {
  return (env[name] ?? '')
    .split(separators)
    .map((s) => s.trim())
    .filter(Boolean);
}

export const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** `a.b.c.d[/prefix]` (no prefix: /32) → its address as a number, its prefix, and whether host bits are set. */
export function parseIpv4Cidr(s: string): { prefix: number; hostBits: boolean } | null {
  const [ip, p, extra] = s.split('/');
  if (extra !== undefined || !IPV4.test(ip)) return null;
  if (p !== undefined && !/^\d{1,2}$/.test(p)) return null;
  const prefix = p === undefined ? 32 : Number(p);
  if (prefix > 32) return null;
  const value = ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const hostSize = 2 ** (32 - prefix);
  return { prefix, hostBits: value % hostSize !== 0 };
}
