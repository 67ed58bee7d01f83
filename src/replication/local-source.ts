/**
 * What this node serves to its peers (the transport calls it with the authenticated caller): the
 * journal of each zone it serves, the current index entries of paths (small files inline, read
 * back and checked against the hashes announced), and byte ranges of files. Paths are checked as
 * untrusted input; nothing is read through a symlink or from the staging area.
 */
import fs from 'node:fs';
import { GvError, toGvError } from '../errors.js';
import { blockPool } from '../util/block-pool.js';
import { hashBuffer } from '../journal/hasher.js';
import type { IndexEntry } from '../journal/index-store.js';
import type { ZoneJournal } from '../journal/zone-journal.js';
import { typeOfMode } from '../journal/zone-journal.js';
import { absOf, badPath, checkPath, parentsOk } from './paths.js';
import {
  BLOCK_SIZE, MAX_ENTRIES, MAX_INLINE, MAX_INLINE_TOTAL, MAX_JOURNAL_PAGE, type CatalogSnapshot, type JournalPage,
  type ListPage, type LocalReplicaSource, MAX_LIST, type PeerCaller, type RemoteEntry,
} from './source.js';

export interface ServedZone {
  name: string;
  root: string;
  journal: ZoneJournal;
}

export interface LocalSourceOptions {
  /** The zones this node serves now. */
  zones: () => Iterable<ServedZone>;
  /** The catalog snapshot (the catalog replication implements it). */
  catalog: (caller: PeerCaller) => Promise<CatalogSnapshot>;
  /** May `caller` read `zone`? (default: yes) */
  mayRead?: (caller: PeerCaller, zone: string) => boolean;
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

export class LocalSource implements LocalReplicaSource {
  /** Counters (tests, metrics). */
  readonly stats = { journalRows: 0, entries: 0, inlineBytes: 0, blockBytes: 0, blockCalls: 0 };

  constructor(private readonly opts: LocalSourceOptions) {}

  private zone(caller: PeerCaller, name: string): ServedZone & { rootBuf: Buffer } {
    for (const z of this.opts.zones()) {
      if (z.name !== name) continue;
      if (this.opts.mayRead && !this.opts.mayRead(caller, name)) throw new GvError('EACCES', `zone ${name} not readable by ${caller.nodeName}`);
      return { ...z, rootBuf: Buffer.from(z.root) };
    }
    throw new GvError('ENOENT', `no zone ${name} here`);
  }

  async journal(caller: PeerCaller, zone: string, since: bigint, limit: number): Promise<JournalPage> {
    const z = this.zone(caller, zone);
    if (since < 0n || !Number.isInteger(limit) || limit < 1) throw new GvError('EINVAL', 'bad journal range');
    const rows = z.journal.log.since(since, Math.min(limit, MAX_JOURNAL_PAGE));
    this.stats.journalRows += rows.length;
    return { rows, version: z.journal.version() };
  }

  async entries(caller: PeerCaller, zone: string, paths: readonly Buffer[], inlineMax: number): Promise<(RemoteEntry | null)[]> {
    const z = this.zone(caller, zone);
    if (paths.length > MAX_ENTRIES) throw new GvError('EINVAL', `at most ${MAX_ENTRIES} paths per call`);
    const max = Math.max(0, Math.min(inlineMax, MAX_INLINE));
    let budget = MAX_INLINE_TOTAL;
    const out: (RemoteEntry | null)[] = [];
    for (const p of paths) {
      const e = badPath(p) ? null : await this.entryOf(z, p);
      if (e && e.type === 'file' && max > 0 && e.size <= BigInt(max) && e.size <= BigInt(budget)) {
        const data = await readInline(z.rootBuf, p, e);
        if (data) {
          e.data = data;
          budget -= data.length;
          this.stats.inlineBytes += data.length;
        }
      }
      if (e) this.stats.entries++;
      out.push(e);
    }
    return out;
  }

  private async entryOf(z: ServedZone & { rootBuf: Buffer }, p: Buffer): Promise<RemoteEntry | null> {
    let ie: IndexEntry | undefined = z.journal.index.byPath(p);
    let linkOf: Buffer | null = null;
    if (!ie) {
      // A further name of a hard-linked file: the index keeps one path per object.
      if (!parentsOk(z.rootBuf, p)) return null;
      const st = fs.lstatSync(absOf(z.rootBuf, p), { bigint: true, throwIfNoEntry: false });
      if (!st || st.nlink < 2n) return null;
      ie = z.journal.index.byIno(st.ino);
      if (!ie || ie.path.equals(p)) return null;
      linkOf = ie.path;
    }
    return this.fromIndex(z, p, ie, linkOf);
  }

