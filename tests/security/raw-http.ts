/**
 * HTTP for attack tests: the request target is sent byte for byte (no URL normalisation, so `%zz`, `..` and
 * `%00` reach the server as written), bodies may be any bytes, and a response that keeps streaming (event streams,
 * long polls, downloads) is cut after its headers and a short read, so one route cannot stall the run.
 */
import { request } from 'node:http';

export interface RawResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
  /** The body did not end within the read window (a stream): `text` is its beginning. */
  truncated: boolean;
}

export interface RawOptions {
  token?: string;
  headers?: Record<string, string>;
  /** Sent verbatim; an object is JSON-encoded (Content-Type application/json unless given). */
  body?: Buffer | string | object;
  /** How long to read a body after its headers arrived (default 3 s). */
  readMs?: number;
  /** Whole-request timeout (default 30 s). */
  timeoutMs?: number;
}

export function rawRequest(port: number, method: string, path: string, opts: RawOptions = {}): Promise<RawResult> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  if (opts.token) headers['X-Auth-Token'] = opts.token;
  let body: Buffer | undefined;
  if (opts.body !== undefined) {
    body = Buffer.isBuffer(opts.body)
      ? opts.body
      : Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type'))
      headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(body.length);
  }
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers, agent: false, timeout: opts.timeoutMs ?? 30_000 },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let done = false;
        const finish = (truncated: boolean) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json, truncated });
          if (truncated) res.destroy();
        };
        const timer = setTimeout(() => finish(true), opts.readMs ?? 3000);
        res.on('data', (c: Buffer) => {
          if (size < 1024 * 1024) chunks.push(c);
          size += c.length;
        });
        res.on('end', () => finish(false));
        res.on('error', () => finish(true));
        res.on('close', () => finish(true));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no response within the timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** A deterministic pseudo-random generator (mulberry32): the same seed gives the same run. */
export function seeded(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick<T>(xs: readonly T[]): T {
      return xs[Math.floor(next() * xs.length)];
    },
    /** `k` distinct elements of `xs` (all of them when k ≥ length). */
    sample<T>(xs: readonly T[], k: number): T[] {
      const copy = [...xs];
      for (let i = copy.length - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [copy[i], copy[j]] = [copy[j], copy[i]];
      }
      return copy.slice(0, k);
    },
    uuid(): string {
      const hex = Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16)).join('');
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
    },
  };
}
export type Rng = ReturnType<typeof seeded>;

/** Runs `fn` over `items` with at most `n` in flight. */
export async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]);
  });
  await Promise.all(workers);
}
