import type { Kysely } from 'kysely';

/**
 * Secrets every API replica must agree on (the token keys, …), sealed (AES-256-GCM) under the operator's master
 * key: a replica that has the master key reads them from the store instead of its own data dir. `sealed` holds the
 * whole value; a change is a compare-and-swap on it, so two replicas rotating at once never lose a key.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('sealed_secrets')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('sealed', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('sealed_secrets').execute();
}
