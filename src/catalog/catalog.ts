import { randomBytes } from 'node:crypto';
import { NODE_NAME_RE, ZONE_NAME_RE } from '../config/schema.js';
import { GvError } from '../errors.js';
import type { GvDatabase, Statement } from '../journal/db.js';
import type {
  CatalogNodeRecord, CatalogSnapshot, CatalogTombstone, CatalogZoneRecord, Consistency,
} from '../replication/source.js';

/** How this node stores a zone: a ZFS dataset (quota by ZFS) or a directory (quota by the daemon). */
export type ZoneBacking = { kind: 'zfs'; dataset: string } | { kind: 'dir'; path: string };

export const CONSISTENCIES: readonly Consistency[] = ['pull-first', 'available'];

export interface CatalogZone {
  name: string;
  quotaBytes: number;
  /** Member node names, sorted. */
  members: string[];
  createdMs: number;
  /** Catalog version of the zone's last change (local counter). */
  version: number;
  /** Last-writer-wins stamp: when and by which node id the zone was last changed. */
  updatedMs: number;
  updatedBy: string;
  consistency: Consistency;
  /** This node's backing, or null when it has none (not a member, or not created here). */
  backing: ZoneBacking | null;
}

export interface NewZone {
  name: string;
  quotaBytes: number;
  members: readonly string[];
  backing: ZoneBacking | null;
  consistency?: Consistency;
}

export interface ZoneUpdate {
  quotaBytes?: number;
  members?: readonly string[];
  consistency?: Consistency;
}

/** What one merge did to one zone. */
export interface ZoneMergeChange {
  name: string;
  kind: 'created' | 'updated' | 'removed';
  /** The writer that won (node id). */
  by: string;
  /** For 'updated': the quota moved. */
  quotaChanged: boolean;
  /** For 'removed': this node's backing that was forgotten with the zone (its data is kept). */
  backing: ZoneBacking | null;
}

export interface FingerprintConflict {
  node: string;
  nodeId: string | null;
  local: string;
  remote: string;
}

export interface MergeResult {
  /** Names of zones whose row was created, changed or removed. */
  changed: string[];
  zones: ZoneMergeChange[];
  /** Nodes added or completed (node id or fingerprint filled in). */
  nodes: string[];
  /** Remote fingerprints that differ from a pinned one (kept as pinned). */
  fingerprintConflicts: FingerprintConflict[];
  /** Remote records refused as malformed. */
  rejected: string[];
  /** The catalog version after the merge (bumped when anything changed). */
  version: number;
}

interface ZoneRow {
  name: string;
  quota_bytes: number;
  created_ms: number;
  version: number;
  updated_ms: number;
  updated_by: string;
  consistency: string;
  kind: string | null;
  dataset: string | null;
  path: string | null;
}

interface NodeRow {
  name: string;
  node_id: string | null;
  added_ms: number;
  fingerprint: string | null;
}

interface TombRow {
  name: string;
  deleted_ms: number;
  deleted_by: string;
}

/** Last-writer-wins order: later ms wins, then the larger writer id. */
function stampCmp(aMs: number, aBy: string, bMs: number, bBy: string): number {
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aBy < bBy ? -1 : aBy > bBy ? 1 : 0;
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((m, i) => m === b[i]);
}

/**
 * The cluster catalog in the node's SQLite database: zones with quota, members and consistency,
 * deleted zones (tombstones), known nodes with their pinned certificate fingerprints, and a
 * version counter bumped by every change (ELP announces it; peers then fetch `snapshot()` and
 * `merge()` it, last-writer-wins per zone on (updatedMs, updatedBy)). This node's backing of each
 * zone is local and never replicated. Synchronous; every change is one transaction.
 */
