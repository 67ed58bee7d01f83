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
  /** Node id that made this version ('' for rows written before migration 4). */
  origin: string;
}

/** The last known state of a path whose object went away (removed, or renamed elsewhere). */
export interface Tombstone {
  path: Buffer;
  type: FileType;
  /** The object's vector when it went. */
  vector: VersionVector;
  origin: string;
  atMs: number;
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
  origin: string;
}

const toDb = (v: bigint): bigint => BigInt.asIntN(64, v);
const fromDb = (v: bigint): bigint => BigInt.asUintN(64, v);

function fromRaw(r: RawEntry): IndexEntry {
  return {
    fileid: fromDb(r.fileid), path: r.path, type: r.type as FileType, size: r.size, mtimeNs: r.mtime_ns,
    ino: fromDb(r.ino), mode: Number(r.mode), vector: decodeVector(r.vector), hashes: r.hashes, origin: r.origin,
  };
}

/** Path `p` joined under directory path `dir` (both relative; '' is the root). */
export function joinRel(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 0 ? Buffer.from(name) : Buffer.concat([dir, Buffer.from('/'), name]);
}

/** Entries remembered by recentAt (then forgotten all at once). */
const RECENT_MAX = 8192;

export class IndexStore {
  /**
   * The entries put lately, by path (latin1), each kept only while it is what the index holds at
   * that path and for that object: any other put or delete touching either drops it, and a subtree
   * move or removal, or a rolled-back transaction (forgetRecent), drops them all.
   */
  private readonly recent = new Map<string, IndexEntry>();
  private readonly recentKey = new Map<bigint, string>();
  private readonly sGet: Statement;
  private readonly sByPath: Statement;
  private readonly sByIno: Statement;
  private readonly sPut: Statement;
  private readonly sDel: Statement;
  private readonly sUnder: Statement;
  private readonly sPage: Statement;
  private readonly sSetPath: Statement;
  private readonly sAll: Statement;
  private readonly sCount: Statement;
  private readonly sTombGet: Statement;
  private readonly sTombPut: Statement;
  private readonly sTombDel: Statement;
  private readonly sTombUnder: Statement;

  constructor(db: GvDatabase, readonly zone: string) {
    const cols = 'fileid, path, type, size, mtime_ns, ino, mode, vector, hashes, origin';
    this.sGet = db.prepare(`SELECT ${cols} FROM file_index WHERE zone = ? AND fileid = ?`).safeIntegers(true);
    // Two steps (covering index, then primary key): measured 8 + 10 µs against 78 µs for one query.
    this.sByPath = db.prepare('SELECT fileid FROM file_index WHERE zone = ? AND path = ?').safeIntegers(true).pluck(true);
    this.sByIno = db.prepare(`SELECT ${cols} FROM file_index WHERE zone = ? AND ino = ?`).safeIntegers(true);
    this.sPut = db.prepare(
      `INSERT INTO file_index (zone, ${cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (zone, fileid) DO UPDATE SET path = excluded.path, type = excluded.type, size = excluded.size,
         mtime_ns = excluded.mtime_ns, ino = excluded.ino, mode = excluded.mode, vector = excluded.vector,
         hashes = excluded.hashes, origin = excluded.origin`,
    );
    this.sDel = db.prepare('DELETE FROM file_index WHERE zone = ? AND fileid = ?');
    // Everything below a directory: paths between "dir/" and "dir0" ('0' follows '/').
    this.sUnder = db.prepare('SELECT fileid, path FROM file_index WHERE zone = ? AND path > ? AND path < ?').safeIntegers(true);
    // One page of a subtree in path (memcmp) order: a directory always precedes its contents.
    this.sPage = db.prepare(
      `SELECT ${cols} FROM file_index WHERE zone = ? AND path > ? AND (? IS NULL OR path < ?) ORDER BY path LIMIT ?`,
    ).safeIntegers(true);
    this.sSetPath = db.prepare('UPDATE file_index SET path = ? WHERE zone = ? AND fileid = ?');
    this.sAll = db.prepare(`SELECT ${cols} FROM file_index WHERE zone = ?`).safeIntegers(true);
    this.sCount = db.prepare('SELECT count(*) FROM file_index WHERE zone = ?').pluck(true);
    this.sTombGet = db.prepare('SELECT path, type, vector, origin, at_ms FROM tombstones WHERE zone = ? AND path = ?').safeIntegers(true);
    this.sTombUnder = db.prepare('SELECT path, type, vector, origin, at_ms FROM tombstones WHERE zone = ? AND path > ? AND path < ?').safeIntegers(true);
    this.sTombPut = db.prepare(
      `INSERT INTO tombstones (zone, path, type, vector, origin, at_ms) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (zone, path) DO UPDATE SET type = excluded.type, vector = excluded.vector, origin = excluded.origin,
         at_ms = excluded.at_ms`,
    );
    this.sTombDel = db.prepare('DELETE FROM tombstones WHERE zone = ? AND path = ?');
  }

  get(fileid: bigint): IndexEntry | undefined {
    const r = this.sGet.get(this.zone, toDb(fileid)) as RawEntry | undefined;
    return r && fromRaw(r);
  }

  /** The fileid indexed at `path` (one look in the covering path index; no row decoding). */
  idByPath(path: Buffer): bigint | undefined {
    const id = this.sByPath.get(this.zone, path) as bigint | undefined;
    return id === undefined ? undefined : fromDb(id);
  }

