/**
 * PeerClient: one authenticated keep-alive connection to a peer, many requests in flight
 * (at most `maxInFlight` on the wire, the rest queued), a timeout per request, a ping to find a
 * dead peer, an idle close. Every failure rejects the callers with a GvError; none hangs.
 */
import net from 'node:net';
import tls from 'node:tls';
import { GvError } from '../errors.js';
import { decodeError } from './codec.js';
import { FrameType, MAX_FRAME, type Frame, type Op } from './frame.js';
import { FrameSocket, closedError } from './frame-socket.js';
import { clientHandshake, type PeerIdentity, type SelfAuth } from './handshake.js';
import { HELLO_TIMEOUT_MS } from './hello.js';
import type { PeerLog } from './log.js';
import { tlsBase } from './tls-options.js';

export interface PeerClientOptions {
  keyPem: string;
  certPem: string;
  self: SelfAuth;
  log: PeerLog;
  requestTimeoutMs: number;
  maxInFlight: number;
  pingIntervalMs: number;
  idleCloseMs: number;
  traffic?: (bytesIn: number, bytesOut: number) => void;
}

interface Pending {
  id: number;
  op: Op;
  header: Buffer;
  decode: (f: Frame) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: GvError) => void;
  timer: NodeJS.Timeout;
  sent: boolean;
}

/** Split "host:port" / "[v6]:port". */
export function parseAddress(a: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(a) ?? /^([^:]+):(\d+)$/.exec(a);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) throw new GvError('EINVAL', `bad peer address "${a}" (want host:port)`);
  return { host: m[1]!, port };
}

export class PeerClient {
  private readonly pending = new Map<number, Pending>();
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private lastHeard = Date.now();
  private lastUsed = Date.now();
  private seenBytes = 0;
  private readonly ticker: NodeJS.Timeout;
  private readonly closeCbs: ((reason: string) => void)[] = [];

  private constructor(private readonly fs: FrameSocket, readonly peer: PeerIdentity, private readonly o: PeerClientOptions) {
    fs.onFrame = (f) => this.onFrame(f);
    fs.onClose((reason) => this.failAll(reason));
    const tick = Math.max(50, Math.min(o.pingIntervalMs, o.idleCloseMs) / 2);
    this.ticker = setInterval(() => this.tick(), tick);
    this.ticker.unref();
  }