export class Catalog {
  private readonly sVersion: Statement;
  private readonly sBump: Statement;
  private readonly sList: Statement;
  private readonly sGet: Statement;
  private readonly sMembers: Statement;
  private readonly sInsert: Statement;
  private readonly sUpdate: Statement;
  private readonly sMember: Statement;
  private readonly sMembersDel: Statement;
  private readonly sDelete: Statement;
  private readonly sBackingSet: Statement;
  private readonly sBackingDel: Statement;
  private readonly sNodes: Statement;
  private readonly sNodeRows: Statement;
  private readonly sNodeGet: Statement;
  private readonly sNodeAdd: Statement;
  private readonly sNodeSet: Statement;
  private readonly sTombs: Statement;
  private readonly sTombGet: Statement;
  private readonly sTombSet: Statement;
  private readonly sTombDel: Statement;
  private id: string | null;

  constructor(private readonly db: GvDatabase, opts: { nodeId?: string } = {}) {
    this.id = opts.nodeId ?? null;
    const cols = `z.name, z.quota_bytes, z.created_ms, z.version, z.updated_ms, z.updated_by, z.consistency,
      b.kind, b.dataset, b.path FROM catalog_zones z LEFT JOIN zone_backing b ON b.zone = z.name`;
    this.sVersion = db.prepare("SELECT value FROM counters WHERE name = 'catalog_version'").pluck(true);
    this.sBump = db.prepare("UPDATE counters SET value = value + 1 WHERE name = 'catalog_version' RETURNING value").pluck(true);
    this.sList = db.prepare(`SELECT ${cols} ORDER BY z.name`);
    this.sGet = db.prepare(`SELECT ${cols} WHERE z.name = ?`);
    this.sMembers = db.prepare('SELECT node FROM catalog_zone_members WHERE zone = ? ORDER BY node').pluck(true);
    this.sInsert = db.prepare(
      'INSERT INTO catalog_zones (name, quota_bytes, created_ms, version, updated_ms, updated_by, consistency) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.sUpdate = db.prepare(
      'UPDATE catalog_zones SET quota_bytes = ?, created_ms = ?, version = ?, updated_ms = ?, updated_by = ?, consistency = ? WHERE name = ?',
    );
    this.sMember = db.prepare('INSERT INTO catalog_zone_members (zone, node) VALUES (?, ?)');
    this.sMembersDel = db.prepare('DELETE FROM catalog_zone_members WHERE zone = ?');
    this.sDelete = db.prepare('DELETE FROM catalog_zones WHERE name = ?');
    this.sBackingSet = db.prepare(
      `INSERT INTO zone_backing (zone, kind, dataset, path) VALUES (?, ?, ?, ?)
       ON CONFLICT (zone) DO UPDATE SET kind = excluded.kind, dataset = excluded.dataset, path = excluded.path`,
    );
    this.sBackingDel = db.prepare('DELETE FROM zone_backing WHERE zone = ?');
    this.sNodes = db.prepare('SELECT name FROM catalog_nodes ORDER BY name').pluck(true);
    this.sNodeRows = db.prepare('SELECT name, node_id, added_ms, fingerprint FROM catalog_nodes ORDER BY name');
    this.sNodeGet = db.prepare('SELECT name, node_id, added_ms, fingerprint FROM catalog_nodes WHERE name = ?');
    this.sNodeAdd = db.prepare('INSERT INTO catalog_nodes (name, node_id, added_ms, fingerprint) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING');
    this.sNodeSet = db.prepare('UPDATE catalog_nodes SET node_id = ?, added_ms = ?, fingerprint = ? WHERE name = ?');
    this.sTombs = db.prepare('SELECT name, deleted_ms, deleted_by FROM catalog_zone_tombstones ORDER BY name');
    this.sTombGet = db.prepare('SELECT name, deleted_ms, deleted_by FROM catalog_zone_tombstones WHERE name = ?');
    this.sTombSet = db.prepare(
      `INSERT INTO catalog_zone_tombstones (name, deleted_ms, deleted_by) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET deleted_ms = excluded.deleted_ms, deleted_by = excluded.deleted_by`,
    );
    this.sTombDel = db.prepare('DELETE FROM catalog_zone_tombstones WHERE name = ?');
  }

