import { GvError } from '../errors.js';
import type { BufferPool } from '../util/buffer-pool.js';
import type { XdrReader } from '../xdr/reader.js';
import { padding, XdrWriter } from '../xdr/writer.js';
import type {
  Attr, CallContext, CreateHow, Created, FileId, FileType, StableHow, Wcc, ZoneFs,
} from '../vfs/types.js';
import {
  createmode3, FSF3_CANSETTIME, FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK, ftype3, MAX_IO,
  NFS3_COOKIEVERFSIZE, NFS3_CREATEVERFSIZE, nfsstat3, stable_how,
} from './constants.js';
import { handleFor, handleForNow, resolveHandle, resolveHandleNow, type Resolved, type ZoneRegistry } from './resolve.js';
import { HANDLE_LENGTH } from './handle.js';
import { statusOf } from './status.js';
import {
  fileTypeOf, nameTooLong, readFh, readName, readPath, readSattr3, readTime, writeFattr3,
  writePostOpAttr, writePostOpFh, writeWcc,
} from './xdr3.js';

/** What every procedure needs besides its arguments. */
export interface ProcEnv {
  zones: ZoneRegistry;
  /** Changes on every daemon start: clients resend UNSTABLE data when it changes. */
  writeVerifier: Buffer;
  log: (obj: object, msg: string) => void;
  /** Buffers for large READ payloads, handed back once the reply is on the socket. */
  pool?: BufferPool;
}

export type ProcReply = Buffer | Buffer[] | { chunks: Buffer[]; release: () => void };
/** A procedure answers synchronously when it can (see ZoneFs' synchronous forms), else with a promise. */
export type Procedure = (r: XdrReader, ctx: CallContext, env: ProcEnv) => ProcReply | Promise<ProcReply>;

/** Map an error to its nfsstat3, logging the ones the table does not know. */
function fail(env: ProcEnv, err: unknown, proc: string): nfsstat3 {
  const m = statusOf(err);
  if (m.unexpected) env.log({ err: m.error, proc }, 'unexpected error mapped to NFS3ERR_IO');
  return m.status;
}

/** post_op_attr for an error reply, without a promise: best effort, never throws. */
function attrOrNoneNow(ctx: CallContext, res: Resolved | undefined): Attr | undefined {
  if (!res || !res.zone.getattrNow) return undefined;
  try {
    return res.zone.getattrNow(ctx, res.id);
  } catch {
    return undefined;
  }
}

/** post_op_attr for an error reply: best effort, never throws. */
async function attrOrNone(ctx: CallContext, res: Resolved | undefined): Promise<Attr | undefined> {
  if (!res) return undefined;
  try {
    return await res.zone.getattr(ctx, res.id);
  } catch {
    return undefined;
  }
}

function sameZone(a: Resolved, b: Resolved): void {
  if (a.zone !== b.zone) throw new GvError('EXDEV', 'objects are in different zones');
}

function checkName(name: Buffer): void {
  if (nameTooLong(name)) throw new GvError('ENAMETOOLONG');
}

function stableOf(v: number): StableHow {
  switch (v) {
    case stable_how.UNSTABLE:
      return 'unstable';
    case stable_how.DATA_SYNC:
      return 'data_sync';
    case stable_how.FILE_SYNC:
      return 'file_sync';
    default:
      throw new GvError('PROTOCOL', `bad stable_how ${v}`);
  }
}

function stableCode(s: StableHow): stable_how {
  return s === 'unstable' ? stable_how.UNSTABLE : s === 'data_sync' ? stable_how.DATA_SYNC : stable_how.FILE_SYNC;
}

/** Reply shaped `status, post_op_attr` (the failure arm of many procedures). */
function statusAttr(status: nfsstat3, attr: Attr | undefined): Buffer {
  const w = new XdrWriter(96);
  w.u32(status);
  writePostOpAttr(w, attr);
  return w.bytes();
}

function statusWcc(status: nfsstat3, wcc: Wcc | undefined): Buffer {
  const w = new XdrWriter(128);
  w.u32(status);
  writeWcc(w, wcc);
  return w.bytes();
}

