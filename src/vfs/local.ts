import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import { GvError, toGvError } from '../errors.js';
import type { GvDatabase } from '../journal/db.js';
import { NodeStore, type NodeRow } from '../journal/nodes.js';
import {
  checkSetattr, grantedAccess, PERM_R, PERM_W, PERM_X, requireDirWrite, requirePerm,
  requireStickyOk, type Owned,
} from './access.js';
import { nsToTime, timeEq, timeToSeconds, toAttr, toWcc, typeCode, typeOf, type BigStats } from './local-attr.js';
import { LocalFile } from './local-fd.js';
import { FdCache, type FdCacheOptions, type FdLease, type OpenedFile } from './local-fdcache.js';
import {
  buildListing, firstAfter, ListingCache, namesWithin, pageEnd, type Listing, type RawEntry,
} from './local-listing.js';
import { UsageTracker, type UsageScanLimits } from './local-usage.js';
import { STAGING_DIR, STAGING_DIR_BUF } from './reserved.js';
import {
  checkName, checkNewName, COOKIE_DOT, COOKIE_DOTDOT, COOKIE_VERIFIER, isDot, isDotDot, joinName, NAME_MAX,
  nameCookieWords, wordsOfCookie, type CookieWords,
} from './names.js';
import type {
  Attr, CallContext, Created, CreateHow, DirEntry, DirPage, FileId, FileType, FsStat, PathConf, ReaddirOptions,
  SetAttrs, StableHow, Time, Wcc, ZoneFs,
} from './types.js';

