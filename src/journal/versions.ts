/**
 * Per-zone versions as the rest of the node sees them (ELP announces them). The journal owns the
 * numbers (zone_versions table, bumped in the same transaction as each change row); this registry
 * mirrors the committed values of the zones currently held and tells listeners after each commit.
 */

export interface ZoneVersions {
  /** Current version of every zone this node holds, by zone name. */
  current(): Map<string, bigint>;
  /** Called after a version bump commits (zone name, new version). Returns an unsubscribe function. */
  onChange(cb: (zone: string, version: bigint) => void): () => void;
}

/** The registry the journals publish into. */
export class VersionRegistry implements ZoneVersions {
  private readonly versions = new Map<string, bigint>();
  private readonly listeners = new Set<(zone: string, version: bigint) => void>();

  constructor(private readonly onListenerError: (err: unknown) => void = () => undefined) {}

  current(): Map<string, bigint> {
    return new Map(this.versions);
  }

  get(zone: string): bigint | undefined {
    return this.versions.get(zone);
  }

  onChange(cb: (zone: string, version: bigint) => void): () => void {
    // Wrapped so the same function subscribed twice gets two independent subscriptions.
    const entry = (z: string, v: bigint) => cb(z, v);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  /** A zone is held now (opened), at `version`. Listeners hear of it. */
  hold(zone: string, version: bigint): void {
    this.versions.set(zone, version);
    this.emit(zone, version);
  }

  /** A committed bump. Versions only go up: a stale value is ignored. */
  committed(zone: string, version: bigint): void {
    const cur = this.versions.get(zone);
    if (cur !== undefined && cur >= version) return;
    this.versions.set(zone, version);
    this.emit(zone, version);
  }

  /** The zone is no longer held (closed). */
  release(zone: string): void {
    this.versions.delete(zone);
  }

  private emit(zone: string, version: bigint): void {
    for (const cb of [...this.listeners]) {
      try {
        cb(zone, version);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }
}
