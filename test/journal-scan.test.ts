import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { changeSummary, waitFor } from './harness/wait.js';
import type { ChangeRow } from '../src/journal/changes.js';
import { GvDatabase } from '../src/journal/db.js';
import { BLOCK_SIZE, hashBuffer } from '../src/journal/hasher.js';
import { JournalService, type AttachedZone } from '../src/journal/service.js';
import { LocalZoneFs } from '../src/vfs/local.js';
import type { CallContext } from '../src/vfs/types.js';

const ROOT: CallContext = { uid: 0, gid: 0, gids: [], client: '127.0.0.1', origin: 'nfs' };
const NODE = 'fedcba9876543210fedcba9876543210';

let tmp: string;
let zoneDir: string;
let stateDir: string;
let db: GvDatabase | null = null;
let att: AttachedZone | null = null;

async function open(watch: boolean): Promise<AttachedZone> {
  db = GvDatabase.open(stateDir);
  const local = await LocalZoneFs.open({ name: 'z', zoneId: 1, root: zoneDir, db, usageScan: false });
  const svc = new JournalService(db, { nodeId: NODE, watch });
  att = await svc.attach(local, zoneDir);
  return att;
}

async function close(): Promise<void> {
  await att?.fs.close();
  att = null;
  db?.close();
  db = null;
}

const p = (...parts: string[]) => path.join(zoneDir, ...parts);
const summary = (rs: ChangeRow[]) => changeSummary(rs).sort();


beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-jscan-'));
  zoneDir = path.join(tmp, 'zone');
  stateDir = path.join(tmp, 'state');
  fs.mkdirSync(zoneDir);
});

