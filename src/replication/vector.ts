/**
 * Version vectors: node id → counter. Pure functions over immutable maps; a missing entry means 0,
 * so entries with counter 0 are never stored. Node ids are strings (this project's are 32 hex
 * digits, see catalog/identity.ts).
 */
import { GvError } from '../errors.js';

export type VersionVector = ReadonlyMap<string, bigint>;

export type Ordering = 'equal' | 'before' | 'after' | 'concurrent';

export const EMPTY_VECTOR: VersionVector = new Map();

/** A vector from entries (zero counters dropped). */
export function vectorOf(entries: Iterable<readonly [string, bigint | number]>): VersionVector {
  const out = new Map<string, bigint>();
  for (const [id, c] of entries) {
    const n = BigInt(c);
    if (n < 0n) throw new GvError('EINVAL', `negative counter for ${id}`);
    if (n > 0n) out.set(id, n);
  }
  return out;
}

/** `vec` with `nodeId`'s counter one higher. */
export function bump(vec: VersionVector, nodeId: string): VersionVector {
  const out = new Map(vec);
  out.set(nodeId, (vec.get(nodeId) ?? 0n) + 1n);
  return out;
}

/** The least vector that is at or after both: the per-node maximum. */
export function merge(a: VersionVector, b: VersionVector): VersionVector {
  const out = new Map(a);
  for (const [id, c] of b) {
    if (c > (out.get(id) ?? 0n)) out.set(id, c);
  }
  return out;
}

/**
 * How `a` relates to `b`: 'before' when every counter of a is ≤ b's and one is lower (b has seen
 * everything a has), 'after' the reverse, 'equal', or 'concurrent' when each has one the other lacks.
 */
export function compare(a: VersionVector, b: VersionVector): Ordering {
  let aLess = false;
  let aMore = false;
  for (const [id, ca] of a) {
    const cb = b.get(id) ?? 0n;
    if (ca < cb) aLess = true;
    else if (ca > cb) aMore = true;
  }
  for (const [id, cb] of b) {
    if (!a.has(id) && cb > 0n) aLess = true;
  }
  if (aLess && aMore) return 'concurrent';
  if (aLess) return 'before';
  if (aMore) return 'after';
  return 'equal';
}

// ------------------------------------------------------------------ serialisation
//
// Entries sorted by node id (so equal vectors give equal bytes). Each entry: one tag byte, the
// id, the counter as unsigned LEB128. Tag 0x80|n: the id is 2n lowercase hex digits packed into
// n bytes (n ≤ 127); tag n < 0x80: the id is n bytes of UTF-8.

const HEX = /^(?:[0-9a-f]{2})+$/;

function uleb(n: bigint, out: number[]): void {
  do {
    let byte = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) byte |= 0x80;
    out.push(byte);
  } while (n > 0n);
}

/** Compact bytes of `vec`; the empty vector is zero bytes. */
export function encodeVector(vec: VersionVector): Buffer {
  const ids = [...vec.keys()].filter((id) => (vec.get(id) ?? 0n) > 0n).sort();
  const out: number[] = [];
  for (const id of ids) {
    if (HEX.test(id) && id.length / 2 <= 127) {
      out.push(0x80 | (id.length / 2));
      for (const b of Buffer.from(id, 'hex')) out.push(b);
    } else {
      const raw = Buffer.from(id, 'utf8');
      if (raw.length === 0 || raw.length > 127) throw new GvError('EINVAL', `node id of ${raw.length} bytes`);
      out.push(raw.length);
      for (const b of raw) out.push(b);
    }
    uleb(vec.get(id)!, out);
  }
  return Buffer.from(out);
}

/** Inverse of encodeVector; PROTOCOL error on malformed input. */
export function decodeVector(buf: Uint8Array): VersionVector {
  const out = new Map<string, bigint>();
  let i = 0;
  const need = (n: number) => {
    if (i + n > buf.length) throw new GvError('PROTOCOL', 'truncated version vector');
  };
  while (i < buf.length) {
    const tag = buf[i++]!;
    const len = tag & 0x7f;
    if (len === 0) throw new GvError('PROTOCOL', 'empty node id in version vector');
    need(len);
    const raw = Buffer.from(buf.subarray(i, i + len));
    i += len;
    const id = tag & 0x80 ? raw.toString('hex') : raw.toString('utf8');
    let n = 0n;
    let shift = 0n;
    for (;;) {
      need(1);
      const b = buf[i++]!;
      n |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0) break;
      if (shift > 63n) throw new GvError('PROTOCOL', 'version vector counter too large');
    }
    if (n === 0n || out.has(id)) throw new GvError('PROTOCOL', 'non-canonical version vector');
    out.set(id, n);
  }
  return out;
}

/** Human/JSON form: { id: "counter" }. */
export function vectorToJson(vec: VersionVector): Record<string, string> {
  const o: Record<string, string> = {};
  for (const id of [...vec.keys()].sort()) o[id] = String(vec.get(id));
  return o;
}
