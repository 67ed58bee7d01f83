/**
 * Golden-byte tests for the XDR codec (RFC 4506): every XdrReader / XdrWriter method, padding,
 * bounds errors (GvError 'PROTOCOL') and the u64n limit.
 */
import { describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import { XdrReader } from '../src/xdr/reader.js';
import { padding, XdrWriter } from '../src/xdr/writer.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function protocolError(fn: () => unknown): GvError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(GvError);
    expect((e as GvError).code).toBe('PROTOCOL');
    return e as GvError;
  }
  throw new Error('expected GvError PROTOCOL, nothing was thrown');
}

describe('XdrWriter golden bytes', () => {
  it('u32 / i32 are big-endian 4-byte words, wrapping like XDR unsigned/int', () => {
    const w = new XdrWriter(4);
    w.u32(0).u32(1).u32(0xdeadbeef).u32(-1).i32(-2).i32(0x7fffffff).i32(0x80000000);
    expect(w.bytes().toString('hex')).toBe(
      '00000000' + '00000001' + 'deadbeef' + 'ffffffff' + 'fffffffe' + '7fffffff' + '80000000',
    );
  });

  it('u64 from bigint and from number give the same 8 bytes', () => {
    const w = new XdrWriter(1);
    w.u64(0x0102030405060708n).u64(0x100000007).u64(2 ** 53 - 1).u64(0).u64(-1n);
    expect(w.bytes().toString('hex')).toBe(
      '0102030405060708' + '0000000100000007' + '001fffffffffffff' + '0000000000000000' + 'ffffffffffffffff',
    );
  });

  it('bool is 0 or 1', () => {
    expect(new XdrWriter().bool(true).bool(false).bytes().toString('hex')).toBe('00000001' + '00000000');
  });

  it('fixed pads to a multiple of 4 with zero bytes, whatever the buffer held before', () => {
    for (const [data, want] of [
      ['', ''],
      ['61', '61000000'],
      ['6162', '61620000'],
      ['616263', '61626300'],
      ['61626364', '61626364'],
      ['6162636465', '6162636465000000'],
    ] as const) {
      const w = new XdrWriter(16);
      w.buf.fill(0xff); // allocUnsafe garbage must never leak into padding
      w.fixed(hex(data));
      expect(w.bytes().toString('hex')).toBe(want);
    }
  });

  it('opaque and string carry a length word, then padded bytes', () => {
    const w = new XdrWriter(2);
    w.opaque(hex('0102030405')).string('héllo').string(Buffer.from([0xff, 0xfe])).opaque(Buffer.alloc(0));
    expect(w.bytes().toString('hex')).toBe(
      '00000005 0102030405000000'.replace(/ /g, '') +
        '00000006' + '68c3a96c6c6f' + '0000' +
        '00000002' + 'fffe0000' +
        '00000000',
    );
  });

  it('opaqueHeader + padding() frame a payload that is sent as a separate chunk', () => {
    const payload = hex('0102030405');
    const w = new XdrWriter().u32(7).opaqueHeader(payload.length);
    const wire = Buffer.concat([w.bytes(), payload, padding(payload.length)]);
    expect(wire.equals(new XdrWriter().u32(7).opaque(payload).bytes())).toBe(true);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((n) => padding(n).toString('hex'))).toEqual([
      '', '000000', '0000', '00', '', '000000', '0000', '00',
    ]);
  });

  it('grows past its initial size without losing earlier bytes', () => {
    const w = new XdrWriter(1);
    for (let i = 0; i < 1000; i++) w.u32(i);
    const b = w.bytes();
    expect(b.length).toBe(4000);
    for (let i = 0; i < 1000; i++) expect(b.readUInt32BE(i * 4)).toBe(i);
    const big = Buffer.alloc(70_000, 9);
    w.opaque(big);
    expect(w.bytes().length).toBe(4000 + 4 + 70_000);
    expect(w.bytes().readUInt32BE(0)).toBe(0);
    expect(w.bytes().readUInt32BE(3996)).toBe(999);
    expect(w.bytes().readUInt32BE(4000)).toBe(70_000);
  });
});

