import type { Kysely } from 'kysely';

/**
 * Zun's image-side resources: images pulled onto hosts through `/v1/images` (`zun_images`) and per-project registry
 * credentials (`registries`; the password is stored encrypted, see src/images/credentials.ts).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const s = db.schema;
  await s
    .createTable('zun_images')
    .addColumn('uuid', 'text', (c) => c.primaryKey())
    /** The engine's image id (the config digest) once pulled. */
    .addColumn('image_id', 'text')
    .addColumn('repo', 'text', (c) => c.notNull())
    .addColumn('tag', 'text', (c) => c.notNull())
    .addColumn('size', 'bigint')
    .addColumn('project_id', 'text')
    .addColumn('user_id', 'text')
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('image_pull_policy', 'text')
    /** pulling | ready | error | deleting (Krater's own; Zun does not render it). */
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('status_reason', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text')
    .addUniqueConstraint('zun_images_repo_tag_host', ['repo', 'tag', 'host'])
    .execute();
  await s
    .createTable('registries')
    .addColumn('uuid', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .addColumn('domain', 'text', (c) => c.notNull())
    .addColumn('username', 'text')
    /** `v1:<iv>:<tag>:<ciphertext>` (AES-256-GCM, base64), never the clear password. */
    .addColumn('password', 'text')
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text')
    .execute();
  await s.createIndex('registries_project').on('registries').column('project_id').execute();
}
