/**
 * Framing of the peer channel (inside TLS). Each frame:
 *
 *   u32 length    bytes after this word (FRAME_FIXED ≤ length ≤ MAX_FRAME)
 *   u8  type      FrameType
 *   u8  op        Op (requests, responses, errors), 0 otherwise
 *   u16 reserved  0
 *   u32 id        request id (a response or error carries its request's id)
 *   u32 hlen      header length (XDR-encoded fields of the op)
 *   hlen bytes    header
 *   rest          payload (raw bytes: block data, inline file data, catalog JSON)
 *
 * `FrameDecoder` is push-based (bytes in, frames out) and never touches a socket; a frame is
 * gathered into one buffer of its exact size (one copy), and header and payload are views of it.
 * Frames larger than 64 KiB that fit a block are gathered into a recycled buffer (blockPool): the
 * receiver of a block gives it back once the block is written (ReplicaSource.recycle).
 */
import { GvError } from '../errors.js';
import { blockPool } from '../util/block-pool.js';

export const FrameType = {
  HELLO: 1,
  REQUEST: 2,
  RESPONSE: 3,
  ERROR: 4,
  PING: 5,
  PONG: 6,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const Op = { NONE: 0, JOURNAL: 1, ENTRIES: 2, BLOCK: 3, CATALOG: 4, LIST: 5 } as const;
export type Op = (typeof Op)[keyof typeof Op];

/** Type .. hlen: the fixed part after the length word. */
export const FRAME_FIXED = 12;
/** Largest frame: a 4 MiB payload plus room for its header. */
export const MAX_FRAME = 4 * 1024 * 1024 + 64 * 1024;

export interface Frame {
  type: FrameType;
  op: Op;
  id: number;
  header: Buffer;
  payload: Buffer;
  /** Bytes on the wire (length word included). */
  size: number;
}

/** The length word and fixed part of a frame (16 bytes); header and payload follow. */
export function frameFixed(type: FrameType, op: Op, id: number, headerLength: number, payloadLength: number): Buffer {
  const length = FRAME_FIXED + headerLength + payloadLength;
  if (length > MAX_FRAME) throw new GvError('EFBIG', `frame of ${length} bytes exceeds ${MAX_FRAME}`);
  const b = Buffer.allocUnsafe(4 + FRAME_FIXED);
  b.writeUInt32BE(length, 0);
  b[4] = type;
  b[5] = op;
  b.writeUInt16BE(0, 6);
  b.writeUInt32BE(id >>> 0, 8);
  b.writeUInt32BE(headerLength, 12);
  return b;
}

/** The length word and fixed part, followed by `header`, as one buffer; the payload goes separately. */
export function frameHead(type: FrameType, op: Op, id: number, header: Buffer, payloadLength: number): Buffer {
  return Buffer.concat([frameFixed(type, op, id, header.length, payloadLength), header]);
}

/** Frames above this size come from the block pool. */
const POOLED_FROM = 64 * 1024;

const TYPES = new Set<number>(Object.values(FrameType));
const OPS = new Set<number>(Object.values(Op));

export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  /** The frame being gathered (its length known), and how much of it is filled. */
  private pending: Buffer | null = null;
  private filled = 0;

  constructor(private maxFrame = MAX_FRAME) {}

  /** Lower or raise the limit (before the HELLO exchange it is small). */
  setMaxFrame(n: number): void {
    this.maxFrame = n;
  }

  /** Bytes received but not yet returned as frames. */
  get held(): number {
    return this.buffered + this.filled;
  }

  /** Feed bytes; returns the complete frames. PROTOCOL error on a malformed frame. */
  push(data: Buffer): Frame[] {
    const out: Frame[] = [];
    let off = 0;
    while (off < data.length) {
      if (this.pending) {
        const n = Math.min(this.pending.length - this.filled, data.length - off);
        data.copy(this.pending, this.filled, off, off + n);
        this.filled += n;
        off += n;
        if (this.filled === this.pending.length) {
          out.push(parse(this.pending));
          this.pending = null;
          this.filled = 0;
        }
        continue;
      }
      // Gather the 4-byte length word (it may straddle chunks).
      const need = 4 - this.buffered;
      const take = Math.min(need, data.length - off);
      this.chunks.push(data.subarray(off, off + take));
      this.buffered += take;
      off += take;
      if (this.buffered < 4) break;
      const word = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const length = word.readUInt32BE(0);
      this.chunks.length = 0;
      this.buffered = 0;
      if (length < FRAME_FIXED) throw new GvError('PROTOCOL', `frame length ${length} below ${FRAME_FIXED}`);
      if (length > this.maxFrame) throw new GvError('PROTOCOL', `frame length ${length} exceeds ${this.maxFrame}`);
      this.pending = length > POOLED_FROM ? blockPool.take(length) : Buffer.allocUnsafe(length);
      this.filled = 0;
    }
    return out;
  }
}

function parse(b: Buffer): Frame {
  const type = b[0]!;
  const op = b[1]!;
  if (!TYPES.has(type)) throw new GvError('PROTOCOL', `unknown frame type ${type}`);
  if (!OPS.has(op)) throw new GvError('PROTOCOL', `unknown op ${op}`);
  if (b.readUInt16BE(2) !== 0) throw new GvError('PROTOCOL', 'reserved frame bits set');
  const id = b.readUInt32BE(4);
  const hlen = b.readUInt32BE(8);
  if (hlen > b.length - FRAME_FIXED) throw new GvError('PROTOCOL', `frame header of ${hlen} bytes exceeds the frame`);
  return {
    type: type as FrameType,
    op: op as Op,
    id,
    header: b.subarray(FRAME_FIXED, FRAME_FIXED + hlen),
    payload: b.subarray(FRAME_FIXED + hlen),
    size: b.length + 4,
  };
}
