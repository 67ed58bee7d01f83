/**
 * The applier: a peer's journal rows for one zone, applied here by PATH (file ids are per-node
 * inodes) under version-vector rules.
 *
 * - Content rows (create/write/…/mkdir/symlink/link): the CURRENT remote entries of a run of paths
 *   are asked for in one call; each path is decided once against what is here (index entry, or
 *   tombstone, or nothing): remote equal/before → skip, after → take it, concurrent → conflict
 *   (conflict.ts rules). File content is assembled in the staging area (fetch.ts), fsynced, and
 *   then, inside ONE journal task for the whole run, each item is checked again against the disk
 *   and the index (a local writer may have come in between: then it is decided again, never
 *   overwritten), renamed into place, given its mode and mtime, and journaled with the remote
 *   vector and origin.
 * - Removes, rmdirs and renames run as journal tasks too: removed only when what is here is
 *   before-or-equal the row (modify beats delete otherwise); renamed in one step when what is at
 *   the old path is before-or-equal the row, else the destination is taken from the peer's entry.
 * - Paths from the peer are untrusted (paths.ts): refused rows are counted, never applied.
 */
import fs from 'node:fs';
import path from 'node:path';
import { GvError } from '../errors.js';
import type { ChangeKind, ChangeRow } from '../journal/changes.js';
import type { IndexEntry } from '../journal/index-store.js';
import { typeOfMode, type ZoneJournal } from '../journal/zone-journal.js';
import { TokenBucket } from './bandwidth.js';
import { conflictPath, isConflictPath, originalOf, wins } from './conflict.js';
import { assembleFile, BlockMap, newFetchStats, type FetchContext, type FetchStats } from './fetch.js';
import { absOf, badPath, baseOf, parentOf, parentsOk } from './paths.js';
import { MAX_ENTRIES, MAX_INLINE, MAX_LIST, type RemoteEntry, type ReplicaSource } from './source.js';
import { ensureStaging, stagingDir, syncFileSystem, uniqueTemp } from './staging.js';
import { compare, merge, type VersionVector } from './vector.js';

export interface ApplyZone {
  name: string;
  root: string;
  journal: ZoneJournal;
  /**
   * The zone's usage and quota as its file system backend tracks them (LocalZoneFs fits): what
   * the engine places or removes is counted, and a directory zone's quota is enforced on it.
   * ZFS zones leave the quota undefined (the dataset answers EDQUOT itself).
   */
  space?: ZoneSpace;
}

export interface ZoneSpace {
  readonly quotaBytes: bigint | undefined;
  readonly usage: { readonly used: bigint; add(delta: bigint): void };
}

export interface ApplyLog {
  warn(obj: object, msg: string): void;
  debug?(obj: object, msg: string): void;
}

export interface ApplierOptions {
  log?: ApplyLog;
  bucket?: TokenBucket;
  /** Files assembled at once (default 16). */
  fileConcurrency?: number;
  /** Block requests in flight per file (default 4). */
  blockConcurrency?: number;
  /** Each block fetched from the peer (rates, status). */
  onFetched?: (bytes: number) => void;
  /** Bytes the entries just fetched will need (status: bytes to fetch). */
  onPlanned?: (bytes: number) => void;
  /** True once the service is stopping: the pull ends at the next step (or block). */
  stopped?: () => boolean;
}

export interface ApplyStats extends FetchStats {
  rows: number;
  applied: number;
  skipped: number;
  conflicts: number;
  /** Rows refused as hostile (bad paths, through symlinks, into the staging area). */
  refused: number;
  /** Local changes that raced an apply: decided again. */
  redecided: number;
  warnings: number;
  /** Runs refused because they would exceed the zone's quota. */
  quotaRefused: number;
}

const CONTENT = new Set<ChangeKind>(['create', 'write', 'truncate', 'setattr', 'mkdir', 'symlink', 'mknod', 'link']);
const REDECIDE_DELAYS = [20, 60, 150, 300, 600, 1200];
/**
 * Paths per content run: one entries call. The next run's entries are asked for while this one is
 * applied, so the peer reads and encodes run k+1 while this node writes, places and journals run
 * k (with runs of four calls the first run's whole answer was waited for, and the peer sat idle
 * while this node worked). The small files of a run share one syncfs.
 */
const RUN_PATHS = MAX_ENTRIES;
const roundUp = (n: bigint): bigint => (n + 4095n) & ~4095n;

/** Block requests a pull keeps in flight across its files (bytes in flight: × 1 MiB). */
const BLOCKS_IN_FLIGHT = 32;
/** A listing longer than this (× MAX_LIST entries) is refused (a peer that never ends). */
const MAX_TREE_PAGES = 1_000_000;

/** What to do about one path. */
type Plan =
  | { op: 'skip' }
  | { op: 'merge'; p: Buffer; local: IndexEntry; vector: VersionVector; origin: string; mode?: number; mtimeNs?: bigint; owner?: RemoteEntry }
  | {
    op: 'put'; p: Buffer; r: RemoteEntry; local: IndexEntry | undefined; localIsLink: boolean; vector: VersionVector;
    /** Move what is here aside first (it lost a conflict). */
    moveLocalTo?: Buffer;
    /** After placing, journal the local object at `mergeAt` with this vector (the local side won). */
    then?: { op: 'merge'; p: Buffer; local: IndexEntry; vector: VersionVector; origin: string };
    tmp?: string;
  };

type PutPlan = Extract<Plan, { op: 'put' }>;

/** Consecutive content rows rows[start..end) and their paths' entries (asked for already). */
interface ContentRun {
  start: number;
  end: number;
  paths: Buffer[];
  kinds: Map<string, ChangeKind>;
  entries: Promise<(RemoteEntry | null)[]>;
}

const key = (p: Buffer): string => p.toString('latin1');

function kindFor(r: RemoteEntry, rowKind: ChangeKind | undefined, had: boolean): ChangeKind {
  switch (r.type) {
    case 'dir': return 'mkdir';
    case 'symlink': return 'symlink';
    case 'file':
      if (rowKind === 'write' || rowKind === 'truncate' || rowKind === 'setattr') return had ? rowKind : 'create';
      return had ? 'write' : 'create';
    default: return 'mknod';
  }
}

/**
 * Seconds for utimes that land exactly on `ns` truncated to the microsecond: Node passes a double
 * and libuv keeps whole microseconds, so aim at the middle of the microsecond (a double's error
 * at today's dates is ~0.1 µs). Applying the result again gives the same mtime, so every replica
 * of a version has the same one (conflict.ts compares mtimes in microseconds for that reason).
 */
