/**
 * `journaled(zone, journal)`: a ZoneFs that forwards every call to `zone` and, once a mutation
 * succeeded (the change reached the file system), hands it to the zone's journal. The reply never
 * waits for the journal: names and ids are captured synchronously (cheap in-memory walks and one
 * indexed SQLite read), the journal transaction runs on the journal's queue, and WRITE only marks
 * blocks dirty (hashed when the file settles or is committed). Reads pass through untouched.
 */
import { joinRel, type IndexEntry } from '../journal/index-store.js';
import { JOURNAL_CTX, timeNs, type ZoneJournal } from '../journal/zone-journal.js';
import { PassThroughZoneFs } from './pass-through.js';
import type {
  Attr, CallContext, Created, CreateHow, FileId, FileType, SetAttrs,
  StableHow, Time, Wcc, ZoneFs,
} from './types.js';

const NO_IDS: readonly FileId[] = [];
const NO_PATHS: readonly Buffer[] = [];

/** The attributes an index entry holds, as the journal's commit takes them. */
function attrOfEntry(e: IndexEntry): Pick<Attr, 'type' | 'size' | 'mtime' | 'mode' | 'fileid'> {
  return {
    type: e.type, size: e.size, mode: e.mode, fileid: e.fileid,
    mtime: { sec: Number(e.mtimeNs / 1_000_000_000n), nsec: Number(e.mtimeNs % 1_000_000_000n) },
  };
}

const both = (a: () => void, b: () => void) => () => {
  a();
  b();
};

/** Release a hold once the journal task (if any) has run. */
function settle(task: Promise<void> | undefined, release: () => void): void {
  if (task) void task.finally(release);
  else release();
}

export type JournaledZoneFs = ZoneFs & { readonly inner: ZoneFs; readonly journal: ZoneJournal };

export function journaled(zone: ZoneFs, journal: ZoneJournal): JournaledZoneFs {
  return new Journaled(zone, journal);
}

class Journaled extends PassThroughZoneFs {
  constructor(inner: ZoneFs, readonly journal: ZoneJournal) {
    super(inner);
  }

  /** Relative path of a name inside directory `dir`, or undefined when the directory is unknown. */
  private child(dir: FileId, name: Buffer): Buffer | undefined {
    const d = this.journal.pathOf(dir);
    return d === undefined ? undefined : joinRel(d, name);
  }

  // ---------------------------------------------------------------- content

  override async write(ctx: CallContext, id: FileId, offset: number, data: Buffer, stable: StableHow): Promise<{ count: number; committed: StableHow; file: Wcc }> {
    // Held until the write is noted: from then on the coalescer tells the watcher it is ours.
    const release = this.journal.hold([id], NO_PATHS);
    try {
      const r = await this.inner.write(ctx, id, offset, data, stable);
      this.journal.noteWrite(id, offset, r.count);
      // A FILE_SYNC write ends a stream like COMMIT does (not awaited: the reply goes now).
      if (stable === 'file_sync') void this.journal.flushFile(id, 'write');
      return r;
    } finally {
      release();
    }
  }

  override async commit(ctx: CallContext, id: FileId, offset: number, count: number): Promise<Wcc> {
    const pending = this.inner.commit(ctx, id, offset, count);
    this.journal.drainSoon(); // journal work queued by earlier calls runs during the fsync
    const r = await pending;
    if (this.journal.coalescer.has(id)) void this.journal.flushFile(id, 'write');
    return r;
  }