  /** The node id local changes are stamped with (the identity's id; see journal/node-id.ts). */
  setNodeId(id: string): void {
    if (!id) throw new GvError('EINVAL', 'node id must not be empty');
    this.id = id;
  }

  /** This node's id; without setNodeId, the database's local node id (made once). */
  nodeId(): string {
    if (this.id) return this.id;
    const get = this.db.prepare('SELECT id FROM local_node WHERE one = 1').pluck(true);
    let have = get.get() as string | undefined;
    if (!have) {
      this.db.prepare('INSERT INTO local_node (one, id) VALUES (1, ?) ON CONFLICT (one) DO NOTHING').run(randomBytes(16).toString('hex'));
      have = get.get() as string;
    }
    this.id = have;
    return have;
  }

  /** The catalog version (0 for a catalog never changed). */
  version(): number {
    return Number(this.sVersion.get());
  }

  list(): CatalogZone[] {
    return (this.sList.all() as ZoneRow[]).map((r) => this.toZone(r));
  }

  get(name: string): CatalogZone | undefined {
    const r = this.sGet.get(name) as ZoneRow | undefined;
    return r ? this.toZone(r) : undefined;
  }

  /** The tombstone of a deleted zone, if the catalog holds one. */
  tombstone(name: string): CatalogTombstone | undefined {
    const t = this.sTombGet.get(name) as TombRow | undefined;
    return t ? { name: t.name, deletedMs: Number(t.deleted_ms), deletedBy: t.deleted_by } : undefined;
  }

  /** Add a zone; EEXIST when the name is taken. Returns it as stored. */
  create(z: NewZone, nowMs = Date.now()): CatalogZone {
    if (!Number.isSafeInteger(z.quotaBytes) || z.quotaBytes <= 0) throw new GvError('EINVAL', `quota must be > 0 bytes (got ${z.quotaBytes})`);
    if (z.members.length === 0) throw new GvError('EINVAL', 'a zone needs at least one member node');
    const consistency = z.consistency ?? 'pull-first';
    if (!CONSISTENCIES.includes(consistency)) throw new GvError('EINVAL', `consistency must be pull-first or available (got ${consistency})`);
    const by = this.nodeId();
    return this.db.transaction(() => {
      if (this.sGet.get(z.name)) throw new GvError('EEXIST', `zone "${z.name}" already exists`, { zone: z.name });
      // A re-created name must beat its own tombstone everywhere, even with a clock behind.
      const tomb = this.sTombGet.get(z.name) as TombRow | undefined;
      const stamp = tomb ? Math.max(nowMs, Number(tomb.deleted_ms) + 1) : nowMs;
      if (tomb) this.sTombDel.run(z.name);
      this.sInsert.run(z.name, z.quotaBytes, nowMs, this.bump(), stamp, by, consistency);
      for (const m of new Set(z.members)) this.sMember.run(z.name, m);
      if (z.backing) this.writeBacking(z.name, z.backing);
      return this.get(z.name)!;
    });
  }

  setQuota(name: string, quotaBytes: number, nowMs = Date.now()): CatalogZone {
    return this.update(name, { quotaBytes }, nowMs);
  }