export function toSeconds(ns: bigint): number {
  const frac = ns % 1_000_000_000n;
  return Number(ns / 1_000_000_000n) + (Number(frac - (frac % 1000n)) + 500) / 1e9;
}

export class ZoneApplier {
  readonly stats: ApplyStats = {
    ...newFetchStats(), rows: 0, applied: 0, skipped: 0, conflicts: 0, refused: 0, redecided: 0, warnings: 0, quotaRefused: 0,
  };
  private readonly rootBuf: Buffer;
  private readonly bucket: TokenBucket;
  /**
   * Paths whose rows this pull skipped because they were gone on the peer (latin1 keys, bounded):
   * when a directory rename later has to be taken from the peer's entries (its source is not here
   * as the peer had it), its contents are asked for under the new name.
   */
  private readonly goneRemotely = new Set<string>();
  /** Set when files of the current run did not fit the quota (the run then fails after placing what fit). */
  private quotaError: GvError | null = null;
  /** Owners are replicated only when this process may set them. */
  private readonly asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  /** This process's effective ids (asked once, not per file placed). */
  private readonly euid = process.geteuid?.();
  private readonly egid = process.getegid?.();
  /** Directories the current structural run renamed in one step. */
  private renamedDirs: Buffer[] = [];
  /** Snapshots under way per peer id: the peer's version noted before listing, and where the listing is. */
  readonly snapshots = new Map<string, { version: bigint; pos: { after: Buffer | null } }>();
  /** Blocks present locally (built on first need in a pull, kept up to date while it runs). */
  private blocks: BlockMap;

  constructor(private readonly zone: ApplyZone, private readonly opts: ApplierOptions = {}) {
    this.opts = { ...opts };
    this.rootBuf = Buffer.from(path.resolve(zone.root));
    this.bucket = opts.bucket ?? new TokenBucket(undefined);
    this.blocks = new BlockMap(zone.journal);
  }

  get j(): ZoneJournal {
    return this.zone.journal;
  }

  /** Route fetch progress to the pull under way (one pull per zone at a time). */
  listen(onFetched?: (bytes: number) => void, onPlanned?: (bytes: number) => void): void {
    this.opts.onFetched = onFetched;
    this.opts.onPlanned = onPlanned;
  }

  private warn(obj: object, msg: string): void {
    this.stats.warnings++;
    this.opts.log?.warn({ zone: this.zone.name, ...obj }, msg);
  }

  /** The zone's backend may be reopened (a reload): count against the current one. */
  useSpace(space: ZoneSpace | undefined): void {
    this.zone.space = space;
  }

  /** A new pull starts: forget what the last one learnt about its peer. */
  beginPull(): void {
    this.goneRemotely.clear();
    this.blocks = new BlockMap(this.zone.journal);
  }

  /**
   * Apply `rows` (oldest first) from `source`. `onDone(version)` is told after each step the
   * version up to which everything is applied (the caller persists its cursor).
   */
  async apply(source: ReplicaSource, rows: readonly ChangeRow[], onDone?: (version: bigint) => void): Promise<void> {
    let prefetched: ContentRun | null = null;
    try {
      let i = 0;
      while (i < rows.length) {
        if (this.opts.stopped?.()) throw new GvError('EAGAIN', 'replication is stopping');
        const row = rows[i]!;
        this.stats.rows++;
        const bad = badPath(row.path) ?? (row.kind === 'rename' ? (row.toPath ? badPath(row.toPath) : 'rename without a destination') : null);
        if (bad) {
          this.stats.refused++;
          this.warn({ path: row.path.toString('latin1').slice(0, 200), why: bad, version: String(row.version) }, 'refused a change row from a peer');
          onDone?.(row.version);
          i++;
          continue;
        }
        if (CONTENT.has(row.kind)) {
          // A run of content rows: their current entries in one call, the next run's asked for
          // while this one is applied (the peer's answer overlaps our disk work).
          const run: ContentRun = prefetched?.start === i ? prefetched : this.contentRunAt(source, rows, i);
          const following = this.nextContentStart(rows, run.end);
          // Rows already held are left out only when no remove or rename comes between the two
          // runs: those are applied after this look and may change what the index holds at a path
          // (a directory renamed over it, a name removed), while placing content only moves a
          // path's vector forward. Otherwise decide() sorts them out once the entries are in.
          prefetched = following >= 0 ? this.contentRunAt(source, rows, following, following === run.end) : null;
          this.stats.rows += run.end - i - 1;
          await this.contentRun(source, run.paths, run.kinds, rows.slice(run.end), run.entries);
          onDone?.(rows[run.end - 1]!.version);
          i = run.end;
          continue;
        }
        // A run of removes and renames: as many as go through in one journal task.
        this.renamedDirs = [];
        const { next, fallback } = await this.structuralRun(rows, i);
        this.stats.rows += next - i - 1;
        // A directory moved here as a whole: contents written under the old name that this node
        // never got (gone on the peer when asked for, in this or an earlier pull) are listed.
        for (const d of this.renamedDirs.splice(0)) await this.syncTree(source, d, undefined, undefined, 0);
        if (fallback) {
          await this.contentRun(source, [fallback, ...this.goneUnder(rows[next - 1]!.path, fallback)], new Map(), rows.slice(next));
          // A directory taken from the peer's entry alone: its contents come from a listing.
          if (this.j.index.byPath(fallback)?.type === 'dir') await this.syncTree(source, fallback);
        }
        onDone?.(rows[next - 1]!.version);
        i = next;
      }
    } finally {
      // A prefetch left unused must not reject unobserved.
      (prefetched as ContentRun | null)?.entries.catch(() => undefined);
    }
  }

  /** The content run starting at rows[start] (distinct paths, at most RUN_PATHS), its entries asked for now. */
  private contentRunAt(source: ReplicaSource, rows: readonly ChangeRow[], start: number, skipHeld = true): ContentRun {
    let end = start;
    const paths = new Map<string, Buffer>();
    const kinds = new Map<string, ChangeKind>();
    while (end < rows.length && CONTENT.has(rows[end]!.kind) && paths.size < RUN_PATHS) {
      const r = rows[end]!;
      if (end > start && badPath(r.path)) break;
      end++;
      const k = key(r.path);
      // A row this node already has (equal or before the vector its index holds for the path:
      // typically its own change, or one it pulled from elsewhere, coming back) asks nothing;
      // a later row of the same path still brings the path in.
      if (skipHeld && !paths.has(k) && this.alreadyHas(r)) {
        this.stats.skipped++;
        continue;
      }
      paths.set(k, r.path);
      kinds.set(k, r.kind);
    }
    const list = [...paths.values()];
    const entries = this.entries(source, list);
    entries.catch(() => undefined);
    return { start, end, paths: list, kinds, entries };
  }

