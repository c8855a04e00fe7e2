/**
 * Tenant isolation over every route of every service: project A's member makes one object of each kind, then
 * project B's member calls every route of `/openapi.json` with A's ids and names in the path and in query filters,
 * with and without `all_projects` / `all_tenants`, and the same routes with ids that do not exist. B must never get
 * a 2xx that shows or changes A's object, and "A's object" must answer exactly as "no such object" does (no
 * existence oracle). A's objects must be intact afterwards. Every violation is collected and reported at once.
 *
 *   npx vitest run tests/security/isolation.test.ts
 *   KRATER_ISOLATION_ALL=1 npx vitest run tests/security/isolation.test.ts   # also the cases other items fix
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { startCloud } from '../containers/fixtures.js';
import type { Krater } from '../helpers/krater.js';
import { pool, type RawResult, rawRequest, seeded } from './raw-http.js';
import { collectionOf, fill, plausibleBody, type Route, routesOf } from './routes.js';
import { makeObjects, type Tenant, type TenantObjects, twoTenants } from './tenants.js';

vi.setConfig({ testTimeout: 600_000, hookTimeout: 300_000 });

const ZUN = { 'OpenStack-API-Version': 'container 1.40' };
const SCOPES = ['', 'all_projects=True', 'all_tenants=1'];

/** Which of A's values a path parameter takes, from the collection it follows or its own name. */
function aValue(route: Route, param: string, o: TenantObjects, a: Tenant): string | undefined {
  const coll = collectionOf(route.path, param);
  if (coll === 'tags' || param === 'tag') return o.names.tags;
  if (coll === 'quotas' || param === 'project') return a.projectId;
  if (route.service === 'keystone' && (coll === 'users' || param === 'user_id')) return a.userId;
  if (route.service === 'keystone' && coll === 'projects') return a.projectId;
  if (coll === 'images' && route.service === 'zun') return undefined; // Zun's image records are the admin's
  return o.ids[coll];
}

/** Filters that name A's objects, for list routes. */
function filtersFor(route: Route, o: TenantObjects, a: Tenant): string[] {
  const coll = route.path.split('/').pop() ?? '';
  const out = [`project_id=${a.projectId}`, `tenant_id=${a.projectId}`];
  if (o.ids[coll]) out.push(`id=${o.ids[coll]}`);
  if (o.names[coll]) out.push(`name=${encodeURIComponent(o.names[coll])}`);
  if (route.service === 'glance') out.push(`owner=${a.projectId}`, `tag=${o.names.tags}`, 'visibility=all');
  if (route.service === 'neutron') out.push(`tags=${o.names.tags}`, `network_id=${o.ids.networks}`);
  if (route.service === 'keystone') out.push(`user_id=${a.userId}`, `scope.project.id=${a.projectId}`);
  return out;
}

