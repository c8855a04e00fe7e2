import type { Kysely } from 'kysely';

/**
 * Zun's network records (`/v1/networks`, issue 13 item 5): a Neutron network registered for containers, as Zun's
 * `network` table. One record per Neutron network (the unique key makes a second POST return the first record).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('zun_networks')
    .addColumn('uuid', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .addColumn('neutron_net_id', 'text', (c) => c.notNull().unique())
    .addColumn('network_id', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('zun_networks').execute();
}