  /** True when the index holds `r`'s path at a version equal to or after the row's. */
  private alreadyHas(r: ChangeRow): boolean {
    const l = this.j.index.byPath(r.path);
    if (!l || l.type !== r.type) return false;
    const c = compare(r.vector, l.vector);
    return c === 'equal' || c === 'before';
  }

  /** Index of the next content row with an acceptable path at or after `from`, else -1. */
  private nextContentStart(rows: readonly ChangeRow[], from: number): number {
    for (let k = from; k < rows.length; k++) {
      const r = rows[k]!;
      if (CONTENT.has(r.kind) && !badPath(r.path)) return k;
    }
    return -1;
  }

  // ---------------------------------------------------------------- deciding

  /** The index entry at `p`, or (a further hard-link name) the object's entry found through the disk. */
  private localAt(p: Buffer): { entry: IndexEntry | undefined; isLink: boolean } {
    const e = this.j.index.byPath(p);
    if (e) return { entry: e, isLink: false };
    if (!parentsOk(this.rootBuf, p)) return { entry: undefined, isLink: false };
    const st = fs.lstatSync(absOf(this.rootBuf, p), { bigint: true, throwIfNoEntry: false });
    if (st && st.nlink > 1n && typeOfMode(st.mode) === 'file') {
      const other = this.j.index.byIno(st.ino);
      if (other && !other.path.equals(p)) return { entry: other, isLink: true };
    }
    return { entry: undefined, isLink: false };
  }

  private sameContent(l: IndexEntry, r: RemoteEntry, p: Buffer): boolean {
    if (l.type !== r.type || (l.mode & 0o7777) !== (r.mode & 0o7777)) return false;
    if (l.type === 'file') return l.size === r.size && !!l.hashes && !!r.hashes && l.hashes.equals(r.hashes);
    if (l.type === 'symlink') {
      try {
        return !!r.target && fs.readlinkSync(absOf(this.rootBuf, p), { encoding: 'buffer' }).equals(r.target);
      } catch {
        return false;
      }
    }
    return true;
  }

  private decide(p: Buffer, r: RemoteEntry | null): Plan {
    if (!r) return { op: 'skip' };
    if (!r.path.equals(p)) return { op: 'skip' };
    p = this.redirect(p);
    if (r.type !== 'file' && r.type !== 'dir' && r.type !== 'symlink') {
      this.warn({ path: p.toString(), type: r.type }, 'special files are not replicated; skipped');
      return { op: 'skip' };
    }
    const { entry: l, isLink } = this.localAt(p);
    if (l) {
      const c = compare(r.vector, l.vector);
      if (c === 'equal' || c === 'before') return { op: 'skip' };
      if (c === 'after') {
        // Same bytes (a chmod, a touch): changed in place, nothing copied.
        if (!isLink && l.type === 'file' && r.type === 'file' && l.size === r.size && l.hashes && r.hashes && l.hashes.equals(r.hashes)) {
          return { op: 'merge', p, local: l, vector: r.vector, origin: r.origin, mode: r.mode & 0o7777, mtimeNs: r.mtimeNs, owner: r };
        }
        return { op: 'put', p, r, local: l, localIsLink: isLink, vector: r.vector };
      }
      // Concurrent.
      this.stats.conflicts++;
      const merged = merge(l.vector, r.vector);
      const remoteWins = wins(r, l);
      if (l.type === 'dir' && r.type === 'dir') {
        // Two directories of one name are one directory: merged, the winner's mode.
        return { op: 'merge', p, local: l, vector: merged, origin: remoteWins ? r.origin : l.origin, mode: remoteWins ? r.mode & 0o7777 : undefined };
      }
      if (!isLink && this.sameContent(l, r, p)) {
        // Same content: one version now, with the winner's mtime (so every node has the same).
        return { op: 'merge', p, local: l, vector: merged, origin: remoteWins ? r.origin : l.origin, mtimeNs: remoteWins && l.type === 'file' ? r.mtimeNs : undefined };
      }
      if (isConflictPath(p) || isLink) {
        // A conflict copy never gets its own: the winner simply replaces the loser.
        if (remoteWins) return { op: 'put', p, r, local: l, localIsLink: isLink, vector: merged };
        return isLink ? { op: 'skip' } : { op: 'merge', p, local: l, vector: merged, origin: l.origin };
      }
      if (remoteWins) {
        return { op: 'put', p, r, local: l, localIsLink: false, vector: merged, moveLocalTo: conflictPath(p, l) };
      }
      // The local side wins: the remote version is kept as the conflict copy.
      const cp = conflictPath(p, r);
      const there = this.j.index.byPath(cp);
      const then = { op: 'merge' as const, p, local: l, vector: merged, origin: l.origin };
      if (there && compare(there.vector, r.vector) !== 'before') return then;
      return { op: 'put', p: cp, r, local: there, localIsLink: false, vector: r.vector, then };
    }
    const t = this.j.tombstone(p);
    if (t) {
      const c = compare(r.vector, t.vector);
      if (c === 'equal' || c === 'before') return { op: 'skip' };
      // After the removal, or concurrent with it (modify beats delete: it comes back).
      return { op: 'put', p, r, local: undefined, localIsLink: false, vector: c === 'after' ? r.vector : merge(r.vector, t.vector) };
    }
    return { op: 'put', p, r, local: undefined, localIsLink: false, vector: r.vector };
  }

  /** Where a path that is gone on the peer went, following later renames of it or a parent (this page). */
  private forward(p: Buffer, later: readonly ChangeRow[]): Buffer | null {
    let cur = p;
    let moved = false;
    for (const row of later) {
      if (row.kind !== 'rename' || !row.toPath) continue;
      if (cur.equals(row.path)) {
        cur = row.toPath;
        moved = true;
      } else if (cur.length > row.path.length && cur[row.path.length] === 0x2f && cur.subarray(0, row.path.length).equals(row.path)) {
        cur = Buffer.concat([row.toPath, cur.subarray(row.path.length)]);
        moved = true;
      }
    }
    return moved && !badPath(cur) ? cur : null;
  }

  /** Paths this pull found gone on the peer below `from`, placed below `to`. */
  private goneUnder(from: Buffer, to: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const pre = key(from) + '/';
    for (const k of this.goneRemotely) {
      if (!k.startsWith(pre)) continue;
      const p = Buffer.concat([to, Buffer.from(k.slice(from.length), 'latin1')]);
      if (!badPath(p)) out.push(p);
    }
    return out.sort((x, y) => x.length - y.length);
  }

