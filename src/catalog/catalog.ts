import { GvError } from '../errors.js';
import type { GvDatabase, Statement } from '../journal/db.js';

/** How this node stores a zone: a ZFS dataset (quota by ZFS) or a directory (quota by the daemon). */
export type ZoneBacking = { kind: 'zfs'; dataset: string } | { kind: 'dir'; path: string };

export interface CatalogZone {
  name: string;
  quotaBytes: number;
  /** Member node names, sorted. */
  members: string[];
  createdMs: number;
  /** Catalog version of the zone's last change. */
  version: number;
  /** This node's backing, or null when it has none (not a member, or not created here). */
  backing: ZoneBacking | null;
}

export interface NewZone {
  name: string;
  quotaBytes: number;
  members: readonly string[];
  backing: ZoneBacking | null;
}

interface ZoneRow {
  name: string;
  quota_bytes: number;
  created_ms: number;
  version: number;
  kind: string | null;
  dataset: string | null;
  path: string | null;
}

/**
 * The cluster catalog in the node's SQLite database: zones with quota and members, known nodes,
 * and a version counter bumped by every change (what replication will exchange), plus this
 * node's backing of each zone (local only). Synchronous; every change is one transaction.
 */
export class Catalog {
  private readonly sVersion: Statement;
  private readonly sBump: Statement;
  private readonly sList: Statement;
  private readonly sGet: Statement;
  private readonly sMembers: Statement;
  private readonly sInsert: Statement;
  private readonly sMember: Statement;
  private readonly sQuota: Statement;
  private readonly sDelete: Statement;
  private readonly sBackingSet: Statement;
  private readonly sBackingDel: Statement;
  private readonly sNodes: Statement;
  private readonly sNodeAdd: Statement;

  constructor(private readonly db: GvDatabase) {
    const cols = `z.name, z.quota_bytes, z.created_ms, z.version, b.kind, b.dataset, b.path
      FROM catalog_zones z LEFT JOIN zone_backing b ON b.zone = z.name`;
    this.sVersion = db.prepare("SELECT value FROM counters WHERE name = 'catalog_version'").pluck(true);
    this.sBump = db.prepare("UPDATE counters SET value = value + 1 WHERE name = 'catalog_version' RETURNING value").pluck(true);
    this.sList = db.prepare(`SELECT ${cols} ORDER BY z.name`);
    this.sGet = db.prepare(`SELECT ${cols} WHERE z.name = ?`);
    this.sMembers = db.prepare('SELECT node FROM catalog_zone_members WHERE zone = ? ORDER BY node').pluck(true);
    this.sInsert = db.prepare('INSERT INTO catalog_zones (name, quota_bytes, created_ms, version) VALUES (?, ?, ?, ?)');
    this.sMember = db.prepare('INSERT INTO catalog_zone_members (zone, node) VALUES (?, ?)');
    this.sQuota = db.prepare('UPDATE catalog_zones SET quota_bytes = ?, version = ? WHERE name = ?');
    this.sDelete = db.prepare('DELETE FROM catalog_zones WHERE name = ?');
    this.sBackingSet = db.prepare(
      `INSERT INTO zone_backing (zone, kind, dataset, path) VALUES (?, ?, ?, ?)
       ON CONFLICT (zone) DO UPDATE SET kind = excluded.kind, dataset = excluded.dataset, path = excluded.path`,
    );
    this.sBackingDel = db.prepare('DELETE FROM zone_backing WHERE zone = ?');
    this.sNodes = db.prepare('SELECT name FROM catalog_nodes ORDER BY name').pluck(true);
    this.sNodeAdd = db.prepare('INSERT INTO catalog_nodes (name, node_id, added_ms) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING');
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

  /** Add a zone; EEXIST when the name is taken. Returns it as stored. */
  create(z: NewZone, nowMs = Date.now()): CatalogZone {
    if (!Number.isSafeInteger(z.quotaBytes) || z.quotaBytes <= 0) throw new GvError('EINVAL', `quota must be > 0 bytes (got ${z.quotaBytes})`);
    if (z.members.length === 0) throw new GvError('EINVAL', 'a zone needs at least one member node');
    return this.db.transaction(() => {
      if (this.sGet.get(z.name)) throw new GvError('EEXIST', `zone "${z.name}" already exists`, { zone: z.name });
      const v = this.bump();
      this.sInsert.run(z.name, z.quotaBytes, nowMs, v);
      for (const m of new Set(z.members)) this.sMember.run(z.name, m);
      if (z.backing) this.writeBacking(z.name, z.backing);
      return this.get(z.name)!;
    });
  }

  setQuota(name: string, quotaBytes: number): CatalogZone {
    if (!Number.isSafeInteger(quotaBytes) || quotaBytes <= 0) throw new GvError('EINVAL', `quota must be > 0 bytes (got ${quotaBytes})`);
    return this.db.transaction(() => {
      this.need(name);
      this.sQuota.run(quotaBytes, this.bump(), name);
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

  /** Remove a zone (members and backing go with it). ENOENT when unknown. */
  remove(name: string): void {
    this.db.transaction(() => {
      this.need(name);
      this.sDelete.run(name);
      this.bump();
    });
  }

  /** Node names recorded in the catalog. */
  nodes(): string[] {
    return this.sNodes.all() as string[];
  }

  addNode(name: string, nodeId: string | null, nowMs = Date.now()): void {
    this.sNodeAdd.run(name, nodeId, nowMs);
  }

  private need(name: string): void {
    if (!this.sGet.get(name)) throw new GvError('ENOENT', `no zone "${name}"`, { zone: name });
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
      backing,
    };
  }
}
