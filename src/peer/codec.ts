/**
 * Encodings of the four ReplicaSource calls inside frames: XDR headers (src/xdr), raw payloads for
 * file bytes (never copied into the header), JSON only for the small catalog snapshot. Decoders
 * check every field: structure (PROTOCOL: the connection is closed) and limits (EINVAL: answered).
 */
import { GvError, type GvErrorCode } from '../errors.js';
import { CHANGE_KINDS, type ChangeKind, type ChangeRow } from '../journal/changes.js';
import {
  BLOCK_SIZE, MAX_ENTRIES, MAX_INLINE, MAX_INLINE_TOTAL, MAX_JOURNAL_PAGE, MAX_LIST,
  type CatalogSnapshot, type JournalPage, type ListPage, type RemoteEntry,
} from '../replication/source.js';
import { decodeVector, encodeVector } from '../replication/vector.js';
import type { FileType } from '../vfs/types.js';
import { XdrReader } from '../xdr/reader.js';
import { XdrWriter } from '../xdr/writer.js';
import { FRAME_FIXED, MAX_FRAME } from './frame.js';

export const MAX_PATH = 4096;
export const MAX_ZONE_NAME = 255;
export const MAX_NODE_ID = 128;
const MAX_VECTOR = 64 * 1024;
const MAX_I64 = (1n << 63n) - 1n;
/** Room for everything of a response but its header fields. */
const BODY_BUDGET = MAX_FRAME - FRAME_FIXED;

const FILE_TYPES: readonly FileType[] = ['file', 'dir', 'symlink', 'block', 'char', 'socket', 'fifo'];

function enumIndex<T>(list: readonly T[], v: T, what: string): number {
  const i = list.indexOf(v);
  if (i < 0) throw new GvError('EINVAL', `unknown ${what} ${String(v)}`);
  return i;
}

function enumAt<T>(list: readonly T[], i: number, what: string): T {
  if (i >= list.length) throw new GvError('PROTOCOL', `unknown ${what} ${i}`);
  return list[i]!;
}

const i64 = (w: XdrWriter, v: bigint): XdrWriter => w.u64(BigInt.asUintN(64, v));
const readI64 = (r: XdrReader): bigint => BigInt.asIntN(64, r.u64());

function optOpaque(w: XdrWriter, b: Buffer | null | undefined): void {
  w.bool(b != null);
  if (b != null) w.opaque(b);
}
function readOptOpaque(r: XdrReader, max: number): Buffer | null {
  return r.bool() ? r.opaque(max) : null;
}
function optU64(w: XdrWriter, v: bigint | null | undefined, signed = false): void {
  w.bool(v != null);
  if (v != null) (signed ? i64(w, v) : w.u64(v));
}
function readOptU64(r: XdrReader, signed = false): bigint | null {
  return r.bool() ? (signed ? readI64(r) : r.u64()) : null;
}

/** Copy out of the frame buffer: decoded rows outlive it and must not pin 4 MiB per path. */
const own = (b: Buffer): Buffer => Buffer.from(b);

function checkZone(zone: string): void {
  if (zone.length === 0) throw new GvError('EINVAL', 'empty zone name');
}

// ---------------------------------------------------------------- requests

export interface JournalRequest { zone: string; since: bigint; limit: number }
export interface EntriesRequest { zone: string; paths: Buffer[]; inlineMax: number }
export interface BlockRequest { zone: string; path: Buffer; offset: bigint; length: number }
export interface ListRequest { zone: string; dir: Buffer; after: Buffer | null; limit: number; inlineMax: number }

export function encodeJournalRequest(zone: string, since: bigint, limit: number): Buffer {
  if (since < 0n) throw new GvError('EINVAL', `since must be ≥ 0 (got ${since})`);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_JOURNAL_PAGE) throw new GvError('EINVAL', `journal limit must be 1..${MAX_JOURNAL_PAGE} (got ${limit})`);
  return new XdrWriter(64).string(zone).u64(since).u32(limit).bytes();
}

export function decodeJournalRequest(h: Buffer): JournalRequest {
  const r = new XdrReader(h);
  const zone = r.string(MAX_ZONE_NAME);
  const since = r.u64();
  const limit = r.u32();
  end(r);
  checkZone(zone);
  if (since > MAX_I64) throw new GvError('EINVAL', 'since out of range');
  if (limit < 1 || limit > MAX_JOURNAL_PAGE) throw new GvError('EINVAL', `journal limit must be 1..${MAX_JOURNAL_PAGE} (got ${limit})`);
  return { zone, since, limit };
}