  override async setattr(ctx: CallContext, id: FileId, attrs: SetAttrs, guardCtime?: Time): Promise<Wcc> {
    const release = this.journal.hold([id], NO_PATHS);
    let r: Wcc;
    try {
      r = await this.inner.setattr(ctx, id, attrs, guardCtime);
    } catch (err) {
      release();
      throw err;
    }
    if (this.journal.coalescer.has(id) && !this.journal.index.get(id)) {
      // Not journaled yet (created, not settled): its pending entry will carry these attributes.
      if (attrs.size !== undefined) this.journal.noteWrite(id, Number(attrs.size), 0);
      release();
    } else if (attrs.size !== undefined) {
      // Content changed: rehash what the size change touched (and any pending writes) as one entry.
      this.journal.noteTruncate(id, Number(attrs.size));
      void this.journal.flushFile(id, 'truncate').finally(release);
    } else if (attrs.mode !== undefined || attrs.uid !== undefined || attrs.gid !== undefined || attrs.mtime !== undefined) {
      const after = r.after;
      void this.journal.enqueue('setattr', () => {
        // Pending writes first, so the setattr entry's size and hashes describe one state.
        if (after && !this.journal.coalescer.has(id)) {
          // The common case, without I/O: batched with its neighbours.
          const path = this.journal.pathOf(id);
          if (path !== undefined) this.journal.commitObject('setattr', after, path);
          return undefined;
        }
        return (async () => {
          await this.journal.flushPending(id);
          const path = this.journal.pathOf(id);
          if (path === undefined) return;
          this.journal.commitObject('setattr', await this.inner.getattr(JOURNAL_CTX, id), path);
        })();
      }).finally(release);
    } else release();
    return r;
  }

  // ---------------------------------------------------------------- namespace

  /** Journal a new object (create/mkdir/symlink/mknod), unless the index already has it there. */
  private created(
    kind: 'create' | 'mkdir' | 'symlink' | 'mknod', path: Buffer | undefined, c: Created, target: Buffer | null = null,
    sizeAsked = false,
  ): Promise<void> | undefined {
    if (path === undefined) return undefined;
    if (kind === 'create' && c.attr.type === 'file') {
      // The name held this very file already (the path index is asked first: for a new file that
      // one look is all, no row is read): a retried EXCLUSIVE create or an UNCHECKED one, which
      // change nothing, unless it asked for size 0 and the file was not empty: that truncation is
      // journaled like a SETATTR of the size (with any writes pending), else no node would ever
      // learn of it.
      if (this.journal.index.idByPath(path) === c.id) {
        const prev = this.journal.index.get(c.id);
        if (prev && prev.type === 'file') {
          if (!sizeAsked || (prev.size === c.attr.size && prev.mtimeNs === timeNs(c.attr.mtime))) return undefined;
          this.journal.noteTruncate(c.id, Number(c.attr.size));
          return this.journal.flushFile(c.id, 'truncate');
        }
      }
      // A new file and the WRITEs that fill it become one 'create' entry with its content, written
      // when the file is committed or settles (the flush journals 'create' for an unindexed file).
      this.journal.noteWrite(c.id, 0, Number(c.attr.size));
      return undefined;
    }
    return this.journal.enqueue(kind, () => {
      const prev = this.journal.index.get(c.id);
      if (prev && prev.path.equals(path) && prev.type === c.attr.type && prev.mtimeNs === timeNs(c.attr.mtime)) return; // retried EXCLUSIVE create, or seen by the scan
      const replaced = this.journal.index.byPath(path);
      if (replaced && replaced.fileid !== c.id) this.journal.commitGone(replaced);
      this.journal.commitObject(kind, c.attr, path, { target, hashes: c.attr.type === 'file' && c.attr.size === 0n ? Buffer.alloc(0) : undefined, prev: prev && prev.type === c.attr.type ? prev : undefined });
    });
  }

  override async create(ctx: CallContext, dir: FileId, name: Buffer, how: CreateHow): Promise<Created> {
    const path = this.child(dir, name);
    const release = this.journal.hold(NO_IDS, [path]);
    let r: Created;
    try {
      r = await this.inner.create(ctx, dir, name, how);
    } catch (err) {
      release();
      throw err;
    }
    settle(this.created('create', path, r, null, how.mode !== 'exclusive' && how.attrs.size !== undefined), release);
    return r;
  }

