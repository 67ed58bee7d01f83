/**
 * NFSv3 (RFC 1813) and MOUNT v3 test client, written from the RFC independently of src/nfs/ so
 * that a codec bug on the server side is not mirrored here. Every procedure returns
 * `{ status, ...fields present in both arms, ok?: fields present only on NFS3_OK }`.
 */
import { XdrReader } from '../../src/xdr/reader.js';
import { XdrWriter } from '../../src/xdr/writer.js';
import { RpcClient, successResults, type Cred, type RpcReply } from './rpc-client.js';

export const NFS_PROGRAM = 100003;
export const MOUNT_PROGRAM = 100005;

export const PROC = {
  NULL: 0, GETATTR: 1, SETATTR: 2, LOOKUP: 3, ACCESS: 4, READLINK: 5, READ: 6, WRITE: 7,
  CREATE: 8, MKDIR: 9, SYMLINK: 10, MKNOD: 11, REMOVE: 12, RMDIR: 13, RENAME: 14, LINK: 15,
  READDIR: 16, READDIRPLUS: 17, FSSTAT: 18, FSINFO: 19, PATHCONF: 20, COMMIT: 21,
} as const;

export const MOUNTPROC = { NULL: 0, MNT: 1, DUMP: 2, UMNT: 3, UMNTALL: 4, EXPORT: 5 } as const;

export const NFS3_OK = 0;
export const NFS3ERR = {
  PERM: 1, NOENT: 2, IO: 5, NXIO: 6, ACCES: 13, EXIST: 17, XDEV: 18, NODEV: 19, NOTDIR: 20,
  ISDIR: 21, INVAL: 22, FBIG: 27, NOSPC: 28, ROFS: 30, MLINK: 31, NAMETOOLONG: 63, NOTEMPTY: 66,
  DQUOT: 69, STALE: 70, REMOTE: 71, BADHANDLE: 10001, NOT_SYNC: 10002, BAD_COOKIE: 10003,
  NOTSUPP: 10004, TOOSMALL: 10005, SERVERFAULT: 10006, BADTYPE: 10007, JUKEBOX: 10008,
} as const;

export function statName(s: number): string {
  if (s === NFS3_OK) return 'NFS3_OK';
  for (const [k, v] of Object.entries(NFS3ERR)) if (v === s) return `NFS3ERR_${k}`;
  return `nfsstat3(${s})`;
}

export const FTYPE = { REG: 1, DIR: 2, BLK: 3, CHR: 4, LNK: 5, SOCK: 6, FIFO: 7 } as const;
export const STABLE = { UNSTABLE: 0, DATA_SYNC: 1, FILE_SYNC: 2 } as const;
export const ACCESS3 = { READ: 0x01, LOOKUP: 0x02, MODIFY: 0x04, EXTEND: 0x08, DELETE: 0x10, EXECUTE: 0x20 } as const;
export const FSF3 = { LINK: 0x01, SYMLINK: 0x02, HOMOGENEOUS: 0x08, CANSETTIME: 0x10 } as const;

export interface NfsTime {
  sec: number;
  nsec: number;
}

export interface Fattr3 {
  type: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: bigint;
  used: bigint;
  rdev: [number, number];
  fsid: bigint;
  fileid: bigint;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
}

export interface WccAttr {
  size: bigint;
  mtime: NfsTime;
  ctime: NfsTime;
}

export interface WccData {
  before: WccAttr | null;
  after: Fattr3 | null;
}

export interface Sattr3 {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: bigint | number;
  /** 'server' = SET_TO_SERVER_TIME. */
  atime?: NfsTime | 'server';
  mtime?: NfsTime | 'server';
}

export type Name = string | Buffer;

export interface Res<Ok> {
  status: number;
  ok?: Ok;
}

// ---------- encoders ----------

function fh(w: XdrWriter, h: Buffer): XdrWriter {
  return w.opaque(h);
}

function name(w: XdrWriter, n: Name): XdrWriter {
  return w.string(typeof n === 'string' ? Buffer.from(n, 'utf8') : n);
}

