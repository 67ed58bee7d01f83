/**
 * Fuzz input generator for the RPC front end: a seeded PRNG (so a failure reproduces from its
 * seed), valid NFSv3 / MOUNT v3 / portmap v2 call messages built by hand from RFC 1813 / RFC 1833,
 * message mutators and record framers (good framing, split fragments, corrupted record marks,
 * random bytes).
 */
import { encodeCall } from '../../src/rpc/message.js';
import { XdrWriter } from '../../src/xdr/writer.js';

export const NFS_PROG = 100003;
export const MOUNT_PROG = 100005;
export const PMAP_PROG = 100000;

/** mulberry32: small, fast, good enough to drive a fuzzer; deterministic for a given seed. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

export interface SeedHandles {
  /** Root directory handle of the zone (from MNT). */
  root: Buffer;
  /** Handle of a regular file inside the zone. */
  file: Buffer;
  /** Export path, e.g. `/tier-1`. */
  exportPath: string;
}

export interface SeedCall {
  name: string;
  prog: number;
  vers: number;
  proc: number;
  args: Buffer;
}

const CRED = { uid: 0, gid: 0, gids: [0], machinename: 'fuzz' };

function sattrNone(w: XdrWriter): XdrWriter {
  // set_mode, set_uid, set_gid, set_size: FALSE; atime, mtime: DONT_CHANGE
  return w.u32(0).u32(0).u32(0).u32(0).u32(0).u32(0);
}

function sattrMode(w: XdrWriter, mode: number): XdrWriter {
  return w.u32(1).u32(mode).u32(0).u32(0).u32(0).u32(0).u32(0);
}

/** Valid calls of every kind the server answers (plus a few it must refuse politely). */
export function seedCalls(h: SeedHandles, rng: Prng): SeedCall[] {
  const nm = () => `fz-${rng.int(64)}`;
  const fh = (b: Buffer) => new XdrWriter(64).opaque(b);
  const dirop = (w: XdrWriter, dir: Buffer, name: string) => w.opaque(dir).string(name);
  const nfs = (name: string, proc: number, w: XdrWriter): SeedCall => ({ name, prog: NFS_PROG, vers: 3, proc, args: Buffer.from(w.bytes()) });
  const verf = Buffer.alloc(8);
  const calls: SeedCall[] = [
    nfs('NULL', 0, new XdrWriter()),
    nfs('GETATTR', 1, fh(h.root)),
    nfs('GETATTR file', 1, fh(h.file)),
    nfs('SETATTR', 2, sattrMode(fh(h.file), 0o644).u32(0)),
    nfs('LOOKUP', 3, dirop(new XdrWriter(), h.root, 'seed.txt')),
    nfs('LOOKUP miss', 3, dirop(new XdrWriter(), h.root, nm())),
    nfs('ACCESS', 4, fh(h.root).u32(0x3f)),
    nfs('READLINK', 5, fh(h.file)),
    nfs('READ', 6, fh(h.file).u64(0).u32(4096)),
    nfs('WRITE', 7, fh(h.file).u64(rng.int(8192)).u32(5).u32(rng.int(3)).opaque(Buffer.from('hello'))),
    nfs('CREATE', 8, sattrNone(dirop(new XdrWriter(), h.root, nm()).u32(0))),
    nfs('CREATE excl', 8, dirop(new XdrWriter(), h.root, nm()).u32(2).fixed(Buffer.from('verifier'))),
    nfs('MKDIR', 9, sattrMode(dirop(new XdrWriter(), h.root, nm()), 0o755)),
    nfs('SYMLINK', 10, sattrNone(dirop(new XdrWriter(), h.root, nm())).string('seed.txt')),
    nfs('MKNOD fifo', 11, sattrNone(dirop(new XdrWriter(), h.root, nm()).u32(7))),
    nfs('REMOVE', 12, dirop(new XdrWriter(), h.root, nm())),
    nfs('RMDIR', 13, dirop(new XdrWriter(), h.root, nm())),
    nfs('RENAME', 14, dirop(dirop(new XdrWriter(), h.root, nm()), h.root, nm())),
    nfs('LINK', 15, dirop(fh(h.file), h.root, nm())),
    nfs('READDIR', 16, fh(h.root).u64(0).fixed(verf).u32(4096)),
    nfs('READDIRPLUS', 17, fh(h.root).u64(0).fixed(verf).u32(4096).u32(32768)),
    nfs('FSSTAT', 18, fh(h.root)),
    nfs('FSINFO', 19, fh(h.root)),
    nfs('PATHCONF', 20, fh(h.root)),
    nfs('COMMIT', 21, fh(h.file).u64(0).u32(0)),
    { name: 'MOUNT NULL', prog: MOUNT_PROG, vers: 3, proc: 0, args: Buffer.alloc(0) },
    { name: 'MNT', prog: MOUNT_PROG, vers: 3, proc: 1, args: Buffer.from(new XdrWriter().string(h.exportPath).bytes()) },
    { name: 'DUMP', prog: MOUNT_PROG, vers: 3, proc: 2, args: Buffer.alloc(0) },
    { name: 'UMNT', prog: MOUNT_PROG, vers: 3, proc: 3, args: Buffer.from(new XdrWriter().string(h.exportPath).bytes()) },
    { name: 'EXPORT', prog: MOUNT_PROG, vers: 3, proc: 5, args: Buffer.alloc(0) },
    { name: 'PMAP NULL', prog: PMAP_PROG, vers: 2, proc: 0, args: Buffer.alloc(0) },
    { name: 'PMAP GETPORT', prog: PMAP_PROG, vers: 2, proc: 3, args: Buffer.from(new XdrWriter().u32(NFS_PROG).u32(3).u32(6).u32(0).bytes()) },
    { name: 'PMAP DUMP', prog: PMAP_PROG, vers: 2, proc: 4, args: Buffer.alloc(0) },
  ];
  return calls;
}

