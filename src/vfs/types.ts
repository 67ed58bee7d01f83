/**
 * The ZoneFs seam: the one interface every backend (local directory / ZFS dataset, remote replica,
 * memory) implements. Keyed by FileId, never by NFS handles or paths. Every call takes the caller's
 * CallContext. Failures are thrown as GvError with a POSIX code (see errors.ts). This module never
 * imports nfs/ or rpc/.
 */

export type FileId = bigint;

export interface CallContext {
  uid: number;
  gid: number;
  /** Supplementary groups (AUTH_SYS gids). */
  gids: number[];
  /** Client address, for logs and journal origin. */
  client: string;
  origin: 'nfs' | 'peer' | 'local';
  /**
   * Nothing else is waiting for the event loop (the RPC server had no other call in flight when
   * this one started): a backend may do large data I/O synchronously instead of on the threadpool
   * (whose round trip costs more than a page-cache copy of 1 MiB here). Absent: false.
   */
  inline?: boolean;
}

export type FileType = 'file' | 'dir' | 'symlink' | 'block' | 'char' | 'socket' | 'fifo';

export interface Time {
  sec: number;
  nsec: number;
}

export interface Attr {
  type: FileType;
  /** Permission bits and setuid/setgid/sticky (& 0o7777). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: bigint;
  /** Bytes allocated on disk. */
  used: bigint;
  rdev: { major: number; minor: number };
  /** Identifies the zone (NFS fsid). */
  fsid: bigint;
  fileid: FileId;
  atime: Time;
  mtime: Time;
  ctime: Time;
}

/** The attributes NFS wcc_data keeps from before an operation (RFC 1813 wcc_attr). */
export interface WccAttr {
  size: bigint;
  mtime: Time;
  ctime: Time;
}

/** Weak cache consistency for an object an operation changed. Either part may be missing. */
export interface Wcc {
  before?: WccAttr;
  after?: Attr;
}

export type SetTime = Time | 'now';

export interface SetAttrs {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: bigint;
  atime?: SetTime;
  mtime?: SetTime;
}

export type StableHow = 'unstable' | 'data_sync' | 'file_sync';

export type CreateHow =
  | { mode: 'unchecked'; attrs: SetAttrs }
  | { mode: 'guarded'; attrs: SetAttrs }
  /** 8-byte verifier: a retried EXCLUSIVE create with the same verifier succeeds. */
  | { mode: 'exclusive'; verifier: Buffer };

export interface Created {
  id: FileId;
  attr: Attr;
  dir: Wcc;
}

export interface DirEntry {
  id: FileId;
  name: Buffer;
  /** Stable position of this entry: resuming after it returns the entries that follow. Never 0. */
  cookie: bigint;
  /** Filled when readdir was asked for attributes (READDIRPLUS). */
  attr?: Attr;
}

export interface DirPage {
  entries: DirEntry[];
  eof: boolean;
  /** Cookie verifier for this listing (8 bytes). */
  verifier: Buffer;
  dirAttr: Attr;
}

export interface ReaddirOptions {
  /** 0 to start at the beginning. */
  cookie: bigint;
  /** The verifier the client got with `cookie` (ignored when cookie is 0). */
  verifier: Buffer;
  /** Stop once this many entries are gathered; the NFS layer trims by byte budget afterwards. */
  maxEntries: number;
  withAttrs: boolean;
  /**
   * Stop before the entries' encoded size (by `entryBytes` of each name's length) would pass
   * `bytes`; at least one name is always taken. Lets READDIRPLUS look up only the entries that
   * fit its reply instead of a fixed count estimated from the smallest entry.
   */
  budget?: { bytes: number; entryBytes: (nameLength: number) => number };
}

export interface FsStat {
  totalBytes: bigint;
  freeBytes: bigint;
  availBytes: bigint;
  totalFiles: bigint;
  freeFiles: bigint;
  availFiles: bigint;
}

export interface PathConf {
  linkMax: number;
  nameMax: number;
  noTrunc: boolean;
  chownRestricted: boolean;
  caseInsensitive: boolean;
  casePreserving: boolean;
}

