/**
 * Races between the daemon's own mutations and the out-of-band watcher, made deterministic: the
 * backend's system call is held open (a gate after it returns) or the journal's queue is blocked,
 * and the watcher is told to look at the path at exactly that moment. The watcher must neither
 * journal the daemon's change a second time nor turn a rename into a removal.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { changeSummary, waitFor } from './harness/wait.js';
import type { ChangeRow } from '../src/journal/changes.js';
import { GvDatabase } from '../src/journal/db.js';
import { scanZone } from '../src/journal/scan.js';
import { JournalService, type AttachedZone } from '../src/journal/service.js';
import { ZoneWatcher } from '../src/journal/watch.js';
import { LocalZoneFs } from '../src/vfs/local.js';
import type { CallContext, FileId } from '../src/vfs/types.js';

const ROOT: CallContext = { uid: 0, gid: 0, gids: [], client: '127.0.0.1', origin: 'nfs' };
const NODE = '0123456789abcdef0123456789abcdef';
const b = (s: string): Buffer => Buffer.from(s);

let tmp: string;
let zoneDir: string;
let db: GvDatabase;
let local: LocalZoneFs;
let att: AttachedZone;
let watcher: ZoneWatcher;

const rows = (since: bigint): ChangeRow[] => att.journal.log.since(since);
const summary = (rs: ChangeRow[]) => changeSummary(rs);


/** A gate: `reached` resolves when the call got there, `open()` lets it go on. */
function gate(): { reached: Promise<void>; arrive: () => void; wait: Promise<void>; open: () => void } {
  let arrive!: () => void;
  let open!: () => void;
  const reached = new Promise<void>((r) => {
    arrive = r;
  });
  const wait = new Promise<void>((r) => {
    open = r;
  });
  return { reached, arrive, wait, open };
}

/** Hold `method` of the backend open after its system call returned, until the gate opens (once). */
function holdAfter<K extends 'write' | 'setattr' | 'rename' | 'remove' | 'create'>(method: K): ReturnType<typeof gate> {
  const g = gate();
  const orig = local[method].bind(local) as (...a: unknown[]) => Promise<unknown>;
  (local as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
    (local as unknown as Record<string, unknown>)[method] = orig;
    const r = await orig(...args);
    g.arrive();
    await g.wait;
    return r;
  };
  return g;
}

/** Block the journal's queue until the returned function is called. */
function blockQueue(): () => void {
  let release!: () => void;
  const p = new Promise<void>((r) => {
    release = r;
  });
  void att.journal.enqueue('test block', () => p);
  return release;
}

/** The watcher has looked at (reconciled) `n` paths in all. */
const looked = (n: number) => waitFor(`watcher look ${n}`, () => watcher.stats.entries >= n);

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-jrace-'));
  zoneDir = path.join(tmp, 'zone');
  fs.mkdirSync(zoneDir);
  db = GvDatabase.open(path.join(tmp, 'state'));
  local = await LocalZoneFs.open({ name: 'z', zoneId: 1, root: zoneDir, db, usageScan: false });
  const svc = new JournalService(db, { nodeId: NODE, watch: false, settleMs: 200 });
  att = await svc.attach(local, zoneDir);
  await att.scanned;
  // The watcher's reconciliation without its chokidar process: the test reports the events.
  watcher = new ZoneWatcher(att.journal, zoneDir, { debounceMs: 5, removalDelayMs: 5 });
});

