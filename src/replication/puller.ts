/**
 * One pull: a peer's journal of one zone from this node's cursor, page by page, applied and the
 * cursor advanced (persisted in the journal's queue, so it commits with the batch of the rows it
 * covers). The paths of a fetched page are pending (pull gate) until applied.
 */
import type { ZoneJournal } from '../journal/zone-journal.js';
import { ZoneApplier, type ApplierOptions } from './apply.js';
import type { PeerCursors } from './cursors.js';
import type { PendingPaths } from './pull-gate.js';
import { MAX_JOURNAL_PAGE, type JournalPage, type ReplicaSource } from './source.js';

export interface PullTarget {
  zone: string;
  root: string;
  journal: ZoneJournal;
  peerId: string;
}

export interface PullProgress {
  /** The peer's version as its journal last answered. */
  remoteVersion: bigint;
  applied: bigint;
}

/** Rows of a pull's first journal page (later pages are MAX_JOURNAL_PAGE). */
const FIRST_PAGE = 128;
/** Pages applied per pull before it yields its slot (other zones and peers get a turn). */
const MAX_PAGES_PER_PULL = 100;
/** A new member takes a snapshot (listing) of a peer whose journal is longer than this. */
export const SNAPSHOT_MIN_VERSION = 2000n;

export interface PullOptions {
  /** Sync from a listing when this node has nothing from the peer yet and its version is above this. */
  snapshotMinVersion?: bigint;
}

export async function pullOnce(
  t: PullTarget, source: ReplicaSource, cursors: PeerCursors, gate: PendingPaths, applier: ZoneApplier,
  progress: (p: PullProgress) => void, stopped: () => boolean, opts: PullOptions = {},
): Promise<boolean> {
  let cursor = cursors.get(t.zone, t.peerId);
  applier.beginPull();
  if (cursor === 0n) {
    const snap = await snapshot(t, source, cursors, gate, applier, progress, opts.snapshotMinVersion ?? SNAPSHOT_MIN_VERSION);
    if (snap !== null) cursor = snap;
  }
  // The next page is asked for as soon as a page arrives (it starts after that page's last row),
  // so the peer reads and encodes it while this node applies the current one. The first page is
  // small: applying starts after a short answer instead of a full page.
  let ahead: { since: bigint; page: Promise<JournalPage> } | null = null;
  for (let page = 0; page < MAX_PAGES_PER_PULL && !stopped(); page++) {
    const limit = page === 0 ? FIRST_PAGE : MAX_JOURNAL_PAGE;
    const res: JournalPage = ahead && ahead.since === cursor ? await ahead.page : await source.journal(t.zone, cursor, limit);
    ahead = null;
    if (res.version < cursor) {
      // The peer's journal restarted (a new database): take it again from the start; vectors
      // make the rows already applied compare equal.
      cursor = 0n;
      cursors.note(t.zone, t.peerId, 0n);
      void t.journal.enqueue('cursor', () => cursors.set(t.zone, t.peerId, 0n));
      continue;
    }
    progress({ remoteVersion: res.version, applied: cursor });
    if (res.rows.length === 0) return true;
    // Each row's paths stay pending until the step that applies it is done.
    const releases = res.rows.map((r) => gate.add(t.zone, r.toPath ? [r.path, r.toPath] : [r.path]));
    let released = 0;
    try {
      const applying = applier.apply(source, res.rows, (v) => {
        while (released < res.rows.length && res.rows[released]!.version <= v) releases[released++]!();
        if (v <= cursor) return;
        cursor = v;
        cursors.note(t.zone, t.peerId, v);
        void t.journal.enqueue('cursor', () => cursors.set(t.zone, t.peerId, v));
        progress({ remoteVersion: res.version, applied: v });
      });
      // Asked for after apply() has sent its first requests (entries of its first runs), so the
      // peer answers those first.
      const last = res.rows[res.rows.length - 1]!.version;
      if (last < res.version && page + 1 < MAX_PAGES_PER_PULL && !stopped()) {
        ahead = { since: last, page: source.journal(t.zone, last, MAX_JOURNAL_PAGE) };
        ahead.page.catch(() => undefined);
      }
      await applying;
    } finally {
      for (const r of releases) r();
    }
    if (cursor >= res.version) return true;
    // Let NFS calls in between pages.
    await new Promise((r) => setImmediate(r));
  }
  return false;
}

export type { ApplierOptions };

/**
 * Initial sync from a listing: the peer's version is noted BEFORE listing, the listing applied
 * page by page, then the cursor set to that version (the journal replay from there re-applies
 * whatever changed meanwhile; equal vectors are skipped). An interrupted snapshot resumes (same
 * version, next page) on the next pull. Answers the new cursor, or null when no snapshot is due.
 */
async function snapshot(
  t: PullTarget, source: ReplicaSource, cursors: PeerCursors, gate: PendingPaths, applier: ZoneApplier,
  progress: (p: PullProgress) => void, min: bigint,
): Promise<bigint | null> {
  let state = applier.snapshots.get(t.peerId);
  if (!state) {
    const head = await source.journal(t.zone, 0n, 1);
    if (head.version <= min) return null;
    state = { version: head.version, pos: { after: null } };
    applier.snapshots.set(t.peerId, state);
  }
  progress({ remoteVersion: state.version, applied: 0n });
  await applier.syncTree(source, Buffer.alloc(0), state.pos, (paths) => gate.add(t.zone, paths));
  applier.snapshots.delete(t.peerId);
  const v = state.version;
  cursors.note(t.zone, t.peerId, v);
  void t.journal.enqueue('cursor', () => cursors.set(t.zone, t.peerId, v));
  progress({ remoteVersion: v, applied: v });
  return v;
}