afterEach(async () => {
  await close().catch(() => undefined);
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('start-up scan', () => {
  it('journals what changed while the daemon was down, hashing only changed files', async () => {
    fs.mkdirSync(p('d'));
    for (let i = 0; i < 20; i++) fs.writeFileSync(p('d', `f${i}`), `file ${i}`);
    fs.writeFileSync(p('big'), Buffer.alloc(2 * BLOCK_SIZE + 5, 1));
    fs.symlinkSync('d/f0', p('sym'));
    let a = await open(false);
    let s = await a.scanned;
    expect(s.hashedFiles).toBe(21);
    expect(summary(a.journal.log.since(0n))).toEqual(
      ['create big', 'mkdir d', 'symlink sym', ...Array.from({ length: 20 }, (_, i) => `create d/f${i}`)].sort(),
    );
    expect(a.journal.index.byPath(Buffer.from('big'))!.hashes!.equals(hashBuffer(fs.readFileSync(p('big'))))).toBe(true);
    await close();

    // Nothing changed: nothing read, nothing journaled.
    a = await open(false);
    s = await a.scanned;
    expect(s).toMatchObject({ hashedFiles: 0, changes: 0 });
    const v1 = a.journal.version();
    await close();

    // Offline: modify one file, add one, delete one, rename one (same inode), chmod one, add a dir.
    fs.writeFileSync(p('d', 'f1'), 'changed content');
    fs.writeFileSync(p('d', 'new'), 'new file');
    fs.unlinkSync(p('d', 'f2'));
    fs.renameSync(p('d', 'f3'), p('f3-moved'));
    fs.chmodSync(p('d', 'f4'), 0o600);
    fs.mkdirSync(p('e'));
    a = await open(false);
    s = await a.scanned;
    expect(s.hashedFiles).toBe(2); // f1 and new; the rename and chmod need no content read
    const rows = a.journal.log.since(v1);
    expect(summary(rows)).toEqual([
      'create d/new', 'mkdir e', 'remove d/f2', 'rename d/f3 -> f3-moved', 'setattr d/f4', 'write d/f1',
    ]);
    rows.forEach((r, i) => expect(r.version).toBe(v1 + 1n + BigInt(i)));
    expect(rows.find((r) => r.kind === 'write')!.hashes!.equals(hashBuffer(Buffer.from('changed content')))).toBe(true);
    expect(rows.every((r) => r.origin === NODE)).toBe(true);
    await close();

    // A directory removed offline: its files and itself, children first.
    fs.rmSync(p('d'), { recursive: true });
    a = await open(false);
    await a.scanned;
    const gone = a.journal.log.since(v1 + BigInt(rows.length));
    expect(gone.at(-1)!.kind).toBe('rmdir');
    expect(gone.filter((r) => r.kind === 'remove').length).toBe(19); // f0, f1, f4..f19 and new
    expect(a.journal.index.all().map((e) => e.path.toString()).sort()).toEqual(['big', 'e', 'f3-moved', 'sym']);
  });

  it('does not journal the daemon\'s own changes a second time', async () => {
    const a = await open(false);
    await a.scanned;
    const c = await a.fs.create(ROOT, a.fs.rootId, Buffer.from('mine'), { mode: 'guarded', attrs: { mode: 0o644 } });
    await a.fs.write(ROOT, c.id, 0, Buffer.from('hello'), 'unstable');
    await a.fs.commit(ROOT, c.id, 0, 0);
    await a.journal.settled();
    const v = a.journal.version();
    await close();
    const b = await open(false);
    expect(await b.scanned).toMatchObject({ hashedFiles: 0, changes: 0 });
    expect(b.journal.version()).toBe(v);
  });
});

describe('watcher', () => {
  it('journals files created, modified, renamed and deleted directly in the zone while running', async () => {
    const a = await open(true);
    await a.scanned;
    const v0 = a.journal.version();
    const since = () => a.journal.log.since(v0);
    fs.writeFileSync(p('out.txt'), 'out of band');
    await waitFor('create', () => since().some((r) => r.kind === 'create' && r.path.toString() === 'out.txt'));
    const id = a.journal.index.byPath(Buffer.from('out.txt'))!.fileid;
    expect(a.journal.index.get(id)!.hashes!.equals(hashBuffer(Buffer.from('out of band')))).toBe(true);

    fs.appendFileSync(p('out.txt'), ' and more');
    await waitFor('write', () => since().some((r) => r.kind === 'write'));
    expect(a.journal.index.get(id)!.hashes!.equals(hashBuffer(Buffer.from('out of band and more')))).toBe(true);

    fs.renameSync(p('out.txt'), p('renamed.txt'));
    await waitFor('rename', () => since().some((r) => r.kind === 'rename'));
    fs.mkdirSync(p('sub'));
    await waitFor('mkdir', () => since().some((r) => r.kind === 'mkdir'));
    fs.unlinkSync(p('renamed.txt'));
    await waitFor('remove', () => since().some((r) => r.kind === 'remove'));
    fs.rmdirSync(p('sub'));
    await waitFor('rmdir', () => since().some((r) => r.kind === 'rmdir'));
    // Settle: no further entries trickle in.
    await new Promise((r) => setTimeout(r, 500));
    await a.journal.settled();
    expect(summary(since())).toEqual(
      ['create out.txt', 'mkdir sub', 'remove renamed.txt', 'rename out.txt -> renamed.txt', 'rmdir sub', 'write out.txt'],
    );
    expect(a.journal.index.count()).toBe(0);
  });

  it('ignores the daemon\'s own writes', async () => {
    const a = await open(true);
    await a.scanned;
    const c = await a.fs.create(ROOT, a.fs.rootId, Buffer.from('nfs.txt'), { mode: 'guarded', attrs: { mode: 0o644 } });
    for (let i = 0; i < 20; i++) await a.fs.write(ROOT, c.id, i * 100, Buffer.alloc(100, i), 'unstable');
    await a.fs.commit(ROOT, c.id, 0, 0);
    await a.journal.settled();
    const v = a.journal.version();
    await new Promise((r) => setTimeout(r, 800)); // longer than the watcher's debounce and removal delay
    await a.journal.settled();
    expect(a.journal.version()).toBe(v);
    expect(summary(a.journal.log.since(0n))).toEqual(['create nfs.txt']);
  });
});
