/**
 * The file index of one zone (table file_index): per object its path, type, size, mtime, inode,
 * mode, version vector and block hashes, as of its last journaled change. Written only by
 * ChangeLog.record (inside the change's transaction); read freely.
 */
import { decodeVector, encodeVector, type VersionVector } from '../replication/vector.js';
import type { FileType } from '../vfs/types.js';
import type { GvDatabase, Statement } from './db.js';

export interface IndexEntry {
  fileid: bigint;
  /** Relative to the zone root, no leading slash. */
  path: Buffer;
  type: FileType;
  size: bigint;
  mtimeNs: bigint;
  ino: bigint;
  mode: number;
  vector: VersionVector;
  /** Concatenated SHA-256 of each 1 MiB block (regular files), else null. */
  hashes: Buffer | null;
}

interface RawEntry {
  fileid: bigint;
  path: Buffer;
  type: string;
  size: bigint;
  mtime_ns: bigint;
  ino: bigint;
  mode: bigint;
  vector: Buffer;
  hashes: Buffer | null;
}

const toDb = (v: bigint): bigint => BigInt.asIntN(64, v);
const fromDb = (v: bigint): bigint => BigInt.asUintN(64, v);

function fromRaw(r: RawEntry): IndexEntry {
  return {
    fileid: fromDb(r.fileid), path: r.path, type: r.type as FileType, size: r.size, mtimeNs: r.mtime_ns,
    ino: fromDb(r.ino), mode: Number(r.mode), vector: decodeVector(r.vector), hashes: r.hashes,
  };
}

/** Path `p` joined under directory path `dir` (both relative; '' is the root). */
export function joinRel(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 0 ? Buffer.from(name) : Buffer.concat([dir, Buffer.from('/'), name]);
}

export class IndexStore {
  private readonly sGet: Statement;
  private readonly sByPath: Statement;
  private readonly sByIno: Statement;
  private readonly sPut: Statement;
  private readonly sDel: Statement;
  private readonly sUnder: Statement;
  private readonly sSetPath: Statement;
  private readonly sAll: Statement;
  private readonly sCount: Statement;

  constructor(db: GvDatabase, readonly zone: string) {
    const cols = 'fileid, path, type, size, mtime_ns, ino, mode, vector, hashes';
    this.sGet = db.prepare(`SELECT ${cols} FROM file_index WHERE zone = ? AND fileid = ?`).safeIntegers(true);
    // Two steps (covering index, then primary key): measured 8 + 10 µs against 78 µs for one query.
    this.sByPath = db.prepare('SELECT fileid FROM file_index WHERE zone = ? AND path = ?').safeIntegers(true).pluck(true);
    this.sByIno = db.prepare(`SELECT ${cols} FROM file_index WHERE zone = ? AND ino = ?`).safeIntegers(true);
    this.sPut = db.prepare(
      `INSERT INTO file_index (zone, ${cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (zone, fileid) DO UPDATE SET path = excluded.path, type = excluded.type, size = excluded.size,
         mtime_ns = excluded.mtime_ns, ino = excluded.ino, mode = excluded.mode, vector = excluded.vector,
         hashes = excluded.hashes`,
    );
    this.sDel = db.prepare('DELETE FROM file_index WHERE zone = ? AND fileid = ?');
    // Everything below a directory: paths between "dir/" and "dir0" ('0' follows '/').
    this.sUnder = db.prepare('SELECT fileid, path FROM file_index WHERE zone = ? AND path > ? AND path < ?').safeIntegers(true);
    this.sSetPath = db.prepare('UPDATE file_index SET path = ? WHERE zone = ? AND fileid = ?');
    this.sAll = db.prepare(`SELECT ${cols} FROM file_index WHERE zone = ?`).safeIntegers(true);
    this.sCount = db.prepare('SELECT count(*) FROM file_index WHERE zone = ?').pluck(true);
  }

  get(fileid: bigint): IndexEntry | undefined {
    const r = this.sGet.get(this.zone, toDb(fileid)) as RawEntry | undefined;
    return r && fromRaw(r);
  }

  byPath(path: Buffer): IndexEntry | undefined {
    const id = this.sByPath.get(this.zone, path) as bigint | undefined;
    if (id === undefined) return undefined;
    const r = this.sGet.get(this.zone, id) as RawEntry | undefined;
    return r && fromRaw(r);
  }

  byIno(ino: bigint): IndexEntry | undefined {
    const r = this.sByIno.get(this.zone, toDb(ino)) as RawEntry | undefined;
    return r && fromRaw(r);
  }

  all(): IndexEntry[] {
    return (this.sAll.all(this.zone) as RawEntry[]).map(fromRaw);
  }

  count(): number {
    return Number(this.sCount.get(this.zone));
  }

  /** Insert or replace (call inside the change's transaction). */
  put(e: IndexEntry): void {
    this.sPut.run(
      this.zone, toDb(e.fileid), e.path, e.type, e.size, e.mtimeNs, toDb(e.ino), e.mode, encodeVector(e.vector), e.hashes,
    );
  }

  delete(fileid: bigint): void {
    this.sDel.run(this.zone, toDb(fileid));
  }

  /** Rewrite the paths of everything below directory `from` to lie below `to` (a directory rename). */
  movePrefix(from: Buffer, to: Buffer): number {
    const lo = Buffer.concat([from, Buffer.from('/')]);
    const hi = Buffer.concat([from, Buffer.from('0')]);
    const rows = this.sUnder.all(this.zone, lo, hi) as { fileid: bigint; path: Buffer }[];
    for (const r of rows) {
      this.sSetPath.run(Buffer.concat([to, r.path.subarray(from.length)]), this.zone, r.fileid);
    }
    return rows.length;
  }

  /** Delete everything below directory `dir` (it went away); answers the entries removed. */
  deleteUnder(dir: Buffer): number {
    const lo = Buffer.concat([dir, Buffer.from('/')]);
    const hi = Buffer.concat([dir, Buffer.from('0')]);
    const rows = this.sUnder.all(this.zone, lo, hi) as { fileid: bigint; path: Buffer }[];
    for (const r of rows) this.sDel.run(this.zone, r.fileid);
    return rows.length;
  }
}
