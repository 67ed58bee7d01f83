import { GvError } from '../errors.js';
import type { Attr, FileType, SetAttrs, SetTime, Time, Wcc, WccAttr } from '../vfs/types.js';
import type { XdrReader } from '../xdr/reader.js';
import type { XdrWriter } from '../xdr/writer.js';
import { ftype3, MAX_NAME, MAX_PATH, NFS3_FHSIZE, time_how } from './constants.js';

/** Encoders and decoders for the RFC 1813 data types shared by many procedures. */

const FTYPE: Record<FileType, ftype3> = {
  file: ftype3.NF3REG,
  dir: ftype3.NF3DIR,
  block: ftype3.NF3BLK,
  char: ftype3.NF3CHR,
  symlink: ftype3.NF3LNK,
  socket: ftype3.NF3SOCK,
  fifo: ftype3.NF3FIFO,
};

const FTYPE_BACK: (FileType | undefined)[] = [
  undefined, 'file', 'dir', 'block', 'char', 'symlink', 'socket', 'fifo',
];

export function fileTypeOf(t: number): FileType | undefined {
  return FTYPE_BACK[t];
}

export function writeTime(w: XdrWriter, t: Time): void {
  w.u32(t.sec).u32(t.nsec);
}

export function readTime(r: XdrReader): Time {
  const sec = r.u32();
  const nsec = r.u32();
  return { sec, nsec };
}

/** fattr3: 84 bytes. */
export function writeFattr3(w: XdrWriter, a: Attr): void {
  w.u32(FTYPE[a.type]).u32(a.mode & 0o7777).u32(a.nlink).u32(a.uid).u32(a.gid);
  w.u64(a.size).u64(a.used).u32(a.rdev.major).u32(a.rdev.minor).u64(a.fsid).u64(a.fileid);
  writeTime(w, a.atime);
  writeTime(w, a.mtime);
  writeTime(w, a.ctime);
}

export function writePostOpAttr(w: XdrWriter, a: Attr | undefined): void {
  if (a) {
    w.u32(1);
    writeFattr3(w, a);
  } else w.u32(0);
}

export function writePreOpAttr(w: XdrWriter, a: WccAttr | undefined): void {
  if (a) {
    w.u32(1).u64(a.size);
    writeTime(w, a.mtime);
    writeTime(w, a.ctime);
  } else w.u32(0);
}

export function writeWcc(w: XdrWriter, wcc: Wcc | undefined): void {
  writePreOpAttr(w, wcc?.before);
  writePostOpAttr(w, wcc?.after);
}

export function writePostOpFh(w: XdrWriter, fh: Buffer | undefined): void {
  if (fh) w.u32(1).opaque(fh);
  else w.u32(0);
}

export function readFh(r: XdrReader): Buffer {
  return r.opaque(NFS3_FHSIZE);
}

/** filename3: raw bytes (names need not be UTF-8). Longer than MAX_NAME is decoded, then refused by the vfs. */
export function readName(r: XdrReader): Buffer {
  return r.opaque(MAX_PATH);
}

export function readPath(r: XdrReader): Buffer {
  return r.opaque(MAX_PATH);
}

export function nameTooLong(name: Buffer): boolean {
  return name.length > MAX_NAME;
}

function readSetTime(r: XdrReader): SetTime | undefined {
  const how = r.u32();
  switch (how) {
    case time_how.DONT_CHANGE:
      return undefined;
    case time_how.SET_TO_SERVER_TIME:
      return 'now';
    case time_how.SET_TO_CLIENT_TIME:
      return readTime(r);
    default:
      throw new GvError('PROTOCOL', `bad time_how ${how}`);
  }
}

export function readSattr3(r: XdrReader): SetAttrs {
  const s: SetAttrs = {};
  if (r.bool()) s.mode = r.u32() & 0o7777;
  if (r.bool()) s.uid = r.u32();
  if (r.bool()) s.gid = r.u32();
  if (r.bool()) s.size = r.u64();
  const atime = readSetTime(r);
  if (atime !== undefined) s.atime = atime;
  const mtime = readSetTime(r);
  if (mtime !== undefined) s.mtime = mtime;
  return s;
}

export function toWccAttr(a: Attr): WccAttr {
  return { size: a.size, mtime: a.mtime, ctime: a.ctime };
}
