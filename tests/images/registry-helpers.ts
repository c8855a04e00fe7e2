/**
 * Registries for the image tests: the real Debian `docker-registry` on a free loopback port (anonymous, token auth
 * with a tiny token server, or htpasswd basic auth), a proxy that cuts connections mid-blob, and a fake registry
 * serving a corrupt blob. Everything listens on 127.0.0.1 and is stopped and removed by `stop()`.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createHash, createSign, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { hashSync } from '@node-rs/bcrypt';
import { tarBuffer } from '../../src/images/tar-writer.js';
import { freePort, sleep } from '../helpers/krater.js';

export interface RunningRegistry {
  port: number;
  /** `127.0.0.1:<port>` */
  host: string;
  dir: string;
  /** Requests the token server answered (token auth only). */
  tokenRequests: { authorization?: string; scope?: string }[];
  stop(): Promise<void>;
}

export interface RegistryOptions {
  auth?: { kind: 'token' | 'basic'; username: string; password: string };
}

function listen(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : 0);
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((r) => {
    server.closeAllConnections?.();
    server.close(() => r());
  });
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A JWT for docker-registry's `auth: token` (RS256, the signing certificate in `x5c`). */
function registryJwt(keyPem: string, certDer: Buffer, claims: Record<string, unknown>): string {
  const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = createSign('RSA-SHA256').update(input).sign(keyPem);
  return `${input}.${b64url(sig)}`;
}

/** Starts `docker-registry serve` on a free loopback port with its own storage dir. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const dir = mkdtempSync('/tmp/krt-reg-');
  try {
    return await launchRegistry(dir, opts);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function launchRegistry(dir: string, opts: RegistryOptions): Promise<RunningRegistry> {
  const port = await freePort();
  const tokenRequests: RunningRegistry['tokenRequests'] = [];
  let tokenServer: Server | undefined;
  const config: Record<string, any> = {
    version: 0.1,
    log: { level: 'error', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: join(dir, 'data') }, delete: { enabled: true } },
    http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex') },
  };
  if (opts.auth?.kind === 'basic') {
    const file = join(dir, 'htpasswd');
    writeFileSync(
      file,
      `${opts.auth.username}:${hashSync(opts.auth.password, { cost: 4 }).replace(/^\$2b\$/, '$2y$')}\n`,
    );
    config.auth = { htpasswd: { realm: 'krater-test', path: file } };
  } else if (opts.auth?.kind === 'token') {
    const keyFile = join(dir, 'token.key');
    const certFile = join(dir, 'token.crt');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '1',
        '-subj',
        '/CN=krater-test-token',
      ],
      { stdio: 'ignore' },
    );
    const keyPem = readFileSync(keyFile, 'utf8');
    const certDer = Buffer.from(
      readFileSync(certFile, 'utf8')
        .replace(/-----[^-]+-----/g, '')
        .replace(/\s+/g, ''),
      'base64',
    );
    const { username, password } = opts.auth;
    tokenServer = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const scope = url.searchParams.get('scope') ?? undefined;
      tokenRequests.push({ authorization: req.headers.authorization, scope });
      const expected = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
      if (req.headers.authorization !== expected) {
        res
          .writeHead(401, { 'Content-Type': 'application/json' })
          .end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
        return;
      }
      const access = (scope ?? '')
        .split(' ')
        .filter(Boolean)
        .map((s) => {
          const [type, ...rest] = s.split(':');
          const actions = rest.pop()!.split(',');
          return { type, name: rest.join(':'), actions };
        });
      const now = Math.floor(Date.now() / 1000);
      const token = registryJwt(keyPem, certDer, {
        iss: 'krater-test-issuer',
        sub: username,
        aud: 'krater-test-registry',
        exp: now + 300,
        nbf: now - 10,
        iat: now,
        jti: randomUUID(),
        access,
      });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
    });
    const tport = await listen(tokenServer);
    config.auth = {
      token: {
        realm: `http://127.0.0.1:${tport}/token`,
        service: 'krater-test-registry',
        issuer: 'krater-test-issuer',
        rootcertbundle: certFile,
      },
    };
  }
  const cfgFile = join(dir, 'config.yml');
  writeFileSync(cfgFile, JSON.stringify(config));
  mkdirSync(join(dir, 'data'));
  const proc: ChildProcess = spawn('docker-registry', ['serve', cfgFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (c) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(5000).then(() => proc.kill('SIGKILL'))]);
    }
    if (tokenServer) await close(tokenServer);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = request(`http://127.0.0.1:${port}/v2/`, (res) => {
        res.resume();
        resolve((res.statusCode ?? 0) > 0);
      });
      req.on('error', () => resolve(false));
      req.end();
    });
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`docker-registry did not start: ${stderr}`);
    }
    await sleep(50);
  }
  return { port, host: `127.0.0.1:${port}`, dir, tokenRequests, stop };
}

/**
 * `skopeo copy` of an archive (`oci-archive:…`, `docker-archive:…`, `oci:dir:tag`) to the registry. Asynchronous:
 * the token server of an auth-protected registry runs in this process and must keep answering.
 */
export function skopeoPush(src: string, dest: string, opts: { creds?: string; all?: boolean } = {}): Promise<void> {
  const args = ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false'];
  if (opts.all) args.push('--all');
  if (opts.creds) args.push('--dest-creds', opts.creds);
  args.push(src, `docker://${dest}`);
  return new Promise((resolve, reject) => {
    execFile('skopeo', args, { timeout: 60_000 }, (err, _out, stderr) =>
      err ? reject(new Error(`skopeo ${args.join(' ')}: ${stderr || err.message}`)) : resolve(),
    );
  });
}

