import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { changeSummary, waitFor } from './harness/wait.js';
import type { ChangeRow } from '../src/journal/changes.js';
import { GvDatabase } from '../src/journal/db.js';
import { BLOCK_SIZE, DIGEST_SIZE, hashBuffer } from '../src/journal/hasher.js';
import { JournalService, type AttachedZone } from '../src/journal/service.js';
import { compare, decodeVector } from '../src/replication/vector.js';
import { LocalZoneFs } from '../src/vfs/local.js';
import type { CallContext, FileId } from '../src/vfs/types.js';

const ROOT: CallContext = { uid: 0, gid: 0, gids: [], client: '127.0.0.1', origin: 'nfs' };
const NODE = '0123456789abcdef0123456789abcdef';
const b = (s: string): Buffer => Buffer.from(s);

let tmp: string;
let zoneDir: string;
let stateDir: string;
let db: GvDatabase;
let local: LocalZoneFs;
let svc: JournalService;
let att: AttachedZone;

async function open(settleMs = 200): Promise<void> {
  db = GvDatabase.open(stateDir);
  local = await LocalZoneFs.open({ name: 'z', zoneId: 1, root: zoneDir, db, usageScan: false });
  svc = new JournalService(db, { nodeId: NODE, watch: false, settleMs });
  att = await svc.attach(local, zoneDir);
  await att.scanned;
}

async function close(): Promise<void> {
  await att.fs.close();
  db.close();
}

const rows = (since = 0n): ChangeRow[] => att.journal.log.since(since);
const summary = (rs: ChangeRow[]) => changeSummary(rs);


beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-journal-'));
  zoneDir = path.join(tmp, 'zone');
  stateDir = path.join(tmp, 'state');
  fs.mkdirSync(zoneDir);
  await open();
});

