/**
 * Verification and reassembly of incoming ELP packets: cluster, MAC, timestamp window, replay
 * (nonce seen recently, or an announcement sequence not newer than the last one taken from that
 * node), then parts joined by (node, sequence) with bounded memory. Pure apart from the clock
 * passed in; the service counts every result.
 */
import { clusterHash, decodeBody, decodePacket, openChunk, verifyMac, type DecodedPacket, type ElpMessage } from './packet.js';

export type PacketResult = 'ok' | 'bad_mac' | 'stale' | 'replay' | 'malformed' | 'other_cluster' | 'self';
export const PACKET_RESULTS: readonly PacketResult[] = ['ok', 'bad_mac', 'stale', 'replay', 'malformed', 'other_cluster', 'self'];

export interface ReceivedMessage {
  message: ElpMessage;
  seq: bigint;
  /** Sender's timestamp of the last part. */
  timestampMs: number;
}

export interface ReceiverOptions {
  key: Buffer;
  clusterName: string;
  /** Our own node id: our packets (heard through multicast loopback) are ignored. */
  selfId: string;
  /** Accepted clock difference, ± ms (default 30 s). */
  windowMs?: number;
  /** Wall clock (ms). */
  now?: () => number;
  /** Nonces remembered (default 8192); the window bounds them in time too. */
  maxNonces?: number;
  /** Announcements being reassembled at once (default 64) and their total bytes (default 1 MiB). */
  maxPending?: number;
  maxPendingBytes?: number;
}

interface Pending {
  nodeId: string;
  seq: bigint;
  chunks: (Buffer | undefined)[];
  have: number;
  bytes: number;
  firstMs: number;
  timestampMs: number;
}

export class ElpReceiver {
  private readonly hash: Buffer;
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly maxNonces: number;
  private readonly maxPending: number;
  private readonly maxPendingBytes: number;
  /** nonce hex → time first seen; insertion order is age order. */
  private readonly nonces = new Map<string, number>();
  /** node id → last announcement sequence taken (complete). */
  private readonly lastSeq = new Map<string, bigint>();
  /** `${node}/${seq}` → parts so far. */
  private readonly pending = new Map<string, Pending>();
  private pendingBytes = 0;

  constructor(private readonly o: ReceiverOptions) {
    this.hash = clusterHash(o.clusterName);
    this.windowMs = o.windowMs ?? 30_000;
    this.now = o.now ?? Date.now;
    this.maxNonces = o.maxNonces ?? 8192;
    this.maxPending = o.maxPending ?? 64;
    this.maxPendingBytes = o.maxPendingBytes ?? 1024 * 1024;
  }

  /** Look at one datagram. `message` is set when it completed an announcement. */
  accept(buf: Buffer): { result: PacketResult; message?: ReceivedMessage } {
    let d: DecodedPacket;
    try {
      d = decodePacket(buf);
    } catch {
      return { result: 'malformed' };
    }
    if (!d.clusterHash.equals(this.hash)) return { result: 'other_cluster' };
    if (!verifyMac(d, this.o.key)) return { result: 'bad_mac' };
    if (d.nodeId === this.o.selfId) return { result: 'self' };
    const now = this.now();
    if (Math.abs(now - d.timestampMs) > this.windowMs) return { result: 'stale' };
    this.expireNonces(now);
    const nonce = d.nonce.toString('hex');
    if (this.nonces.has(nonce)) return { result: 'replay' };
    const last = this.lastSeq.get(d.nodeId);
    if (last !== undefined && d.seq <= last) return { result: 'replay' };
    const key = `${d.nodeId}/${d.seq}`;
    let p = this.pending.get(key);
    if (p && (p.chunks.length !== d.parts || p.chunks[d.part] !== undefined)) {
      // Same announcement with another part count, or a part we already have: not a fresh packet.
      return { result: 'replay' };
    }
    this.remember(nonce, now);
    const chunk = openChunk(d, this.o.key);
    if (d.parts === 1) return this.complete(d.nodeId, d.seq, d.timestampMs, chunk);
    if (!p) {
      p = { nodeId: d.nodeId, seq: d.seq, chunks: new Array<Buffer | undefined>(d.parts).fill(undefined), have: 0, bytes: 0, firstMs: now, timestampMs: d.timestampMs };
      this.pending.set(key, p);
    }
    p.chunks[d.part] = chunk;
    p.have++;
    p.bytes += chunk.length;
    p.timestampMs = Math.max(p.timestampMs, d.timestampMs);
    this.pendingBytes += chunk.length;
    if (p.have === d.parts) {
      this.drop(key, p);
      return this.complete(d.nodeId, d.seq, p.timestampMs, Buffer.concat(p.chunks as Buffer[]));
    }
    this.bound(now);
    return { result: 'ok' };
  }

  /** Announcements being reassembled (for tests and status). */
  get pendingCount(): number {
    return this.pending.size;
  }

  get pendingByteCount(): number {
    return this.pendingBytes;
  }

  private complete(nodeId: string, seq: bigint, timestampMs: number, body: Buffer): { result: PacketResult; message?: ReceivedMessage } {
    let message: ElpMessage;
    try {
      message = decodeBody(nodeId, body);
    } catch {
      // Authentic but undecodable (a newer format?): counted, never applied.
      return { result: 'malformed' };
    }
    this.lastSeq.set(nodeId, seq);
    // Older announcements of this node still being reassembled can never be taken now.
    for (const [k, p] of this.pending) if (p.nodeId === nodeId && p.seq <= seq) this.drop(k, p);
    return { result: 'ok', message: { message, seq, timestampMs } };
  }

  private drop(key: string, p: Pending): void {
    if (this.pending.delete(key)) this.pendingBytes -= p.bytes;
  }

  /** Oldest partial announcements go first when there are too many, too big, or too old. */
  private bound(now: number): void {
    for (const [k, p] of this.pending) {
      const tooOld = now - p.firstMs > this.windowMs;
      if (!tooOld && this.pending.size <= this.maxPending && this.pendingBytes <= this.maxPendingBytes) break;
      this.drop(k, p);
    }
  }

  private remember(nonce: string, now: number): void {
    this.nonces.set(nonce, now);
    while (this.nonces.size > this.maxNonces) {
      const oldest = this.nonces.keys().next().value as string;
      this.nonces.delete(oldest);
    }
  }

  private expireNonces(now: number): void {
    // A nonce older than twice the window cannot come back inside the window.
    for (const [n, t] of this.nonces) {
      if (now - t <= 2 * this.windowMs) break;
      this.nonces.delete(n);
    }
  }
}