export function encodeEntriesRequest(zone: string, paths: readonly Buffer[], inlineMax: number): Buffer {
  if (paths.length > MAX_ENTRIES) throw new GvError('EINVAL', `at most ${MAX_ENTRIES} paths per call (got ${paths.length})`);
  if (!Number.isInteger(inlineMax) || inlineMax < 0 || inlineMax > MAX_INLINE) throw new GvError('EINVAL', `inlineMax must be 0..${MAX_INLINE}`);
  const w = new XdrWriter(256).string(zone).u32(inlineMax).u32(paths.length);
  for (const p of paths) {
    if (p.length > MAX_PATH) throw new GvError('EINVAL', `path of ${p.length} bytes`);
    w.opaque(p);
  }
  return w.bytes();
}

export function decodeEntriesRequest(h: Buffer): EntriesRequest {
  const r = new XdrReader(h);
  const zone = r.string(MAX_ZONE_NAME);
  const inlineMax = r.u32();
  const n = r.u32();
  if (n > MAX_ENTRIES) throw new GvError('EINVAL', `at most ${MAX_ENTRIES} paths per call (got ${n})`);
  const paths: Buffer[] = [];
  for (let i = 0; i < n; i++) paths.push(own(r.opaque(MAX_PATH)));
  end(r);
  checkZone(zone);
  if (inlineMax > MAX_INLINE) throw new GvError('EINVAL', `inlineMax must be 0..${MAX_INLINE} (got ${inlineMax})`);
  return { zone, paths, inlineMax };
}

export function encodeBlockRequest(zone: string, path: Buffer, offset: bigint, length: number): Buffer {
  if (offset < 0n) throw new GvError('EINVAL', `offset must be ≥ 0 (got ${offset})`);
  if (!Number.isInteger(length) || length < 0 || length > BLOCK_SIZE) throw new GvError('EINVAL', `block length must be 0..${BLOCK_SIZE} (got ${length})`);
  if (path.length > MAX_PATH) throw new GvError('EINVAL', `path of ${path.length} bytes`);
  return new XdrWriter(64 + path.length).string(zone).opaque(path).u64(offset).u32(length).bytes();
}

export function decodeBlockRequest(h: Buffer): BlockRequest {
  const r = new XdrReader(h);
  const zone = r.string(MAX_ZONE_NAME);
  const path = own(r.opaque(MAX_PATH));
  const offset = r.u64();
  const length = r.u32();
  end(r);
  checkZone(zone);
  if (offset > MAX_I64) throw new GvError('EINVAL', 'offset out of range');
  if (length > BLOCK_SIZE) throw new GvError('EINVAL', `block length must be 0..${BLOCK_SIZE} (got ${length})`);
  return { zone, path, offset, length };
}

export function encodeListRequest(zone: string, dir: Buffer, after: Buffer | null, limit: number, inlineMax: number): Buffer {
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST) throw new GvError('EINVAL', `list limit must be 1..${MAX_LIST} (got ${limit})`);
  if (!Number.isInteger(inlineMax) || inlineMax < 0 || inlineMax > MAX_INLINE) throw new GvError('EINVAL', `inlineMax must be 0..${MAX_INLINE}`);
  if (dir.length > MAX_PATH || (after && after.length > MAX_PATH)) throw new GvError('EINVAL', 'path too long');
  const w = new XdrWriter(64 + dir.length + (after?.length ?? 0)).string(zone).opaque(dir);
  optOpaque(w, after);
  return w.u32(limit).u32(inlineMax).bytes();
}

export function decodeListRequest(h: Buffer): ListRequest {
  const r = new XdrReader(h);
  const zone = r.string(MAX_ZONE_NAME);
  const dir = own(r.opaque(MAX_PATH));
  const afterRaw = readOptOpaque(r, MAX_PATH);
  const limit = r.u32();
  const inlineMax = r.u32();
  end(r);
  checkZone(zone);
  if (limit < 1 || limit > MAX_LIST) throw new GvError('EINVAL', `list limit must be 1..${MAX_LIST} (got ${limit})`);
  if (inlineMax > MAX_INLINE) throw new GvError('EINVAL', `inlineMax must be 0..${MAX_INLINE} (got ${inlineMax})`);
  return { zone, dir, after: afterRaw ? own(afterRaw) : null, limit, inlineMax };
}