  /** The entry of index row `ie` served at path `p` (owner from lstat; null when the disk no longer has it). */
  private fromIndex(z: ServedZone & { rootBuf: Buffer }, p: Buffer, ie: IndexEntry, linkOf: Buffer | null): RemoteEntry | null {
    if (!parentsOk(z.rootBuf, p)) return null;
    const abs = absOf(z.rootBuf, p);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) return null;
    let target: Buffer | null = null;
    if (ie.type === 'symlink') {
      try {
        target = fs.readlinkSync(abs, { encoding: 'buffer' });
      } catch {
        return null;
      }
    }
    return {
      path: Buffer.from(p), type: ie.type, size: ie.size, mtimeNs: ie.mtimeNs, mode: ie.mode | typeBits(ie.type),
      vector: ie.vector, origin: ie.origin, hashes: ie.hashes, target, linkOf, uid: st.uid, gid: st.gid,
    };
  }

  async list(caller: PeerCaller, zone: string, dir: Buffer, after: Buffer | null, limit: number, inlineMax: number): Promise<ListPage> {
    const z = this.zone(caller, zone);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST) throw new GvError('EINVAL', `list limit must be 1..${MAX_LIST}`);
    if (dir.length > 0) checkPath(dir);
    if (after && after.length > 0) checkPath(after);
    const version = z.journal.version();
    // One more row than asked tells whether the listing is done.
    const rows = z.journal.index.page(dir, after && after.length > 0 ? after : null, limit + 1);
    const done = rows.length <= limit;
    const max = Math.max(0, Math.min(inlineMax, MAX_INLINE));
    let budget = MAX_INLINE_TOTAL;
    const entries: RemoteEntry[] = [];
    for (const ie of rows.slice(0, limit)) {
      if (badPath(ie.path)) continue;
      const e = this.fromIndex(z, ie.path, ie, null);
      if (!e) continue;
      if (e.type === 'file' && max > 0 && e.size <= BigInt(max) && e.size <= BigInt(budget)) {
        const data = await readInline(z.rootBuf, ie.path, e);
        if (data) {
          e.data = data;
          budget -= data.length;
          this.stats.inlineBytes += data.length;
        }
      }
      this.stats.entries++;
      entries.push(e);
    }
    // Rows skipped (gone from the disk, refused) still move the listing on.
    const covered = rows.slice(0, limit);
    return { entries, version, done, next: covered.length > 0 ? covered[covered.length - 1]!.path : (after ?? null) };
  }

  async block(caller: PeerCaller, zone: string, path: Buffer, offset: bigint, length: number): Promise<Buffer> {
    const z = this.zone(caller, zone);
    checkPath(path);
    if (offset < 0n || !Number.isInteger(length) || length < 0 || length > BLOCK_SIZE) throw new GvError('EINVAL', 'bad block range');
    if (!parentsOk(z.rootBuf, path)) throw new GvError('ENOENT', 'no such file');
    // open, fstat and close are a few microseconds each: done here rather than as three thread
    // pool round trips; only the read of up to 1 MiB goes to the pool.
    let fd: number;
    try {
      fd = fs.openSync(absOf(z.rootBuf, path), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      const e = toGvError(err);
      throw e.code === 'ELOOP' ? new GvError('ENOENT', 'not a regular file') : e;
    }
    const buf = blockPool.take(length);
    try {
      if (!fs.fstatSync(fd).isFile()) throw new GvError('ENOENT', 'not a regular file');
      let got = 0;
      while (got < length) {
        const n = await readAt(fd, buf, got, length - got, Number(offset) + got);
        if (n === 0) break;
        got += n;
      }
      this.stats.blockCalls++;
      this.stats.blockBytes += got;
      return got === length ? buf : buf.subarray(0, got);
    } catch (err) {
      blockPool.give(buf);
      throw err;
    } finally {
      fs.closeSync(fd);
    }
  }

  catalog(caller: PeerCaller): Promise<CatalogSnapshot> {
    return this.opts.catalog(caller);
  }
}

function readAt(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n))));
}

function typeBits(t: RemoteEntry['type']): number {
  switch (t) {
    case 'file': return 0o100000;
    case 'dir': return 0o040000;
    case 'symlink': return 0o120000;
    case 'block': return 0o060000;
    case 'char': return 0o020000;
    case 'socket': return 0o140000;
    default: return 0o010000;
  }
}

/** The file's bytes when they are still exactly what the index announces, else undefined. */
async function readInline(root: Buffer, p: Buffer, e: RemoteEntry): Promise<Buffer | undefined> {
  if (!parentsOk(root, p)) return undefined;
  let fd: number;
  try {
    fd = fs.openSync(absOf(root, p), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    if (typeOfMode(st.mode) !== 'file' || st.size !== e.size || st.mtimeNs !== e.mtimeNs) return undefined;
    const data = Buffer.allocUnsafe(Number(e.size));
    let got = 0;
    while (got < data.length) {
      const n = fs.readSync(fd, data, got, data.length - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got !== data.length) return undefined;
    // Never announce bytes that do not match the hashes sent beside them.
    if (!e.hashes || !hashBuffer(data).equals(e.hashes)) return undefined;
    return data;
  } finally {
    fs.closeSync(fd);
  }
}