// --- procedures (RFC 1813 §3.3.x), one function each -------------------------------------------

export const NULL: Procedure = () => Buffer.alloc(0);

function getattrReply(attr: Attr): Buffer {
  const w = new XdrWriter(96);
  w.u32(nfsstat3.NFS3_OK);
  writeFattr3(w, attr);
  return w.bytes();
}

function statusOnly(status: nfsstat3): Buffer {
  return new XdrWriter(8).u32(status).bytes();
}

export const GETATTR: Procedure = (r, ctx, env) => {
  const fh = readFh(r);
  try {
    const res = resolveHandleNow(env.zones, fh, ctx.client);
    if (res !== undefined && res.zone.getattrNow !== undefined) return getattrReply(res.zone.getattrNow(ctx, res.id));
  } catch (err) {
    return statusOnly(fail(env, err, 'GETATTR'));
  }
  return getattrLater(fh, ctx, env);
};

async function getattrLater(fh: Buffer, ctx: CallContext, env: ProcEnv): Promise<Buffer> {
  try {
    const res = await resolveHandle(env.zones, fh, ctx.client);
    return getattrReply(await res.zone.getattr(ctx, res.id));
  } catch (err) {
    return statusOnly(fail(env, err, 'GETATTR'));
  }
}

export const SETATTR: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const attrs = readSattr3(r);
  const guard = r.bool() ? readTime(r) : undefined;
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const wcc = await res.zone.setattr(ctx, res.id, attrs, guard);
    return statusWcc(nfsstat3.NFS3_OK, wcc);
  } catch (err) {
    return statusWcc(fail(env, err, 'SETATTR'), { after: await attrOrNone(ctx, res) });
  }
};

function lookupReply(fh: Buffer, found: { attr: Attr; dirAttr?: Attr }): Buffer {
  const w = new XdrWriter(256);
  w.u32(nfsstat3.NFS3_OK).opaque(fh);
  writePostOpAttr(w, found.attr);
  writePostOpAttr(w, found.dirAttr);
  return w.bytes();
}

export const LOOKUP: Procedure = (r, ctx, env) => {
  const fh = readFh(r);
  const name = readName(r);
  let dir: Resolved | undefined;
  try {
    dir = resolveHandleNow(env.zones, fh, ctx.client);
    const zone = dir?.zone;
    if (dir !== undefined && zone!.lookupNow !== undefined) {
      checkName(name);
      const found = zone!.lookupNow(ctx, dir.id, name);
      const out = handleForNow(zone!, found.id);
      if (out !== undefined) return lookupReply(out, found);
    }
  } catch (err) {
    return statusAttr(fail(env, err, 'LOOKUP'), attrOrNoneNow(ctx, dir));
  }
  return lookupLater(fh, name, ctx, env);
};

async function lookupLater(fh: Buffer, name: Buffer, ctx: CallContext, env: ProcEnv): Promise<Buffer> {
  let dir: Resolved | undefined;
  try {
    dir = await resolveHandle(env.zones, fh, ctx.client);
    checkName(name);
    const found = await dir.zone.lookup(ctx, dir.id, name);
    return lookupReply(await handleFor(dir.zone, found.id), found);
  } catch (err) {
    return statusAttr(fail(env, err, 'LOOKUP'), await attrOrNone(ctx, dir));
  }
}

function accessReply(granted: number, attr: Attr, mask: number): Buffer {
  const w = new XdrWriter(104);
  w.u32(nfsstat3.NFS3_OK);
  writePostOpAttr(w, attr);
  w.u32(granted & mask);
  return w.bytes();
}

export const ACCESS: Procedure = (r, ctx, env) => {
  const fh = readFh(r);
  const mask = r.u32();
  let res: Resolved | undefined;
  try {
    res = resolveHandleNow(env.zones, fh, ctx.client);
    if (res !== undefined && res.zone.accessNow !== undefined) {
      const { granted, attr } = res.zone.accessNow(ctx, res.id, mask);
      return accessReply(granted, attr, mask);
    }
  } catch (err) {
    return statusAttr(fail(env, err, 'ACCESS'), attrOrNoneNow(ctx, res));
  }
  return accessLater(fh, mask, ctx, env);
};

