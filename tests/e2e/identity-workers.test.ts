/**
 * End-to-end over raw HTTP: `krater api --workers 2` (the control plane with two API worker processes), on SQLite and on PostgreSQL. Every request uses a fresh TCP
 * connection, so repeated requests reach both API worker processes; each change made through one worker (revocation,
 * password change, role removal, disabling, deletion) must be seen by every worker at once, even after the workers
 * have cached the previous state.
 *
 *   npx vitest run tests/e2e
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { describeHttp, type HttpResult, Krater } from '../helpers/krater.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 900_000 });

/** Requests per check: with round-robin over 2 workers, each worker answers several of them. */
const N = 6;

const stores = [{ store: 'sqlite' }, { store: 'postgres' }] as const;

describe.each(stores)('identity with krater api --workers 2 on $store (HTTP)', ({ store }) => {
  let k: Krater;
  let db: TestDatabase | undefined;
  let admin = '';
  let projectId = '';
  let userId = '';
  let memberRoleId = '';
  let extraRoleId = '';

  const v3 = (path: string) => `${k.identityUrl}${path}`;

  /** Sends the same request N times (new connection each) and expects `status` every time. */
  async function expectAll(
    what: string,
    status: number,
    send: () => Promise<HttpResult>,
    check?: (r: HttpResult) => void,
  ): Promise<HttpResult[]> {
    const results: HttpResult[] = [];
    for (let i = 0; i < N; i++) {
      const r = await send();
      expect(r.status, `${what} (attempt ${i + 1}/${N}): ${r.status} ${r.text.slice(0, 500)}`).toBe(status);
      check?.(r);
      results.push(r);
    }
    return results;
  }

  function passwordAuth(name: string, password: string, project: string | null = 'e2e-w-project') {
    const auth: any = {
      identity: { methods: ['password'], password: { user: { name, domain: { id: 'default' }, password } } },
    };
    if (project) auth.scope = { project: { name: project, domain: { id: 'default' } } };
    return { auth };
  }

  const login = (name: string, password: string) =>
    k.http('POST', v3('/auth/tokens'), { body: passwordAuth(name, password) });

  async function must(method: string, path: string, status: number, body?: unknown): Promise<any> {
    const r = await k.http(method, v3(path), { token: admin, body });
    expect(r.status, describeHttp(method, v3(path), r)).toBe(status);
    return r.json;
  }

  beforeAll(async () => {
    if (store === 'postgres') db = await createTestDatabase();
    k = await Krater.start({ database: db?.url, mode: 'api', args: ['--workers', '2'] });
    admin = (await k.passwordToken()).token;
    projectId = (await must('POST', '/projects', 201, { project: { name: 'e2e-w-project', domain_id: 'default' } }))
      .project.id;
    userId = (
      await must('POST', '/users', 201, {
        user: { name: 'e2e-w-user', domain_id: 'default', password: 'pw-1', default_project_id: projectId },
      })
    ).user.id;
    const roles = (await must('GET', '/roles', 200)).roles as any[];
    memberRoleId = roles.find((r) => r.name === 'member').id;
    extraRoleId = (await must('POST', '/roles', 201, { role: { name: 'e2e-w-extra' } })).role.id;
    await must('PUT', `/projects/${projectId}/users/${userId}/roles/${memberRoleId}`, 204);
  });

  afterAll(async () => {
    try {
      await k?.destroy();
    } finally {
      await db?.drop();
    }
  });

  test('every worker serves discovery and the admin token', async () => {
    await expectAll('GET /identity/v3', 200, () => k.http('GET', k.identityUrl));
    await expectAll('GET /projects with the admin token', 200, () => k.http('GET', v3('/projects'), { token: admin }));
  });

  test('revocation is seen by every worker', async () => {
    const { token } = await k.passwordToken();
    await expectAll('GET /projects before revocation', 200, () => k.http('GET', v3('/projects'), { token }));
    const r = await k.http('DELETE', v3('/auth/tokens'), { token: admin, headers: { 'X-Subject-Token': token } });
    expect(r.status, describeHttp('DELETE', v3('/auth/tokens'), r)).toBe(204);
    await expectAll('GET /projects with the revoked token', 401, () => k.http('GET', v3('/projects'), { token }));
    await expectAll('GET /auth/tokens (revoked subject)', 404, () =>
      k.http('GET', v3('/auth/tokens'), { token: admin, headers: { 'X-Subject-Token': token } }),
    );
  });

  test('a password change is seen by every worker', async () => {
    await expectAll('login with the first password', 201, () => login('e2e-w-user', 'pw-1'));
    await must('PATCH', `/users/${userId}`, 200, { user: { password: 'pw-2' } });
    await expectAll('login with the old password', 401, () => login('e2e-w-user', 'pw-1'));
    await expectAll('login with the new password', 201, () => login('e2e-w-user', 'pw-2'));
  });

  test('an added and then removed role is seen by every worker', async () => {
    const roleNames = (r: HttpResult) => (r.json.token.roles as any[]).map((x) => x.name).sort();
    await expectAll('login before the extra role', 201, () => login('e2e-w-user', 'pw-2'));
    await must('PUT', `/projects/${projectId}/users/${userId}/roles/${extraRoleId}`, 204);
    await expectAll(
      'login with the extra role',
      201,
      () => login('e2e-w-user', 'pw-2'),
      (r) => expect(roleNames(r)).toEqual(['e2e-w-extra', 'member', 'reader']),
    );
    await must('DELETE', `/projects/${projectId}/users/${userId}/roles/${extraRoleId}`, 204);
    await expectAll(
      'login after removing the extra role',
      201,
      () => login('e2e-w-user', 'pw-2'),
      (r) => expect(roleNames(r)).toEqual(['member', 'reader']),
    );
  });

  test('an application credential deleted on one worker is rejected by all', async () => {
    const user = await login('e2e-w-user', 'pw-2');
    expect(user.status).toBe(201);
    const userToken = user.headers.get('x-subject-token')!;
    const created = await k.http('POST', v3(`/users/${userId}/application_credentials`), {
      token: userToken,
      body: { application_credential: { name: 'e2e-w-ac' } },
    });
    expect(created.status, describeHttp('POST', 'application_credentials', created)).toBe(201);
    const { id, secret } = created.json.application_credential;
    const acAuth = () =>
      k.http('POST', v3('/auth/tokens'), {
        body: { auth: { identity: { methods: ['application_credential'], application_credential: { id, secret } } } },
      });
    await expectAll('app credential login', 201, acAuth);
    const del = await k.http('DELETE', v3(`/users/${userId}/application_credentials/${id}`), { token: userToken });
    expect(del.status, describeHttp('DELETE', 'application_credential', del)).toBe(204);
    await expectAll('app credential login after delete', 401, acAuth);
  });

  test('disabling a user rejects its logins and its existing tokens on every worker', async () => {
    const r = await login('e2e-w-user', 'pw-2');
    expect(r.status).toBe(201);
    const token = r.headers.get('x-subject-token')!;
    await expectAll('user token before disabling', 200, () =>
      k.http('GET', v3('/auth/tokens'), { token, headers: { 'X-Subject-Token': token } }),
    );
    await must('PATCH', `/users/${userId}`, 200, { user: { enabled: false } });
    await expectAll('login of the disabled user', 401, () => login('e2e-w-user', 'pw-2'));
    await expectAll('token of the disabled user (validated by the admin)', 404, () =>
      k.http('GET', v3('/auth/tokens'), { token: admin, headers: { 'X-Subject-Token': token } }),
    );
    await expectAll('request with the token of the disabled user', 401, () =>
      k.http('GET', v3(`/users/${userId}`), { token }),
    );
    await must('PATCH', `/users/${userId}`, 200, { user: { enabled: true } });
    await expectAll('login after re-enabling', 201, () => login('e2e-w-user', 'pw-2'));
  });

  test('deleting the project invalidates tokens scoped to it on every worker', async () => {
    const r = await login('e2e-w-user', 'pw-2');
    expect(r.status).toBe(201);
    const token = r.headers.get('x-subject-token')!;
    await must('DELETE', `/projects/${projectId}`, 204);
    await expectAll('token scoped to the deleted project (validated by the admin)', 404, () =>
      k.http('GET', v3('/auth/tokens'), { token: admin, headers: { 'X-Subject-Token': token } }),
    );
    await expectAll('login scoped to the deleted project', 401, () => login('e2e-w-user', 'pw-2'));
  });
});
