/**
 * A small ONC RPC (RFC 5531) client over TCP for tests: record marking, replies matched to calls
 * by xid, any number of calls in flight, AUTH_SYS or AUTH_NONE credentials. Its record reader is
 * written here on purpose (not shared with the server) so that server bugs are not mirrored.
 */
import net from 'node:net';
import { encodeCall } from '../../src/rpc/message.js';
import { XdrReader } from '../../src/xdr/reader.js';

export interface Cred {
  uid: number;
  gid: number;
  gids?: number[];
  machinename?: string;
}

export const ROOT: Cred = { uid: 0, gid: 0, gids: [0] };

export type RpcReply =
  | { xid: number; kind: 'success'; results: XdrReader; raw: Buffer; resultsLength: number }
  | { xid: number; kind: 'prog_unavail' | 'proc_unavail' | 'garbage_args' | 'system_err'; raw: Buffer }
  | { xid: number; kind: 'prog_mismatch'; low: number; high: number; raw: Buffer }
  | { xid: number; kind: 'rpc_mismatch'; low: number; high: number; raw: Buffer }
  | { xid: number; kind: 'auth_error'; stat: number; raw: Buffer };

const ACCEPT_KINDS = ['success', 'prog_unavail', 'prog_mismatch', 'proc_unavail', 'garbage_args', 'system_err'] as const;

export class RpcClosedError extends Error {
  override readonly name = 'RpcClosedError';
}

interface Pending {
  resolve: (r: RpcReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const MAX_REPLY = 64 << 20;

/**
 * Record-marking reader for test clients, written independently of the server's RecordDecoder so
 * the tests do not share its bugs. push() returns false when a fragment is larger than maxFragment
 * (the caller then closes the connection).
 */
export class ReplyRecordReader {
  private buf: Buffer = Buffer.alloc(0);
  private frags: Buffer[] = [];

  constructor(
    private readonly maxFragment: number,
    private readonly onRecord: (record: Buffer) => void,
  ) {}

  push(chunk: Buffer): boolean {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (let guard = 0; guard < 1_000_000; guard++) {
      if (this.buf.length < 4) return true;
      const word = this.buf.readUInt32BE(0);
      const len = word & 0x7fffffff;
      if (len > this.maxFragment) return false;
      if (this.buf.length < 4 + len) return true;
      this.frags.push(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
      if (word & 0x80000000) {
        const rec = this.frags.length === 1 ? this.frags[0]! : Buffer.concat(this.frags);
        this.frags = [];
        this.onRecord(rec);
      }
    }
    return true;
  }
}

export class RpcClient {
  private readonly pending = new Map<number, Pending>();
  private nextXid = (Math.random() * 0x7fffffff) >>> 0;
  private readonly reader = new ReplyRecordReader(MAX_REPLY, (rec) => this.onRecord(rec));
  private closedErr: Error | null = null;
  readonly closed: Promise<void>;
  /** Replies whose xid matched no call (should stay empty). */
  readonly unmatched: number[] = [];
  cred: Cred | null = ROOT;
  timeoutMs = 20_000;

  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    this.closed = new Promise((resolve) => {
      sock.once('close', () => {
        this.fail(this.closedErr ?? new RpcClosedError('connection closed'));
        resolve();
      });
    });
    sock.on('error', (e) => {
      this.closedErr = e;
    });
  }

  static connect(port: number, host = '127.0.0.1', timeoutMs = 5000): Promise<RpcClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host });
      const t = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect ${host}:${port} timed out`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(t);
        resolve(new RpcClient(sock));
      });
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  get isClosed(): boolean {
    return this.sock.destroyed;
  }

  allocXid(): number {
    this.nextXid = (this.nextXid + 1) >>> 0;
    return this.nextXid;
  }

  /** Send a call and wait for the reply with the same xid. */
  call(prog: number, vers: number, proc: number, args: Uint8Array, cred: Cred | null = this.cred): Promise<RpcReply> {
    const xid = this.allocXid();
    const msg = encodeCall(xid, prog, vers, proc, args, cred ?? undefined);
    return this.sendRecord(xid, msg);
  }

  /** Send an already-encoded call message (its first word must be `xid`) as one record. */
  sendRecord(xid: number, msg: Buffer): Promise<RpcReply> {
    if (this.sock.destroyed) return Promise.reject(new RpcClosedError('connection closed'));
    const p = new Promise<RpcReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(xid);
        reject(new Error(`RPC xid ${xid} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(xid, { resolve, reject, timer });
    });
    const mark = Buffer.allocUnsafe(4);
    mark.writeUInt32BE((0x80000000 | msg.length) >>> 0, 0);
    this.sock.write(Buffer.concat([mark, msg]));
    return p;
  }

  /** Write raw bytes (for protocol abuse tests). */
  writeRaw(bytes: Buffer): void {
    this.sock.write(bytes);
  }

  close(): void {
    this.sock.destroy();
  }

  private fail(e: Error): void {
    for (const [xid, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.pending.delete(xid);
    }
  }

  private onData(chunk: Buffer): void {
    if (!this.reader.push(chunk)) {
      this.closedErr = new Error(`reply fragment over ${MAX_REPLY} bytes`);
      this.sock.destroy();
    }
  }

  private onRecord(rec: Buffer): void {
    let reply: RpcReply;
    try {
      reply = decodeReply(rec);
    } catch (e) {
      this.closedErr = e as Error;
      this.sock.destroy();
      return;
    }
    const p = this.pending.get(reply.xid);
    if (!p) {
      this.unmatched.push(reply.xid);
      return;
    }
    this.pending.delete(reply.xid);
    clearTimeout(p.timer);
    p.resolve(reply);
  }
}

/** Decode an RPC reply message (RFC 5531 §9). */
export function decodeReply(rec: Buffer): RpcReply {
  const r = new XdrReader(rec);
  const xid = r.u32();
  const mtype = r.u32();
  if (mtype !== 1) throw new Error(`not a reply (msg_type ${mtype})`);
  const replyStat = r.u32();
  if (replyStat === 0) {
    r.u32(); // verifier flavor
    r.opaque(400);
    const stat = r.u32();
    const kind = ACCEPT_KINDS[stat];
    if (!kind) throw new Error(`unknown accept_stat ${stat}`);
    if (kind === 'success') {
      return { xid, kind, results: r, raw: rec, resultsLength: r.remaining };
    }
    if (kind === 'prog_mismatch') return { xid, kind, low: r.u32(), high: r.u32(), raw: rec };
    return { xid, kind, raw: rec };
  }
  if (replyStat === 1) {
    const rej = r.u32();
    if (rej === 0) return { xid, kind: 'rpc_mismatch', low: r.u32(), high: r.u32(), raw: rec };
    if (rej === 1) return { xid, kind: 'auth_error', stat: r.u32(), raw: rec };
    throw new Error(`unknown reject_stat ${rej}`);
  }
  throw new Error(`unknown reply_stat ${replyStat}`);
}

/** The results of a successful reply, or an Error describing what came back instead. */
export function successResults(reply: RpcReply): XdrReader {
  if (reply.kind !== 'success') throw new Error(`RPC call not accepted: ${JSON.stringify({ ...reply, raw: undefined })}`);
  return reply.results;
}