  /**
   * Where `p` goes here: below a directory that lost a name conflict to a file (and is kept as
   * that name's conflict copy), its contents go into the copy.
   */
  private redirect(p: Buffer): Buffer {
    for (let i = p.indexOf(0x2f); i >= 0; i = p.indexOf(0x2f, i + 1)) {
      const dir = p.subarray(0, i);
      const st = fs.lstatSync(absOf(this.rootBuf, dir), { throwIfNoEntry: false });
      if (!st) return p;
      if (st.isDirectory()) continue;
      const copy = this.conflictDirOf(dir);
      if (!copy) return p;
      return this.redirect(Buffer.concat([copy, p.subarray(i)]));
    }
    return p;
  }

  /** A directory kept as the conflict copy of `rel` (the name a file won), if any. */
  private conflictDirOf(rel: Buffer): Buffer | null {
    const parent = parentOf(rel);
    const prefix = Buffer.concat([baseOf(rel), Buffer.from('.gv-conflict-')]);
    let names: Buffer[];
    try {
      names = fs.readdirSync(absOf(this.rootBuf, parent), { encoding: 'buffer' });
    } catch {
      return null;
    }
    for (const n of names.sort(Buffer.compare)) {
      if (n.length <= prefix.length || !n.subarray(0, prefix.length).equals(prefix)) continue;
      const cand = parent.length === 0 ? n : Buffer.concat([parent, Buffer.from('/'), n]);
      const e = this.j.index.byPath(cand);
      if (e?.type === 'dir' && originalOf(cand)?.equals(rel)) return cand;
    }
    return null;
  }

  // ---------------------------------------------------------------- content

  private async contentRun(
    source: ReplicaSource, paths: Buffer[], kinds: Map<string, ChangeKind>, later: readonly ChangeRow[],
    asked?: Promise<(RemoteEntry | null)[]>,
  ): Promise<void> {
    let todo = paths;
    for (let round = 0; todo.length > 0; round++) {
      const entries = round === 0 && asked ? [...(await asked)] : await this.entries(source, todo);
      // Gone on the peer: follow later renames in this page (a directory renamed after its
      // contents were written); else the row's removal follows.
      const gone: Buffer[] = [];
      const forwardedFrom = todo.length;
      todo.forEach((p, k) => {
        if (entries[k] === null) {
          const f = this.forward(p, later);
          if (f) gone.push(f);
          else if (this.goneRemotely.size < 200_000) this.goneRemotely.add(key(p));
        }
      });
      if (gone.length > 0) {
        const more = await this.entries(source, gone);
        todo = [...todo, ...gone];
        entries.push(...more);
      }
      const plans = todo.map((p, k) => this.decide(p, entries[k]!));
      this.opts.onPlanned?.(plans.reduce((s, pl) => s + (pl.op === 'put' && pl.r.type === 'file' && !pl.r.data ? Number(pl.r.size) : 0), 0));
      this.quotaError = null;
      await this.prepare(source, plans);
      const retry = await this.place(plans, kinds);
      if (this.quotaError) throw this.quotaError;
      // A directory found under a later name (renamed on the peer) and new here: its contents
      // may have been written under names this pull will never see; list them.
      for (let k = forwardedFrom; round === 0 && k < plans.length; k++) {
        const pl = plans[k]!;
        if (pl.op === 'put' && pl.r.type === 'dir' && !pl.local && this.j.index.byPath(pl.p)?.type === 'dir') await this.syncTree(source, pl.p);
      }
      if (retry.length === 0) return;
      if (round >= REDECIDE_DELAYS.length) {
        throw new GvError('EAGAIN', `local changes keep racing ${retry.length} path(s); retried later`, { path: retry[0]!.toString() });
      }
      this.stats.redecided += retry.length;
      await new Promise((r) => setTimeout(r, REDECIDE_DELAYS[round]));
      todo = retry;
    }
  }

  /**
   * Bring everything below `dir` ('' = the whole zone) in line with the peer's listing, page by
   * page (each page applied as one content run: decided by vectors, so what is here already is
   * skipped). Entries out of order, outside `dir` or with refused paths are counted and dropped.
   * Answers the peer's version when the listing started. `resume` keeps the position between
   * calls (a snapshot interrupted continues where it stopped).
   */
  async syncTree(
    source: ReplicaSource, dir: Buffer, resume?: { after: Buffer | null }, onPage?: (paths: Buffer[]) => () => void,
    inlineMax = MAX_INLINE,
  ): Promise<bigint | null> {
    const pre = dir.length ? Buffer.concat([dir, Buffer.from('/')]) : Buffer.alloc(0);
    const pos = resume ?? { after: null };
    let first: bigint | null = null;
    for (let pages = 0; pages < MAX_TREE_PAGES; pages++) {
      if (this.opts.stopped?.()) throw new GvError('EAGAIN', 'replication is stopping');
      const page = await source.list(this.zone.name, dir, pos.after, MAX_LIST, inlineMax);
      first ??= page.version;
      const ok: RemoteEntry[] = [];
      let last = pos.after;
      for (const e of page.entries) {
        const why = badPath(e.path) ?? (e.path.length <= pre.length || !e.path.subarray(0, pre.length).equals(pre) ? 'outside the directory listed'
          : last && Buffer.compare(e.path, last) <= 0 ? 'out of order' : null);
        if (why) {
          this.stats.refused++;
          this.warn({ path: e.path.toString('latin1').slice(0, 200), why }, 'refused a listed entry from a peer');
          continue;
        }
        last = e.path;
        ok.push(e);
      }
      if (ok.length > 0) {
        const paths = ok.map((e) => e.path);
        const release = onPage?.(paths);
        try {
          await this.contentRun(source, paths, new Map(), [], Promise.resolve(ok));
        } finally {
          release?.();
        }
      }
      if (page.done) return first;
      const next = page.next && (!last || Buffer.compare(page.next, last) >= 0) ? page.next : last;
      if (!next || (pos.after && Buffer.compare(next, pos.after) <= 0)) throw new GvError('PROTOCOL', 'a listing page that does not move on');
      pos.after = next;
    }
    throw new GvError('EAGAIN', `listing of ${dir.toString()} longer than ${MAX_TREE_PAGES} pages`);
  }

  private async entries(source: ReplicaSource, paths: Buffer[]): Promise<(RemoteEntry | null)[]> {
    // Calls of MAX_ENTRIES paths, all in flight at once (one run is at most RUN_PATHS paths).
    const parts: Promise<(RemoteEntry | null)[]>[] = [];
    for (let k = 0; k < paths.length; k += MAX_ENTRIES) {
      const part = paths.slice(k, k + MAX_ENTRIES);
      parts.push(source.entries(this.zone.name, part, MAX_INLINE).then((got) => {
        if (got.length !== part.length) throw new GvError('PROTOCOL', 'entries answer does not match the paths asked');
        return got;
      }));
    }
    const settled = await Promise.allSettled(parts);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.flatMap((r) => (r as PromiseFulfilledResult<(RemoteEntry | null)[]>).value);
  }


