import type { Kysely } from 'kysely';

/**
 * The controllers' claimed work queue (src/controllers/queue.ts): one row per (kind, object id) that needs a
 * reconcile, due at `not_before`, leased by at most one replica at a time (`lease_owner` until `lease_expires_at`).
 * `generation` counts enqueues, so an enqueue that arrives during a reconcile is not lost when it finishes.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('controller_queue')
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('object_id', 'text', (c) => c.notNull())
    .addColumn('generation', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('not_before', 'text', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_error', 'text')
    .addColumn('lease_owner', 'text')
    .addColumn('lease_expires_at', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('controller_queue_pk', ['kind', 'object_id'])
    .execute();
  await db.schema.createIndex('controller_queue_due').on('controller_queue').columns(['kind', 'not_before']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('controller_queue').execute();
}