describe('XdrReader golden bytes', () => {
  it('reads u32, i32, u64, u64n, bool in order and tracks pos/remaining', () => {
    const r = new XdrReader(hex(
      'deadbeef fffffffe 0102030405060708 001fffffffffffff 00000001 00000000',
    ));
    expect(r.remaining).toBe(32);
    expect(r.u32()).toBe(0xdeadbeef);
    expect(r.i32()).toBe(-2);
    expect(r.u64()).toBe(0x0102030405060708n);
    expect(r.u64n()).toBe(2 ** 53 - 1);
    expect(r.bool()).toBe(true);
    expect(r.bool()).toBe(false);
    expect(r.remaining).toBe(0);
    expect(r.pos).toBe(32);
  });

  it('u64n refuses values of 2^53 and above (they would lose precision)', () => {
    expect(new XdrReader(hex('0000000100000007')).u64n()).toBe(0x100000007);
    const e = protocolError(() => new XdrReader(hex('0020000000000000')).u64n());
    expect(e.message).toMatch(/too large/);
    protocolError(() => new XdrReader(hex('ffffffffffffffff')).u64n());
  });

  it('bool refuses anything but 0 and 1', () => {
    protocolError(() => new XdrReader(hex('00000002')).bool());
    protocolError(() => new XdrReader(hex('ffffffff')).bool());
  });

  it('fixed and opaque return views of the input (no copy) and skip padding', () => {
    const input = hex('00000005 0102030405 000000 61626364 00000003 616263 00');
    const r = new XdrReader(input);
    const a = r.opaque(16);
    expect(a.toString('hex')).toBe('0102030405');
    expect(a.buffer).toBe(input.buffer);
    expect(a.byteOffset).toBe(input.byteOffset + 4);
    expect(r.pos).toBe(12);
    const b = r.fixed(4);
    expect(b.toString()).toBe('abcd');
    expect(b.buffer).toBe(input.buffer);
    expect(r.string(3)).toBe('abc');
    expect(r.remaining).toBe(0);
  });

  it('stringBytes keeps names that are not valid UTF-8 byte for byte', () => {
    const r = new XdrReader(hex('00000002 fffe0000'));
    expect(r.stringBytes(255).toString('hex')).toBe('fffe');
  });

  it('array decodes counted elements', () => {
    const r = new XdrReader(hex('00000003 0000000a 0000000b 0000000c 00000000'));
    expect(r.array(16, (x) => x.u32())).toEqual([10, 11, 12]);
    expect(r.array(16, (x) => x.u32())).toEqual([]);
  });

  it('honours start and end: reads past `end` fail even when the buffer holds more', () => {
    const buf = hex('00000001 00000002 00000003 00000004');
    const r = new XdrReader(buf, 4, 12);
    expect(r.remaining).toBe(8);
    expect(r.u32()).toBe(2);
    expect(r.u32()).toBe(3);
    protocolError(() => r.u32());
  });
});

describe('XdrReader bounds → GvError PROTOCOL', () => {
  it('every primitive fails on truncated input and does not move pos', () => {
    const cases: [string, (r: XdrReader) => unknown][] = [
      ['000000', (r) => r.u32()],
      ['000000', (r) => r.i32()],
      ['00000000000000', (r) => r.u64()],
      ['00000000000000', (r) => r.u64n()],
      ['000000', (r) => r.bool()],
      ['616263', (r) => r.fixed(3)], // 3 data bytes present, but the padding byte is missing
      ['00000004 616263', (r) => r.opaque(8)],
      ['00000004 61626364 0000', (r) => { r.opaque(8); return r.u32(); }],
      ['00000002 6162', (r) => r.string(8)], // padding missing
    ];
    for (const [h, f] of cases) {
      const r = new XdrReader(hex(h));
      protocolError(() => f(r));
    }
    const r = new XdrReader(hex('000000'));
    protocolError(() => r.u32());
    expect(r.pos).toBe(0);
  });

  it('opaque/string/stringBytes reject lengths over their limit before touching the data', () => {
    protocolError(() => new XdrReader(hex('00000041')).opaque(64));
    protocolError(() => new XdrReader(hex('00000100')).string(255));
    protocolError(() => new XdrReader(hex('00000100')).stringBytes(255));
    const e = protocolError(() => new XdrReader(hex('ffffffff 00000000')).opaque(1 << 20));
    expect(e.message).toMatch(/exceeds limit/);
  });

  it('a hostile opaque length of 2^32-1 fails even with a limit that allows it', () => {
    // The limit is the caller's policy; the reader itself must never return a short view.
    protocolError(() => new XdrReader(hex('ffffffff 61626364')).opaque(0xffffffff));
    protocolError(() => new XdrReader(hex('61626364 00000000')).fixed(0xffffffff));
    protocolError(() => new XdrReader(hex('61626364 00000000')).fixed(0xfffffffd));
  });

  it('array rejects a count over its limit before decoding any element (2^31 never allocates)', () => {
    let calls = 0;
    const item = (x: XdrReader) => {
      calls++;
      return x.u32();
    };
    protocolError(() => new XdrReader(hex('80000000 00000001')).array(16, item));
    protocolError(() => new XdrReader(hex('00000011')).array(16, item));
    expect(calls).toBe(0);
    // within the limit but truncated: fails on the first missing element
    protocolError(() => new XdrReader(hex('00000003 00000001')).array(16, item));
    expect(calls).toBe(2);
  });

  it('negative lengths are refused', () => {
    protocolError(() => new XdrReader(hex('00000000')).fixed(-4));
  });
});

describe('round trip', () => {
  it('writer output decodes to the same values', () => {
    const w = new XdrWriter(8);
    w.u32(42).i32(-42).u64(123456789012345n).u64(9007199254740991).bool(true)
      .fixed(hex('aabbcc')).opaque(hex('0102')).string('zone/tier-1');
    const r = new XdrReader(w.bytes());
    expect(r.u32()).toBe(42);
    expect(r.i32()).toBe(-42);
    expect(r.u64()).toBe(123456789012345n);
    expect(r.u64n()).toBe(9007199254740991);
    expect(r.bool()).toBe(true);
    expect(r.fixed(3).toString('hex')).toBe('aabbcc');
    expect(r.opaque(8).toString('hex')).toBe('0102');
    expect(r.string(64)).toBe('zone/tier-1');
    expect(r.remaining).toBe(0);
  });
});
