import { GvError } from '../errors.js';

/**
 * XDR (RFC 4506) decoder over one Buffer. Every read checks bounds and throws
 * GvError('PROTOCOL') on truncated or oversized input; opaque data is returned as a
 * subarray of the input (no copy).
 */
export class XdrReader {
  pos: number;
  readonly end: number;

  constructor(
    readonly buf: Buffer,
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.end) {
      throw new GvError('PROTOCOL', `XDR truncated: need ${n} bytes at ${this.pos}, have ${this.end - this.pos}`);
    }
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** 64-bit unsigned that must fit a JS number exactly (offsets, sizes below 2^53). */
  u64n(): number {
    this.need(8);
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    if (hi >= 0x200000) throw new GvError('PROTOCOL', 'XDR 64-bit value too large');
    return hi * 0x100000000 + lo;
  }

  bool(): boolean {
    const v = this.u32();
    if (v > 1) throw new GvError('PROTOCOL', `XDR bool out of range: ${v}`);
    return v === 1;
  }

  /** Fixed-length opaque: a view into the input. */
  fixed(n: number): Buffer {
    // Check before padding: (n + 3) & ~3 wraps for n near 2^32.
    if (n > this.end - this.pos) this.need(n);
    const padded = n + ((4 - (n & 3)) & 3);
    this.need(padded);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += padded;
    return v;
  }

  /** Variable-length opaque with a maximum length: a view into the input. */
  opaque(max: number): Buffer {
    const n = this.u32();
    if (n > max) throw new GvError('PROTOCOL', `XDR opaque of ${n} bytes exceeds limit ${max}`);
    return this.fixed(n);
  }

  string(max: number): string {
    return this.opaque(max).toString('utf8');
  }

  /** Raw bytes of a string (names may not be valid UTF-8). */
  stringBytes(max: number): Buffer {
    return this.opaque(max);
  }

  /** Bounded array: `max` guards against huge counts before any element is decoded. */
  array<T>(max: number, item: (r: XdrReader) => T): T[] {
    const n = this.u32();
    if (n > max) throw new GvError('PROTOCOL', `XDR array of ${n} elements exceeds limit ${max}`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(item(this));
    return out;
  }
}
