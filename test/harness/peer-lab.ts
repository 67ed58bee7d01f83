/**
 * Peer-protocol test nodes: a state dir with an identity, its certificate and a catalog database
 * (pins), a PeerServer on loopback serving a MemorySource, and helpers to make pools.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createIdentity, type NodeIdentity } from '../../src/catalog/identity.js';
import { GvError } from '../../src/errors.js';
import type { ChangeRow } from '../../src/journal/changes.js';
import { GvDatabase } from '../../src/journal/db.js';
import { loadOrCreateCertificate, type PeerCertificate } from '../../src/peer/certificate.js';
import type { PeerLog } from '../../src/peer/log.js';
import { SqlitePinStore } from '../../src/peer/pins.js';
import { PeerPool, type PeerPoolOptions } from '../../src/peer/pool.js';
import { PeerServer } from '../../src/peer/server.js';
import { blockPool } from '../../src/util/block-pool.js';
import type {
  CatalogSnapshot, JournalPage, ListPage, LocalReplicaSource, PeerCaller, RemoteEntry,
} from '../../src/replication/source.js';

/** A LocalReplicaSource over fixed data (zone "z1"); other zones answer ENOENT. */
export class MemorySource implements LocalReplicaSource {
  rows: ChangeRow[] = [];
  entryMap = new Map<string, RemoteEntry>();
  files = new Map<string, Buffer>();
  snapshot: CatalogSnapshot = { version: 0, zones: [], deleted: [], nodes: [] };
  callers: PeerCaller[] = [];
  /** Answer blocks in recycled buffers of the block pool, as the real LocalSource does. */
  pooled = false;
  /** Delay of every block() call (server-close tests). */
  blockDelayMs = 0;
  /** Block calls that entered and have not returned. */
  blocksActive = 0;

  private zone(zone: string): void {
    if (zone !== 'z1') throw new GvError('ENOENT', `no zone ${zone}`);
  }

  async journal(caller: PeerCaller, zone: string, since: bigint, limit: number): Promise<JournalPage> {
    this.callers.push(caller);
    this.zone(zone);
    const rows = this.rows.filter((r) => r.version > since).slice(0, limit);
    return { rows, version: this.rows.length ? this.rows[this.rows.length - 1]!.version : 0n };
  }

  async entries(caller: PeerCaller, zone: string, paths: readonly Buffer[], inlineMax: number): Promise<(RemoteEntry | null)[]> {
    this.callers.push(caller);
    this.zone(zone);
    return paths.map((p) => {
      const e = this.entryMap.get(p.toString('latin1'));
      if (!e) return null;
      const data = this.files.get(p.toString('latin1'));
      return data && data.length <= inlineMax ? { ...e, data } : { ...e };
    });
  }

  async block(caller: PeerCaller, zone: string, p: Buffer, offset: bigint, length: number): Promise<Buffer> {
    this.callers.push(caller);
    this.zone(zone);
    if (p.toString() === 'bad-arg') throw new GvError('EINVAL', 'not a regular file');
    if (p.toString() === 'crash') throw new Error('unexpected failure in the source');
    const f = this.files.get(p.toString('latin1'));
    if (!f) throw new GvError('ENOENT', `no file ${p.toString()}`);
    this.blocksActive++;
    try {
      if (this.blockDelayMs) await new Promise((r) => setTimeout(r, this.blockDelayMs));
      const part = f.subarray(Number(offset), Number(offset) + length);
      if (!this.pooled) return part;
      const b = blockPool.take(part.length);
      part.copy(b);
      return b;
    } finally {
      this.blocksActive--;
    }
  }

  async catalog(caller: PeerCaller): Promise<CatalogSnapshot> {
    this.callers.push(caller);
    return this.snapshot;
  }

  async list(caller: PeerCaller, zone: string, dir: Buffer, after: Buffer | null, limit: number, inlineMax: number): Promise<ListPage> {
    this.callers.push(caller);
    this.zone(zone);
    const pre = dir.length ? Buffer.concat([dir, Buffer.from('/')]) : Buffer.alloc(0);
    const all = [...this.entryMap.values()]
      .filter((e) => e.path.length > pre.length && e.path.subarray(0, pre.length).equals(pre) && (!after || Buffer.compare(e.path, after) > 0))
      .sort((x, y) => Buffer.compare(x.path, y.path));
    const page = all.slice(0, limit).map((e) => {
      const data = this.files.get(e.path.toString('latin1'));
      return data && data.length <= inlineMax ? { ...e, data } : { ...e };
    });
    const version = this.rows.length ? this.rows[this.rows.length - 1]!.version : 0n;
    return { entries: page, version, done: all.length <= limit, next: page.length ? page[page.length - 1]!.path : after };
  }
}

export interface LabNode {
  name: string;
  dir: string;
  identity: NodeIdentity;
  cert: PeerCertificate & { keyPem: string };
  db: GvDatabase;
  pins: SqlitePinStore;
  source: MemorySource;
  logs: { level: string; msg: string; obj: Record<string, unknown> }[];
  log: PeerLog;
  server: PeerServer | null;
  port: number;
}

export class PeerLab {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-peer-'));
  readonly clusterKey = randomBytes(32);
  private readonly nodes: LabNode[] = [];
  private readonly pools: PeerPool[] = [];

  node(name: string): LabNode {
    const dir = path.join(this.root, name);
    const identity = createIdentity(dir, name);
    const cert = loadOrCreateCertificate(dir);
    const db = GvDatabase.open(dir);
    const logs: LabNode['logs'] = [];
    const n: LabNode = {
      name, dir, identity, cert, db, pins: new SqlitePinStore(db), source: new MemorySource(), logs,
      log: (level, obj, msg) => logs.push({ level, msg, obj }), server: null, port: 0,
    };
    this.nodes.push(n);
    return n;
  }

  async serve(n: LabNode, port = 0, clusterKey = this.clusterKey): Promise<number> {
    n.server = new PeerServer({
      identity: n.identity, keyPem: n.cert.keyPem, certPem: n.cert.pem, clusterKey, pins: n.pins, source: n.source, log: n.log,
    });
    n.port = await n.server.listen(port, '127.0.0.1');
    return n.port;
  }

  /** A pool of `from` that reaches every lab node on its loopback port. */
  pool(from: LabNode, extra: Partial<PeerPoolOptions> = {}): PeerPool {
    const p = new PeerPool({
      identity: from.identity, keyPem: from.cert.keyPem, certPem: from.cert.pem, clusterKey: this.clusterKey, pins: from.pins,
      addressesOf: (id) => {
        const t = this.nodes.find((x) => x.identity.id === id);
        return t && t.port ? [`127.0.0.1:${t.port}`] : [];
      },
      log: from.log,
      ...extra,
    });
    this.pools.push(p);
    return p;
  }

  async cleanup(): Promise<void> {
    for (const p of this.pools) p.close();
    for (const n of this.nodes) {
      await n.server?.close();
      n.db.close();
    }
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** The rows of catalog_nodes of a node's database. */
export function nodeRows(n: LabNode): { name: string; node_id: string | null; fingerprint: string | null }[] {
  return n.db.prepare('SELECT name, node_id, fingerprint FROM catalog_nodes ORDER BY name').all() as never;
}
