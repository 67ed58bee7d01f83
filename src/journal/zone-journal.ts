/**
 * The journal of one zone at run time: a serial queue of journal tasks (one SQLite transaction
 * each), coalesced WRITE streams with incremental block hashing, and the index. The ZoneFs wrapper
 * (vfs/journaled.ts), the start-up scan (scan.ts) and the watcher (watch.ts) feed it. Tasks run
 * after the NFS reply: the hot path only notes what happened.
 */
import { GvError } from '../errors.js';
import { bump, EMPTY_VECTOR, merge, type VersionVector } from '../replication/vector.js';
import type { Attr, CallContext, FileId, FileType, ZoneFs } from '../vfs/types.js';
import { ChangeLog, type Change, type ChangeKind, type IndexEffect } from './changes.js';
import { WriteCoalescer, type Taken } from './coalesce.js';
import type { GvDatabase, Statement } from './db.js';
import { BLOCK_SIZE, BlockHasher, type BlockReader } from './hasher.js';
import type { IndexEntry, Tombstone } from './index-store.js';
import type { VersionRegistry } from './versions.js';

/** The journal's own reads (hashing) run as root, origin local. */
export const JOURNAL_CTX: CallContext = { uid: 0, gid: 0, gids: [], client: 'journal', origin: 'local' };

export interface ZoneJournalOptions {
  db: GvDatabase;
  /** The backend the journal reads from (hashing, attributes). */
  zone: ZoneFs;
  /** Path of a live id relative to the zone root, without I/O; undefined when unknown. */
  pathOf: (id: FileId) => Buffer | undefined;
  /** This node's id: origin of local changes and the key bumped in version vectors. */
  nodeId: string;
  registry?: VersionRegistry;
  settleMs?: number;
  maxAgeMs?: number;
  /** How long queued tasks wait to be committed together (default 2 ms; 0: next turn). */
  batchMs?: number;
  /** Problems in background tasks. */
  warn?: (obj: object, msg: string) => void;
  /** Each committed change (metrics). */
  onRecord?: (kind: ChangeKind) => void;
}

export const timeNs = (t: { sec: number; nsec: number }): bigint => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);

export class ZoneJournal {
  readonly log: ChangeLog;
  readonly hasher = new BlockHasher();
  readonly coalescer: WriteCoalescer;
  readonly nodeId: string;
  readonly zoneName: string;
  private readonly tasks: { what: string; task: () => Promise<void> | void; resolve: () => void }[] = [];
  private draining = false;
  private closed = false;
  /** Content flushes asked for while one for the same file runs. */
  private readonly flushing = new Map<bigint, Promise<void>>();
  /** Flushes of a file that found it missing (bounded retries). */
  private readonly retries = new Map<bigint, number>();