function end(r: XdrReader): void {
  if (r.remaining !== 0) throw new GvError('PROTOCOL', `${r.remaining} trailing header bytes`);
}

// ---------------------------------------------------------------- journal page

function encodeRow(w: XdrWriter, c: ChangeRow): void {
  w.u64(c.version);
  w.u64(c.atMs);
  w.u32(enumIndex(CHANGE_KINDS, c.kind, 'change kind'));
  w.u64(c.fileid);
  w.opaque(c.path);
  optOpaque(w, c.toPath);
  w.u32(enumIndex(FILE_TYPES, c.type, 'file type'));
  optU64(w, c.size);
  optU64(w, c.mtimeNs, true);
  w.bool(c.mode != null);
  if (c.mode != null) w.u32(c.mode);
  optOpaque(w, c.hashes);
  optOpaque(w, c.target);
  w.string(c.origin);
  w.opaque(encodeVector(c.vector));
}

function decodeRow(r: XdrReader): ChangeRow {
  const version = r.u64();
  const atMs = r.u64n();
  const kind: ChangeKind = enumAt(CHANGE_KINDS, r.u32(), 'change kind');
  const fileid = r.u64();
  const path = own(r.opaque(MAX_PATH));
  const toPathRaw = readOptOpaque(r, MAX_PATH);
  const type = enumAt(FILE_TYPES, r.u32(), 'file type');
  const size = readOptU64(r);
  const mtimeNs = readOptU64(r, true);
  const mode = r.bool() ? r.u32() : null;
  const hashes = readOptOpaque(r, BODY_BUDGET);
  if (hashes && hashes.length % 32 !== 0) throw new GvError('PROTOCOL', `block hashes of ${hashes.length} bytes`);
  const target = readOptOpaque(r, MAX_PATH);
  const origin = r.string(MAX_NODE_ID);
  const vector = decodeVector(r.opaque(MAX_VECTOR));
  return {
    version, atMs, kind, fileid, path, toPath: toPathRaw ? own(toPathRaw) : null, type, size, mtimeNs, mode,
    hashes: hashes ? own(hashes) : null, target: target ? own(target) : null, origin, vector,
  };
}

/**
 * The page as one header. Rows that would not fit a frame are left out (the page stays a prefix
 * of the journal, so the caller continues after its last row); EFBIG if not even one row fits.
 */
export function encodeJournalPage(p: JournalPage, limit: number): Buffer {
  const w = new XdrWriter(4096);
  w.u64(p.version);
  const countAt = w.pos;
  w.u32(0);
  let n = 0;
  for (const row of p.rows) {
    if (n >= limit) break;
    const before = w.pos;
    encodeRow(w, row);
    if (w.pos > BODY_BUDGET) {
      w.pos = before;
      if (n === 0) throw new GvError('EFBIG', 'a journal row does not fit a frame');
      break;
    }
    n++;
  }
  w.buf.writeUInt32BE(n, countAt);
  return w.bytes();
}

export function decodeJournalPage(h: Buffer, limit: number): JournalPage {
  const r = new XdrReader(h);
  const version = r.u64();
  const rows = r.array(Math.min(limit, MAX_JOURNAL_PAGE), decodeRow);
  end(r);
  return { rows, version };
}

// ---------------------------------------------------------------- entries

/**
 * Entries as a header plus payload chunks (the inline data, in order, sent as they are). Inline
 * data is dropped (the contract allows: fetched by blocks) once the frame would overflow; EFBIG
 * when the metadata alone does not fit (ask for fewer paths).
 */
export function encodeEntries(list: readonly (RemoteEntry | null)[], inlineMax: number): { header: Buffer; payload: Buffer[] } {
  const w = new XdrWriter(1024);
  w.u32(list.length);
  const payload: Buffer[] = [];
  let inline = 0;
  for (const e of list) {
    w.bool(e !== null);
    if (!e) continue;
    w.opaque(e.path);
    w.u32(enumIndex(FILE_TYPES, e.type, 'file type'));
    w.u64(e.size);
    i64(w, e.mtimeNs);
    w.u32(e.mode);
    w.opaque(encodeVector(e.vector));
    w.string(e.origin);
    optOpaque(w, e.hashes);
    optOpaque(w, e.target);
    optOpaque(w, e.linkOf ?? null);
    w.bool(e.uid !== undefined && e.gid !== undefined);
    if (e.uid !== undefined && e.gid !== undefined) w.u32(e.uid).u32(e.gid);
    const d = e.data;
    const send = d !== undefined && d.length <= inlineMax && inline + d.length <= MAX_INLINE_TOTAL;
    w.bool(send);
    if (send) {
      w.u32(d.length);
      payload.push(d);
      inline += d.length;
    }
  }
  if (w.pos > BODY_BUDGET) throw new GvError('EFBIG', `entries of ${list.length} paths do not fit a frame; ask for fewer`);
  if (w.pos + inline > BODY_BUDGET) {
    // Drop inline data from the end until it fits, rewriting the header without it.
    const keep = list.map((e) => (e ? { ...e } : null));
    let total = inline;
    for (let i = keep.length - 1; i >= 0 && w.pos + total > BODY_BUDGET; i--) {
      const e = keep[i];
      if (e?.data !== undefined) {
        total -= e.data.length;
        delete e.data;
      }
    }
    return encodeEntries(keep, inlineMax);
  }
  return { header: w.bytes(), payload };
}

