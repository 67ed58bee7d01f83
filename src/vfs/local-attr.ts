import type fs from 'node:fs';
import type { Attr, FileType, Time, WccAttr } from './types.js';

export type BigStats = fs.BigIntStats;

const S_IFMT = 0o170000n;

/** File type from st_mode. */
export function typeOf(mode: bigint): FileType {
  switch (mode & S_IFMT) {
    case 0o100000n: return 'file';
    case 0o040000n: return 'dir';
    case 0o120000n: return 'symlink';
    case 0o060000n: return 'block';
    case 0o020000n: return 'char';
    case 0o140000n: return 'socket';
    case 0o010000n: return 'fifo';
    default: return 'file';
  }
}

/** Stable small integer per type, persisted in the nodes table. */
export const TYPE_CODE: Record<FileType, number> = {
  file: 1, dir: 2, symlink: 3, block: 4, char: 5, socket: 6, fifo: 7,
};

export const typeCode = (st: BigStats): number => TYPE_CODE[typeOf(st.mode)];

const NS = 1_000_000_000n;

export function nsToTime(ns: bigint): Time {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    nsec += NS;
    sec -= 1n;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

export const timeEq = (a: Time, b: Time): boolean => a.sec === b.sec && a.nsec === b.nsec;

/** Linux dev_t decoding (glibc gnu_dev_major/minor). */
function major(dev: bigint): number {
  return Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
}
function minor(dev: bigint): number {
  return Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
}

/** Node's bigint stats → Attr (fileid is st_ino; fsid identifies the zone). */
export function toAttr(st: BigStats, fsid: bigint): Attr {
  const type = typeOf(st.mode);
  return {
    type,
    mode: Number(st.mode & 0o7777n),
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: st.size,
    used: st.blocks * 512n,
    rdev: type === 'block' || type === 'char' ? { major: major(st.rdev), minor: minor(st.rdev) } : { major: 0, minor: 0 },
    fsid,
    fileid: st.ino,
    atime: nsToTime(st.atimeNs),
    mtime: nsToTime(st.mtimeNs),
    ctime: nsToTime(st.ctimeNs),
  };
}

export function toWcc(st: BigStats): WccAttr {
  return { size: st.size, mtime: nsToTime(st.mtimeNs), ctime: nsToTime(st.ctimeNs) };
}

/** Seconds as a double for fs.utimes-style APIs (Node cannot pass exact timespecs). */
export const timeToSeconds = (t: Time): number => t.sec + t.nsec / 1e9;