  /** Connect to `address`, run TLS and HELLO; EACCES when the peer is refused, EIO when unreachable. */
  static async connect(address: string, expectId: string | null, o: PeerClientOptions): Promise<PeerClient> {
    const { host, port } = parseAddress(address);
    const opts: tls.ConnectionOptions = { ...tlsBase(o.keyPem, o.certPem), host, port };
    if (!net.isIP(host)) opts.servername = host;
    const socket = tls.connect(opts);
    socket.setNoDelay(true);
    const fs = new FrameSocket(socket, MAX_FRAME, o.log, o.traffic);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fs.close('TLS handshake timed out', 'debug'), HELLO_TIMEOUT_MS);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        resolve();
      });
      fs.onClose((reason) => {
        clearTimeout(timer);
        reject(new GvError('EIO', `cannot connect to ${address}: ${reason}`, { address }));
      });
    });
    const peer = await clientHandshake(fs, o.self, expectId);
    return new PeerClient(fs, peer, o);
  }

  get closed(): boolean {
    return this.fs.closed;
  }

  get inFlight(): number {
    return this.pending.size + this.queue.length;
  }

  onClose(cb: (reason: string) => void): void {
    if (this.fs.closed) cb(this.fs.closeReason);
    else this.closeCbs.push(cb);
  }

  close(reason = 'closed by this node'): void {
    this.fs.close(reason, 'debug');
  }

  /** One request; `decode` turns the response frame into the result (PROTOCOL errors close). */
  request<T>(op: Op, header: Buffer, decode: (f: Frame) => T, timeoutMs = this.o.requestTimeoutMs): Promise<T> {
    if (this.fs.closed) return Promise.reject(closedError(this.peer.nodeName, this.fs.closeReason));
    this.lastUsed = Date.now();
    return new Promise<T>((resolve, reject) => {
      const p: Pending = {
        id: 0, op, header, decode, resolve: resolve as (v: unknown) => void, reject, sent: false,
        timer: setTimeout(() => {
          this.drop(p);
          reject(new GvError('EIO', `${this.peer.nodeName}: request timed out after ${timeoutMs} ms`, { peer: this.peer.nodeId, timeout: true }));
        }, timeoutMs),
      };
      if (this.pending.size < this.o.maxInFlight) this.sendNow(p);
      else this.queue.push(p);
    });
  }

  private sendNow(p: Pending): void {
    p.id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    p.sent = true;
    this.pending.set(p.id, p);
    this.fs.send(FrameType.REQUEST, p.op, p.id, p.header);
  }

  private drop(p: Pending): void {
    if (p.sent) this.pending.delete(p.id);
    else {
      const i = this.queue.indexOf(p);
      if (i >= 0) this.queue.splice(i, 1);
    }
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0 && this.pending.size < this.o.maxInFlight && !this.fs.closed) this.sendNow(this.queue.shift()!);
  }

  private onFrame(f: Frame): void {
    this.lastHeard = Date.now();
    if (f.type === FrameType.PONG) return;
    if (f.type === FrameType.PING) {
      this.fs.send(FrameType.PONG, f.op, f.id, Buffer.alloc(0));
      return;
    }
    if (f.type !== FrameType.RESPONSE && f.type !== FrameType.ERROR) {
      this.fs.close(`unexpected frame type ${f.type}`, 'warn');
      return;
    }
    const p = this.pending.get(f.id);
    if (!p) return; // timed out already
    if (p.op !== f.op) {
      this.fs.close(`response op ${f.op} for a request of op ${p.op}`, 'warn');
      return;
    }
    this.pending.delete(f.id);
    clearTimeout(p.timer);
    this.lastUsed = Date.now();
    if (f.type === FrameType.ERROR) {
      let e: GvError;
      try {
        e = decodeError(f.header, this.peer.nodeName);
      } catch (err) {
        e = new GvError('PROTOCOL', `${this.peer.nodeName}: malformed error frame`);
        p.reject(e);
        this.fs.close(`malformed error frame: ${(err as Error).message}`, 'warn');
        return;
      }
      p.reject(e);
    } else {
      let v: unknown;
      try {
        v = p.decode(f);
      } catch (err) {
        const e = err instanceof GvError ? err : new GvError('PROTOCOL', String(err));
        p.reject(new GvError(e.code === 'PROTOCOL' ? 'PROTOCOL' : e.code, `${this.peer.nodeName}: ${e.message}`));
        this.fs.close(`malformed response: ${e.message}`, 'warn');
        return;
      }
      p.resolve(v);
    }
    this.pump();
  }

  private tick(): void {
    if (this.fs.closed) return;
    const now = Date.now();
    if (this.fs.bytesIn !== this.seenBytes) {
      // Any bytes count as a sign of life (a large response arrives over many ticks).
      this.seenBytes = this.fs.bytesIn;
      this.lastHeard = now;
    }
    if (this.inFlight === 0 && now - this.lastUsed > this.o.idleCloseMs) {
      this.fs.close('idle', 'debug');
      return;
    }
    if (now - this.lastHeard > 2 * this.o.pingIntervalMs + 1000) {
      this.fs.close('peer stopped answering pings', 'info');
      return;
    }
    if (now - this.lastHeard >= this.o.pingIntervalMs) this.fs.send(FrameType.PING, 0, 0, Buffer.alloc(0));
  }

  private failAll(reason: string): void {
    clearInterval(this.ticker);
    const err = closedError(this.peer.nodeName, reason);
    for (const p of [...this.pending.values(), ...this.queue.splice(0)]) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
    for (const cb of this.closeCbs.splice(0)) cb(reason);
  }
}
