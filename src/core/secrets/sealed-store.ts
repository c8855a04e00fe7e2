import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import { type MasterKey, seal, unseal } from './master-key.js';

/** A secret as read: its value and the sealed text a compare-and-swap must match. */
export interface SealedEntry {
  value: string;
  sealed: string;
}

/**
 * Secrets the replicas share, in the store's `sealed_secrets` table, sealed under the master key. Writes are
 * insert-if-missing and compare-and-swap on the sealed text, so concurrent replicas converge on one value.
 */
export class SealedSecrets {
  constructor(
    private readonly db: Kysely<Database>,
    readonly master: MasterKey,
  ) {}

  async read(name: string): Promise<SealedEntry | undefined> {
    const row = await this.db.selectFrom('sealed_secrets').select('sealed').where('name', '=', name).executeTakeFirst();
    return row ? { value: unseal(this.master, name, row.sealed), sealed: row.sealed } : undefined;
  }

  /** Stores `value` unless the secret exists; returns what the store holds afterwards (another replica may have won). */
  async insertIfMissing(name: string, value: string): Promise<SealedEntry> {
    const sealed = seal(this.master, name, value);
    await this.db
      .insertInto('sealed_secrets')
      .values({ name, sealed, updated_at: new Date().toISOString() })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const now = await this.read(name);
    if (!now) throw new Error(`the stored secret ${name} vanished while being created`);
    return now;
  }

  /** Replaces the secret only if it is still `expected` (its sealed text); false when another writer came first. */
  async replace(name: string, expected: string, value: string): Promise<SealedEntry | undefined> {
    const sealed = seal(this.master, name, value);
    const r = await this.db
      .updateTable('sealed_secrets')
      .set({ sealed, updated_at: new Date().toISOString() })
      .where('name', '=', name)
      .where('sealed', '=', expected)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1 ? { value, sealed } : undefined;
  }
}
