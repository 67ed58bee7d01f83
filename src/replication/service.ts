/**
 * The replication service of a node: on ELP news (a member's zone version moved), when a peer
 * becomes reachable, and periodically as a safety net, it pulls from every reachable member of
 * every served zone that is ahead of this node's cursor — closest first, one pull per zone at a
 * time, a bounded number of pulls at once, block bytes under an optional bandwidth limit. Pulled
 * changes are journaled with their original vectors and origins, so they travel on to nodes that
 * only see this one. Also: the pull gate, per-member status, and the conflict copies list.
 */
import type { ConflictCopy } from '../control/protocol.js';
import type { GvDatabase } from '../journal/db.js';
import type { ZoneJournal } from '../journal/zone-journal.js';
import { RateMeter, TokenBucket } from './bandwidth.js';
import { ZoneApplier, type ApplyLog, type ApplyStats, type ZoneSpace } from './apply.js';
import { originalOf } from './conflict.js';
import { PeerCursors } from './cursors.js';
import { PendingPaths } from './pull-gate.js';
import { pullOnce } from './puller.js';
import type {
  Consistency, MemberSyncStatus, PeerConnector, PeerDirectory, PullGate, ZoneSyncStatus,
} from './source.js';
import { cleanStaging } from './staging.js';

export interface ReplicatedZone {
  name: string;
  root: string;
  journal: ZoneJournal;
  /** Member node names (this node's own name may be among them). */
  members: string[];
  consistency: Consistency;
  /** Usage and quota of the zone's backend (applied changes are counted; a directory zone's quota is enforced). */
  space?: ZoneSpace;
}

export interface ReplicationLog extends ApplyLog {
  info?(obj: object, msg: string): void;
}

export interface ReplicationServiceOptions {
  /** Pulls running at once across zones (default 4). */
  concurrency?: number;
  maxBandwidthBytesPerSec?: number;
  /** How long a write waits for a pending pull (the NFS side's JUKEBOX bound; default 2000). */
  pullWaitMs?: number;
  /** Safety-net pass interval (default 10 s; 0 disables). */
  intervalMs?: number;
  /** Files assembled at once per pull (default 16). */
  fileConcurrency?: number;
  /** A new member syncs from a listing when the peer's zone version is above this (default 2000). */
  snapshotMinVersion?: number;
}

export interface ReplicationServiceDeps {
  db: GvDatabase;
  nodeId: string;
  /** This node's name (members are names). */
  nodeName?: string;
  zones: () => ReplicatedZone[];
  directory: PeerDirectory;
  connector: PeerConnector;
  log?: ReplicationLog;
  options?: ReplicationServiceOptions;
}

interface MemberState {
  pulling: boolean;
  /** Failed pulls in a row, and when the next may start (exponential backoff, at most 30 s). */
  failures: number;
  notBefore: number;
  remoteVersion: bigint;
  lastError: string | null;
  bytesFetched: number;
  bytesToFetch: number;
  rate: RateMeter;
}

export class ReplicationService implements PullGate {
  readonly gate: PendingPaths;
  private readonly cursors: PeerCursors;
  private readonly bucket: TokenBucket;
  private readonly members = new Map<string, MemberState>();
  private readonly appliers = new Map<string, ZoneApplier>();
  /** Zones with a pull running. */
  private readonly busyZones = new Set<string>();
  private running = 0;
  private started = false;
  private stopping = false;
  private timer: NodeJS.Timeout | null = null;
  private passQueued = false;
  private readonly unsubs: (() => void)[] = [];
  private readonly inflight = new Set<Promise<void>>();
  private readonly syncWaiters = new Set<() => void>();

