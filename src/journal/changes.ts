/**
 * The change journal of one zone: `record()` bumps the zone version, appends the change row and
 * updates the file index in ONE SQLite transaction, and is called only after the change reached
 * the file system. A crash before the commit leaves neither the row nor the bump; the version
 * counter lives in the same database, so a number is never handed out twice.
 */
import { decodeVector, encodeVector, type VersionVector } from '../replication/vector.js';
import type { FileType } from '../vfs/types.js';
import type { GvDatabase, Statement } from './db.js';
import { IndexStore, type IndexEntry } from './index-store.js';

export const CHANGE_KINDS = [
  'create', 'write', 'truncate', 'setattr', 'mkdir', 'remove', 'rmdir', 'rename', 'link', 'symlink', 'mknod',
] as const;
export type ChangeKind = (typeof CHANGE_KINDS)[number];

export interface Change {
  kind: ChangeKind;
  fileid: bigint;
  /** Relative to the zone root. For rename, the old path. */
  path: Buffer;
  /** Rename: the new path. Link: null (path is the new name). */
  toPath?: Buffer | null;
  type: FileType;
  size?: bigint | null;
  mtimeNs?: bigint | null;
  mode?: number | null;
  hashes?: Buffer | null;
  /** Symlink target. */
  target?: Buffer | null;
  /** Node id that originated the change. */
  origin: string;
  /** The object's version vector after the change. */
  vector: VersionVector;
}

export interface ChangeRow extends Change {
  version: bigint;
  atMs: number;
}

/** What the same transaction does to the index. */
export interface IndexEffect {
  put?: IndexEntry;
  delete?: bigint;
  /** A directory moved: rewrite its descendants' paths. */
  movePrefix?: { from: Buffer; to: Buffer };
  /** A directory went away: drop its descendants. */
  deleteUnder?: Buffer;
}

interface RawChange {
  version: bigint;
  kind: string;
  fileid: bigint;
  path: Buffer;
  to_path: Buffer | null;
  type: string;
  size: bigint | null;
  mtime_ns: bigint | null;
  mode: bigint | null;
  hashes: Buffer | null;
  target: Buffer | null;
  origin: string;
  vector: Buffer;
  at_ms: bigint;
}

export class ChangeLog {
  readonly index: IndexStore;
  private readonly sEnsure: Statement;
  private readonly sBump: Statement;
  private readonly sVersion: Statement;
  private readonly sInsert: Statement;
  private readonly sSince: Statement;
  private readonly tx: (c: Change, fx: IndexEffect) => bigint;

  constructor(db: GvDatabase, readonly zone: string) {
    this.index = new IndexStore(db, zone);
    this.sEnsure = db.prepare('INSERT INTO zone_versions (zone, version) VALUES (?, 0) ON CONFLICT (zone) DO NOTHING');
    this.sBump = db.prepare('UPDATE zone_versions SET version = version + 1 WHERE zone = ? RETURNING version')
      .safeIntegers(true).pluck(true);
    this.sVersion = db.prepare('SELECT version FROM zone_versions WHERE zone = ?').safeIntegers(true).pluck(true);
    this.sInsert = db.prepare(
      `INSERT INTO zone_changes (zone, version, kind, fileid, path, to_path, type, size, mtime_ns, mode, hashes, target,
         origin, vector, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.sSince = db.prepare(
      `SELECT version, kind, fileid, path, to_path, type, size, mtime_ns, mode, hashes, target, origin, vector, at_ms
       FROM zone_changes WHERE zone = ? AND version > ? ORDER BY version LIMIT ?`,
    ).safeIntegers(true);
    this.sEnsure.run(zone);
    this.tx = db.sqlite.transaction((c: Change, fx: IndexEffect): bigint => {
      const version = this.sBump.get(this.zone) as bigint;
      const atMs = Date.now();
      this.sInsert.run(
        this.zone, version, c.kind, BigInt.asIntN(64, c.fileid), c.path, c.toPath ?? null, c.type, c.size ?? null,
        c.mtimeNs ?? null, c.mode ?? null, c.hashes ?? null, c.target ?? null, c.origin, encodeVector(c.vector), atMs,
      );
      // Tombstones: a path whose object went away keeps the object's last vector, so a change
      // that did not know of the removal compares as concurrent, and an object that appears
      // there later starts after it.
      if (c.kind === 'remove' || c.kind === 'rmdir') {
        this.index.putTombstone({ path: c.path, type: c.type, vector: c.vector, origin: c.origin, atMs });
      } else if (c.kind === 'rename') {
        if (c.toPath && !c.toPath.equals(c.path)) {
          this.index.putTombstone({ path: c.path, type: c.type, vector: c.vector, origin: c.origin, atMs });
          this.index.deleteTombstone(c.toPath);
        }
      } else {
        this.index.deleteTombstone(c.path);
      }
      // Deletions first: a rename onto a directory drops what was below it before moving in.
      if (fx.deleteUnder) this.index.deleteUnder(fx.deleteUnder);
      if (fx.delete !== undefined) this.index.delete(fx.delete);
      if (fx.movePrefix) this.index.movePrefix(fx.movePrefix.from, fx.movePrefix.to);
      if (fx.put) this.index.put(fx.put);
      return version;
    });
  }

  /** The zone's current (last committed) version. */
  version(): bigint {
    return (this.sVersion.get(this.zone) as bigint | undefined) ?? 0n;
  }

  /** Append `change` (and apply `effect` to the index) under the next version; answers it. */
  record(change: Change, effect: IndexEffect = {}): bigint {
    try {
      return this.tx(change, effect);
    } catch (err) {
      this.index.forgetRecent(); // rolled back: what it put is not in the index
      throw err;
    }
  }

  /** Changes after `version`, oldest first. */
  since(version: bigint, limit = 10_000): ChangeRow[] {
    return (this.sSince.all(this.zone, version, limit) as RawChange[]).map((r) => ({
      version: r.version, kind: r.kind as ChangeKind, fileid: BigInt.asUintN(64, r.fileid), path: r.path, toPath: r.to_path,
      type: r.type as FileType, size: r.size, mtimeNs: r.mtime_ns, mode: r.mode === null ? null : Number(r.mode),
      hashes: r.hashes, target: r.target, origin: r.origin, vector: decodeVector(r.vector), atMs: Number(r.at_ms),
    }));
  }
}