function diropargs(w: XdrWriter, dir: Buffer, n: Name): XdrWriter {
  return name(fh(w, dir), n);
}

function time(w: XdrWriter, t: NfsTime): XdrWriter {
  return w.u32(t.sec).u32(t.nsec);
}

export function encodeSattr3(w: XdrWriter, a: Sattr3 = {}): XdrWriter {
  for (const v of [a.mode, a.uid, a.gid]) {
    if (v === undefined) w.bool(false);
    else w.bool(true).u32(v);
  }
  if (a.size === undefined) w.bool(false);
  else w.bool(true).u64(BigInt(a.size));
  for (const t of [a.atime, a.mtime]) {
    if (t === undefined) w.u32(0);
    else if (t === 'server') w.u32(1);
    else time(w.u32(2), t);
  }
  return w;
}

// ---------- decoders ----------

function readTime(r: XdrReader): NfsTime {
  return { sec: r.u32(), nsec: r.u32() };
}

export function readFattr3(r: XdrReader): Fattr3 {
  return {
    type: r.u32(),
    mode: r.u32(),
    nlink: r.u32(),
    uid: r.u32(),
    gid: r.u32(),
    size: r.u64(),
    used: r.u64(),
    rdev: [r.u32(), r.u32()],
    fsid: r.u64(),
    fileid: r.u64(),
    atime: readTime(r),
    mtime: readTime(r),
    ctime: readTime(r),
  };
}

function postOpAttr(r: XdrReader): Fattr3 | null {
  return r.bool() ? readFattr3(r) : null;
}

function preOpAttr(r: XdrReader): WccAttr | null {
  return r.bool() ? { size: r.u64(), mtime: readTime(r), ctime: readTime(r) } : null;
}

function wccData(r: XdrReader): WccData {
  return { before: preOpAttr(r), after: postOpAttr(r) };
}

function postOpFh(r: XdrReader): Buffer | null {
  return r.bool() ? Buffer.from(r.opaque(64)) : null;
}

function done<T>(r: XdrReader, v: T): T {
  if (r.remaining !== 0) throw new Error(`${r.remaining} unexpected trailing bytes in reply`);
  return v;
}

export interface DirEntry3 {
  fileid: bigint;
  name: string;
  nameBytes: Buffer;
  cookie: bigint;
}

export interface DirEntryPlus3 extends DirEntry3 {
  attr: Fattr3 | null;
  fh: Buffer | null;
}

export interface CreateOk {
  fh: Buffer | null;
  attr: Fattr3 | null;
}

export type CreateHow =
  | { mode: 'unchecked' | 'guarded'; attrs?: Sattr3 }
  | { mode: 'exclusive'; verf: Buffer };

export type MknodSpec =
  | { type: 'chr' | 'blk'; attrs?: Sattr3; major: number; minor: number }
  | { type: 'fifo' | 'sock'; attrs?: Sattr3 }
  | { type: 'reg' | 'dir' | 'lnk' };

const MKNOD_TYPE = { reg: 1, dir: 2, blk: 3, chr: 4, lnk: 5, sock: 6, fifo: 7 } as const;

/** Typed NFSv3 calls over one RpcClient. `cred` (AUTH_SYS) applies to every call made through it. */
export class Nfs3Client {
  cred: Cred | null;
  /** Size of the last successful reply's results (after the RPC header), for count/maxcount checks. */
  lastResultsLength = 0;

  constructor(readonly rpc: RpcClient, cred?: Cred | null) {
    this.cred = cred === undefined ? rpc.cred : cred;
  }

  static async connect(port: number, cred?: Cred | null): Promise<Nfs3Client> {
    return new Nfs3Client(await RpcClient.connect(port), cred);
  }

  /** The same connection with different credentials. */
  as(cred: Cred | null): Nfs3Client {
    return new Nfs3Client(this.rpc, cred);
  }

  close(): void {
    this.rpc.close();
  }

  async raw(proc: number, args: Uint8Array): Promise<RpcReply> {
    return this.rpc.call(NFS_PROGRAM, 3, proc, args, this.cred);
  }