  /** Change quota, members or consistency (a local change: stamped with this node's id). */
  update(name: string, u: ZoneUpdate, nowMs = Date.now()): CatalogZone {
    if (u.quotaBytes !== undefined && (!Number.isSafeInteger(u.quotaBytes) || u.quotaBytes <= 0)) {
      throw new GvError('EINVAL', `quota must be > 0 bytes (got ${u.quotaBytes})`);
    }
    if (u.members !== undefined && u.members.length === 0) throw new GvError('EINVAL', 'a zone needs at least one member node');
    if (u.consistency !== undefined && !CONSISTENCIES.includes(u.consistency)) {
      throw new GvError('EINVAL', `consistency must be pull-first or available (got ${u.consistency})`);
    }
    const by = this.nodeId();
    return this.db.transaction(() => {
      const cur = this.need(name);
      const stamp = Math.max(nowMs, Number(cur.updated_ms) + 1);
      this.sUpdate.run(u.quotaBytes ?? cur.quota_bytes, cur.created_ms, this.bump(), stamp, by, u.consistency ?? cur.consistency, name);
      if (u.members !== undefined) {
        this.sMembersDel.run(name);
        for (const m of new Set(u.members)) this.sMember.run(name, m);
      }
      return this.get(name)!;
    });
  }

  /** Record (or, with null, forget) this node's backing of a zone. Local: no version bump. */
  setBacking(name: string, backing: ZoneBacking | null): void {
    this.db.transaction(() => {
      this.need(name);
      if (backing) this.writeBacking(name, backing);
      else this.sBackingDel.run(name);
    });
  }

  /** Remove a zone (members and backing go with it) and leave a tombstone. ENOENT when unknown. */
  remove(name: string, nowMs = Date.now()): void {
    const by = this.nodeId();
    this.db.transaction(() => {
      const cur = this.need(name);
      this.sDelete.run(name);
      this.sTombSet.run(name, Math.max(nowMs, Number(cur.updated_ms) + 1), by);
      this.bump();
    });
  }

  /** Node names recorded in the catalog. */
  nodes(): string[] {
    return this.sNodes.all() as string[];
  }

  nodeRecords(): CatalogNodeRecord[] {
    return (this.sNodeRows.all() as NodeRow[]).map(toNodeRecord);
  }

  addNode(name: string, nodeId: string | null, nowMs = Date.now()): void {
    this.db.transaction(() => {
      if (this.sNodeAdd.run(name, nodeId, nowMs, null).changes > 0) this.bump();
    });
  }

  /** Everything peers merge: zones, tombstones, nodes, and this catalog's version. */
  snapshot(): CatalogSnapshot {
    return this.db.transaction(() => ({
      version: this.version(),
      zones: (this.sList.all() as ZoneRow[]).map((r) => {
        const z = this.toZone(r);
        return {
          name: z.name, quotaBytes: z.quotaBytes, members: z.members, createdMs: z.createdMs,
          updatedMs: z.updatedMs, updatedBy: z.updatedBy, consistency: z.consistency,
        };
      }),
      deleted: (this.sTombs.all() as TombRow[]).map((t) => ({ name: t.name, deletedMs: Number(t.deleted_ms), deletedBy: t.deleted_by })),
      nodes: this.nodeRecords(),
    }));
  }

