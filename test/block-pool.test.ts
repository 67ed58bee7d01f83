import { describe, expect, it } from 'vitest';
import { BlockPool } from '../src/util/block-pool.js';

describe('BlockPool', () => {
  it('hands back a given buffer (by any view of it) instead of allocating', () => {
    const pool = new BlockPool(1024, 4);
    const a = pool.take(1000);
    expect(a.length).toBe(1000);
    a.fill(7);
    pool.give(a.subarray(10, 20));
    expect(pool.idle).toBe(1);
    const b = pool.take(512);
    expect(b.length).toBe(512);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.idle).toBe(0);
  });

  it('ignores foreign buffers, double gives and sizes above its own; keeps at most maxFree idle', () => {
    const pool = new BlockPool(1024, 2);
    pool.give(Buffer.alloc(1024));
    pool.give(Buffer.allocUnsafeSlow(1024));
    expect(pool.idle).toBe(0);
    const big = pool.take(4096);
    expect(big.length).toBe(4096);
    pool.give(big);
    expect(pool.idle).toBe(0);
    const xs = [pool.take(1024), pool.take(1024), pool.take(1024)];
    pool.give(xs[0]!);
    pool.give(xs[0]!);
    expect(pool.idle).toBe(1);
    pool.give(xs[1]!);
    pool.give(xs[2]!);
    expect(pool.idle).toBe(2);
    const again = new Set([pool.take(1).buffer, pool.take(1).buffer]);
    expect(again.size).toBe(2);
    expect(again.has(xs[2]!.buffer)).toBe(false);
  });
});