  constructor(private readonly opts: ZoneJournalOptions) {
    this.zoneName = opts.zone.name;
    this.nodeId = opts.nodeId;
    this.log = new ChangeLog(opts.db, opts.zone.name);
    this.sBegin = opts.db.prepare('BEGIN');
    this.sCommit = opts.db.prepare('COMMIT');
    this.sRollback = opts.db.prepare('ROLLBACK');
    this.coalescer = new WriteCoalescer({
      settleMs: opts.settleMs, maxAgeMs: opts.maxAgeMs, onSettle: (id) => this.flushFile(id, 'write'),
    });
    opts.registry?.hold(this.zoneName, this.log.version());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get index() {
    return this.log.index;
  }

  version(): bigint {
    return this.log.version();
  }

  pathOf(id: FileId): Buffer | undefined {
    return this.opts.pathOf(id);
  }

  /**
   * Run `task` after every task queued before it; failures are logged, never stop the queue. The
   * queue starts draining `batchMs` later (so tasks queued meanwhile share one transaction, and
   * the NFS reply of the call that queued a task is written before the task runs), or sooner when
   * a COMMIT hands its fsync to the thread pool (drainSoon).
   */
  enqueue(what: string, task: () => Promise<void> | void): Promise<void> {
    return new Promise<void>((resolve) => {
      this.tasks.push({ what, task, resolve });
      if (!this.draining) {
        this.draining = true;
        const batchMs = this.opts.batchMs ?? 2;
        if (batchMs > 0) {
          this.drainTimer = setTimeout(() => {
            this.drainTimer = undefined;
            void this.drain();
          }, batchMs);
        } else setImmediate(() => void this.drain());
      }
    });
  }

  /** The batch wait of queued tasks not started yet. */
  private drainTimer: NodeJS.Timeout | undefined;

  /**
   * Start the queued tasks on the next turn of the event loop instead of at the end of the batch
   * wait: the caller has just handed the thread pool a slow call (a COMMIT's fsync), and the
   * tasks can run while it does, instead of later, in front of the client's next calls.
   */
  drainSoon(): void {
    if (this.drainTimer === undefined) return;
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    setImmediate(() => void this.drain());
  }

  /**
   * Run the queued tasks. Consecutive synchronous tasks share one SQLite transaction (group
   * commit: each change still has its own version and row, and a batch commits whole or not at
   * all); the batch is committed before any task awaits, and at most every 256 tasks.
   */
  private async drain(): Promise<void> {
    const done: (() => void)[] = [];
    const fail = (t: { what: string }, err: unknown) =>
      this.opts.warn?.({ zone: this.zoneName, task: t.what, err: String(err) }, 'journal task failed');
    const flushBatch = () => {
      this.endBatch();
      for (const d of done.splice(0)) d();
    };
    for (let t = this.tasks.shift(); t; t = this.tasks.shift()) {
      let r: Promise<void> | void;
      // Changes the task commits synchronously join the batch (opened by the first of them).
      this.batching = true;
      try {
        r = t.task();
      } catch (err) {
        fail(t, err);
        r = undefined;
      } finally {
        this.batching = false;
      }
      if (r) {
        flushBatch();
        try {
          await r;
        } catch (err) {
          fail(t, err);
        }
        t.resolve();
        continue;
      }
      done.push(t.resolve);
      if (done.length >= 256) flushBatch();
    }
    flushBatch();
    this.draining = false;
  }

  private batchOpen = false;
  /** A task is running synchronously inside drain(): a commit may open (or join) the batch. */
  private batching = false;
  private batchNotes: [bigint, ChangeKind][] = [];
  private readonly sBegin: Statement;
  private readonly sCommit: Statement;
  private readonly sRollback: Statement;

  /**
   * Open the batch's transaction, at its first change (a task that journals nothing, such as a
   * watcher look at the daemon's own change, costs no transaction at all).
   */
  private beginBatch(): void {
    if (this.batchOpen || !this.batching || this.opts.db.sqlite.inTransaction) return;
    this.sBegin.run();
    this.batchOpen = true;
  }

  private endBatch(): void {
    if (!this.batchOpen) return;
    this.batchOpen = false;
    const notes = this.batchNotes.splice(0);
    try {
      this.sCommit.run();
    } catch (err) {
      this.index.forgetRecent(); // what the batch put is not in the index
      if (this.opts.db.sqlite.inTransaction) this.sRollback.run();
      this.opts.warn?.({ zone: this.zoneName, err: String(err), lost: notes.length }, 'journal batch failed; the next scan finds its changes');
      return;
    }
    for (const [v, kind] of notes) this.notify(v, kind);
  }

  private notify(v: bigint, kind: ChangeKind): void {
    this.opts.registry?.committed(this.zoneName, v);
    this.opts.onRecord?.(kind);
  }

  /** Every task queued so far has run. */
  settled(): Promise<void> {
    return this.enqueue('settled', () => undefined);
  }

  /** Flush every coalesced write now, then wait for the queue. */
  async idle(): Promise<void> {
    for (const id of this.coalescer.pending()) void this.flushFile(id, 'write');
    await this.settled();
  }

  /** Commit one change with its index effect (synchronous transaction); tell the registry. */
  commit(change: Omit<Change, 'origin'> & { origin?: string }, effect: IndexEffect): bigint {
    this.beginBatch();
    const v = this.log.record({ ...change, origin: change.origin ?? this.nodeId }, effect);
    // Inside a batch, listeners hear of it once the batch committed.
    if (this.batchOpen) this.batchNotes.push([v, change.kind]);
    else this.notify(v, change.kind);
    return v;
  }

  /** The tombstone of `path` (its last object went away and nothing appeared since). */
  tombstone(path: Buffer): Tombstone | undefined {
    return this.index.tombstone(path);
  }

  /** The next vector of an object: its indexed one bumped for this node. */
  nextVector(prev: VersionVector | undefined): VersionVector {
    return bump(prev ?? EMPTY_VECTOR, this.nodeId);
  }

  // ---------------------------------------------------------------- content

  /** A WRITE reached the file. */
  noteWrite(id: FileId, offset: number, length: number): void {
    if (!this.closed) this.coalescer.note(id, offset, length);
  }

  /**
   * The file was cut to `size` (SETATTR of the size, CREATE with a size over it). Its next flush
   * reuses no block hash at or past the cut: a block written again after it may sit next to a hole
   * where the old content was, and a block not written again is not dirty.
   */
  noteTruncate(id: FileId, size: number): void {
    if (!this.closed) this.coalescer.cut(id, size);
  }

  /**
   * Journal the content of `id` now: rehash its dirty blocks (plus what a size change touched) and
   * write one 'write'/'truncate' entry. Queued behind earlier tasks; concurrent asks for one file
   * share the run.
   */
  flushFile(id: FileId, kind: 'write' | 'truncate' | 'create' = 'write'): Promise<void> {
    const running = this.flushing.get(id);
    if (running && kind === 'write' && !this.coalescer.has(id)) return running;
    const p = this.enqueue(`flush ${kind}`, () => this.flushNow(id, kind)).finally(() => {
      if (this.flushing.get(id) === p) this.flushing.delete(id);
    });
    this.flushing.set(id, p);
    return p;
  }

  /** Inside a task: journal the pending writes (or creation) of `id` now, if it has any. */
  async flushPending(id: FileId): Promise<void> {
    if (this.coalescer.has(id)) await this.flushNow(id, 'write');
  }

  /** The file was missing: gone, or caught between the two halves of a rename. Look again (3 times). */
  private retryLater(id: FileId, taken: Taken): void {
    const n = this.retries.get(id) ?? 0;
    if (n < 3 && !this.closed) {
      this.retries.set(id, n + 1);
      this.coalescer.restore(id, taken);
    } else this.retries.delete(id);
  }

  private reader(id: FileId): BlockReader {
    return async (into, offset, length) => {
      const r = await this.opts.zone.read(JOURNAL_CTX, id, offset, length, into);
      if (r.data.length > 0 && (r.data.buffer !== into.buffer || r.data.byteOffset !== into.byteOffset)) r.data.copy(into);
      return r.data.length;
    };
  }

  private async flushNow(id: FileId, kind: 'write' | 'truncate' | 'create'): Promise<void> {
    const taken = this.coalescer.take(id);
    if (!taken && kind === 'write') return; // an earlier flush took these writes already
    const pending: Taken = taken ?? { blocks: new Set<number>() };
    const { blocks: dirty, cut } = pending;
    let attr: Attr;
    try {
      attr = await this.opts.zone.getattr(JOURNAL_CTX, id);
    } catch (err) {
      if (err instanceof GvError && (err.code === 'ESTALE' || err.code === 'ENOENT')) {
        this.retryLater(id, pending);
        return;
      }
      throw err;
    }
    this.retries.delete(id);
    if (attr.type !== 'file') return;
    const path = this.opts.pathOf(id);
    if (path === undefined) return;
    const prev = this.index.get(id);
    let hashes: Buffer;
    try {
      // A cut since the last flush: from the block it fell in onwards, no earlier hash holds,
      // whatever the size is now.
      const prevSize = prev ? (cut === undefined ? Number(prev.size) : Math.min(Number(prev.size), Math.floor(cut / BLOCK_SIZE) * BLOCK_SIZE)) : 0;
      hashes = await this.hasher.update(
        this.reader(id), Number(attr.size), prev?.hashes ? { hashes: prev.hashes, size: prevSize } : null, dirty,
      );
    } catch (err) {
      if (err instanceof GvError && (err.code === 'ESTALE' || err.code === 'ENOENT')) {
        this.retryLater(id, pending);
        return;
      }
      throw err;
    }
    const k: ChangeKind = prev ? kind === 'create' ? 'write' : kind : 'create';
    if (!prev) {
      // A new file where the index still has another object (e.g. renamed over it before this
      // file was first journaled): that object is gone.
      const replaced = this.index.byPath(path);
      if (replaced && replaced.fileid !== id && !this.opts.pathOf(replaced.fileid)?.equals(path)) this.commitGone(replaced);
    }
    this.commitObject(k, attr, path, { hashes, prev });
  }

  /** Journal an object's current state under `kind`, updating its index row. */
  commitObject(
    kind: ChangeKind, attr: Pick<Attr, 'type' | 'size' | 'mtime' | 'mode' | 'fileid'>, path: Buffer,
    extra: {
      hashes?: Buffer | null; prev?: IndexEntry; toPath?: Buffer; target?: Buffer | null; effect?: IndexEffect;
      /** Path kept in the index when it is not the journaled one (a link's or removed link's name). */
      indexPath?: Buffer;
    } = {},
  ): bigint {
    const prev = extra.prev ?? this.index.get(attr.fileid);
    // A new object where an earlier one went away starts after it; so does an existing object
    // given that name (a hard link made where a file was removed: rm P; ln X P).
    const vector = this.nextVector(this.pastRemoval(path, prev?.vector));
    const hashes = attr.type === 'file' ? (extra.hashes ?? prev?.hashes ?? Buffer.alloc(0)) : null;
    const entry: IndexEntry = {
      fileid: attr.fileid, path: extra.indexPath ?? extra.toPath ?? path, type: attr.type, size: attr.size, mtimeNs: timeNs(attr.mtime),
      ino: attr.fileid, mode: attr.mode, vector, hashes, origin: this.nodeId,
    };
    return this.commit({
      kind, fileid: attr.fileid, path, toPath: extra.toPath ?? null, type: attr.type, size: attr.size,
      mtimeNs: entry.mtimeNs, mode: attr.mode, hashes, target: extra.target ?? null, vector,
    }, { ...extra.effect, put: entry });
  }

  /** Journal that the object indexed as `entry` went away (remove/rmdir). */
  commitGone(entry: IndexEntry, kind: 'remove' | 'rmdir' = entry.type === 'dir' ? 'rmdir' : 'remove'): bigint {
    // A directory that went with its contents still indexed (an out-of-band `rm -rf`): each of
    // them gets its own row first, so other nodes remove exactly what this node knew of, and
    // keep what they have that this node never saw.
    if (entry.type === 'dir') {
      for (const d of this.index.under(entry.path)) {
        this.commit({
          kind: d.type === 'dir' ? 'rmdir' : 'remove', fileid: d.fileid, path: d.path, type: d.type, size: null, mtimeNs: null,
          mode: null, hashes: null, vector: this.nextVector(d.vector),
        }, { delete: d.fileid });
      }
    }
    const vector = this.nextVector(entry.vector);
    return this.commit({
      kind, fileid: entry.fileid, path: entry.path, type: entry.type, size: null, mtimeNs: null, mode: null, hashes: null, vector,
    }, { delete: entry.fileid, deleteUnder: entry.type === 'dir' ? entry.path : undefined });
  }

  /**
   * `base` moved past the last vector of what was removed at `path`, if anything was (its
   * tombstone): an object that appears at a path comes after the removal there on every node,
   * which may have applied that removal already or may read it back later.
   */
  private pastRemoval(path: Buffer, base: VersionVector | undefined): VersionVector | undefined {
    const t = this.index.tombstone(path);
    return t ? (base ? merge(base, t.vector) : t.vector) : base;
  }

  /** Journal a move of `entry` to `to` (descendants follow for directories). */
  commitRename(entry: IndexEntry, to: Buffer, replaced?: IndexEntry): bigint {
    // After whatever was at the destination too (the object it replaced, or a removed one), so
    // the move wins over it on every node.
    const gone0 = replaced && replaced.fileid !== entry.fileid ? replaced : undefined;
    const vector = this.nextVector(gone0 ? merge(entry.vector, gone0.vector) : this.pastRemoval(to, entry.vector));
    const moved: IndexEntry = {
      ...entry, path: to, vector, origin: this.nodeId,
    };
    // The object the rename replaced (if any) is gone with it: no row of its own, applying the
    // rename replaces it on every node too.
    const gone = replaced && replaced.fileid !== entry.fileid ? replaced : undefined;
    const v = this.commit({
      kind: 'rename', fileid: entry.fileid, path: entry.path, toPath: to, type: entry.type, size: moved.size,
      mtimeNs: moved.mtimeNs, mode: moved.mode, hashes: entry.hashes, vector,
    }, {
      put: moved, movePrefix: entry.type === 'dir' ? { from: entry.path, to } : undefined,
      delete: gone?.fileid, deleteUnder: gone?.type === 'dir' ? gone.path : undefined,
    });
    return entry.type === 'dir' ? this.afterTombstones(to) ?? v : v;
  }

  /**
   * A directory moved to `dir` keeps its contents' vectors; where one of them now sits at a path
   * whose earlier object was removed (rm E/p; rmdir E; mv D E), it must come after that removal,
   * as a re-created or renamed object does — else the removal, read back from a member's journal
   * (or arriving late from another node), compares as newer and deletes the moved object. Each
   * such object gets a row of its own with the vector moved past the tombstone (same content:
   * members merge it without transferring anything). Answers the last version journaled, if any.
   */
  private afterTombstones(dir: Buffer): bigint | undefined {
    let last: bigint | undefined;
    for (const t of this.index.tombstonesUnder(dir)) {
      const e = this.index.byPath(t.path);
      if (!e) continue;
      const vector = this.nextVector(merge(e.vector, t.vector));
      last = this.commit({
        kind: 'setattr', fileid: e.fileid, path: e.path, toPath: null, type: e.type, size: e.size, mtimeNs: e.mtimeNs, mode: e.mode,
        hashes: e.hashes, vector,
      }, { put: { ...e, vector, origin: this.nodeId } });
    }
    return last;
  }

  // ---------------------------------------------------------------- mutations under way

  /** Objects (by id) and paths (relative, latin1) a brokered mutation is changing: hold counts. */
  private readonly heldIds = new Map<bigint, number>();
  private readonly heldPaths = new Map<string, number>();

  /**
   * The daemon is about to change these objects and paths (taken before the call reaches the file
   * system). Until the returned release is called (once the mutation's journal task has run), the
   * watcher and the scan keep their hands off them: what they would see there is the daemon's own
   * change, not yet in the index, which they would journal a second time (or, for a rename,
   * journal as a removal that then makes the rename's own entry find nothing).
   */
  hold(ids: readonly (FileId | undefined)[], paths: readonly (Buffer | undefined)[]): () => void {
    const idKeys: bigint[] = [];
    const pathKeys: string[] = [];
    for (const id of ids) {
      if (id === undefined) continue;
      idKeys.push(id);
      this.heldIds.set(id, (this.heldIds.get(id) ?? 0) + 1);
    }
    for (const p of paths) {
      if (p === undefined) continue;
      const k = p.toString('latin1');
      pathKeys.push(k);
      this.heldPaths.set(k, (this.heldPaths.get(k) ?? 0) + 1);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const id of idKeys) dec(this.heldIds, id);
      for (const k of pathKeys) dec(this.heldPaths, k);
    };
  }

