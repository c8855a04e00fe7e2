import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { migrateToLatest } from './migrate.js';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;
export type StoreKind = 'sqlite' | 'postgres';

export interface Store {
  db: Db;
  kind: StoreKind;
  /**
   * A cheap synchronous hint that another connection may have written since the last call (SQLite's
   * `data_version`); undefined when the engine has none, and callers must then ask the store itself.
   */
  changedElsewhere?: () => boolean;
  close(): Promise<void>;
}

/** Opens the store named by `url` (`sqlite:<path>`, `sqlite::memory:` or `postgres://…`) and migrates it. */
export async function openStore(url: string): Promise<Store> {
  let db: Db;
  let kind: StoreKind;
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    kind = 'postgres';
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  } else {
    kind = 'sqlite';
    const path = url.replace(/^sqlite:(\/\/)?/, '');
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    const conn = new SQLite(path);
    // WAL lets API replicas and the agent read while one writes; busy_timeout makes writers queue, not fail.
    conn.pragma('journal_mode = WAL');
    conn.pragma('busy_timeout = 5000');
    conn.pragma('synchronous = NORMAL');
    conn.pragma('foreign_keys = ON');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: conn }) });
    const dataVersion = conn.prepare('PRAGMA data_version').pluck();
    let last = -1;
    const changedElsewhere = () => {
      const v = dataVersion.get() as number;
      const changed = v !== last;
      last = v;
      return changed;
    };
    await migrateToLatest(db);
    return { db, kind, changedElsewhere, close: () => db.destroy() };
  }
  await migrateToLatest(db);
  return { db, kind, close: () => db.destroy() };
}

/** True when `err` is a unique-constraint violation in either engine. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export { sql };
