/**
 * The peer table: every node heard, what it announced, when, from where, the round trip measured
 * through echoes, and whether it is reachable (heard within `unreachableAfterMs`). Pure: callers
 * pass the clocks in.
 */
import type { ElpMessage } from './packet.js';

export type PeerState = 'reachable' | 'unreachable';

export interface PeerView {
  id: string;
  name: string;
  /** Where its last packet came from, "ip:port". */
  from: string;
  /** Peer-protocol addresses it announces. */
  addresses: string[];
  state: PeerState;
  /** ISO time of the last announcement taken. */
  lastSeen: string;
  /** Milliseconds since then. */
  ageMs: number;
  /** Last measured round trip in ms, or null before the first echo. */
  rttMs: number | null;
  catalogVersion: string;
  /** Zone → version, as decimal strings (JSON has no bigint). */
  zones: Record<string, string>;
}

interface Entry {
  id: string;
  name: string;
  from: string;
  addresses: string[];
  catalogVersion: bigint;
  zones: Map<string, bigint>;
  lastSeenWall: number;
  lastSeenMono: number;
  lastSeq: bigint;
  rttMs: number | null;
  state: PeerState;
}

export interface PeerChange {
  id: string;
  name: string;
  state: PeerState;
  /** True for the first announcement ever heard from this node. */
  isNew: boolean;
}

export class PeerTable {
  private readonly peers = new Map<string, Entry>();

  constructor(private readonly unreachableAfterMs: number, private readonly maxPeers = 1024) {}

  /**
   * Take an announcement. Returns a change when the peer is new or became reachable again, and
   * whether any zone or catalog version moved (so callers can react to news at once).
   */
  heard(m: ElpMessage, seq: bigint, from: string, wallMs: number, monoMs: number): { change: PeerChange | null; versionsMoved: boolean } {
    let e = this.peers.get(m.nodeId);
    const isNew = !e;
    if (!e) {
      if (this.peers.size >= this.maxPeers) this.evictOldest();
      e = {
        id: m.nodeId, name: m.nodeName, from, addresses: [], catalogVersion: 0n, zones: new Map(),
        lastSeenWall: 0, lastSeenMono: 0, lastSeq: 0n, rttMs: null, state: 'reachable',
      };
      this.peers.set(m.nodeId, e);
    }
    let versionsMoved = isNew || m.catalogVersion !== e.catalogVersion || m.zones.size !== e.zones.size;
    for (const [z, v] of m.zones) if (e.zones.get(z) !== v) versionsMoved = true;
    const wasDown = e.state === 'unreachable';
    Object.assign(e, {
      name: m.nodeName, from, addresses: m.addresses, catalogVersion: m.catalogVersion, zones: new Map(m.zones),
      lastSeenWall: wallMs, lastSeenMono: monoMs, lastSeq: seq, state: 'reachable' as PeerState,
    });
    const change = isNew || wasDown ? { id: e.id, name: e.name, state: e.state, isNew } : null;
    return { change, versionsMoved };
  }

  /** Record a round trip measured for `id`. */
  rtt(id: string, ms: number): void {
    const e = this.peers.get(id);
    if (e && ms >= 0 && Number.isFinite(ms)) e.rttMs = Math.round(ms * 1000) / 1000;
  }

  /** Mark peers unheard for too long unreachable; returns those that changed. */
  expire(monoMs: number): PeerChange[] {
    const out: PeerChange[] = [];
    for (const e of this.peers.values()) {
      if (e.state === 'reachable' && monoMs - e.lastSeenMono > this.unreachableAfterMs) {
        e.state = 'unreachable';
        out.push({ id: e.id, name: e.name, state: e.state, isNew: false });
      }
    }
    return out;
  }

  /** Last sequence heard from each reachable peer and when (for echoes). */
  echoSources(): { id: string; seq: bigint; heardMono: number }[] {
    return [...this.peers.values()].filter((e) => e.state === 'reachable').map((e) => ({ id: e.id, seq: e.lastSeq, heardMono: e.lastSeenMono }));
  }

  list(monoMs: number): PeerView[] {
    return [...this.peers.values()]
      .map((e) => ({
        id: e.id,
        name: e.name,
        from: e.from,
        addresses: [...e.addresses],
        state: e.state,
        lastSeen: new Date(e.lastSeenWall).toISOString(),
        ageMs: Math.max(0, Math.round(monoMs - e.lastSeenMono)),
        rttMs: e.rttMs,
        catalogVersion: e.catalogVersion.toString(),
        zones: Object.fromEntries([...e.zones].map(([z, v]) => [z, v.toString()])),
      }))
      .sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }

  get size(): number {
    return this.peers.size;
  }

  private evictOldest(): void {
    let oldest: Entry | null = null;
    for (const e of this.peers.values()) if (!oldest || e.lastSeenMono < oldest.lastSeenMono) oldest = e;
    if (oldest) this.peers.delete(oldest.id);
  }
}
