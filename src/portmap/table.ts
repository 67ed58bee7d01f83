import type { mapping } from './constants.js';

/**
 * The registrations a portmapper answers from. Bounded, so a local program looping on SET cannot
 * grow it without limit.
 */
export class PortmapTable {
  private readonly maps: mapping[] = [];

  constructor(private readonly max = 1024) {}

  /** RFC 1833: refuse when (prog, vers, prot) is already registered. */
  set(m: mapping): boolean {
    if (this.maps.some((x) => x.prog === m.prog && x.vers === m.vers && x.prot === m.prot)) return false;
    if (this.maps.length >= this.max) return false;
    this.maps.push({ ...m });
    return true;
  }

  /** Remove every registration of (prog, vers) whatever the protocol and port. */
  unset(prog: number, vers: number): boolean {
    let removed = false;
    for (let i = this.maps.length - 1; i >= 0; i--) {
      const x = this.maps[i]!;
      if (x.prog === prog && x.vers === vers) {
        this.maps.splice(i, 1);
        removed = true;
      }
    }
    return removed;
  }

  /**
   * Port of (prog, vers, prot), 0 when unknown. Like the common portmappers, a registration of
   * another version of the same program and protocol answers when the exact version is missing
   * (the client then learns the versions it can use from PROG_MISMATCH).
   */
  getport(prog: number, vers: number, prot: number): number {
    let other = 0;
    for (const x of this.maps) {
      if (x.prog !== prog || x.prot !== prot) continue;
      if (x.vers === vers) return x.port;
      if (other === 0) other = x.port;
    }
    return other;
  }

  list(): mapping[] {
    return this.maps.map((m) => ({ ...m }));
  }
}
