/**
 * Frames over one TLS socket: incoming bytes through a FrameDecoder, outgoing frames written as
 * head + payload chunks (corked: one flush, payloads never copied into the head). A malformed
 * frame closes the socket with a logged reason; `onClose` runs exactly once.
 */
import type { TLSSocket } from 'node:tls';
import { GvError } from '../errors.js';
import {
  FrameDecoder, frameFixed, type Frame, type FrameType, type Op,
} from './frame.js';

/** Headers up to this size are copied behind the fixed part (one write); larger ones are not. */
const SMALL_HEADER = 4096;
import type { PeerLog } from './log.js';

export class FrameSocket {
  readonly decoder: FrameDecoder;
  bytesIn = 0;
  bytesOut = 0;
  closed = false;
  closeReason = '';
  onFrame: (f: Frame) => void = () => {};
  private readonly closeCbs: ((reason: string) => void)[] = [];

  constructor(
    readonly socket: TLSSocket,
    maxFrame: number,
    private readonly log: PeerLog,
    private readonly traffic?: (bytesIn: number, bytesOut: number) => void,
  ) {
    this.decoder = new FrameDecoder(maxFrame);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err) => this.close(`socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`, 'debug'));
    socket.on('end', () => this.close('peer ended the connection', 'debug'));
    socket.on('close', () => this.close('connection closed', 'debug'));
  }

  get remote(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  onClose(cb: (reason: string) => void): void {
    if (this.closed) cb(this.closeReason);
    else this.closeCbs.push(cb);
  }

  private onData(d: Buffer): void {
    if (this.closed) return;
    this.bytesIn += d.length;
    this.traffic?.(d.length, 0);
    let frames: Frame[];
    try {
      frames = this.decoder.push(d);
    } catch (err) {
      this.close(`malformed frame: ${(err as Error).message}`, 'warn');
      return;
    }
    for (const f of frames) {
      if (this.closed) return;
      try {
        this.onFrame(f);
      } catch (err) {
        this.close(`bad frame: ${(err as Error).message}`, 'warn');
      }
    }
  }

  /**
   * Write one frame; false when closed. EFBIG (nothing written) when it exceeds MAX_FRAME.
   * `written` runs once the socket is done with the payload buffers (they may be reused then),
   * also when the frame is not written at all.
   */
  send(type: FrameType, op: Op, id: number, header: Buffer, payload: readonly Buffer[] = [], written?: () => void): boolean {
    if (this.closed) {
      written?.();
      return false;
    }
    let plen = 0;
    for (const p of payload) plen += p.length;
    const s = this.socket;
    let fixed: Buffer;
    try {
      fixed = frameFixed(type, op, id, header.length, plen);
    } catch (err) {
      written?.();
      throw err;
    }
    const n = fixed.length + header.length + plen;
    const corked = payload.length > 0 || header.length > SMALL_HEADER;
    // Corked: one TLS write of the whole frame (fewer, fuller records); big parts never copied here.
    if (corked) s.cork();
    if (header.length <= SMALL_HEADER) s.write(header.length ? Buffer.concat([fixed, header]) : fixed);
    else {
      s.write(fixed);
      s.write(header);
    }
    let last = -1;
    for (let k = 0; k < payload.length; k++) if (payload[k]!.length > 0) last = k;
    for (let k = 0; k <= last; k++) {
      const p = payload[k]!;
      if (p.length === 0) continue;
      // Callbacks run in write order (also with an error when the socket is destroyed first):
      // once the last chunk's has run, the socket is done with every payload buffer.
      if (k === last && written) s.write(p, () => written());
      else s.write(p);
    }
    if (last < 0) written?.();
    if (corked) s.uncork();
    this.bytesOut += n;
    this.traffic?.(0, n);
    return true;
  }

  /** Destroy the socket (no further bytes either way); logs `reason` once. */
  close(reason: string, level: 'debug' | 'info' | 'warn' = 'info'): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.log(level, { remote: this.remote }, `peer connection closed: ${reason}`);
    this.socket.destroy();
    for (const cb of this.closeCbs.splice(0)) {
      try {
        cb(reason);
      } catch (err) {
        this.log('warn', { err: String(err) }, 'peer close callback failed');
      }
    }
  }
}

export function closedError(peer: string, reason: string): GvError {
  return new GvError('EIO', `connection to ${peer} closed: ${reason}`, { peer });
}
