/**
 * End-to-end: the real Debian `openstack` CLI (python3-openstackclient 6, keystoneauth1 5) against a running
 * `krater up`, once on SQLite and once on PostgreSQL (a private cluster started by scripts/test-postgres.sh unless
 * KRATER_TEST_POSTGRES_URL is set; a fresh database per suite).
 *
 *   npx vitest run tests/e2e
 *
 * The tests of one store share one Krater and run in order: later tests use what earlier ones created.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { describeHttp, describeOsc, type HttpResult, Krater, type OscResult } from '../helpers/krater.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 900_000 });

const REQUEST_ID = /^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const IMPLIED_FROM_ADMIN = ['admin', 'manager', 'member', 'reader'];

const PROJECT = 'e2e-project';
const USER = 'e2e-user';
const GROUP = 'e2e-group';
const ROLE = 'e2e-role';
const ROLE_RENAMED = 'e2e-custom';
const APPCRED = 'e2e-appcred';

/** Fails with the full command, its output and the tail of Krater's log. */
function expectExit(k: Krater, r: OscResult, zero: boolean): void {
  const ok = zero ? r.code === 0 : r.code !== 0;
  if (!ok) {
    throw new Error(
      `expected ${zero ? 'success' : 'failure'}: ${describeOsc(r)}\n--- krater output (tail)\n${k.output().slice(-2000)}`,
    );
  }
}

function expectStatus(method: string, url: string, r: HttpResult, status: number): void {
  expect(r.status, describeHttp(method, url, r)).toBe(status);
}

function expectRequestId(r: HttpResult, what: string): string {
  const id = r.headers.get('x-openstack-request-id') ?? '';
  expect(id, `X-OpenStack-Request-Id on ${what}`).toMatch(REQUEST_ID);
  return id;
}