  override async mkdir(ctx: CallContext, dir: FileId, name: Buffer, attrs: SetAttrs): Promise<Created> {
    const path = this.child(dir, name);
    const release = this.journal.hold(NO_IDS, [path]);
    let r: Created;
    try {
      r = await this.inner.mkdir(ctx, dir, name, attrs);
    } catch (err) {
      release();
      throw err;
    }
    settle(this.created('mkdir', path, r), release);
    return r;
  }

  override async symlink(ctx: CallContext, dir: FileId, name: Buffer, target: Buffer, attrs: SetAttrs): Promise<Created> {
    const path = this.child(dir, name);
    const release = this.journal.hold(NO_IDS, [path]);
    let r: Created;
    try {
      r = await this.inner.symlink(ctx, dir, name, target, attrs);
    } catch (err) {
      release();
      throw err;
    }
    settle(this.created('symlink', path, r, Buffer.from(target)), release);
    return r;
  }

  override async mknod(
    ctx: CallContext, dir: FileId, name: Buffer, type: FileType, attrs: SetAttrs, rdev?: { major: number; minor: number },
  ): Promise<Created> {
    const path = this.child(dir, name);
    const release = this.journal.hold(NO_IDS, [path]);
    let r: Created;
    try {
      r = await this.inner.mknod(ctx, dir, name, type, attrs, rdev);
    } catch (err) {
      release();
      throw err;
    }
    settle(this.created('mknod', path, r), release);
    return r;
  }

  /** Journal that `path` (known before the call) no longer names object `fileid`. */
  private gone(kind: 'remove' | 'rmdir', path: Buffer | undefined, fileid: FileId | undefined): Promise<void> | undefined {
    if (path === undefined || fileid === undefined) return undefined;
    // Synchronous (no I/O), so a run of removals shares one transaction.
    return this.journal.enqueue(kind, () => {
      const cur = this.journal.index.get(fileid);
      if (!cur) return;
      if (kind === 'remove') {
        // Another hard link may keep the file alive: then only this name went away. The backend
        // forgets an object whose last link went; one still known by another name is alive, and
        // nothing but its ctime changed (its indexed attributes are current).
        const still = this.journal.pathOf(fileid);
        if (still !== undefined && !still.equals(path)) {
          this.journal.commitObject('remove', attrOfEntry(cur), path, { prev: cur, indexPath: still });
          return;
        }
      }
      if (!cur.path.equals(path)) return; // not the name we know it by (raced with a rename)
      this.journal.commitGone(cur, kind);
    });
  }

  /** The id `name` in `dir` stands for (from the index; a lookup when the index lacks it), and whether it is indexed. */
  private async idOf(dir: FileId, path: Buffer | undefined, name: Buffer): Promise<FileId | undefined> {
    return (await this.entryOf(dir, path, name)).id;
  }

  private async entryOf(dir: FileId, path: Buffer | undefined, name: Buffer): Promise<{ id?: FileId; indexed: boolean }> {
    if (path === undefined) return { indexed: false };
    const indexed = this.journal.index.idByPath(path);
    if (indexed !== undefined) return { id: indexed, indexed: true };
    const id = (await this.inner.lookup(JOURNAL_CTX, dir, name).catch(() => undefined))?.id;
    return { id, indexed: id !== undefined && this.journal.index.get(id) !== undefined };
  }