  /** True while a brokered mutation holds `rel` (or a directory above it) or object `ino`. */
  busy(rel: Buffer, ino?: bigint): boolean {
    if (ino !== undefined && this.heldIds.has(ino)) return true;
    if (this.heldPaths.size === 0) return false;
    const k = rel.toString('latin1');
    if (this.heldPaths.has(k)) return true;
    for (let i = k.indexOf('/'); i >= 0; i = k.indexOf('/', i + 1)) {
      if (this.heldPaths.has(k.slice(0, i))) return true;
    }
    return false;
  }

  /** Run before the final flush at close (stop feeders such as the watcher). */
  readonly beforeClose: (() => Promise<void>)[] = [];

  /** Stop feeders, journal what is pending, wait for the queue. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const f of this.beforeClose.splice(0)) await f().catch(() => undefined);
    await this.idle();
    this.closed = true;
    this.coalescer.clear();
    await this.settled();
    this.opts.registry?.release(this.zoneName);
  }
}

function dec<K>(m: Map<K, number>, k: K): void {
  const n = (m.get(k) ?? 0) - 1;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

/** File type of a journal row / index entry from an lstat mode. */
export function typeOfMode(mode: number | bigint): FileType {
  switch (Number(mode) & 0o170000) {
    case 0o100000: return 'file';
    case 0o040000: return 'dir';
    case 0o120000: return 'symlink';
    case 0o060000: return 'block';
    case 0o020000: return 'char';
    case 0o140000: return 'socket';
    default: return 'fifo';
  }
}