/** A complete call message (no record mark) for a seed, AUTH_SYS or AUTH_NONE. */
export function callMessage(s: SeedCall, xid: number, rng: Prng): Buffer {
  return encodeCall(xid, s.prog, s.vers, s.proc, s.args, rng.chance(0.8) ? CRED : undefined);
}

const INTERESTING = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0xffff, 0x10000, 0x100000,
  0x3fffffff, 0x40000000, 0x7ffffffe, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff];

/** Mutate a call message: bit flips, truncation, length fields, procedure numbers, splices. */
export function mutate(msg: Buffer, rng: Prng): Buffer {
  let m = Buffer.from(msg);
  const rounds = 1 + (rng.chance(0.3) ? rng.int(4) : 0);
  for (let i = 0; i < rounds; i++) {
    const words = m.length >> 2;
    switch (rng.int(9)) {
      case 0: // bit flips
        for (let k = 1 + rng.int(8); k > 0 && m.length; k--) m[rng.int(m.length)]! ^= 1 << rng.int(8);
        break;
      case 1: // truncation
        m = m.subarray(0, rng.int(m.length + 1));
        break;
      case 2: // a length-like word gets an interesting value
        if (words) m.writeUInt32BE(rng.chance(0.8) ? rng.pick(INTERESTING) : rng.u32(), rng.int(words) * 4);
        break;
      case 3: // random procedure number (word 5), mostly near the valid range
        if (words > 5) m.writeUInt32BE(rng.chance(0.8) ? rng.int(40) : rng.u32(), 20);
        break;
      case 4: // random program / version
        if (words > 4) m.writeUInt32BE(rng.chance(0.5) ? rng.pick([NFS_PROG, MOUNT_PROG, PMAP_PROG, 100021, 0]) : rng.u32(), 12);
        if (words > 4 && rng.chance(0.5)) m.writeUInt32BE(rng.int(6), 16);
        break;
      case 5: // append random bytes
        m = Buffer.concat([m, rng.bytes(rng.int(64))]);
        break;
      case 6: { // overwrite a range with random bytes
        if (!m.length) break;
        const at = rng.int(m.length);
        rng.bytes(Math.min(m.length - at, 1 + rng.int(16))).copy(m, at);
        break;
      }
      case 7: { // duplicate a slice in place
        if (!m.length) break;
        const a = rng.int(m.length);
        const b = a + rng.int(Math.min(64, m.length - a) + 1);
        m = Buffer.concat([m.subarray(0, b), m.subarray(a, b), m.subarray(b)]);
        break;
      }
      default: // msg_type / rpcvers / credential flavor words
        if (words > 6) m.writeUInt32BE(rng.pick([0, 1, 2, 3, 6, 0xffffffff]), rng.pick([4, 8, 24]));
    }
  }
  return m;
}

export interface Framed {
  bytes: Buffer;
  /** True when the bytes leave the stream out of step (the connection is then abandoned). */
  desync: boolean;
}

function mark(last: boolean, len: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(((last ? 0x80000000 : 0) | len) >>> 0, 0);
  return b;
}

/**
 * Record-mark a message: mostly one fragment, sometimes split, sometimes preceded by empty
 * fragments; with `hostile`, a corrupted record mark or random bytes instead (desync).
 */
export function frame(msg: Buffer, rng: Prng, hostile = false): Framed {
  const r = hostile ? 92 + rng.int(8) : rng.int(92);
  if (r < 78) return { bytes: Buffer.concat([mark(true, msg.length), msg]), desync: false };
  if (r < 88) {
    // several fragments, some of them empty
    const parts: Buffer[] = [];
    let off = 0;
    for (let k = rng.int(5); k > 0 && off < msg.length; k--) {
      const n = rng.int(msg.length - off + 1);
      parts.push(mark(false, n), msg.subarray(off, off + n));
      off += n;
    }
    parts.push(mark(true, msg.length - off), msg.subarray(off));
    return { bytes: Buffer.concat(parts), desync: false };
  }
  if (r < 92) {
    // empty non-final fragments before the record
    const zeros = Buffer.alloc(4 * (1 + rng.int(16)));
    return { bytes: Buffer.concat([zeros, mark(true, msg.length), msg]), desync: false };
  }
  if (r < 96) {
    // corrupted record mark (may be shorter, longer, huge, or not last)
    const v = rng.chance(0.5) ? rng.pick(INTERESTING) : rng.u32();
    const m = Buffer.allocUnsafe(4);
    m.writeUInt32BE(v >>> 0, 0);
    return { bytes: Buffer.concat([m, msg]), desync: true };
  }
  // random bytes, no framing at all
  return { bytes: rng.bytes(1 + rng.int(rng.chance(0.9) ? 256 : 4096)), desync: true };
}

/** VmRSS of a process in bytes, from /proc/PID/status (null when unavailable). */
export function rssOf(pid: number, readFile: (p: string) => string): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFile(`/proc/${pid}/status`));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
