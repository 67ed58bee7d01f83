/**
 * Echolocation: announce this node's zone versions to the cluster and keep a table of what the
 * other nodes announce. An announcement goes out at once when a version changes (at most one per
 * `debounceMs`), and every `intervalMs` otherwise; a node unheard for `unreachableAfterMs` is
 * marked unreachable. Round trips are measured by echoing, in each announcement, the last
 * sequence heard from every peer and how long it was held: the peer subtracts the hold time from
 * the time since it sent that sequence.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Beacon, BeaconFrom } from './beacon.js';
import { encodeMessage, DEFAULT_MAX_PACKET, type ElpMessage } from './packet.js';
import { PeerTable, type PeerChange, type PeerView } from './peers.js';
import { ElpReceiver, PACKET_RESULTS, type PacketResult } from './receiver.js';
import type { ZoneVersions } from '../journal/versions.js';

export const DEFAULT_INTERVAL_MS = 2000;
export const DEFAULT_DEBOUNCE_MS = 10;
export const DEFAULT_WINDOW_MS = 30_000;
/** Sent sequences remembered for round-trip measurement. */
const SENT_MEMORY = 256;

export interface ElpDeps {
  beacon: Beacon;
  versions: ZoneVersions;
  catalogVersion: () => number | bigint;
  self: { id: string; name: string };
  key: Buffer;
  clusterName: string;
  /** Peer-protocol addresses announced ("host:port"). */
  addresses: () => string[];
  log?: (level: 'info' | 'warn' | 'debug', obj: Record<string, unknown>, msg: string) => void;
}

export interface ElpOptions {
  intervalMs?: number;
  /** Default: three intervals. */
  unreachableAfterMs?: number;
  debounceMs?: number;
  /** Accepted clock difference between nodes, ± ms. */
  windowMs?: number;
  maxPacketBytes?: number;
  /** Clocks (tests): wall time in ms since the epoch and a monotonic ms clock. */
  clock?: { wall: () => number; mono: () => number };
}

export interface ElpSnapshot {
  self: { id: string; name: string; addresses: string[]; catalogVersion: string; zones: Record<string, string> };
  cluster: string;
  intervalMs: number;
  unreachableAfterMs: number;
  peers: PeerView[];
  /** Packets received, by result. */
  packets: Record<PacketResult, number>;
  announcements: number;
  sendErrors: number;
}

export class ElpService {
  readonly packets: Record<PacketResult, number> = Object.fromEntries(PACKET_RESULTS.map((r) => [r, 0])) as Record<PacketResult, number>;
  announcements = 0;
  sendErrors = 0;
  private readonly table: PeerTable;
  private readonly receiver: ElpReceiver;
  private readonly intervalMs: number;
  private readonly unreachableAfterMs: number;
  private readonly debounceMs: number;
  private readonly maxPacketBytes: number;
  private readonly wall: () => number;
  private readonly mono: () => number;
  private seq: bigint;
  private readonly sentAt = new Map<bigint, number>();
  private timer: NodeJS.Timeout | null = null;
  private dueMono = Infinity;
  private lastSentMono = -Infinity;
  private expiry: NodeJS.Timeout | null = null;
  private sending = false;
  /** Catalog version in the last announcement (a change is announced at once, checked every tick). */
  private sentCatalog: bigint | null = null;
  private again = false;
  private running = false;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly changeListeners = new Set<(c: PeerChange) => void>();
  private readonly newsListeners = new Set<(peer: string) => void>();

  constructor(private readonly d: ElpDeps, o: ElpOptions = {}) {
    this.intervalMs = o.intervalMs ?? DEFAULT_INTERVAL_MS;
    this.unreachableAfterMs = o.unreachableAfterMs ?? 3 * this.intervalMs;
    this.debounceMs = o.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.maxPacketBytes = o.maxPacketBytes ?? DEFAULT_MAX_PACKET;
    this.wall = o.clock?.wall ?? Date.now;
    this.mono = o.clock?.mono ?? (() => performance.now());
    // Announcements are at most one per debounce interval (< 1 per ms), so a sequence that starts
    // at the wall clock in ms stays above the last one sent before a restart.
    this.seq = BigInt(Math.trunc(this.wall()));
    this.table = new PeerTable(this.unreachableAfterMs);
    this.receiver = new ElpReceiver({ key: d.key, clusterName: d.clusterName, selfId: d.self.id, windowMs: o.windowMs ?? DEFAULT_WINDOW_MS, now: this.wall });
  }