  /** Assemble every file to put in the staging area (bounded concurrency); a mismatch refetches the entry. */
  private async prepare(source: ReplicaSource, plans: Plan[]): Promise<void> {
    let files = plans.filter((pl): pl is PutPlan => pl.op === 'put' && pl.r.type === 'file' && !this.linkable(pl));
    if (files.length === 0) return;
    this.checkQuota(files);
    files = files.filter((pl) => (pl as Plan).op === 'put');
    if (files.length === 0) return;
    const staging = ensureStaging(this.zone.root);
    const ctx: FetchContext = {
      zone: this.zone.name, root: this.zone.root, rootBuf: this.rootBuf, journal: this.j, source, bucket: this.bucket, staging,
      stats: this.stats, onFetched: this.opts.onFetched, stopped: this.opts.stopped, blocks: this.blocks,
      // Block requests in flight per file: a few large files get a deeper pipeline (the total
      // stays near BLOCKS_IN_FLIGHT, under the peer's 64 requests per connection).
      blockConcurrency: this.opts.blockConcurrency
        ?? Math.max(4, Math.floor(BLOCKS_IN_FLIGHT / Math.max(1, Math.min(this.opts.fileConcurrency ?? 16, files.filter((pl) => !pl.r.data).length)))),
    };
    let next = 0;
    // Many small files: written without an fsync each, then one syncfs for the batch.
    const batchSync = files.filter((pl) => pl.r.data).length >= 8;
    const unsynced: PutPlan[] = [];
    const worker = async (): Promise<void> => {
      for (let k = next++; k < files.length; k = next++) {
        const pl = files[k]!;
        const old = pl.local && pl.local.type === 'file' ? pl.local : undefined;
        for (let attempt = 0; ; attempt++) {
          try {
            pl.tmp = await assembleFile(ctx, pl.r, old, {
              skipSyncInline: batchSync,
              attrs: { mode: pl.r.mode & 0o7777, mtimeSeconds: toSeconds(pl.r.mtimeNs), ...this.owner(pl.r) },
            });
            if (batchSync && pl.r.data) unsynced.push(pl);
            break;
          } catch (err) {
            if (!(err instanceof GvError && err.data['mismatch'] === true) || attempt >= 3) throw err;
            // The file changed on the peer while we read it: take its entry again.
            const [fresh] = await source.entries(this.zone.name, [pl.p], MAX_INLINE);
            if (!fresh || fresh.type !== 'file') {
              (pl as Plan as { op: string }).op = 'skip';
              break;
            }
            pl.r = fresh;
          }
        }
      }
    };
    const n = Math.max(1, Math.min(this.opts.fileConcurrency ?? 16, files.length));
    const results = await Promise.allSettled(Array.from({ length: n }, worker));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (unsynced.length > 0 && !(await syncFileSystem(stagingDir(this.zone.root)))) {
      for (const pl of unsynced) {
        if (!pl.tmp) continue;
        const fd = fs.openSync(pl.tmp, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        try {
          await new Promise<void>((res, rej) => fs.fsync(fd, (err) => (err ? rej(err) : res())));
        } finally {
          fs.closeSync(fd);
        }
      }
    }
  }

  /** The owner to give what is placed: the peer's, when this process may (root) and the peer sent one. */
  private owner(r: RemoteEntry): { uid?: number; gid?: number } {
    if (!this.asRoot || r.uid === undefined || r.gid === undefined) return {};
    // Files this process creates are its own already.
    if (r.uid === this.euid && r.gid === this.egid) return {};
    return { uid: r.uid, gid: r.gid };
  }

  /**
   * EDQUOT (nothing of the run placed; the pull fails and is retried later) when the files of a
   * run would take a directory zone past its quota: their sizes (in 4 KiB blocks) less what the
   * versions they replace occupy.
   */
  private checkQuota(files: readonly PutPlan[]): void {
    const quota = this.zone.space?.quotaBytes;
    if (quota === undefined) return;
    const used = this.zone.space!.usage.used;
    let need = 0n;
    for (let k = 0; k < files.length; k++) {
      const pl = files[k]!;
      let grow = roundUp(pl.r.size);
      if (pl.local?.type === 'file' && !pl.moveLocalTo && !pl.localIsLink) grow -= roundUp(pl.local.size);
      if (grow <= 0n || used + need + grow <= quota) {
        need += grow;
        continue;
      }
      // This file and the rest of the run wait: what fits is placed, then the run fails.
      for (const rest of files.slice(k)) (rest as Plan as { op: string }).op = 'skip';
      this.stats.quotaRefused++;
      const p = pl.p.toString();
      this.warn({ path: p, files: files.length - k, needBytes: String(grow), usedBytes: String(used + need), quotaBytes: String(quota) },
        'zone quota exceeded: replicated changes not applied; retried later');
      this.quotaError = new GvError('EDQUOT', `zone ${this.zone.name} quota exceeded: ${p} needs ${grow} bytes, ${used + need} of ${quota} used; ${files.length - k} file(s) wait`);
      return;
    }
  }

  /** Count an allocation change of the zone (blocks of what was placed or removed). */
  private account(delta: bigint): void {
    if (delta !== 0n) this.zone.space?.usage.add(delta);
  }

  /** Give `abs` (not following a symlink) the peer's owner when it differs and this process may. */
  private chownTo(abs: string | Buffer, r: RemoteEntry): void {
    if (!this.asRoot || r.uid === undefined || r.gid === undefined) return;
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st || (st.uid === r.uid && st.gid === r.gid)) return;
    fs.lchownSync(abs, r.uid, r.gid);
    // chown drops set-id bits of a file: the mode stays what it was.
    if (st.isFile() && (st.mode & 0o6000) !== 0) fs.chmodSync(abs, st.mode & 0o7777);
  }

  private linkable(pl: PutPlan): boolean {
    const of = pl.r.linkOf;
    if (!of || pl.r.type !== 'file' || badPath(of)) return false;
    const there = this.j.index.byPath(of);
    if (!there || there.type !== 'file' || there.size !== pl.r.size || !there.hashes || !pl.r.hashes || !there.hashes.equals(pl.r.hashes)) return false;
    // The same object as the peer's (a link bumps the object's vector: ours may be just before).
    const c = compare(there.vector, pl.r.vector);
    return c === 'equal' || c === 'before';
  }