async function accessLater(fh: Buffer, mask: number, ctx: CallContext, env: ProcEnv): Promise<Buffer> {
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const { granted, attr } = await res.zone.access(ctx, res.id, mask);
    return accessReply(granted, attr, mask);
  } catch (err) {
    return statusAttr(fail(env, err, 'ACCESS'), await attrOrNone(ctx, res));
  }
}

export const READLINK: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const { target, attr } = await res.zone.readlink(ctx, res.id);
    const w = new XdrWriter(128 + target.length);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, attr);
    w.opaque(target);
    return w.bytes();
  } catch (err) {
    return statusAttr(fail(env, err, 'READLINK'), await attrOrNone(ctx, res));
  }
};

export const READ: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const offset = r.u64n();
  const count = Math.min(r.u32(), MAX_IO);
  let res: Resolved | undefined;
  const pooled = count >= 65536 ? env.pool?.take(count) ?? undefined : undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const { data, eof, attr } = await res.zone.read(ctx, res.id, offset, count, pooled);
    const w = new XdrWriter(112);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, attr);
    w.u32(data.length).bool(eof).opaqueHeader(data.length);
    // The payload goes out as its own chunk: no copy into the header buffer.
    const chunks = [w.bytes(), data, padding(data.length)];
    if (pooled && data.buffer === pooled.buffer) return { chunks, release: () => env.pool!.give(pooled) };
    if (pooled) env.pool!.give(pooled);
    return chunks;
  } catch (err) {
    if (pooled) env.pool!.give(pooled);
    return statusAttr(fail(env, err, 'READ'), await attrOrNone(ctx, res));
  }
};

export const WRITE: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const offset = r.u64n();
  const count = r.u32();
  const stable = stableOf(r.u32());
  const data = r.opaque(MAX_IO);
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    // RFC 1813: count may be less than the data sent; write only `count` bytes.
    const payload = count < data.length ? data.subarray(0, count) : data;
    const out = await res.zone.write(ctx, res.id, offset, payload, stable);
    const w = new XdrWriter(224);
    w.u32(nfsstat3.NFS3_OK);
    writeWcc(w, out.file);
    w.u32(out.count).u32(stableCode(out.committed)).fixed(env.writeVerifier);
    return w.bytes();
  } catch (err) {
    return statusWcc(fail(env, err, 'WRITE'), { after: await attrOrNone(ctx, res) });
  }
};

/** The diropres3 shape shared by CREATE, MKDIR, SYMLINK and MKNOD. */
async function createdReply(zone: ZoneFs, c: Created): Promise<Buffer> {
  const w = new XdrWriter(320);
  w.u32(nfsstat3.NFS3_OK);
  writePostOpFh(w, handleForNow(zone, c.id) ?? await handleFor(zone, c.id));
  writePostOpAttr(w, c.attr);
  writeWcc(w, c.dir);
  return w.bytes();
}

async function creating(
  env: ProcEnv, ctx: CallContext, proc: string, fh: Buffer, name: Buffer,
  op: (dir: Resolved) => Promise<Created>,
): Promise<Buffer> {
  let dir: Resolved | undefined;
  try {
    dir = await resolveHandle(env.zones, fh, ctx.client);
    checkName(name);
    return await createdReply(dir.zone, await op(dir));
  } catch (err) {
    return statusWcc(fail(env, err, proc), { after: await attrOrNone(ctx, dir) });
  }
}

export const CREATE: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const name = readName(r);
  const mode = r.u32();
  let how: CreateHow;
  if (mode === createmode3.UNCHECKED) how = { mode: 'unchecked', attrs: readSattr3(r) };
  else if (mode === createmode3.GUARDED) how = { mode: 'guarded', attrs: readSattr3(r) };
  else if (mode === createmode3.EXCLUSIVE) how = { mode: 'exclusive', verifier: Buffer.from(r.fixed(NFS3_CREATEVERFSIZE)) };
  else throw new GvError('PROTOCOL', `bad createmode3 ${mode}`);
  return creating(env, ctx, 'CREATE', fh, name, (d) => d.zone.create(ctx, d.id, name, how));
};

