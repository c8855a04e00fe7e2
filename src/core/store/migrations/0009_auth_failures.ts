import type { Kysely } from 'kysely';

/**
 * Failed password checks per user (Keystone's `local_user.failed_auth_count` / `failed_auth_at`), in the store so
 * every API replica counts the same failures. A table of its own: identity's cached user rows stay untouched.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('auth_failures')
    .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id').onDelete('cascade'))
    .addColumn('count', 'integer', (c) => c.notNull())
    .addColumn('last_failed_at', 'text', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('auth_failures').execute();
}
