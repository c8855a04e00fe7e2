/**
 * A store whose writes fail must report why (issue 10, item 11): a transaction's error must not be replaced by the
 * failure of the ROLLBACK that follows it ("cannot rollback - no transaction is active" when SQLite has already
 * rolled back by itself).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Store, sql } from '../../src/core/store/db.js';
import { IdentityRepo } from '../../src/services/identity/repo.js';

let dir: string;
let store: Store;
let rollbackFailures: unknown[];

const domain = (id: string, description = '') => ({ id, name: id, description, enabled: 1, extra: '{}' });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'krater-store-ro-'));
  rollbackFailures = [];
  store = await openStore(`sqlite:${join(dir, 'krater.db')}`, { onRollbackFailure: (e) => rollbackFailures.push(e) });
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a store that refuses writes', () => {
  it('read-only (query_only): the write fails with SQLite’s own error, through IdentityRepo.write', async () => {
    const repo = new IdentityRepo(store);
    await sql`PRAGMA query_only = ON`.execute(store.db);
    const err = await repo
      .write((trx) => trx.insertInto('domains').values(domain('ro')).execute())
      .then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
    expect(err?.code).toBe('SQLITE_READONLY');
    expect(err?.message).toBe('attempt to write a readonly database');
    expect(rollbackFailures).toEqual([]);
    // Reads still work, and nothing was written.
    await sql`PRAGMA query_only = OFF`.execute(store.db);
    expect(await store.db.selectFrom('domains').select('id').where('id', '=', 'ro').executeTakeFirst()).toBeUndefined();
  });

  it('full (SQLite rolls the transaction back itself): the cause is thrown, not the failed ROLLBACK', async () => {
    const pages = (await sql<{ page_count: number }>`PRAGMA page_count`.execute(store.db)).rows[0]!.page_count;
    await sql.raw(`PRAGMA max_page_count = ${pages}`).execute(store.db);
    const err = await store.db
      .transaction()
      .execute((trx) =>
        trx
          .insertInto('domains')
          .values(domain('big', 'x'.repeat(1_000_000)))
          .execute(),
      )
      .then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
    expect(err?.message).not.toMatch(/cannot rollback/);
    expect(err?.code).toBe('SQLITE_FULL');
    expect(rollbackFailures).toEqual([]);
    // The connection is usable afterwards: a later transaction commits.
    await sql.raw(`PRAGMA max_page_count = ${pages * 100}`).execute(store.db);
    await store.db.transaction().execute((trx) => trx.insertInto('domains').values(domain('small')).execute());
    expect(await store.db.selectFrom('domains').select('id').where('id', '=', 'small').executeTakeFirst()).toEqual({
      id: 'small',
    });
  });
});
