/**
 * Journaling for the zones a daemon serves: `attach(zone, root)` gives a zone its journal, its
 * start-up scan (queued, not awaited) and its watcher, and returns the journaled ZoneFs to serve.
 * `versions` is the node-wide ZoneVersions (ELP reads it).
 */
import type { FileId } from '../vfs/types.js';
import { journaled, type JournaledZoneFs } from '../vfs/journaled.js';
import type { LocalZoneFs } from '../vfs/local.js';
import type { ChangeKind } from './changes.js';
import type { GvDatabase } from './db.js';
import type { NodeStore } from './nodes.js';
import { newScanStats, scanZone, type ScanStats } from './scan.js';
import { VersionRegistry } from './versions.js';
import { ZoneWatcher } from './watch.js';
import { ZoneJournal } from './zone-journal.js';

export interface JournalServiceOptions {
  nodeId: string;
  warn?: (obj: object, msg: string) => void;
  /** Watch zone directories for out-of-band changes (default true). */
  watch?: boolean;
  settleMs?: number;
  /** How long queued journal tasks wait to be committed together (ZoneJournal's batchMs). */
  batchMs?: number;
  /** Each committed change (metrics). */
  onRecord?: (zone: string, kind: ChangeKind) => void;
  /** Blocks hashed (metrics). */
  onHashed?: (zone: string, blocks: number) => void;
}

export interface AttachedZone {
  fs: JournaledZoneFs;
  journal: ZoneJournal;
  /** The start-up scan's result once it ran. */
  scanned: Promise<ScanStats>;
  watcher: ZoneWatcher | null;
}

/** Relative path of `id` from the zone's node store (no I/O); undefined when the chain is unknown. */
export function nodePath(nodes: NodeStore, rootId: FileId, id: FileId): Buffer | undefined {
  if (id === rootId) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  let cur = id;
  for (let depth = 0; cur !== rootId; depth++) {
    const row = nodes.get(cur);
    if (!row || depth >= 4096 || row.parent === cur) return undefined;
    parts.push(row.name);
    cur = row.parent;
  }
  const sep = Buffer.from('/');
  const out: Buffer[] = [];
  for (let i = parts.length - 1; i >= 0; i--) {
    out.push(parts[i]!);
    if (i > 0) out.push(sep);
  }
  return Buffer.concat(out);
}

export class JournalService {
  readonly versions: VersionRegistry;

  constructor(private readonly db: GvDatabase, private readonly opts: JournalServiceOptions) {
    this.versions = new VersionRegistry((err) => opts.warn?.({ err: String(err) }, 'version listener failed'));
  }

  async attach(zone: LocalZoneFs, root: string): Promise<AttachedZone> {
    const journal = new ZoneJournal({
      db: this.db, zone, nodeId: this.opts.nodeId, registry: this.versions, settleMs: this.opts.settleMs,
      batchMs: this.opts.batchMs, pathOf: (id) => nodePath(zone.nodes, zone.rootId, id), warn: this.opts.warn,
      onRecord: this.opts.onRecord ? (kind) => this.opts.onRecord!(zone.name, kind) : undefined,
    });
    let watcher: ZoneWatcher | null = null;
    if (this.opts.watch !== false) {
      const w = new ZoneWatcher(journal, root, { warn: this.opts.warn });
      try {
        await w.start();
        watcher = w;
        journal.beforeClose.push(() => w.stop());
      } catch (err) {
        await w.stop().catch(() => undefined);
        this.opts.warn?.({ zone: zone.name, err: String(err) }, 'zone watcher unavailable; out-of-band changes are found at the next start');
      }
    }
    // After the watcher is up, so nothing falls between the scan and the watch.
    let result: ScanStats | undefined;
    const hashedBefore = journal.hasher.stats.blocks;
    const scanned = journal.enqueue('scan', async () => {
      result = await scanZone(journal, root);
    }).then(() => {
      this.opts.onHashed?.(zone.name, journal.hasher.stats.blocks - hashedBefore);
      return result ?? newScanStats();
    });
    return { fs: journaled(zone, journal), journal, scanned, watcher };
  }
}