export const MKDIR: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const name = readName(r);
  const attrs = readSattr3(r);
  return creating(env, ctx, 'MKDIR', fh, name, (d) => d.zone.mkdir(ctx, d.id, name, attrs));
};

export const SYMLINK: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const name = readName(r);
  const attrs = readSattr3(r);
  const target = readPath(r);
  return creating(env, ctx, 'SYMLINK', fh, name, (d) => d.zone.symlink(ctx, d.id, name, Buffer.from(target), attrs));
};

export const MKNOD: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const name = readName(r);
  const t = r.u32();
  const type = fileTypeOf(t);
  let attrs = {};
  let rdev: { major: number; minor: number } | undefined;
  if (t === ftype3.NF3CHR || t === ftype3.NF3BLK) {
    attrs = readSattr3(r);
    rdev = { major: r.u32(), minor: r.u32() };
  } else if (t === ftype3.NF3SOCK || t === ftype3.NF3FIFO) {
    attrs = readSattr3(r);
  } else if (type === undefined) {
    throw new GvError('PROTOCOL', `bad ftype3 ${t}`);
  }
  return creating(env, ctx, 'MKNOD', fh, name, async (d) => {
    if (t !== ftype3.NF3CHR && t !== ftype3.NF3BLK && t !== ftype3.NF3SOCK && t !== ftype3.NF3FIFO) {
      throw new GvError('BADTYPE', `MKNOD cannot make a ${type}`);
    }
    return d.zone.mknod(ctx, d.id, name, type as FileType, attrs, rdev);
  });
};

async function removing(
  env: ProcEnv, ctx: CallContext, proc: string, fh: Buffer, name: Buffer,
  op: (dir: Resolved) => Promise<Wcc>,
): Promise<Buffer> {
  let dir: Resolved | undefined;
  try {
    dir = await resolveHandle(env.zones, fh, ctx.client);
    checkName(name);
    return statusWcc(nfsstat3.NFS3_OK, await op(dir));
  } catch (err) {
    return statusWcc(fail(env, err, proc), { after: await attrOrNone(ctx, dir) });
  }
}

export const REMOVE: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const name = readName(r);
  return removing(env, ctx, 'REMOVE', fh, name, (d) => d.zone.remove(ctx, d.id, name));
};

export const RMDIR: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const name = readName(r);
  return removing(env, ctx, 'RMDIR', fh, name, (d) => d.zone.rmdir(ctx, d.id, name));
};

export const RENAME: Procedure = async (r, ctx, env) => {
  const fromFh = readFh(r);
  const fromName = readName(r);
  const toFh = readFh(r);
  const toName = readName(r);
  let from: Resolved | undefined;
  let to: Resolved | undefined;
  try {
    from = await resolveHandle(env.zones, fromFh, ctx.client);
    to = await resolveHandle(env.zones, toFh, ctx.client);
    sameZone(from, to);
    checkName(fromName);
    checkName(toName);
    const out = await from.zone.rename(ctx, from.id, fromName, to.id, toName);
    const w = new XdrWriter(256);
    w.u32(nfsstat3.NFS3_OK);
    writeWcc(w, out.from);
    writeWcc(w, out.to);
    return w.bytes();
  } catch (err) {
    const w = new XdrWriter(256);
    w.u32(fail(env, err, 'RENAME'));
    writeWcc(w, { after: await attrOrNone(ctx, from) });
    writeWcc(w, { after: await attrOrNone(ctx, to) });
    return w.bytes();
  }
};

export const LINK: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const dirFh = readFh(r);
  const name = readName(r);
  let file: Resolved | undefined;
  let dir: Resolved | undefined;
  try {
    file = await resolveHandle(env.zones, fh, ctx.client);
    dir = await resolveHandle(env.zones, dirFh, ctx.client);
    sameZone(file, dir);
    checkName(name);
    const out = await file.zone.link(ctx, file.id, dir.id, name);
    const w = new XdrWriter(256);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, out.attr);
    writeWcc(w, out.dir);
    return w.bytes();
  } catch (err) {
    const w = new XdrWriter(256);
    w.u32(fail(env, err, 'LINK'));
    writePostOpAttr(w, await attrOrNone(ctx, file));
    writeWcc(w, { after: await attrOrNone(ctx, dir) });
    return w.bytes();
  }
};

