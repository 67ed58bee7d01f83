/**
 * Changes made to a zone's directory behind the daemon's back. `reconcile()` compares what is at
 * one path now with the index (size, mtime, inode; content hash only when size or mtime differ)
 * and journals the difference; `scanZone()` walks the whole zone at start-up and also journals
 * what disappeared. Out-of-band changes get origin = this node, like any other local change.
 */
import fs, { type BigIntStats } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { STAGING_DIR } from '../vfs/reserved.js';
import type { Attr } from '../vfs/types.js';
import { blockCount } from './hasher.js';
import { joinRel } from './index-store.js';
import { typeOfMode, type ZoneJournal } from './zone-journal.js';

export interface ScanStats {
  /** Objects looked at. */
  entries: number;
  /** Files whose content was read and hashed. */
  hashedFiles: number;
  /** Journal entries written. */
  changes: number;
  /** Looks put off because a mutation the daemon brokers held the path or object. */
  deferred: number;
  /** Looks (of entries) that found what the index holds without a query (see unchanged()). */
  quick: number;
}

export const newScanStats = (): ScanStats => ({ entries: 0, hashedFiles: 0, changes: 0, deferred: 0, quick: 0 });

const SLICE = 256;
/**
 * Names never journaled (nor watched) at the zone root: the ZFS snapshot directory and the
 * daemon's staging directory (replication's temporary files, renamed into place when complete).
 */
export const SKIP_AT_ROOT: ReadonlySet<string> = new Set(['.zfs', STAGING_DIR]);

export function skipRel(rel: Buffer): boolean {
  const first = rel.indexOf(0x2f);
  return SKIP_AT_ROOT.has((first < 0 ? rel : rel.subarray(0, first)).toString('latin1'));
}

function attrOfStat(st: BigIntStats): Pick<Attr, 'type' | 'size' | 'mtime' | 'mode' | 'fileid'> {
  return {
    type: typeOfMode(st.mode), size: st.size, fileid: st.ino, mode: Number(st.mode & 0o7777n),
    mtime: { sec: Number(st.mtimeNs / 1_000_000_000n), nsec: Number(st.mtimeNs % 1_000_000_000n) },
  };
}

const absOf = (root: Buffer, rel: Buffer): Buffer => (rel.length === 0 ? root : Buffer.concat([root, Buffer.from('/'), rel]));

/** Block hashes of the file at `abs` (every block), or undefined when it cannot be read. */
async function hashFile(j: ZoneJournal, abs: Buffer, size: bigint): Promise<Buffer | undefined> {
  let fh: fsp.FileHandle;
  try {
    // O_NOATIME: scanning must not change what it scans (falls back when not permitted).
    fh = await fsp.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK | (fs.constants.O_NOATIME ?? 0))
      .catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EPERM') throw err;
        return fsp.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      });
  } catch {
    return undefined;
  }
  try {
    const n = blockCount(size);
    return await j.hasher.update(
      async (into, offset, length) => (await fh.read(into, 0, length, offset)).bytesRead,
      Number(size), null, Array.from({ length: n }, (_, i) => i),
    );
  } finally {
    await fh.close();
  }
}

/**
 * Bring the index in line with what `rel` is now (`st`, or undefined when nothing is there),
 * journaling each difference. Must run on the journal's queue.
 */
export async function reconcile(
  j: ZoneJournal, root: Buffer, rel: Buffer, st: BigIntStats | undefined, stats: ScanStats = newScanStats(),
): Promise<void> {
  if (rel.length === 0 || skipRel(rel)) return;
  stats.entries++;
  const atPath = j.index.byPath(rel);
  if (!st) {
    if (atPath) {
      j.commitGone(atPath);
      stats.changes++;
    }
    return;
  }
  const type = typeOfMode(st.mode);
  // Writes the daemon brokered and has not journaled yet: their flush will.
  if (j.coalescer.has(st.ino)) return;
  let known = j.index.get(st.ino);
  if (known && known.type !== type) {
    // The inode number was reused by an object of another type: the old one is gone.
    j.commitGone(known);
    stats.changes++;
    known = undefined;
  }
  if (atPath && atPath.fileid !== st.ino && j.index.get(atPath.fileid)?.path.equals(rel)) {
    // The path names another object now; the old one is gone (or shows up elsewhere as new).
    j.commitGone(atPath);
    stats.changes++;
  }
  const attr = attrOfStat(st);
  if (known) {
    if (!known.path.equals(rel)) {
      if (st.nlink > 1) {
        const there = fs.lstatSync(absOf(root, known.path), { bigint: true, throwIfNoEntry: false });
        if (there && there.ino === st.ino) return; // another name of a known file
      }
      j.commitRename(known, rel);
      stats.changes++;
      known = j.index.get(st.ino)!;
    }
    if (type === 'file' && (st.size !== known.size || st.mtimeNs !== known.mtimeNs)) {
      const hashes = await hashFile(j, absOf(root, rel), st.size);
      if (!hashes) return;
      stats.hashedFiles++;
      const same = known.size === st.size && known.hashes !== null && known.hashes.equals(hashes);
      j.commitObject(same ? 'setattr' : 'write', attr, rel, { hashes, prev: known });
      stats.changes++;
    } else if (attr.mode !== known.mode) {
      j.commitObject('setattr', attr, rel, { prev: known });
      stats.changes++;
    }
    return;
  }
  let hashes: Buffer | null = null;
  let target: Buffer | null = null;
  if (type === 'file') {
    hashes = (await hashFile(j, absOf(root, rel), st.size)) ?? null;
    if (hashes === null) return;
    stats.hashedFiles++;
  } else if (type === 'symlink') {
    target = await fsp.readlink(absOf(root, rel), { encoding: 'buffer' }).catch(() => null);
  }
  const kind = type === 'file' ? 'create' : type === 'dir' ? 'mkdir' : type === 'symlink' ? 'symlink' : 'mknod';
  j.commitObject(kind, attr, rel, { hashes, target });
  stats.changes++;
}

