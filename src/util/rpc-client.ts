import dgram from 'node:dgram';
import net from 'node:net';
import { GvError } from '../errors.js';
import { encodeCall, MSG_ACCEPTED, REPLY } from '../rpc/message.js';
import { RecordDecoder, recordMark } from '../rpc/record.js';
import { XdrReader } from '../xdr/reader.js';

/** A decoded RPC reply. `body` holds the results after accept_stat SUCCESS. */
export interface RpcReply {
  xid: number;
  /** The whole reply record, header included (for golden-byte tests). */
  raw: Buffer;
  accepted: boolean;
  /** accept_stat when accepted, reject_stat when denied. */
  stat: number;
  body: XdrReader;
}

export function decodeReply(raw: Buffer): RpcReply {
  const r = new XdrReader(raw);
  const xid = r.u32();
  if (r.u32() !== REPLY) throw new GvError('PROTOCOL', 'not an RPC reply');
  const replyStat = r.u32();
  if (replyStat === MSG_ACCEPTED) {
    r.u32(); // verifier flavor
    r.opaque(400);
    return { xid, raw, accepted: true, stat: r.u32(), body: r };
  }
  return { xid, raw, accepted: false, stat: r.u32(), body: r };
}

export interface CallAuth {
  uid: number;
  gid: number;
  gids?: number[];
  machinename?: string;
}

/**
 * A small ONC RPC client over one TCP connection, for the portmap client, the CLI and tests.
 * Calls are matched by xid; every call has a timeout.
 */
export class RpcTcpClient {
  private readonly pending = new Map<number, { resolve: (r: RpcReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private xid = (Math.random() * 0x7fffffff) >>> 0;
  private closed = false;

  private constructor(private readonly sock: net.Socket) {
    const decoder = new RecordDecoder(4 << 20, (rec) => {
      let reply: RpcReply;
      try {
        reply = decodeReply(Buffer.from(rec));
      } catch {
        return;
      }
      const p = this.pending.get(reply.xid);
      if (!p) return;
      this.pending.delete(reply.xid);
      clearTimeout(p.timer);
      p.resolve(reply);
    });
    sock.on('data', (chunk: Buffer) => {
      try {
        decoder.push(chunk);
      } catch (err) {
        this.failAll(err as Error);
        sock.destroy();
      }
    });
    sock.on('error', (err) => this.failAll(err));
    sock.on('close', () => {
      this.closed = true;
      this.failAll(new GvError('EIO', 'connection closed'));
    });
  }

  static connect(port: number, host = '127.0.0.1', timeoutMs = 3000, localPort?: number): Promise<RpcTcpClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host, localPort });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new GvError('EIO', `connect to ${host}:${port} timed out`));
      }, timeoutMs);
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        sock.setNoDelay(true);
        resolve(new RpcTcpClient(sock));
      });
    });
  }

  call(prog: number, vers: number, proc: number, args: Uint8Array = Buffer.alloc(0), opts: { auth?: CallAuth; timeoutMs?: number; xid?: number } = {}): Promise<RpcReply> {
    if (this.closed) return Promise.reject(new GvError('EIO', 'connection closed'));
    const xid = opts.xid ?? (this.xid = (this.xid + 1) >>> 0);
    const rec = encodeCall(xid, prog, vers, proc, args, opts.auth);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(xid);
        reject(new GvError('EIO', `RPC call prog ${prog} proc ${proc} timed out`));
      }, opts.timeoutMs ?? 5000);
      this.pending.set(xid, { resolve, reject, timer });
      this.sock.write(Buffer.concat([recordMark(rec.length), rec]));
    });
  }

  /** Send raw bytes (tests: garbage, partial records). */
  writeRaw(b: Buffer): void {
    this.sock.write(b);
  }

  close(): void {
    this.closed = true;
    this.sock.destroy();
  }

  private failAll(err: Error): void {
    for (const [xid, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
      this.pending.delete(xid);
    }
  }
}

/** One call over UDP (one datagram each way), with a timeout. */
export function rpcCallUdp(
  port: number, host: string, prog: number, vers: number, proc: number, args: Uint8Array = Buffer.alloc(0),
  opts: { timeoutMs?: number; xid?: number; auth?: CallAuth } = {},
): Promise<RpcReply> {
  const xid = opts.xid ?? ((Math.random() * 0x7fffffff) >>> 0);
  const rec = encodeCall(xid, prog, vers, proc, args, opts.auth);
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.close();
      reject(new GvError('EIO', `UDP RPC call prog ${prog} proc ${proc} timed out`));
    }, opts.timeoutMs ?? 3000);
    sock.on('error', (err) => {
      clearTimeout(timer);
      sock.close();
      reject(err);
    });
    sock.on('message', (msg) => {
      let reply: RpcReply;
      try {
        reply = decodeReply(msg);
      } catch {
        return;
      }
      if (reply.xid !== xid) return;
      clearTimeout(timer);
      sock.close();
      resolve(reply);
    });
    sock.send(rec, port, host);
  });
}