/** An entry's handle without a promise (the zone has generationNow); none for an entry gone meanwhile. */
function handleOrNone(zone: ZoneFs, id: FileId): Buffer | undefined {
  try {
    return handleForNow(zone, id);
  } catch {
    return undefined;
  }
}

// READDIR / READDIRPLUS byte accounting (XDR sizes).
const POST_OP_ATTR_SIZE = 4 + 84;
const xdrOpaqueSize = (n: number) => 4 + ((n + 3) & ~3);

/** Entries we ask the backend for per page: bounded, the byte budget trims further. */
function entriesFor(count: number, perEntryMin: number): number {
  return Math.max(1, Math.min(4096, Math.ceil(count / perEntryMin) + 1));
}

export const READDIR: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const cookie = r.u64();
  const verifier = Buffer.from(r.fixed(NFS3_COOKIEVERFSIZE));
  const count = r.u32();
  let dir: Resolved | undefined;
  try {
    dir = await resolveHandle(env.zones, fh, ctx.client);
    const page = await dir.zone.readdir(ctx, dir.id, {
      cookie, verifier, maxEntries: entriesFor(count, 24), withAttrs: false,
    });
    // status + post_op_attr + cookieverf + (no more entries) + eof
    let used = 4 + POST_OP_ATTR_SIZE + 8 + 4 + 4;
    const w = new XdrWriter(Math.min(count, 65536) + 256);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, page.dirAttr);
    w.fixed(page.verifier);
    let n = 0;
    for (const e of page.entries) {
      const size = 4 + 8 + xdrOpaqueSize(e.name.length) + 8;
      if (used + size > count) break;
      used += size;
      w.u32(1).u64(e.id).opaque(e.name).u64(e.cookie);
      n++;
    }
    if (n === 0 && page.entries.length > 0) throw new GvError('TOOSMALL', 'READDIR count too small for one entry');
    w.u32(0).bool(page.eof && n === page.entries.length);
    return w.bytes();
  } catch (err) {
    return statusAttr(fail(env, err, 'READDIR'), await attrOrNone(ctx, dir));
  }
};

/** READDIRPLUS reply bytes besides its entries: status, dir post_op_attr, verifier, end of list, eof. */
const READDIRPLUS_FIXED = 4 + POST_OP_ATTR_SIZE + 8 + 4 + 4;
/** One entryplus3 with attributes and a handle: value-follows, fileid, name, cookie, post_op_attr, post_op_fh3. */
const plusEntryBytes = (nameLength: number): number => 4 + 8 + xdrOpaqueSize(nameLength) + 8 + POST_OP_ATTR_SIZE + 4 + xdrOpaqueSize(HANDLE_LENGTH);

export const READDIRPLUS: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const cookie = r.u64();
  const verifier = Buffer.from(r.fixed(NFS3_COOKIEVERFSIZE));
  const dircount = r.u32();
  const maxcount = r.u32();
  let dir: Resolved | undefined;
  try {
    dir = await resolveHandle(env.zones, fh, ctx.client);
    const page = await dir.zone.readdir(ctx, dir.id, {
      cookie, verifier, maxEntries: entriesFor(Math.min(maxcount, Math.max(dircount, 512) * 8), 150), withAttrs: true,
      // Only the entries that fit are looked up (each costs an lstat): sized with attributes and
      // a handle, the most an entry takes.
      budget: { bytes: maxcount - READDIRPLUS_FIXED, entryBytes: plusEntryBytes },
    });
    let used = READDIRPLUS_FIXED;
    let dirUsed = 0;
    const w = new XdrWriter(Math.min(maxcount, 1 << 20) + 256);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, page.dirAttr);
    w.fixed(page.verifier);
    const zone = dir.zone;
    const handles = zone.generationNow !== undefined
      ? page.entries.map((e) => handleOrNone(zone, e.id))
      // Every entry's handle at once: one wait for the page instead of one per entry.
      : await Promise.all(page.entries.map((e) => handleFor(zone, e.id).catch(() => undefined)));
    let n = 0;
    for (let i = 0; i < page.entries.length; i++) {
      const e = page.entries[i]!;
      const fhOut = handles[i];
      const dirInfo = 8 + xdrOpaqueSize(e.name.length) + 8;
      const size = 4 + dirInfo + (e.attr ? POST_OP_ATTR_SIZE : 4) + (fhOut ? 4 + xdrOpaqueSize(fhOut.length) : 4);
      if (used + size > maxcount || (dircount > 0 && n > 0 && dirUsed + dirInfo > dircount)) break;
      used += size;
      dirUsed += dirInfo;
      w.u32(1).u64(e.id).opaque(e.name).u64(e.cookie);
      writePostOpAttr(w, e.attr);
      writePostOpFh(w, fhOut);
      n++;
    }
    if (n === 0 && page.entries.length > 0) throw new GvError('TOOSMALL', 'READDIRPLUS maxcount too small for one entry');
    w.u32(0).bool(page.eof && n === page.entries.length);
    return w.bytes();
  } catch (err) {
    return statusAttr(fail(env, err, 'READDIRPLUS'), await attrOrNone(ctx, dir));
  }
};

