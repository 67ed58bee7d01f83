/**
 * A fuzzing connection: writes arbitrary bytes, reads every reply the server sends back and
 * tallies it by kind (success, garbage_args, system_err, ...), and can wait for one particular
 * xid (a NULL "ping") with a bounded timeout, which bounds the calls in flight.
 */
import net from 'node:net';
import { encodeCall } from '../../src/rpc/message.js';
import { decodeReply, ReplyRecordReader } from './rpc-client.js';

const MAX_REPLY = 8 << 20;

export type ReplyTally = Record<string, number>;

export class FuzzConn {
  private readonly reader = new ReplyRecordReader(MAX_REPLY, (rec) => this.onRecord(rec));
  private waiting = new Map<number, () => void>();
  private closedFlag = false;
  readonly closed: Promise<void>;
  /** Bytes the client could not parse as a reply (should stay 0). */
  badReplies = 0;

  private constructor(
    private readonly sock: net.Socket,
    private readonly tally: ReplyTally,
  ) {
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => this.onData(c));
    sock.on('error', () => {});
    this.closed = new Promise((resolve) => {
      sock.once('close', () => {
        this.closedFlag = true;
        for (const w of this.waiting.values()) w();
        this.waiting.clear();
        resolve();
      });
    });
  }

  static connect(port: number, tally: ReplyTally, timeoutMs = 5000): Promise<FuzzConn> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host: '127.0.0.1' });
      const t = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect 127.0.0.1:${port} timed out`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(t);
        resolve(new FuzzConn(sock, tally));
      });
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Write bytes, waiting for the socket to drain when its buffer is full. */
  async write(bytes: Buffer): Promise<void> {
    if (this.closedFlag) return;
    if (!this.sock.write(bytes)) {
      await Promise.race([new Promise((r) => this.sock.once('drain', r)), this.closed]);
    }
  }

  /**
   * Send a NULL call to `prog`/`vers` and wait for its reply. Resolves 'ok', 'closed' (the server
   * closed the connection) or 'timeout'.
   */
  async ping(xid: number, prog: number, vers: number, timeoutMs: number): Promise<'ok' | 'closed' | 'timeout'> {
    if (this.closedFlag) return 'closed';
    const msg = encodeCall(xid, prog, vers, 0, Buffer.alloc(0));
    const mark = Buffer.allocUnsafe(4);
    mark.writeUInt32BE((0x80000000 | msg.length) >>> 0, 0);
    let timer: NodeJS.Timeout | undefined;
    const got = new Promise<'ok' | 'closed'>((resolve) => {
      this.waiting.set(xid, () => resolve(this.closedFlag ? 'closed' : 'ok'));
    });
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    await this.write(Buffer.concat([mark, msg]));
    const r = await Promise.race([got, timeout]);
    clearTimeout(timer);
    this.waiting.delete(xid);
    return r;
  }

  /** Half-close and wait (bounded) for the server to close its side. */
  async end(timeoutMs: number): Promise<'closed' | 'timeout'> {
    this.sock.end();
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.closed.then(() => 'closed' as const),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (r === 'timeout') this.sock.destroy();
    return r;
  }

  destroy(): void {
    this.sock.destroy();
  }

  private onData(chunk: Buffer): void {
    if (!this.reader.push(chunk)) {
      this.badReplies++;
      this.sock.destroy();
    }
  }

  private onRecord(rec: Buffer): void {
    let xid: number;
    try {
      const r = decodeReply(rec);
      xid = r.xid;
      this.tally[r.kind] = (this.tally[r.kind] ?? 0) + 1;
    } catch {
      this.badReplies++;
      return;
    }
    const w = this.waiting.get(xid);
    if (w) {
      this.waiting.delete(xid);
      w();
    }
  }
}