  /**
   * Merge a peer's snapshot, last-writer-wins per zone name on (updatedMs, updatedBy) against
   * (deletedMs, deletedBy): a tombstone beats an older (or equally stamped) zone, a newer zone
   * beats a tombstone. This node's backings are never touched except that a removed zone's
   * backing row goes with it (reported, the data stays). Nodes merge by name: missing node ids
   * and fingerprints are filled in, a pinned fingerprint is never replaced (reported). One
   * transaction; the version is bumped once when anything changed, so peers fetch from us.
   */
  merge(remote: CatalogSnapshot): MergeResult {
    const res: MergeResult = { changed: [], zones: [], nodes: [], fingerprintConflicts: [], rejected: [], version: 0 };
    return this.db.transaction(() => {
      let bumped = 0;
      const ver = () => (bumped ||= this.bump());
      const tombs = new Map<string, CatalogTombstone>();
      for (const t of remote.deleted ?? []) {
        if (!validTomb(t)) {
          res.rejected.push(`tombstone ${JSON.stringify((t as { name?: unknown })?.name)}`);
          continue;
        }
        const have = tombs.get(t.name);
        if (!have || stampCmp(t.deletedMs, t.deletedBy, have.deletedMs, have.deletedBy) > 0) tombs.set(t.name, t);
      }
      const zones = new Map<string, CatalogZoneRecord>();
      for (const z of remote.zones ?? []) {
        if (!validZone(z)) {
          res.rejected.push(`zone ${JSON.stringify((z as { name?: unknown })?.name)}`);
          continue;
        }
        const have = zones.get(z.name);
        if (!have || stampCmp(z.updatedMs, z.updatedBy, have.updatedMs, have.updatedBy) > 0) zones.set(z.name, z);
      }
      for (const name of [...new Set([...zones.keys(), ...tombs.keys()])].sort()) {
        const rz = zones.get(name);
        const rt = tombs.get(name);
        // The remote side's own winner for this name.
        const rWin = rz && (!rt || stampCmp(rz.updatedMs, rz.updatedBy, rt.deletedMs, rt.deletedBy) > 0) ? rz : null;
        const rTomb = rWin ? null : rt!;
        const lz = this.sGet.get(name) as ZoneRow | undefined;
        const lt = this.sTombGet.get(name) as TombRow | undefined;
        if (rWin) {
          if (lt && stampCmp(rWin.updatedMs, rWin.updatedBy, Number(lt.deleted_ms), lt.deleted_by) <= 0) continue;
          const members = [...new Set(rWin.members)].sort();
          if (lz) {
            const c = stampCmp(rWin.updatedMs, rWin.updatedBy, Number(lz.updated_ms), lz.updated_by);
            if (c <= 0) continue;
            const quotaChanged = Number(lz.quota_bytes) !== rWin.quotaBytes;
            this.sUpdate.run(rWin.quotaBytes, rWin.createdMs, ver(), rWin.updatedMs, rWin.updatedBy, rWin.consistency, name);
            if (!sameMembers(this.sMembers.all(name) as string[], members)) {
              this.sMembersDel.run(name);
              for (const m of members) this.sMember.run(name, m);
            }
            res.zones.push({ name, kind: 'updated', by: rWin.updatedBy, quotaChanged, backing: null });
          } else {
            if (lt) this.sTombDel.run(name);
            this.sInsert.run(name, rWin.quotaBytes, rWin.createdMs, ver(), rWin.updatedMs, rWin.updatedBy, rWin.consistency);
            for (const m of members) this.sMember.run(name, m);
            res.zones.push({ name, kind: 'created', by: rWin.updatedBy, quotaChanged: false, backing: null });
          }
          res.changed.push(name);
        } else if (rTomb) {
          if (lt && stampCmp(rTomb.deletedMs, rTomb.deletedBy, Number(lt.deleted_ms), lt.deleted_by) <= 0) continue;
          if (lz && stampCmp(rTomb.deletedMs, rTomb.deletedBy, Number(lz.updated_ms), lz.updated_by) < 0) continue;
          this.sTombSet.run(name, rTomb.deletedMs, rTomb.deletedBy);
          ver();
          if (lz) {
            const backing = this.toZone(lz).backing;
            this.sDelete.run(name);
            res.zones.push({ name, kind: 'removed', by: rTomb.deletedBy, quotaChanged: false, backing });
            res.changed.push(name);
          }
        }
      }
      for (const n of remote.nodes ?? []) {
        if (!n || typeof n.name !== 'string' || !NODE_NAME_RE.test(n.name)) {
          res.rejected.push(`node ${JSON.stringify((n as { name?: unknown })?.name)}`);
          continue;
        }
        const nodeId = typeof n.nodeId === 'string' && n.nodeId ? n.nodeId : null;
        const fp = typeof n.fingerprint === 'string' && n.fingerprint ? n.fingerprint.toLowerCase() : null;
        const addedMs = Number.isSafeInteger(n.addedMs) ? n.addedMs : 0;
        const l = this.sNodeGet.get(n.name) as NodeRow | undefined;
        if (!l) {
          this.sNodeAdd.run(n.name, nodeId, addedMs, fp);
          ver();
          res.nodes.push(n.name);
          continue;
        }
        if (nodeId && l.node_id && nodeId !== l.node_id) {
          // Two nodes claim one name: keep ours, never take its fingerprint.
          if (fp && fp !== l.fingerprint) res.fingerprintConflicts.push({ node: n.name, nodeId, local: l.fingerprint ?? '', remote: fp });
          res.rejected.push(`node ${n.name}: id ${nodeId} differs from the recorded ${l.node_id}`);
          continue;
        }
        let newFp = l.fingerprint;
        if (fp && l.fingerprint && fp !== l.fingerprint) {
          res.fingerprintConflicts.push({ node: n.name, nodeId: l.node_id ?? nodeId, local: l.fingerprint, remote: fp });
        } else if (fp && !l.fingerprint) newFp = fp;
        const newId = l.node_id ?? nodeId;
        const newAdded = Math.min(Number(l.added_ms), addedMs || Number(l.added_ms));
        if (newId !== l.node_id || newFp !== l.fingerprint || newAdded !== Number(l.added_ms)) {
          this.sNodeSet.run(newId, newAdded, newFp, n.name);
          ver();
          res.nodes.push(n.name);
        }
      }
      res.version = this.version();
      return res;
    });
  }

