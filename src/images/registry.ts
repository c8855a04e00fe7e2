/**
 * A client for registries that speak the OCI Distribution API v2 (Docker Registry HTTP API v2): manifests and blobs,
 * with anonymous access, bearer tokens (the `WWW-Authenticate: Bearer realm=…,service=…,scope=…` dance) and basic
 * auth. HTTPS with certificate verification, except for registries configured as insecure
 * (`KRATER_INSECURE_REGISTRIES`, and always loopback), which are spoken to in plain HTTP.
 *
 * Blob downloads resume with `Range` requests when a connection drops mid-blob.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { registryApiHost } from './reference.js';

export interface RegistryCredentials {
  username: string;
  password: string;
}

export type RegistryErrorCode =
  | 'not_found'
  | 'unauthorized'
  | 'denied'
  | 'unavailable'
  | 'invalid'
  | 'digest_mismatch'
  | 'too_large'
  | 'unsupported';

/** A failed registry exchange, with a message precise enough to be a container's `status_reason`. */
export class RegistryError extends Error {
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RegistryError';
  }
}

/** Media types a manifest request accepts, most preferred first. */
export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
];

const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const IDLE_TIMEOUT_MS = 30_000;

const LOOPBACK = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\]|::1)(?::\d+)?$/;

/** Registries spoken to over plain HTTP: loopback always, plus `extra` (the configured `KRATER_INSECURE_REGISTRIES`). */
export function isInsecureRegistry(host: string, extra: string[]): boolean {
  if (LOOPBACK.test(host)) return true;
  const bare = host.replace(/:\d+$/, '');
  return extra.some((e) => e === host || (!e.includes(':') && e === bare));
}

/** A parsed `WWW-Authenticate` challenge. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (let p = re.exec(m[2]!); p; p = re.exec(m[2]!))
    params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}

export interface RegistryClientOptions {
  /** Credentials for the registry hosts this client talks to (by domain as written in references). */
  credentials?: (domain: string) => RegistryCredentials | undefined;
  /** Hosts spoken to over plain HTTP besides loopback; default from `KRATER_INSECURE_REGISTRIES`. */
  insecure?: string[];
  /** Retries of a blob download after a dropped connection or a 5xx (default 5). */
  maxRetries?: number;
  /** Base back-off between retries in ms (default 200, doubled each time). */
  retryDelayMs?: number;
  userAgent?: string;
}

interface SendOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** Accept 206 and 200 (Range requests). */
  range?: boolean;
}