/** ACCESS bits, as in RFC 1813. */
export const ACCESS_READ = 0x01;
export const ACCESS_LOOKUP = 0x02;
export const ACCESS_MODIFY = 0x04;
export const ACCESS_EXTEND = 0x08;
export const ACCESS_DELETE = 0x10;
export const ACCESS_EXECUTE = 0x20;

export interface ZoneFs {
  /** Zone name (the export is `/<name>`). */
  readonly name: string;
  /** Small integer identifying the zone inside handles. */
  readonly zoneId: number;
  readonly rootId: FileId;

  /** Resolve an id to attributes; ESTALE when the file no longer exists (or the generation differs). */
  getattr(ctx: CallContext, id: FileId): Promise<Attr>;
  /** Generation number of a live id, for handles (ESTALE when gone). */
  generation(id: FileId): Promise<number>;
  /** When `guardCtime` is given and differs from the file's ctime: NOT_SYNC. */
  setattr(ctx: CallContext, id: FileId, attrs: SetAttrs, guardCtime?: Time): Promise<Wcc>;
  lookup(ctx: CallContext, dir: FileId, name: Buffer): Promise<{ id: FileId; attr: Attr; dirAttr?: Attr }>;
  /** Which of the requested ACCESS bits the caller has. */
  access(ctx: CallContext, id: FileId, mask: number): Promise<{ granted: number; attr: Attr }>;
  readlink(ctx: CallContext, id: FileId): Promise<{ target: Buffer; attr?: Attr }>;
  /**
   * Read up to `count` bytes. With `into` (at least `count` bytes long) the data is read into it and
   * the result is a view of it, so a caller can reuse buffers.
   */
  read(ctx: CallContext, id: FileId, offset: number, count: number, into?: Buffer): Promise<{ data: Buffer; eof: boolean; attr?: Attr }>;
  write(
    ctx: CallContext, id: FileId, offset: number, data: Buffer, stable: StableHow,
  ): Promise<{ count: number; committed: StableHow; file: Wcc }>;
  create(ctx: CallContext, dir: FileId, name: Buffer, how: CreateHow): Promise<Created>;
  mkdir(ctx: CallContext, dir: FileId, name: Buffer, attrs: SetAttrs): Promise<Created>;
  symlink(ctx: CallContext, dir: FileId, name: Buffer, target: Buffer, attrs: SetAttrs): Promise<Created>;
  /** FIFOs and sockets; block/char devices may throw ENOTSUP. */
  mknod(
    ctx: CallContext, dir: FileId, name: Buffer, type: FileType, attrs: SetAttrs,
    rdev?: { major: number; minor: number },
  ): Promise<Created>;
  remove(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc>;
  rmdir(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc>;
  rename(
    ctx: CallContext, fromDir: FileId, fromName: Buffer, toDir: FileId, toName: Buffer,
  ): Promise<{ from: Wcc; to: Wcc }>;
  link(ctx: CallContext, id: FileId, dir: FileId, name: Buffer): Promise<{ attr?: Attr; dir: Wcc }>;
  readdir(ctx: CallContext, dir: FileId, opts: ReaddirOptions): Promise<DirPage>;
  fsstat(ctx: CallContext, id: FileId): Promise<{ stat: FsStat; attr?: Attr }>;
  pathconf(ctx: CallContext, id: FileId): Promise<{ conf: PathConf; attr?: Attr }>;
  /** Make written data durable (fsync). */
  commit(ctx: CallContext, id: FileId, offset: number, count: number): Promise<Wcc>;
  /** Release resources (fds, watchers). */
  close(): Promise<void>;

  // Synchronous forms of the calls a backend can answer at once (attributes from lstat, ids from
  // memory). Optional: when present, the NFS layer answers GETATTR, LOOKUP and ACCESS without a
  // promise (with libnfs' one call in flight, each promise hop is latency); same results and
  // errors (thrown) as the asynchronous forms, which a backend implementing these keeps as well.
  generationNow?(id: FileId): number;
  getattrNow?(ctx: CallContext, id: FileId): Attr;
  lookupNow?(ctx: CallContext, dir: FileId, name: Buffer): { id: FileId; attr: Attr; dirAttr?: Attr };
  accessNow?(ctx: CallContext, id: FileId, mask: number): { granted: number; attr: Attr };
}
