/**
 * The in-memory mount list DUMP reports (RFC 1813 mountbody: hostname + directory). Bounded: the
 * oldest entries go first when a misbehaving client mounts without ever unmounting.
 */
export interface MountEntry {
  hostname: string;
  directory: string;
}

export class MountList {
  private readonly entries = new Map<string, MountEntry>();

  constructor(private readonly max = 4096) {}

  add(hostname: string, directory: string): void {
    const key = `${hostname}\0${directory}`;
    this.entries.delete(key); // re-insert at the end (most recent)
    this.entries.set(key, { hostname, directory });
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  remove(hostname: string, directory: string): boolean {
    return this.entries.delete(`${hostname}\0${directory}`);
  }

  /** UMNTALL: forget every mount of one client. */
  removeHost(hostname: string): number {
    let n = 0;
    for (const [k, e] of this.entries) {
      if (e.hostname === hostname) {
        this.entries.delete(k);
        n++;
      }
    }
    return n;
  }

  list(): MountEntry[] {
    return [...this.entries.values()];
  }
}
