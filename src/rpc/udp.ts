import dgram from 'node:dgram';
import type { RpcServer } from './server.js';
import { normaliseAddress, type Reply } from './server.js';

export interface UdpRpcOptions {
  /** Datagrams larger than this are dropped unread (default 8 KiB: portmap and MOUNT calls are small). */
  maxDatagram?: number;
  /** Calls being answered at once; datagrams beyond are dropped (UDP clients retransmit). */
  maxInFlight?: number;
  onError?: (err: unknown, where: string) => void;
}

/**
 * ONC RPC over UDP (RFC 5531: one datagram is one record, no record marking) in front of an
 * RpcServer's dispatch, for portmap and MOUNT. Garbage is counted and dropped; it never throws.
 */
export class UdpRpcServer {
  private readonly sockets: dgram.Socket[] = [];
  private inFlight = 0;
  private drainWaiters: (() => void)[] = [];
  dropped = 0;
  private readonly maxDatagram: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly rpc: RpcServer,
    private readonly opts: UdpRpcOptions = {},
  ) {
    this.maxDatagram = opts.maxDatagram ?? 8192;
    this.maxInFlight = opts.maxInFlight ?? 256;
  }

  /** Bind host:port; resolves with the bound port (0 picks a free one). */
  listen(port: number, host: string): Promise<number> {
    const sock = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    this.sockets.push(sock);
    sock.on('message', (msg, rinfo) => this.onMessage(sock, msg, rinfo));
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, host, () => {
        sock.off('error', reject);
        sock.on('error', (err) => this.opts.onError?.(err, 'udp socket'));
        resolve(sock.address().port);
      });
    });
  }

  private closing = false;

  private onMessage(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closing) return;
    if (msg.length > this.maxDatagram || msg.length < 24 || this.inFlight >= this.maxInFlight) {
      this.dropped++;
      return;
    }
    this.inFlight++;
    const conn = { remoteAddress: normaliseAddress(rinfo.address), remotePort: rinfo.port };
    let p: Promise<Reply | null>;
    try {
      p = this.rpc.dispatch(msg, conn);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (reply) => {
        if (reply) {
          const out = Buffer.concat(reply.chunks);
          reply.release?.(); // concat copied the chunks
          if (out.length <= 65507) {
            try {
              sock.send(out, rinfo.port, rinfo.address, (err) => {
                if (err) this.opts.onError?.(err, 'udp send');
              });
            } catch (err) {
              this.opts.onError?.(err, 'udp send'); // socket closed meanwhile
            }
          } else {
            this.dropped++;
          }
        }
      },
      (err) => this.opts.onError?.(err, 'udp dispatch'),
    ).finally(() => {
      this.inFlight--;
      if (this.inFlight === 0) for (const w of this.drainWaiters.splice(0)) w();
    });
  }

  /** Stop receiving; waits (bounded) for calls being answered. */
  async close(timeoutMs = 2000): Promise<void> {
    // Take no new calls from now on; calls already running may still send their replies.
    this.closing = true;
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.drainWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await Promise.all(
      this.sockets.splice(0).map(
        (s) => new Promise<void>((resolve) => {
          try {
            s.close(() => resolve());
          } catch {
            resolve();
          }
        }),
      ),
    );
  }
}
