/**
 * ONC RPC record marking (RFC 5531 §11) with golden bytes: RecordDecoder and recordMark.
 */
import { describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import { RecordDecoder, recordMark } from '../src/rpc/record.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function collect(maxRecord = 1 << 20): { dec: RecordDecoder; records: Buffer[] } {
  const records: Buffer[] = [];
  const dec = new RecordDecoder(maxRecord, (r) => records.push(Buffer.from(r)));
  return { dec, records };
}

/** Feed `stream` in chunks cut at the given offsets. */
function feed(dec: RecordDecoder, stream: Buffer, cuts: number[]): void {
  let prev = 0;
  for (const c of [...cuts, stream.length]) {
    dec.push(stream.subarray(prev, c));
    prev = c;
  }
}

function expectProtocol(fn: () => void): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(GvError);
  expect((thrown as GvError).code).toBe('PROTOCOL');
}

// Two records: "hello" in one last fragment; "abcdefgh" as fragments "abcd" + "ef" + last "gh".
const TWO_RECORDS = hex(
  '80000005 68656c6c6f' +
    '00000004 61626364' + '00000002 6566' + '80000002 6768',
);

describe('RecordDecoder', () => {
  it('a single-fragment record that arrives in one chunk is a view of that chunk', () => {
    const seen: Buffer[] = [];
    const dec = new RecordDecoder(1024, (r) => seen.push(r));
    const chunk = hex('80000004 01020304');
    dec.push(chunk);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.toString('hex')).toBe('01020304');
    expect(seen[0]!.buffer).toBe(chunk.buffer);
    expect(seen[0]!.byteOffset).toBe(chunk.byteOffset + 4);
  });

  it('several records in one chunk come out in order', () => {
    const { dec, records } = collect();
    dec.push(TWO_RECORDS);
    expect(records.map((r) => r.toString())).toEqual(['hello', 'abcdefgh']);
    expect(dec.pending).toBe(0);
  });

  it('gives the same records whatever single byte offset the stream is split at', () => {
    for (let cut = 0; cut <= TWO_RECORDS.length; cut++) {
      const { dec, records } = collect();
      feed(dec, TWO_RECORDS, [cut]);
      expect(records.map((r) => r.toString()), `cut at ${cut}`).toEqual(['hello', 'abcdefgh']);
    }
  });

  it('gives the same records when split at every pair of offsets and byte by byte', () => {
    const n = TWO_RECORDS.length;
    for (let a = 1; a < n; a++) {
      for (let b = a; b < n; b++) {
        const { dec, records } = collect();
        feed(dec, TWO_RECORDS, [a, b]);
        expect(records.map((r) => r.toString()), `cuts ${a},${b}`).toEqual(['hello', 'abcdefgh']);
      }
    }
    const { dec, records } = collect();
    feed(dec, TWO_RECORDS, Array.from({ length: n - 1 }, (_, i) => i + 1));
    expect(records.map((r) => r.toString())).toEqual(['hello', 'abcdefgh']);
  });

  it('a record split across chunks is not corrupted when the caller reuses its chunk buffer', () => {
    const seen: Buffer[] = [];
    const dec = new RecordDecoder(1024, (r) => seen.push(r));
    const scratch = Buffer.alloc(6);
    hex('80000008 6162').copy(scratch);
    dec.push(scratch);
    scratch.fill(0); // the first fragment part must have been copied out
    hex('636465666768').copy(scratch);
    dec.push(scratch);
    expect(seen.map((r) => r.toString())).toEqual(['abcdefgh']);
  });

  it('pending counts the bytes of an incomplete record', () => {
    const { dec, records } = collect();
    dec.push(hex('00000004 61626364 80000004 6566'));
    expect(records).toHaveLength(0);
    expect(dec.pending).toBe(6);
    dec.push(hex('6768'));
    expect(records.map(String)).toEqual(['abcdefgh']);
    expect(dec.pending).toBe(0);
  });

  it('zero-length fragments: an empty record, and empty fragments inside a record', () => {
    const { dec, records } = collect();
    dec.push(hex('80000000'));
    dec.push(hex('00000000 00000002 6162 00000000 80000000'));
    dec.push(hex('00000000'));
    dec.push(hex('80000001 63'));
    expect(records.map((r) => r.toString('hex'))).toEqual(['', '6162', '63']);
  });

  it('a long run of empty non-final fragments does not accumulate state', () => {
    // A hostile client can send endless 00000000 marks: the decoder refuses the record after
    // maxFragments (the connection is then closed) instead of growing its state.
    const { dec } = collect();
    const zeros = Buffer.alloc(4 * 100_000);
    expectProtocol(() => dec.push(zeros));
    const parts = (dec as unknown as { parts: unknown[] }).parts;
    expect(parts.length).toBeLessThanOrEqual(1024);
    // Up to the limit, empty fragments are legal and the record still decodes.
    const ok = collect();
    ok.dec.push(Buffer.concat([Buffer.alloc(4 * 1000), hex('80000001 61')]));
    expect(ok.records.map(String)).toEqual(['a']);
  });

  it('a 2 GiB record mark throws PROTOCOL without allocating the fragment', () => {
    for (const mark of ['ffffffff', '7fffffff', '80100001']) {
      const { dec } = collect(1 << 20);
      const before = process.memoryUsage().arrayBuffers;
      expectProtocol(() => dec.push(hex(mark + '00000000')));
      // nothing near the announced size was reserved
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
      expect(dec.pending).toBe(0);
    }
  });

  it('a record mark split across chunks is checked against the limit too', () => {
    const { dec } = collect(100);
    dec.push(hex('80'));
    dec.push(hex('00'));
    expectProtocol(() => dec.push(hex('01 00')));
  });

  it('maxRecord is exact: a record of exactly maxRecord passes, one byte more fails', () => {
    const { dec, records } = collect(8);
    dec.push(hex('80000008 0102030405060708'));
    expect(records).toHaveLength(1);
    const c2 = collect(8);
    expectProtocol(() => c2.dec.push(hex('80000009')));
  });

  it('fragments that are each under the limit but sum over it throw', () => {
    const { dec, records } = collect(8);
    dec.push(hex('00000004 01020304'));
    dec.push(hex('00000004 05060708'));
    expectProtocol(() => dec.push(hex('80000001 09')));
    expect(records).toHaveLength(0);
  });
});