afterEach(async () => {
  await close().catch(() => undefined);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Create and COMMIT an empty file (a new file is journaled with its content when committed or settled). */
async function mkfile(name: string, dir: FileId = local.rootId): Promise<FileId> {
  const id = (await att.fs.create(ROOT, dir, b(name), { mode: 'guarded', attrs: { mode: 0o644 } })).id;
  await att.fs.commit(ROOT, id, 0, 0);
  return id;
}

describe('journaled ZoneFs', () => {
  it('coalesces 100 WRITEs + COMMIT into one entry', async () => {
    const id = await mkfile('f');
    await att.journal.settled();
    const v0 = att.journal.version();
    const chunk = Buffer.alloc(4096, 7);
    for (let i = 0; i < 100; i++) await att.fs.write(ROOT, id, i * 4096, chunk, 'unstable');
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    const after = rows(v0);
    expect(summary(after)).toEqual(['write f']);
    expect(after[0]!.size).toBe(409600n);
    expect(after[0]!.version).toBe(v0 + 1n);
    expect(after[0]!.hashes!.equals(hashBuffer(Buffer.alloc(409600, 7)))).toBe(true);
    expect(after[0]!.origin).toBe(NODE);
  });

  it('coalesces a stream that goes quiet into one entry after the settle interval', async () => {
    const id = await mkfile('g');
    await att.journal.settled();
    const v0 = att.journal.version();
    for (let i = 0; i < 50; i++) await att.fs.write(ROOT, id, i * 1000, Buffer.alloc(1000, i), 'unstable');
    expect(rows(v0)).toEqual([]); // nothing yet: the stream is still "open"
    const got = await waitFor('settled write', () => rows(v0).length > 0 && rows(v0));
    expect(summary(got)).toEqual(['write g']);
    await new Promise((r) => setTimeout(r, 400)); // no second entry follows
    expect(rows(v0).length).toBe(1);
  });

  it('a retried EXCLUSIVE create of a journaled file adds no entry; a new file at a reused name does', async () => {
    const how = { mode: 'exclusive' as const, verifier: Buffer.from('01234567') };
    const v0 = att.journal.version();
    const c = await att.fs.create(ROOT, local.rootId, b('x'), how);
    await att.fs.commit(ROOT, c.id, 0, 0);
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['create x']);
    const v1 = att.journal.version();
    const again = await att.fs.create(ROOT, local.rootId, b('x'), how); // the reply was lost: the client asks again
    expect(again.id).toBe(c.id);
    await att.fs.commit(ROOT, again.id, 0, 0);
    await att.journal.settled();
    expect(rows(v1)).toEqual([]);
    // Removed and made again (ext4 often hands out the same inode number): journaled afresh.
    await att.fs.remove(ROOT, local.rootId, b('x'));
    const d = await att.fs.create(ROOT, local.rootId, b('x'), { mode: 'guarded', attrs: { mode: 0o644 } });
    await att.fs.write(ROOT, d.id, 0, b('new content'), 'unstable');
    await att.fs.commit(ROOT, d.id, 0, 0);
    await att.journal.settled();
    const after = rows(v1);
    expect(summary(after)).toEqual(['remove x', 'create x']);
    expect(after[1]!.hashes!.equals(hashBuffer(b('new content')))).toBe(true);
  });

  it('an UNCHECKED create with size 0 over a journaled file journals the truncation', async () => {
    const id = await mkfile('t');
    await att.fs.write(ROOT, id, 0, b('hello world'), 'unstable');
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    const v0 = att.journal.version();
    const again = await att.fs.create(ROOT, local.rootId, b('t'), { mode: 'unchecked', attrs: { size: 0n } });
    expect(again.id).toBe(id);
    expect(again.attr.size).toBe(0n);
    await att.journal.settled();
    const after = rows(v0);
    expect(summary(after)).toEqual(['truncate t']);
    expect(after[0]!.size).toBe(0n);
    expect(att.journal.index.get(id)!.size).toBe(0n);
    // Without size it changes nothing, and journals nothing.
    const v1 = att.journal.version();
    await att.fs.create(ROOT, local.rootId, b('t'), { mode: 'unchecked', attrs: {} });
    await att.journal.settled();
    expect(rows(v1)).toEqual([]);
  });

  it('truncated by CREATE and rewritten sparsely, the journal holds the hashes of what is on disk', async () => {
    const id = await mkfile('sp');
    await att.fs.write(ROOT, id, 0, Buffer.alloc(2 * BLOCK_SIZE, 0x61), 'unstable'); // two full blocks of 'a'
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    await att.fs.create(ROOT, local.rootId, b('sp'), { mode: 'unchecked', attrs: { size: 0n } });
    // Only the second block is written again: the first is a hole (zeros) now, not the old 'a's.
    await att.fs.write(ROOT, id, BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0x62), 'unstable');
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    const onDisk = fs.readFileSync(path.join(zoneDir, 'sp'));
    expect(onDisk.subarray(0, BLOCK_SIZE).every((x) => x === 0)).toBe(true);
    const e = att.journal.index.get(id)!;
    expect(e.size).toBe(BigInt(2 * BLOCK_SIZE));
    expect(e.hashes!.equals(hashBuffer(onDisk))).toBe(true);
  });

  it('a SETATTR cut followed by a sparse write before the flush: hashes of what is on disk', async () => {
    const id = await mkfile('sa');
    await att.fs.write(ROOT, id, 0, Buffer.alloc(2 * BLOCK_SIZE, 0x61), 'unstable');
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    await att.fs.setattr(ROOT, id, { size: 100n }); // block 0 keeps 100 bytes of 'a'
    await att.fs.write(ROOT, id, BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0x62), 'unstable');
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    const onDisk = fs.readFileSync(path.join(zoneDir, 'sa'));
    expect(onDisk.length).toBe(2 * BLOCK_SIZE);
    expect(att.journal.index.get(id)!.hashes!.equals(hashBuffer(onDisk))).toBe(true);
  });

  it('a FILE_SYNC write is an entry of its own', async () => {
    const id = await mkfile('s');
    await att.journal.settled();
    const v0 = att.journal.version();
    await att.fs.write(ROOT, id, 0, b('hello'), 'file_sync');
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['write s']);
  });

  it('keeps block hashes equal to SHA-256 of each 1 MiB block after random writes, rehashing only dirty blocks', async () => {
    const id = await mkfile('big');
    const size = 3 * BLOCK_SIZE + 12345;
    const model = Buffer.alloc(size);
    let seed = 1;
    const rnd = (n: number) => ((seed = (seed * 16807) % 2147483647) % n);
    for (let i = 0; i < 40; i++) {
      const off = i === 0 ? size - 1 : rnd(size - 70000);
      const data = randomBytes(i === 0 ? 1 : 1 + rnd(65536));
      data.copy(model, off);
      await att.fs.write(ROOT, id, off, data, 'unstable');
    }
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    const entry = att.journal.index.get(id)!;
    expect(entry.size).toBe(BigInt(size));
    expect(entry.hashes!.length).toBe(4 * DIGEST_SIZE);
    expect(entry.hashes!.equals(hashBuffer(fs.readFileSync(path.join(zoneDir, 'big'))))).toBe(true);
    expect(entry.hashes!.equals(hashBuffer(model))).toBe(true);
    for (let i = 0; i < 4; i++) {
      const want = createHash('sha256').update(model.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)).digest();
      expect(entry.hashes!.subarray(i * 32, i * 32 + 32).equals(want)).toBe(true);
    }
    // One write inside block 2: exactly one block is read and hashed again.
    const before = { ...att.journal.hasher.stats };
    await att.fs.write(ROOT, id, 2 * BLOCK_SIZE + 10, b('xyz'), 'unstable');
    b('xyz').copy(model, 2 * BLOCK_SIZE + 10);
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    expect(att.journal.hasher.stats.blocks - before.blocks).toBe(1);
    expect(att.journal.hasher.stats.bytes - before.bytes).toBe(BLOCK_SIZE);
    expect(att.journal.index.get(id)!.hashes!.equals(hashBuffer(model))).toBe(true);
    // A write spanning blocks 0 and 1, plus a truncate into block 1: blocks 0 and 1 only.
    const mid = { ...att.journal.hasher.stats };
    await att.fs.write(ROOT, id, BLOCK_SIZE - 2, b('abcd'), 'unstable');
    b('abcd').copy(model, BLOCK_SIZE - 2);
    await att.fs.commit(ROOT, id, 0, 0);
    await att.journal.settled();
    await att.fs.setattr(ROOT, id, { size: BigInt(BLOCK_SIZE + 100) });
    await att.journal.settled();
    expect(att.journal.hasher.stats.blocks - mid.blocks).toBe(3); // 0 and 1 for the write, 1 for the truncate
    const truncated = model.subarray(0, BLOCK_SIZE + 100);
    expect(att.journal.index.get(id)!.hashes!.equals(hashBuffer(truncated))).toBe(true);
    expect(summary(rows(rows().at(-1)!.version - 1n))).toEqual(['truncate big']);
  });

  it('an object removed before its creation was journaled leaves both entries and no index row', async () => {
    // REMOVE/RMDIR answered while the queued mkdir/symlink/mknod task has not run yet (the queue
    // drains a few ms later): the removal must be journaled after the creation, not dropped.
    const v0 = att.journal.version();
    const x = await att.fs.mkdir(ROOT, local.rootId, b('x'), { mode: 0o755 });
    await att.fs.rmdir(ROOT, local.rootId, b('x'));
    const l = await att.fs.symlink(ROOT, local.rootId, b('l'), b('target'), {});
    await att.fs.remove(ROOT, local.rootId, b('l'));
    const p = await att.fs.mknod(ROOT, local.rootId, b('p'), 'fifo', { mode: 0o644 });
    await att.fs.remove(ROOT, local.rootId, b('p'));
    await att.journal.settled();
    expect(summary(rows(v0))).toEqual(['mkdir x', 'rmdir x', 'symlink l', 'remove l', 'mknod p', 'remove p']);
    for (const [name, id] of [['x', x.id], ['l', l.id], ['p', p.id]] as const) {
      expect(att.journal.index.byPath(b(name))).toBeUndefined();
      expect(att.journal.index.get(id)).toBeUndefined();
    }
  });

  it('journals every kind of mutation with its path, and bumps each object vector', async () => {
    const v0 = att.journal.version();
    const d = (await att.fs.mkdir(ROOT, local.rootId, b('d'), { mode: 0o755 })).id;
    const f = await mkfile('f', d);
    await att.fs.write(ROOT, f, 0, b('content'), 'unstable');
    await att.fs.commit(ROOT, f, 0, 0);
    await att.journal.settled();
    await att.fs.setattr(ROOT, f, { size: 3n });
    await att.journal.settled();
    await att.fs.setattr(ROOT, f, { mode: 0o600 });
    await att.fs.symlink(ROOT, d, b('ln'), b('f'), {});
    await att.fs.mknod(ROOT, d, b('fifo'), 'fifo', { mode: 0o644 });
    await att.fs.link(ROOT, f, local.rootId, b('hard'));
    await att.fs.rename(ROOT, d, b('f'), local.rootId, b('moved'));
    await att.fs.remove(ROOT, local.rootId, b('hard'));
    await att.fs.remove(ROOT, d, b('ln'));
    await att.fs.remove(ROOT, d, b('fifo'));
    const d2 = (await att.fs.mkdir(ROOT, local.rootId, b('e'), { mode: 0o755 })).id;
    await att.fs.rename(ROOT, local.rootId, b('d'), d2, b('d'));
    await att.fs.rmdir(ROOT, d2, b('d'));
    await att.journal.settled();
    const rs = rows(v0);
    expect(summary(rs)).toEqual([
      'mkdir d', 'create d/f', 'truncate d/f', 'setattr d/f', 'symlink d/ln', 'mknod d/fifo', 'link hard',
      'rename d/f -> moved', 'remove hard', 'remove d/ln', 'remove d/fifo', 'mkdir e', 'rename d -> e/d', 'rmdir e/d',
    ]);
    // Versions contiguous.
    rs.forEach((r, i) => expect(r.version).toBe(v0 + 1n + BigInt(i)));
    expect(rs.find((r) => r.kind === 'symlink')!.target!.toString()).toBe('f');
    expect(rs.find((r) => r.kind === 'setattr')!.mode).toBe(0o600);
    expect(rs.find((r) => r.kind === 'truncate')!.size).toBe(3n);
    // The file's vector counts its changes on this node.
    const fileRows = rs.filter((r) => r.fileid === f);
    for (let i = 1; i < fileRows.length; i++) expect(compare(fileRows[i]!.vector, fileRows[i - 1]!.vector)).toBe('after');
    expect(fileRows.at(-1)!.vector.get(NODE)).toBe(BigInt(fileRows.length));
    // The index: the file under its new name, with a single remaining link; removed objects gone.
    const idx = att.journal.index.all().map((e) => `${e.type} ${e.path.toString()}`).sort();
    expect(idx).toEqual(['dir e', 'file moved']);
    expect(att.journal.index.get(f)!.hashes!.equals(hashBuffer(b('con')))).toBe(true);
    expect(decodeVector(Buffer.alloc(0)).size).toBe(0);
  });

  it('a rename over an existing file and of a directory keep the index consistent', async () => {
    const d = (await att.fs.mkdir(ROOT, local.rootId, b('dir'), { mode: 0o755 })).id;
    const inner = await mkfile('inner', d);
    await mkfile('a');
    const bId = await mkfile('b');
    await att.fs.rename(ROOT, local.rootId, b('a'), local.rootId, b('b'));
    await att.fs.rename(ROOT, local.rootId, b('dir'), local.rootId, b('dir2'));
    // A flush that met a rename half-way retries after settling: wait until nothing is pending.
    for (let i = 0; i < 40; i++) {
      await att.journal.idle();
      if (att.journal.coalescer.pending().length === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(att.journal.index.get(bId)).toBeUndefined();
    expect(att.journal.index.byPath(b('b'))).toBeDefined();
    expect(att.journal.index.get(inner)!.path.toString()).toBe('dir2/inner');
  });

  it('versions are monotonic across restarts and reported through ZoneVersions', async () => {
    const seen: [string, bigint][] = [];
    const off = svc.versions.onChange((z, v) => seen.push([z, v]));
    await mkfile('one');
    await mkfile('two');
    await att.journal.settled();
    const v = att.journal.version();
    expect(v).toBe(2n);
    expect(seen).toEqual([['z', 1n], ['z', 2n]]);
    expect(svc.versions.current()).toEqual(new Map([['z', 2n]]));
    off();
    await close();
    await open();
    expect(svc.versions.current().get('z')).toBe(2n); // nothing changed while down: no bump
    await mkfile('three');
    await att.journal.settled();
    expect(att.journal.version()).toBe(3n);
    expect(rows().map((r) => r.version)).toEqual([1n, 2n, 3n]);
    expect(seen.length).toBe(2); // unsubscribed
  });

  it('pending writes are journaled when the zone closes', async () => {
    const id = await mkfile('late');
    await att.journal.settled();
    await att.fs.write(ROOT, id, 0, b('data'), 'unstable');
    await close();
    await open();
    const last = rows().at(-1)!;
    expect(last.kind).toBe('write');
    expect(last.hashes!.equals(hashBuffer(b('data')))).toBe(true);
    expect(att.journal.hasher.stats.blocks).toBe(0); // the start-up scan found nothing to rehash
  });
});