  override async remove(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    const path = this.child(dir, name);
    let release = this.journal.hold(NO_IDS, [path]);
    let id: FileId | undefined;
    let indexed: boolean;
    let r: Wcc;
    try {
      ({ id, indexed } = await this.entryOf(dir, path, name));
      release = both(release, this.journal.hold([id], NO_PATHS));
      r = await this.inner.remove(ctx, dir, name);
    } catch (err) {
      release();
      throw err;
    }
    // (Looked at again: a flush may have journaled its creation meanwhile.)
    // Only a file whose creation waits in the coalescer: a directory, symlink or node created by
    // a task still queued is journaled by that task, so its removal must be queued after it (a
    // REMOVE answered before the queue ran used to leave the new object in the index for good).
    if (id !== undefined && !indexed && !this.journal.index.get(id) && this.journal.coalescer.has(id)) {
      // Created and removed before its creation was journaled: nothing to journal, and its inode
      // number may be reused by the next file at once, which must not inherit the pending entry.
      // (Were another hard link still alive, the next scan journals it.)
      this.journal.coalescer.take(id);
      release();
      return r;
    }
    settle(this.gone('remove', path, id), release);
    return r;
  }

  override async rmdir(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    const path = this.child(dir, name);
    let release = this.journal.hold(NO_IDS, [path]);
    let r: Wcc;
    let id: FileId | undefined;
    try {
      id = await this.idOf(dir, path, name);
      release = both(release, this.journal.hold([id], NO_PATHS));
      r = await this.inner.rmdir(ctx, dir, name);
    } catch (err) {
      release();
      throw err;
    }
    settle(this.gone('rmdir', path, id), release);
    return r;
  }

  override async rename(ctx: CallContext, fromDir: FileId, fromName: Buffer, toDir: FileId, toName: Buffer): Promise<{ from: Wcc; to: Wcc }> {
    const from = this.child(fromDir, fromName);
    const to = this.child(toDir, toName);
    let release = this.journal.hold(NO_IDS, [from, to]);
    let id: FileId | undefined;
    let r: { from: Wcc; to: Wcc };
    try {
      id = await this.idOf(fromDir, from, fromName);
      release = both(release, this.journal.hold([id], NO_PATHS));
      r = await this.inner.rename(ctx, fromDir, fromName, toDir, toName);
    } catch (err) {
      release();
      throw err;
    }
    if (from !== undefined && to !== undefined && id !== undefined && !from.equals(to)) {
      void this.journal.enqueue('rename', () => {
        const cur = this.journal.index.get(id);
        if (!cur) return;
        const replaced = this.journal.index.byPath(to);
        if (cur.path.equals(from)) {
          this.journal.commitRename(cur, to, replaced);
          return;
        }
        // Another hard link of the file was renamed: journal it, the index keeps its primary path
        // (a rename changes no attribute but the ctime: the indexed ones are current).
        const gone = replaced && replaced.fileid !== id ? replaced : undefined;
        this.journal.commitObject('rename', attrOfEntry(cur), from, {
          prev: cur, toPath: to, indexPath: cur.path, effect: { delete: gone?.fileid },
        });
      }).finally(release);
    } else release();
    return r;
  }

  override async link(ctx: CallContext, id: FileId, dir: FileId, name: Buffer): Promise<{ attr?: Attr; dir: Wcc }> {
    const path = this.child(dir, name);
    const release = this.journal.hold([id], [path]);
    let r: { attr?: Attr; dir: Wcc };
    try {
      r = await this.inner.link(ctx, id, dir, name);
    } catch (err) {
      release();
      throw err;
    }
    if (path !== undefined) {
      const attrNow = r.attr;
      // Journaled under the new name; the index keeps the object's primary path.
      void this.journal.enqueue('link', () => {
        const known = this.journal.index.get(id);
        if (known && attrNow) {
          this.journal.commitObject('link', attrNow, path, { prev: known, indexPath: known.path });
          return undefined;
        }
        return (async () => {
          if (!known) await this.journal.flushPending(id); // created, not yet journaled
          const prev = this.journal.index.get(id);
          if (!prev) return;
          const attr = attrNow ?? await this.inner.getattr(JOURNAL_CTX, id);
          this.journal.commitObject('link', attr, path, { prev, indexPath: prev.path });
        })();
      }).finally(release);
    } else release();
    return r;
  }

  override async close(): Promise<void> {
    await this.journal.close();
    await this.inner.close();
  }
}
