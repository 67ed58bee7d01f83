/**
 * PeerPool: the engine's PeerConnector. One lazily opened keep-alive connection per peer (the
 * addresses `addressesOf` gives, tried in order), reconnect with exponential backoff, byte
 * counters per peer. `source(peerId)` is a ReplicaSource whose calls travel over that connection.
 */
import { X509Certificate, createHash } from 'node:crypto';
import type { NodeIdentity } from '../catalog/identity.js';
import { blockPool } from '../util/block-pool.js';
import { GvError } from '../errors.js';
import type { CatalogSnapshot, JournalPage, ListPage, PeerConnector, RemoteEntry, ReplicaSource } from '../replication/source.js';
import { PeerClient, type PeerClientOptions } from './client.js';
import {
  decodeCatalog, decodeEntries, decodeJournalPage, decodeListPage, encodeBlockRequest, encodeEntriesRequest, encodeJournalRequest,
  encodeListRequest,
} from './codec.js';
import { Op, type Frame } from './frame.js';
import { silentLog, type PeerLog } from './log.js';
import type { PinStore } from './pins.js';

export const REQUEST_TIMEOUT_MS = 30_000;
export const CLIENT_MAX_IN_FLIGHT = 64;
export const PING_INTERVAL_MS = 15_000;
export const IDLE_CLOSE_MS = 60_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;

export interface PeerPoolOptions {
  identity: Pick<NodeIdentity, 'id' | 'name'>;
  keyPem: string;
  certPem: string;
  clusterKey: Buffer;
  pins: PinStore;
  /** Where a peer listens ("host:port"), best first; [] when unknown. */
  addressesOf: (peerId: string) => string[];
  log?: PeerLog;
  requestTimeoutMs?: number;
  /** Requests on the wire per connection (more wait in a queue). */
  maxInFlight?: number;
  pingIntervalMs?: number;
  idleCloseMs?: number;
}

interface PeerState {
  id: string;
  client: PeerClient | null;
  connecting: Promise<PeerClient> | null;
  failures: number;
  retryAt: number;
  lastError: GvError | null;
  bytesIn: number;
  bytesOut: number;
  source: ReplicaSource;
}

export class PeerPool implements PeerConnector {
  private readonly peers = new Map<string, PeerState>();
  private readonly log: PeerLog;
  private closed = false;
  private readonly clientOpts: Omit<PeerClientOptions, 'traffic'>;

  constructor(private readonly o: PeerPoolOptions) {
    this.log = o.log ?? silentLog;
    this.clientOpts = {
      keyPem: o.keyPem,
      certPem: o.certPem,
      log: this.log,
      self: {
        nodeId: o.identity.id, nodeName: o.identity.name, clusterKey: o.clusterKey, pins: o.pins, log: this.log,
        fingerprint: createHash('sha256').update(new X509Certificate(o.certPem).raw).digest(),
      },
      requestTimeoutMs: o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
      maxInFlight: o.maxInFlight ?? CLIENT_MAX_IN_FLIGHT,
      pingIntervalMs: o.pingIntervalMs ?? PING_INTERVAL_MS,
      idleCloseMs: o.idleCloseMs ?? IDLE_CLOSE_MS,
    };
  }

  source(peerId: string): ReplicaSource | null {
    if (peerId === this.o.identity.id || this.o.addressesOf(peerId).length === 0) return null;
    return this.state(peerId).source;
  }

  traffic(peerId: string): { bytesIn: number; bytesOut: number } {
    const s = this.peers.get(peerId);
    return { bytesIn: s?.bytesIn ?? 0, bytesOut: s?.bytesOut ?? 0 };
  }

  /** Whether a connection to the peer is open now. */
  connected(peerId: string): boolean {
    const c = this.peers.get(peerId)?.client;
    return !!c && !c.closed;
  }

  /** Close every connection; later calls fail with EIO. */
  close(): void {
    this.closed = true;
    for (const s of this.peers.values()) s.client?.close('pool closed');
  }