  private async call(proc: number, w: XdrWriter): Promise<XdrReader> {
    const reply = await this.raw(proc, w.bytes());
    const r = successResults(reply);
    this.lastResultsLength = r.remaining;
    return r;
  }

  async null(): Promise<void> {
    const r = await this.call(PROC.NULL, new XdrWriter());
    done(r, undefined);
  }

  async getattr(h: Buffer): Promise<Res<Fattr3>> {
    const r = await this.call(PROC.GETATTR, fh(new XdrWriter(), h));
    const status = r.u32();
    return done(r, status === NFS3_OK ? { status, ok: readFattr3(r) } : { status });
  }

  async setattr(h: Buffer, attrs: Sattr3, guard?: NfsTime): Promise<Res<true> & { wcc: WccData }> {
    const w = encodeSattr3(fh(new XdrWriter(), h), attrs);
    if (guard) time(w.bool(true), guard);
    else w.bool(false);
    const r = await this.call(PROC.SETATTR, w);
    const status = r.u32();
    return done(r, { status, wcc: wccData(r), ok: status === NFS3_OK ? true : undefined });
  }

  async lookup(dir: Buffer, n: Name): Promise<Res<{ fh: Buffer; attr: Fattr3 | null }> & { dirAttr: Fattr3 | null }> {
    const r = await this.call(PROC.LOOKUP, diropargs(new XdrWriter(), dir, n));
    const status = r.u32();
    if (status !== NFS3_OK) return done(r, { status, dirAttr: postOpAttr(r) });
    const h = Buffer.from(r.opaque(64));
    const attr = postOpAttr(r);
    return done(r, { status, ok: { fh: h, attr }, dirAttr: postOpAttr(r) });
  }

  async access(h: Buffer, mask: number): Promise<Res<{ access: number }> & { attr: Fattr3 | null }> {
    const r = await this.call(PROC.ACCESS, fh(new XdrWriter(), h).u32(mask));
    const status = r.u32();
    const attr = postOpAttr(r);
    return done(r, status === NFS3_OK ? { status, attr, ok: { access: r.u32() } } : { status, attr });
  }

  async readlink(h: Buffer): Promise<Res<{ target: string; targetBytes: Buffer }> & { attr: Fattr3 | null }> {
    const r = await this.call(PROC.READLINK, fh(new XdrWriter(), h));
    const status = r.u32();
    const attr = postOpAttr(r);
    if (status !== NFS3_OK) return done(r, { status, attr });
    const t = Buffer.from(r.opaque(4096));
    return done(r, { status, attr, ok: { target: t.toString('utf8'), targetBytes: t } });
  }

  async read(h: Buffer, offset: number | bigint, count: number): Promise<Res<{ count: number; eof: boolean; data: Buffer }> & { attr: Fattr3 | null }> {
    const r = await this.call(PROC.READ, fh(new XdrWriter(), h).u64(BigInt(offset)).u32(count));
    const status = r.u32();
    const attr = postOpAttr(r);
    if (status !== NFS3_OK) return done(r, { status, attr });
    const c = r.u32();
    const eof = r.bool();
    const data = Buffer.from(r.opaque(64 << 20));
    return done(r, { status, attr, ok: { count: c, eof, data } });
  }

  async write(
    h: Buffer, offset: number | bigint, data: Buffer, stable: number = STABLE.FILE_SYNC, count = data.length,
  ): Promise<Res<{ count: number; committed: number; verf: Buffer }> & { wcc: WccData }> {
    const w = fh(new XdrWriter(128 + data.length), h).u64(BigInt(offset)).u32(count).u32(stable).opaque(data);
    const r = await this.call(PROC.WRITE, w);
    const status = r.u32();
    const wcc = wccData(r);
    if (status !== NFS3_OK) return done(r, { status, wcc });
    const c = r.u32();
    const committed = r.u32();
    const verf = Buffer.from(r.fixed(8));
    return done(r, { status, wcc, ok: { count: c, committed, verf } });
  }