/**
 * True when `reconcile(rel, st)` would journal nothing, known without a query: writes the daemon
 * brokered are pending for the object, or the entry last put in the index at `rel` (while it still
 * is the index's entry there and for its object) is this object with this type and mode, and for a
 * file this size and mtime, which is what reconcile compares. Anything else takes the full look.
 */
export function unchanged(j: ZoneJournal, rel: Buffer, st: BigIntStats): boolean {
  if (rel.length === 0 || skipRel(rel)) return false;
  if (j.coalescer.has(st.ino)) return true;
  const e = j.index.recentAt(rel);
  if (!e || e.fileid !== st.ino) return false;
  const type = typeOfMode(st.mode);
  if (e.type !== type || e.mode !== Number(st.mode & 0o7777n)) return false;
  return type !== 'file' || (e.size === st.size && e.mtimeNs === st.mtimeNs);
}

/** Tries of reconcileLater while the path stays held (20 ms apart: ~10 s). */
const LATER_TRIES = 500;

/**
 * Reconcile `rel` on the journal's queue once no brokered mutation holds it (looked at again every
 * 20 ms, at most LATER_TRIES times; then it is reconciled anyway).
 */
export function reconcileLater(j: ZoneJournal, root: Buffer, rel: Buffer, stats: ScanStats, tries = 0): void {
  const t = setTimeout(() => {
    if (j.isClosed) return;
    void j.enqueue('rescan', () => {
      if (j.busy(rel) && tries < LATER_TRIES) return reconcileLater(j, root, rel, stats, tries + 1);
      const st = fs.lstatSync(absOf(root, rel), { bigint: true, throwIfNoEntry: false });
      if (st && j.busy(rel, st.ino) && tries < LATER_TRIES) return reconcileLater(j, root, rel, stats, tries + 1);
      return reconcile(j, root, rel, st, stats);
    });
  }, 20);
  t.unref();
}

/**
 * Walk the zone (parents before children) reconciling every object, then journal the indexed
 * objects that were not found (children before parents). Only files whose size, mtime or inode
 * differ from the index are read. Run it on the journal's queue (`journal.enqueue`).
 */
export async function scanZone(j: ZoneJournal, rootDir: string): Promise<ScanStats> {
  const stats = newScanStats();
  const root = Buffer.from(path.resolve(rootDir));
  const seen = new Set<bigint>();
  const dirs: Buffer[] = [Buffer.alloc(0)];
  let sinceYield = 0;
  while (dirs.length > 0) {
    const dir = dirs.shift()!;
    let names: Buffer[];
    try {
      names = await fsp.readdir(absOf(root, dir), { encoding: 'buffer' });
    } catch {
      continue;
    }
    for (const name of names) {
      const rel = joinRel(dir, name);
      if (skipRel(rel)) continue;
      const st = fs.lstatSync(absOf(root, rel), { bigint: true, throwIfNoEntry: false });
      if (!st) continue;
      if (seen.has(st.ino)) continue; // a further hard link of a file already reconciled
      seen.add(st.ino);
      if (j.busy(rel, st.ino)) {
        // A mutation through NFS is changing it right now: its own entry comes first, then a look.
        stats.deferred++;
        reconcileLater(j, root, rel, stats);
      } else await reconcile(j, root, rel, st, stats);
      if (st.isDirectory()) dirs.push(rel);
      if (++sinceYield >= SLICE) {
        sinceYield = 0;
        await new Promise((r) => setImmediate(r));
      }
    }
  }
  const missing = j.index.all().filter((e) => !seen.has(e.fileid)).sort((a, b) => b.path.length - a.path.length);
  for (const e of missing) {
    const cur = j.index.get(e.fileid);
    if (!cur) continue;
    if (j.busy(cur.path, cur.fileid)) {
      stats.deferred++;
      reconcileLater(j, root, cur.path, stats);
      continue;
    }
    j.commitGone(cur);
    stats.changes++;
  }
  return stats;
}
