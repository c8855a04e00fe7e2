import { randomUUID } from 'node:crypto';
import type { Transaction } from 'kysely';
import type { Db } from './db.js';
import type { Database } from './schema.js';

/**
 * Runs `fn` in one transaction and, inside it, gives the `meta` row `revisionKey` a fresh random value. Readers in
 * other processes (API replicas, agents) compare that marker with the one they last saw to learn that something
 * they cache changed, so the bump must commit or roll back together with the write.
 */
export async function writeWithRevision<T>(
  db: Db,
  revisionKey: string,
  fn: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    const result = await fn(trx);
    const rev = randomUUID();
    const updated = await trx.updateTable('meta').set({ value: rev }).where('key', '=', revisionKey).executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0)
      await trx
        .insertInto('meta')
        .values({ key: revisionKey, value: rev })
        .onConflict((oc) => oc.column('key').doUpdateSet({ value: rev }))
        .execute();
    return result;
  });
}