  private async createLike(proc: number, w: XdrWriter): Promise<Res<CreateOk> & { dirWcc: WccData }> {
    const r = await this.call(proc, w);
    const status = r.u32();
    if (status !== NFS3_OK) return done(r, { status, dirWcc: wccData(r) });
    const h = postOpFh(r);
    const attr = postOpAttr(r);
    return done(r, { status, ok: { fh: h, attr }, dirWcc: wccData(r) });
  }

  async create(dir: Buffer, n: Name, how: CreateHow = { mode: 'unchecked' }): Promise<Res<CreateOk> & { dirWcc: WccData }> {
    const w = diropargs(new XdrWriter(), dir, n);
    if (how.mode === 'exclusive') {
      if (how.verf.length !== 8) throw new Error('createverf3 is 8 bytes');
      w.u32(2).fixed(how.verf);
    } else {
      encodeSattr3(w.u32(how.mode === 'unchecked' ? 0 : 1), how.attrs ?? { mode: 0o644 });
    }
    return this.createLike(PROC.CREATE, w);
  }

  async mkdir(dir: Buffer, n: Name, attrs: Sattr3 = { mode: 0o755 }): Promise<Res<CreateOk> & { dirWcc: WccData }> {
    return this.createLike(PROC.MKDIR, encodeSattr3(diropargs(new XdrWriter(), dir, n), attrs));
  }

  async symlink(dir: Buffer, n: Name, target: Name, attrs: Sattr3 = {}): Promise<Res<CreateOk> & { dirWcc: WccData }> {
    const w = encodeSattr3(diropargs(new XdrWriter(), dir, n), attrs);
    return this.createLike(PROC.SYMLINK, name(w, target));
  }

  async mknod(dir: Buffer, n: Name, spec: MknodSpec): Promise<Res<CreateOk> & { dirWcc: WccData }> {
    const w = diropargs(new XdrWriter(), dir, n).u32(MKNOD_TYPE[spec.type]);
    if (spec.type === 'chr' || spec.type === 'blk') encodeSattr3(w, spec.attrs ?? { mode: 0o644 }).u32(spec.major).u32(spec.minor);
    else if (spec.type === 'fifo' || spec.type === 'sock') encodeSattr3(w, spec.attrs ?? { mode: 0o644 });
    return this.createLike(PROC.MKNOD, w);
  }

  async remove(dir: Buffer, n: Name): Promise<Res<true> & { dirWcc: WccData }> {
    const r = await this.call(PROC.REMOVE, diropargs(new XdrWriter(), dir, n));
    const status = r.u32();
    return done(r, { status, dirWcc: wccData(r), ok: status === NFS3_OK ? true : undefined });
  }

  async rmdir(dir: Buffer, n: Name): Promise<Res<true> & { dirWcc: WccData }> {
    const r = await this.call(PROC.RMDIR, diropargs(new XdrWriter(), dir, n));
    const status = r.u32();
    return done(r, { status, dirWcc: wccData(r), ok: status === NFS3_OK ? true : undefined });
  }

  async rename(fromDir: Buffer, fromName: Name, toDir: Buffer, toName: Name): Promise<Res<true> & { fromWcc: WccData; toWcc: WccData }> {
    const w = diropargs(diropargs(new XdrWriter(), fromDir, fromName), toDir, toName);
    const r = await this.call(PROC.RENAME, w);
    const status = r.u32();
    return done(r, { status, fromWcc: wccData(r), toWcc: wccData(r), ok: status === NFS3_OK ? true : undefined });
  }

  async link(file: Buffer, dir: Buffer, n: Name): Promise<Res<true> & { attr: Fattr3 | null; dirWcc: WccData }> {
    const r = await this.call(PROC.LINK, diropargs(fh(new XdrWriter(), file), dir, n));
    const status = r.u32();
    return done(r, { status, attr: postOpAttr(r), dirWcc: wccData(r), ok: status === NFS3_OK ? true : undefined });
  }