afterEach(async () => {
  await watcher.stop();
  await att.fs.close().catch(() => undefined);
  db.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function mkfile(name: string, dir: FileId = local.rootId): Promise<FileId> {
  const id = (await att.fs.create(ROOT, dir, b(name), { mode: 'guarded', attrs: { mode: 0o644 } })).id;
  await att.fs.commit(ROOT, id, 0, 0);
  await att.journal.settled();
  return id;
}

describe('journal races with the watcher', () => {
  it('a look while a FILE_SYNC WRITE is under way does not journal the write twice', async () => {
    const id = await mkfile('f');
    const v0 = att.journal.version();
    const g = holdAfter('write');
    const w = att.fs.write(ROOT, id, 0, b('new content'), 'file_sync');
    await g.reached; // the data is in the file; the journal has not heard of it yet
    watcher.notice(path.join(zoneDir, 'f'), false);
    await waitFor('watcher put off', () => watcher.stats.deferred > 0 || rows(v0).length > 0);
    g.open();
    await w;
    await att.journal.idle();
    await looked(1);
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['write f']);
  });

  it('a look queued before a truncate\'s entry but run after the truncate does not journal it twice', async () => {
    const id = await mkfile('f');
    await att.fs.write(ROOT, id, 0, Buffer.alloc(5000, 1), 'file_sync');
    await att.journal.idle();
    const v0 = att.journal.version();
    const unblock = blockQueue();
    watcher.notice(path.join(zoneDir, 'f'), false);
    // The look is queued (behind the block) before the SETATTR starts.
    await new Promise((r) => setTimeout(r, 30));
    await att.fs.setattr(ROOT, id, { size: 1000n });
    unblock();
    await att.journal.idle();
    await looked(1);
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['truncate f']);
    expect(att.journal.index.get(id)!.size).toBe(1000n);
  });

  it('renaming a hard-linked file while the watcher looks at the old name is journaled as a rename', async () => {
    const d = (await att.fs.mkdir(ROOT, local.rootId, b('d'), { mode: 0o755 })).id;
    const f = await mkfile('f', d);
    await att.fs.link(ROOT, f, local.rootId, b('hard'));
    await att.journal.settled();
    const v0 = att.journal.version();
    const g = holdAfter('rename');
    const r = att.fs.rename(ROOT, d, b('f'), local.rootId, b('moved'));
    await g.reached; // d/f is gone from the directory, the rename not journaled yet
    watcher.notice(path.join(zoneDir, 'd', 'f'), true);
    watcher.notice(path.join(zoneDir, 'moved'), false);
    await waitFor('watcher put off', () => watcher.stats.deferred >= 2 || rows(v0).length > 0);
    g.open();
    await r;
    await att.fs.remove(ROOT, local.rootId, b('hard'));
    await att.journal.settled();
    await looked(2);
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['rename d/f -> moved', 'remove hard']);
    expect(att.journal.index.byPath(b('moved'))?.fileid).toBe(f);
    expect(att.journal.index.byPath(b('d/f'))).toBeUndefined();
  });

  it('a look at a name being removed waits for the removal\'s entry', async () => {
    const f = await mkfile('gone');
    const v0 = att.journal.version();
    const g = holdAfter('remove');
    const r = att.fs.remove(ROOT, local.rootId, b('gone'));
    await g.reached;
    watcher.notice(path.join(zoneDir, 'gone'), true);
    await waitFor('watcher put off', () => watcher.stats.deferred > 0 || rows(v0).length > 0);
    g.open();
    await r;
    await att.journal.settled();
    await looked(1);
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['remove gone']);
    expect(att.journal.index.get(f)).toBeUndefined();
  });

  it('the start-up scan leaves an object a mutation holds to that mutation, then looks again', async () => {
    const id = await mkfile('f');
    const v0 = att.journal.version();
    const g = holdAfter('write');
    const w = att.fs.write(ROOT, id, 0, b('via nfs'), 'file_sync');
    await g.reached;
    // A scan running now sees the new content before the write was noted.
    const stats = await new Promise<Awaited<ReturnType<typeof scanZone>>>((resolve, reject) => {
      void att.journal.enqueue('scan', async () => {
        try {
          resolve(await scanZone(att.journal, zoneDir));
        } catch (err) {
          reject(err);
        }
      });
    });
    expect(stats.deferred).toBe(1);
    expect(rows(v0)).toEqual([]);
    g.open();
    await w;
    await att.journal.idle();
    // The deferred look runs once the write's entry is in and finds nothing more to journal.
    await waitFor('deferred look', () => stats.entries >= 1);
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['write f']);
  });
});