/** `asked`: the paths asked for (the answer must have one entry each), or the most entries a list page may hold. */
export function decodeEntries(h: Buffer, payload: Buffer, asked: readonly Buffer[] | number, inlineMax: number): (RemoteEntry | null)[] {
  const r = new XdrReader(h);
  const n = r.u32();
  if (typeof asked === 'number' ? n > asked : n !== asked.length) {
    throw new GvError('PROTOCOL', `${n} entries answered for ${typeof asked === 'number' ? `at most ${asked}` : asked.length} paths`);
  }
  const out: (RemoteEntry | null)[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    if (!r.bool()) {
      out.push(null);
      continue;
    }
    const path = own(r.opaque(MAX_PATH));
    const type = enumAt(FILE_TYPES, r.u32(), 'file type');
    const size = r.u64();
    const mtimeNs = readI64(r);
    const mode = r.u32();
    const vector = decodeVector(r.opaque(MAX_VECTOR));
    const origin = r.string(MAX_NODE_ID);
    const hashes = readOptOpaque(r, BODY_BUDGET);
    if (hashes && hashes.length % 32 !== 0) throw new GvError('PROTOCOL', `block hashes of ${hashes.length} bytes`);
    const target = readOptOpaque(r, MAX_PATH);
    const linkOf = readOptOpaque(r, MAX_PATH);
    const e: RemoteEntry = {
      path, type, size, mtimeNs, mode, vector, origin, hashes: hashes ? own(hashes) : null,
      target: target ? own(target) : null, linkOf: linkOf ? own(linkOf) : null,
    };
    if (r.bool()) {
      e.uid = r.u32();
      e.gid = r.u32();
    }
    if (r.bool()) {
      const len = r.u32();
      if (len > inlineMax || at + len > payload.length || at + len > MAX_INLINE_TOTAL) {
        throw new GvError('PROTOCOL', `inline data of ${len} bytes over the limit or the payload`);
      }
      if (type !== 'file' || BigInt(len) !== size) throw new GvError('PROTOCOL', `inline data of ${len} bytes for a ${type} of ${size}`);
      e.data = own(payload.subarray(at, at + len));
      at += len;
    }
    out.push(e);
  }
  end(r);
  if (at !== payload.length) throw new GvError('PROTOCOL', `${payload.length - at} stray payload bytes`);
  return out;
}

// ---------------------------------------------------------------- list

/**
 * A list page: version, done, next, then the entries as encodeEntries gives them. Entries that
 * would not fit a frame are left out from the end (the page then ends early: not done, `next` the
 * last path sent), so the caller simply continues.
 */
export function encodeListPage(p: ListPage, inlineMax: number): { header: Buffer; payload: Buffer[] } {
  let entries = p.entries;
  let done = p.done;
  let next = p.next;
  for (;;) {
    try {
      const body = encodeEntries(entries, inlineMax);
      const w = new XdrWriter(64 + (next?.length ?? 0)).u64(p.version).bool(done);
      optOpaque(w, next);
      return { header: Buffer.concat([w.bytes(), body.header]), payload: body.payload };
    } catch (err) {
      if (!(err instanceof GvError) || err.code !== 'EFBIG' || entries.length <= 1) throw err;
      entries = entries.slice(0, entries.length >> 1);
      done = false;
      next = entries[entries.length - 1]!.path;
    }
  }
}

