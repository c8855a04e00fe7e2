/**
 * Regressions of issue 10 items 7–9, each as the caller meets it over HTTP: the 500s any member could trigger,
 * errors raised before routing in the service's envelope, and input that cannot be stored as sent refused with 400.
 *
 *   npx vitest run tests/security/hygiene.test.ts
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { startCloud } from '../containers/fixtures.js';
import type { Krater } from '../helpers/krater.js';
import { type RawResult, rawRequest } from './raw-http.js';
import { envelopeProblem, type ServiceName } from './routes.js';
import { type Tenant, twoTenants } from './tenants.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 300_000 });

const ZUN = { 'OpenStack-API-Version': 'container 1.40' };

describe('input hygiene and the 500s of issue 10', () => {
  let k: Krater;
  let admin = '';
  let member: Tenant;

  const req = (method: string, path: string, opts: Parameters<typeof rawRequest>[3] = {}) =>
    rawRequest(k.port, method, path, opts);
  const expectError = (service: ServiceName, r: RawResult, status: number, message?: RegExp) => {
    const what = `${r.status} ${r.text.slice(0, 400)}`;
    expect(r.status, what).toBe(status);
    expect(envelopeProblem(service, r), what).toBeUndefined();
    if (message) expect(r.text, what).toMatch(message);
  };

  beforeAll(async () => {
    k = await startCloud({ KRATER_NETWORKING: 'none' });
    admin = (await k.passwordToken()).token;
    ({ a: member } = await twoTenants(k, admin));
  });
  afterAll(async () => {
    await k?.destroy();
  });

  test('system role grants of users and groups: listed for the admin, 403 for a member (was PolicyNotRegistered)', async () => {
    const g = await req('POST', '/identity/v3/groups', { token: admin, body: { group: { name: 'sysgroup' } } });
    expect(g.status).toBe(201);
    for (const path of [
      `/identity/v3/system/users/${member.userId}/roles`,
      `/identity/v3/system/groups/${g.json.group.id}/roles`,
    ]) {
      const r = await req('GET', path, { token: admin });
      expect(r.status, r.text).toBe(200);
      expect(r.json.roles).toEqual([]);
      expectError('keystone', await req('GET', path, { token: member.token }), 403);
    }
  });

  test('repeated query parameters: Zun lists and registries 400, Keystone takes the first', async () => {
    for (const q of ['name=a&name=b', 'image=a&image=b', 'status=Running&status=Stopped', 'project_id=a&project_id=b'])
      expectError(
        'zun',
        await req('GET', `/container/v1/containers?${q}`, { token: member.token, headers: ZUN }),
        400,
        /repeated/,
      );
    expectError(
      'zun',
      await req('GET', '/container/v1/registries?name=a&name=b', { token: member.token, headers: ZUN }),
      400,
    );
    const p = await req('GET', '/identity/v3/projects?name=admin&name=nosuch', { token: admin });
    expect(p.status, p.text).toBe(200);
    expect(p.json.projects.map((x: any) => x.name)).toEqual(['admin']);
  });

  test('deeply nested bodies are 400 in every service (Glance create 5,000 deep; PATCH unknown keys 2,000 deep)', async () => {
    const deep = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    expectError(
      'glance',
      await req('POST', '/image/v2/images', { token: member.token, body: deep(5000) }),
      400,
      /deeper/,
    );
    const img = await req('POST', '/image/v2/images', {
      token: member.token,
      body: { name: 'hygiene', container_format: 'bare', disk_format: 'raw' },
    });
    expect(img.status).toBe(201);
    const patch = `[{"op":"add","path":"/x_deep","value":${deep(2000)}}]`;
    expectError(
      'glance',
      await req('PATCH', `/image/v2/images/${img.json.id}`, {
        token: member.token,
        body: patch,
        headers: { 'Content-Type': 'application/openstack-images-v2.1-json-patch' },
      }),
      400,
    );
    expectError(
      'keystone',
      await req('PATCH', `/identity/v3/projects/${member.projectId}`, {
        token: admin,
        body: `{"project":{"zz_unknown":${deep(2000)}}}`,
      }),
      400,
      /deeper/,
    );
    const p = await req('GET', `/identity/v3/projects/${member.projectId}`, { token: admin });
    expect(p.json.project.zz_unknown).toBeUndefined();
    expectError('neutron', await req('POST', '/network/v2.0/networks', { token: member.token, body: deep(5000) }), 400);
    expectError(
      'zun',
      await req('POST', '/container/v1/containers', { token: member.token, headers: ZUN, body: deep(5000) }),
      400,
    );
  });

  test('image search with no registry reachable: 503 with the reason, in Zun envelope', async () => {
    const r = await req('GET', '/container/v1/images/busybox/search', { token: member.token, headers: ZUN });
    expectError('zun', r, 503, /Cannot search image/);
  });

  test('put_archive refuses ../, absolute and escaping symlink entries with the reason', async () => {
    const c = await req('POST', '/container/v1/containers?run=false', {
      token: member.token,
      headers: ZUN,
      body: { image: 'busybox', name: 'archive-target' },
    });
    expect(c.status, c.text).toBe(202);
    const tar = (build: (d: string) => void, args: string[]) => {
      const d = mkdtempSync(join(tmpdir(), 'krater-hyg-'));
      try {
        build(d);
        return execFileSync('tar', ['-C', d, '-cf', '-', ...args]).toString('base64');
      } finally {
        rmSync(d, { recursive: true, force: true });
      }
    };
    const cases: Array<[string, RegExp]> = [
      [tar((d) => writeFileSync(join(d, 'x'), 'x'), ['--transform', 's,^,../../,', 'x']), /'\.\.\/\.\.\/x'/],
      [tar((d) => writeFileSync(join(d, 'x'), 'x'), ['-P', '--transform', 's,^,/etc/,', 'x']), /'\/etc\/x'/],
      [tar((d) => symlinkSync('/etc', join(d, 'etc')), ['etc']), /symbolic link 'etc' points to '\/etc'/],
    ];
    for (const [data, reason] of cases)
      expectError(
        'zun',
        await req('POST', `/container/v1/containers/${c.json.uuid}/put_archive?path=/tmp`, {
          token: member.token,
          headers: ZUN,
          body: { data },
        }),
        400,
        reason,
      );
    await req('DELETE', `/container/v1/containers/${c.json.uuid}?force=True`, { token: member.token, headers: ZUN });
  });

  test("errors raised before routing come in the envelope of the path's service", async () => {
    const prefixes: Array<[ServiceName, string]> = [
      ['keystone', '/identity/v3/users'],
      ['zun', '/container/v1/containers'],
      ['neutron', '/network/v2.0/networks'],
      ['glance', '/image/v2/images'],
    ];
    for (const [service, prefix] of prefixes) {
      const headers = service === 'zun' ? ZUN : {};
      expectError(service, await req('GET', `${prefix}/%zz`, { token: admin, headers }), 400, /percent-encoding/);
      expectError(service, await req('GET', `${prefix}/${'x'.repeat(3000)}`, { token: admin, headers }), 414);
      expectError(
        service,
        await req('GET', prefix, { token: admin, headers: { ...headers, 'X-Big': 'a'.repeat(60_000) } }),
        431,
      );
      expectError(service, await req('GET', `${prefix}?q=${'a'.repeat(70_000)}`, { token: admin, headers }), 431);
      // Ids of 200 characters are ordinary misses.
      expectError(service, await req('GET', `${prefix}/${'x'.repeat(200)}`, { token: admin, headers }), 404);
    }
  });

  test('names: lone surrogates, NUL and control characters refused in every service; unicode kept as sent', async () => {
    const bad = ['a\\ud800b', 'a\\udc00', 'a\\u0000b', 'a\\u0007b', 'a\\u001bb', 'a\\nb'];
    for (const s of bad) {
      expectError(
        'keystone',
        await req('POST', '/identity/v3/projects', { token: admin, body: `{"project":{"name":"${s}"}}` }),
        400,
      );
      expectError(
        'keystone',
        await req('POST', '/identity/v3/users', { token: admin, body: `{"user":{"name":"${s}"}}` }),
        400,
      );
      expectError(
        'neutron',
        await req('POST', '/network/v2.0/networks', { token: member.token, body: `{"network":{"name":"${s}"}}` }),
        400,
      );
      expectError(
        'glance',
        await req('POST', '/image/v2/images', { token: member.token, body: `{"name":"${s}"}` }),
        400,
      );
      expectError(
        'zun',
        await req('POST', '/container/v1/registries', {
          token: member.token,
          headers: ZUN,
          body: `{"registry":{"name":"${s}","domain":"r.example","username":"u","password":"p"}}`,
        }),
        400,
      );
    }
    // NUL anywhere (PostgreSQL cannot store it), in bodies, path parameters and filters.
    expectError(
      'glance',
      await req('POST', '/image/v2/images', { token: member.token, body: '{"name":"ok","x_prop":"a\\u0000b"}' }),
      400,
    );
    expectError('neutron', await req('GET', '/network/v2.0/networks?name=a%00b', { token: member.token }), 400);
    expectError(
      'neutron',
      await req('PUT', '/network/v2.0/networks/x/tags/a%00b', { token: member.token }),
      400,
      /path parameter 'tag'/,
    );
    // Bytes that are not UTF-8 would be stored as U+FFFD: refused.
    expectError(
      'neutron',
      await req('POST', '/network/v2.0/networks', {
        token: member.token,
        body: Buffer.concat([Buffer.from('{"network":{"name":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}')]),
      }),
      400,
      /UTF-8/,
    );
    // What can be stored is stored exactly as sent.
    const name = 'réseau 💥 名前 \u{1d11e}';
    const n = await req('POST', '/network/v2.0/networks', { token: member.token, body: { network: { name } } });
    expect(n.status, n.text).toBe(201);
    const back = await req('GET', `/network/v2.0/networks/${n.json.network.id}`, { token: member.token });
    expect(back.json.network.name).toBe(name);
    const p = await req('POST', '/identity/v3/projects', { token: admin, body: { project: { name } } });
    expect(p.status, p.text).toBe(201);
    expect((await req('GET', `/identity/v3/projects/${p.json.project.id}`, { token: admin })).json.project.name).toBe(
      name,
    );
  });
});
