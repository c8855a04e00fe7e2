/**
 * Keystone's lockout (`lockout_failure_attempts`, `lockout_duration`) kept in the store (issue 10, item 10), on
 * SQLite and on PostgreSQL (migration 0009): N failures lock, the lock answers without the user id, it ends after the
 * duration, a success resets the count, exempt users and lockout off never lock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/core/http/errors.js';
import { openStore, type Store } from '../../src/core/store/db.js';
import { ACCOUNT_LOCKED_MESSAGE, Lockout } from '../../src/services/identity/lockout.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const user = (id: string, options = '{}') => ({ id, options });

async function addUser(store: Store, id: string, options = '{}'): Promise<void> {
  if (!(await store.db.selectFrom('domains').select('id').where('id', '=', 'd').executeTakeFirst()))
    await store.db
      .insertInto('domains')
      .values({ id: 'd', name: 'D', description: '', enabled: 1, extra: '{}' })
      .execute();
  await store.db
    .insertInto('users')
    .values({
      id,
      name: id,
      domain_id: 'd',
      password_hash: null,
      enabled: 1,
      default_project_id: null,
      password_expires_at: null,
      description: null,
      email: null,
      options,
      extra: '{}',
      created_at: new Date().toISOString(),
    })
    .execute();
}

/** What `check` throws, or 'open' when it lets the user through. */
async function outcome(l: Lockout, u: { id: string; options: string }): Promise<string> {
  try {
    await l.check(u);
    return 'open';
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(401);
    return (err as ApiError).message;
  }
}

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`lockout in the store (${engine})`, () => {
    let store: Store;
    let pg: TestDatabase | undefined;
    let now = 1_000_000;
    const clock = () => now;

    beforeAll(async () => {
      if (engine === 'postgres') pg = await createTestDatabase();
      store = await openStore(pg ? pg.url : 'sqlite::memory:');
      for (const id of ['alice', 'bob', 'carol', 'dave']) await addUser(store, id);
      await addUser(store, 'svc', JSON.stringify({ ignore_lockout_failure_attempts: true }));
    }, 120_000);
    afterAll(async () => {
      await store?.close();
      await pg?.drop();
    });

    it('locks after N failures for the duration, without naming the user, then counts again', async () => {
      const l = new Lockout(store.db, { failureAttempts: 3, durationMs: 60_000 }, clock);
      const alice = user('alice');
      for (let i = 0; i < 3; i++) {
        expect(await outcome(l, alice)).toBe('open');
        await l.failed(alice);
      }
      const message = await outcome(l, alice);
      expect(message).toBe(ACCOUNT_LOCKED_MESSAGE);
      expect(message).not.toContain('alice');
      // Other users are not affected.
      expect(await outcome(l, user('bob'))).toBe('open');
      now += 59_999;
      expect(await outcome(l, alice)).toBe(ACCOUNT_LOCKED_MESSAGE);
      now += 1;
      expect(await outcome(l, alice)).toBe('open');
      // The count started over: two more failures do not lock.
      await l.failed(alice);
      await l.failed(alice);
      expect(await outcome(l, alice)).toBe('open');
    });

    it('a success (reset) clears the count; failures need not be consecutive across replicas', async () => {
      const a = new Lockout(store.db, { failureAttempts: 3, durationMs: 60_000 }, clock);
      const b = new Lockout(store.db, { failureAttempts: 3, durationMs: 60_000 }, clock);
      const carol = user('carol');
      await a.failed(carol);
      await b.failed(carol);
      expect(await a.check(carol)).toBe(true);
      await a.reset('carol');
      expect(await a.check(carol)).toBe(false);
      await Promise.all([a.failed(carol), b.failed(carol), a.failed(carol)]);
      expect(await outcome(b, carol)).toBe(ACCOUNT_LOCKED_MESSAGE);
    });

    it('duration 0 locks until reset; exempt users and lockout off never lock', async () => {
      const forever = new Lockout(store.db, { failureAttempts: 2, durationMs: 0 }, clock);
      const dave = user('dave');
      await forever.failed(dave);
      await forever.failed(dave);
      now += 10 * 365 * 86_400_000;
      expect(await outcome(forever, dave)).toBe(ACCOUNT_LOCKED_MESSAGE);
      await forever.reset('dave');
      expect(await outcome(forever, dave)).toBe('open');

      const svc = user('svc', JSON.stringify({ ignore_lockout_failure_attempts: true }));
      for (let i = 0; i < 5; i++) await forever.failed(svc);
      expect(await outcome(forever, svc)).toBe('open');

      const off = new Lockout(store.db, { failureAttempts: 0, durationMs: 1800_000 }, clock);
      const bob = user('bob');
      for (let i = 0; i < 20; i++) await off.failed(bob);
      expect(await outcome(off, bob)).toBe('open');
      expect(await store.db.selectFrom('auth_failures').selectAll().where('user_id', '=', 'bob').execute()).toEqual([]);
    });
  });
}