describe('recordMark', () => {
  it('sets the last-fragment bit over the length', () => {
    expect(recordMark(0).toString('hex')).toBe('80000000');
    expect(recordMark(5).toString('hex')).toBe('80000005');
    expect(recordMark(0x100008).toString('hex')).toBe('80100008');
    expect(recordMark(0x7fffffff).toString('hex')).toBe('ffffffff');
  });

  it('round-trips through RecordDecoder', () => {
    const { dec, records } = collect();
    const body = Buffer.from('reply bytes!');
    dec.push(Buffer.concat([recordMark(body.length), body]));
    expect(records.map(String)).toEqual(['reply bytes!']);
  });
});

describe('RecordDecoder with a buffer pool', () => {
  it('gathers a large record spanning chunks into a pooled buffer, released exactly once', async () => {
    const { BufferPool } = await import('../src/util/buffer-pool.js');
    const pool = new BufferPool(256 * 1024, 2);
    const got: { rec: Buffer; release?: () => void }[] = [];
    const dec = new RecordDecoder(1 << 20, (rec, release) => got.push({ rec: Buffer.from(rec), release }), 1024, pool);
    const body = Buffer.alloc(200_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
    const mark = Buffer.alloc(4);
    mark.writeUInt32BE((0x80000000 | body.length) >>> 0);
    const stream = Buffer.concat([mark, body, mark, body]);
    // Chunks of 65,536 bytes: each record spans four chunks and ends inside one.
    for (let off = 0; off < stream.length; off += 65536) dec.push(stream.subarray(off, off + 65536));
    expect(got).toHaveLength(2);
    for (const g of got) {
      expect(g.rec.equals(body)).toBe(true);
      expect(typeof g.release).toBe('function');
    }
    expect(pool.inUse).toBe(2);
    got[0]!.release!();
    got[0]!.release!(); // idempotent
    expect(pool.inUse).toBe(1);
    got[1]!.release!();
    expect(pool.inUse).toBe(0);
  });

  it('falls back to gathering views when the pool is exhausted, and dispose() returns a partial record', async () => {
    const { BufferPool } = await import('../src/util/buffer-pool.js');
    const pool = new BufferPool(128 * 1024, 1);
    const got: Buffer[] = [];
    const dec = new RecordDecoder(1 << 20, (rec) => got.push(Buffer.from(rec)), 1024, pool);
    const held = pool.take(1)!;
    const body = Buffer.alloc(100_000, 7);
    const mark = Buffer.alloc(4);
    mark.writeUInt32BE((0x80000000 | body.length) >>> 0);
    const stream = Buffer.concat([mark, body]);
    dec.push(stream.subarray(0, 70_000));
    dec.push(stream.subarray(70_000));
    expect(got).toHaveLength(1);
    expect(got[0]!.equals(body)).toBe(true);
    pool.give(held);
    dec.push(stream.subarray(0, 70_000)); // a partial record now takes the pooled buffer
    expect(pool.inUse).toBe(1);
    dec.dispose();
    expect(pool.inUse).toBe(0);
  });
});

describe('RecordDecoder in user-buffer mode (reads land in buffers it hands out)', () => {
  /** A deterministic pseudo-random stream of records: small, medium, large, multi-fragment. */
  function stream(seed: number): { bytes: Buffer; records: Buffer[] } {
    let x = seed >>> 0;
    const rnd = (n: number) => {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      return x % n;
    };
    const parts: Buffer[] = [];
    const records: Buffer[] = [];
    const sizes = [0, 1, 3, 100, 4096, 65535, 65536, 300_000, 1 << 20];
    for (let i = 0; i < 40; i++) {
      const size = sizes[rnd(sizes.length)]!;
      const rec = Buffer.alloc(size);
      for (let j = 0; j < size; j += 997) rec[j] = rnd(256);
      records.push(rec);
      if (size > 8 && rnd(4) === 0) {
        // two fragments
        const cut = 1 + rnd(size - 1);
        const first = Buffer.alloc(4);
        first.writeUInt32BE(cut, 0); // not the last fragment: high bit clear
        parts.push(first, rec.subarray(0, cut), recordMark(size - cut), rec.subarray(cut));
      } else {
        parts.push(recordMark(size), rec);
      }
    }
    return { bytes: Buffer.concat(parts), records };
  }

  /** Play `bytes` as a socket would: each read fills at most the handed-out buffer, at most `max` bytes. */
  function play(dec: RecordDecoder, bytes: Buffer, seed: number, max: number): { inPlaceBytes: number } {
    let x = seed >>> 0;
    let off = 0;
    let inPlaceBytes = 0;
    let scratch: Buffer | null = null;
    for (let guard = 0; off < bytes.length && guard < 1_000_000; guard++) {
      const target = dec.readTarget();
      x = (Math.imul(x, 22695477) + 1) >>> 0;
      const n = Math.min(target.length, bytes.length - off, 1 + (x % max));
      bytes.copy(target, 0, off, off + n);
      if (target.length !== 64 * 1024) inPlaceBytes += n;
      else if (scratch === null) scratch = target;
      else expect(target).toBe(scratch); // always the same scratch buffer: nothing allocated per read
      off += n;
      dec.filled(n);
      // The socket reuses the scratch for the next read: scribble over it.
      if (target === scratch) target.fill(0xee);
    }
    expect(off).toBe(bytes.length);
    return { inPlaceBytes };
  }

  for (const [seed, max] of [[1, 70_000], [2, 1500], [3, 1 << 20], [4, 4000]] as const) {
    it(`yields every record intact, with or without a pool (seed ${seed}, reads up to ${max} B)`, async () => {
      const { BufferPool } = await import('../src/util/buffer-pool.js');
      const { bytes, records } = stream(seed);
      for (const pool of [undefined, new BufferPool((1 << 20) + 4096, 4)]) {
        const got: Buffer[] = [];
        const held: Buffer[] = [];
        const dec = new RecordDecoder(2 << 20, (rec, release) => {
          held.push(rec); // kept as the procedure would keep it: must survive later reads
          got.push(Buffer.from(rec));
          release?.();
        }, 1024, pool);
        const { inPlaceBytes } = play(dec, bytes, seed, max);
        expect(got.length).toBe(records.length);
        for (let i = 0; i < records.length; i++) expect(got[i]!.equals(records[i]!)).toBe(true);
        // Views handed to the procedure never alias the scratch buffer.
        for (let i = 0; i < held.length; i++) if (!pool || records[i]!.length < 65536) expect(held[i]!.equals(records[i]!)).toBe(true);
        if (pool && max >= 1500) expect(inPlaceBytes).toBeGreaterThan(1 << 20); // large payloads read in place
        if (!pool) expect(inPlaceBytes).toBe(0);
        expect(pool?.inUse ?? 0).toBe(0);
      }
    });
  }

  it('a hostile record mark read into the scratch is refused before anything is allocated', () => {
    const dec = new RecordDecoder(1 << 20, () => {});
    const t = dec.readTarget();
    t.writeUInt32BE(0xffffffff, 0);
    expectProtocol(() => dec.filled(4));
  });
});
