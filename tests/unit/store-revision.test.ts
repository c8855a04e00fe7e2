/**
 * `writeWithRevision` (core/store/revision.ts): the write and the bump of its revision marker commit together or
 * not at all; identity's caches and the agents' network reconcile rely on that marker.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/core/store/db.js';
import { writeWithRevision } from '../../src/core/store/revision.js';

let store: Store;
const KEY = 'test_revision';
const marker = async () =>
  (await store.db.selectFrom('meta').select('value').where('key', '=', KEY).executeTakeFirst())?.value;
const domain = (id: string) => ({ id, name: id, description: '', enabled: 1, extra: '{}' });
const domainIds = async () => (await store.db.selectFrom('domains').select('id').execute()).map((r) => r.id);

beforeEach(async () => {
  store = await openStore('sqlite::memory:');
});
afterEach(async () => {
  await store.close();
});

describe('writeWithRevision', () => {
  it('creates the marker on the first write and gives it a new value at every write', async () => {
    expect(await marker()).toBeUndefined();
    const result = await writeWithRevision(store.db, KEY, async (trx) => {
      await trx.insertInto('domains').values(domain('d1')).execute();
      return 'ok';
    });
    expect(result).toBe('ok');
    const first = await marker();
    expect(first).toMatch(/^[0-9a-f-]{36}$/);
    await writeWithRevision(store.db, KEY, (trx) => trx.insertInto('domains').values(domain('d2')).execute());
    const second = await marker();
    expect(second).toMatch(/^[0-9a-f-]{36}$/);
    expect(second).not.toBe(first);
    expect((await domainIds()).sort()).toEqual(['d1', 'd2']);
  });

  it('a write that fails leaves neither its rows nor a new marker', async () => {
    await writeWithRevision(store.db, KEY, (trx) => trx.insertInto('domains').values(domain('d1')).execute());
    const before = await marker();
    const err = await writeWithRevision(store.db, KEY, async (trx) => {
      await trx.insertInto('domains').values(domain('d2')).execute();
      await trx.insertInto('domains').values(domain('d1')).execute(); // duplicate id
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeDefined();
    expect(await marker()).toBe(before);
    expect(await domainIds()).toEqual(['d1']);
  });

  it('markers of different keys move independently', async () => {
    await writeWithRevision(store.db, KEY, async () => undefined);
    const mine = await marker();
    await writeWithRevision(store.db, 'other_revision', async () => undefined);
    expect(await marker()).toBe(mine);
  });
});
