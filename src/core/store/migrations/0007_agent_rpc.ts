import type { Kysely } from 'kysely';

/**
 * Where a host's agent answers the API's synchronous calls when it runs as its own process (`krater agent`): its
 * RPC URL and the bearer secret it accepts, both written by the agent at start (null for the in-process agent).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('compute_hosts').addColumn('rpc_url', 'text').execute();
  await db.schema.alterTable('compute_hosts').addColumn('rpc_secret', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('compute_hosts').dropColumn('rpc_secret').execute();
  await db.schema.alterTable('compute_hosts').dropColumn('rpc_url').execute();
}
