import type { Kysely } from 'kysely';

/** The host CPUs a `cpu_policy=dedicated` container is pinned to (`0,1`), chosen by its agent at create. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('containers').addColumn('cpuset', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('containers').dropColumn('cpuset').execute();
}