  private need(name: string): ZoneRow {
    const r = this.sGet.get(name) as ZoneRow | undefined;
    if (!r) throw new GvError('ENOENT', `no zone "${name}"`, { zone: name });
    return r;
  }

  private bump(): number {
    return Number(this.sBump.get());
  }

  private writeBacking(name: string, b: ZoneBacking): void {
    this.sBackingSet.run(name, b.kind, b.kind === 'zfs' ? b.dataset : null, b.kind === 'dir' ? b.path : null);
  }

  private toZone(r: ZoneRow): CatalogZone {
    let backing: ZoneBacking | null = null;
    if (r.kind === 'zfs' && r.dataset) backing = { kind: 'zfs', dataset: r.dataset };
    else if (r.kind === 'dir' && r.path) backing = { kind: 'dir', path: r.path };
    return {
      name: r.name,
      quotaBytes: Number(r.quota_bytes),
      members: this.sMembers.all(r.name) as string[],
      createdMs: Number(r.created_ms),
      version: Number(r.version),
      updatedMs: Number(r.updated_ms),
      updatedBy: r.updated_by,
      consistency: r.consistency === 'available' ? 'available' : 'pull-first',
      backing,
    };
  }
}

function toNodeRecord(r: NodeRow): CatalogNodeRecord {
  return { name: r.name, nodeId: r.node_id, fingerprint: r.fingerprint, addedMs: Number(r.added_ms) };
}

/** `catalog()` for the local replica source: this catalog's snapshot. */
export function catalogSnapshotFor(catalog: Catalog): () => Promise<CatalogSnapshot> {
  return () => Promise.resolve(catalog.snapshot());
}

function validStamp(ms: unknown, by: unknown): boolean {
  return Number.isSafeInteger(ms) && (ms as number) >= 0 && typeof by === 'string' && by.length > 0 && by.length <= 128;
}

function validTomb(t: CatalogTombstone): boolean {
  return !!t && typeof t.name === 'string' && ZONE_NAME_RE.test(t.name) && validStamp(t.deletedMs, t.deletedBy);
}

function validZone(z: CatalogZoneRecord): boolean {
  return !!z && typeof z.name === 'string' && ZONE_NAME_RE.test(z.name)
    && Number.isSafeInteger(z.quotaBytes) && z.quotaBytes > 0
    && Array.isArray(z.members) && z.members.length > 0 && z.members.every((m) => typeof m === 'string' && NODE_NAME_RE.test(m))
    && Number.isSafeInteger(z.createdMs) && validStamp(z.updatedMs, z.updatedBy)
    && CONSISTENCIES.includes(z.consistency);
}