  private state(peerId: string): PeerState {
    let s = this.peers.get(peerId);
    if (s) return s;
    const call = <T>(op: Op, header: Buffer, decode: (f: Frame) => T): Promise<T> =>
      this.connect(st).then((c) => c.request(op, header, decode));
    const st: PeerState = {
      id: peerId, client: null, connecting: null, failures: 0, retryAt: 0, lastError: null, bytesIn: 0, bytesOut: 0,
      source: {
        journal: async (zone, since, limit): Promise<JournalPage> =>
          call(Op.JOURNAL, encodeJournalRequest(zone, since, limit), (f) => {
            if (f.payload.length) throw new GvError('PROTOCOL', 'journal answer with a payload');
            return decodeJournalPage(f.header, limit);
          }),
        entries: async (zone, paths, inlineMax): Promise<(RemoteEntry | null)[]> =>
          call(Op.ENTRIES, encodeEntriesRequest(zone, paths, inlineMax), (f) => decodeEntries(f.header, f.payload, paths, inlineMax)),
        block: async (zone, path, offset, length): Promise<Buffer> =>
          call(Op.BLOCK, encodeBlockRequest(zone, path, offset, length), (f) => {
            if (f.header.length || f.payload.length > length) throw new GvError('PROTOCOL', `block answer of ${f.payload.length} bytes for ${length}`);
            return f.payload;
          }),
        recycle: (b: Buffer): void => blockPool.give(b),
        list: async (zone, dir, after, limit, inlineMax): Promise<ListPage> =>
          call(Op.LIST, encodeListRequest(zone, dir, after, limit, inlineMax), (f) => decodeListPage(f.header, f.payload, limit, inlineMax)),
        catalog: async (): Promise<CatalogSnapshot> =>
          call(Op.CATALOG, Buffer.alloc(0), (f) => {
            if (f.header.length) throw new GvError('PROTOCOL', 'catalog answer with a header');
            return decodeCatalog(f.payload);
          }),
      },
    };
    this.peers.set(peerId, st);
    s = st;
    return s;
  }

  private connect(s: PeerState): Promise<PeerClient> {
    if (this.closed) return Promise.reject(new GvError('EIO', 'peer pool closed'));
    if (s.client && !s.client.closed) return Promise.resolve(s.client);
    if (s.connecting) return s.connecting;
    const now = Date.now();
    if (now < s.retryAt && s.lastError) {
      return Promise.reject(new GvError(s.lastError.code, `${s.lastError.message} (retry in ${s.retryAt - now} ms)`, { peer: s.id, backoff: true }));
    }
    s.connecting = this.dial(s).then(
      (c) => {
        s.connecting = null;
        s.failures = 0;
        s.lastError = null;
        if (this.closed) {
          c.close('pool closed');
          throw new GvError('EIO', 'peer pool closed');
        }
        s.client = c;
        c.onClose(() => {
          if (s.client === c) s.client = null;
        });
        return c;
      },
      (err: unknown) => {
        s.connecting = null;
        s.failures++;
        s.retryAt = Date.now() + Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (s.failures - 1));
        s.lastError = err instanceof GvError ? err : new GvError('EIO', String(err));
        throw s.lastError;
      },
    );
    return s.connecting;
  }

  private async dial(s: PeerState): Promise<PeerClient> {
    const addresses = this.o.addressesOf(s.id);
    if (addresses.length === 0) throw new GvError('EIO', `no address known for peer ${s.id}`, { peer: s.id });
    let last: GvError | null = null;
    for (const a of addresses) {
      try {
        const c = await PeerClient.connect(a, s.id, {
          ...this.clientOpts,
          traffic: (i, o) => {
            s.bytesIn += i;
            s.bytesOut += o;
          },
        });
        this.log('debug', { peer: c.peer.nodeName, id: s.id, address: a }, 'peer connection open');
        return c;
      } catch (err) {
        last = err instanceof GvError ? err : new GvError('EIO', String(err));
        this.log('debug', { id: s.id, address: a, err: last.message }, 'peer connection failed');
      }
    }
    throw last!;
  }
}