export interface FetchedManifest {
  /** Digest of the bytes received (what containerd will verify). */
  digest: string;
  mediaType: string;
  bytes: Buffer;
  json: any;
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function readBody(res: IncomingMessage, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > max) {
      res.destroy();
      throw new RegistryError('too_large', `${what} is larger than ${max} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function drain(res: IncomingMessage): void {
  res.resume();
  res.on('error', () => {});
}

/** Registry error bodies are `{"errors":[{"code","message","detail"}]}`. */
async function errorDetail(res: IncomingMessage): Promise<string> {
  try {
    const text = (await readBody(res, 64 * 1024, 'error body')).toString('utf8');
    const j = JSON.parse(text);
    const e = j?.errors?.[0];
    if (e) return `${e.code ?? ''}${e.message ? `: ${e.message}` : ''}`.replace(/^: /, '');
    return text.slice(0, 200);
  } catch {
    return '';
  }
}

const sha256 = (buf: Buffer) => `sha256:${createHash('sha256').update(buf).digest('hex')}`;

/** Transient network failures worth a retry. */
function isTransient(err: unknown): boolean {
  if (err instanceof RegistryError) return err.code === 'unavailable';
  const code = (err as NodeJS.ErrnoException)?.code;
  return (
    code === 'ECONNRESET' ||
    code === 'ECONNREFUSED' ||
    code === 'EPIPE' ||
    code === 'ETIMEDOUT' ||
    code === 'ECONNABORTED' ||
    code === 'EAI_AGAIN' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    /aborted|socket hang up|premature|terminated/i.test((err as Error)?.message ?? '')
  );
}

/**
 * One client per pull: it caches the bearer tokens it obtains (per registry and scope) for its own requests.
 */
export class RegistryClient {
  private readonly tokens = new Map<string, string>();
  private readonly insecure: string[];
  readonly maxRetries: number;
  readonly retryDelayMs: number;

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.insecure = opts.insecure ?? [];
    this.maxRetries = opts.maxRetries ?? 5;
    this.retryDelayMs = opts.retryDelayMs ?? 200;
  }

  /** `http://127.0.0.1:5000` or `https://registry-1.docker.io`. */
  baseUrl(domain: string): string {
    const host = registryApiHost(domain);
    return `${isInsecureRegistry(domain, this.insecure) ? 'http' : 'https'}://${host}`;
  }

  /** One HTTP exchange, following redirects (credentials are not forwarded to other hosts). */
  private raw(url: string, headers: Record<string, string>, method = 'GET', hops = 0): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const u = new URL(url);
      const fn = u.protocol === 'https:' ? httpsRequest : httpRequest;
      const req = fn(
        u,
        { method, headers: { 'User-Agent': this.opts.userAgent ?? 'krater/0.1', ...headers }, agent: false },
        (res) => {
          const status = res.statusCode ?? 0;
          if ([301, 302, 303, 307, 308].includes(status) && res.headers.location && hops < 5) {
            drain(res);
            const next = new URL(res.headers.location, u);
            const h = { ...headers };
            if (next.host !== u.host) delete h.Authorization;
            this.raw(next.toString(), h, method, hops + 1).then(resolve, reject);
            return;
          }
          res.setTimeout(IDLE_TIMEOUT_MS, () =>
            res.destroy(Object.assign(new Error('registry connection idle for too long'), { code: 'ETIMEDOUT' })),
          );
          resolve(res);
        },
      );
      req.setTimeout(IDLE_TIMEOUT_MS, () =>
        req.destroy(Object.assign(new Error(`no answer from ${u.host}`), { code: 'ETIMEDOUT' })),
      );
      req.on('error', (err) => {
        const code = (err as NodeJS.ErrnoException).code;
        const msg =
          code === 'ECONNREFUSED'
            ? `cannot connect to registry ${u.host}: connection refused`
            : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
              ? `cannot resolve registry host ${u.hostname}`
              : /wrong version number|EPROTO/i.test(err.message)
                ? `registry ${u.host} does not speak HTTPS (add it to KRATER_INSECURE_REGISTRIES to use plain HTTP)`
                : `cannot reach registry ${u.host}: ${err.message}`;
        reject(Object.assign(new RegistryError('unavailable', msg, undefined, { cause: err }), { code }));
      });
      req.end();
    });
  }

  /**
   * A request to `<registry>/v2/<path>` for `repo`, authenticating as the registry asks: an anonymous attempt, then
   * (on 401) a bearer token or basic credentials, and one more attempt.
   */
  async send(domain: string, repo: string, path: string, opts: SendOptions = {}): Promise<IncomingMessage> {
    const url = `${this.baseUrl(domain)}/v2/${path}`;
    const scope = `repository:${repo}:pull`;
    const key = `${domain}|${scope}`;
    const headers = { ...opts.headers };
    const cached = this.tokens.get(key);
    if (cached) headers.Authorization = cached;
    let res = await this.raw(url, headers, opts.method);
    if (res.statusCode === 401) {
      const challenge = parseChallenge(res.headers['www-authenticate'] as string | undefined);
      drain(res);
      const auth = await this.authorize(domain, challenge, scope);
      this.tokens.set(key, auth);
      res = await this.raw(url, { ...headers, Authorization: auth }, opts.method);
      if (res.statusCode === 401) {
        const detail = await errorDetail(res);
        const creds = this.opts.credentials?.(domain);
        throw new RegistryError(
          'unauthorized',
          creds
            ? `registry ${domain} refused access to ${repo} for user ${creds.username} (HTTP 401${detail ? `: ${detail}` : ''})`
            : `registry ${domain} requires authentication for ${repo} (HTTP 401${detail ? `: ${detail}` : ''})`,
          401,
        );
      }
    }
    return res;
  }

  /** The Authorization header value answering a challenge. */
  private async authorize(domain: string, challenge: Challenge | undefined, scope: string): Promise<string> {
    const creds = this.opts.credentials?.(domain);
    const basic = creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : undefined;
    if (!challenge || challenge.scheme === 'basic') {
      if (!basic)
        throw new RegistryError(
          'unauthorized',
          `registry ${domain} requires authentication (HTTP 401) and no credentials were given`,
          401,
        );
      return basic;
    }
    if (challenge.scheme !== 'bearer') {
      throw new RegistryError(
        'unsupported',
        `registry ${domain} asks for unsupported authentication scheme ${challenge.scheme}`,
      );
    }
    const realm = challenge.params.realm;
    if (!realm) throw new RegistryError('invalid', `registry ${domain} sent a bearer challenge without a realm`);
    let tokenUrl: URL;
    try {
      tokenUrl = new URL(realm);
    } catch {
      throw new RegistryError('invalid', `registry ${domain} sent an invalid token realm ${realm}`);
    }
    if (challenge.params.service) tokenUrl.searchParams.set('service', challenge.params.service);
    tokenUrl.searchParams.set('scope', challenge.params.scope || scope);
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (basic) headers.Authorization = basic;
    const res = await this.raw(tokenUrl.toString(), headers);
    const status = res.statusCode ?? 0;
    if (status === 401 || status === 403) {
      const detail = await errorDetail(res);
      throw new RegistryError(
        'unauthorized',
        creds
          ? `token server ${tokenUrl.host} rejected the credentials of ${creds.username} for ${domain} (HTTP ${status}${detail ? `: ${detail}` : ''})`
          : `token server ${tokenUrl.host} refused anonymous access to ${domain} (HTTP ${status}${detail ? `: ${detail}` : ''})`,
        401,
      );
    }
    if (status !== 200) {
      const detail = await errorDetail(res);
      throw new RegistryError(
        status >= 500 ? 'unavailable' : 'invalid',
        `token server ${tokenUrl.host} answered HTTP ${status}${detail ? `: ${detail}` : ''}`,
        status,
      );
    }
    let body: any;
    try {
      body = JSON.parse((await readBody(res, 1024 * 1024, 'token response')).toString('utf8'));
    } catch {
      throw new RegistryError('invalid', `token server ${tokenUrl.host} sent an invalid token response`);
    }
    const token = body?.token ?? body?.access_token;
    if (typeof token !== 'string' || !token)
      throw new RegistryError('invalid', `token server ${tokenUrl.host} sent no token`);
    return `Bearer ${token}`;
  }

  /** Maps a non-success answer to a RegistryError (and consumes the body). */
  private async failure(res: IncomingMessage, what: string, domain: string): Promise<RegistryError> {
    const status = res.statusCode ?? 0;
    const detail = await errorDetail(res);
    const suffix = ` (HTTP ${status}${detail ? `: ${detail}` : ''})`;
    if (status === 404)
      return new RegistryError('not_found', `${what} not found in registry ${domain}${suffix}`, status);
    if (status === 403)
      return new RegistryError('denied', `registry ${domain} denied access to ${what}${suffix}`, status);
    if (status === 429 || status >= 500)
      return new RegistryError('unavailable', `registry ${domain} failed to serve ${what}${suffix}`, status);
    return new RegistryError('invalid', `registry ${domain} refused the request for ${what}${suffix}`, status);
  }

  /** GET with retries of transient failures (manifests, configs, token-protected or not). */
  private async getWithRetries(
    domain: string,
    repo: string,
    path: string,
    headers: Record<string, string>,
    what: string,
  ): Promise<IncomingMessage> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.send(domain, repo, path, { headers });
        const status = res.statusCode ?? 0;
        if (status === 200) return res;
        throw await this.failure(res, what, domain);
      } catch (err) {
        if (attempt < this.maxRetries && isTransient(err)) {
          await delay(this.retryDelayMs * 2 ** attempt);
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * A manifest (or index) by tag or digest. The digest of the bytes is checked against the requested digest, or
   * against the registry's `Docker-Content-Digest` header when fetched by tag.
   */
  async manifest(
    domain: string,
    repo: string,
    reference: string,
    display = `${domain}/${repo}:${reference}`,
  ): Promise<FetchedManifest> {
    const res = await this.getWithRetries(
      domain,
      repo,
      `${repo}/manifests/${reference}`,
      { Accept: MANIFEST_ACCEPT.join(', ') },
      `manifest ${display}`,
    );
    const bytes = await readBody(res, MAX_MANIFEST_BYTES, `manifest ${display}`);
    const digest = sha256(bytes);
    if (reference.includes(':') && reference !== digest) {
      throw new RegistryError(
        'digest_mismatch',
        `manifest ${display}: the registry sent content with digest ${digest}`,
      );
    }
    const header = res.headers['docker-content-digest'];
    if (!reference.includes(':') && typeof header === 'string' && header.startsWith('sha256:') && header !== digest) {
      throw new RegistryError(
        'digest_mismatch',
        `manifest ${display}: registry says ${header} but the content has digest ${digest}`,
      );
    }
    let json: any;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new RegistryError('invalid', `manifest ${display} is not valid JSON`);
    }
    const ct = String(res.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim();
    const mediaType =
      (typeof json?.mediaType === 'string' && json.mediaType) ||
      (MANIFEST_ACCEPT.includes(ct) ? ct : '') ||
      (json?.manifests ? MANIFEST_ACCEPT[0]! : MANIFEST_ACCEPT[2]!);
    if (
      json?.schemaVersion === 1 ||
      /distribution\.manifest\.v1\+/.test(mediaType) ||
      /distribution\.manifest\.v1\+/.test(ct)
    ) {
      throw new RegistryError('unsupported', `manifest ${display} uses Docker schema 1, which is not supported`);
    }
    return { digest, mediaType, bytes, json };
  }

  /** A small blob (an image config) read whole and verified. */
  async smallBlob(domain: string, repo: string, digest: string, max: number, what: string): Promise<Buffer> {
    const res = await this.getWithRetries(domain, repo, `${repo}/blobs/${digest}`, {}, what);
    const bytes = await readBody(res, max, what);
    const actual = sha256(bytes);
    if (digest.startsWith('sha256:') && actual !== digest) {
      throw new RegistryError(
        'digest_mismatch',
        `${what} failed verification: expected ${digest}, the registry sent content with digest ${actual}`,
      );
    }
    return bytes;
  }

  /**
   * The bytes of a blob from `from` on. A dropped connection (or a 5xx) is retried with a `Range` request from the
   * last byte received; more bytes than `size` is an error. `onRetry` reports each resumption.
   */
  async *blob(
    domain: string,
    repo: string,
    digest: string,
    size: number,
    from = 0,
    onRetry?: (offset: number, attempt: number, err: unknown) => void,
  ): AsyncGenerator<Buffer> {
    let offset = from;
    let attempt = 0;
    const what = `blob ${digest}`;
    while (offset < size) {
      let res: IncomingMessage | undefined;
      try {
        const headers: Record<string, string> = {};
        if (offset > 0) headers.Range = `bytes=${offset}-`;
        res = await this.send(domain, repo, `${repo}/blobs/${digest}`, { headers, range: true });
        const status = res.statusCode ?? 0;
        let skip = 0;
        if (status === 206) {
          const m = /bytes\s+(\d+)-/.exec(String(res.headers['content-range'] ?? ''));
          if (m && Number(m[1]) !== offset) {
            drain(res);
            throw new RegistryError(
              'invalid',
              `registry ${domain} answered a range request for ${what} from ${offset} with bytes from ${m[1]}`,
            );
          }
        } else if (status === 200) {
          skip = offset; // the registry ignored Range: drop what we already have
        } else if (status === 416 && offset >= size) {
          drain(res);
          return;
        } else {
          throw await this.failure(res, what, domain);
        }
        let progressed = false;
        for await (let chunk of res as AsyncIterable<Buffer>) {
          if (skip > 0) {
            if (chunk.length <= skip) {
              skip -= chunk.length;
              continue;
            }
            chunk = chunk.subarray(skip);
            skip = 0;
          }
          if (offset + chunk.length > size) {
            res.destroy();
            throw new RegistryError(
              'digest_mismatch',
              `${what} failed verification: the registry sent more than the ${size} bytes its descriptor announces`,
            );
          }
          offset += chunk.length;
          progressed = true;
          yield chunk;
        }
        if (progressed) attempt = 0;
        if (offset < size) {
          throw Object.assign(new Error(`connection closed after ${offset} of ${size} bytes`), { code: 'ECONNRESET' });
        }
        return;
      } catch (err) {
        res?.destroy();
        if (attempt < this.maxRetries && isTransient(err)) {
          onRetry?.(offset, attempt + 1, err);
          await delay(this.retryDelayMs * 2 ** attempt);
          attempt++;
          continue;
        }
        if (err instanceof RegistryError) throw err;
        throw new RegistryError(
          'unavailable',
          `downloading ${what} from ${domain} failed after ${offset} of ${size} bytes: ${(err as Error).message}`,
          undefined,
          { cause: err },
        );
      }
    }
  }

  /** `GET /v2/_catalog` (used by image search); registries may refuse it. */
  async catalog(domain: string, max = 1000): Promise<string[]> {
    const url = `${this.baseUrl(domain)}/v2/_catalog?n=${max}`;
    let res = await this.raw(url, {});
    if (res.statusCode === 401) {
      const challenge = parseChallenge(res.headers['www-authenticate'] as string | undefined);
      drain(res);
      const auth = await this.authorize(domain, challenge, 'registry:catalog:*');
      res = await this.raw(url, { Authorization: auth });
    }
    if (res.statusCode !== 200) throw await this.failure(res, 'the repository catalog', domain);
    const body = JSON.parse((await readBody(res, 16 * 1024 * 1024, 'catalog')).toString('utf8'));
    return Array.isArray(body?.repositories) ? body.repositories : [];
  }

  /** Docker Hub's search (`index.docker.io/v1/search`). */
  async hubSearch(term: string, limit = 25): Promise<any[]> {
    const res = await this.raw(`https://index.docker.io/v1/search?q=${encodeURIComponent(term)}&n=${limit}`, {
      Accept: 'application/json',
    });
    if (res.statusCode !== 200) throw await this.failure(res, `search results for ${term}`, 'docker.io');
    const body = JSON.parse((await readBody(res, 16 * 1024 * 1024, 'search results')).toString('utf8'));
    return Array.isArray(body?.results) ? body.results : [];
  }
}
