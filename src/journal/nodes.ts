import type { GvDatabase, Statement } from './db.js';

/** One persisted object: how to find it again (primary link) and how to tell it from a successor. */
export interface NodeRow {
  readonly fileid: bigint;
  /** Parent directory fileid; the zone root is its own parent. */
  readonly parent: bigint;
  /** Name inside the parent (empty for the root). */
  readonly name: Buffer;
  /** From the global sequence: a reused inode number gets a new one. */
  readonly generation: number;
  /** Birth time in ns, 0n when the filesystem does not report one. */
  readonly btime: bigint;
  /** File type code (vfs/local-attr.ts TYPE_CODE). */
  readonly type: number;
}

/** What the filesystem told us about an object found at (parent, name). */
export interface Observation {
  fileid: bigint;
  parent: bigint;
  name: Buffer;
  btime: bigint;
  type: number;
  nlink: number;
}

export interface NodeLink {
  parent: bigint;
  name: Buffer;
}

export interface NodeStoreOptions {
  /** Rows kept in memory (write-through cache). */
  cacheSize?: number;
}

const toDb = (v: bigint): bigint => BigInt.asIntN(64, v);
const fromDb = (v: unknown): bigint => BigInt.asUintN(64, BigInt(v as bigint | number));

interface RawRow {
  fileid: bigint;
  parent: bigint;
  name: Buffer;
  generation: bigint;
  btime: bigint;
  type: bigint;
}

/**
 * The `nodes` table of one zone behind an in-memory cache. Writes go straight through; a write is
 * skipped when the cached row already says the same thing. All methods are synchronous
 * (better-sqlite3) and cheap enough for the NFS hot path.
 */
export class NodeStore {
  private readonly cache = new Map<bigint, NodeRow>();
  private readonly cacheSize: number;
  private readonly sGet: Statement;
  private readonly sUpsert: Statement;
  private readonly sDelete: Statement;
  private readonly sDeleteLinksOf: Statement;
  private readonly sLinksOf: Statement;
  private readonly sLinkAt: Statement;
  private readonly sAddLink: Statement;
  private readonly sDelLink: Statement;
  private readonly sCount: Statement;

  constructor(private readonly db: GvDatabase, readonly zoneId: number, opts: NodeStoreOptions = {}) {
    this.cacheSize = Math.max(16, opts.cacheSize ?? 200_000);
    this.sGet = db.prepare(
      'SELECT fileid, parent, name, generation, btime, type FROM nodes WHERE zone_id = ? AND fileid = ?',
    ).safeIntegers(true);
    this.sUpsert = db.prepare(
      `INSERT INTO nodes (zone_id, fileid, parent, name, generation, btime, type) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (zone_id, fileid) DO UPDATE SET parent = excluded.parent, name = excluded.name,
         generation = excluded.generation, btime = excluded.btime, type = excluded.type`,
    );
    this.sDelete = db.prepare('DELETE FROM nodes WHERE zone_id = ? AND fileid = ?');
    this.sDeleteLinksOf = db.prepare('DELETE FROM node_links WHERE zone_id = ? AND fileid = ?');
    this.sLinksOf = db.prepare(
      'SELECT parent, name FROM node_links WHERE zone_id = ? AND fileid = ? ORDER BY parent, name',
    ).safeIntegers(true);
    this.sLinkAt = db.prepare('SELECT fileid FROM node_links WHERE zone_id = ? AND parent = ? AND name = ?')
      .safeIntegers(true).pluck(true);
    this.sAddLink = db.prepare(
      `INSERT INTO node_links (zone_id, parent, name, fileid) VALUES (?, ?, ?, ?)
       ON CONFLICT (zone_id, parent, name) DO UPDATE SET fileid = excluded.fileid`,
    );
    this.sDelLink = db.prepare('DELETE FROM node_links WHERE zone_id = ? AND parent = ? AND name = ?');
    this.sCount = db.prepare('SELECT count(*) FROM nodes WHERE zone_id = ?').pluck(true);
  }

  /** Run several store operations in one transaction (batch writes, e.g. a directory listing). */
  batch<T>(fn: () => T): T {
    return this.db.sqlite.inTransaction ? fn() : this.db.transaction(fn);
  }

  get(fileid: bigint): NodeRow | undefined {
    const hit = this.cache.get(fileid);
    if (hit) return hit;
    const raw = this.sGet.get(this.zoneId, toDb(fileid)) as RawRow | undefined;
    if (!raw) return undefined;
    const row: NodeRow = {
      fileid,
      parent: fromDb(raw.parent),
      name: raw.name,
      generation: Number(raw.generation),
      btime: BigInt(raw.btime),
      type: Number(raw.type),
    };
    this.remember(row);
    return row;
  }

  /**
   * True when the cached row of `fileid` already names it (parent, name) with this birth time:
   * observe() would write nothing. A cheap check for listings, which meet every name once.
   */
  knows(fileid: bigint, parent: bigint, name: Buffer, btime: bigint): boolean {
    const row = this.cache.get(fileid);
    return row !== undefined && row.parent === parent && row.btime === btime && btime !== 0n && row.name.equals(name);
  }

  /** Rows persisted for this zone (tests, stats). */
  count(): number {
    return Number(this.sCount.get(this.zoneId));
  }

  /** Write a row (skipped when identical to the cached one). */
  put(row: NodeRow): NodeRow {
    const old = this.cache.get(row.fileid);
    if (old && sameRow(old, row)) return old;
    this.sUpsert.run(
      this.zoneId, toDb(row.fileid), toDb(row.parent), row.name, row.generation, row.btime, row.type,
    );
    this.remember(row);
    return row;
  }