  async start(): Promise<void> {
    if (this.running) return;
    this.unsubscribe.push(this.d.beacon.onReceive((buf, from) => this.receive(buf, from)));
    await this.d.beacon.start();
    this.running = true;
    this.unsubscribe.push(this.d.versions.onChange(() => this.announceSoon()));
    const tick = Math.max(10, Math.min(this.intervalMs, this.unreachableAfterMs) / 4);
    this.expiry = setInterval(() => this.expire(), tick);
    this.expiry.unref();
    this.announceSoon();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.timer) clearTimeout(this.timer);
    if (this.expiry) clearInterval(this.expiry);
    this.timer = this.expiry = null;
    await this.d.beacon.close();
  }

  /** Announce as soon as the debounce interval allows (a version moved, a peer appeared). */
  announceSoon(): void {
    if (!this.running) return;
    const now = this.mono();
    this.schedule(Math.max(now, this.lastSentMono + this.debounceMs));
  }

  peers(): PeerView[] {
    this.expire();
    return this.table.list(this.mono());
  }

  /** Called when a peer appears, comes back, or becomes unreachable. */
  onPeerChange(cb: (c: PeerChange) => void): () => void {
    this.changeListeners.add(cb);
    return () => this.changeListeners.delete(cb);
  }

  /** Called with the peer id whenever an announcement moved a peer's zone or catalog versions. */
  onNews(cb: (peerId: string) => void): () => void {
    this.newsListeners.add(cb);
    return () => this.newsListeners.delete(cb);
  }

  snapshot(): ElpSnapshot {
    return {
      self: {
        id: this.d.self.id,
        name: this.d.self.name,
        addresses: this.d.addresses(),
        catalogVersion: String(this.d.catalogVersion()),
        zones: Object.fromEntries([...this.d.versions.current()].map(([z, v]) => [z, v.toString()])),
      },
      cluster: this.d.clusterName,
      intervalMs: this.intervalMs,
      unreachableAfterMs: this.unreachableAfterMs,
      peers: this.peers(),
      packets: { ...this.packets },
      announcements: this.announcements,
      sendErrors: this.sendErrors,
    };
  }

  private schedule(dueMono: number): void {
    if (!this.running || dueMono >= this.dueMono) return;
    if (this.timer) clearTimeout(this.timer);
    this.dueMono = dueMono;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.dueMono = Infinity;
      void this.announce();
    }, Math.max(0, dueMono - this.mono()));
    this.timer.unref();
  }

  private message(): ElpMessage {
    const now = this.mono();
    return {
      nodeId: this.d.self.id,
      nodeName: this.d.self.name,
      addresses: this.d.addresses(),
      catalogVersion: BigInt(this.d.catalogVersion()),
      zones: this.d.versions.current(),
      echoes: this.table.echoSources().map((s) => ({ nodeId: s.id, seq: s.seq, holdMs: now - s.heardMono })),
    };
  }

  private async announce(): Promise<void> {
    if (!this.running) return;
    if (this.sending) {
      this.again = true;
      return;
    }
    this.sending = true;
    try {
      const seq = ++this.seq;
      const m = this.message();
      this.sentCatalog = m.catalogVersion;
      const packets = encodeMessage(m, {
        key: this.d.key, clusterName: this.d.clusterName, seq, timestampMs: this.wall(), nonce: () => randomBytes(16), maxPacketBytes: this.maxPacketBytes,
      });
      const sentMono = this.mono();
      this.lastSentMono = sentMono;
      this.sentAt.set(seq, sentMono);
      if (this.sentAt.size > SENT_MEMORY) this.sentAt.delete(this.sentAt.keys().next().value as bigint);
      this.announcements++;
      for (const p of packets) {
        try {
          await this.d.beacon.send(p);
        } catch (err) {
          this.sendErrors++;
          this.d.log?.('debug', { err: String(err) }, 'elp send failed');
        }
      }
    } catch (err) {
      this.sendErrors++;
      this.d.log?.('warn', { err: String(err) }, 'elp announcement failed');
    } finally {
      this.sending = false;
      if (this.running) {
        // A request that came in while sending goes out after the debounce; else the next periodic one.
        this.schedule(this.lastSentMono + (this.again ? this.debounceMs : this.intervalMs));
        this.again = false;
      }
    }
  }

  private receive(buf: Buffer, from: BeaconFrom): void {
    const r = this.receiver.accept(buf);
    this.packets[r.result]++;
    if (r.result !== 'ok' && r.result !== 'self') {
      this.d.log?.('debug', { result: r.result, from: `${from.address}:${from.port}` }, 'elp packet dropped');
    }
    if (!r.message) return;
    const { message, seq } = r.message;
    const nowMono = this.mono();
    const { change, versionsMoved } = this.table.heard(message, seq, `${from.address}:${from.port}`, this.wall(), nowMono);
    const echo = message.echoes.find((e) => e.nodeId === this.d.self.id);
    const sent = echo ? this.sentAt.get(echo.seq) : undefined;
    if (echo && sent !== undefined) this.table.rtt(message.nodeId, nowMono - sent - echo.holdMs);
    if (change) {
      this.d.log?.('info', { peer: change.name, id: change.id, from: `${from.address}:${from.port}` }, change.isNew ? 'elp peer found' : 'elp peer reachable again');
      for (const cb of this.changeListeners) cb(change);
      // Tell a newcomer (or a returning node) our state now rather than an interval later.
      this.announceSoon();
    }
    if (versionsMoved) for (const cb of this.newsListeners) cb(message.nodeId);
  }

  private expire(): void {
    if (this.running && this.sentCatalog !== null && BigInt(this.d.catalogVersion()) !== this.sentCatalog) this.announceSoon();
    for (const c of this.table.expire(this.mono())) {
      this.d.log?.('info', { peer: c.name, id: c.id }, 'elp peer unreachable');
      for (const cb of this.changeListeners) cb(c);
    }
  }
}