function sameUrl(a: string | undefined, b: string): boolean {
  return (a ?? '').replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

interface AssignmentRow {
  Role: string;
  User: string;
  Group: string;
  Project: string;
  Domain: string;
  System: string;
  Inherited: boolean;
}

function roleNames(rows: AssignmentRow[]): string[] {
  return [...new Set(rows.map((r) => r.Role))].sort();
}

const stores = [{ store: 'sqlite' }, { store: 'postgres' }] as const;

describe.each(stores)('identity with the openstack CLI on $store', ({ store }) => {
  let k: Krater;
  let db: TestDatabase | undefined;

  // Filled in as the tests go.
  let adminUserId = '';
  let adminProjectId = '';
  let projectId = '';
  let userId = '';
  let groupId = '';
  let roleId = '';
  const userPassword = 'e2e-Passw0rd!';
  const userPassword2 = 'e2e-Passw0rd-2';
  let appcred = { id: '', secret: '' };
  let revokedToken = '';

  beforeAll(async () => {
    if (store === 'postgres') db = await createTestDatabase();
    k = await Krater.start({ database: db?.url });
  });

  afterAll(async () => {
    try {
      await k?.destroy();
    } finally {
      await db?.drop();
    }
  });

  test('discovery: GET /identity → 300, GET /identity/v3 → 200, request ids', async () => {
    const rootUrl = `${k.baseUrl}/identity`;
    const root = await k.http('GET', rootUrl);
    expectStatus('GET', rootUrl, root, 300);
    const values = root.json?.versions?.values;
    expect(Array.isArray(values), describeHttp('GET', rootUrl, root)).toBe(true);
    const v3 = values.find((v: any) => typeof v.id === 'string' && v.id.startsWith('v3'));
    expect(v3, 'a v3 entry in versions.values').toBeTruthy();
    expect(v3.status).toBe('stable');
    expect(v3['media-types']?.[0]?.type).toBe('application/vnd.openstack.identity-v3+json');
    const self = v3.links?.find((l: any) => l.rel === 'self')?.href;
    expect(sameUrl(self, k.identityUrl), `self link ${self} vs ${k.identityUrl}`).toBe(true);
    expect(sameUrl(root.headers.get('location') ?? '', k.identityUrl), 'Location header of the 300').toBe(true);
    const id1 = expectRequestId(root, `GET ${rootUrl}`);

    const v = await k.http('GET', k.identityUrl);
    expectStatus('GET', k.identityUrl, v, 200);
    expect(v.json?.version?.id).toMatch(/^v3\.\d+$/);
    expect(v.json.version.status).toBe('stable');
    expect(v.json.version['media-types']?.[0]?.type).toBe('application/vnd.openstack.identity-v3+json');
    const id2 = expectRequestId(v, `GET ${k.identityUrl}`);
    expect(id2).not.toBe(id1);
  });

  test('bootstrap: admin-password file and the clouds.yaml written by krater', async () => {
    const pwFile = join(k.dataDir, 'admin-password');
    expect(statSync(pwFile).mode & 0o777, 'admin-password mode').toBe(0o600);
    const content = readFileSync(pwFile, 'utf8');
    expect(content.trimEnd().split('\n'), 'admin-password is one line').toHaveLength(1);

    // The state really lives in the store under test.
    if (db) {
      const rows = await db.query(
        "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
      );
      expect(rows[0].n, `tables in PostgreSQL database ${db.name}`).toBeGreaterThan(0);
      expect(existsSync(join(k.dataDir, 'krater.db')), 'no SQLite file when --database is PostgreSQL').toBe(false);
    } else {
      expect(existsSync(join(k.dataDir, 'krater.db')), 'SQLite store in the data dir').toBe(true);
    }

    const clouds = parseYaml(readFileSync(k.kraterCloudsYaml, 'utf8'));
    const cloud = clouds?.clouds?.krater;
    expect(cloud, `cloud "krater" in ${k.kraterCloudsYaml}`).toBeTruthy();
    expect(sameUrl(cloud.auth?.auth_url, k.identityUrl), `auth_url ${cloud.auth?.auth_url}`).toBe(true);
    expect(cloud.auth.username).toBe('admin');
    expect(cloud.auth.password).toBe(k.adminPassword);
    expect(cloud.auth.project_name).toBe('admin');

    // The CLI works with krater's own clouds.yaml.
    const r = await k.osc(['token', 'issue'], { env: { OS_CLIENT_CONFIG_FILE: k.kraterCloudsYaml } });
    expectExit(k, r, true);
    expect(r.json.id).toBeTruthy();
  });

  test('token issue (CLI) and token validation (HTTP)', async () => {
    const t = await k.oscOk(['token', 'issue']);
    expect(t.id, 'token id').toMatch(/^\S{16,}$/);
    expect(t.project_id).toBeTruthy();
    expect(t.user_id).toBeTruthy();
    expect(t.expires).toBeTruthy();
    adminUserId = t.user_id;
    adminProjectId = t.project_id;

    const url = `${k.identityUrl}/auth/tokens`;
    const headers = { 'X-Subject-Token': t.id };
    const r = await k.http('GET', url, { token: t.id, headers });
    expectStatus('GET', url, r, 200);
    expect(r.headers.get('x-subject-token')).toBe(t.id);
    const tok = r.json.token;
    expect(tok.user).toMatchObject({ id: adminUserId, name: 'admin', domain: { id: 'default', name: 'Default' } });
    expect(tok.project).toMatchObject({ id: adminProjectId, name: 'admin', domain: { id: 'default' } });
    expect(tok.methods).toEqual(['password']);
    expect(tok.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(tok.roles.map((x: any) => x.name).sort()).toEqual(expect.arrayContaining(IMPLIED_FROM_ADMIN));
    expect(tok.catalog.some((s: any) => s.type === 'identity')).toBe(true);
    expectRequestId(r, `GET ${url}`);

    const head = await k.http('HEAD', url, { token: t.id, headers });
    expectStatus('HEAD', url, head, 200);
  });

  test('projects: create, list, show, set, delete; duplicate → 409', async () => {
    const p = await k.oscOk(['project', 'create', '--domain', 'default', '--description', 'E2E project', PROJECT]);
    expect(p).toMatchObject({ name: PROJECT, domain_id: 'default', description: 'E2E project', enabled: true });
    expect(p.id).toBeTruthy();
    projectId = p.id;

    const dup = await k.osc(['project', 'create', '--domain', 'default', PROJECT]);
    expectExit(k, dup, false);
    expect(dup.stderr).toMatch(/HTTP 409/);

    await k.oscOk(['project', 'create', '--domain', 'default', 'e2e-scratch']);
    const list = await k.oscOk(['project', 'list']);
    expect(list.map((x: any) => x.Name)).toEqual(expect.arrayContaining(['admin', 'service', PROJECT, 'e2e-scratch']));

    await k.oscOk(['project', 'set', '--description', 'changed', '--disable', 'e2e-scratch']);
    const shown = await k.oscOk(['project', 'show', 'e2e-scratch']);
    expect(shown).toMatchObject({ name: 'e2e-scratch', description: 'changed', enabled: false, domain_id: 'default' });

    await k.oscOk(['project', 'delete', 'e2e-scratch']);
    const gone = await k.osc(['project', 'show', 'e2e-scratch']);
    expectExit(k, gone, false);

    const byName = await k.oscOk(['project', 'show', PROJECT]);
    expect(byName.id).toBe(projectId);
  });

  test('users: create, list, show, set; duplicate → 409; disabled user cannot log in', async () => {
    const u = await k.oscOk([
      'user',
      'create',
      '--domain',
      'default',
      '--password',
      userPassword,
      '--project',
      PROJECT,
      '--email',
      'e2e@example.org',
      '--description',
      'E2E user',
      USER,
    ]);
    expect(u).toMatchObject({ name: USER, domain_id: 'default', enabled: true, default_project_id: projectId });
    expect(u.email).toBe('e2e@example.org');
    expect(u).not.toHaveProperty('password');
    userId = u.id;

    const dup = await k.osc(['user', 'create', '--domain', 'default', '--password', 'x', USER]);
    expectExit(k, dup, false);
    expect(dup.stderr).toMatch(/HTTP 409/);

    const list = await k.oscOk(['user', 'list']);
    expect(list.map((x: any) => x.Name)).toEqual(expect.arrayContaining(['admin', USER]));

    await k.oscOk(['user', 'set', '--email', 'e2e-changed@example.org', USER]);
    const shown = await k.oscOk(['user', 'show', USER]);
    expect(shown).toMatchObject({ id: userId, name: USER, email: 'e2e-changed@example.org', enabled: true });

    await k.oscOk(['user', 'create', '--domain', 'default', '--password', 'pw', '--disable', 'e2e-disabled']);
    const url = `${k.identityUrl}/auth/tokens`;
    const r = await k.http('POST', url, {
      body: {
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: 'e2e-disabled', domain: { name: 'Default' }, password: 'pw' } },
          },
        },
      },
    });
    expectStatus('POST', `${url} (disabled user)`, r, 401);
  });

  test('groups: create, add user, contains user, list --user, set', async () => {
    const g = await k.oscOk(['group', 'create', '--domain', 'default', '--description', 'E2E group', GROUP]);
    expect(g).toMatchObject({ name: GROUP, domain_id: 'default', description: 'E2E group' });
    groupId = g.id;

    await k.oscOk(['group', 'add', 'user', GROUP, USER]);
    const yes = await k.osc(['group', 'contains', 'user', GROUP, USER]);
    expectExit(k, yes, true);
    expect(yes.stdout + yes.stderr).toContain(`${USER} in group ${GROUP}`);
    const no = await k.osc(['group', 'contains', 'user', GROUP, 'admin']);
    expect(no.stdout + no.stderr, describeOsc(no)).toContain(`admin not in group ${GROUP}`);

    const mine = await k.oscOk(['group', 'list', '--user', USER]);
    expect(mine.map((x: any) => x.Name)).toEqual([GROUP]);

    await k.oscOk(['group', 'set', '--description', 'changed', GROUP]);
    const shown = await k.oscOk(['group', 'show', GROUP]);
    expect(shown).toMatchObject({ id: groupId, name: GROUP, description: 'changed' });
  });

  test('roles: list built-ins, create, show, set (rename), delete', async () => {
    const list = await k.oscOk(['role', 'list']);
    expect(list.map((x: any) => x.Name)).toEqual(expect.arrayContaining([...IMPLIED_FROM_ADMIN, 'service']));

    const r = await k.oscOk(['role', 'create', '--description', 'E2E role', ROLE]);
    expect(r).toMatchObject({ name: ROLE, description: 'E2E role' });
    roleId = r.id;

    await k.oscOk(['role', 'set', '--name', ROLE_RENAMED, ROLE]);
    const shown = await k.oscOk(['role', 'show', ROLE_RENAMED]);
    expect(shown).toMatchObject({ id: roleId, name: ROLE_RENAMED });

    await k.oscOk(['role', 'create', 'e2e-scratch-role']);
    await k.oscOk(['role', 'delete', 'e2e-scratch-role']);
    const gone = await k.osc(['role', 'show', 'e2e-scratch-role']);
    expectExit(k, gone, false);
  });

  test('role assignments: add/remove, --names --effective expands implied roles and groups', async () => {
    await k.oscOk(['role', 'add', '--project', PROJECT, '--user', USER, 'member']);
    await k.oscOk(['role', 'add', '--project', PROJECT, '--user', USER, 'service']);
    await k.oscOk(['role', 'add', '--project', PROJECT, '--group', GROUP, ROLE_RENAMED]);
    await k.oscOk(['role', 'remove', '--project', PROJECT, '--user', USER, 'service']);

    const direct: AssignmentRow[] = await k.oscOk([
      'role',
      'assignment',
      'list',
      '--names',
      '--user',
      USER,
      '--project',
      PROJECT,
    ]);
    expect(roleNames(direct), 'direct assignments of the user').toEqual(['member']);
    expect(direct[0]).toMatchObject({ User: `${USER}@Default`, Project: `${PROJECT}@Default`, Inherited: false });

    const effective: AssignmentRow[] = await k.oscOk([
      'role',
      'assignment',
      'list',
      '--names',
      '--effective',
      '--user',
      USER,
      '--project',
      PROJECT,
    ]);
    expect(roleNames(effective), 'effective: member ⇒ reader, plus the group role').toEqual(
      [ROLE_RENAMED, 'member', 'reader'].sort(),
    );
    for (const row of effective) {
      expect(row).toMatchObject({ User: `${USER}@Default`, Project: `${PROJECT}@Default`, Group: '' });
    }

    const admin: AssignmentRow[] = await k.oscOk([
      'role',
      'assignment',
      'list',
      '--names',
      '--effective',
      '--user',
      'admin',
      '--project',
      'admin',
    ]);
    expect(roleNames(admin), 'admin ⇒ manager ⇒ member ⇒ reader').toEqual([...IMPLIED_FROM_ADMIN].sort());

    const byGroup: AssignmentRow[] = await k.oscOk(['role', 'assignment', 'list', '--names', '--group', GROUP]);
    expect(byGroup.map((x) => [x.Role, x.Group, x.Project])).toEqual([
      [ROLE_RENAMED, `${GROUP}@Default`, `${PROJECT}@Default`],
    ]);
  });

  test('a project member logs in; wrong password → 401; member may not list users (403)', async () => {
    k.addPasswordCloud('e2e-user', USER, userPassword, PROJECT);
    const t = await k.oscOk(['token', 'issue'], { cloud: 'e2e-user' });
    expect(t).toMatchObject({ user_id: userId, project_id: projectId });

    const url = `${k.identityUrl}/auth/tokens`;
    const v = await k.http('GET', url, { token: t.id, headers: { 'X-Subject-Token': t.id } });
    expectStatus('GET', url, v, 200);
    expect(v.json.token.roles.map((x: any) => x.name).sort()).toEqual([ROLE_RENAMED, 'member', 'reader'].sort());

    const wrong = await k.osc(['token', 'issue', '--os-password', 'wrong-password'], { cloud: 'e2e-user' });
    expectExit(k, wrong, false);
    expect(wrong.stderr).toMatch(/HTTP 401/);

    const forbidden = await k.osc(['user', 'list'], { cloud: 'e2e-user' });
    expectExit(k, forbidden, false);
    expect(forbidden.stderr).toMatch(/HTTP 403/);

    // The admin changes the password: the old one stops working, the new one works.
    await k.oscOk(['user', 'set', '--password', userPassword2, USER]);
    const old = await k.http('POST', url, {
      body: {
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: USER, domain: { name: 'Default' }, password: userPassword } },
          },
        },
      },
    });
    expectStatus('POST', `${url} (old password)`, old, 401);
    await k.passwordToken(USER, userPassword2, PROJECT);
    k.addPasswordCloud('e2e-user', USER, userPassword2, PROJECT);
  });

  test('application credential: create, authenticate via clouds.yaml and via OS_* env vars', async () => {
    const ac = await k.oscOk(['application', 'credential', 'create', '--description', 'E2E', APPCRED]);
    expect(ac).toMatchObject({ name: APPCRED, project_id: adminProjectId, unrestricted: false });
    expect(ac.id).toBeTruthy();
    expect(ac.secret, 'secret is shown on create').toBeTruthy();
    appcred = { id: ac.id, secret: ac.secret };

    k.addCloud('e2e-appcred', {
      auth_type: 'v3applicationcredential',
      auth: {
        auth_url: k.identityUrl,
        application_credential_id: appcred.id,
        application_credential_secret: appcred.secret,
      },
    });
    const viaCloud = await k.oscOk(['token', 'issue'], { cloud: 'e2e-appcred' });
    expect(viaCloud).toMatchObject({ user_id: adminUserId, project_id: adminProjectId });

    const env = {
      OS_CLIENT_CONFIG_FILE: undefined,
      OS_AUTH_TYPE: 'v3applicationcredential',
      OS_AUTH_URL: k.identityUrl,
      OS_APPLICATION_CREDENTIAL_ID: appcred.id,
      OS_APPLICATION_CREDENTIAL_SECRET: appcred.secret,
      OS_IDENTITY_API_VERSION: '3',
      OS_REGION_NAME: 'RegionOne',
    };
    const viaEnv = await k.oscOk(['token', 'issue'], { cloud: null, env });
    expect(viaEnv).toMatchObject({ user_id: adminUserId, project_id: adminProjectId });

    const bad = await k.osc(['token', 'issue'], {
      cloud: null,
      env: { ...env, OS_APPLICATION_CREDENTIAL_SECRET: 'wrong-secret' },
    });
    expectExit(k, bad, false);
    expect(bad.stderr).toMatch(/HTTP 401/);

    // The token says how it was obtained.
    const url = `${k.identityUrl}/auth/tokens`;
    const v = await k.http('GET', url, { token: viaCloud.id, headers: { 'X-Subject-Token': viaCloud.id } });
    expectStatus('GET', url, v, 200);
    expect(v.json.token.methods).toEqual(['application_credential']);
    expect(v.json.token.application_credential).toMatchObject({ id: appcred.id, name: APPCRED, restricted: true });

    const list = await k.oscOk(['application', 'credential', 'list']);
    expect(list.map((x: any) => x.Name)).toContain(APPCRED);
    const shown = await k.oscOk(['application', 'credential', 'show', APPCRED]);
    expect(shown.id).toBe(appcred.id);
    expect(shown.secret ?? null, 'secret is never shown again').toBeNull();
  });

  test('a member manages its own application credentials and reads its own user', async () => {
    const self = await k.osc(['user', 'show', USER], { cloud: 'e2e-user' });
    expectExit(k, self, true);
    expect(self.json).toMatchObject({ id: userId, name: USER });

    const ac = await k.oscOk(['application', 'credential', 'create', '--role', 'member', 'e2e-user-ac'], {
      cloud: 'e2e-user',
    });
    expect(ac).toMatchObject({ name: 'e2e-user-ac', project_id: projectId, user_id: userId });
    const env = {
      OS_CLIENT_CONFIG_FILE: undefined,
      OS_AUTH_TYPE: 'v3applicationcredential',
      OS_AUTH_URL: k.identityUrl,
      OS_APPLICATION_CREDENTIAL_ID: ac.id,
      OS_APPLICATION_CREDENTIAL_SECRET: ac.secret,
      OS_IDENTITY_API_VERSION: '3',
    };
    const t = await k.oscOk(['token', 'issue'], { cloud: null, env });
    expect(t).toMatchObject({ user_id: userId, project_id: projectId });
    const v = await k.http('GET', `${k.identityUrl}/auth/tokens`, {
      token: t.id,
      headers: { 'X-Subject-Token': t.id },
    });
    // Only the delegated role (Keystone 22 lists just `member`; its implied `reader` is acceptable), never the
    // user's other roles (the group role e2e-custom).
    const acRoles: string[] = (v.json?.token?.roles ?? []).map((x: any) => x.name);
    expect(acRoles, describeHttp('GET', `${k.identityUrl}/auth/tokens`, v)).toContain('member');
    expect(
      acRoles.filter((r) => r !== 'member' && r !== 'reader'),
      'roles beyond the credential',
    ).toEqual([]);

    const list = await k.osc(['application', 'credential', 'list'], { cloud: 'e2e-user' });
    expectExit(k, list, true);
    expect(list.json.map((x: any) => x.Name)).toEqual(['e2e-user-ac']);
    const del = await k.osc(['application', 'credential', 'delete', 'e2e-user-ac'], { cloud: 'e2e-user' });
    expectExit(k, del, true);
    const after = await k.osc(['token', 'issue'], { cloud: null, env });
    expectExit(k, after, false);
  });

  test('catalog list: identity with public, internal and admin endpoints', async () => {
    const catalog = await k.oscOk(['catalog', 'list']);
    const identity = catalog.find((e: any) => e.Type === 'identity');
    expect(identity, JSON.stringify(catalog)).toBeTruthy();
    expect(identity.Name).toBe('keystone');
    const eps = identity.Endpoints as any[];
    expect(eps.map((e) => e.interface).sort()).toEqual(['admin', 'internal', 'public']);
    for (const e of eps) {
      expect(e).toMatchObject({ region: 'RegionOne', region_id: 'RegionOne' });
      expect(sameUrl(e.url, k.identityUrl), `endpoint url ${e.url}`).toBe(true);
    }
  });

  test('token variants (HTTP): unscoped, rescoped, project by id, domain, system, ?nocatalog', async () => {
    const url = `${k.identityUrl}/auth/tokens`;
    const password = { user: { name: 'admin', domain: { name: 'Default' }, password: k.adminPassword } };
    const issue = async (what: string, auth: any, query = '') => {
      const r = await k.http('POST', `${url}${query}`, { body: { auth } });
      expectStatus('POST', `${url}${query} (${what})`, r, 201);
      const token = r.headers.get('x-subject-token');
      expect(token, `X-Subject-Token (${what})`).toBeTruthy();
      expect(r.text, 'the token id is never in the body').not.toContain(token!);
      return { token: token!, body: r.json.token };
    };
    const names = (t: any) => (t.roles as any[]).map((x) => x.name).sort();

    const unscoped = await issue('unscoped', { identity: { methods: ['password'], password } });
    expect(unscoped.body).not.toHaveProperty('project');
    expect(unscoped.body.catalog ?? null).toBeNull();
    expect(unscoped.body.roles ?? []).toEqual([]);
    expect(unscoped.body.audit_ids).toHaveLength(1);

    const rescoped = await issue('token method, rescope to project', {
      identity: { methods: ['token'], token: { id: unscoped.token } },
      scope: { project: { name: 'admin', domain: { id: 'default' } } },
    });
    expect([...rescoped.body.methods].sort()).toEqual(['password', 'token']);
    expect(rescoped.body.project).toMatchObject({ id: adminProjectId, name: 'admin' });
    expect(names(rescoped.body)).toEqual([...IMPLIED_FROM_ADMIN].sort());
    expect(rescoped.body.audit_ids, 'audit chain of a rescoped token').toEqual([
      expect.any(String),
      unscoped.body.audit_ids[0],
    ]);

    const byId = await issue(
      'password by user id, project by id, ?nocatalog',
      {
        identity: { methods: ['password'], password: { user: { id: adminUserId, password: k.adminPassword } } },
        scope: { project: { id: adminProjectId } },
      },
      '?nocatalog',
    );
    expect(byId.body.project.id).toBe(adminProjectId);
    expect(byId.body.catalog ?? null, '?nocatalog drops the catalog').toBeNull();
    for (const s of byId.body.roles) expect(s).toEqual({ id: expect.any(String), name: expect.any(String) });

    await k.oscOk(['role', 'add', '--domain', 'default', '--user', 'admin', 'admin']);
    const domain = await issue('domain scope', {
      identity: { methods: ['password'], password },
      scope: { domain: { name: 'Default' } },
    });
    expect(domain.body.domain).toEqual({ id: 'default', name: 'Default' });
    expect(domain.body).not.toHaveProperty('project');
    expect(names(domain.body)).toEqual([...IMPLIED_FROM_ADMIN].sort());

    const system = await issue('system scope', {
      identity: { methods: ['password'], password },
      scope: { system: { all: true } },
    });
    expect(system.body.system).toEqual({ all: true });
    expect(names(system.body)).toEqual(expect.arrayContaining(['admin', 'reader']));

    const projects = await k.http('GET', `${k.identityUrl}/auth/projects`, { token: unscoped.token });
    expectStatus('GET', `${k.identityUrl}/auth/projects`, projects, 200);
    expect(projects.json.projects.map((p: any) => p.name)).toContain('admin');
  });

  test('token revoke: a revoked token gets 401 (HTTP) and fails in the CLI', async () => {
    const t = await k.oscOk(['token', 'issue']);
    const projectsUrl = `${k.identityUrl}/projects`;
    const before = await k.http('GET', projectsUrl, { token: t.id });
    expectStatus('GET', projectsUrl, before, 200);

    // Positive control for the CLI token plugin with a token that stays valid.
    const tokenEnv = (token: string) => ({
      OS_CLIENT_CONFIG_FILE: undefined,
      OS_AUTH_TYPE: 'token',
      OS_TOKEN: token,
      OS_AUTH_URL: k.identityUrl,
      OS_PROJECT_NAME: 'admin',
      OS_PROJECT_DOMAIN_NAME: 'Default',
      OS_IDENTITY_API_VERSION: '3',
    });
    const control = await k.passwordToken();
    const ok = await k.osc(['project', 'show', 'admin'], { cloud: null, env: tokenEnv(control.token) });
    expectExit(k, ok, true);

    const rv = await k.osc(['token', 'revoke', t.id]);
    expectExit(k, rv, true);
    revokedToken = t.id;

    const after = await k.http('GET', projectsUrl, { token: t.id });
    expectStatus('GET', `${projectsUrl} (revoked token)`, after, 401);
    expect(after.json?.error?.code).toBe(401);

    const check = await k.http('GET', `${k.identityUrl}/auth/tokens`, {
      token: control.token,
      headers: { 'X-Subject-Token': t.id },
    });
    expectStatus('GET', `${k.identityUrl}/auth/tokens (X-Subject-Token revoked)`, check, 404);

    const cli = await k.osc(['project', 'show', 'admin'], { cloud: null, env: tokenEnv(t.id) });
    expectExit(k, cli, false);
    expect(cli.stderr).toMatch(/HTTP 40[14]/);
  });

  test('HTTP errors: 401 with WWW-Authenticate, malformed JSON → 400, unknown id → 404', async () => {
    const projectsUrl = `${k.identityUrl}/projects`;
    const anon = await k.http('GET', projectsUrl);
    expectStatus('GET', `${projectsUrl} (no token)`, anon, 401);
    const www = anon.headers.get('www-authenticate') ?? '';
    expect(www, 'WWW-Authenticate').toMatch(/^Keystone uri="[^"]+"$/);
    expect(sameUrl(/uri="([^"]+)"/.exec(www)?.[1], k.identityUrl), `WWW-Authenticate ${www}`).toBe(true);
    expect(anon.json?.error).toMatchObject({ code: 401, title: 'Unauthorized' });
    expect(typeof anon.json.error.message).toBe('string');
    const id401 = expectRequestId(anon, 'a 401');

    const tokensUrl = `${k.identityUrl}/auth/tokens`;
    const bad = await k.http('POST', tokensUrl, { body: '{"auth": {"identity": ' });
    expectStatus('POST', `${tokensUrl} (malformed JSON)`, bad, 400);
    expect(bad.json?.error, describeHttp('POST', tokensUrl, bad)).toMatchObject({ code: 400, title: 'Bad Request' });
    expect(typeof bad.json.error.message).toBe('string');
    const id400 = expectRequestId(bad, 'a 400');
    expect(id400).not.toBe(id401);

    const { token } = await k.passwordToken();
    const bad2 = await k.http('POST', projectsUrl, { token, body: '{not json' });
    expectStatus('POST', `${projectsUrl} (malformed JSON, admin token)`, bad2, 400);
    expect(bad2.json?.error?.code).toBe(400);

    const missingUrl = `${projectsUrl}/does-not-exist`;
    const missing = await k.http('GET', missingUrl, { token });
    expectStatus('GET', missingUrl, missing, 404);
    expect(missing.json?.error).toMatchObject({ code: 404, title: 'Not Found' });
    expectRequestId(missing, 'a 404');

    const filtered = await k.http('GET', `${projectsUrl}?name=${PROJECT}`, { token });
    expectStatus('GET', `${projectsUrl}?name=${PROJECT}`, filtered, 200);
    expect(filtered.json.projects.map((p: any) => p.id)).toEqual([projectId]);
    expect(filtered.json.links).toMatchObject({ previous: null, next: null });
  });

  test('restart keeps state: users, memberships, assignments, app credentials, tokens, revocations', async () => {
    const passwordBefore = k.adminPassword;
    const tokenBefore = (await k.passwordToken()).token;

    const exit = await k.stop();
    expect(exit?.killed, `krater must exit on SIGTERM\n${k.output().slice(-2000)}`).toBeFalsy();
    expect(exit?.code === 0 || exit?.signal === 'SIGTERM', `exit after SIGTERM: ${JSON.stringify(exit)}`).toBe(true);
    // With KRATER_AGENT_SHUTDOWN=purge (the harness default) nothing keeps running from the data dir.
    expect(k.processesUsingWorkDir(), 'processes left running after krater stopped').toEqual([]);
    await k.startAgain();
    expect(k.adminPassword, 'admin password unchanged by a restart').toBe(passwordBefore);

    // A user created before the restart can log in.
    const t = await k.oscOk(['token', 'issue'], { cloud: 'e2e-user' });
    expect(t).toMatchObject({ user_id: userId, project_id: projectId });

    const effective: AssignmentRow[] = await k.oscOk([
      'role',
      'assignment',
      'list',
      '--names',
      '--effective',
      '--user',
      USER,
      '--project',
      PROJECT,
    ]);
    expect(roleNames(effective)).toEqual([ROLE_RENAMED, 'member', 'reader'].sort());

    const member = await k.osc(['group', 'contains', 'user', GROUP, USER]);
    expect(member.stdout + member.stderr).toContain(`${USER} in group ${GROUP}`);

    const viaAppcred = await k.oscOk(['token', 'issue'], { cloud: 'e2e-appcred' });
    expect(viaAppcred).toMatchObject({ user_id: adminUserId, project_id: adminProjectId });

    const projectsUrl = `${k.identityUrl}/projects`;
    const old = await k.http('GET', projectsUrl, { token: tokenBefore });
    expectStatus('GET', `${projectsUrl} (token issued before the restart)`, old, 200);
    const revoked = await k.http('GET', projectsUrl, { token: revokedToken });
    expectStatus('GET', `${projectsUrl} (token revoked before the restart)`, revoked, 401);

    // Bootstrap did not run twice.
    const { token } = await k.passwordToken();
    for (const [path, key] of [
      ['/projects?name=admin', 'projects'],
      ['/users?name=admin', 'users'],
      ['/roles?name=admin', 'roles'],
      ['/domains?name=Default', 'domains'],
    ] as const) {
      const r = await k.http('GET', `${k.identityUrl}${path}`, { token });
      expectStatus('GET', `${k.identityUrl}${path}`, r, 200);
      expect(r.json[key], `${path} after restart`).toHaveLength(1);
    }
    const services = await k.http('GET', `${k.identityUrl}/services?type=identity`, { token });
    expectStatus('GET', `${k.identityUrl}/services?type=identity`, services, 200);
    expect(services.json.services, 'one identity service after restart').toHaveLength(1);
  });

  test('delete: application credential, user, group, role, project', async () => {
    await k.oscOk(['application', 'credential', 'delete', APPCRED]);
    const ac = await k.osc(['token', 'issue'], { cloud: 'e2e-appcred' });
    expectExit(k, ac, false);

    await k.oscOk(['user', 'delete', USER]);
    await k.oscOk(['group', 'delete', GROUP]);
    await k.oscOk(['role', 'delete', ROLE_RENAMED]);
    await k.oscOk(['project', 'delete', PROJECT]);

    const { token } = await k.passwordToken();
    for (const path of [`/users/${userId}`, `/groups/${groupId}`, `/roles/${roleId}`, `/projects/${projectId}`]) {
      const r = await k.http('GET', `${k.identityUrl}${path}`, { token });
      expectStatus('GET', `${k.identityUrl}${path} (deleted)`, r, 404);
    }
    const login = await k.http('POST', `${k.identityUrl}/auth/tokens`, {
      body: {
        auth: {
          identity: {
            methods: ['password'],
            password: { user: { name: USER, domain: { name: 'Default' }, password: userPassword2 } },
          },
        },
      },
    });
    expectStatus('POST', `${k.identityUrl}/auth/tokens (deleted user)`, login, 401);
  });
});
