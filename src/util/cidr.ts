import { GvError } from '../errors.js';

/**
 * CIDR allow lists for IPv4 and IPv6. Every address is held as 16 bytes: IPv4 addresses become
 * IPv4-mapped IPv6 (::ffff:a.b.c.d) and IPv4 prefixes gain 96 bits, so one comparison serves both
 * families and a client reaching us as ::ffff:127.0.0.1 matches `127.0.0.1/32`.
 */
export interface Cidr {
  /** The text it was parsed from (for EXPORT groups and logs). */
  readonly text: string;
  readonly bytes: Uint8Array;
  readonly prefix: number;
}

function parseIpv4(s: string): Uint8Array | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p)) return null;
    if (p.length > 1 && p.startsWith('0')) return null; // no octal-looking octets
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

function mapped(v4: Uint8Array): Uint8Array {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(v4, 12);
  return out;
}

function parseIpv6(input: string): Uint8Array | null {
  let s = input;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct); // zone index (fe80::1%eth0)
  if (s.length === 0 || s.length > 45) return null;
  // An embedded IPv4 tail takes the last two groups.
  let tail: Uint8Array | null = null;
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.indexOf('.', lastColon) > lastColon) {
    tail = parseIpv4(s.slice(lastColon + 1));
    if (!tail) return null;
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (h: string): number[] | null => {
    if (h === '') return [];
    const groups = h.split(':');
    const out: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]!);
  const rest = halves.length === 2 ? parseGroups(halves[1]!) : [];
  if (!head || !rest) return null;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - rest.length;
    if (missing < 1) return null;
    groups = [...head, ...new Array<number>(missing).fill(0), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i]! >> 8;
    out[2 * i + 1] = groups[i]! & 0xff;
  }
  if (tail) out.set(tail, 12);
  return out;
}

/** Parse an IPv4 or IPv6 address into 16 bytes (IPv4 as IPv4-mapped), or null. */
export function parseAddress(s: string): Uint8Array | null {
  const t = s.trim();
  if (t.includes(':')) return parseIpv6(t.startsWith('[') && t.endsWith(']') ? t.slice(1, -1) : t);
  const v4 = parseIpv4(t);
  return v4 ? mapped(v4) : null;
}

/** Parse `addr/prefix` or a bare address (a host route). Throws GvError('CONFIG') with the reason. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addrText = slash >= 0 ? text.slice(0, slash) : text;
  const isV6 = addrText.includes(':');
  const bytes = parseAddress(addrText);
  if (!bytes) throw new GvError('CONFIG', `"${text}" is not a valid IPv4 or IPv6 CIDR (bad address)`);
  const max = isV6 ? 128 : 32;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      throw new GvError('CONFIG', `"${text}" is not a valid CIDR (prefix must be 0-${max})`);
    }
    prefix = Number(p);
  }
  const full = isV6 ? prefix : prefix + 96;
  // Host bits must be zero (10.0.0.1/8 is almost always a typo).
  for (let bit = full; bit < 128; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) {
      throw new GvError('CONFIG', `"${text}" has host bits set beyond /${prefix}`);
    }
  }
  return { text, bytes, prefix: full };
}

function inCidr(addr: Uint8Array, c: Cidr): boolean {
  const whole = c.prefix >> 3;
  for (let i = 0; i < whole; i++) if (addr[i] !== c.bytes[i]) return false;
  const rem = c.prefix & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (addr[whole]! & mask) === (c.bytes[whole]! & mask);
}

/** True when `address` (as reported by a socket) lies inside one of the CIDRs. */
export function matchesAny(address: string, list: readonly Cidr[]): boolean {
  const a = parseAddress(address);
  if (!a) return false;
  for (const c of list) if (inCidr(a, c)) return true;
  return false;
}

/** Loopback: 127.0.0.0/8 and ::1 (and their IPv4-mapped forms). */
const LOOPBACK = [parseCidr('127.0.0.0/8'), parseCidr('::1/128')];
export function isLoopback(address: string): boolean {
  return matchesAny(address, LOOPBACK);
}
