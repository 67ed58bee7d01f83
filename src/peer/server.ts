/**
 * PeerServer: serves this node's LocalReplicaSource to authenticated peers. Per connection: TLS
 * 1.3 with a client certificate, the HELLO proof and pin check (handshake.ts), then requests
 * dispatched concurrently (at most MAX_IN_FLIGHT; more are answered EAGAIN), reading paused while
 * more than MAX_PENDING_OUT response bytes wait in the socket.
 */
import { X509Certificate, createHash } from 'node:crypto';
import tls from 'node:tls';
import type { NodeIdentity } from '../catalog/identity.js';
import { blockPool } from '../util/block-pool.js';
import { GvError, toGvError } from '../errors.js';
import type { LocalReplicaSource, PeerCaller } from '../replication/source.js';
import {
  decodeBlockRequest, decodeEntriesRequest, decodeJournalRequest, decodeListRequest, encodeCatalog, encodeEntries, encodeError,
  encodeJournalPage, encodeListPage,
} from './codec.js';
import { FrameType, MAX_FRAME, Op, type Frame } from './frame.js';
import { FrameSocket } from './frame-socket.js';
import { serverHandshake, type SelfAuth } from './handshake.js';
import { HELLO_TIMEOUT_MS } from './hello.js';
import { silentLog, type PeerLog } from './log.js';
import type { PinStore } from './pins.js';
import { tlsBase } from './tls-options.js';

export const MAX_IN_FLIGHT = 64;
/** Room for a whole pull's pipeline (32 blocks of 1 MiB in flight) before reading more requests pauses. */
export const MAX_PENDING_OUT = 32 * 1024 * 1024;
/** A connection with no frame for this long is closed (clients ping every 15 s). */
export const SERVER_IDLE_MS = 5 * 60 * 1000;
const CLOSE_WAIT_MS = 2000;
/** Open connections (authenticated or not); more are dropped by the kernel-facing server. */
export const MAX_CONNECTIONS = 256;

export interface PeerServerOptions {
  identity: Pick<NodeIdentity, 'id' | 'name'>;
  keyPem: string;
  certPem: string;
  clusterKey: Buffer;
  pins: PinStore;
  source: LocalReplicaSource;
  log?: PeerLog;
  /** Counts application bytes per authenticated peer (in = received from it). */
  traffic?: (peerId: string, bytesIn: number, bytesOut: number) => void;
  maxInFlight?: number;
}

/** `done` runs once the socket is finished with the payload (a pooled block goes back). */
interface Reply { header: Buffer; payload: Buffer[]; done?: () => void }

export class PeerServer {
  private readonly server: tls.Server;
  private readonly conns = new Set<FrameSocket>();
  private readonly self: SelfAuth;
  private readonly log: PeerLog;
  private readonly maxInFlight: number;
  private listening = false;

  constructor(private readonly o: PeerServerOptions) {
    this.log = o.log ?? silentLog;
    this.maxInFlight = o.maxInFlight ?? MAX_IN_FLIGHT;
    this.self = {
      nodeId: o.identity.id, nodeName: o.identity.name, clusterKey: o.clusterKey, pins: o.pins, log: this.log,
      fingerprint: certFingerprint(o.certPem),
    };
    this.server = tls.createServer({
      ...tlsBase(o.keyPem, o.certPem),
      requestCert: true,
      handshakeTimeout: HELLO_TIMEOUT_MS,
    });
    this.server.maxConnections = MAX_CONNECTIONS;
    this.server.on('secureConnection', (s) => this.accept(s));
    this.server.on('tlsClientError', (err, s) => {
      this.log('debug', { err: err.message, remote: s.remoteAddress }, 'peer TLS handshake failed');
      s.destroy();
    });
    this.server.on('error', (err) => this.log('warn', { err: err.message }, 'peer server error'));
  }

  /** Start listening; resolves the port (port 0 picks a free one). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(toGvError(err));
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        this.listening = true;
        const a = this.server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  /** Number of open (authenticated or handshaking) connections. */
  get connections(): number {
    return this.conns.size;
  }