describe('tenant isolation over every route', () => {
  let k: Krater;
  let admin = '';
  let a: Tenant;
  let b: Tenant;
  let o: TenantObjects;
  let routes: Route[] = [];

  beforeAll(async () => {
    k = await startCloud({ KRATER_NETWORKING: 'none' });
    admin = (await k.passwordToken()).token;
    ({ a, b } = await twoTenants(k, admin));
    o = await makeObjects(k, admin, a);
    routes = routesOf((await rawRequest(k.port, 'GET', '/openapi.json')).json);
  });

  afterAll(async () => {
    if (!k) return;
    if (o?.ids.containers)
      await rawRequest(k.port, 'DELETE', `/container/v1/containers/${o.ids.containers}?force=True`, {
        token: admin,
        headers: ZUN,
      }).catch(() => undefined);
    await k.destroy();
  });

  test("B never sees or changes A's objects, and A's ids answer as missing ones do", async () => {
    expect(routes.length).toBeGreaterThan(300);
    expect(o.skipped, 'every kind of object could be made').toEqual([]);
    const rng = seeded(4242);
    const violations: string[] = [];
    const call = (method: string, target: string, body: unknown, service: Route['service']) =>
      rawRequest(k.port, method, target, {
        token: b.token,
        headers: service === 'zun' ? ZUN : {},
        body: body as object | undefined,
        readMs: 2000,
      });
    const leaked = (r: RawResult, target: string) =>
      o.markers.filter((m) => r.text.includes(m) && !decodeURIComponent(target).includes(m));

    interface Probe {
      route: Route;
      mine: string;
      missing?: string;
      body: unknown;
    }
    const probes: Probe[] = [];
    for (const route of routes) {
      const body = ['POST', 'PUT', 'PATCH'].includes(route.method) ? plausibleBody(route) : undefined;
      if (route.params.length === 0) {
        // No object in the path: B's own view, filtered by A's ids and names, must not contain A's objects.
        const filters = route.method === 'GET' ? ['', ...filtersFor(route, o, a)] : [''];
        for (const f of filters)
          for (const s of SCOPES) {
            const q = [f, s].filter(Boolean).join('&');
            probes.push({ route, mine: q ? `${route.path}?${q}` : route.path, body });
          }
        continue;
      }
      const mine: Record<string, string> = {};
      const missing: Record<string, string> = {};
      let owned = false;
      for (const p of route.params) {
        const v = aValue(route, p, o, a);
        if (v) owned = true;
        mine[p] = v ?? rng.uuid();
        missing[p] = v ? (p === 'tag' ? `nosuchtag${rng.int(1e6)}` : rng.uuid()) : mine[p];
      }
      if (!owned) continue;
      const variants: Array<[Record<string, string>, Record<string, string>]> = [[mine, missing]];
      // Zun containers also answer by name.
      if (route.service === 'zun' && route.params.includes('id') && route.path.includes('/containers/{id}'))
        variants.push([
          { ...mine, id: o.names.containers },
          { ...missing, id: `nosuch-${rng.int(1e9)}` },
        ]);
      for (const [m, x] of variants)
        for (const s of SCOPES) {
          const q = s ? `?${s}` : '';
          probes.push({ route, mine: `${fill(route.path, m)}${q}`, missing: `${fill(route.path, x)}${q}`, body });
        }
    }
    // Reads first, deletes last: a write that wrongly succeeded must not hide later findings.
    const order = (p: Probe) => ({ GET: 0, POST: 1, PUT: 1, PATCH: 1, DELETE: 2 })[p.route.method] ?? 1;
    probes.sort((x, y) => order(x) - order(y));

    for (const phase of [0, 1, 2]) {
      await pool(
        probes.filter((p) => order(p) === phase),
        4,
        async (p) => {
          const label = `${p.route.method} ${p.mine}`;
          const r = await call(p.route.method, p.mine, p.body, p.route.service);
          if (r.status >= 500) violations.push(`${label}: ${r.status} ${r.text.slice(0, 200)}`);
          if (p.missing === undefined) {
            if (r.status < 300) {
              const seen = leaked(r, p.mine);
              if (seen.length) violations.push(`${label}: ${r.status} shows A's ${seen.join(', ')}`);
            }
            return;
          }
          if (r.status < 300) violations.push(`${label}: ${r.status} on A's object ${r.text.slice(0, 200)}`);
          const x = await call(p.route.method, p.missing, p.body, p.route.service);
          if (x.status !== r.status)
            violations.push(
              `${label}: ${r.status} for A's object but ${x.status} for a missing one (${p.missing}) — ${r.text.slice(0, 160)} | ${x.text.slice(0, 160)}`,
            );
        },
      );
    }

    // A's objects are all still there, unchanged in name.
    const show: Array<[string, string, Record<string, string>?]> = [
      [`/network/v2.0/networks/${o.ids.networks}`, o.names.networks],
      [`/network/v2.0/ports/${o.ids.ports}`, o.names.ports],
      [`/network/v2.0/routers/${o.ids.routers}`, o.names.routers],
      [`/network/v2.0/security-groups/${o.ids['security-groups']}`, o.names['security-groups']],
      [`/network/v2.0/subnets/${o.ids.subnets}`, o.names.subnets],
      [`/network/v2.0/subnetpools/${o.ids.subnetpools}`, o.names.subnetpools],
      [`/image/v2/images/${o.ids.images}`, o.names.images],
      [`/container/v1/containers/${o.ids.containers}`, o.names.containers, ZUN],
      [`/container/v1/registries/${o.ids.registries}`, o.names.registries, ZUN],
      [
        `/identity/v3/users/${a.userId}/application_credentials/${o.ids.application_credentials}`,
        o.names.application_credentials,
      ],
    ];
    for (const [path, name, headers] of show) {
      const r = await rawRequest(k.port, 'GET', path, { token: a.token, headers });
      if (r.status !== 200 || !r.text.includes(name))
        violations.push(`after B's calls, A's ${path}: ${r.status} ${r.text.slice(0, 200)}`);
    }
    const fip = await rawRequest(k.port, 'GET', `/network/v2.0/floatingips/${o.ids.floatingips}`, { token: a.token });
    if (fip.status !== 200) violations.push(`after B's calls, A's floating IP: ${fip.status}`);

    process.stderr.write(`[isolation] ${probes.length} probes; ${violations.length} violations\n`);
    expect(violations, `${violations.length} violations:\n${violations.join('\n')}`).toEqual([]);
  });
});
