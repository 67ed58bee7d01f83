/**
 * Parsers for `zfs`/`zpool` scripted output (`-H`: no header, one tab between fields) and the
 * version probes. Pure functions, tested with output captured from zfs-fuse 0.7.
 */
import { GvError } from '../errors.js';

/** Lines of `-H` output split on tabs; every line must have exactly `columns` fields. */
export function parseTabular(stdout: string, columns: number, what: string): string[][] {
  const rows: string[][] = [];
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const fields = line.split('\t');
    if (fields.length !== columns) {
      throw new GvError('EIO', `unexpected output from ${what}: ${JSON.stringify(line.slice(0, 200))} (want ${columns} tab-separated fields)`, { line });
    }
    rows.push(fields);
  }
  return rows;
}

/**
 * `zfs get -Hp -o property,value` output as property → value. The value is everything after the
 * first tab (user properties may contain tabs). Every requested property must be present once.
 */
export function parsePropertyValues(stdout: string, props: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const tab = line.indexOf('\t');
    if (tab <= 0) throw new GvError('EIO', `unexpected output from zfs get: ${JSON.stringify(line.slice(0, 200))}`, { line });
    const prop = line.slice(0, tab);
    if (Object.hasOwn(out, prop)) throw new GvError('EIO', `zfs get printed property ${prop} twice`, { line });
    out[prop] = line.slice(tab + 1);
  }
  for (const p of props) {
    if (!Object.hasOwn(out, p)) throw new GvError('EIO', `zfs get did not print property ${p}`, { stdout: stdout.slice(0, 2000) });
  }
  return out;
}

/** An exact byte count from `-p` output; `none`, `-` (and `0` when `zeroIsNone`) give null. */
export function parseExactBytes(value: string, prop: string, zeroIsNone = false): bigint | null {
  if (value === 'none' || value === '-') return null;
  if (!/^\d+$/.test(value)) throw new GvError('EIO', `zfs printed ${prop}=${JSON.stringify(value)}, expected a byte count`, { prop, value });
  const n = BigInt(value);
  return zeroIsNone && n === 0n ? null : n;
}

const UNIT_SHIFT: Record<string, bigint> = { '': 0n, B: 0n, K: 10n, M: 20n, G: 30n, T: 40n, P: 50n, E: 60n, Z: 70n };

/**
 * A size as ZFS prints it for humans (`1016M`, `99.9M`, `1.50G`, `512`): binary units, the
 * fraction is rounded down to whole bytes. Only used where the tool has no exact (`-p`) form
 * (zfs-fuse's `zpool list`), so the result is approximate to the printed precision.
 */
export function parseHumanSize(value: string): bigint {
  const m = /^(\d+)(?:\.(\d+))?([BKMGTPEZ]?)$/.exec(value);
  if (!m) throw new GvError('EIO', `unexpected size ${JSON.stringify(value)} from zpool`, { value });
  const whole = BigInt(m[1]!);
  const frac = m[2] ?? '';
  const shift = UNIT_SHIFT[m[3]!]!;
  const scale = 10n ** BigInt(frac.length);
  const numerator = (whole * scale + (frac ? BigInt(frac) : 0n)) << shift;
  return numerator / scale;
}

export type ZfsFlavor = 'openzfs' | 'zfs-fuse' | 'unknown';

export interface ZfsVersion {
  flavor: ZfsFlavor;
  /** Userland release: '2.1.11' for OpenZFS; '0.7' for zfs-fuse (inferred from pool version 23); null when unknown. */
  version: string | null;
  /** Highest legacy pool version (zfs-fuse: 23); null with feature flags (OpenZFS). */
  poolVersion: number | null;
  /** Whether `zfs list`/`zpool list` accept `-p` (exact numbers). */
  parsable: boolean;
}

/** `zfs version` output of OpenZFS ≥ 0.8 ("zfs-2.1.11-1\nzfs-kmod-2.1.11-1"), else null. */
export function parseOpenZfsVersion(stdout: string): string | null {
  const m = /^zfs-(\d+\.\d+(?:\.\d+)?)/m.exec(stdout);
  return m ? m[1]! : null;
}

/** Legacy pool version from `zpool upgrade -v` ("... running ZFS pool version 23."), else null. */
export function parseLegacyPoolVersion(stdout: string): number | null {
  const m = /running ZFS pool version (\d+)/.exec(stdout);
  return m ? Number(m[1]) : null;
}