  constructor(private readonly d: ReplicationServiceDeps) {
    this.cursors = new PeerCursors(d.db);
    this.bucket = new TokenBucket(d.options?.maxBandwidthBytesPerSec);
    this.gate = new PendingPaths((zone) => this.zone(zone)?.consistency !== 'available');
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    for (const z of this.d.zones()) void cleanStaging(z.root).catch(() => undefined);
    this.unsubs.push(this.d.directory.onNews(() => this.kick()));
    this.unsubs.push(this.d.directory.onPeerChange((c) => {
      if (c.state === 'reachable') this.kick();
    }));
    const every = this.d.options?.intervalMs ?? 10_000;
    if (every > 0) {
      this.timer = setInterval(() => this.kick(), every);
      this.timer.unref();
    }
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const u of this.unsubs.splice(0)) u();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // Bounded: a pull notices `stopping` between pages and steps.
    const deadline = Date.now() + 10_000;
    while (this.inflight.size > 0 && Date.now() < deadline) {
      await Promise.race([...this.inflight, new Promise((r) => setTimeout(r, 100))]);
    }
  }

  /** PullGate: see pull-gate.ts. */
  wait(zone: string, path: Buffer, maxWaitMs: number): Promise<boolean> | null {
    return this.gate.wait(zone, path, maxWaitMs);
  }

  /** PullGate fast path: nothing of `zone` pending. */
  idle(zone: string): boolean {
    return this.gate.idle(zone);
  }

  /** Look for work soon (coalesces bursts of news). */
  kick(): void {
    if (!this.started || this.stopping || this.passQueued) return;
    this.passQueued = true;
    setImmediate(() => {
      this.passQueued = false;
      this.pass();
    });
  }

  private zone(name: string): ReplicatedZone | undefined {
    return this.d.zones().find((z) => z.name === name);
  }

  private isSelf(p: { id: string; name: string }): boolean {
    return p.id === this.d.nodeId || (this.d.nodeName !== undefined && p.name === this.d.nodeName);
  }

  private member(zone: string, peerId: string): MemberState {
    const k = `${zone}\0${peerId}`;
    let m = this.members.get(k);
    if (!m) {
      m = { pulling: false, failures: 0, notBefore: 0, remoteVersion: 0n, lastError: null, bytesFetched: 0, bytesToFetch: 0, rate: new RateMeter() };
      this.members.set(k, m);
    }
    return m;
  }

  private applier(z: ReplicatedZone): ZoneApplier {
    let a = this.appliers.get(z.name);
    if (!a || a.j !== z.journal) {
      a = new ZoneApplier({ name: z.name, root: z.root, journal: z.journal, space: z.space }, {
        log: this.d.log, bucket: this.bucket, fileConcurrency: this.d.options?.fileConcurrency, stopped: () => this.stopping,
      });
      this.appliers.set(z.name, a);
    }
    a.useSpace(z.space);
    return a;
  }

  /** Applier counters per zone (tests, metrics). */
  applyStats(zone: string): ApplyStats | undefined {
    return this.appliers.get(zone)?.stats;
  }

  /** Start the pulls that are due: per zone the closest reachable member that is ahead. */
  private pass(): void {
    if (this.stopping) return;
    const limit = Math.max(1, this.d.options?.concurrency ?? 4);
    const peers = this.d.directory.peers();
    for (const z of this.d.zones()) {
      if (this.running >= limit) break;
      if (this.busyZones.has(z.name) || z.journal.isClosed) continue;
      const ahead = peers
        .filter((p) => !this.isSelf(p) && p.state === 'reachable' && z.members.includes(p.name))
        .filter((p) => {
          const adv = BigInt(p.zones[z.name] ?? '0');
          const m = this.member(z.name, p.id);
          if (adv > m.remoteVersion) m.remoteVersion = adv;
          return adv > this.cursors.get(z.name, p.id) && m.notBefore <= Date.now();
        })
        .sort((a, b) => (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity));
      const peer = ahead[0];
      if (!peer) continue;
      const source = this.d.connector.source(peer.id);
      if (!source) continue;
      this.busyZones.add(z.name);
      this.running++;
      const m = this.member(z.name, peer.id);
      m.pulling = true;
      const applier = this.applier(z);
      const pr = (async () => {
        let complete = true;
        const onFetched = (n: number) => {
          m.bytesFetched += n;
          m.bytesToFetch = Math.max(0, m.bytesToFetch - n);
          m.rate.add(n);
        };
        const onPlanned = (n: number) => {
          m.bytesToFetch += n;
        };
        applier.listen(onFetched, onPlanned);
        try {
          complete = await pullOnce(
            { zone: z.name, root: z.root, journal: z.journal, peerId: peer.id }, source, this.cursors, this.gate, applier,
            (p) => {
              if (p.remoteVersion > m.remoteVersion) m.remoteVersion = p.remoteVersion;
            },
            () => this.stopping,
            { snapshotMinVersion: this.d.options?.snapshotMinVersion !== undefined ? BigInt(this.d.options.snapshotMinVersion) : undefined },
          );
          m.lastError = null;
          m.failures = 0;
        } catch (err) {
          m.lastError = err instanceof Error ? err.message : String(err);
          if (this.stopping) return;
          m.failures++;
          m.notBefore = Date.now() + Math.min(30_000, 250 * 2 ** Math.min(m.failures, 7));
          this.d.log?.warn({ zone: z.name, peer: peer.name, err: m.lastError }, 'pull failed; retried later');
        } finally {
          m.pulling = false;
          m.bytesToFetch = 0;
          this.busyZones.delete(z.name);
          this.running--;
          this.notifySync();
        }
        // More to do (another member ahead, or this one still): look again.
        if (complete && m.lastError === null) this.kick();
        else if (!this.stopping) setTimeout(() => this.kick(), Math.max(50, m.notBefore - Date.now())).unref();
      })();
      this.inflight.add(pr);
      void pr.finally(() => this.inflight.delete(pr));
    }
  }

  private notifySync(): void {
    for (const w of [...this.syncWaiters]) w();
  }

  status(): ZoneSyncStatus[] {
    const peers = this.d.directory.peers();
    const out: ZoneSyncStatus[] = [];
    for (const z of this.d.zones()) {
      const members: MemberSyncStatus[] = [];
      for (const name of z.members) {
        const p = peers.find((x) => x.name === name);
        if (p && this.isSelf(p)) continue;
        if (!p && name === this.d.nodeName) continue;
        const id = p?.id ?? '';
        const m = id ? this.member(z.name, id) : undefined;
        const adv = BigInt(p?.zones[z.name] ?? '0');
        const advertised = m && m.remoteVersion > adv ? m.remoteVersion : adv;
        const applied = id ? this.cursors.get(z.name, id) : 0n;
        members.push({
          peerId: id, peerName: name, state: p ? p.state : 'unknown', advertised: String(advertised), applied: String(applied),
          behind: String(advertised > applied ? advertised - applied : 0n), bytesToFetch: m?.bytesToFetch ?? 0,
          rateBytesPerSec: m?.rate.rate() ?? 0, bytesFetched: m?.bytesFetched ?? 0, pulling: m?.pulling ?? false,
          lastError: m?.lastError ?? null,
        });
      }
      out.push({
        zone: z.name, version: String(z.journal.version()), consistency: z.consistency, members,
        pendingPaths: this.gate.count(z.name),
        inSync: members.every((m) => m.state !== 'reachable' || BigInt(m.behind) === 0n),
      });
    }
    return out;
  }

  /** Resolves true once `zone` is in sync with every reachable member, false after `timeoutMs`. */
  async waitInSync(zone: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    this.kick();
    for (let i = 0; i < 100_000; i++) {
      const s = this.status().find((x) => x.zone === zone);
      if (s && s.inSync && !s.members.some((m) => m.pulling)) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 200));
        function done(): void {
          clearTimeout(t);
          waiters.delete(done);
          resolve();
        }
        const waiters = this.syncWaiters;
        waiters.add(done);
      });
    }
    return false;
  }

  /** Conflict copies of `zone` (every zone when absent), from the index. */
  conflicts(zone?: string): (ConflictCopy & { loserOrigin: string; mtimeNs: string })[] {
    const out: (ConflictCopy & { loserOrigin: string; mtimeNs: string })[] = [];
    for (const z of this.d.zones()) {
      if (zone !== undefined && z.name !== zone) continue;
      out.push(...conflictsOf(z.name, z.journal));
    }
    return out;
  }
}

/** Conflict copies in one zone's index. */
export function conflictsOf(zone: string, journal: ZoneJournal): (ConflictCopy & { loserOrigin: string; mtimeNs: string })[] {
  const out: (ConflictCopy & { loserOrigin: string; mtimeNs: string })[] = [];
  for (const e of journal.index.all()) {
    const orig = originalOf(e.path);
    if (!orig) continue;
    const m = /\.gv-conflict-(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})-([^.]+)/.exec(e.path.toString('latin1'));
    out.push({
      zone, path: e.path.toString(), original: orig.toString(),
      at: m ? `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z` : '', node: m?.[7] ?? '',
      size: e.type === 'file' ? Number(e.size) : null, loserOrigin: e.origin, mtimeNs: String(e.mtimeNs),
    });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}
