/**
 * Certificate pinning: the first authenticated contact (the peer proved the cluster key) pins
 * its certificate fingerprint to its node id in the catalog (catalog_nodes); from then on a
 * different certificate for that node id is refused.
 */
import { GvError } from '../errors.js';
import type { GvDatabase, Statement } from '../journal/db.js';

export type PinState = 'pinned' | 'new' | 'mismatch';

export interface PinStore {
  check(nodeId: string, nodeName: string, fingerprint: string): PinState;
  /** Record the fingerprint for a node id with none; EACCES when another one is pinned. */
  pin(nodeId: string, nodeName: string, fingerprint: string): void;
}

interface NodeRow { name: string; node_id: string | null; fingerprint: string | null }

/** Pins in the catalog's node table; a pin bumps the catalog version (it replicates). */
export class SqlitePinStore implements PinStore {
  private readonly sById: Statement;
  private readonly sByName: Statement;
  private readonly sFill: Statement;
  private readonly sClaim: Statement;
  private readonly sInsert: Statement;
  private readonly sBump: Statement;

  constructor(private readonly db: GvDatabase) {
    this.sById = db.prepare('SELECT name, node_id, fingerprint FROM catalog_nodes WHERE node_id = ?');
    this.sByName = db.prepare('SELECT name, node_id, fingerprint FROM catalog_nodes WHERE name = ?');
    this.sFill = db.prepare('UPDATE catalog_nodes SET fingerprint = ? WHERE node_id = ? AND fingerprint IS NULL');
    this.sClaim = db.prepare('UPDATE catalog_nodes SET node_id = ?, fingerprint = ? WHERE name = ? AND node_id IS NULL');
    this.sInsert = db.prepare('INSERT INTO catalog_nodes (name, node_id, added_ms, fingerprint) VALUES (?, ?, ?, ?)');
    this.sBump = db.prepare("UPDATE counters SET value = value + 1 WHERE name = 'catalog_version'");
  }

  check(nodeId: string, _nodeName: string, fingerprint: string): PinState {
    const rows = this.sById.all(nodeId) as NodeRow[];
    let pinned = false;
    for (const r of rows) {
      if (r.fingerprint === null) continue;
      if (r.fingerprint !== fingerprint) return 'mismatch';
      pinned = true;
    }
    return pinned ? 'pinned' : 'new';
  }

  pin(nodeId: string, nodeName: string, fingerprint: string): void {
    this.db.transaction(() => {
      const state = this.check(nodeId, nodeName, fingerprint);
      if (state === 'pinned') return;
      if (state === 'mismatch') throw new GvError('EACCES', `node ${nodeId} has another certificate pinned`, { nodeId });
      const byId = this.sById.all(nodeId) as NodeRow[];
      if (byId.length > 0) {
        this.sFill.run(fingerprint, nodeId);
      } else {
        const named = this.sByName.get(nodeName) as NodeRow | undefined;
        if (named && named.node_id !== null) {
          throw new GvError('EACCES', `node name ${nodeName} belongs to node ${named.node_id}, not ${nodeId}`, { nodeId, nodeName });
        }
        if (named) this.sClaim.run(nodeId, fingerprint, nodeName);
        else this.sInsert.run(nodeName, nodeId, Date.now(), fingerprint);
      }
      this.sBump.run();
    });
  }
}
