import { type Kysely, sql } from 'kysely';
import { autoId, isPostgres } from './util.js';

const IMAGE_ACTIONS = ['image_pull', 'image_delete'];

/**
 * An agent task names its subject instead of borrowing `container_uuid`: `kind` is `container` (the column
 * `container_uuid`) or `image` (a host image, `image_uuid`: a `zun_images` row). `container_uuid` becomes
 * nullable. Queued image tasks are moved over. SQLite cannot drop a NOT NULL, so the (small, transient) table is
 * copied into its new shape there.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (isPostgres(db)) {
    await db.schema
      .alterTable('agent_tasks')
      .addColumn('kind', 'text', (c) => c.notNull().defaultTo('container'))
      .execute();
    await db.schema.alterTable('agent_tasks').addColumn('image_uuid', 'text').execute();
    await db.schema
      .alterTable('agent_tasks')
      .alterColumn('container_uuid', (c) => c.dropNotNull())
      .execute();
  } else {
    await db.schema
      .createTable('agent_tasks_new')
      .addColumn('id', ...autoId(db))
      .addColumn('host', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull().defaultTo('container'))
      .addColumn('container_uuid', 'text')
      .addColumn('image_uuid', 'text')
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('params', 'text', (c) => c.notNull().defaultTo('{}'))
      .addColumn('action_id', 'integer')
      .addColumn('state', 'text', (c) => c.notNull().defaultTo('pending'))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await sql`INSERT INTO agent_tasks_new (id, host, container_uuid, action, params, action_id, state, created_at)
      SELECT id, host, container_uuid, action, params, action_id, state, created_at FROM agent_tasks`.execute(db);
    await db.schema.dropTable('agent_tasks').execute();
    await db.schema.alterTable('agent_tasks_new').renameTo('agent_tasks').execute();
    await db.schema.createIndex('agent_tasks_host_state').on('agent_tasks').columns(['host', 'state']).execute();
  }
  await sql`UPDATE agent_tasks SET kind = 'image', image_uuid = container_uuid, container_uuid = NULL
    WHERE action IN (${sql.join(IMAGE_ACTIONS)})`.execute(db);
  await db.schema.createIndex('agent_tasks_container').on('agent_tasks').columns(['container_uuid']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`UPDATE agent_tasks SET container_uuid = image_uuid WHERE kind = 'image'`.execute(db);
  await db.schema.dropIndex('agent_tasks_container').execute();
  await db.schema.alterTable('agent_tasks').dropColumn('image_uuid').execute();
  await db.schema.alterTable('agent_tasks').dropColumn('kind').execute();
}