  /** True when the disk and the index at `p` are still what the plan was decided on. */
  private unchanged(p: Buffer, local: IndexEntry | undefined, isLink: boolean, r?: RemoteEntry): boolean {
    const now = isLink ? undefined : this.j.index.byPath(p);
    if (!isLink && (now?.fileid !== local?.fileid || (now && local && compare(now.vector, local.vector) !== 'equal'))) return false;
    if (!parentsOk(this.rootBuf, p)) return !local;
    const st = fs.lstatSync(absOf(this.rootBuf, p), { bigint: true, throwIfNoEntry: false });
    if (!local) {
      if (!st) return !this.j.busy(p);
      // An unjournaled directory where one is to be made (a parent made as a last resort): adopt it.
      return !!r && r.type === 'dir' && st.isDirectory() && !this.j.busy(p, st.ino);
    }
    if (!st || st.ino !== local.fileid || typeOfMode(st.mode) !== local.type) return false;
    if (local.type === 'file' && (st.size !== local.size || st.mtimeNs !== local.mtimeNs)) return false;
    return !this.j.busy(p, st.ino) && !this.j.coalescer.has(st.ino);
  }

  /** The final step for a run, in one journal task: answers the paths to decide again. */
  private async place(plans: Plan[], kinds: Map<string, ChangeKind>): Promise<Buffer[]> {
    const retry: Buffer[] = [];
    // No holds are needed: this task is synchronous, so the watcher's look at what it changed
    // (queued behind it) finds the index already in line with the disk.
    await this.j.enqueue('replicate', () => {
      for (const pl of plans) {
        if (pl.op === 'skip') {
          this.stats.skipped++;
          continue;
        }
        try {
          const ok = pl.op === 'merge' ? this.placeMerge(pl) : this.placePut(pl, kinds);
          if (!ok) retry.push(pl.op === 'put' && pl.then ? pl.then.p : pl.p);
        } catch (err) {
          this.warn({ path: pl.p.toString(), err: String(err) }, 'could not apply a change');
        }
      }
    });
    // Temp files of puts that were not placed and will not be retried (refused, skipped).
    const again = new Set(retry.map(key));
    for (const pl of plans) {
      if (pl.op === 'put' && pl.tmp && !again.has(key(pl.then ? pl.then.p : pl.p))) fs.rmSync(pl.tmp, { force: true });
    }
    return retry;
  }

  private placeMerge(pl: { p: Buffer; local: IndexEntry; vector: VersionVector; origin: string; mode?: number; mtimeNs?: bigint; owner?: RemoteEntry }): boolean {
    if (!this.unchanged(pl.p, pl.local, false)) return false;
    let l = pl.local;
    const abs = absOf(this.rootBuf, pl.p);
    if (pl.owner) this.chownTo(abs, pl.owner);
    if (pl.mode !== undefined && pl.mode !== l.mode) {
      fs.chmodSync(abs, pl.mode);
      l = { ...l, mode: pl.mode };
    }
    if (pl.mtimeNs !== undefined && pl.mtimeNs !== l.mtimeNs) {
      fs.utimesSync(abs, Date.now() / 1000, toSeconds(pl.mtimeNs));
      l = { ...l, mtimeNs: fs.lstatSync(abs, { bigint: true }).mtimeNs };
    }
    this.j.commit({
      kind: 'setattr', fileid: l.fileid, path: pl.p, toPath: null, type: l.type, size: l.size, mtimeNs: l.mtimeNs,
      mode: l.mode, hashes: l.hashes, target: null, origin: pl.origin, vector: pl.vector,
    }, { put: { ...l, vector: pl.vector, origin: pl.origin } });
    this.stats.applied++;
    return true;
  }

  private placePut(pl: PutPlan, kinds: Map<string, ChangeKind>): boolean {
    const { p, r } = pl;
    if (pl.r.type === 'file' && !pl.tmp && !this.linkable(pl)) return false;
    const made: Buffer[] = [];
    if (!parentsOk(this.rootBuf, p, false)) {
      // A parent that is not a directory (or a symlink) is never written through.
      const blocked = this.blockedParent(p);
      if (blocked) {
        // The parent lost its name to a file and was kept as a conflict copy placed earlier in
        // this same run: this path was decided before the copy existed, so decide it again
        // (it now goes into the copy). Refusing it would lose it: its row is behind the cursor.
        if (!this.redirect(p).equals(p)) return false;
        this.stats.refused++;
        this.warn({ path: p.toString(), parent: blocked.toString() }, 'refused: a parent is not a directory here');
        return true;
      }
      if (!parentsOk(this.rootBuf, p, true, made)) return false;
      this.journalMade(made);
    }
    if (!this.unchanged(p, pl.local, pl.localIsLink, r)) return false;
    if (pl.then && !this.unchanged(pl.then.p, pl.then.local, false)) return false;
    const abs = absOf(this.rootBuf, p);
    const local = pl.local;
    // Blocks of what this replaces (usage): none when it is moved aside or another name stays.
    const before = local && !pl.localIsLink && !pl.moveLocalTo ? fs.lstatSync(abs, { bigint: true, throwIfNoEntry: false }) : undefined;
    // What is here goes first: aside (lost a conflict), or away when its type differs.
    let movedAside = false;
    if (local && pl.moveLocalTo) {
      this.moveAside(local, p, pl.moveLocalTo);
      movedAside = true;
    } else if (local && !pl.localIsLink && local.type !== r.type) {
      if (local.type === 'dir') {
        try {
          fs.rmdirSync(abs);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw err;
          // Content the peer did not know of stays, under the conflict name.
          this.moveAside(local, p, conflictPath(p, local));
          movedAside = true;
        }
      } else fs.unlinkSync(abs);
    }
    const mode = r.mode & 0o7777;
    let asLinkOf: IndexEntry | undefined;
    if (r.type === 'file') {
      if (!pl.tmp) {
        asLinkOf = this.j.index.byPath(r.linkOf!)!;
        const tmp = path.join(ensureStaging(this.zone.root), uniqueTemp());
        fs.linkSync(absOf(this.rootBuf, asLinkOf.path), tmp);
        fs.renameSync(tmp, abs);
      } else {
        // Mode, owner and mtime were set on the temp file when it was assembled.
        fs.renameSync(pl.tmp, abs);
        // Gone from the staging area: nothing for place() to clean up (an rmSync of a missing
        // name cost it an lstat and an exception per file).
        pl.tmp = undefined;
      }
    } else if (r.type === 'dir') {
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      if (!st) fs.mkdirSync(abs, { mode });
      fs.chmodSync(abs, mode);
      this.chownTo(abs, r);
    } else {
      const tmp = path.join(ensureStaging(this.zone.root), uniqueTemp());
      fs.symlinkSync(r.target ?? Buffer.alloc(0), tmp);
      this.chownTo(tmp, r);
      try {
        fs.lutimesSync(tmp, Date.now() / 1000, toSeconds(r.mtimeNs));
      } catch {
        /* not everywhere */
      }
      fs.renameSync(tmp, abs);
    }
    const st = fs.lstatSync(abs, { bigint: true });
    const placedIno = st.ino;
    const freed = before && !movedAside && (before.nlink <= 1n || before.isDirectory()) && before.ino !== st.ino ? before.blocks : 0n;
    this.account(((asLinkOf ? 0n : st.ino === before?.ino ? st.blocks - before.blocks : st.blocks) - freed) * 512n);
    const replaced = local && !pl.localIsLink && !movedAside && local.fileid !== placedIno ? local : undefined;
    if (asLinkOf) {
      this.j.commit({
        kind: 'link', fileid: asLinkOf.fileid, path: p, toPath: null, type: 'file', size: asLinkOf.size, mtimeNs: asLinkOf.mtimeNs,
        mode: asLinkOf.mode, hashes: asLinkOf.hashes, target: null, origin: r.origin, vector: r.vector,
      }, {
        put: { ...asLinkOf, vector: pl.vector, origin: r.origin },
        delete: replaced && replaced.fileid !== asLinkOf.fileid ? replaced.fileid : undefined,
      });
    } else {
      const entry: IndexEntry = {
        fileid: placedIno, path: p, type: r.type, size: r.type === 'file' ? st.size : st.size, mtimeNs: st.mtimeNs, ino: placedIno,
        mode: Number(st.mode & 0o7777n), vector: pl.vector, hashes: r.type === 'file' ? r.hashes : null, origin: r.origin,
      };
      this.j.commit({
        kind: kindFor(r, kinds.get(key(p)), !!local), fileid: placedIno, path: p, toPath: null, type: r.type, size: entry.size,
        mtimeNs: entry.mtimeNs, mode: entry.mode, hashes: entry.hashes, target: r.type === 'symlink' ? r.target : null,
        origin: r.origin, vector: pl.vector,
      }, {
        put: entry, delete: replaced?.fileid,
        deleteUnder: replaced?.type === 'dir' ? p : undefined,
      });
      this.blocks.add(p, entry.hashes);
    }
    this.stats.applied++;
    if (pl.then) this.placeMerge(pl.then);
    return true;
  }