  async readdir(
    dir: Buffer, cookie: bigint, verf: Buffer, count: number,
  ): Promise<Res<{ verf: Buffer; entries: DirEntry3[]; eof: boolean }> & { attr: Fattr3 | null }> {
    const r = await this.call(PROC.READDIR, fh(new XdrWriter(), dir).u64(cookie).fixed(verf).u32(count));
    const status = r.u32();
    const attr = postOpAttr(r);
    if (status !== NFS3_OK) return done(r, { status, attr });
    const v = Buffer.from(r.fixed(8));
    const entries: DirEntry3[] = [];
    for (let i = 0; r.bool(); i++) {
      if (i > 1_000_000) throw new Error('runaway READDIR list');
      const fileid = r.u64();
      const nb = Buffer.from(r.opaque(1024));
      entries.push({ fileid, nameBytes: nb, name: nb.toString('utf8'), cookie: r.u64() });
    }
    const eof = r.bool();
    return done(r, { status, attr, ok: { verf: v, entries, eof } });
  }

  async readdirplus(
    dir: Buffer, cookie: bigint, verf: Buffer, dircount: number, maxcount: number,
  ): Promise<Res<{ verf: Buffer; entries: DirEntryPlus3[]; eof: boolean }> & { attr: Fattr3 | null }> {
    const w = fh(new XdrWriter(), dir).u64(cookie).fixed(verf).u32(dircount).u32(maxcount);
    const r = await this.call(PROC.READDIRPLUS, w);
    const status = r.u32();
    const attr = postOpAttr(r);
    if (status !== NFS3_OK) return done(r, { status, attr });
    const v = Buffer.from(r.fixed(8));
    const entries: DirEntryPlus3[] = [];
    for (let i = 0; r.bool(); i++) {
      if (i > 1_000_000) throw new Error('runaway READDIRPLUS list');
      const fileid = r.u64();
      const nb = Buffer.from(r.opaque(1024));
      const cookie = r.u64();
      const a = postOpAttr(r);
      const h = postOpFh(r);
      entries.push({ fileid, nameBytes: nb, name: nb.toString('utf8'), cookie, attr: a, fh: h });
    }
    const eof = r.bool();
    return done(r, { status, attr, ok: { verf: v, entries, eof } });
  }

  async fsstat(h: Buffer): Promise<Res<{
    tbytes: bigint; fbytes: bigint; abytes: bigint; tfiles: bigint; ffiles: bigint; afiles: bigint; invarsec: number;
  }> & { attr: Fattr3 | null }> {
    const r = await this.call(PROC.FSSTAT, fh(new XdrWriter(), h));
    const status = r.u32();
    const attr = postOpAttr(r);
    if (status !== NFS3_OK) return done(r, { status, attr });
    const ok = { tbytes: r.u64(), fbytes: r.u64(), abytes: r.u64(), tfiles: r.u64(), ffiles: r.u64(), afiles: r.u64(), invarsec: r.u32() };
    return done(r, { status, attr, ok });
  }

  async fsinfo(h: Buffer): Promise<Res<{
    rtmax: number; rtpref: number; rtmult: number; wtmax: number; wtpref: number; wtmult: number; dtpref: number;
    maxfilesize: bigint; timeDelta: NfsTime; properties: number;
  }> & { attr: Fattr3 | null }> {
    const r = await this.call(PROC.FSINFO, fh(new XdrWriter(), h));
    const status = r.u32();
    const attr = postOpAttr(r);
    if (status !== NFS3_OK) return done(r, { status, attr });
    const ok = {
      rtmax: r.u32(), rtpref: r.u32(), rtmult: r.u32(), wtmax: r.u32(), wtpref: r.u32(), wtmult: r.u32(),
      dtpref: r.u32(), maxfilesize: r.u64(), timeDelta: readTime(r), properties: r.u32(),
    };
    return done(r, { status, attr, ok });
  }

