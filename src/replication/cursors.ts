/**
 * peer_cursors: per (zone, peer) the peer's zone version this node has applied up to.
 */
import type { GvDatabase, Statement } from '../journal/db.js';

export class PeerCursors {
  /** Applied versions not persisted yet (persisted by a journal task behind the rows they cover). */
  private readonly mem = new Map<string, bigint>();
  private readonly sGet: Statement;
  private readonly sPut: Statement;

  constructor(db: GvDatabase) {
    this.sGet = db.prepare('SELECT version FROM peer_cursors WHERE zone = ? AND peer = ?').safeIntegers(true).pluck(true);
    this.sPut = db.prepare(
      `INSERT INTO peer_cursors (zone, peer, version, updated_ms) VALUES (?, ?, ?, ?)
       ON CONFLICT (zone, peer) DO UPDATE SET version = excluded.version, updated_ms = excluded.updated_ms`,
    );
  }

  get(zone: string, peer: string): bigint {
    const m = this.mem.get(`${zone}\0${peer}`);
    if (m !== undefined) return m;
    return (this.sGet.get(zone, peer) as bigint | undefined) ?? 0n;
  }

  /** Everything up to `version` is applied (in memory now; `set` persists it). */
  note(zone: string, peer: string, version: bigint): void {
    this.mem.set(`${zone}\0${peer}`, version);
  }

  set(zone: string, peer: string, version: bigint): void {
    this.sPut.run(zone, peer, version, Date.now());
  }
}
