import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import SQLite from 'better-sqlite3';
import {
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresDialect,
  type QueryCompiler,
  SqliteDialect,
  sql,
  type TransactionSettings,
} from 'kysely';
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

/** Told when a transaction could not be rolled back (the error that made it roll back is the one thrown). */
export type RollbackFailureHandler = (err: unknown) => void;

const logRollbackFailure: RollbackFailureHandler = (err) => {
  const e = err as { message?: string; code?: string };
  process.stderr.write(
    `${JSON.stringify({ level: 40, time: Date.now(), msg: 'store: rollback failed', err: { message: e?.message ?? String(err), code: e?.code } })}\n`,
  );
};

/**
 * Kysely rolls back when a transaction's callback throws and then rethrows — unless the rollback itself throws,
 * which replaces the cause. SQLite rolls a transaction back by itself on some errors (a full disk, an I/O error on
 * a store that turned read-only), and the ROLLBACK that follows fails with "cannot rollback - no transaction is
 * active". This driver skips a rollback when nothing is open and reports any other rollback failure without
 * throwing it, so the error that caused the rollback is what callers see and log.
 */
class RollbackSafeDriver implements Driver {
  constructor(
    private readonly inner: Driver,
    private readonly onRollbackFailure: RollbackFailureHandler,
    private readonly inTransaction?: () => boolean,
  ) {}
  init(): Promise<void> {
    return this.inner.init();
  }
  acquireConnection(): Promise<DatabaseConnection> {
    return this.inner.acquireConnection();
  }
  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.inner.beginTransaction(connection, settings);
  }
  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.inner.commitTransaction(connection);
  }
  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.inTransaction && !this.inTransaction()) return;
    try {
      await this.inner.rollbackTransaction(connection);
    } catch (err) {
      this.onRollbackFailure(err);
    }
  }
  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler['compileQuery']): Promise<void> {
    return this.inner.savepoint!(connection, name, compile);
  }
  rollbackToSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    return this.inner.rollbackToSavepoint!(connection, name, compile);
  }
  releaseSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    return this.inner.releaseSavepoint!(connection, name, compile);
  }
  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.inner.releaseConnection(connection);
  }
  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

class SafeSqliteDialect extends SqliteDialect {
  constructor(
    private readonly conn: SQLite.Database,
    private readonly onRollbackFailure: RollbackFailureHandler,
  ) {
    super({ database: conn });
  }
  override createDriver(): Driver {
    return new RollbackSafeDriver(super.createDriver(), this.onRollbackFailure, () => this.conn.inTransaction);
  }
}

class SafePostgresDialect extends PostgresDialect {
  constructor(
    pool: pg.Pool,
    private readonly onRollbackFailure: RollbackFailureHandler,
  ) {
    super({ pool });
  }
  override createDriver(): Driver {
    return new RollbackSafeDriver(super.createDriver(), this.onRollbackFailure);
  }
}

export interface StoreOptions {
  /** Where a failed rollback is reported (default: a JSON line on stderr). */
  onRollbackFailure?: RollbackFailureHandler;
}

/** Opens the store named by `url` (`sqlite:<path>`, `sqlite::memory:` or `postgres://…`) and migrates it. */
export async function openStore(url: string, opts: StoreOptions = {}): Promise<Store> {
  const onRollbackFailure = opts.onRollbackFailure ?? logRollbackFailure;
  let db: Db;
  let kind: StoreKind;
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    kind = 'postgres';
    const pool = new pg.Pool({ connectionString: url, max: 10 });
    db = new Kysely<Database>({ dialect: new SafePostgresDialect(pool, onRollbackFailure) });
  } else {
    kind = 'sqlite';
    const path = url.replace(/^sqlite:(\/\/)?/, '');
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      restrictSqliteFiles(path);
    }
    const conn = new SQLite(path);
    // WAL lets API replicas and the agent read while one writes; busy_timeout makes writers queue, not fail.
    conn.pragma('journal_mode = WAL');
    conn.pragma('busy_timeout = 5000');
    conn.pragma('synchronous = NORMAL');
    conn.pragma('foreign_keys = ON');
    db = new Kysely<Database>({ dialect: new SafeSqliteDialect(conn, onRollbackFailure) });
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

/**
 * The store holds password hashes and containers' environments: owner-only. SQLite creates `-wal` and `-shm` with
 * the database file's mode, so the file is made 0600 before SQLite first opens it; files of an older install are
 * narrowed.
 */
function restrictSqliteFiles(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  for (const f of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) if (existsSync(f)) chmodSync(f, 0o600);
}

/** True when `err` is a unique-constraint violation in either engine. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export { sql };
