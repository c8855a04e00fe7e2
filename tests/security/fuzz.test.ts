/**
 * Schema-driven fuzz of every route in `/openapi.json`, as the admin and as a member of another project: bad ids
 * and encodings, odd query strings, bogus microversions, wrong content types, wrong types, missing fields, huge
 * strings and bodies nested 5,000 deep. No answer may be a 5xx, every error must be in the envelope of the service
 * the path belongs to, and the server must still answer afterwards. All failures are collected and reported at once.
 *
 *   npx vitest run tests/security/fuzz.test.ts
 *   KRATER_FUZZ_SEED=7 KRATER_FUZZ_CASES=40 npx vitest run tests/security/fuzz.test.ts   # another, longer run
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { startCloud } from '../containers/fixtures.js';
import type { Krater } from '../helpers/krater.js';
import { casesFor, type FuzzCase, type IdPool } from './fuzz-cases.js';
import { pool, rawRequest, seeded } from './raw-http.js';
import { envelopeProblem, type Route, routesOf, serviceOf } from './routes.js';
import { makeObjects, type Tenant, type TenantObjects, twoTenants } from './tenants.js';

vi.setConfig({ testTimeout: 600_000, hookTimeout: 300_000 });

const SEED = Number(process.env.KRATER_FUZZ_SEED ?? 20240607);
/** Cases per route and identity (sampled from all the route's candidates). */
const CASES = Number(process.env.KRATER_FUZZ_CASES ?? 14);
const CONCURRENCY = 4;

/**
 * Routes left out, with the reason. Each is a route whose legitimate effect would end the run, not a defect.
 */
function excluded(route: Route): string | undefined {
  if (route.method === 'DELETE' && route.path.endsWith('/auth/tokens')) return 'revokes the token the fuzz runs with';
  if (route.path.includes('/services/{action}')) return 'disables the only compute host';
  return undefined;
}

/** 5xx answers that are the right answer here: image search needs Docker Hub, which this machine cannot reach. */
function expected5xx(c: FuzzCase, status: number): boolean {
  return status === 503 && /\/images\/[^/]+\/search(\?|$)/.test(c.target);
}

describe('fuzz of every route in /openapi.json', () => {
  let k: Krater;
  let admin = '';
  let a: Tenant;
  let b: Tenant;
  let objects: TenantObjects;
  let routes: Route[] = [];

  beforeAll(async () => {
    k = await startCloud({ KRATER_NETWORKING: 'none' });
    admin = (await k.passwordToken()).token;
    ({ a, b } = await twoTenants(k, admin));
    objects = await makeObjects(k, admin, a);
    const doc = await rawRequest(k.port, 'GET', '/openapi.json');
    routes = routesOf(doc.json);
  });

  afterAll(async () => {
    if (!k) return;
    // Containers a case may have created (creates carry run=false): removed with their project's token.
    for (const token of [admin, a?.token, b?.token].filter(Boolean) as string[]) {
      const list = await rawRequest(k.port, 'GET', '/container/v1/containers?all_projects=True', {
        token,
        headers: { 'OpenStack-API-Version': 'container 1.40' },
      }).catch(() => undefined);
      for (const c of list?.json?.containers ?? [])
        await rawRequest(k.port, 'DELETE', `/container/v1/containers/${c.uuid}?force=True&stop=True`, {
          token: admin,
          headers: { 'OpenStack-API-Version': 'container 1.40' },
        }).catch(() => undefined);
    }
    await k.destroy();
  });

  test('answers every malformed request with a 4xx in its service envelope, and keeps answering', async () => {
    expect(routes.length).toBeGreaterThan(300);
    const rng = seeded(SEED);
    const ids: IdPool = {};
    for (const [coll, id] of Object.entries(objects.ids)) ids[coll] = [id];
    ids.tag = [objects.names.tags];
    ids.member = [b.projectId];
    ids.project = [a.projectId];
    ids.user_id = [a.userId];

    const failures: string[] = [];
    const seen = new Set<string>();
    const record = (c: FuzzCase, who: string, what: string) => {
      const key = `${c.method} ${c.target.split('?')[0]} ${c.kind} ${what.slice(0, 60)}`;
      if (seen.has(key)) return;
      seen.add(key);
      failures.push(`[${who}] ${c.method} ${c.target.slice(0, 160)} (${c.kind}): ${what}`);
    };

    const jobs: Array<{ c: FuzzCase; who: string; token: string }> = [];
    let skippedRoutes = 0;
    for (const route of routes) {
      if (excluded(route)) {
        skippedRoutes++;
        continue;
      }
      // Zun serves every route twice (under /v1 and version-less): the duplicates get a smaller sample.
      const n = route.path.startsWith('/container/v1') || !route.path.startsWith('/container/') ? CASES : 2;
      for (const [who, token] of [
        ['admin', admin],
        ['member of B', b.token],
      ] as const) {
        for (const c of rng.sample(casesFor(route, rng, ids), n)) jobs.push({ c, who, token });
      }
    }
    // Errors raised before routing, once per service: a header block over the limit, a path parameter too long.
    for (const prefix of [
      '/identity/v3/users',
      '/container/v1/containers',
      '/network/v2.0/networks',
      '/image/v2/images',
    ]) {
      jobs.push({
        c: { kind: '60 KB header', method: 'GET', target: prefix, headers: { 'X-Big': 'a'.repeat(60_000) } },
        who: 'admin',
        token: admin,
      });
      jobs.push({
        c: { kind: 'path parameter too long', method: 'GET', target: `${prefix}/${'x'.repeat(5000)}`, headers: {} },
        who: 'admin',
        token: admin,
      });
      jobs.push({
        c: { kind: 'bad percent-encoding', method: 'GET', target: `${prefix}/%zz`, headers: {} },
        who: 'anonymous',
        token: '',
      });
    }

    let sent = 0;
    await pool(jobs, CONCURRENCY, async ({ c, who, token }) => {
      sent++;
      const service = serviceOf(c.target)!;
      let r: Awaited<ReturnType<typeof rawRequest>>;
      try {
        r = await rawRequest(k.port, c.method, c.target, {
          token: token || undefined,
          headers: c.headers,
          body: c.body,
          readMs: 5000,
        });
      } catch (err) {
        record(c, who, `no answer: ${(err as Error).message}`);
        return;
      }
      if (r.status >= 500 && !expected5xx(c, r.status)) record(c, who, `${r.status} ${r.text.slice(0, 300)}`);
      if (r.status >= 400 && !r.truncated) {
        const problem = envelopeProblem(service, r);
        if (problem) record(c, who, `${r.status} ${problem}: ${r.text.slice(0, 300)}`);
      }
    });

    // Still serving, and the same process.
    expect(k.running, `krater exited during the fuzz\n${k.output().slice(-3000)}`).toBe(true);
    const alive = await rawRequest(k.port, 'GET', '/identity/v3');
    expect(alive.status).toBe(200);

    process.stderr.write(
      `[fuzz] seed ${SEED}: ${sent} requests over ${routes.length - skippedRoutes} routes, ${failures.length} failures\n`,
    );
    expect(failures, `${failures.length} failures (seed ${SEED}):\n${failures.join('\n')}`).toEqual([]);
  });
});
