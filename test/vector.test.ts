import { describe, expect, it } from 'vitest';
import {
  bump, compare, decodeVector, EMPTY_VECTOR, encodeVector, merge, vectorOf, vectorToJson, type Ordering, type VersionVector,
} from '../src/replication/vector.js';

const A = 'aa'.repeat(16);
const B = 'bb'.repeat(16);
const C = 'node-c';

/** Deterministic pseudo-random vectors over a few nodes (small counters, so orders of all kinds occur). */
function* vectors(count: number, seed = 7): Generator<VersionVector> {
  let s = seed;
  const next = () => (s = (s * 1103515245 + 12345) % 2147483648);
  for (let i = 0; i < count; i++) {
    yield vectorOf([A, B, C].map((id) => [id, BigInt(next() % 3)] as const));
  }
}

const flip: Record<Ordering, Ordering> = { equal: 'equal', before: 'after', after: 'before', concurrent: 'concurrent' };
const json = (v: VersionVector) => vectorToJson(v);

describe('version vectors', () => {
  it('compares the four ways', () => {
    const a1 = vectorOf([[A, 1]]);
    expect(compare(EMPTY_VECTOR, EMPTY_VECTOR)).toBe('equal');
    expect(compare(EMPTY_VECTOR, a1)).toBe('before');
    expect(compare(a1, EMPTY_VECTOR)).toBe('after');
    expect(compare(vectorOf([[A, 1]]), vectorOf([[B, 1]]))).toBe('concurrent');
    expect(compare(vectorOf([[A, 2], [B, 1]]), vectorOf([[A, 2], [B, 1]]))).toBe('equal');
    expect(compare(vectorOf([[A, 2], [B, 1]]), vectorOf([[A, 3], [B, 1]]))).toBe('before');
    expect(compare(vectorOf([[A, 2], [B, 1]]), vectorOf([[A, 1], [B, 2]]))).toBe('concurrent');
    // Zero entries are the same as absent ones.
    expect(compare(vectorOf([[A, 0]]), EMPTY_VECTOR)).toBe('equal');
  });

  it('bump makes the result after the input, and never changes the input', () => {
    for (const v of vectors(200)) {
      const before = json(v);
      for (const id of [A, B, C, 'new']) {
        const b = bump(v, id);
        expect(compare(b, v)).toBe('after');
        expect(compare(v, b)).toBe('before');
        expect(b.get(id)).toBe((v.get(id) ?? 0n) + 1n);
      }
      expect(json(v)).toEqual(before);
    }
  });

  it('compare is antisymmetric and reflexive', () => {
    const list = [...vectors(60)];
    const seen = new Set<Ordering>();
    for (const a of list) {
      expect(compare(a, a)).toBe('equal');
      for (const b of list) {
        const ab = compare(a, b);
        seen.add(ab);
        expect(compare(b, a)).toBe(flip[ab]);
      }
    }
    expect([...seen].sort()).toEqual(['after', 'before', 'concurrent', 'equal']);
  });

  it('merge is commutative, associative, idempotent, and an upper bound', () => {
    const list = [...vectors(25, 99)];
    for (const a of list) {
      expect(json(merge(a, a))).toEqual(json(a));
      for (const b of list) {
        const m = merge(a, b);
        expect(json(m)).toEqual(json(merge(b, a)));
        expect(['after', 'equal']).toContain(compare(m, a));
        expect(['after', 'equal']).toContain(compare(m, b));
        if (compare(a, b) === 'before') expect(json(m)).toEqual(json(b));
        for (const c of list.slice(0, 8)) {
          expect(json(merge(merge(a, b), c))).toEqual(json(merge(a, merge(b, c))));
        }
      }
    }
  });

  it('serialises compactly and canonically, with golden bytes', () => {
    const v = vectorOf([[B, 300], [A, 1], [C, 5]]);
    const bytes = encodeVector(v);
    // Sorted by id: "aa…" (hex, tag 0x90 = packed 16 bytes), "bb…", then "node-c" (utf-8, tag 6).
    expect(bytes.toString('hex')).toBe(
      '90' + 'aa'.repeat(16) + '01' + '90' + 'bb'.repeat(16) + 'ac02' + '06' + Buffer.from(C).toString('hex') + '05',
    );
    expect(json(decodeVector(bytes))).toEqual(json(v));
    expect(encodeVector(EMPTY_VECTOR).length).toBe(0);
    // Insertion order does not matter.
    expect(encodeVector(vectorOf([[C, 5], [A, 1], [B, 300]])).equals(bytes)).toBe(true);
    for (const x of vectors(100, 3)) expect(json(decodeVector(encodeVector(x)))).toEqual(json(x));
    const big = vectorOf([[A, 2n ** 62n]]);
    expect(decodeVector(encodeVector(big)).get(A)).toBe(2n ** 62n);
  });

  it('rejects malformed bytes', () => {
    const good = encodeVector(vectorOf([[A, 1]]));
    expect(() => decodeVector(good.subarray(0, good.length - 1))).toThrow(/truncated/);
    expect(() => decodeVector(Buffer.from([0x00]))).toThrow(/empty node id/);
    expect(() => decodeVector(Buffer.concat([good, good]))).toThrow(/non-canonical/);
    expect(() => decodeVector(Buffer.from([0x01, 0x61, 0x00]))).toThrow(/non-canonical/);
    expect(() => decodeVector(Buffer.from([0x01, 0x61, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))).toThrow(/too large/);
    expect(() => vectorOf([[A, -1]])).toThrow(/negative/);
  });
});