describe('a look at a path the daemon has just journaled', () => {
  // The watcher skips its queries when what lstat finds is what the daemon itself put in the index
  // there (same object, type, mode, size and mtime); a change made on disk right after must still
  // be journaled.
  it('journals an outside write, chmod and re-creation made right after the daemon\'s own change', async () => {
    const id = await mkfile('f');
    await att.fs.write(ROOT, id, 0, b('via nfs'), 'file_sync');
    await att.journal.idle();
    const v0 = att.journal.version();
    // The daemon's own change alone: a look journals nothing.
    watcher.notice(path.join(zoneDir, 'f'), false);
    await looked(1);
    await att.journal.settled();
    expect(rows(v0)).toEqual([]);
    expect(watcher.stats.quick).toBe(1);
    // Right after it, on disk: new content, then a new mode, each seen by a look.
    fs.writeFileSync(path.join(zoneDir, 'f'), 'written on disk, longer');
    watcher.notice(path.join(zoneDir, 'f'), false);
    await looked(2);
    await att.journal.settled();
    fs.chmodSync(path.join(zoneDir, 'f'), 0o600);
    watcher.notice(path.join(zoneDir, 'f'), false);
    await looked(3);
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['write f', 'setattr f']);
    expect(watcher.stats.quick).toBe(1);
    expect(att.journal.index.get(id)!.size).toBe(BigInt('written on disk, longer'.length));
    // The daemon renames f to g; on disk a new f is made at once, with g's size.
    const v1 = att.journal.version();
    await att.fs.rename(ROOT, local.rootId, b('f'), local.rootId, b('g'));
    await att.journal.settled();
    fs.writeFileSync(path.join(zoneDir, 'f'), 'written on disk, longer');
    watcher.notice(path.join(zoneDir, 'f'), false);
    watcher.notice(path.join(zoneDir, 'g'), false);
    await looked(5);
    await att.journal.settled();
    expect(summary(rows(v1))).toEqual(['rename f -> g', 'create f']);
    expect(att.journal.index.byPath(b('f'))?.fileid).not.toBe(id);
  });

  it('journals a file replaced on disk by another one right after the daemon created it', async () => {
    const id = await mkfile('r');
    const v0 = att.journal.version();
    fs.rmSync(path.join(zoneDir, 'r'));
    fs.writeFileSync(path.join(zoneDir, 'r'), '');
    watcher.notice(path.join(zoneDir, 'r'), false);
    await looked(1);
    await att.journal.settled();
    const now = att.journal.index.byPath(b('r'));
    expect(now?.fileid).toBe(fs.lstatSync(path.join(zoneDir, 'r'), { bigint: true }).ino);
    // (The file system may hand the new file the old one's inode number: then it is the same object.)
    if (now?.fileid !== id) expect(summary(rows(v0))).toEqual(['remove r', 'create r']);
  });
});

describe('a directory the watcher finds', () => {
  it('is looked inside: what was made in it before it was watched is journaled, parents first', async () => {
    const v0 = att.journal.version();
    fs.mkdirSync(path.join(zoneDir, 'n', 'm'), { recursive: true });
    fs.writeFileSync(path.join(zoneDir, 'n', 'm', 'early.txt'), 'made before any watch');
    fs.writeFileSync(path.join(zoneDir, 'n', 'top.txt'), 'top');
    // Only the directory itself is reported (its watcher process never saw the rest).
    watcher.notice(path.join(zoneDir, 'n'), false);
    await waitFor('inside', () => rows(v0).length >= 4);
    await att.journal.settled();
    const got = summary(rows(v0));
    expect([...got].sort()).toEqual(['create n/m/early.txt', 'create n/top.txt', 'mkdir n', 'mkdir n/m']);
    expect(got.indexOf('mkdir n')).toBe(0);
    expect(got.indexOf('mkdir n/m')).toBeLessThan(got.indexOf('create n/m/early.txt'));
    const early = att.journal.index.byPath(b('n/m/early.txt'))!;
    expect(early.size).toBe(BigInt('made before any watch'.length));
  });
});

