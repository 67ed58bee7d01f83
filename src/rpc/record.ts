import { GvError } from '../errors.js';
import type { BufferPool } from '../util/buffer-pool.js';

/** Records at least this large that span chunks are gathered into a pooled buffer. */
const POOL_MIN = 64 * 1024;
/** Reads land here in user-buffer mode unless they can go straight into a record's own buffer. */
const SCRATCH_SIZE = 64 * 1024;
/** The rest of a pooled record is read in place when at least this much of it is still to come. */
const IN_PLACE_MIN = 4096;

/**
 * ONC RPC record marking (RFC 5531 §11) as a push decoder: feed it socket chunks, it emits whole
 * records. A record that arrived inside one chunk is emitted as a view (no copy); otherwise the
 * views of the chunks it spans are kept and joined once when the record completes, so memory held
 * for an incomplete record is what actually arrived, never what a header announced. A record
 * larger than `maxRecord`, or made of more than `maxFragments` fragments, is a protocol error (the
 * caller closes the connection): a hostile 2 GiB record mark never allocates.
 */
export class RecordDecoder {
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;
  private fragRemaining = 0;
  private fragLast = false;
  private inFragment = false;
  private fragments = 0;
  /** Views of the current record's bytes received so far. */
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Pooled buffer the current (single-fragment, large) record is gathered into. */
  private target: Buffer | null = null;
  /** User-buffer mode: the one buffer socket reads land in when not reading in place. */
  private scratch: Buffer | null = null;
  /** The buffer handed out by readTarget() is the current record's own (not the scratch). */
  private inPlace = false;
  /** The chunk being pushed is reused after push() returns: nothing may keep a view of it. */
  private transient = false;

  /**
   * `onRecord` gets a `release` function when the record lives in a pooled buffer: call it once
   * nothing refers to the record any more.
   */
  constructor(
    private readonly maxRecord: number,
    private readonly onRecord: (record: Buffer, release?: () => void) => void,
    private readonly maxFragments = 1024,
    private readonly pool?: BufferPool,
  ) {}

  /**
   * User-buffer mode (the socket reads into buffers we hand out, so no read allocates): where the
   * next read should land. Inside a large pooled record it is exactly the rest of that record, so
   * the kernel copies the payload straight into the buffer the procedure will see (no second
   * copy, and never past the record's end); otherwise a scratch buffer kept for the connection's
   * life, whose bytes are copied out before the next read.
   */
  readTarget(): Buffer {
    if (this.target !== null && this.inFragment && this.fragRemaining >= IN_PLACE_MIN) {
      this.inPlace = true;
      return this.target.subarray(this.partsLen, this.partsLen + this.fragRemaining);
    }
    this.inPlace = false;
    return this.scratchTarget();
  }

  /**
   * Whether the buffer the last readTarget() handed out is the current record's own. The socket
   * reads into the buffer handed out after its previous read, so while this is true nothing else
   * may move the decoder on (the socket's next read would land at a stale offset of the record).
   */
  get readingInPlace(): boolean {
    return this.inPlace;
  }

  /**
   * A buffer for a read made outside the socket's own reads (a busy poll): the scratch buffer,
   * whose bytes `filledScratch` copies out. Does not change what readTarget() handed out.
   */
  scratchTarget(): Buffer {
    this.scratch ??= Buffer.allocUnsafeSlow(SCRATCH_SIZE);
    return this.scratch;
  }

  /** `n` bytes were read into scratchTarget(). Only while !readingInPlace. */
  filledScratch(n: number): void {
    if (this.inPlace) throw new GvError('PROTOCOL', 'scratch read while the socket reads in place');
    this.transient = true;
    try {
      this.push(this.scratch!.subarray(0, n));
    } finally {
      this.transient = false;
    }
  }

  /** `n` bytes were read into the buffer the last readTarget() returned. */
  filled(n: number): void {
    if (this.inPlace) {
      this.inPlace = false;
      this.partsLen += n;
      this.fragRemaining -= n;
      if (this.fragRemaining === 0) this.endFragment();
      return;
    }
    this.transient = true;
    try {
      this.push(this.scratch!.subarray(0, n));
    } finally {
      this.transient = false;
    }
  }

  push(chunk: Buffer): void {
    let off = 0;
    const len = chunk.length;
    while (off < len) {
      if (!this.inFragment) {
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
        if (this.fragRemaining === 0) this.endFragment();
        continue;
      }
      if (this.fragLast && this.partsLen === 0 && this.target === null && this.parts.length === 0 && len - off >= this.fragRemaining &&
        !(this.transient && this.pool && this.fragRemaining >= POOL_MIN)) {
        // The whole record is inside this chunk: emit a view (a copy when the chunk is reused).
        const view = chunk.subarray(off, off + this.fragRemaining);
        const record = this.transient ? Buffer.from(view) : view;
        off += this.fragRemaining;
        this.fragRemaining = 0;
        this.inFragment = false;
        this.fragments = 0;
        this.onRecord(record);
        continue;
      }
      const take = Math.min(len - off, this.fragRemaining);
      if (this.target === null && this.pool && this.fragLast && this.parts.length === 0 && this.fragRemaining >= POOL_MIN) {
        this.target = this.pool.take(this.fragRemaining);
      }
      if (this.target !== null) {
        chunk.copy(this.target, this.partsLen, off, off + take);
        this.partsLen += take;
        this.fragRemaining -= take;
        off += take;
        if (this.fragRemaining === 0) this.endFragment();
        continue;
      }
      // Keep large parts as views; copy small ones, so a view never pins a chunk mostly made of
      // other data (and callers may reuse small buffers).
      const view = chunk.subarray(off, off + take);
      this.parts.push(!this.transient && take >= 16384 && take * 4 >= len ? view : Buffer.from(view));
      this.partsLen += take;
      this.fragRemaining -= take;
      off += take;
      if (this.fragRemaining === 0) this.endFragment();
    }
  }

  /** The connection is gone: hand a pooled buffer of an incomplete record back. */
  dispose(): void {
    if (this.target !== null) {
      this.pool?.give(this.target);
      this.target = null;
    }
    this.parts = [];
    this.partsLen = 0;
  }

  /** Bytes buffered for an incomplete record (for memory accounting). */
  get pending(): number {
    return this.partsLen;
  }

  private startFragment(word: number): void {
    const size = word & 0x7fffffff;
    this.fragLast = (word & 0x80000000) !== 0;
    if (++this.fragments > this.maxFragments) {
      throw new GvError('PROTOCOL', `RPC record of more than ${this.maxFragments} fragments`);
    }
    if (this.partsLen + size > this.maxRecord) {
      throw new GvError('PROTOCOL', `RPC record of ${this.partsLen + size} bytes exceeds limit ${this.maxRecord}`);
    }
    this.fragRemaining = size;
    this.inFragment = true;
  }

  private endFragment(): void {
    this.inFragment = false;
    if (!this.fragLast) return;
    const target = this.target;
    if (target !== null) {
      const pool = this.pool!;
      const record = target.subarray(0, this.partsLen);
      this.target = null;
      this.partsLen = 0;
      this.fragments = 0;
      let released = false;
      this.onRecord(record, () => {
        if (!released) {
          released = true;
          pool.give(target);
        }
      });
      return;
    }
    const parts = this.parts;
    const record = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.partsLen);
    this.parts = [];
    this.partsLen = 0;
    this.fragments = 0;
    this.onRecord(record);
  }
}

/** Record-mark one reply made of several chunks as a single last fragment. */
export function recordMark(totalLength: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE((0x80000000 | totalLength) >>> 0, 0);
  return b;
}