  /**
   * Journal directories made as a last resort (a parent missing here): as this node's own new
   * directories (after any removal at their path); their own rows, when they come, merge.
   */
  private journalMade(made: Buffer[]): void {
    for (const d of made) {
      const st = fs.lstatSync(absOf(this.rootBuf, d), { bigint: true });
      this.account(st.blocks * 512n);
      const vector = this.j.nextVector(this.j.tombstone(d)?.vector);
      const entry: IndexEntry = {
        fileid: st.ino, path: d, type: 'dir', size: st.size, mtimeNs: st.mtimeNs, ino: st.ino, mode: Number(st.mode & 0o7777n),
        vector, hashes: null, origin: this.j.nodeId,
      };
      this.j.commit({
        kind: 'mkdir', fileid: st.ino, path: d, toPath: null, type: 'dir', size: st.size, mtimeNs: st.mtimeNs, mode: entry.mode,
        hashes: null, target: null, origin: this.j.nodeId, vector,
      }, { put: entry });
    }
  }

  /** The first parent of `p` that exists here as something other than a directory. */
  private blockedParent(p: Buffer): Buffer | null {
    for (let i = p.indexOf(0x2f); i >= 0; i = p.indexOf(0x2f, i + 1)) {
      const st = fs.lstatSync(absOf(this.rootBuf, p.subarray(0, i)), { throwIfNoEntry: false });
      if (st && !st.isDirectory()) return p.subarray(0, i);
      if (!st) return null;
    }
    return null;
  }

  /** Rename the local object at `p` to its conflict name `to`, journaled with its own vector and origin. */
  private moveAside(local: IndexEntry, p: Buffer, to: Buffer): void {
    let there: IndexEntry | undefined;
    if (fs.lstatSync(absOf(this.rootBuf, to), { throwIfNoEntry: false })) {
      // The same conflict copy may have arrived already from a node that resolved it first: the
      // same version then, replaced by this one (the rename keeps one object).
      there = this.j.index.byPath(to);
      if (!there || there.type !== local.type || compare(there.vector, local.vector) !== 'equal' || local.type === 'dir') {
        throw new GvError('EEXIST', `conflict copy ${to.toString()} exists already`);
      }
    }
    fs.renameSync(absOf(this.rootBuf, p), absOf(this.rootBuf, to));
    const dup = there && there.fileid !== local.fileid ? there.fileid : undefined;
    this.j.commit({
      kind: 'rename', fileid: local.fileid, path: p, toPath: to, type: local.type, size: local.size, mtimeNs: local.mtimeNs,
      mode: local.mode, hashes: local.hashes, target: null, origin: local.origin, vector: local.vector,
    }, { put: { ...local, path: to }, delete: dup, movePrefix: local.type === 'dir' ? { from: p, to } : undefined });
  }

  // ---------------------------------------------------------------- removes and renames

  /**
   * Apply removes/rmdirs/renames from rows[start] on, in one journal task, until a row that is
   * not one of them, a bad path, or a row that needs the peer's entry (a rename whose source is
   * not here as the peer had it: answered as `fallback`, that row counts as done) or must wait
   * for a local change racing it (decided again after a pause, bounded).
   */
  private async structuralRun(rows: readonly ChangeRow[], start: number): Promise<{ next: number; fallback: Buffer | null }> {
    for (let round = 0; ; round++) {
      let next = start;
      let fallback: Buffer | null = null;
      let again = false;
      await this.j.enqueue('replicate', () => {
        for (let k = start; k < rows.length && k - start < 1000; k++) {
          const row = rows[k]!;
          if (row.kind !== 'remove' && row.kind !== 'rmdir' && row.kind !== 'rename') break;
          if (k > start && (badPath(row.path) || (row.kind === 'rename' && (!row.toPath || badPath(row.toPath))))) break;
          const r = row.kind === 'rename' ? this.rename(row) : this.remove(row.path, row.vector, row.origin, row.kind);
          if (r === 'retry') {
            again = k === start;
            break;
          }
          next = k + 1;
          if (r !== 'done') {
            fallback = r;
            break;
          }
        }
      });
      if (!again) return { next, fallback };
      if (round >= REDECIDE_DELAYS.length) throw new GvError('EAGAIN', `local changes keep racing ${rows[start]!.path.toString()}`);
      this.stats.redecided++;
      await new Promise((r) => setTimeout(r, REDECIDE_DELAYS[round]));
    }
  }

