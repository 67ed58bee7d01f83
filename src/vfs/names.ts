import { GvError } from '../errors.js';

/** Longest name component we accept (bytes), as most Linux filesystems. */
export const NAME_MAX = 255;

/** READDIR cookies reserved for the start of a listing and the two dot entries. */
export const COOKIE_START = 0n;
export const COOKIE_DOT = 1n;
export const COOKIE_DOTDOT = 2n;

/** Constant cookie verifier: cookies are name hashes, valid across changes and restarts. */
export const COOKIE_VERIFIER: Buffer = Buffer.from('GVnh2\0\0\x01', 'latin1');

export const isDot = (name: Buffer): boolean => name.length === 1 && name[0] === 0x2e;
export const isDotDot = (name: Buffer): boolean => name.length === 2 && name[0] === 0x2e && name[1] === 0x2e;

/**
 * Reject names that must never reach the filesystem: '' (ENOENT for lookups, EINVAL otherwise),
 * anything containing '/' or NUL (EINVAL) and names over NAME_MAX bytes (ENAMETOOLONG).
 * '.' and '..' are not checked here (callers decide: lookup resolves them, creators refuse them).
 */
export function checkName(name: Buffer): void {
  if (name.length === 0) throw new GvError('EINVAL', 'empty name');
  if (name.length > NAME_MAX) throw new GvError('ENAMETOOLONG', `name is ${name.length} bytes`);
  if (name.includes(0x2f) || name.includes(0)) throw new GvError('EINVAL', 'name contains / or NUL');
}

/** For operations that create or remove a name: '.' and '..' are refused. */
export function checkNewName(name: Buffer, dotCode: 'EEXIST' | 'EINVAL' = 'EINVAL'): void {
  checkName(name);
  if (isDot(name) || isDotDot(name)) throw new GvError(dotCode, 'name is . or ..');
}

/**
 * Stable READDIR cookie of a name: a 63-bit hash (two independent 32-bit mixes: FNV-1a and a
 * murmur3-style multiply/rotate), never 0, 1 or 2. Positions depend only on the name, so entries
 * created or removed between pages do not shift the others. Part of the on-the-wire contract:
 * changing it requires a new COOKIE_VERIFIER.
 */
export function nameCookie(name: Buffer): bigint {
  nameCookieWords(name, scratchWords);
  return cookieOfWords(scratchWords.hi, scratchWords.lo);
}

/** A cookie as two numbers: `hi` (its top 31 bits) and `lo` (its low 32 bits). */
export interface CookieWords {
  hi: number;
  lo: number;
}

const scratchWords: CookieWords = { hi: 0, lo: 0 };

/**
 * nameCookie(name) as its two words, into `out`, without making a BigInt: a listing of many
 * names is sorted on these numbers and makes each cookie once, in order (cookieOfWords).
 */
export function nameCookieWords(name: Buffer, out: CookieWords): void {
  let h1 = 0x811c9dc5;
  let h2 = 0x9747b28c ^ name.length;
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    h1 = Math.imul(h1 ^ c, 0x01000193);
    let k = Math.imul(c + i * 0x100, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h2 ^= k;
    h2 = Math.imul((h2 << 13) | (h2 >>> 19), 5) + 0xe6546b64;
  }
  // finalisers spread the last bytes over all bits
  h1 ^= h1 >>> 16; h1 = Math.imul(h1, 0x85ebca6b); h1 ^= h1 >>> 13; h1 = Math.imul(h1, 0xc2b2ae35); h1 ^= h1 >>> 16;
  h2 ^= h2 >>> 16; h2 = Math.imul(h2, 0x85ebca6b); h2 ^= h2 >>> 13; h2 = Math.imul(h2, 0xc2b2ae35); h2 ^= h2 >>> 16;
  const hi = h1 & 0x7fffffff;
  const lo = h2 >>> 0;
  out.hi = hi;
  // 0, 1 and 2 are the start and the dot entries: such a hash moves up by 3 (no carry: lo <= 2)
  out.lo = hi === 0 && lo <= Number(COOKIE_DOTDOT) ? lo + 3 : lo;
}

// One BigInt per cookie instead of three (shift, or, and the two conversions), where the
// platform's byte order lets a 64-bit view read the two words back.
const wordView = new Uint32Array(2);
const bigView = new BigUint64Array(wordView.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The cookie made of two words (hi < 2^31, lo < 2^32). */
export function cookieOfWords(hi: number, lo: number): bigint {
  if (!LITTLE_ENDIAN) return (BigInt(hi) << 32n) | BigInt(lo);
  wordView[0] = lo;
  wordView[1] = hi;
  return bigView[0]!;
}

/** The two words of a cookie (the inverse of cookieOfWords). */
export function wordsOfCookie(c: bigint, out: CookieWords): void {
  out.hi = Number(c >> 32n);
  out.lo = Number(c & 0xffffffffn);
}

/** Join a directory path and a checked name (both Buffers), without normalising anything. */
export function joinName(dir: Buffer, name: Buffer): Buffer {
  const out = Buffer.allocUnsafe(dir.length + 1 + name.length);
  dir.copy(out, 0);
  out[dir.length] = 0x2f;
  name.copy(out, dir.length + 1);
  return out;
}
