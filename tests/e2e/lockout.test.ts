/**
 * Account lockout over HTTP (issue 10, item 10) against `krater api`: with KRATER_LOCKOUT_FAILURE_ATTEMPTS=N the
 * N-th bad password locks the user (401 whose message names no id), the right password fails while locked and works
 * once KRATER_LOCKOUT_DURATION has passed; an admin can lift it. By default (off, as in Keystone) nothing locks.
 * The default instance also checks that a restart narrows a data dir and store an older install left readable.
 */
import { chmodSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type HttpResult, Krater, sleep, uniq } from '../helpers/krater.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

let locking: Krater;
let plain: Krater;

beforeAll(async () => {
  [locking, plain] = await Promise.all([
    Krater.start({ mode: 'api', env: { KRATER_LOCKOUT_FAILURE_ATTEMPTS: '3', KRATER_LOCKOUT_DURATION: '3' } }),
    Krater.start({ mode: 'api' }),
  ]);
});
afterAll(async () => {
  await Promise.all([locking?.destroy(), plain?.destroy()]);
});

function login(k: Krater, name: string, password: string): Promise<HttpResult> {
  return k.http('POST', '/identity/v3/auth/tokens', {
    body: {
      auth: { identity: { methods: ['password'], password: { user: { name, domain: { id: 'default' }, password } } } },
    },
  });
}

async function createUser(k: Krater, password: string): Promise<{ id: string; name: string }> {
  const { token } = await k.passwordToken();
  const name = uniq('lock');
  const r = await k.http('POST', '/identity/v3/users', {
    token,
    body: { user: { name, password, domain_id: 'default' } },
  });
  expect(r.status, r.text).toBe(201);
  return { id: r.json.user.id, name };
}

describe('lockout on (3 failures, 3 s)', () => {
  it('locks on the 3rd bad password, refuses the right one without naming the user, lets it in after the duration', async () => {
    const u = await createUser(locking, 'right-password-1');
    for (let i = 0; i < 3; i++) {
      const r = await login(locking, u.name, 'wrong');
      expect(r.status).toBe(401);
      expect(r.json.error.message).not.toMatch(/locked/);
    }
    const locked = await login(locking, u.name, 'right-password-1');
    expect(locked.status, locked.text).toBe(401);
    expect(locked.json.error).toMatchObject({ code: 401, title: 'Unauthorized' });
    expect(locked.json.error.message).toMatch(/locked/);
    expect(locked.text).not.toContain(u.id);
    expect(locked.text).not.toContain(u.name);
    // The lock ends 3 s after the last failure (a bounded wait, not a timing assertion).
    let after: HttpResult = locked;
    for (let i = 0; i < 40 && after.status !== 201; i++) {
      await sleep(250);
      after = await login(locking, u.name, 'right-password-1');
    }
    expect(after.status, after.text).toBe(201);
  });

  it('an administrator enabling the user lifts the lock at once', async () => {
    const u = await createUser(locking, 'right-password-2');
    for (let i = 0; i < 3; i++) await login(locking, u.name, 'wrong');
    expect((await login(locking, u.name, 'right-password-2')).json.error.message).toMatch(/locked/);
    const { token } = await locking.passwordToken();
    const r = await locking.http('PATCH', `/identity/v3/users/${u.id}`, { token, body: { user: { enabled: true } } });
    expect(r.status, r.text).toBe(200);
    expect((await login(locking, u.name, 'right-password-2')).status).toBe(201);
  });
});

describe('lockout off (the default)', () => {
  it('never locks, the admin included', async () => {
    for (let i = 0; i < 12; i++) expect((await login(plain, 'admin', 'wrong')).status).toBe(401);
    expect((await login(plain, 'admin', plain.adminPassword)).status).toBe(201);
  });

  it('a restart narrows a data dir and store left readable by an older install (item 5)', async () => {
    const db = join(plain.dataDir, 'krater.db');
    const keys = join(plain.dataDir, 'keys');
    const secrets = [join(plain.dataDir, 'admin-password'), ...readdirSync(keys).map((f) => join(keys, f))];
    expect(readdirSync(keys)).toContain('master.key');
    await plain.stop();
    for (const d of [plain.dataDir, keys]) chmodSync(d, 0o755);
    for (const f of [db, ...secrets]) chmodSync(f, 0o644);
    await plain.startAgain();
    for (const d of [plain.dataDir, keys]) expect(statSync(d).mode & 0o777, d).toBe(0o700);
    for (const f of [db, `${db}-wal`, `${db}-shm`, ...secrets]) expect(statSync(f).mode & 0o777, f).toBe(0o600);
  });
});
