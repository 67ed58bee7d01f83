import type { Config } from '../config/types.js';
import type { Logger } from '../daemon/logger.js';
import { GvError } from '../errors.js';
import type { PeerConnector, PeerDirectory } from '../replication/source.js';
import type { Zfs } from '../zfs/zfs.js';
import { createBacking, defaultDataset, defaultZoneDir, setBackingQuota } from './backing.js';
import type { Catalog, MergeResult, ZoneBacking } from './catalog.js';

/**
 * Catalog replication. ELP announces each node's catalog version; when a peer's differs from the
 * one last merged from it, its snapshot is fetched over the peer channel and merged (catalog.ts,
 * last-writer-wins). The merge bumps our own version, so nodes that only hear us get it too.
 * Then this node's side is brought in line: a zone it is a member of and has no storage for gets
 * a dataset (ZFS configured and usable) or a directory with the zone's quota; quota changes reach
 * local datasets; a zone removed elsewhere stops being served but its data is kept (logged).
 */

type Log = Pick<Logger, 'info' | 'warn' | 'error'>;

export interface CatalogSyncOptions {
  catalog: Catalog;
  directory: PeerDirectory;
  connector: PeerConnector;
  /** This node's name (config node.name): membership is by name. */
  selfName: string;
  /** This node's id: local catalog changes are stamped with it. */
  nodeId: string;
  zfs: Zfs;
  config: Config;
  /** Where directory backings go (default: config node.state_dir). */
  stateDir?: string;
  /** Re-read the catalog and open/close zones (the daemon's reload). */
  onChanged: () => Promise<void>;
  log: Log;
  /** Retry delays after a failed fetch: base doubled per attempt up to max; gives up after attempts. */
  retry?: { baseMs?: number; maxMs?: number; attempts?: number };
}

export interface CatalogSync {
  /** The catalog version last merged from a peer (its own counter), if any. */
  merged(peerId: string): string | undefined;
  /** Check every reachable peer now (also done at start, on news and on reachability). */
  poke(peerId?: string): void;
  /** Resolves when no fetch is running or scheduled (tests). */
  idle(): Promise<void>;
  stop(): Promise<void>;
}

interface PeerState {
  merged: string | undefined;
  running: Promise<void> | null;
  again: boolean;
  attempts: number;
  timer: NodeJS.Timeout | null;
}

/** At most this many fetches in a row for one peer before waiting for the next news. */
const MAX_ROUNDS = 8;
/** Longest stop() waits for a fetch or merge in flight. */
const STOP_WAIT_MS = 5000;

export function startCatalogSync(o: CatalogSyncOptions): CatalogSync {
  o.catalog.setNodeId(o.nodeId);
  const baseMs = o.retry?.baseMs ?? 500;
  const maxMs = o.retry?.maxMs ?? 30_000;
  const maxAttempts = o.retry?.attempts ?? 10;
  const stateDir = o.stateDir ?? o.config.node.stateDir;
  const peers = new Map<string, PeerState>();
  let stopped = false;
  // Merges, backing work and reloads run one at a time for the whole node.
  let chain: Promise<void> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn);
    chain = p.then(() => undefined, () => undefined);
    return p;
  };

  const state = (id: string): PeerState => {
    let s = peers.get(id);
    if (!s) peers.set(id, (s = { merged: undefined, running: null, again: false, attempts: 0, timer: null }));
    return s;
  };

  const announced = (id: string): string | null => {
    const p = o.directory.peers().find((x) => x.id === id);
    if (!p || p.state !== 'reachable' || !p.catalogVersion) return null;
    return p.catalogVersion;
  };

  const check = (id: string): void => {
    if (stopped) return;
    const s = state(id);
    const want = announced(id);
    if (want === null || want === s.merged) return;
    if (s.running) {
      s.again = true;
      return;
    }
    if (s.timer) return; // a retry is scheduled; it fetches the newest anyway
    s.running = run(id, s).finally(() => {
      s.running = null;
    });
  };

  const run = async (id: string, s: PeerState): Promise<void> => {
    for (let round = 0; round < MAX_ROUNDS && !stopped; round++) {
      s.again = false;
      const want = announced(id);
      if (want === null || want === s.merged) return;
      try {
        const src = o.connector.source(id);
        if (!src) throw new GvError('EAGAIN', 'no address for this peer yet');
        const snap = await src.catalog();
        if (stopped) return;
        await serial(() => apply(id, snap));
        s.merged = String(snap.version);
        s.attempts = 0;
      } catch (err) {
        s.attempts++;
        const msg = err instanceof Error ? err.message : String(err);
        if (s.attempts >= maxAttempts) {
          o.log.error({ peer: id, err: msg, attempts: s.attempts }, 'catalog fetch failed; waiting for the peer\'s next announcement');
          s.attempts = 0;
          return;
        }
        const delay = Math.min(maxMs, baseMs * 2 ** (s.attempts - 1));
        o.log.warn({ peer: id, err: msg, attempt: s.attempts, retryMs: delay }, 'catalog fetch failed; retrying');
        s.timer = setTimeout(() => {
          s.timer = null;
          check(id);
        }, delay);
        return;
      }
      if (!s.again) return;
    }
  };

  const apply = async (peerId: string, snap: Parameters<Catalog['merge']>[0]): Promise<void> => {
    const res = o.catalog.merge(snap);
    report(peerId, res);
    const local = await reconcileBackings(o.catalog, { selfName: o.selfName, zfs: o.zfs, config: o.config, stateDir, log: o.log }, res);
    if (res.changed.length > 0 || local.length > 0) {
      try {
        await o.onChanged();
      } catch (err) {
        o.log.error({ err: String(err) }, 'reload after a catalog merge failed');
      }
    }
  };

  const report = (peerId: string, res: MergeResult): void => {
    for (const z of res.zones) {
      if (z.kind === 'removed') {
        o.log.warn(
          { zone: z.name, by: z.by, peer: peerId, backing: z.backing },
          z.backing
            ? `zone ${z.name} was destroyed by another node: no longer served here; its data stays in ${z.backing.kind === 'zfs' ? `dataset ${z.backing.dataset}` : z.backing.path} (gv zone destroy ${z.name} on this node removes it)`
            : `zone ${z.name} was destroyed by another node`,
        );
      } else o.log.info({ zone: z.name, by: z.by, peer: peerId, kind: z.kind }, `catalog: zone ${z.name} ${z.kind}`);
    }
    for (const c of res.fingerprintConflicts) {
      o.log.error({ node: c.node, nodeId: c.nodeId, pinned: c.local, offered: c.remote, peer: peerId }, 'catalog: a peer offers another certificate fingerprint for a pinned node; kept the pinned one');
    }
    for (const r of res.rejected) o.log.warn({ peer: peerId, record: r }, 'catalog: malformed record from a peer ignored');
  };

  const offNews = o.directory.onNews((id) => check(id));
  const offPeer = o.directory.onPeerChange((c) => {
    if (c.state === 'reachable') check(c.id);
  });
  // Storage for zones merged before a restart whose backing was not made yet, then every peer.
  void serial(async () => {
    const made = await reconcileBackings(o.catalog, { selfName: o.selfName, zfs: o.zfs, config: o.config, stateDir, log: o.log }, null);
    if (made.length > 0) await o.onChanged().catch((err) => o.log.error({ err: String(err) }, 'reload failed'));
  });
  for (const p of o.directory.peers()) check(p.id);

  return {
    merged: (id) => peers.get(id)?.merged,
    poke: (id) => {
      if (id) check(id);
      else for (const p of o.directory.peers()) check(p.id);
    },
    idle: async () => {
      for (let i = 0; i < 1000; i++) {
        const busy = [...peers.values()].filter((s) => s.running || s.timer);
        if (busy.length === 0) {
          await chain;
          if (![...peers.values()].some((s) => s.running || s.timer)) return;
          continue;
        }
        const running = busy.map((s) => s.running).filter((p): p is Promise<void> => p !== null);
        if (running.length > 0) await Promise.all(running);
        else await new Promise((r) => setTimeout(r, 20));
      }
      throw new GvError('EAGAIN', 'catalog sync did not settle');
    },
    stop: async () => {
      stopped = true;
      offNews();
      offPeer();
      for (const s of peers.values()) {
        if (s.timer) clearTimeout(s.timer);
        s.timer = null;
      }
      // A fetch hanging in the transport must not hold the daemon's stop: wait a bounded time.
      let t: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...peers.values()].map((s) => s.running ?? Promise.resolve())).then(() => chain),
        new Promise<void>((r) => (t = setTimeout(r, STOP_WAIT_MS))),
      ]);
      clearTimeout(t);
    },
  };
}

