import { GvError } from '../errors.js';

/**
 * ONC RPC record marking (RFC 5531 §11) as a push decoder: feed it socket chunks, it emits whole
 * records. A record of one fragment that arrived in one chunk is emitted as a view (no copy);
 * otherwise the bytes are gathered once into a buffer sized from the fragment header. A fragment
 * or record larger than `maxRecord` is a protocol error (the caller closes the connection), so a
 * hostile 2 GiB record mark never allocates.
 */
export class RecordDecoder {
  private header = Buffer.alloc(4);
  private headerFill = 0;
  private fragRemaining = 0;
  private fragLast = false;
  private inFragment = false;
  /** Fragments of the current record gathered so far. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Buffer being filled for the current fragment (when it spans chunks). */
  private frag: Buffer | null = null;
  private fragFill = 0;

  constructor(
    private readonly maxRecord: number,
    private readonly onRecord: (record: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (!this.inFragment) {
        // Fast path: whole header available in this chunk.
        if (this.headerFill === 0 && len - off >= 4) {
          this.startFragment(chunk.readUInt32BE(off));
          off += 4;
        } else {
          const take = Math.min(4 - this.headerFill, len - off);
          chunk.copy(this.header, this.headerFill, off, off + take);
          this.headerFill += take;
          off += take;
          if (this.headerFill < 4) return;
          this.headerFill = 0;
          this.startFragment(this.header.readUInt32BE(0));
        }
        if (this.fragRemaining === 0) this.endFragment(Buffer.alloc(0));
        continue;
      }
      const avail = len - off;
      if (this.frag === null && avail >= this.fragRemaining) {
        // The whole fragment is inside this chunk: take a view.
        const view = chunk.subarray(off, off + this.fragRemaining);
        off += this.fragRemaining;
        this.fragRemaining = 0;
        this.endFragment(view);
        continue;
      }
      if (this.frag === null) {
        this.frag = Buffer.allocUnsafe(this.fragRemaining);
        this.fragFill = 0;
      }
      const take = Math.min(avail, this.fragRemaining);
      chunk.copy(this.frag, this.fragFill, off, off + take);
      this.fragFill += take;
      this.fragRemaining -= take;
      off += take;
      if (this.fragRemaining === 0) {
        const f = this.frag;
        this.frag = null;
        this.endFragment(f);
      }
    }
  }

  /** Bytes buffered for an incomplete record (for memory accounting). */
  get pending(): number {
    return this.partsLen + this.fragFill;
  }

  private startFragment(word: number): void {
    const size = word & 0x7fffffff;
    this.fragLast = (word & 0x80000000) !== 0;
    if (size > this.maxRecord || this.partsLen + size > this.maxRecord) {
      throw new GvError('PROTOCOL', `RPC record of ${this.partsLen + size} bytes exceeds limit ${this.maxRecord}`);
    }
    this.fragRemaining = size;
    this.inFragment = true;
  }

  private endFragment(frag: Buffer): void {
    this.inFragment = false;
    if (this.fragLast) {
      let record: Buffer;
      if (this.parts.length === 0) record = frag;
      else {
        this.parts.push(frag);
        record = Buffer.concat(this.parts, this.partsLen + frag.length);
      }
      this.parts = [];
      this.partsLen = 0;
      this.onRecord(record);
    } else {
      // Copy views so the socket's chunk can be released.
      this.parts.push(frag);
      this.partsLen += frag.length;
    }
  }
}

/** Record-mark one reply made of several chunks as a single last fragment. */
export function recordMark(totalLength: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE((0x80000000 | totalLength) >>> 0, 0);
  return b;
}