const { O_RDWR, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = fs.constants;

export interface LocalZoneOptions {
  name: string;
  zoneId: number;
  /** The zone's directory (a ZFS dataset mountpoint in production). */
  root: string;
  db: GvDatabase;
  /** Zone quota in bytes (a number is accepted too and converted). */
  quotaBytes?: bigint | number;
  squash?: never;
  fdCache?: FdCacheOptions;
  /** Usage scan at open: limits, or false to skip (usage then starts at 0). */
  usageScan?: UsageScanLimits | false;
  /** Directory listings kept in memory. */
  listingCacheSize?: number;
}

/** A resolved, verified object: its current path and lstat. */
interface Resolved {
  path: Buffer;
  st: BigStats;
  row: NodeRow;
}

const MAX_DEPTH = 4096;
const MAX_IO = 64 * 1024 * 1024;
const LSTAT_SLICE = 256;
const RW_FALLBACK = new Set(['EACCES', 'EROFS', 'EPERM', 'ETXTBSY']);
const GONE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

/**
 * Directories of at most this many names (estimated from st_size) are read synchronously: for
 * 1,000 names readdirSync took 0.55 ms against 1.1-1.4 ms through the threadpool, whose hops
 * cost more than the getdents calls; 4,096 names block the event loop for about 2 ms.
 */
const SYNC_READDIR_MAX_NAMES = 4096;
/**
 * What we rely on per filesystem (statfs f_type): the most links a file may have (PATHCONF), and
 * the fewest bytes of a directory's st_size one name accounts for (readListing): ext4 and xfs
 * store each name in a record of 12 bytes or more, tmpfs counts 20 per name, btrfs twice the
 * name's length, ZFS one per name. An unknown filesystem counts 1 byte a name (only tiny
 * directories are read synchronously there).
 */
const FS_TRAITS = new Map<number, { linkMax: number; dirBytesPerEntry: number }>([
  [0xef53, { linkMax: 65000, dirBytesPerEntry: 12 }], // ext2/3/4
  [0x58465342, { linkMax: 2147483647, dirBytesPerEntry: 12 }], // xfs
  [0x2fc12fc1, { linkMax: 2147483647, dirBytesPerEntry: 1 }], // zfs
  [0x9123683e, { linkMax: 65535, dirBytesPerEntry: 2 }], // btrfs
  [0x01021994, { linkMax: 2147483647, dirBytesPerEntry: 20 }], // tmpfs
]);

/**
 * Metadata syscalls (lstat/fstat) run synchronously: on a local filesystem they are answered from
 * the kernel's inode cache in about a microsecond, while a libuv threadpool round trip costs
 * 20-50 µs, and a client with one call in flight (libnfs, a kernel doing a lookup) waits for each.
 * Data I/O, fsync and directory changes stay asynchronous. Measured in the commit that made this
 * change (bench: stat, lookup and small-file reads).
 */
const lstatB = (p: Buffer): BigStats => fs.lstatSync(p, { bigint: true });
/** lstat that answers undefined for a missing name instead of building an exception (LOOKUP misses are common). */
const lstatOrNone = (p: Buffer): BigStats | undefined => fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
/**
 * Reads and writes up to this size run synchronously (a page-cache copy of a few microseconds),
 * larger ones on the threadpool so a 1 MiB transfer never stalls other connections, unless no
 * other call is in flight (CallContext.inline): then nothing can stall, and the threadpool round
 * trip is the larger cost (measured, 1 MiB READ from the page cache: 310-550 µs on the threadpool,
 * about 90 µs synchronously; a client with one call in flight, libnfs, waits for each).
 */
const SYNC_IO_MAX = 64 * 1024;
/**
 * A COMMIT (or a FILE_SYNC/DATA_SYNC WRITE) with no other call in flight (CallContext.inline)
 * fsyncs synchronously when the writes we brokered to the file since its last sync add up to at
 * most this: the fsync then flushes a few pages, while the threadpool's two thread hand-offs cost
 * about as much again on a VM and made the tail long (measured in the daemon, smallfiles COMMIT
 * of a 4 KiB file: fsync 348/450 µs median/p90 inline against 452/962 on the threadpool). Larger
 * or unknown amounts (out-of-band writers) stay on the threadpool: a long fsync must not stall
 * the event loop.
 */
const INLINE_SYNC_MAX = 256 * 1024;
/**
 * An inline fsync slower than this (a spinning disk, a busy pool) sends every sync of the zone to
 * the threadpool for INLINE_SYNC_BACKOFF_MS: the event loop must not stall for milliseconds per
 * COMMIT while other clients wait.
 */
const INLINE_SYNC_SLOW_NS = 2_000_000n;
const INLINE_SYNC_BACKOFF_MS = 30_000;
/** Files with uncommitted brokered writes tracked at most (more: forgotten, their syncs go to the threadpool). */
const UNSYNCED_TRACKED_MAX = 65_536;
/** A listed name whose id (inode number) was not looked up yet; never a real fileid. */
const UNKNOWN_ID = 0n;
const fstatB = (fh: LocalFile): BigStats => fs.fstatSync(fh.fd, { bigint: true });

/**
 * lstat many paths (undefined for those that fail). Synchronous lstat in short slices, yielding
 * to the event loop between slices: for directory listings this is ~8x faster than thousands of
 * thread-pool round trips, and each slice blocks for well under a few milliseconds.
 */
async function lstatMany(paths: Buffer[]): Promise<(BigStats | undefined)[]> {
  const out: (BigStats | undefined)[] = new Array(paths.length);
  for (let i = 0; i < paths.length; i++) {
    if (i > 0 && i % LSTAT_SLICE === 0) await new Promise<void>((r) => setImmediate(r));
    try {
      out[i] = fs.lstatSync(paths[i]!, { bigint: true, throwIfNoEntry: false });
    } catch {
      out[i] = undefined;
    }
  }
  return out;
}
/** A read-only descriptor of a regular file, or undefined when it cannot be opened (never throws). */
function openQuietly(path: Buffer): LocalFile | undefined {
  try {
    return LocalFile.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch {
    return undefined;
  }
}
const nowSeconds = (): number => Date.now() / 1000;
const code = (err: unknown): string => (err as NodeJS.ErrnoException)?.code ?? '';
/** The name of the daemon's staging directory (vfs/reserved.ts), compared without allocating. */
const isStagingName = (name: Buffer): boolean => name.length === STAGING_DIR_BUF.length && name.equals(STAGING_DIR_BUF);

/** Store an EXCLUSIVE verifier in atime/mtime seconds (31 bits each: exact through any fs and double). */
export function verifierTimes(v: Buffer): { atime: number; mtime: number } {
  const b = Buffer.alloc(8);
  v.copy(b, 0, 0, Math.min(8, v.length));
  return { atime: b.readUInt32BE(0) & 0x7fffffff, mtime: b.readUInt32BE(4) & 0x7fffffff };
}

/**
 * ZoneFs over a plain directory (or ZFS dataset mountpoint). FileId = st_ino.
 *
 * - Ids are persisted with their primary (parent, name) link in the nodes table (plus extra hard
 *   links in node_links), so an id resolves to a path by walking parents in memory; renaming a
 *   directory updates one row. Every resolved path is checked with lstat against the expected
 *   (dev, ino, birth time): a mismatch or a vanished path is ESTALE.
 * - Generations come from a global sequence. A reused inode number is recognised (new generation)
 *   when we create the object ourselves, when the birth time differs (filesystems that report
 *   one: ZFS, ext4 with 256-byte inodes, xfs, btrfs), or when the file type differs. Without a
 *   birth time an out-of-band delete + create at another name that reuses the number looks like a
 *   rename: the old handle then reaches the new file (the inode's own i_generation would be the
 *   better signal, but Node cannot issue FS_IOC_GETVERSION).
 * - Nothing follows a symlink: lstat everywhere, O_NOFOLLOW opens, fchown/fchmod/futimes through
 *   O_NOFOLLOW descriptors (l* calls for symlinks and sockets). A client can only name entries
 *   inside a verified directory, with names free of '/', NUL, '.' and '..'. A local user racing
 *   our lstat-then-use with a directory swap could still win a narrow window (Node has no
 *   openat); NFS clients cannot, since every name they use is checked first.
 * - Timestamps set through Node pass through a double (sub-microsecond rounding); the EXCLUSIVE
 *   verifier therefore lives in whole seconds (31 bits each of atime and mtime).
 * - Permissions are checked in user space (access.ts); like knfsd, an owner may READ/WRITE their
 *   own file whatever its mode bits (so `open(O_CREAT|O_WRONLY, 0444)` + write works over NFS).
 */
export class LocalZoneFs implements ZoneFs {
  readonly name: string;
  readonly zoneId: number;
  readonly rootId: FileId;
  readonly nodes: NodeStore;
  readonly usage = new UsageTracker();
  readonly fds: FdCache;
  private readonly rootPath: Buffer;
  private readonly rootStr: string;
  private readonly dev: bigint;
  private readonly fsid: bigint;
  private quota: bigint | undefined;
  /** Bytes reserved by writes in flight (quota checks count them as used). */
  private reservedBytes = 0n;
  /** Allocated blocks last accounted per file, so concurrent writes to one file count once. */
  private readonly blocksSeen = new Map<FileId, bigint>();
  private readonly listings: ListingCache;
  private readonly amRoot: boolean;
  private closed = false;
  /** Counters for tests and metrics. */
  readonly stats = { listingBuilds: 0, listingStats: 0, inlineSyncs: 0, slowInlineSyncs: 0, syncReaddirs: 0 };
  /** The fewest bytes of a directory's st_size one entry accounts for on this filesystem (see readListing). */
  dirBytesPerEntry = 1;

  private constructor(opts: LocalZoneOptions, rootPath: Buffer, rootSt: BigStats, nodes: NodeStore) {
    this.name = opts.name;
    this.zoneId = opts.zoneId;
    this.rootPath = rootPath;
    this.rootStr = rootPath.toString();
    this.rootId = rootSt.ino;
    this.dev = rootSt.dev;
    this.fsid = (0x4756n << 32n) | BigInt(opts.zoneId >>> 0);
    this.quota = opts.quotaBytes === undefined ? undefined : BigInt(opts.quotaBytes);
    this.nodes = nodes;
    this.fds = new FdCache(opts.fdCache);
    this.listings = new ListingCache(opts.listingCacheSize ?? 64);
    this.amRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  }

  static async open(opts: LocalZoneOptions): Promise<LocalZoneFs> {
    let real: string;
    try {
      real = await fsp.realpath(opts.root);
    } catch (err) {
      throw new GvError('CONFIG', `zone ${opts.name}: root ${opts.root}: ${(err as Error).message}`);
    }
    const rootPath = Buffer.from(real);
    const st = await lstatB(rootPath);
    if (!st.isDirectory()) throw new GvError('CONFIG', `zone ${opts.name}: root ${real} is not a directory`);
    const nodes = new NodeStore(opts.db, opts.zoneId);
    nodes.observe({ fileid: st.ino, parent: st.ino, name: Buffer.alloc(0), btime: st.birthtimeNs, type: typeCode(st), nlink: 1 });
    const z = new LocalZoneFs(opts, rootPath, st, nodes);
    try {
      z.dirBytesPerEntry = FS_TRAITS.get(Number((await fsp.statfs(real)).type) >>> 0)?.dirBytesPerEntry ?? 1;
    } catch {
      /* unknown: every directory counts as large */
    }
    if (opts.usageScan !== false) void z.usage.scan(rootPath, opts.usageScan ?? {}).catch(() => undefined);
    return z;
  }

  // ---------------------------------------------------------------- quota

  /** The enforced quota in bytes, or undefined when unlimited. */
  get quotaBytes(): bigint | undefined {
    return this.quota;
  }

  /** Change the quota (a reload); undefined removes it. Writes in flight keep their reservation. */
  setQuota(bytes: bigint | number | undefined): void {
    this.quota = bytes === undefined ? undefined : BigInt(bytes);
  }

  /** Bytes counted against the quota: usage plus reservations of writes in flight. */
  private charged(): bigint {
    return this.usage.used + this.reservedBytes;
  }

  /** EDQUOT unless `bytes` more fit under the quota (a size change that allocates nothing yet). */
  private checkGrowth(bytes: bigint): void {
    if (this.quota !== undefined && bytes > 0n && this.charged() + bytes > this.quota) {
      throw new GvError('EDQUOT', 'zone quota exceeded');
    }
  }

  /**
   * Reserve, synchronously (no await between check and reservation, so parallel writers cannot
   * all pass the same check), what a write may allocate: the growth past EOF, or the whole write
   * when the file has holes it may fill. Returns the amount to release afterwards.
   */
  private reserveWrite(before: BigStats, offset: number, length: number): bigint {
    if (this.quota === undefined || length === 0) return 0n;
    const end = BigInt(offset) + BigInt(length);
    let charge = end > before.size ? end - before.size : 0n;
    if (before.blocks * 512n < before.size && charge < BigInt(length)) charge = BigInt(length);
    if (charge === 0n) return 0n;
    charge = (charge + 4095n) & ~4095n;
    this.checkGrowth(charge);
    this.reservedBytes += charge;
    return charge;
  }

  /** Count a file's allocation change once, whatever order concurrent calls finish in. */
  private accountBlocks(id: FileId, before: bigint, after: bigint): void {
    const prev = this.blocksSeen.get(id) ?? before;
    this.blocksSeen.delete(id);
    if (this.blocksSeen.size >= 4096) this.blocksSeen.delete(this.blocksSeen.keys().next().value as FileId);
    this.blocksSeen.set(id, after);
    this.usage.add((after - prev) * 512n);
  }

  // ---------------------------------------------------------------- resolution

  /** Path of an id by walking the parent chain (no I/O). ESTALE when the chain is unknown. */
  private pathOf(id: FileId): Buffer {
    if (id === this.rootId) return this.rootPath;
    const parts: Buffer[] = [];
    let len = this.rootPath.length;
    let cur = id;
    for (let depth = 0; cur !== this.rootId; depth++) {
      const row = this.nodes.get(cur);
      if (!row || depth >= MAX_DEPTH || row.parent === cur) throw new GvError('ESTALE', 'unknown file id', { id: String(id) });
      // The staging directory and everything in it are the daemon's: no handle reaches them.
      if (row.parent === this.rootId && isStagingName(row.name)) throw new GvError('ESTALE', 'reserved', { id: String(id) });
      parts.push(row.name);
      len += 1 + row.name.length;
      cur = row.parent;
    }
    const out = Buffer.allocUnsafe(len);
    let off = this.rootPath.copy(out, 0);
    for (let i = parts.length - 1; i >= 0; i--) {
      out[off++] = 0x2f;
      off += parts[i]!.copy(out, off);
    }
    return out;
  }

  /**
   * Resolve and verify: lstat the path and check (dev, ino, birth time). ESTALE on any mismatch.
   * Synchronous (lstat runs synchronously, see lstatB): the attribute calls answer without a
   * promise (getattrNow, lookupNow, accessNow).
   */
  private resolve(id: FileId): Resolved {
    const row = this.nodes.get(id);
    if (!row) throw new GvError('ESTALE', 'unknown file id', { id: String(id) });
    const path = this.pathOf(id);
    try {
      const st = lstatB(path);
      if (this.matches(st, row)) return { path, st, row };
    } catch (err) {
      if (!GONE.has(code(err))) throw toGvError(err);
    }
    return this.resolveByLinks(row);
  }

  private matches(st: BigStats, row: NodeRow): boolean {
    if (st.ino !== row.fileid || st.dev !== this.dev) return false;
    return row.btime === 0n || st.birthtimeNs === 0n || st.birthtimeNs === row.btime;
  }

  /** The primary link is gone: try the other hard links we know, promoting the first that holds. */
  private resolveByLinks(row: NodeRow): Resolved {
    for (const link of this.nodes.linksOf(row.fileid)) {
      try {
        const path = joinName(this.pathOf(link.parent), link.name);
        const st = lstatB(path);
        if (this.matches(st, row)) return { path, st, row: this.nodes.promote(row.fileid, link) };
      } catch {
        /* try the next */
      }
    }
    throw new GvError('ESTALE', 'file is gone', { id: String(row.fileid) });
  }

  private resolveDir(id: FileId): Resolved {
    const r = this.resolve(id);
    if (!r.st.isDirectory()) throw new GvError('ENOTDIR');
    return r;
  }

  private attrOf(st: BigStats): Attr {
    return toAttr(st, this.fsid);
  }

  private owned(st: BigStats): Owned {
    return { type: typeOf(st.mode), mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid) };
  }

  /** Attributes of a directory after a change (omitted when it cannot be read back). */
  private async dirAfter(r: Resolved): Promise<Attr | undefined> {
    try {
      const st = await lstatB(r.path);
      return st.ino === r.st.ino ? this.attrOf(st) : undefined;
    } catch {
      return undefined;
    }
  }

  private async dirWcc(r: Resolved): Promise<Wcc> {
    return { before: toWcc(r.st), after: await this.dirAfter(r) };
  }

  private check(): void {
    if (this.closed) throw new GvError('EIO', 'zone closed');
  }

  /** The staging directory's name at the root is the daemon's: clients cannot make, move or remove it. */
  private refuseReserved(dir: FileId, name: Buffer): void {
    if (dir === this.rootId && isStagingName(name)) throw new GvError('EACCES', 'name is reserved');
  }

  // ---------------------------------------------------------------- open files

  private opener(id: FileId): (write: boolean) => Promise<OpenedFile> {
    return async (write) => {
      const r = await this.resolve(id);
      if (r.st.isDirectory()) throw new GvError('EISDIR');
      if (!r.st.isFile()) throw new GvError('EINVAL', 'not a regular file');
      let fh: LocalFile;
      let writable = true;
      // open(2) synchronously (see local-fd.ts): no threadpool round trip on a cache miss.
      try {
        fh = LocalFile.open(r.path, O_RDWR | O_NOFOLLOW);
      } catch (err) {
        if (write || !RW_FALLBACK.has(code(err))) throw toGvError(err);
        fh = LocalFile.open(r.path, O_RDONLY | O_NOFOLLOW);
        writable = false;
      }
      try {
        const st = fstatB(fh);
        if (!this.matches(st, r.row)) throw new GvError('ESTALE', 'file replaced while opening');
      } catch (err) {
        await fh.close().catch(() => undefined);
        throw toGvError(err);
      }
      return { fh, writable };
    };
  }

  private async lease(id: FileId, write: boolean): Promise<FdLease> {
    const lease = await this.fds.acquire(id, write, this.opener(id));
    if (write && !lease.writable) {
      lease.release();
      throw new GvError('EROFS', 'file can only be opened read-only');
    }
    return lease;
  }

  /** A read-only descriptor opened with O_NOATIME (when permitted), closed on release. */
  private async quietLease(id: FileId): Promise<FdLease> {
    const r = await this.resolve(id);
    if (r.st.isDirectory()) throw new GvError('EISDIR');
    if (!r.st.isFile()) throw new GvError('EINVAL', 'not a regular file');
    const base = fs.constants.O_RDONLY | O_NOFOLLOW;
    let fh: LocalFile;
    try {
      fh = LocalFile.open(r.path, base | (fs.constants.O_NOATIME ?? 0));
    } catch (err) {
      if (code(err) !== 'EPERM') throw toGvError(err);
      fh = LocalFile.open(r.path, base); // not the owner and no CAP_FOWNER
    }
    const st = fstatB(fh);
    if (!this.matches(st, r.row)) {
      await fh.close().catch(() => undefined);
      throw new GvError('ESTALE', 'file replaced while opening');
    }
    return { fh, writable: false, release: () => fh.closeSoon() };
  }

  /** fstat a leased file; a file unlinked behind our back is stale. */
  private async leasedStat(id: FileId, lease: FdLease): Promise<BigStats> {
    const st = fstatB(lease.fh);
    if (st.nlink === 0n || st.ino !== id) {
      this.fds.invalidate(id);
      throw new GvError('ESTALE', 'file was removed');
    }
    return st;
  }

  // ---------------------------------------------------------------- attributes

  async getattr(ctx: CallContext, id: FileId): Promise<Attr> {
    return this.getattrNow(ctx, id);
  }

  getattrNow(_ctx: CallContext, id: FileId): Attr {
    try {
      this.check();
      return this.attrOf(this.resolve(id).st);
    } catch (err) {
      throw toGvError(err);
    }
  }

  async generation(id: FileId): Promise<number> {
    return this.generationNow(id);
  }

  generationNow(id: FileId): number {
    const row = this.nodes.get(id);
    if (!row) throw new GvError('ESTALE', 'unknown file id', { id: String(id) });
    return row.generation;
  }

  async setattr(ctx: CallContext, id: FileId, attrs: SetAttrs, guardCtime?: Time): Promise<Wcc> {
    try {
      this.check();
      const r = await this.resolve(id);
      if (guardCtime && !timeEq(guardCtime, nsToTime(r.st.ctimeNs))) throw new GvError('NOT_SYNC');
      const timesAreNow = (attrs.atime === undefined || attrs.atime === 'now') && (attrs.mtime === undefined || attrs.mtime === 'now');
      const { mode } = checkSetattr(this.owned(r.st), ctx, { ...attrs, timesAreNow });
      if (r.st.isFile() && attrs.size !== undefined) this.checkGrowth(attrs.size - r.st.size);
      const after = await this.applyAttrs(id, r, { ...attrs, mode });
      if (r.st.isFile()) this.accountBlocks(id, r.st.blocks, after.blocks);
      return { before: toWcc(r.st), after: this.attrOf(after) };
    } catch (err) {
      throw toGvError(err);
    }
  }

  /**
   * Apply attributes without following symlinks: regular files through the fd cache (or `fh`),
   * directories and FIFOs through an O_NOFOLLOW descriptor, symlinks and others with l* calls.
   * Returns the stat afterwards.
   */
  private async applyAttrs(id: FileId, r: Resolved, a: SetAttrs, fhIn?: LocalFile): Promise<BigStats> {
    const st = r.st;
    const type = typeOf(st.mode);
    const uidChange = a.uid !== undefined && BigInt(a.uid) !== st.uid;
    const gidChange = a.gid !== undefined && BigInt(a.gid) !== st.gid;
    // chown clears set-id bits, so a mode carrying them is re-applied after an owner change.
    const modeChange = a.mode !== undefined && type !== 'symlink'
      && (BigInt(a.mode) !== (st.mode & 0o7777n) || ((uidChange || gidChange) && (a.mode & 0o6000) !== 0));
    const sizeChange = a.size !== undefined && type === 'file';
    const timeChange = a.atime !== undefined || a.mtime !== undefined;
    if (!uidChange && !gidChange && !modeChange && !sizeChange && !timeChange) return st;

    let fh = fhIn;
    let lease: FdLease | undefined;
    let ownFh: LocalFile | undefined;
    try {
      if (!fh && type === 'file') {
        lease = await this.lease(id, sizeChange);
        fh = lease.fh;
      } else if (!fh && (type === 'dir' || type === 'fifo')) {
        ownFh = LocalFile.open(r.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | (type === 'dir' ? O_DIRECTORY : 0));
        const fst = fstatB(ownFh);
        if (fst.ino !== st.ino || fst.dev !== st.dev) throw new GvError('ESTALE', 'replaced during setattr');
        fh = ownFh;
      }
      if (uidChange || gidChange) {
        const uid = uidChange ? a.uid! : -1;
        const gid = gidChange ? a.gid! : -1;
        // Metadata syscalls run synchronously (see lstatB).
        if (fh) fs.fchownSync(fh.fd, uid, gid);
        else fs.lchownSync(r.path, uid === -1 ? Number(st.uid) : uid, gid === -1 ? Number(st.gid) : gid);
      }
      if (modeChange) {
        // After chown (which clears set-id bits on files); sockets/devices have no fd: path chmod
        // of a just-verified non-symlink.
        if (fh) fs.fchmodSync(fh.fd, a.mode!);
        else fs.chmodSync(r.path, a.mode!);
      }
      if (sizeChange) await fh!.truncate(Number(a.size!));
      if (timeChange) {
        const at = a.atime === undefined ? Number(st.atimeNs) / 1e9 : a.atime === 'now' ? nowSeconds() : timeToSeconds(a.atime);
        // An unset mtime keeps its value, unless a truncate just moved it to now.
        const keptMt = sizeChange ? nowSeconds() : Number(st.mtimeNs) / 1e9;
        const mt = a.mtime === undefined ? keptMt : a.mtime === 'now' ? nowSeconds() : timeToSeconds(a.mtime);
        if (fh) fs.futimesSync(fh.fd, at, mt);
        else fs.lutimesSync(r.path, at, mt);
      }
      return fh ? fstatB(fh) : await lstatB(r.path);
    } finally {
      lease?.release();
      if (ownFh) await ownFh.close().catch(() => undefined);
    }
  }

  async access(ctx: CallContext, id: FileId, mask: number): Promise<{ granted: number; attr: Attr }> {
    return this.accessNow(ctx, id, mask);
  }

  accessNow(ctx: CallContext, id: FileId, mask: number): { granted: number; attr: Attr } {
    try {
      this.check();
      const r = this.resolve(id);
      return { granted: grantedAccess(this.owned(r.st), ctx, mask), attr: this.attrOf(r.st) };
    } catch (err) {
      throw toGvError(err);
    }
  }

  // ---------------------------------------------------------------- names

  async lookup(ctx: CallContext, dir: FileId, name: Buffer): Promise<{ id: FileId; attr: Attr; dirAttr?: Attr }> {
    return this.lookupNow(ctx, dir, name);
  }

  lookupNow(ctx: CallContext, dir: FileId, name: Buffer): { id: FileId; attr: Attr; dirAttr?: Attr } {
    try {
      this.check();
      if (name.length === 0) throw new GvError('ENOENT', 'empty name');
      checkName(name);
      if (dir === this.rootId && isStagingName(name)) throw new GvError('ENOENT');
      const d = this.resolveDir(dir);
      requirePerm(this.owned(d.st), ctx, PERM_X);
      const dirAttr = this.attrOf(d.st);
      if (isDot(name)) return { id: dir, attr: dirAttr, dirAttr };
      if (isDotDot(name)) {
        const parent = dir === this.rootId ? this.rootId : d.row.parent;
        const p = parent === dir ? d : this.resolve(parent);
        return { id: parent, attr: this.attrOf(p.st), dirAttr };
      }
      const st = lstatOrNone(joinName(d.path, name));
      if (st === undefined) throw new GvError('ENOENT');
      if (st.dev !== this.dev) throw new GvError('EACCES', 'mount point inside the zone');
      this.record(dir, name, st);
      return { id: st.ino, attr: this.attrOf(st), dirAttr };
    } catch (err) {
      throw toGvError(err);
    }
  }

  /** Remember an object found at (dir, name). */
  private record(dir: FileId, name: Buffer, st: BigStats): NodeRow {
    // Directories cannot be hard-linked: their link count says nothing about other names.
    const nlink = st.isDirectory() ? 1 : Number(st.nlink);
    return this.nodes.observe({ fileid: st.ino, parent: dir, name, btime: st.birthtimeNs, type: typeCode(st), nlink });
  }

  /** Remember an object we just created (any older row for its inode number is a dead one). */
  private recordNew(dir: FileId, name: Buffer, st: BigStats): NodeRow {
    this.listings.touch(dir, name);
    this.fds.invalidate(st.ino);
    return this.nodes.fresh({
      fileid: st.ino, parent: dir, name, btime: st.birthtimeNs, type: typeCode(st), nlink: Number(st.nlink),
    });
  }

  async readlink(_ctx: CallContext, id: FileId): Promise<{ target: Buffer; attr?: Attr }> {
    try {
      this.check();
      const r = await this.resolve(id);
      if (!r.st.isSymbolicLink()) throw new GvError('EINVAL', 'not a symlink');
      const target = await fsp.readlink(r.path, { encoding: 'buffer' });
      return { target, attr: this.attrOf(r.st) };
    } catch (err) {
      throw toGvError(err);
    }
  }

  // ---------------------------------------------------------------- data

  async read(ctx: CallContext, id: FileId, offset: number, count: number, into?: Buffer): Promise<{ data: Buffer; eof: boolean; attr?: Attr }> {
    try {
      this.check();
      if (offset < 0 || count < 0) throw new GvError('EINVAL');
      // The daemon's own reads (journal hashing, replication) must not touch atime: they use a
      // private O_NOATIME descriptor instead of the shared cache. Client reads update atime as usual.
      const lease = ctx.origin === 'local' ? await this.quietLease(id) : await this.lease(id, false);
      try {
        const st = await this.leasedStat(id, lease);
        const o = this.owned(st);
        if (ctx.uid !== o.uid) requirePerm(o, ctx, PERM_R);
        const size = st.size;
        const attr = this.attrOf(st);
        if (BigInt(offset) >= size || count === 0) return { data: Buffer.alloc(0), eof: BigInt(offset) >= size, attr };
        const want = Math.min(count, MAX_IO, Number(size - BigInt(offset)));
        const buf = into && into.length >= want ? into : Buffer.allocUnsafe(want);
        let got = 0;
        for (let i = 0; i < 16 && got < want; i++) {
          const { bytesRead } = want <= SYNC_IO_MAX || ctx.inline === true
            ? { bytesRead: fs.readSync(lease.fh.fd, buf, got, want - got, offset + got) }
            : await lease.fh.read(buf, got, want - got, offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return { data: got === buf.length ? buf : buf.subarray(0, got), eof: BigInt(offset + got) >= size, attr };
      } finally {
        lease.release();
      }
    } catch (err) {
      throw toGvError(err);
    }
  }

  async write(
    ctx: CallContext, id: FileId, offset: number, data: Buffer, stable: StableHow,
  ): Promise<{ count: number; committed: StableHow; file: Wcc }> {
    try {
      this.check();
      if (offset < 0) throw new GvError('EINVAL');
      const lease = await this.lease(id, true);
      try {
        const before = await this.leasedStat(id, lease);
        const o = this.owned(before);
        if (ctx.uid !== o.uid) requirePerm(o, ctx, PERM_W);
        const reserved = this.reserveWrite(before, offset, data.length);
        try {
          let done = 0;
          for (let i = 0; i < 16 && done < data.length; i++) {
            const { bytesWritten } = data.length <= SYNC_IO_MAX || ctx.inline === true
              ? { bytesWritten: fs.writeSync(lease.fh.fd, data, done, data.length - done, offset + done) }
              : await lease.fh.write(data, done, data.length - done, offset + done);
            if (bytesWritten === 0) break;
            done += bytesWritten;
          }
          if (stable === 'unstable') this.noteUnsynced(id, done);
          else await this.syncLeased(ctx, id, lease.fh, stable === 'data_sync', done);
          const after = fstatB(lease.fh);
          this.accountBlocks(id, before.blocks, after.blocks);
          return { count: done, committed: stable, file: { before: toWcc(before), after: this.attrOf(after) } };
        } finally {
          this.reservedBytes -= reserved;
        }
      } finally {
        lease.release();
      }
    } catch (err) {
      throw toGvError(err);
    }
  }

  /** Inline syncs are off until then (one took longer than INLINE_SYNC_SLOW_NS). */
  private inlineSyncsOffUntil = 0;
  /** Brokered bytes written to each file since its last sync (see INLINE_SYNC_MAX). */
  private readonly unsynced = new Map<FileId, number>();

  /** `bytes` more were written to `id` (`fresh`: a new file, nothing of it was dirty before). */
  private noteUnsynced(id: FileId, bytes: number, fresh = false): void {
    if (!this.unsynced.has(id) && this.unsynced.size >= UNSYNCED_TRACKED_MAX) this.unsynced.clear();
    this.unsynced.set(id, (fresh ? 0 : this.unsynced.get(id) ?? 0) + bytes);
  }

  /**
   * fsync (fdatasync) a leased descriptor: inline when nothing else waits for the event loop and
   * only a little brokered data (plus `pending` bytes just written) can be dirty; else on the
   * threadpool. Writes arriving during an asynchronous sync count towards the next one.
   */
  private async syncLeased(ctx: CallContext, id: FileId, fh: LocalFile, dataOnly: boolean, pending: number): Promise<void> {
    const known = this.unsynced.get(id);
    const dirty = known === undefined ? undefined : known + pending;
    // Known files count from zero again (writes landing during an asynchronous sync add to it).
    if (known !== undefined) this.unsynced.set(id, 0);
    try {
      if (ctx.inline === true && dirty !== undefined && dirty <= INLINE_SYNC_MAX && Date.now() >= this.inlineSyncsOffUntil) {
        this.stats.inlineSyncs++;
        const t0 = process.hrtime.bigint();
        if (dataOnly) fs.fdatasyncSync(fh.fd);
        else fs.fsyncSync(fh.fd);
        if (process.hrtime.bigint() - t0 > INLINE_SYNC_SLOW_NS) {
          this.stats.slowInlineSyncs++;
          this.inlineSyncsOffUntil = Date.now() + INLINE_SYNC_BACKOFF_MS;
        }
        return;
      }
      await (dataOnly ? fh.datasync() : fh.sync());
    } catch (err) {
      this.unsynced.delete(id); // what is still dirty is unknown now
      throw err;
    }
  }

  async commit(ctx: CallContext, id: FileId, _offset: number, _count: number): Promise<Wcc> {
    try {
      this.check();
      const lease = await this.lease(id, false);
      try {
        await this.syncLeased(ctx, id, lease.fh, false, 0);
        const st = await this.leasedStat(id, lease);
        return { before: toWcc(st), after: this.attrOf(st) };
      } finally {
        lease.release();
      }
    } catch (err) {
      throw toGvError(err);
    }
  }

  // ---------------------------------------------------------------- creation

  /** Owner and group of a new object: the caller's, group inherited from a setgid directory. */
  private newOwner(ctx: CallContext, d: Resolved): { uid: number; gid: number } {
    const setgid = (d.st.mode & 0o2000n) !== 0n;
    return { uid: ctx.uid, gid: setgid ? Number(d.st.gid) : ctx.gid };
  }

  /** Attributes for a new object: ownership first (as root), then what the client asked for. */
  private newAttrs(ctx: CallContext, d: Resolved, type: FileType, attrs: SetAttrs, defMode: number): SetAttrs {
    const own = this.newOwner(ctx, d);
    const synthetic: Owned = { type, mode: defMode, uid: own.uid, gid: own.gid };
    const timesAreNow = (attrs.atime === undefined || attrs.atime === 'now') && (attrs.mtime === undefined || attrs.mtime === 'now');
    const { mode } = checkSetattr(synthetic, ctx, {
      mode: attrs.mode, uid: attrs.uid, gid: attrs.gid, atime: attrs.atime, mtime: attrs.mtime, timesAreNow,
    });
    let m = mode ?? defMode;
    if (type === 'dir' && (d.st.mode & 0o2000n) !== 0n) m |= 0o2000;
    const out: SetAttrs = { mode: m, atime: attrs.atime, mtime: attrs.mtime };
    if (this.amRoot) {
      out.uid = attrs.uid ?? own.uid;
      out.gid = attrs.gid ?? own.gid;
    }
    if (type === 'file' && attrs.size !== undefined && attrs.size !== 0n) out.size = attrs.size;
    return out;
  }

  private async finishCreate(
    dir: FileId, d: Resolved, name: Buffer, st: BigStats, attrs: SetAttrs, fh?: LocalFile,
  ): Promise<Created> {
    const row = this.recordNew(dir, name, st);
    const path = joinName(d.path, name);
    const after = await this.applyAttrs(st.ino, { path, st, row }, attrs, fh);
    this.usage.add(after.blocks * 512n);
    return { id: st.ino, attr: this.attrOf(after), dir: await this.dirWcc(d) };
  }

  async create(ctx: CallContext, dir: FileId, name: Buffer, how: CreateHow): Promise<Created> {
    try {
      this.check();
      checkNewName(name, 'EEXIST');
      this.refuseReserved(dir, name);
      const d = await this.resolveDir(dir);
      requireDirWrite(this.owned(d.st), ctx);
      const path = joinName(d.path, name);
      const attrs: SetAttrs = how.mode === 'exclusive' ? {} : how.attrs;
      const want = this.newAttrs(ctx, d, 'file', attrs, 0o644);
      this.checkGrowth(want.size ?? 0n);
      if (how.mode === 'exclusive') {
        const v = verifierTimes(how.verifier);
        want.atime = { sec: v.atime, nsec: 0 };
        want.mtime = { sec: v.mtime, nsec: 0 };
      }
      let fh: LocalFile;
      try {
        fh = LocalFile.open(path, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW, want.mode! & 0o777);
      } catch (err) {
        if (code(err) !== 'EEXIST') throw err;
        return await this.createExisting(ctx, dir, d, name, path, how);
      }
      try {
        const st = fstatB(fh);
        const created = await this.finishCreate(dir, d, name, st, want, fh);
        this.fds.adopt(st.ino, { fh, writable: true });
        this.noteUnsynced(st.ino, 0, true); // a new file: nothing of it is dirty yet but its own entry
        return created;
      } catch (err) {
        await fh.close().catch(() => undefined);
        throw err;
      }
    } catch (err) {
      throw toGvError(err);
    }
  }

  /** CREATE found the name taken: UNCHECKED truncates a regular file, EXCLUSIVE checks the verifier. */
  private async createExisting(
    ctx: CallContext, dir: FileId, d: Resolved, name: Buffer, path: Buffer, how: CreateHow,
  ): Promise<Created> {
    if (how.mode === 'guarded') throw new GvError('EEXIST');
    const st = await lstatB(path);
    if (st.isDirectory()) throw new GvError(how.mode === 'exclusive' ? 'EEXIST' : 'EISDIR');
    if (!st.isFile()) throw new GvError('EEXIST');
    if (how.mode === 'exclusive') {
      const v = verifierTimes(how.verifier);
      const at = nsToTime(st.atimeNs);
      const mt = nsToTime(st.mtimeNs);
      if (at.sec !== v.atime || mt.sec !== v.mtime || at.nsec !== 0 || mt.nsec !== 0) throw new GvError('EEXIST');
      this.record(dir, name, st);
      return { id: st.ino, attr: this.attrOf(st), dir: { before: toWcc(d.st), after: this.attrOf(d.st) } };
    }
    const row = this.record(dir, name, st);
    let after = st;
    if (how.attrs.size === 0n && st.size !== 0n) {
      checkSetattr(this.owned(st), ctx, { size: 0n });
      after = await this.applyAttrs(st.ino, { path, st, row }, { size: 0n });
      this.usage.add((after.blocks - st.blocks) * 512n);
    }
    return { id: st.ino, attr: this.attrOf(after), dir: await this.dirWcc(d) };
  }

  async mkdir(ctx: CallContext, dir: FileId, name: Buffer, attrs: SetAttrs): Promise<Created> {
    try {
      this.check();
      checkNewName(name, 'EEXIST');
      this.refuseReserved(dir, name);
      const d = await this.resolveDir(dir);
      requireDirWrite(this.owned(d.st), ctx);
      const want = this.newAttrs(ctx, d, 'dir', attrs, 0o755);
      const path = joinName(d.path, name);
      await fsp.mkdir(path, want.mode! & 0o777);
      const st = await lstatB(path);
      return await this.finishCreate(dir, d, name, st, want);
    } catch (err) {
      throw toGvError(err);
    }
  }

  async symlink(ctx: CallContext, dir: FileId, name: Buffer, target: Buffer, attrs: SetAttrs): Promise<Created> {
    try {
      this.check();
      checkNewName(name, 'EEXIST');
      this.refuseReserved(dir, name);
      if (target.length === 0 || target.includes(0)) throw new GvError('EINVAL', 'bad symlink target');
      if (target.length > 4095) throw new GvError('ENAMETOOLONG');
      const d = await this.resolveDir(dir);
      requireDirWrite(this.owned(d.st), ctx);
      const want = this.newAttrs(ctx, d, 'symlink', { ...attrs, mode: undefined }, 0o777);
      delete want.mode;
      const path = joinName(d.path, name);
      await fsp.symlink(target, path);
      const st = await lstatB(path);
      return await this.finishCreate(dir, d, name, st, want);
    } catch (err) {
      throw toGvError(err);
    }
  }

  async mknod(
    ctx: CallContext, dir: FileId, name: Buffer, type: FileType, attrs: SetAttrs,
    _rdev?: { major: number; minor: number },
  ): Promise<Created> {
    try {
      this.check();
      if (type !== 'fifo' && type !== 'socket') throw new GvError('ENOTSUP', `cannot create ${type} nodes`);
      checkNewName(name, 'EEXIST');
      this.refuseReserved(dir, name);
      const d = await this.resolveDir(dir);
      requireDirWrite(this.owned(d.st), ctx);
      const want = this.newAttrs(ctx, d, type, attrs, 0o644);
      const path = joinName(d.path, name);
      // Node cannot mknod: make the node under a private ASCII name in the zone root, then link it
      // to the (possibly non-UTF-8) name, which fails with EEXIST like mknod would.
      const tmp = `${this.rootStr}/.gv-mknod-${randomBytes(6).toString('hex')}`;
      const tmpBuf = Buffer.from(tmp);
      if (type === 'fifo') {
        await new Promise<void>((resolve, reject) => {
          execFile('mkfifo', ['-m', '600', '--', tmp], { timeout: 10_000 }, (err) => (err ? reject(new GvError('EIO', `mkfifo: ${err.message}`)) : resolve()));
        });
        try {
          await fsp.link(tmpBuf, path);
        } finally {
          await fsp.unlink(tmpBuf).catch(() => undefined);
        }
      } else {
        if (tmpBuf.length > 100) throw new GvError('ENOTSUP', 'socket path too long');
        const srv = net.createServer();
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(tmp, () => resolve());
        });
        try {
          await fsp.link(tmpBuf, path);
        } finally {
          await new Promise<void>((resolve) => srv.close(() => resolve()));
          await fsp.unlink(tmpBuf).catch(() => undefined);
        }
      }
      const st = await lstatB(path);
      return await this.finishCreate(dir, d, name, st, want);
    } catch (err) {
      throw toGvError(err);
    }
  }

  // ---------------------------------------------------------------- removal, rename, link

  /** The object at (d, name) is gone with `remaining` links left: forget it accordingly. */
  private dropped(dir: FileId, name: Buffer, st: BigStats, remaining: number): void {
    this.nodes.unlinked(st.ino, dir, name, remaining);
    if (remaining <= 0) {
      this.fds.invalidate(st.ino);
      this.unsynced.delete(st.ino); // a later file given this inode number starts untracked
      this.listings.invalidate(st.ino);
      this.usage.add(-st.blocks * 512n);
      this.blocksSeen.delete(st.ino);
    }
  }

  async remove(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    try {
      this.check();
      checkNewName(name, 'EINVAL');
      this.refuseReserved(dir, name);
      const d = await this.resolveDir(dir);
      const dOwned = this.owned(d.st);
      requireDirWrite(dOwned, ctx);
      const path = joinName(d.path, name);
      const st = await lstatB(path);
      if (st.isDirectory()) throw new GvError('EISDIR');
      requireStickyOk(dOwned, { uid: Number(st.uid) }, ctx);
      // Synchronous like the lstat calls around it: a threadpool round trip added about 200 µs to
      // every REMOVE (measured: small-file unlinks 1,130/s → 1,430/s). The expensive part of
      // unlinking the last link of a file is freeing its inode and blocks (ext4, a file just
      // written and fsynced: 300-600 µs), which the kernel does when the last descriptor goes:
      // a file held open across the unlink is freed by that close, on the threadpool, after the
      // reply. (A file the descriptor cache keeps open is in that state already.)
      const holder = st.isFile() && st.nlink === 1n && !this.fds.has(st.ino) ? openQuietly(path) : undefined;
      try {
        fs.unlinkSync(path);
      } finally {
        if (holder) void holder.close().catch(() => undefined);
      }
      this.listings.touch(dir, name);
      this.dropped(dir, name, st, Number(st.nlink) - 1);
      return await this.dirWcc(d);
    } catch (err) {
      throw toGvError(err);
    }
  }

  async rmdir(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    try {
      this.check();
      if (isDot(name)) throw new GvError('EINVAL');
      if (isDotDot(name)) throw new GvError('ENOTEMPTY');
      checkName(name);
      this.refuseReserved(dir, name);
      const d = await this.resolveDir(dir);
      const dOwned = this.owned(d.st);
      requireDirWrite(dOwned, ctx);
      const path = joinName(d.path, name);
      const st = await lstatB(path);
      if (!st.isDirectory()) throw new GvError('ENOTDIR');
      requireStickyOk(dOwned, { uid: Number(st.uid) }, ctx);
      await fsp.rmdir(path);
      this.listings.touch(dir, name);
      this.dropped(dir, name, st, 0);
      return await this.dirWcc(d);
    } catch (err) {
      throw toGvError(err);
    }
  }

  async rename(
    ctx: CallContext, fromDir: FileId, fromName: Buffer, toDir: FileId, toName: Buffer,
  ): Promise<{ from: Wcc; to: Wcc }> {
    try {
      this.check();
      checkNewName(fromName, 'EINVAL');
      checkNewName(toName, 'EINVAL');
      this.refuseReserved(fromDir, fromName);
      this.refuseReserved(toDir, toName);
      const fd = await this.resolveDir(fromDir);
      const td = toDir === fromDir ? fd : await this.resolveDir(toDir);
      const fOwned = this.owned(fd.st);
      const tOwned = this.owned(td.st);
      requireDirWrite(fOwned, ctx);
      if (td !== fd) requireDirWrite(tOwned, ctx);
      const fromPath = joinName(fd.path, fromName);
      const toPath = joinName(td.path, toName);
      const src = await lstatB(fromPath);
      requireStickyOk(fOwned, { uid: Number(src.uid) }, ctx);
      let dst: BigStats | undefined;
      try {
        dst = await lstatB(toPath);
      } catch (err) {
        if (code(err) !== 'ENOENT') throw err;
      }
      if (dst && dst.ino === src.ino) {
        // POSIX: both names are links to one file → nothing happens.
        return { from: await this.dirWcc(fd), to: td === fd ? await this.dirWcc(fd) : await this.dirWcc(td) };
      }
      if (dst) requireStickyOk(tOwned, { uid: Number(dst.uid) }, ctx);
      // Moving a directory to another parent rewrites its '..': needs write access to it (Linux).
      if (src.isDirectory() && fromDir !== toDir) requirePerm(this.owned(src), ctx, PERM_W);
      if (src.isDirectory() && this.isAncestorOrSelf(src.ino, toDir)) {
        throw new GvError('EINVAL', 'cannot move a directory into itself');
      }
      await fsp.rename(fromPath, toPath);
      this.listings.touch(fromDir, fromName);
      this.listings.touch(toDir, toName);
      this.nodes.batch(() => {
        if (dst) this.dropped(toDir, toName, dst, dst.isDirectory() ? 0 : Number(dst.nlink) - 1);
        this.nodes.move(src.ino, fromDir, fromName, toDir, toName);
      });
      const from = await this.dirWcc(fd);
      const to = td === fd ? { before: from.before, after: from.after } : await this.dirWcc(td);
      return { from, to };
    } catch (err) {
      throw toGvError(err);
    }
  }

  /** True when `ancestor` is `id` or one of its parents (by the nodes table). */
  private isAncestorOrSelf(ancestor: FileId, id: FileId): boolean {
    let cur = id;
    for (let i = 0; i < MAX_DEPTH; i++) {
      if (cur === ancestor) return true;
      if (cur === this.rootId) return false;
      const row = this.nodes.get(cur);
      if (!row) return false;
      cur = row.parent;
    }
    return false;
  }

  async link(ctx: CallContext, id: FileId, dir: FileId, name: Buffer): Promise<{ attr?: Attr; dir: Wcc }> {
    try {
      this.check();
      checkNewName(name, 'EEXIST');
      this.refuseReserved(dir, name);
      const f = await this.resolve(id);
      if (f.st.isDirectory()) throw new GvError('EISDIR', 'cannot hard-link a directory');
      const d = await this.resolveDir(dir);
      requireDirWrite(this.owned(d.st), ctx);
      const path = joinName(d.path, name);
      await fsp.link(f.path, path);
      this.listings.touch(dir, name);
      this.nodes.addLink(id, dir, name);
      let attr: Attr | undefined;
      try {
        const st = await lstatB(path);
        if (st.ino === id) attr = this.attrOf(st);
      } catch {
        /* attr omitted */
      }
      return { attr, dir: await this.dirWcc(d) };
    } catch (err) {
      throw toGvError(err);
    }
  }

  // ---------------------------------------------------------------- directories

  async readdir(ctx: CallContext, dir: FileId, opts: ReaddirOptions): Promise<DirPage> {
    try {
      this.check();
      if (opts.cookie !== 0n && opts.verifier.length > 0 && !opts.verifier.every((b) => b === 0)
        && !opts.verifier.equals(COOKIE_VERIFIER)) {
        throw new GvError('BAD_COOKIE', 'cookie verifier mismatch');
      }
      const d = await this.resolveDir(dir);
      requirePerm(this.owned(d.st), ctx, PERM_R);
      const key = `${d.st.mtimeNs}:${d.st.ctimeNs}:${d.st.size}:${d.st.nlink}`;
      let listing = this.listings.get(dir, key);
      if (!listing) {
        listing = await this.readListing(dir, d.path, key, d.st.size);
        this.listings.set(dir, listing);
      }
      const dirAttr = this.attrOf(d.st);
      const max = Math.max(1, opts.maxEntries);
      const entries: DirEntry[] = [];
      if (opts.cookie < COOKIE_DOT) entries.push({ id: dir, name: Buffer.from('.'), cookie: COOKIE_DOT, attr: opts.withAttrs ? dirAttr : undefined });
      if (opts.cookie < COOKIE_DOTDOT && entries.length < max) {
        const parent = dir === this.rootId ? this.rootId : d.row.parent;
        let attr: Attr | undefined;
        if (opts.withAttrs) {
          try {
            attr = parent === dir ? dirAttr : this.attrOf(this.resolve(parent).st);
          } catch {
            attr = undefined;
          }
        }
        entries.push({ id: parent, name: Buffer.from('..'), cookie: COOKIE_DOTDOT, attr });
      }
      let start = opts.cookie <= COOKIE_DOTDOT ? 0 : firstAfter(listing, opts.cookie);
      const room = max - entries.length;
      const n = listing.cookies.length;
      const budget = opts.budget;
      let bytesLeft = budget ? budget.bytes - entries.reduce((sum, e) => sum + budget.entryBytes(e.name.length), 0) : 0;
      let end = start;
      // A name whose id is still unknown once looked up is gone since the directory was read (or
      // is a mount point): left out. A page whose names are all gone moves on to the next names,
      // so a reply short of the end always holds a name (else the client would ask again with
      // the same cookie). Each turn moves `start` on: at most n turns.
      while (room > 0 && start < n && (!budget || bytesLeft > 0 || entries.length === 0)) {
        end = pageEnd(listing, start, budget ? namesWithin(listing, start, room, bytesLeft, budget.entryBytes) : room);
        const page: DirEntry[] = [];
        for (let i = start; i < end; i++) {
          page.push({ id: listing.ids[i]!, name: listing.names[i]!, cookie: listing.cookies[i]! });
        }
        await this.fillPage(dir, d.path, page, listing, start, opts.withAttrs);
        let served = 0;
        for (const e of page) {
          if (e.id === UNKNOWN_ID) continue;
          entries.push(e);
          served++;
        }
        if (served > 0) break;
        start = end;
      }
      return { entries, eof: end >= listing.cookies.length, verifier: COOKIE_VERIFIER, dirAttr };
    } catch (err) {
      throw toGvError(err);
    }
  }

  /**
   * Read a directory: names from readdir, sorted by cookie. Ids and cookies of names an older
   * listing still vouches for are reused; the other names get their id when a page holding them
   * is served (fillPage): a 1,000-name directory used to be lstat'ed whole before its
   * first page went out (6 ms here, then every later page lstat'ed its entries again).
   */
  private async readListing(dir: FileId, dirPath: Buffer, key: string, size: bigint): Promise<Listing> {
    this.stats.listingBuilds++;
    const hint = this.listings.hint(dir);
    // Names as latin1 strings (one byte per char, any byte kept), made Buffers here from the
    // shared pool: readdir's own Buffers are one allocation each, twice the cost for 1,000 names.
    const names = size / BigInt(this.dirBytesPerEntry) <= BigInt(SYNC_READDIR_MAX_NAMES)
      ? (this.stats.syncReaddirs++, fs.readdirSync(dirPath, { encoding: 'latin1' }))
      : await fsp.readdir(dirPath, { encoding: 'latin1' });
    const raw: RawEntry[] = new Array(names.length);
    const atRoot = dir === this.rootId;
    const words: CookieWords = { hi: 0, lo: 0 };
    let n = 0;
    for (const s of names) {
      if (atRoot && s === STAGING_DIR) continue; // the staging directory is never listed
      const name = Buffer.from(s, 'latin1');
      const h = hint?.get(s);
      if (h && h.id !== UNKNOWN_ID) {
        wordsOfCookie(h.cookie, words);
        raw[n++] = { hi: words.hi, lo: words.lo, name, id: h.id, cookie: h.cookie };
      } else {
        nameCookieWords(name, words);
        raw[n++] = { hi: words.hi, lo: words.lo, name, id: UNKNOWN_ID };
      }
    }
    raw.length = n;
    return buildListing(key, raw);
  }

  /**
   * A page's ids not known yet (READDIR), or its attributes and ids (READDIRPLUS: every entry is
   * lstat'ed). An entry whose name now holds another object (changed behind our back) is
   * corrected in the page and in the cached listing; objects not recorded yet (made out of band)
   * are recorded in one transaction.
   */
  private async fillPage(dir: FileId, dirPath: Buffer, page: DirEntry[], listing: Listing, start: number, withAttrs: boolean): Promise<void> {
    const todo: number[] = [];
    page.forEach((e, i) => {
      if (e.id === UNKNOWN_ID) this.stats.listingStats++;
      if (withAttrs || e.id === UNKNOWN_ID) todo.push(i);
    });
    if (todo.length === 0) return;
    const stats = await lstatMany(todo.map((i) => joinName(dirPath, page[i]!.name)));
    // One transaction for the records a page makes (a page with none costs an empty BEGIN/COMMIT).
    this.nodes.batch(() => {
      todo.forEach((i, j) => {
        const st = stats[j];
        if (!st || st.dev !== this.dev) return; // vanished: no id (left out) or no attributes
        const e = page[i]!;
        if (st.ino !== e.id) {
          if (!this.nodes.knows(st.ino, dir, e.name, st.birthtimeNs)) this.record(dir, e.name, st);
          e.id = st.ino;
          listing.ids[start + i] = st.ino;
        }
        if (withAttrs) e.attr = this.attrOf(st);
      });
    });
  }

  // ---------------------------------------------------------------- file system

  async fsstat(_ctx: CallContext, id: FileId): Promise<{ stat: FsStat; attr?: Attr }> {
    try {
      this.check();
      const r = await this.resolve(id);
      const s = fs.statfsSync(this.rootPath, { bigint: true });
      const bsize = s.bsize;
      let totalBytes = s.blocks * bsize;
      let freeBytes = s.bfree * bsize;
      let availBytes = s.bavail * bsize;
      if (this.quota !== undefined) {
        const charged = this.charged();
        const left = this.quota > charged ? this.quota - charged : 0n;
        totalBytes = this.quota;
        freeBytes = left < freeBytes ? left : freeBytes;
        availBytes = left < availBytes ? left : availBytes;
      }
      const stat: FsStat = {
        totalBytes, freeBytes, availBytes, totalFiles: s.files, freeFiles: s.ffree, availFiles: s.ffree,
      };
      return { stat, attr: this.attrOf(r.st) };
    } catch (err) {
      throw toGvError(err);
    }
  }

  async pathconf(_ctx: CallContext, id: FileId): Promise<{ conf: PathConf; attr?: Attr }> {
    try {
      this.check();
      const r = await this.resolve(id);
      const s = await fsp.statfs(this.rootPath);
      const conf: PathConf = {
        linkMax: FS_TRAITS.get(Number(s.type) >>> 0)?.linkMax ?? 32000,
        nameMax: NAME_MAX,
        noTrunc: true,
        chownRestricted: true,
        caseInsensitive: false,
        casePreserving: true,
      };
      return { conf, attr: this.attrOf(r.st) };
    } catch (err) {
      throw toGvError(err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fds.closeAll();
    this.listings.clear();
    await this.usage.settled();
  }
}
