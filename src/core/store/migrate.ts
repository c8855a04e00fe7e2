import { type Kysely, type Migration, type MigrationProvider, Migrator } from 'kysely';
import * as m0001 from './migrations/0001_identity.js';

/** Every migration, in order. Later issues append here; never edit one that has shipped. */
const migrations: Record<string, Migration> = {
  '0001_identity': m0001,
};

class InCodeProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations;
  }
}

export async function migrateToLatest(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider: new InCodeProvider(), migrationTableName: 'krater_migrations', migrationLockTableName: 'krater_migration_lock' });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    throw new Error(`store migration ${failed ?? ''} failed: ${(error as Error).message ?? error}`);
  }
}
