import type { Kysely } from 'kysely';

/**
 * Owner references (issue 11, item 6): a container may belong to another object — a capsule, a Magnum cluster, a
 * test-only kind — named by kind and id. Deleting the owner deletes what it owns; the garbage collector
 * (src/controllers/garbage-collector.ts) finds owned rows whose owner is gone, so that holds after a crash too.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('containers').addColumn('owner_kind', 'text').execute();
  await db.schema.alterTable('containers').addColumn('owner_id', 'text').execute();
  await db.schema.createIndex('containers_owner').on('containers').columns(['owner_kind', 'owner_id']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('containers_owner').execute();
  await db.schema.alterTable('containers').dropColumn('owner_id').execute();
  await db.schema.alterTable('containers').dropColumn('owner_kind').execute();
}
