import { cookieOfWords } from './names.js';

/** One directory's entries sorted by (cookie, name); built once per directory change. */
export interface Listing {
  /** Change signature of the directory when it was read (mtime, ctime, size, nlink). */
  key: string;
  cookies: bigint[];
  names: Buffer[];
  /** 0n: not looked up yet (see LocalZoneFs.readListing). */
  ids: bigint[];
  /** Names (latin1 keys) changed through this backend since the build: not trusted as hints. */
  dirty?: Set<string>;
}

/** What an older listing of the same directory still tells us about a name. */
export interface HintEntry {
  id: bigint;
  cookie: bigint;
}

/** A name read from the directory, its cookie as two words (names.ts CookieWords). */
export interface RawEntry {
  hi: number;
  lo: number;
  name: Buffer;
  id: bigint;
  /** The cookie itself when already known (a hint): else made from hi and lo once sorted. */
  cookie?: bigint;
}

/**
 * Sort names by (cookie, name) and make the listing. The sort compares the cookies' words as
 * numbers: comparing BigInts was most of a 1,000-name listing's build time.
 */
export function buildListing(key: string, raw: RawEntry[]): Listing {
  raw.sort((a, b) => a.hi - b.hi || a.lo - b.lo || Buffer.compare(a.name, b.name));
  const n = raw.length;
  const l: Listing = { key, cookies: new Array(n), names: new Array(n), ids: new Array(n) };
  for (let i = 0; i < n; i++) {
    const e = raw[i]!;
    l.cookies[i] = e.cookie ?? cookieOfWords(e.hi, e.lo);
    l.names[i] = e.name;
    l.ids[i] = e.id;
  }
  return l;
}

/** Index of the first entry whose cookie is greater than `cookie`. */
export function firstAfter(l: Listing, cookie: bigint): number {
  let lo = 0;
  let hi = l.cookies.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (l.cookies[mid]! <= cookie) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * End (exclusive) of a page starting at `start` holding at most `max` entries, never splitting a
 * run of equal cookies (a resume after that cookie would skip the rest of the run). When the first
 * run alone exceeds `max`, the whole run is returned.
 */
export function pageEnd(l: Listing, start: number, max: number): number {
  const n = l.cookies.length;
  if (start >= n) return n;
  const end = Math.min(n, start + Math.max(1, max));
  if (end === n || l.cookies[end] !== l.cookies[end - 1]) return end;
  // The page would end inside a run of equal cookies: cut before the run, or take it whole.
  const c = l.cookies[end - 1];
  let runStart = end - 1;
  while (runStart > start && l.cookies[runStart - 1] === c) runStart--;
  return runStart > start ? runStart : runEnd(l, start);
}

function runEnd(l: Listing, start: number): number {
  const c = l.cookies[start];
  let i = start + 1;
  while (i < l.cookies.length && l.cookies[i] === c) i++;
  return i;
}

/**
 * How many names from `start` (at most `max`) fit in `bytes` when each costs `entryBytes` of its
 * length; at least one. (pageEnd then keeps runs of equal cookies together.)
 */
export function namesWithin(l: Listing, start: number, max: number, bytes: number, entryBytes: (nameLength: number) => number): number {
  const end = Math.min(l.names.length, start + Math.max(1, max));
  let left = bytes;
  let i = start;
  for (; i < end; i++) {
    left -= entryBytes(l.names[i]!.length);
    if (left < 0) break;
  }
  return Math.max(1, i - start);
}

export const nameKey = (name: Buffer): string => name.toString('latin1');

/**
 * Small LRU of listings keyed by directory fileid. A listing whose directory changed is no longer
 * served, but it stays as a hint for the rebuild: names it knows (and that were not changed
 * through this backend meanwhile) keep their id and cookie without another lstat.
 */
export class ListingCache {
  private readonly map = new Map<bigint, Listing>();
  constructor(private readonly max = 64) {}

  /** The listing of `dir` when it is still current (same change key, nothing touched). */
  get(dir: bigint, key: string): Listing | undefined {
    const l = this.map.get(dir);
    if (!l || l.key !== key || (l.dirty && l.dirty.size > 0)) return undefined;
    this.map.delete(dir);
    this.map.set(dir, l);
    return l;
  }

  /** name → (id, cookie) from the last listing of `dir`, minus names touched since. */
  hint(dir: bigint): Map<string, HintEntry> | undefined {
    const l = this.map.get(dir);
    if (!l) return undefined;
    const m = new Map<string, HintEntry>();
    for (let i = 0; i < l.names.length; i++) {
      const k = nameKey(l.names[i]!);
      if (!l.dirty?.has(k)) m.set(k, { id: l.ids[i]!, cookie: l.cookies[i]! });
    }
    return m;
  }

  set(dir: bigint, l: Listing): void {
    this.map.delete(dir);
    this.map.set(dir, l);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value as bigint);
  }

  /** A name of `dir` was created, removed or replaced through this backend. */
  touch(dir: bigint, name: Buffer): void {
    const l = this.map.get(dir);
    if (!l) return;
    (l.dirty ??= new Set()).add(nameKey(name));
    if (l.dirty.size > 4096) this.map.delete(dir);
  }

  /** Forget `dir` entirely (removed). */
  invalidate(dir: bigint): void {
    this.map.delete(dir);
  }

  clear(): void {
    this.map.clear();
  }
}