  /**
   * A brand-new object (we just created it): any row left for this inode number belongs to a dead
   * predecessor, so the object gets a fresh generation.
   */
  fresh(o: Observation): NodeRow {
    if (!this.get(o.fileid)) return this.batch(() => this.insert(o));
    return this.batch(() => {
      this.sDeleteLinksOf.run(this.zoneId, toDb(o.fileid));
      return this.insert(o);
    });
  }

  private insert(o: Observation): NodeRow {
    return this.put({
      fileid: o.fileid, parent: o.parent, name: Buffer.from(o.name), generation: this.db.allocGeneration(),
      btime: o.btime, type: o.type,
    });
  }

  /**
   * Record an object found at (parent, name) by lookup/readdir. Keeps the generation when the row
   * describes the same object (same birth time when both are known, else same type), allocates a
   * new one when it does not. Writes nothing when nothing changed.
   */
  observe(o: Observation): NodeRow {
    const old = this.get(o.fileid);
    if (!old) return this.batch(() => this.insert(o)); // no row, so no extra links either
    const same = old.btime !== 0n && o.btime !== 0n ? old.btime === o.btime : old.type === o.type;
    if (!same) return this.fresh(o);
    const sameLink = old.parent === o.parent && old.name.equals(o.name);
    if (sameLink) {
      if (old.btime === 0n && o.btime !== 0n) return this.put({ ...old, btime: o.btime });
      return old;
    }
    if (o.nlink > 1 && old.fileid !== old.parent) {
      // Another hard link of a multiply-linked file: remember it, keep the primary link.
      const known = this.sLinkAt.get(this.zoneId, toDb(o.parent), o.name) as bigint | undefined;
      if (known === undefined || fromDb(known) !== o.fileid) {
        this.sAddLink.run(this.zoneId, toDb(o.parent), Buffer.from(o.name), toDb(o.fileid));
      }
      return old;
    }
    // Moved (renamed out of band, or the primary link went away): follow it.
    return this.put({ ...old, parent: o.parent, name: Buffer.from(o.name), btime: o.btime || old.btime });
  }

  /** Our own rename moved the primary link of `fileid` (or one of its extra links). */
  move(fileid: bigint, fromParent: bigint, fromName: Buffer, toParent: bigint, toName: Buffer): void {
    const old = this.get(fileid);
    if (!old) return;
    this.batch(() => {
      if (old.parent === fromParent && old.name.equals(fromName)) {
        this.put({ ...old, parent: toParent, name: Buffer.from(toName) });
      } else {
        this.sDelLink.run(this.zoneId, toDb(fromParent), fromName);
        this.sAddLink.run(this.zoneId, toDb(toParent), Buffer.from(toName), toDb(fileid));
      }
    });
  }

  /** A hard link we made: remember the extra name. */
  addLink(fileid: bigint, parent: bigint, name: Buffer): void {
    const old = this.get(fileid);
    if (old && old.parent === parent && old.name.equals(name)) return;
    this.sAddLink.run(this.zoneId, toDb(parent), Buffer.from(name), toDb(fileid));
  }

  /** Make a known extra link the primary one (the old primary name is gone). */
  promote(fileid: bigint, link: NodeLink): NodeRow {
    const old = this.get(fileid);
    if (!old) throw new Error('promote of an unknown node');
    return this.batch(() => {
      this.sDelLink.run(this.zoneId, toDb(link.parent), link.name);
      return this.put({ ...old, parent: link.parent, name: Buffer.from(link.name) });
    });
  }

  /** Extra (non-primary) links known for an object. */
  linksOf(fileid: bigint): NodeLink[] {
    const rows = this.sLinksOf.all(this.zoneId, toDb(fileid)) as { parent: bigint; name: Buffer }[];
    return rows.map((r) => ({ parent: fromDb(r.parent), name: r.name }));
  }

  /**
   * The name (parent, name) of `fileid` was unlinked. When `remainingLinks` is 0 the row goes away;
   * otherwise a removed primary link is replaced by a known extra link when there is one.
   */
  unlinked(fileid: bigint, parent: bigint, name: Buffer, remainingLinks: number): void {
    const old = this.get(fileid);
    this.batch(() => {
      if (remainingLinks <= 0) {
        this.sDelete.run(this.zoneId, toDb(fileid));
        this.sDeleteLinksOf.run(this.zoneId, toDb(fileid));
        this.cache.delete(fileid);
        return;
      }
      if (!old) return;
      if (old.parent === parent && old.name.equals(name)) {
        const next = this.linksOf(fileid)[0];
        if (next) {
          this.sDelLink.run(this.zoneId, toDb(next.parent), next.name);
          this.put({ ...old, parent: next.parent, name: next.name });
        }
      } else {
        this.sDelLink.run(this.zoneId, toDb(parent), name);
      }
    });
  }

  /** Forget a row entirely (object found gone). */
  forget(fileid: bigint): void {
    this.batch(() => {
      this.sDelete.run(this.zoneId, toDb(fileid));
      this.sDeleteLinksOf.run(this.zoneId, toDb(fileid));
    });
    this.cache.delete(fileid);
  }

  /** Drop the in-memory cache (tests; simulates a restart). */
  clearCache(): void {
    this.cache.clear();
  }

  private remember(row: NodeRow): void {
    if (this.cache.has(row.fileid)) this.cache.delete(row.fileid);
    else if (this.cache.size >= this.cacheSize) {
      const oldest = this.cache.keys().next().value as bigint;
      this.cache.delete(oldest);
    }
    this.cache.set(row.fileid, row);
  }
}

function sameRow(a: NodeRow, b: NodeRow): boolean {
  return a.parent === b.parent && a.generation === b.generation && a.btime === b.btime && a.type === b.type
    && a.name.equals(b.name);
}