describe('watcher processes', () => {
  it('dirs: events batched in one nap: a file replaced by a directory, odd names, a file made and removed', async () => {
    const w = new ZoneWatcher(att.journal, zoneDir, { engine: 'dirs', debounceMs: 20, removalDelayMs: 100 });
    await w.start();
    try {
      fs.writeFileSync(path.join(zoneDir, 'x'), 'a file first');
      await waitFor('x', () => att.journal.index.byPath(b('x'))?.type === 'file', 10_000);
      const v0 = att.journal.version();
      const since = () => summary(rows(v0));
      // All within one nap of the watcher process: one batch, each path listed once.
      fs.rmSync(path.join(zoneDir, 'x'));
      fs.mkdirSync(path.join(zoneDir, 'x'));
      fs.writeFileSync(path.join(zoneDir, 'x', 'in'), 'inside');
      fs.writeFileSync(path.join(zoneDir, 'line\nbreak'), 'odd name');
      fs.writeFileSync(path.join(zoneDir, 'brief'), 'here and gone');
      fs.rmSync(path.join(zoneDir, 'brief'));
      await waitFor('batch', () => since().includes('create x/in') && since().includes('create line\nbreak'), 10_000);
      await new Promise((r) => setTimeout(r, 300));
      await att.journal.settled();
      expect(since().sort()).toEqual(['create line\nbreak', 'create x/in', 'mkdir x', 'remove x'].sort());
      expect(att.journal.index.byPath(b('x'))?.type).toBe('dir');
      // The new directory is watched: a change in it later is seen too.
      fs.appendFileSync(path.join(zoneDir, 'x', 'in'), ' and more');
      await waitFor('write in x', () => since().includes('write x/in'), 10_000);
    } finally {
      await w.stop();
    }
  }, 30_000);

  for (const engine of ['dirs', 'chokidar'] as const) {
    it(`${engine}: finds a directory tree made at once, changes deep in it, and its removal`, async () => {
      const w = new ZoneWatcher(att.journal, zoneDir, { engine, debounceMs: 20, removalDelayMs: 100 });
      await w.start();
      try {
        const v0 = att.journal.version();
        const since = () => summary(rows(v0));
        // Made faster than a watch can be put on each new directory.
        fs.mkdirSync(path.join(zoneDir, 'a', 'b', 'c'), { recursive: true });
        fs.writeFileSync(path.join(zoneDir, 'a', 'b', 'c', 'deep.txt'), 'deep');
        fs.writeFileSync(path.join(zoneDir, 'a', 'top.txt'), 'top');
        await waitFor('tree', () => since().includes('create a/b/c/deep.txt') && since().includes('create a/top.txt'), 10_000);
        expect(since().filter((s) => s.startsWith('mkdir'))).toEqual(['mkdir a', 'mkdir a/b', 'mkdir a/b/c']);
        fs.appendFileSync(path.join(zoneDir, 'a', 'b', 'c', 'deep.txt'), ' and more');
        await waitFor('deep write', () => since().includes('write a/b/c/deep.txt'), 10_000);
        fs.chmodSync(path.join(zoneDir, 'a', 'top.txt'), 0o600);
        await waitFor('chmod', () => since().includes('setattr a/top.txt'), 10_000);
        fs.rmSync(path.join(zoneDir, 'a'), { recursive: true });
        await waitFor('tree gone', () => att.journal.index.count() === 0, 10_000);
        // A directory made again where a watched one was removed is watched afresh.
        fs.mkdirSync(path.join(zoneDir, 'a'));
        fs.writeFileSync(path.join(zoneDir, 'a', 'again.txt'), 'again');
        await waitFor('again', () => since().includes('create a/again.txt'), 10_000);
      } finally {
        await w.stop();
      }
    }, 30_000);
  }
});
