import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GvDatabase } from '../src/journal/db.js';
import { JournalService, type AttachedZone } from '../src/journal/service.js';
import { compare, vectorToJson } from '../src/replication/vector.js';
import { LocalZoneFs } from '../src/vfs/local.js';
import type { CallContext, FileId } from '../src/vfs/types.js';

const ROOT: CallContext = { uid: 0, gid: 0, gids: [], client: '127.0.0.1', origin: 'nfs' };
const NODE = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const b = (s: string): Buffer => Buffer.from(s);

let tmp: string;
let db: GvDatabase;
let local: LocalZoneFs;
let att: AttachedZone;

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-tomb-'));
  fs.mkdirSync(path.join(tmp, 'zone'));
  db = GvDatabase.open(path.join(tmp, 'state'));
  local = await LocalZoneFs.open({ name: 'z', zoneId: 1, root: path.join(tmp, 'zone'), db, usageScan: false });
  att = await new JournalService(db, { nodeId: NODE, watch: false }).attach(local, path.join(tmp, 'zone'));
  await att.scanned;
});

afterEach(async () => {
  await att.fs.close().catch(() => undefined);
  db.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function mkfile(name: string, data = 'x'): Promise<FileId> {
  const id = (await att.fs.create(ROOT, local.rootId, b(name), { mode: 'guarded', attrs: { mode: 0o644 } })).id;
  await att.fs.write(ROOT, id, 0, b(data), 'unstable');
  await att.fs.commit(ROOT, id, 0, 0);
  await att.journal.idle();
  return id;
}

describe('tombstones and origins', () => {
  it('a removed path keeps the last vector; an object created there later starts after it', async () => {
    await mkfile('f');
    const first = att.journal.index.byPath(b('f'))!;
    expect(first.origin).toBe(NODE);
    expect(vectorToJson(first.vector)).toEqual({ [NODE]: '1' });
    expect(att.journal.tombstone(b('f'))).toBeUndefined();

    await att.fs.remove(ROOT, local.rootId, b('f'));
    await att.journal.idle();
    const t = att.journal.tombstone(b('f'))!;
    expect(t.type).toBe('file');
    expect(t.origin).toBe(NODE);
    expect(compare(first.vector, t.vector)).toBe('before');

    await mkfile('f', 'again');
    const second = att.journal.index.byPath(b('f'))!;
    // Without the tombstone this would be {NODE: 1} again, ordered before the removal.
    expect(compare(t.vector, second.vector)).toBe('before');
    expect(att.journal.tombstone(b('f'))).toBeUndefined();
  });

  it('a rename leaves a tombstone at the old path and clears the one at the new path', async () => {
    await mkfile('gone');
    await att.fs.remove(ROOT, local.rootId, b('gone'));
    await mkfile('a');
    await att.journal.idle();
    const goneT = att.journal.tombstone(b('gone'))!;
    expect(goneT).toBeDefined();
    await att.fs.rename(ROOT, local.rootId, b('a'), local.rootId, b('gone'));
    await att.journal.idle();
    const moved = att.journal.index.byPath(b('gone'))!;
    expect(att.journal.tombstone(b('gone'))).toBeUndefined();
    // The move is after the object that was removed at its destination.
    expect(compare(goneT.vector, moved.vector)).toBe('before');
    const at = att.journal.tombstone(b('a'))!;
    expect(at).toBeDefined();
    expect(compare(at.vector, moved.vector)).toBe('equal');
  });

  it('rmdir leaves a directory tombstone', async () => {
    await att.fs.mkdir(ROOT, local.rootId, b('d'), { mode: 0o755 });
    await att.journal.idle();
    await att.fs.rmdir(ROOT, local.rootId, b('d'));
    await att.journal.idle();
    expect(att.journal.tombstone(b('d'))?.type).toBe('dir');
  });
});

describe('directory removed with its contents', () => {
  it('journals a removal for every indexed descendant before the directory', async () => {
    const d = (await att.fs.mkdir(ROOT, local.rootId, b('d'), { mode: 0o755 })).id;
    const e = (await att.fs.mkdir(ROOT, d, b('e'), { mode: 0o755 })).id;
    for (const [dir, name] of [[d, 'f1'], [e, 'f2']] as const) {
      const id = (await att.fs.create(ROOT, dir, b(name), { mode: 'guarded', attrs: { mode: 0o644 } })).id;
      await att.fs.commit(ROOT, id, 0, 0);
    }
    await att.journal.idle();
    const before = att.journal.version();
    const dEntry = att.journal.index.byPath(b('d'))!;
    // As the watcher does when it finds the whole tree gone.
    await att.journal.enqueue('gone', () => {
      att.journal.commitGone(dEntry);
    });
    const rows = att.journal.log.since(before).map((r) => `${r.kind} ${r.path.toString()}`);
    expect(rows).toEqual(['remove d/e/f2', 'remove d/f1', 'rmdir d/e', 'rmdir d']);
    for (const p of ['d', 'd/e', 'd/f1', 'd/e/f2']) expect(att.journal.tombstone(b(p))).toBeDefined();
    expect(att.journal.index.count()).toBe(0);
  });
});
