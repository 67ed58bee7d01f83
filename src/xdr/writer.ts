const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * XDR (RFC 4506) encoder into a growing Buffer. Large payloads (READ data) are not copied in:
 * callers reserve their length with `opaqueHeader` and send the payload as a separate chunk.
 */
export class XdrWriter {
  buf: Buffer;
  pos = 0;

  constructor(initial = 512) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  i32(v: number): this {
    this.ensure(4);
    this.buf.writeInt32BE(v | 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint | number): this {
    this.ensure(8);
    // Sizes, ids and fsids are nearly always below 2^53: write them as two words from a double,
    // which costs a fraction of writeBigUInt64BE's BigInt shifts and masks.
    if (typeof v === 'bigint' && !(v >= 0n && v <= MAX_SAFE)) {
      this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), this.pos);
    } else {
      const n = Number(v);
      this.buf.writeUInt32BE(Math.floor(n / 0x100000000) >>> 0, this.pos);
      this.buf.writeUInt32BE(n >>> 0, this.pos + 4);
    }
    this.pos += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.u32(v ? 1 : 0);
  }

  fixed(data: Uint8Array): this {
    const n = data.length;
    const padded = (n + 3) & ~3;
    this.ensure(padded);
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + n, this.pos + padded);
    this.pos += padded;
    return this;
  }

  opaque(data: Uint8Array): this {
    this.u32(data.length);
    return this.fixed(data);
  }

  string(s: string | Buffer): this {
    return this.opaque(typeof s === 'string' ? Buffer.from(s, 'utf8') : s);
  }

  /** Length word of an opaque whose bytes are sent separately (see `padding`). */
  opaqueHeader(n: number): this {
    return this.u32(n);
  }

  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

const ZERO_PAD = Buffer.alloc(4);

/** The XDR padding that follows `n` bytes of opaque data. */
export function padding(n: number): Buffer {
  return ZERO_PAD.subarray(0, (4 - (n & 3)) & 3);
}
