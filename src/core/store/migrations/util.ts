import { type ColumnDefinitionBuilder, type Kysely, PostgresAdapter } from 'kysely';

export const isPostgres = (db: Kysely<unknown>) => db.getExecutor().adapter instanceof PostgresAdapter;

/** An auto-incrementing integer primary key in either engine (`serial` vs SQLite's `autoincrement`). */
export function autoId(
  db: Kysely<unknown>,
): ['serial' | 'integer', (c: ColumnDefinitionBuilder) => ColumnDefinitionBuilder] {
  return isPostgres(db) ? ['serial', (c) => c.primaryKey()] : ['integer', (c) => c.primaryKey().autoIncrement()];
}