  private remove(p: Buffer, v: VersionVector, origin: string, kind: ChangeKind): 'done' | 'retry' {
    const { entry: l, isLink } = this.localAt(p);
    if (!l) {
      const t = this.j.tombstone(p);
      if (t) {
        const c = compare(v, t.vector);
        if (c === 'equal' || c === 'before') {
          this.stats.skipped++;
          return 'done';
        }
      }
      const st = parentsOk(this.rootBuf, p) ? fs.lstatSync(absOf(this.rootBuf, p), { bigint: true, throwIfNoEntry: false }) : undefined;
      if (st) {
        // Not journaled yet: a local change under way (decide again), or local content the peer
        // never knew of (it stays; its own journal entry will carry it back).
        if (this.j.busy(p, st.ino) || this.j.coalescer.has(st.ino)) return 'retry';
        this.stats.skipped++;
        return 'done';
      }
      // Nothing here: keep the removal (so it reaches nodes that only hear of it through us).
      const vector = t ? merge(t.vector, v) : v;
      this.j.commit({
        kind: kind === 'rmdir' ? 'rmdir' : 'remove', fileid: 0n, path: p, toPath: null, type: t?.type ?? (kind === 'rmdir' ? 'dir' : 'file'),
        size: null, mtimeNs: null, mode: null, hashes: null, target: null, origin, vector,
      }, {});
      this.stats.applied++;
      return 'done';
    }
    const c = compare(l.vector, v);
    if (c === 'after' || (isLink && c !== 'before' && c !== 'equal')) {
      this.stats.skipped++;
      return 'done';
    }
    if (!this.unchanged(p, l, isLink)) return 'retry';
    if (c === 'concurrent') {
      // Modify beats delete: it stays, after the removal, so the removing node takes it back.
      this.stats.conflicts++;
      this.placeMerge({ p, local: l, vector: merge(l.vector, v), origin: l.origin });
      return 'done';
    }
    const abs = absOf(this.rootBuf, p);
    const gone = fs.lstatSync(abs, { bigint: true, throwIfNoEntry: false });
    {
      if (l.type === 'dir' && !isLink) {
        try {
          fs.rmdirSync(abs);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw err;
          // Content the remote did not know of: the directory stays (modify beats delete), as a
          // version after the removal, so the remover takes it back.
          this.stats.conflicts++;
          this.placeMerge({ p, local: l, vector: this.j.nextVector(merge(l.vector, v)), origin: this.j.nodeId });
          return 'done';
        }
      } else fs.unlinkSync(abs);
      if (gone && (gone.nlink <= 1n || gone.isDirectory())) this.account(-gone.blocks * 512n);
      this.j.commit({
        kind: l.type === 'dir' ? 'rmdir' : 'remove', fileid: l.fileid, path: p, toPath: null, type: l.type, size: null,
        mtimeNs: null, mode: null, hashes: null, target: null, origin, vector: v,
      }, isLink ? {} : { delete: l.fileid, deleteUnder: l.type === 'dir' ? p : undefined });
      this.stats.applied++;
      return 'done';
    }
  }

  private rename(row: ChangeRow): 'done' | 'retry' | Buffer {
    const from = row.path;
    const to = row.toPath!;
    const v = row.vector;
    if (from.equals(to)) return 'done';
    const { entry: l, isLink } = this.localAt(from);
    const lq = this.j.index.byPath(to);
    const movable = l && !isLink && (compare(l.vector, v) === 'before' || compare(l.vector, v) === 'equal')
      && (!lq || lq.fileid === l.fileid || ['before', 'equal'].includes(compare(lq.vector, v)))
      && !isReservedLike(to);
    if (!movable) {
      if (lq && compare(lq.vector, v) !== 'before' && compare(lq.vector, v) !== 'concurrent') {
        // What is at the destination already includes this move.
        const r = this.remove(from, v, row.origin, row.type === 'dir' ? 'rmdir' : 'remove');
        // A directory the peer moved aside as a conflict copy, the copy placed here from its entry
        // before the move: contents the peer moved with it were gone under their old names when
        // this node asked (possibly in an earlier pull). List them under the copy.
        if (r === 'done' && lq.type === 'dir' && isConflictPath(to) && originalOf(to)?.equals(from) && this.renamedDirs.length < 1000) {
          this.renamedDirs.push(to);
        }
        return r;
      }
      // Take the destination from the peer, and treat the old path as removed.
      const r = this.remove(from, v, row.origin, row.type === 'dir' ? 'rmdir' : 'remove');
      return r === 'retry' ? r : to;
    }
    if (!this.unchanged(from, l, false) || !this.unchanged(to, lq, false)) return 'retry';
    if (!parentsOk(this.rootBuf, to, false)) {
      if (this.blockedParent(to)) {
        this.stats.refused++;
        this.warn({ path: to.toString() }, 'refused: a parent is not a directory here');
        return 'done';
      }
      const made: Buffer[] = [];
      if (!parentsOk(this.rootBuf, to, true, made)) return 'retry';
      this.journalMade(made);
    }
    {
      try {
        fs.renameSync(absOf(this.rootBuf, from), absOf(this.rootBuf, to));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'EISDIR' || code === 'ENOTDIR') {
          // The destination holds something that cannot simply be replaced: take it from the peer.
          return this.remove(from, v, row.origin, l.type === 'dir' ? 'rmdir' : 'remove') === 'retry' ? 'retry' : to;
        }
        throw err;
      }
      const gone = lq && lq.fileid !== l.fileid ? lq : undefined;
      this.j.commit({
        kind: 'rename', fileid: l.fileid, path: from, toPath: to, type: l.type, size: l.size, mtimeNs: l.mtimeNs, mode: l.mode,
        hashes: l.hashes, target: null, origin: row.origin, vector: v,
      }, {
        put: { ...l, path: to, vector: v, origin: row.origin }, movePrefix: l.type === 'dir' ? { from, to } : undefined,
        delete: gone?.fileid, deleteUnder: gone?.type === 'dir' ? to : undefined,
      });
      if (l.type === 'dir' && this.renamedDirs.length < 1000) this.renamedDirs.push(to);
      this.stats.applied++;
      return 'done';
    }
  }
}

/** Never the staging area (checked by badPath already; kept as a guard for renames). */
function isReservedLike(p: Buffer): boolean {
  return badPath(p) !== null;
}