  /** Stop listening and drop every connection (callers see their requests fail). Bounded. */
  async close(): Promise<void> {
    for (const c of [...this.conns]) c.close('server closing', 'debug');
    if (!this.listening) return;
    this.listening = false;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, CLOSE_WAIT_MS);
      this.server.close(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private accept(socket: tls.TLSSocket): void {
    const fs = new FrameSocket(socket, MAX_FRAME, this.log);
    this.conns.add(fs);
    fs.onClose(() => this.conns.delete(fs));
    socket.setNoDelay(true);
    socket.setTimeout(SERVER_IDLE_MS, () => fs.close('idle', 'debug'));
    serverHandshake(fs, this.self).then(
      (peer) => {
        if (!peer || fs.closed) return;
        this.log('debug', { peer: peer.nodeName, id: peer.nodeId, remote: fs.remote }, 'peer connected');
        this.serve(fs, { nodeId: peer.nodeId, nodeName: peer.nodeName });
      },
      (err) => fs.close(`handshake error: ${(err as Error).message}`, 'warn'),
    );
  }

  private serve(fs: FrameSocket, caller: PeerCaller): void {
    let inFlight = 0;
    let paused = false;
    const count = this.o.traffic;
    let seenIn = fs.bytesIn;
    let seenOut = fs.bytesOut;
    const account = () => {
      if (!count) return;
      count(caller.nodeId, fs.bytesIn - seenIn, fs.bytesOut - seenOut);
      seenIn = fs.bytesIn;
      seenOut = fs.bytesOut;
    };
    fs.socket.on('drain', () => {
      if (paused && !fs.closed) {
        paused = false;
        fs.socket.resume();
      }
    });
    const backpressure = () => {
      if (!paused && fs.socket.writableLength > MAX_PENDING_OUT) {
        paused = true;
        fs.socket.pause();
      }
    };
    fs.onFrame = (f: Frame) => {
      if (f.type === FrameType.PING) {
        fs.send(FrameType.PONG, Op.NONE, f.id, f.header.length <= 64 ? f.header : Buffer.alloc(0));
        account();
        return;
      }
      if (f.type !== FrameType.REQUEST) {
        fs.close(`unexpected frame type ${f.type} from ${caller.nodeName}`, 'warn');
        return;
      }
      if (inFlight >= this.maxInFlight) {
        fs.send(FrameType.ERROR, f.op, f.id, encodeError(new GvError('EAGAIN', `more than ${this.maxInFlight} requests in flight`)));
        account();
        return;
      }
      inFlight++;
      this.dispatch(caller, f).then(
        (r) => {
          try {
            fs.send(FrameType.RESPONSE, f.op, f.id, r.header, r.payload, r.done);
          } catch (err) {
            fs.send(FrameType.ERROR, f.op, f.id, encodeError(toGvError(err)));
          }
        },
        (err: unknown) => {
          if (err instanceof GvError && err.code === 'PROTOCOL') {
            fs.close(`malformed request from ${caller.nodeName}: ${err.message}`, 'warn');
            return;
          }
          const e = toGvError(err);
          if (!(err instanceof GvError)) this.log('warn', { err: String(err), op: f.op, peer: caller.nodeName }, 'peer request failed');
          fs.send(FrameType.ERROR, f.op, f.id, encodeError(e));
        },
      ).finally(() => {
        inFlight--;
        account();
        backpressure();
      });
    };
  }

  private async dispatch(caller: PeerCaller, f: Frame): Promise<Reply> {
    const src = this.o.source;
    if (f.payload.length !== 0) throw new GvError('PROTOCOL', 'request with a payload');
    switch (f.op) {
      case Op.JOURNAL: {
        const q = decodeJournalRequest(f.header);
        const page = await src.journal(caller, q.zone, q.since, q.limit);
        return { header: encodeJournalPage(page, q.limit), payload: [] };
      }
      case Op.ENTRIES: {
        const q = decodeEntriesRequest(f.header);
        const list = await src.entries(caller, q.zone, q.paths, q.inlineMax);
        if (list.length !== q.paths.length) throw new GvError('EIO', `source answered ${list.length} entries for ${q.paths.length} paths`);
        return encodeEntries(list, q.inlineMax);
      }
      case Op.BLOCK: {
        const q = decodeBlockRequest(f.header);
        const data = await src.block(caller, q.zone, q.path, q.offset, q.length);
        if (data.length > q.length) throw new GvError('EIO', `source answered ${data.length} bytes for ${q.length}`);
        return { header: Buffer.alloc(0), payload: [data], done: () => blockPool.give(data) };
      }
      case Op.LIST: {
        const q = decodeListRequest(f.header);
        const page = await src.list(caller, q.zone, q.dir, q.after, q.limit, q.inlineMax);
        if (page.entries.length > q.limit) throw new GvError('EIO', `source answered ${page.entries.length} entries for a limit of ${q.limit}`);
        return encodeListPage(page, q.inlineMax);
      }
      case Op.CATALOG: {
        if (f.header.length !== 0) throw new GvError('PROTOCOL', 'catalog request with arguments');
        return { header: Buffer.alloc(0), payload: [encodeCatalog(await src.catalog(caller))] };
      }
      default:
        throw new GvError('PROTOCOL', `request with op ${f.op}`);
    }
  }
}

/** Raw SHA-256 of the certificate in `pem`. */
export function certFingerprint(pem: string): Buffer {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest();
}