  async pathconf(h: Buffer): Promise<Res<{
    linkmax: number; nameMax: number; noTrunc: boolean; chownRestricted: boolean; caseInsensitive: boolean; casePreserving: boolean;
  }> & { attr: Fattr3 | null }> {
    const r = await this.call(PROC.PATHCONF, fh(new XdrWriter(), h));
    const status = r.u32();
    const attr = postOpAttr(r);
    if (status !== NFS3_OK) return done(r, { status, attr });
    const ok = {
      linkmax: r.u32(), nameMax: r.u32(), noTrunc: r.bool(), chownRestricted: r.bool(),
      caseInsensitive: r.bool(), casePreserving: r.bool(),
    };
    return done(r, { status, attr, ok });
  }

  async commit(h: Buffer, offset: number | bigint = 0, count = 0): Promise<Res<{ verf: Buffer }> & { wcc: WccData }> {
    const r = await this.call(PROC.COMMIT, fh(new XdrWriter(), h).u64(BigInt(offset)).u32(count));
    const status = r.u32();
    const wcc = wccData(r);
    if (status !== NFS3_OK) return done(r, { status, wcc });
    return done(r, { status, wcc, ok: { verf: Buffer.from(r.fixed(8)) } });
  }

  /** Read a whole file with READs of `chunk` bytes (bounded by `max`). */
  async readAll(h: Buffer, chunk = 1 << 20, max = 256 << 20): Promise<Buffer> {
    const parts: Buffer[] = [];
    let off = 0;
    while (off <= max) {
      const r = expectOk(await this.read(h, off, chunk), 'READ');
      parts.push(r.data);
      off += r.data.length;
      if (r.eof) return Buffer.concat(parts);
      if (r.data.length === 0) throw new Error('READ returned 0 bytes without eof');
    }
    throw new Error(`file larger than ${max}`);
  }
}

/** Return the ok arm, or throw naming the status. */
export function expectOk<T>(res: Res<T>, what = 'call'): T {
  if (res.status !== NFS3_OK || res.ok === undefined) {
    throw new Error(`${what} failed: ${statName(res.status)}`);
  }
  return res.ok;
}

// ---------- MOUNT v3 (RFC 1813 appendix I) ----------

export const MNT3_OK = 0;

export interface MountResult {
  status: number;
  fh?: Buffer;
  flavors?: number[];
}

export async function mountMnt(rpc: RpcClient, dirpath: string, cred?: Cred | null): Promise<MountResult> {
  const reply = await rpc.call(MOUNT_PROGRAM, 3, MOUNTPROC.MNT, new XdrWriter().string(dirpath).bytes(), cred ?? rpc.cred);
  const r = successResults(reply);
  const status = r.u32();
  if (status !== MNT3_OK) return done(r, { status });
  const h = Buffer.from(r.opaque(64));
  const flavors = r.array(64, (x) => x.u32());
  return done(r, { status, fh: h, flavors });
}

export async function mountExport(rpc: RpcClient): Promise<{ dir: string; groups: string[] }[]> {
  const r = successResults(await rpc.call(MOUNT_PROGRAM, 3, MOUNTPROC.EXPORT, Buffer.alloc(0)));
  const out: { dir: string; groups: string[] }[] = [];
  for (let i = 0; r.bool() && i < 10_000; i++) {
    const dir = r.string(1024);
    const groups: string[] = [];
    for (let j = 0; r.bool() && j < 10_000; j++) groups.push(r.string(255));
    out.push({ dir, groups });
  }
  return done(r, out);
}

/** Connect to MOUNT, get the root handle of `/zone`, and open an NFS connection. */
export async function mountZone(nfsPort: number, mountPort: number, zone: string, cred?: Cred | null): Promise<{ nfs: Nfs3Client; root: Buffer }> {
  const m = await RpcClient.connect(mountPort);
  try {
    const res = await mountMnt(m, `/${zone}`, cred);
    if (res.status !== MNT3_OK || !res.fh) throw new Error(`MNT /${zone} failed with mountstat3 ${res.status}`);
    const nfs = await Nfs3Client.connect(nfsPort, cred);
    return { nfs, root: res.fh };
  } finally {
    m.close();
  }
}