  byPath(path: Buffer): IndexEntry | undefined {
    const id = this.idByPath(path);
    return id === undefined ? undefined : this.get(id);
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
    this.forgetId(e.fileid);
    const k = e.path.toString('latin1');
    const there = this.recent.get(k);
    if (there) {
      this.recent.delete(k);
      this.recentKey.delete(there.fileid);
    }
    this.sPut.run(
      this.zone, toDb(e.fileid), e.path, e.type, e.size, e.mtimeNs, toDb(e.ino), e.mode, encodeVector(e.vector), e.hashes,
      e.origin,
    );
    // Only a path the index held no other entry for lately (a path holds one object).
    if (there && there.fileid !== e.fileid) return;
    if (this.recent.size >= RECENT_MAX) this.forgetRecent();
    this.recent.set(k, e);
    this.recentKey.set(e.fileid, k);
  }

  delete(fileid: bigint): void {
    this.forgetId(fileid);
    this.sDel.run(this.zone, toDb(fileid));
  }

  /**
   * The entry last put at `path` in this process, while it is still the index's entry there (no
   * query); undefined when not remembered.
   */
  recentAt(path: Buffer): IndexEntry | undefined {
    return this.recent.size === 0 ? undefined : this.recent.get(path.toString('latin1'));
  }

  /** Forget every remembered entry (a transaction was rolled back, or a subtree changed). */
  forgetRecent(): void {
    this.recent.clear();
    this.recentKey.clear();
  }

  private forgetId(fileid: bigint): void {
    const k = this.recentKey.get(fileid);
    if (k === undefined) return;
    this.recentKey.delete(fileid);
    this.recent.delete(k);
  }

  /** Rewrite the paths of everything below directory `from` to lie below `to` (a directory rename). */
  movePrefix(from: Buffer, to: Buffer): number {
    this.forgetRecent();
    const lo = Buffer.concat([from, Buffer.from('/')]);
    const hi = Buffer.concat([from, Buffer.from('0')]);
    const rows = this.sUnder.all(this.zone, lo, hi) as { fileid: bigint; path: Buffer }[];
    for (const r of rows) {
      this.sSetPath.run(Buffer.concat([to, r.path.subarray(from.length)]), this.zone, r.fileid);
    }
    return rows.length;
  }

  /**
   * At most `limit` entries below directory `dir` ('' = the whole zone) after path `after`
   * (exclusive; null = from the start), ordered by path bytes.
   */
  page(dir: Buffer, after: Buffer | null, limit: number): IndexEntry[] {
    const lo = dir.length === 0 ? Buffer.alloc(0) : Buffer.concat([dir, Buffer.from('/')]);
    const hi = dir.length === 0 ? null : Buffer.concat([dir, Buffer.from('0')]);
    const from = after && Buffer.compare(after, lo) > 0 ? after : lo;
    return (this.sPage.all(this.zone, from, hi, hi, limit) as RawEntry[]).map(fromRaw);
  }

  /** Everything indexed below directory `dir`, deepest paths first. */
  under(dir: Buffer): IndexEntry[] {
    const lo = Buffer.concat([dir, Buffer.from('/')]);
    const hi = Buffer.concat([dir, Buffer.from('0')]);
    const ids = this.sUnder.all(this.zone, lo, hi) as { fileid: bigint; path: Buffer }[];
    ids.sort((a, b) => b.path.length - a.path.length || Buffer.compare(a.path, b.path));
    const out: IndexEntry[] = [];
    for (const r of ids) {
      const e = this.sGet.get(this.zone, r.fileid) as RawEntry | undefined;
      if (e) out.push(fromRaw(e));
    }
    return out;
  }

  /** Delete everything below directory `dir` (it went away); answers the entries removed. */
  deleteUnder(dir: Buffer): number {
    this.forgetRecent();
    const lo = Buffer.concat([dir, Buffer.from('/')]);
    const hi = Buffer.concat([dir, Buffer.from('0')]);
    const rows = this.sUnder.all(this.zone, lo, hi) as { fileid: bigint; path: Buffer }[];
    for (const r of rows) this.sDel.run(this.zone, r.fileid);
    return rows.length;
  }

  /** The tombstone of `path`, if its last object went away and nothing appeared there since. */
  tombstone(path: Buffer): Tombstone | undefined {
    const r = this.sTombGet.get(this.zone, path) as { path: Buffer; type: string; vector: Buffer; origin: string; at_ms: bigint } | undefined;
    return r && { path: r.path, type: r.type as FileType, vector: decodeVector(r.vector), origin: r.origin, atMs: Number(r.at_ms) };
  }

  /** Tombstones below directory `dir`. */
  tombstonesUnder(dir: Buffer): Tombstone[] {
    const lo = Buffer.concat([dir, Buffer.from('/')]);
    const hi = Buffer.concat([dir, Buffer.from('0')]);
    return (this.sTombUnder.all(this.zone, lo, hi) as { path: Buffer; type: string; vector: Buffer; origin: string; at_ms: bigint }[])
      .map((r) => ({ path: r.path, type: r.type as FileType, vector: decodeVector(r.vector), origin: r.origin, atMs: Number(r.at_ms) }));
  }

  /** Record that `path`'s object went away with `vector` (call inside the change's transaction). */
  putTombstone(t: Tombstone): void {
    this.sTombPut.run(this.zone, t.path, t.type, encodeVector(t.vector), t.origin, t.atMs);
  }

  /** An object appeared at `path`. */
  deleteTombstone(path: Buffer): void {
    this.sTombDel.run(this.zone, path);
  }
}
