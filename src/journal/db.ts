import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { GvError } from '../errors.js';
import { MIGRATIONS } from './migrations.js';

/** Generations reserved per counter update. */
const GEN_BLOCK = 1024;

export type Sqlite = Database.Database;
export type Statement = Database.Statement;

export interface GvDatabaseOptions {
  /** Override the migration list (tests). */
  migrations?: readonly string[];
}

/**
 * The daemon's one SQLite database: `${stateDir}/gv.sqlite`, WAL, synchronous=NORMAL, migrations
 * applied at open. Shared by every zone of the node; statements are prepared once by their owners.
 */
export class GvDatabase {
  private closed = false;
  private readonly allocGen: Statement;
  /** Transaction control, prepared once (better-sqlite3's transaction() builds four wrappers per call: ~6 µs). */
  private readonly tx: { begin: Statement; commit: Statement; rollback: Statement; savepoint: Statement; release: Statement; rollbackTo: Statement };
  private genNext = 0;
  private genEnd = 0;

  private constructor(readonly sqlite: Sqlite, readonly file: string) {
    this.allocGen = sqlite.prepare(
      `UPDATE counters SET value = CASE WHEN value > 4294967295 - ${GEN_BLOCK} THEN ${GEN_BLOCK} ELSE value + ${GEN_BLOCK} END
       WHERE name = 'generation' RETURNING value`,
    );
    this.allocGen.pluck(true);
    this.tx = {
      begin: sqlite.prepare('BEGIN'),
      commit: sqlite.prepare('COMMIT'),
      rollback: sqlite.prepare('ROLLBACK'),
      savepoint: sqlite.prepare('SAVEPOINT gv_nested'),
      release: sqlite.prepare('RELEASE gv_nested'),
      rollbackTo: sqlite.prepare('ROLLBACK TO gv_nested'),
    };
  }

  /** Open (creating the directory and file when missing) and migrate. */
  static open(stateDir: string, opts: GvDatabaseOptions = {}): GvDatabase {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const file = path.join(stateDir, 'gv.sqlite');
    let sqlite: Sqlite;
    try {
      sqlite = new Database(file);
    } catch (err) {
      throw new GvError('CONFIG', `cannot open database ${file}: ${(err as Error).message}`, { file });
    }
    try {
      sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('synchronous = NORMAL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('busy_timeout = 5000');
      migrate(sqlite, opts.migrations ?? MIGRATIONS);
    } catch (err) {
      sqlite.close();
      throw err;
    }
    return new GvDatabase(sqlite, file);
  }

  /** Schema version (number of applied migrations). */
  get version(): number {
    return this.sqlite.pragma('user_version', { simple: true }) as number;
  }

  prepare(sql: string): Statement {
    return this.sqlite.prepare(sql);
  }

  /**
   * Run `fn` in one (deferred) transaction; nested calls become savepoints. A throw rolls back what
   * `fn` did (to the savepoint, for a nested call) and is passed on. `fn` must be synchronous.
   */
  transaction<T>(fn: () => T): T {
    const nested = this.sqlite.inTransaction;
    const { tx } = this;
    (nested ? tx.savepoint : tx.begin).run();
    try {
      const result = fn();
      if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
        throw new TypeError('a transaction function must not return a promise');
      }
      (nested ? tx.release : tx.commit).run();
      return result;
    } catch (err) {
      // SQLite may have rolled the whole transaction back already (e.g. on SQLITE_FULL).
      if (this.sqlite.inTransaction) {
        if (nested) {
          tx.rollbackTo.run();
          tx.release.run();
        } else tx.rollback.run();
      }
      throw err;
    }
  }

  /**
   * Next value of the global generation sequence (1 .. 2^32-1, wraps, never 0). Reserved from
   * SQLite in blocks, so a restart skips the unused rest of a block but never repeats a value.
   */
  allocGeneration(): number {
    if (this.genNext >= this.genEnd) {
      const end = Number(this.allocGen.get());
      this.genNext = end - GEN_BLOCK + 1;
      this.genEnd = end + 1;
    }
    return this.genNext++;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sqlite.close();
  }
}

/** Apply every migration numbered above `PRAGMA user_version`, each in its own transaction. */
export function migrate(sqlite: Sqlite, migrations: readonly string[]): void {
  const current = sqlite.pragma('user_version', { simple: true }) as number;
  if (current > migrations.length) {
    throw new GvError('CONFIG', `database schema ${current} is newer than this program (${migrations.length})`);
  }
  for (let n = current + 1; n <= migrations.length; n++) {
    const sql = migrations[n - 1]!;
    sqlite.transaction(() => {
      sqlite.exec(sql);
      sqlite.pragma(`user_version = ${n}`);
    })();
  }
}
