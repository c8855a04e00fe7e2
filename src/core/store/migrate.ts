import { type Kysely, type Migration, type MigrationProvider, Migrator } from 'kysely';
import * as m0001 from './migrations/0001_identity.js';
import * as m0002 from './migrations/0002_images.js';
import * as m0003 from './migrations/0003_containers.js';
import * as m0004 from './migrations/0004_images_registries.js';
import * as m0005 from './migrations/0005_network.js';
import * as m0006 from './migrations/0006_container_cpuset.js';
import * as m0007 from './migrations/0007_agent_rpc.js';
import * as m0008 from './migrations/0008_published_ports.js';
import * as m0009 from './migrations/0009_auth_failures.js';
import * as m0010 from './migrations/0010_controller_queue.js';
import * as m0011 from './migrations/0011_agent_task_subject.js';
import * as m0012 from './migrations/0012_sealed_secrets.js';
import * as m0013 from './migrations/0013_owner_refs.js';
import * as m0014 from './migrations/0014_resource_providers.js';
import * as m0022 from './migrations/0022_zun_networks.js';

/** Every migration, in order. Later issues append here; never edit one that has shipped. */
const migrations: Record<string, Migration> = {
  '0001_identity': m0001,
  '0002_images': m0002,
  '0003_containers': m0003,
  '0004_images_registries': m0004,
  '0005_network': m0005,
  '0006_container_cpuset': m0006,
  '0007_agent_rpc': m0007,
  '0008_published_ports': m0008,
  '0009_auth_failures': m0009,
  '0010_controller_queue': m0010,
  '0011_agent_task_subject': m0011,
  '0012_sealed_secrets': m0012,
  '0013_owner_refs': m0013,
  '0014_resource_providers': m0014,
  '0022_zun_networks': m0022,
};

class InCodeProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations;
  }
}

export async function migrateToLatest(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: new InCodeProvider(),
    migrationTableName: 'krater_migrations',
    migrationLockTableName: 'krater_migration_lock',
    // Issues land migrations in parallel; each is independent of the others' tables, so order of arrival may vary.
    allowUnorderedMigrations: true,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new Error(`store migration ${failed ?? ''} failed: ${(error as Error).message ?? error}`);
  }
}