export const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface ProxyLog {
  method: string;
  path: string;
  range?: string;
}

/**
 * An HTTP proxy in front of a registry. `cut(path)` says after how many body bytes to drop the connection of a
 * response (undefined: pass it through); every request is logged.
 */
export async function startProxy(
  targetPort: number,
  cut: (req: IncomingMessage, nth: number) => number | undefined,
): Promise<{ port: number; host: string; log: ProxyLog[]; stop(): Promise<void> }> {
  const log: ProxyLog[] = [];
  const seen = new Map<string, number>();
  const server = createServer((req, res: ServerResponse) => {
    const path = req.url ?? '/';
    log.push({ method: req.method ?? 'GET', path, range: req.headers.range });
    const nth = (seen.get(path) ?? 0) + 1;
    seen.set(path, nth);
    const limit = cut(req, nth);
    const up = request(
      {
        host: '127.0.0.1',
        port: targetPort,
        method: req.method,
        path,
        headers: { ...req.headers, host: `127.0.0.1:${targetPort}` },
      },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        if (limit === undefined) {
          ur.pipe(res);
          return;
        }
        let sent = 0;
        ur.on('data', (chunk: Buffer) => {
          if (sent >= limit) return;
          const part = chunk.subarray(0, limit - sent);
          sent += part.length;
          res.write(part);
          if (sent >= limit) {
            // Flush what was written, then close the connection mid-body (the client sees a short response).
            res.socket?.end();
            ur.destroy();
          }
        });
        ur.on('end', () => res.end());
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  const port = await listen(server);
  return { port, host: `127.0.0.1:${port}`, log, stop: () => close(server) };
}

/**
 * A minimal read-only registry serving one image from memory; `corrupt` replaces a blob's bytes (same size) so its
 * digest no longer matches.
 */
export async function startFakeRegistry(
  blobs: Map<string, Buffer>,
  manifests: Map<string, { mediaType: string; body: Buffer }>,
  opts: { corrupt?: string } = {},
): Promise<{ port: number; host: string; blobGets: string[]; stop(): Promise<void> }> {
  const blobGets: string[] = [];
  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/v2/' || url === '/v2') {
      res.writeHead(200, { 'Docker-Distribution-Api-Version': 'registry/2.0' }).end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/?]+)$/.exec(url);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    if (m[2] === 'manifests') {
      const man = manifests.get(`${m[1]}:${m[3]}`) ?? [...manifests.values()].find((x) => sha256(x.body) === m[3]);
      if (!man) {
        res
          .writeHead(404, { 'Content-Type': 'application/json' })
          .end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
        return;
      }
      res
        .writeHead(200, {
          'Content-Type': man.mediaType,
          'Docker-Content-Digest': sha256(man.body),
          'Content-Length': man.body.length,
        })
        .end(man.body);
      return;
    }
    let blob = blobs.get(m[3]!);
    if (!blob) {
      res.writeHead(404).end();
      return;
    }
    blobGets.push(m[3]!);
    if (opts.corrupt === m[3]) {
      blob = Buffer.from(blob);
      blob[Math.floor(blob.length / 2)] ^= 0xff;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.length }).end(blob);
  });
  const port = await listen(server);
  return { port, host: `127.0.0.1:${port}`, blobGets, stop: () => close(server) };
}

export interface TestImage {
  /** digest → bytes: layer(s), config, manifest. */
  blobs: Map<string, Buffer>;
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  layerDigests: string[];
  diffIds: string[];
}

/**
 * A tiny single-layer OCI image built in memory: one gzip layer holding `files` (unique content gives unique
 * digests), a config for `arch`, an OCI manifest.
 */
export function buildTestImage(
  files: Record<string, string>,
  opts: { arch?: string; layers?: Buffer[]; diffIds?: string[] } = {},
): TestImage {
  const blobs = new Map<string, Buffer>();
  let layers = opts.layers;
  let diffIds = opts.diffIds;
  if (!layers) {
    const tar = tarBuffer(Object.entries(files).map(([name, data]) => ({ name, data, size: 0, mode: 0o644 })));
    layers = [gzipSync(tar)];
    diffIds = [sha256(tar)];
  }
  const layerDigests = layers.map((l) => {
    const d = sha256(l);
    blobs.set(d, l);
    return d;
  });
  const config = Buffer.from(
    JSON.stringify({
      architecture: opts.arch ?? 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
    }),
  );
  const configDigest = sha256(config);
  blobs.set(configDigest, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l, i) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: layerDigests[i],
        size: l.length,
      })),
    }),
  );
  const manifestDigest = sha256(manifest);
  blobs.set(manifestDigest, manifest);
  return { blobs, manifest, manifestDigest, config, configDigest, layerDigests, diffIds: diffIds! };
}

/** Writes blobs and a top-level index.json (one entry named `ref`) as an OCI layout directory. */
export function writeOciLayout(
  dir: string,
  blobs: Map<string, Buffer>,
  top: { mediaType: string; digest: string; size: number },
  ref: string,
): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  for (const [d, b] of blobs) writeFileSync(join(dir, 'blobs', 'sha256', d.slice(7)), b);
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': ref } }],
    }),
  );
}