export interface BackingContext {
  selfName: string;
  zfs: Zfs;
  config: Config;
  stateDir: string | null | undefined;
  log: Log;
}

/**
 * Bring this node's storage in line with the catalog: create the backing of every zone this
 * node is a member of and has none of (dataset when [zfs] pool is set and ZFS works, else a
 * directory under the state dir), and apply merged quota changes to local datasets. Never
 * destroys anything. Returns the zones whose backing was created. Errors are logged per zone.
 */
export async function reconcileBackings(catalog: Catalog, c: BackingContext, merged: MergeResult | null): Promise<string[]> {
  const made: string[] = [];
  let zfsOk: boolean | null = null;
  for (const z of catalog.list()) {
    if (!z.members.includes(c.selfName) || z.backing) continue;
    try {
      let b: ZoneBacking;
      const ds = defaultDataset(c.config, z.name);
      if (ds && zfsOk === null) zfsOk = (await c.zfs.detect()).available;
      if (ds && zfsOk) b = { kind: 'zfs', dataset: ds };
      else {
        if (!c.stateDir) throw new GvError('CONFIG', 'node.state_dir is not set; cannot place the zone directory');
        b = { kind: 'dir', path: defaultZoneDir(c.stateDir, z.name) };
      }
      try {
        await createBacking(b, z.quotaBytes, c.zfs);
      } catch (err) {
        // A dataset left from an earlier life of this zone (destroyed elsewhere, data kept here) is adopted.
        if (!(err instanceof GvError && err.code === 'EEXIST' && b.kind === 'zfs')) throw err;
        await c.zfs.setQuota(b.dataset, BigInt(z.quotaBytes));
      }
      // The zone may have gone while the storage was being made: then keep it unrecorded.
      if (!catalog.get(z.name)) continue;
      catalog.setBacking(z.name, b);
      made.push(z.name);
      c.log.info({ zone: z.name, backing: b }, `zone ${z.name}: created its ${b.kind === 'zfs' ? `dataset ${b.dataset}` : `directory ${b.path}`} on this node`);
    } catch (err) {
      c.log.error({ zone: z.name, err: err instanceof Error ? err.message : String(err) }, `zone ${z.name}: cannot create its storage on this node`);
    }
  }
  for (const ch of merged?.zones ?? []) {
    if (ch.kind !== 'updated' || !ch.quotaChanged) continue;
    const z = catalog.get(ch.name);
    if (!z?.backing) continue;
    try {
      await setBackingQuota(z.name, z.backing, z.quotaBytes, c.zfs);
    } catch (err) {
      c.log.warn({ zone: z.name, err: err instanceof Error ? err.message : String(err) }, `zone ${z.name}: new quota not applied to local storage`);
    }
  }
  return made;
}