export const FSSTAT: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const { stat, attr } = await res.zone.fsstat(ctx, res.id);
    const w = new XdrWriter(160);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, attr);
    w.u64(stat.totalBytes).u64(stat.freeBytes).u64(stat.availBytes);
    w.u64(stat.totalFiles).u64(stat.freeFiles).u64(stat.availFiles).u32(0);
    return w.bytes();
  } catch (err) {
    return statusAttr(fail(env, err, 'FSSTAT'), await attrOrNone(ctx, res));
  }
};

export const FSINFO: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const attr = await res.zone.getattr(ctx, res.id);
    const w = new XdrWriter(160);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, attr);
    w.u32(MAX_IO).u32(MAX_IO).u32(4096); // rtmax rtpref rtmult
    w.u32(MAX_IO).u32(MAX_IO).u32(4096); // wtmax wtpref wtmult
    w.u32(64 * 1024); // dtpref
    w.u64(0x7fffffffffffffffn); // maxfilesize
    w.u32(0).u32(1); // time_delta: 1 ns
    w.u32(FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME);
    return w.bytes();
  } catch (err) {
    return statusAttr(fail(env, err, 'FSINFO'), await attrOrNone(ctx, res));
  }
};

export const PATHCONF: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const { conf, attr } = await res.zone.pathconf(ctx, res.id);
    const w = new XdrWriter(128);
    w.u32(nfsstat3.NFS3_OK);
    writePostOpAttr(w, attr);
    w.u32(conf.linkMax).u32(conf.nameMax).bool(conf.noTrunc).bool(conf.chownRestricted);
    w.bool(conf.caseInsensitive).bool(conf.casePreserving);
    return w.bytes();
  } catch (err) {
    return statusAttr(fail(env, err, 'PATHCONF'), await attrOrNone(ctx, res));
  }
};

export const COMMIT: Procedure = async (r, ctx, env) => {
  const fh = readFh(r);
  const offset = r.u64n();
  const count = r.u32();
  let res: Resolved | undefined;
  try {
    res = await resolveHandle(env.zones, fh, ctx.client);
    const wcc = await res.zone.commit(ctx, res.id, offset, count);
    const w = new XdrWriter(160);
    w.u32(nfsstat3.NFS3_OK);
    writeWcc(w, wcc);
    w.fixed(env.writeVerifier);
    return w.bytes();
  } catch (err) {
    return statusWcc(fail(env, err, 'COMMIT'), { after: await attrOrNone(ctx, res) });
  }
};

/** Indexed by procedure number (RFC 1813 order). */
export const PROCEDURES: readonly Procedure[] = [
  NULL, GETATTR, SETATTR, LOOKUP, ACCESS, READLINK, READ, WRITE, CREATE, MKDIR, SYMLINK, MKNOD,
  REMOVE, RMDIR, RENAME, LINK, READDIR, READDIRPLUS, FSSTAT, FSINFO, PATHCONF, COMMIT,
];

export type { FileId };
