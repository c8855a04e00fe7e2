import type { Kysely } from 'kysely';

/**
 * Resource providers (issue 12, item 2): one row per compute host with a generation, bumped compare-and-swap by
 * every placement on that host in the transaction that inserts the container (compute/placement.ts), as
 * OpenStack Placement's provider generations. What a host holds stays summed from its containers' rows.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('resource_providers')
    .addColumn('host', 'text', (c) => c.primaryKey())
    .addColumn('generation', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('resource_providers').execute();
}
