/** Small helpers shared by the image tests (on top of tests/helpers/krater.ts). */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { describeHttp, type HttpResult, type Krater } from '../helpers/krater.js';

export const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
export const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');

export interface RawResult {
  status: number;
  headers: Headers;
  body: Buffer;
  json: any;
}

/** Any request with a binary (or streamed) body, returning the body as bytes. */
export async function raw(
  url: string,
  method: string,
  opts: { token?: string; headers?: Record<string, string>; body?: Buffer | ReadableStream<Uint8Array> } = {},
): Promise<RawResult> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers['X-Auth-Token'] = opts.token;
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal: AbortSignal.timeout(60_000) };
  if (opts.body !== undefined) {
    init.body = opts.body as BodyInit;
    if (!(opts.body instanceof Buffer)) init.duplex = 'half';
  }
  const res = await fetch(url, init);
  const body = Buffer.from(await res.arrayBuffer());
  let json: any;
  try {
    json = body.length ? JSON.parse(body.toString('utf8')) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, body, json };
}

export function expectStatus(method: string, url: string, r: HttpResult, status: number): void {
  expect(r.status, describeHttp(method, url, r)).toBe(status);
}

/** Creates a project, a user in it with the `member` role and returns a token scoped to that project. */
export async function projectUser(
  k: Krater,
  adminToken: string,
  name: string,
): Promise<{ projectId: string; userId: string; token: string }> {
  const password = `${name}-Passw0rd!`;
  const p = await k.http('POST', '/identity/v3/projects', {
    token: adminToken,
    body: { project: { name, domain_id: 'default' } },
  });
  expectStatus('POST', '/identity/v3/projects', p, 201);
  const u = await k.http('POST', '/identity/v3/users', {
    token: adminToken,
    body: { user: { name, password, domain_id: 'default', default_project_id: p.json.project.id } },
  });
  expectStatus('POST', '/identity/v3/users', u, 201);
  const roles = await k.http('GET', '/identity/v3/roles?name=member', { token: adminToken });
  const roleId = roles.json?.roles?.[0]?.id;
  expect(roleId, 'the member role exists').toBeTruthy();
  const path = `/identity/v3/projects/${p.json.project.id}/users/${u.json.user.id}/roles/${roleId}`;
  const a = await k.http('PUT', path, { token: adminToken });
  expectStatus('PUT', path, a, 204);
  const { token } = await k.passwordToken(name, password, name);
  return { projectId: p.json.project.id, userId: u.json.user.id, token };
}

/** Files of an image in the data store directory (its data file and any partial upload). */
export function imageFiles(k: Krater, id: string): string[] {
  const dir = join(k.dataDir, 'images');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((n) => n.includes(id));
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
