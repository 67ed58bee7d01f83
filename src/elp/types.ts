/**
 * What ELP needs from the journal: the version of every zone this node holds and a signal when one
 * moves. Same shape as `ZoneVersions` in src/journal/versions.ts, restated here so that elp does
 * not depend on the journal's internals (any object of that shape fits).
 */
export interface ZoneVersionSource {
  /** Zone name → version. */
  current(): Map<string, bigint>;
  /** Called after a bump commits; returns the function that stops listening. */
  onChange(cb: (zone: string, version: bigint) => void): () => void;
}

/** A ZoneVersionSource held in memory (tests, and nodes without a journal yet). */
export class MemoryZoneVersions implements ZoneVersionSource {
  private readonly versions = new Map<string, bigint>();
  private readonly listeners = new Set<(zone: string, version: bigint) => void>();

  constructor(initial: Iterable<[string, bigint]> = []) {
    for (const [z, v] of initial) this.versions.set(z, v);
  }

  current(): Map<string, bigint> {
    return new Map(this.versions);
  }

  onChange(cb: (zone: string, version: bigint) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /** Set a zone's version and tell the listeners (as a committed bump would). */
  set(zone: string, version: bigint): void {
    this.versions.set(zone, version);
    for (const cb of this.listeners) cb(zone, version);
  }

  bump(zone: string): bigint {
    const v = (this.versions.get(zone) ?? 0n) + 1n;
    this.set(zone, v);
    return v;
  }

  /** Forget a zone (no longer held). */
  delete(zone: string): void {
    this.versions.delete(zone);
  }
}