export function decodeListPage(h: Buffer, payload: Buffer, limit: number, inlineMax: number): ListPage {
  const r = new XdrReader(h);
  const version = r.u64();
  const done = r.bool();
  const nextRaw = readOptOpaque(r, MAX_PATH);
  const entries = decodeEntries(h.subarray(r.pos), payload, Math.min(limit, MAX_LIST), inlineMax);
  if (entries.some((e) => e === null)) throw new GvError('PROTOCOL', 'list page with an empty entry');
  if (!done && !nextRaw) throw new GvError('PROTOCOL', 'unfinished list page without a next path');
  return { entries: entries as RemoteEntry[], version, done, next: nextRaw ? own(nextRaw) : null };
}

// ---------------------------------------------------------------- catalog

export function encodeCatalog(s: CatalogSnapshot): Buffer {
  return Buffer.from(JSON.stringify(s), 'utf8');
}

const isStr = (v: unknown, max = 1024): v is string => typeof v === 'string' && v.length <= max;
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function decodeCatalog(payload: Buffer): CatalogSnapshot {
  let j: unknown;
  try {
    j = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new GvError('PROTOCOL', 'catalog is not JSON');
  }
  const bad = (why: string) => new GvError('PROTOCOL', `malformed catalog: ${why}`);
  const o = j as Record<string, unknown>;
  if (!o || typeof o !== 'object' || !isNum(o.version)) throw bad('version');
  if (!Array.isArray(o.zones) || !Array.isArray(o.deleted) || !Array.isArray(o.nodes)) throw bad('lists');
  const zones = o.zones.map((z: Record<string, unknown>) => {
    if (!z || !isStr(z.name, MAX_ZONE_NAME) || !isNum(z.quotaBytes) || !Array.isArray(z.members) || !z.members.every((m) => isStr(m, 255)) ||
      !isNum(z.createdMs) || !isNum(z.updatedMs) || !isStr(z.updatedBy, MAX_NODE_ID) || (z.consistency !== 'pull-first' && z.consistency !== 'available')) {
      throw bad('zone');
    }
    return {
      name: z.name, quotaBytes: z.quotaBytes, members: z.members as string[], createdMs: z.createdMs, updatedMs: z.updatedMs,
      updatedBy: z.updatedBy, consistency: z.consistency,
    } as CatalogSnapshot['zones'][number];
  });
  const deleted = o.deleted.map((t: Record<string, unknown>) => {
    if (!t || !isStr(t.name, MAX_ZONE_NAME) || !isNum(t.deletedMs) || !isStr(t.deletedBy, MAX_NODE_ID)) throw bad('tombstone');
    return { name: t.name, deletedMs: t.deletedMs, deletedBy: t.deletedBy };
  });
  const nodes = o.nodes.map((n: Record<string, unknown>) => {
    if (!n || !isStr(n.name, 255) || !(n.nodeId === null || isStr(n.nodeId, MAX_NODE_ID)) ||
      !(n.fingerprint === null || isStr(n.fingerprint, 128)) || !isNum(n.addedMs)) {
      throw bad('node');
    }
    return { name: n.name, nodeId: n.nodeId, fingerprint: n.fingerprint, addedMs: n.addedMs };
  });
  return { version: o.version, zones, deleted, nodes };
}

// ---------------------------------------------------------------- errors

const WIRE_CODES = new Set<string>([
  'EPERM', 'ENOENT', 'EIO', 'ENXIO', 'EACCES', 'EEXIST', 'EXDEV', 'ENODEV', 'ENOTDIR', 'EISDIR', 'EINVAL', 'EFBIG',
  'ENOSPC', 'EROFS', 'EMLINK', 'ENAMETOOLONG', 'ENOTEMPTY', 'EDQUOT', 'ESTALE', 'ELOOP', 'EBADF', 'ENOTSUP', 'EAGAIN',
  'EBUSY', 'ETXTBSY', 'JUKEBOX', 'PROTOCOL',
]);
const MAX_ERROR_TEXT = 1024;

export function encodeError(err: GvError): Buffer {
  const code = WIRE_CODES.has(err.code) ? err.code : 'EIO';
  const msg = Buffer.from(err.message, 'utf8').subarray(0, MAX_ERROR_TEXT);
  return new XdrWriter(64 + msg.length).string(code).opaque(msg).bytes();
}

export function decodeError(h: Buffer, peer: string): GvError {
  const r = new XdrReader(h);
  const code = r.string(32);
  const msg = r.string(MAX_ERROR_TEXT);
  end(r);
  const c = (WIRE_CODES.has(code) ? code : 'EIO') as GvErrorCode;
  return new GvError(c, `${peer}: ${msg}`, { peer, remote: true });
}
