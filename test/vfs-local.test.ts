import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { GvError } from '../src/errors.js';
import { GvDatabase } from '../src/journal/db.js';
import { checkSetattr, grantedAccess } from '../src/vfs/access.js';
import { LocalZoneFs, verifierTimes } from '../src/vfs/local.js';
import { UsageTracker } from '../src/vfs/local-usage.js';
import { COOKIE_VERIFIER, nameCookie } from '../src/vfs/names.js';
import {
  ACCESS_DELETE, ACCESS_EXECUTE, ACCESS_EXTEND, ACCESS_LOOKUP, ACCESS_MODIFY, ACCESS_READ,
  type CallContext, type DirEntry, type FileId,
} from '../src/vfs/types.js';

const ROOT: CallContext = { uid: 0, gid: 0, gids: [], client: '127.0.0.1', origin: 'nfs' };
const USER: CallContext = { uid: 1000, gid: 1000, gids: [1000], client: '127.0.0.1', origin: 'nfs' };
const OTHER: CallContext = { uid: 2000, gid: 2000, gids: [2000], client: '127.0.0.1', origin: 'nfs' };
const ALL = 0x3f;
const b = (s: string): Buffer => Buffer.from(s);

let tmp: string;
let zoneDir: string;
let stateDir: string;
let db: GvDatabase;
let z: LocalZoneFs;

async function openZone(opts: { quotaBytes?: bigint; idleMs?: number } = {}): Promise<LocalZoneFs> {
  return LocalZoneFs.open({
    name: 'tier-1', zoneId: 3, root: zoneDir, db, quotaBytes: opts.quotaBytes,
    fdCache: opts.idleMs ? { idleMs: opts.idleMs } : undefined,
  });
}

async function reopen(): Promise<void> {
  await z.close();
  db.close();
  db = GvDatabase.open(stateDir);
  z = await openZone();
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(GvError);
    return (err as GvError).code;
  }
  return 'OK';
}

async function mkfile(dir: FileId, name: string | Buffer, content?: string, ctx = ROOT): Promise<FileId> {
  const n = typeof name === 'string' ? b(name) : name;
  const c = await z.create(ctx, dir, n, { mode: 'guarded', attrs: { mode: 0o644 } });
  if (content !== undefined) await z.write(ctx, c.id, 0, b(content), 'unstable');
  return c.id;
}

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-local-'));
  zoneDir = path.join(tmp, 'zone');
  stateDir = path.join(tmp, 'state');
  fs.mkdirSync(zoneDir);
  db = GvDatabase.open(stateDir);
  z = await openZone();
});

afterEach(async () => {
  await z.close();
  db.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('ids and handles', () => {
  it('uses st_ino as FileId and a nonzero generation', async () => {
    expect(z.rootId).toBe(fs.statSync(zoneDir, { bigint: true }).ino);
    const a = await z.getattr(ROOT, z.rootId);
    expect(a.type).toBe('dir');
    expect(a.fileid).toBe(z.rootId);
    expect(await z.generation(z.rootId)).toBeGreaterThan(0);
    const id = await mkfile(z.rootId, 'f');
    expect(id).toBe(fs.statSync(path.join(zoneDir, 'f'), { bigint: true }).ino);
    expect(await z.generation(id)).toBeGreaterThan(0);
  });

  it('keeps ids and generations valid across a restart, and a directory rename updates one row', async () => {
    const a = await z.mkdir(ROOT, z.rootId, b('a'), {});
    const bdir = await z.mkdir(ROOT, a.id, b('b'), {});
    const f = await mkfile(bdir.id, 'file', 'hello');
    const gen = await z.generation(f);
    await reopen();
    expect(z.rootId).toBe(fs.statSync(zoneDir, { bigint: true }).ino);
    expect(await z.generation(f)).toBe(gen);
    expect((await z.read(ROOT, f, 0, 100)).data.toString()).toBe('hello');
    const rowsBefore = z.nodes.count();
    await z.rename(ROOT, z.rootId, b('a'), z.rootId, b('renamed'));
    expect(z.nodes.count()).toBe(rowsBefore);
    await reopen();
    expect((await z.getattr(ROOT, f)).size).toBe(5n);
    expect((await z.read(ROOT, f, 0, 100)).data.toString()).toBe('hello');
    expect(fs.readFileSync(path.join(zoneDir, 'renamed', 'b', 'file'), 'utf8')).toBe('hello');
  });

  it('answers ESTALE after a delete, in band and out of band', async () => {
    const f = await mkfile(z.rootId, 'gone', 'x');
    await z.remove(ROOT, z.rootId, b('gone'));
    expect(await code(z.getattr(ROOT, f))).toBe('ESTALE');
    expect(await code(z.generation(f))).toBe('ESTALE');
    expect(await code(z.read(ROOT, f, 0, 1))).toBe('ESTALE');
    const g = await mkfile(z.rootId, 'oob', 'y');
    await z.read(ROOT, g, 0, 1); // leaves a cached fd
    fs.unlinkSync(path.join(zoneDir, 'oob'));
    expect(await code(z.getattr(ROOT, g))).toBe('ESTALE');
    expect(await code(z.read(ROOT, g, 0, 1))).toBe('ESTALE');
    expect(await code(z.write(ROOT, g, 0, b('z'), 'unstable'))).toBe('ESTALE');
  });

  it('gives a reused inode number a new generation', async () => {
    const first = await mkfile(z.rootId, 'f0');
    const gen = await z.generation(first);
    await z.remove(ROOT, z.rootId, b('f0'));
    let reusedGen: number | undefined;
    for (let i = 1; i <= 50 && reusedGen === undefined; i++) {
      const id = await mkfile(z.rootId, `f${i}`);
      if (id === first) reusedGen = await z.generation(id);
      else await z.remove(ROOT, z.rootId, b(`f${i}`));
    }
    if (reusedGen !== undefined) {
      expect(reusedGen).not.toBe(gen);
    } else {
      // This filesystem does not reuse inode numbers quickly; the bookkeeping still must not
      // hand the old generation to a new object carrying the same number.
      const row = z.nodes.fresh({ fileid: first, parent: z.rootId, name: b('x'), btime: 0n, type: 1, nlink: 1 });
      expect(row.generation).not.toBe(gen);
    }
  });

  it('notices a directory swapped out of band', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('d'), {});
    const f = await mkfile(d.id, 'f', 'in zone');
    await z.close();
    z = await openZone(); // drop cached fds: an open fd would still (rightly) reach the moved file
    fs.renameSync(path.join(zoneDir, 'd'), path.join(zoneDir, 'd-old'));
    fs.mkdirSync(path.join(zoneDir, 'd'));
    fs.writeFileSync(path.join(zoneDir, 'd', 'f'), 'impostor');
    expect(await code(z.getattr(ROOT, d.id))).toBe('ESTALE');
    expect(await code(z.read(ROOT, f, 0, 100))).toBe('ESTALE');
    // Looking it up again finds the moved directory's new name for the old id.
    const again = await z.lookup(ROOT, z.rootId, b('d-old'));
    expect(again.id).toBe(d.id);
    expect((await z.read(ROOT, f, 0, 100)).data.toString()).toBe('in zone');
  });
});

describe('names', () => {
  it('resolves . and .., with .. of the root being the root', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('sub'), {});
    expect((await z.lookup(ROOT, z.rootId, b('..'))).id).toBe(z.rootId);
    expect((await z.lookup(ROOT, z.rootId, b('.'))).id).toBe(z.rootId);
    expect((await z.lookup(ROOT, d.id, b('.'))).id).toBe(d.id);
    expect((await z.lookup(ROOT, d.id, b('..'))).id).toBe(z.rootId);
  });

  it('rejects bad names with the right codes', async () => {
    const r = z.rootId;
    const how = { mode: 'unchecked' as const, attrs: {} };
    expect(await code(z.lookup(ROOT, r, b('')))).toBe('ENOENT');
    expect(await code(z.lookup(ROOT, r, b('a/b')))).toBe('EINVAL');
    expect(await code(z.lookup(ROOT, r, Buffer.from([0x61, 0, 0x62])))).toBe('EINVAL');
    expect(await code(z.lookup(ROOT, r, Buffer.alloc(256, 0x61)))).toBe('ENAMETOOLONG');
    expect(await code(z.lookup(ROOT, r, b('missing')))).toBe('ENOENT');
    expect(await code(z.create(ROOT, r, b(''), how))).toBe('EINVAL');
    expect(await code(z.create(ROOT, r, b('.'), how))).toBe('EEXIST');
    expect(await code(z.create(ROOT, r, b('..'), how))).toBe('EEXIST');
    expect(await code(z.mkdir(ROOT, r, b('..'), {}))).toBe('EEXIST');
    expect(await code(z.create(ROOT, r, b('x/y'), how))).toBe('EINVAL');
    expect(await code(z.create(ROOT, r, Buffer.alloc(256, 0x61), how))).toBe('ENAMETOOLONG');
    expect(await code(z.create(ROOT, r, Buffer.alloc(255, 0x61), how))).toBe('OK');
    expect(await code(z.remove(ROOT, r, b('..')))).toBe('EINVAL');
    expect(await code(z.rmdir(ROOT, r, b('.')))).toBe('EINVAL');
    expect(await code(z.rename(ROOT, r, b('.'), r, b('x')))).toBe('EINVAL');
    expect(fs.readdirSync(zoneDir)).toEqual(['a'.repeat(255)]);
  });

  it('handles non-UTF-8 names byte for byte', async () => {
    const name = Buffer.from([0xff, 0xfe, 0x41, 0xc3]);
    const id = await mkfile(z.rootId, name, 'bytes');
    expect((await z.lookup(ROOT, z.rootId, name)).id).toBe(id);
    const onDisk = fs.readdirSync(Buffer.from(zoneDir), { encoding: 'buffer' });
    expect(onDisk.some((n) => n.equals(name))).toBe(true);
    const page = await z.readdir(ROOT, z.rootId, { cookie: 0n, verifier: Buffer.alloc(8), maxEntries: 10, withAttrs: false });
    expect(page.entries.find((e) => e.name.equals(name))?.id).toBe(id);
    await z.rename(ROOT, z.rootId, name, z.rootId, Buffer.from([0x80, 0x81]));
    expect((await z.read(ROOT, id, 0, 10)).data.toString()).toBe('bytes');
    await z.remove(ROOT, z.rootId, Buffer.from([0x80, 0x81]));
    expect(fs.readdirSync(zoneDir)).toEqual([]);
  });
});

describe('symlinks never lead outside the zone', () => {
  let outside: string;
  beforeEach(() => {
    outside = path.join(tmp, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'secret'), 'top secret');
    fs.chmodSync(path.join(outside, 'secret'), 0o600);
    fs.symlinkSync(outside, path.join(zoneDir, 'evil-dir'));
    fs.symlinkSync(path.join(outside, 'secret'), path.join(zoneDir, 'evil-file'));
  });

  it('treats planted symlinks as symlinks', async () => {
    const d = await z.lookup(ROOT, z.rootId, b('evil-dir'));
    const f = await z.lookup(ROOT, z.rootId, b('evil-file'));
    expect(d.attr.type).toBe('symlink');
    expect(f.attr.type).toBe('symlink');
    expect((await z.readlink(ROOT, f.id)).target.toString()).toBe(path.join(outside, 'secret'));
    expect(await code(z.lookup(ROOT, d.id, b('secret')))).toBe('ENOTDIR');
    expect(await code(z.create(ROOT, d.id, b('planted'), { mode: 'unchecked', attrs: {} }))).toBe('ENOTDIR');
    expect(await code(z.mkdir(ROOT, d.id, b('planted'), {}))).toBe('ENOTDIR');
    expect(await code(z.readdir(ROOT, d.id, { cookie: 0n, verifier: Buffer.alloc(8), maxEntries: 10, withAttrs: false }))).toBe('ENOTDIR');
    expect(await code(z.read(ROOT, f.id, 0, 100))).toBe('EINVAL');
    expect(await code(z.write(ROOT, f.id, 0, b('pwned'), 'file_sync'))).toBe('EINVAL');
    expect(await code(z.commit(ROOT, f.id, 0, 0))).toBe('EINVAL');
    await z.setattr(ROOT, f.id, { mode: 0o666, atime: { sec: 1000, nsec: 0 } });
    expect(await code(z.rename(ROOT, z.rootId, b('evil-file'), d.id, b('x')))).toBe('ENOTDIR');
    expect(await code(z.link(ROOT, f.id, d.id, b('x')))).toBe('ENOTDIR');
    // Creating over the symlink's name must not write through it.
    expect(await code(z.create(ROOT, z.rootId, b('evil-file'), { mode: 'unchecked', attrs: { size: 0n } }))).toBe('EEXIST');
    expect(fs.readdirSync(outside)).toEqual(['secret']);
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('top secret');
    const st = fs.statSync(path.join(outside, 'secret'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.atimeMs).not.toBe(1_000_000);
  });

  it('refuses to follow a directory replaced by a symlink to the outside', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('victim'), {});
    const f = await mkfile(d.id, 'secret', 'zone data');
    await z.close();
    z = await openZone(); // no cached fds
    fs.renameSync(path.join(zoneDir, 'victim'), path.join(tmp, 'moved-away'));
    fs.symlinkSync(outside, path.join(zoneDir, 'victim'));
    expect(await code(z.create(ROOT, d.id, b('planted'), { mode: 'unchecked', attrs: {} }))).toBe('ESTALE');
    expect(await code(z.read(ROOT, f, 0, 100))).toBe('ESTALE');
    expect(await code(z.write(ROOT, f, 0, b('pwned'), 'unstable'))).toBe('ESTALE');
    expect(await code(z.setattr(ROOT, f, { size: 0n }))).toBe('ESTALE');
    expect(await code(z.readdir(ROOT, d.id, { cookie: 0n, verifier: Buffer.alloc(8), maxEntries: 10, withAttrs: true }))).toBe('ESTALE');
    expect(await code(z.remove(ROOT, d.id, b('secret')))).toBe('ESTALE');
    expect(fs.readdirSync(outside)).toEqual(['secret']);
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('top secret');
  });
});

describe('data', () => {
  it('large reads and writes give the same bytes on the threadpool and inline (CallContext.inline)', async () => {
    const id = await mkfile(z.rootId, 'big');
    const data = Buffer.alloc(300 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 12)) & 0xff;
    const INLINE: CallContext = { ...ROOT, inline: true };
    const w1 = await z.write(INLINE, id, 0, data, 'unstable');
    const w2 = await z.write(ROOT, id, data.length, data, 'unstable');
    expect([w1.count, w2.count]).toEqual([data.length, data.length]);
    for (const ctx of [ROOT, INLINE]) {
      const r = await z.read(ctx, id, 0, 2 * data.length);
      expect(r.eof).toBe(true);
      expect(r.data.equals(Buffer.concat([data, data]))).toBe(true);
    }
    expect(fs.readFileSync(path.join(zoneDir, 'big')).equals(Buffer.concat([data, data]))).toBe(true);
  });

  it('writes, reads with eof, commits, and reports stability', async () => {
    const id = await mkfile(z.rootId, 'data');
    const w1 = await z.write(ROOT, id, 0, b('hello '), 'unstable');
    expect(w1.committed).toBe('unstable');
    expect(w1.count).toBe(6);
    expect(w1.file.before?.size).toBe(0n);
    expect(w1.file.after?.size).toBe(6n);
    const w2 = await z.write(ROOT, id, 6, b('world'), 'file_sync');
    expect(w2.committed).toBe('file_sync');
    expect((await z.write(ROOT, id, 11, b('!'), 'data_sync')).committed).toBe('data_sync');
    const all = await z.read(ROOT, id, 0, 100);
    expect(all.data.toString()).toBe('hello world!');
    expect(all.eof).toBe(true);
    const part = await z.read(ROOT, id, 2, 3);
    expect(part.data.toString()).toBe('llo');
    expect(part.eof).toBe(false);
    const tail = await z.read(ROOT, id, 6, 6);
    expect(tail.data.toString()).toBe('world!');
    expect(tail.eof).toBe(true);
    const past = await z.read(ROOT, id, 500, 10);
    expect(past.data.length).toBe(0);
    expect(past.eof).toBe(true);
    const c = await z.commit(ROOT, id, 0, 0);
    expect(c.after?.size).toBe(12n);
    // sparse write far out
    await z.write(ROOT, id, 1 << 20, b('Z'), 'unstable');
    expect((await z.getattr(ROOT, id)).size).toBe(BigInt((1 << 20) + 1));
    expect(fs.readFileSync(path.join(zoneDir, 'data')).subarray(0, 12).toString()).toBe('hello world!');
  });

  it('opens a file once for a stream of writes and closes idle fds', async () => {
    await z.close();
    z = await openZone({ idleMs: 50 });
    fs.writeFileSync(path.join(zoneDir, 'stream'), '');
    const id = (await z.lookup(ROOT, z.rootId, b('stream'))).id;
    const chunk = Buffer.alloc(64 * 1024, 7);
    for (let i = 0; i < 64; i++) await z.write(ROOT, id, i * chunk.length, chunk, 'unstable');
    for (let i = 0; i < 16; i++) await z.read(ROOT, id, i * chunk.length, chunk.length);
    expect(z.fds.opened).toBe(1);
    expect(fs.statSync(path.join(zoneDir, 'stream')).size).toBe(64 * 64 * 1024);
    for (let i = 0; i < 200 && z.fds.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(z.fds.size).toBe(0);
    expect((await z.read(ROOT, id, 0, 4)).data).toEqual(Buffer.from([7, 7, 7, 7]));
  });

  it("the daemon's own reads (origin local) leave atime alone and bypass the fd cache", async () => {
    const file = path.join(zoneDir, 'quiet');
    fs.writeFileSync(file, 'hello quiet world');
    // atime older than mtime: under relatime any ordinary read would move it to now.
    fs.utimesSync(file, 1_100_000_000, 1_200_000_000);
    const id = (await z.lookup(ROOT, z.rootId, b('quiet'))).id;
    const opened = z.fds.opened;
    const local: CallContext = { ...ROOT, client: 'journal', origin: 'local' };
    expect((await z.read(local, id, 0, 5)).data.toString()).toBe('hello');
    expect(fs.statSync(file).atimeMs).toBe(1_100_000_000 * 1000);
    expect(z.fds.opened).toBe(opened);
  });

  it('keeps at most ~128 fds open', async () => {
    const ids: FileId[] = [];
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(zoneDir, `m${i}`), `${i}`);
    for (let i = 0; i < 200; i++) ids.push((await z.lookup(ROOT, z.rootId, b(`m${i}`))).id);
    for (let i = 0; i < 200; i++) expect((await z.read(ROOT, ids[i]!, 0, 10)).data.toString()).toBe(`${i}`);
    expect(z.fds.size).toBeLessThanOrEqual(128);
    expect(z.fds.opened).toBe(200);
  });
});

describe('commit: fsync inline or on the threadpool', () => {
  const ALONE: CallContext = { ...ROOT, inline: true };

  /** Run `fn` and count the fsyncs it made, by kind (inline fsyncSync/fdatasyncSync, threadpool fsync/fdatasync). */
  async function syncsOf(fn: () => Promise<unknown>): Promise<{ inline: number; pool: number }> {
    const spies = [vi.spyOn(fs, 'fsyncSync'), vi.spyOn(fs, 'fdatasyncSync'), vi.spyOn(fs, 'fsync'), vi.spyOn(fs, 'fdatasync')];
    try {
      await fn();
      return { inline: spies[0]!.mock.calls.length + spies[1]!.mock.calls.length, pool: spies[2]!.mock.calls.length + spies[3]!.mock.calls.length };
    } finally {
      for (const sp of spies) sp.mockRestore();
    }
  }

  it('a small file written through us is synced inline when nothing else is in flight', async () => {
    const id = await mkfile(z.rootId, 'small', 'x'.repeat(5000));
    expect(await syncsOf(() => z.commit(ALONE, id, 0, 0))).toEqual({ inline: 1, pool: 0 });
    expect(z.stats.inlineSyncs).toBe(1);
    expect(fs.readFileSync(path.join(zoneDir, 'small'), 'utf8')).toBe('x'.repeat(5000));
  });

  it('with other calls in flight it goes to the threadpool', async () => {
    const id = await mkfile(z.rootId, 'busy', 'abc');
    expect(await syncsOf(() => z.commit(ROOT, id, 0, 0))).toEqual({ inline: 0, pool: 1 });
  });

  it('more unsynced data than the inline limit goes to the threadpool, and is counted across WRITEs', async () => {
    const id = await mkfile(z.rootId, 'big');
    const chunk = Buffer.alloc(200 * 1024, 7);
    await z.write(ROOT, id, 0, chunk, 'unstable');
    await z.write(ROOT, id, chunk.length, chunk, 'unstable'); // 400 KiB since the last sync
    expect(await syncsOf(() => z.commit(ALONE, id, 0, 0))).toEqual({ inline: 0, pool: 1 });
    // Synced: a small write after it counts from zero again.
    await z.write(ROOT, id, 0, b('y'), 'unstable');
    expect(await syncsOf(() => z.commit(ALONE, id, 0, 0))).toEqual({ inline: 1, pool: 0 });
  });

  it('a file whose writes we did not see (made out of band) goes to the threadpool', async () => {
    fs.writeFileSync(path.join(zoneDir, 'oob'), 'from a local program');
    const id = (await z.lookup(ROOT, z.rootId, b('oob'))).id;
    expect(await syncsOf(() => z.commit(ALONE, id, 0, 0))).toEqual({ inline: 0, pool: 1 });
  });

  it('an inline fsync that took long (a slow disk) sends the next ones to the threadpool', async () => {
    const a = await mkfile(z.rootId, 'slow-a', 'a');
    const b2 = await mkfile(z.rootId, 'slow-b', 'b');
    const real = fs.fsyncSync;
    const slow = vi.spyOn(fs, 'fsyncSync').mockImplementation((fd: number) => {
      real(fd);
      const until = process.hrtime.bigint() + 3_000_000n; // a 3 ms fsync
      while (process.hrtime.bigint() < until) { /* the disk is slow */ }
    });
    try {
      await z.commit(ALONE, a, 0, 0);
    } finally {
      slow.mockRestore();
    }
    expect(z.stats.slowInlineSyncs).toBe(1);
    expect(await syncsOf(() => z.commit(ALONE, b2, 0, 0))).toEqual({ inline: 0, pool: 1 });
  });

  it('FILE_SYNC and DATA_SYNC writes use the same rule', async () => {
    const id = await mkfile(z.rootId, 'stable');
    expect(await syncsOf(() => z.write(ALONE, id, 0, b('one'), 'file_sync'))).toEqual({ inline: 1, pool: 0 });
    expect(await syncsOf(() => z.write(ALONE, id, 3, b('two'), 'data_sync'))).toEqual({ inline: 1, pool: 0 });
    expect(await syncsOf(() => z.write(ALONE, id, 0, Buffer.alloc(300 * 1024, 1), 'file_sync'))).toEqual({ inline: 0, pool: 1 });
    expect(await syncsOf(() => z.write(ROOT, id, 0, b('three'), 'file_sync'))).toEqual({ inline: 0, pool: 1 });
  });
});

describe('create', () => {
  it('EXCLUSIVE: a retry with the same verifier succeeds with the same id, another verifier fails', async () => {
    const v1 = Buffer.from('0123abcd');
    const v2 = Buffer.from('0123abce');
    const c1 = await z.create(ROOT, z.rootId, b('ex'), { mode: 'exclusive', verifier: v1 });
    const c2 = await z.create(ROOT, z.rootId, b('ex'), { mode: 'exclusive', verifier: v1 });
    expect(c2.id).toBe(c1.id);
    expect(await code(z.create(ROOT, z.rootId, b('ex'), { mode: 'exclusive', verifier: v2 }))).toBe('EEXIST');
    await reopen();
    expect((await z.create(ROOT, z.rootId, b('ex'), { mode: 'exclusive', verifier: v1 })).id).toBe(c1.id);
    const t = verifierTimes(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 1]));
    expect(t).toEqual({ atime: 0x7fffffff, mtime: 1 });
  });

  it('GUARDED fails on an existing name; UNCHECKED truncates with size 0', async () => {
    const id = await mkfile(z.rootId, 'u', 'content');
    expect(await code(z.create(ROOT, z.rootId, b('u'), { mode: 'guarded', attrs: {} }))).toBe('EEXIST');
    const keep = await z.create(ROOT, z.rootId, b('u'), { mode: 'unchecked', attrs: {} });
    expect(keep.id).toBe(id);
    expect(keep.attr.size).toBe(7n);
    const trunc = await z.create(ROOT, z.rootId, b('u'), { mode: 'unchecked', attrs: { size: 0n } });
    expect(trunc.id).toBe(id);
    expect(trunc.attr.size).toBe(0n);
    expect(fs.readFileSync(path.join(zoneDir, 'u'), 'utf8')).toBe('');
    await z.mkdir(ROOT, z.rootId, b('dir'), {});
    expect(await code(z.create(ROOT, z.rootId, b('dir'), { mode: 'unchecked', attrs: {} }))).toBe('EISDIR');
  });

  it('applies attributes and ownership on create', async () => {
    fs.chmodSync(zoneDir, 0o777);
    const c = await z.create(USER, z.rootId, b('owned'), { mode: 'guarded', attrs: { mode: 0o640, mtime: { sec: 1_000_000, nsec: 0 } } });
    expect(c.attr.mode).toBe(0o640);
    expect(c.attr.uid).toBe(1000);
    expect(c.attr.gid).toBe(1000);
    expect(c.attr.mtime.sec).toBe(1_000_000);
    const st = fs.statSync(path.join(zoneDir, 'owned'));
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1000, 1000, 0o640]);
    const d = await z.mkdir(USER, z.rootId, b('udir'), {});
    expect(d.attr.mode).toBe(0o755);
    expect(d.attr.uid).toBe(1000);
    const f = await z.create(USER, z.rootId, b('plain'), { mode: 'unchecked', attrs: {} });
    expect(f.attr.mode).toBe(0o644);
    expect(c.dir.after?.mtime).toBeDefined();
    // setgid directory: new objects take its group, subdirectories inherit the bit
    const sg = await z.mkdir(ROOT, z.rootId, b('sg'), { mode: 0o2777, gid: 555 });
    expect(sg.attr.mode).toBe(0o2777);
    const inSg = await z.create(USER, sg.id, b('f'), { mode: 'unchecked', attrs: {} });
    expect(inSg.attr.gid).toBe(555);
    const subSg = await z.mkdir(USER, sg.id, b('d'), { mode: 0o755 });
    expect(subSg.attr.gid).toBe(555);
    expect(subSg.attr.mode & 0o2000).toBe(0o2000);
  });

  it('makes directories, symlinks and special files', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('d'), { mode: 0o700 });
    expect(d.attr.type).toBe('dir');
    expect(d.attr.mode).toBe(0o700);
    expect(await code(z.mkdir(ROOT, z.rootId, b('d'), {}))).toBe('EEXIST');
    const target = Buffer.from([0x2e, 0x2e, 0x2f, 0xff, 0x00 + 0x41]);
    const s = await z.symlink(ROOT, d.id, b('link'), target, {});
    expect(s.attr.type).toBe('symlink');
    expect((await z.readlink(ROOT, s.id)).target.equals(target)).toBe(true);
    expect(fs.readlinkSync(Buffer.from(path.join(zoneDir, 'd', 'link')), { encoding: 'buffer' }).equals(target)).toBe(true);
    expect(await code(z.readlink(ROOT, d.id))).toBe('EINVAL');
    expect(await code(z.symlink(ROOT, d.id, b('link'), b('x'), {}))).toBe('EEXIST');
    const fifo = await z.mknod(ROOT, d.id, Buffer.from([0x66, 0xff]), 'fifo', { mode: 0o600 });
    expect(fifo.attr.type).toBe('fifo');
    expect(fifo.attr.mode).toBe(0o600);
    const sock = await z.mknod(ROOT, d.id, b('sock'), 'socket', {});
    expect(sock.attr.type).toBe('socket');
    expect(await code(z.mknod(ROOT, d.id, b('blk'), 'block', {}, { major: 8, minor: 0 }))).toBe('ENOTSUP');
    expect(await code(z.mknod(ROOT, d.id, b('sock'), 'socket', {}))).toBe('EEXIST');
    await z.setattr(ROOT, fifo.id, { mode: 0o644 });
    expect((await z.getattr(ROOT, fifo.id)).mode).toBe(0o644);
    expect(fs.readdirSync(zoneDir).sort()).toEqual(['d']); // no staging names left behind
  });
});

describe('remove, rmdir, rename, link', () => {
  it('removes files and directories with POSIX errors', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('d'), {});
    const f = await mkfile(d.id, 'f', 'x');
    expect(await code(z.remove(ROOT, z.rootId, b('d')))).toBe('EISDIR');
    expect(await code(z.rmdir(ROOT, z.rootId, b('d')))).toBe('ENOTEMPTY');
    expect(await code(z.rmdir(ROOT, d.id, b('f')))).toBe('ENOTDIR');
    expect(await code(z.remove(ROOT, d.id, b('nope')))).toBe('ENOENT');
    const w = await z.remove(ROOT, d.id, b('f'));
    expect(w.before).toBeDefined();
    expect(w.after?.nlink).toBe(2);
    expect(await code(z.getattr(ROOT, f))).toBe('ESTALE');
    await z.rmdir(ROOT, z.rootId, b('d'));
    expect(await code(z.getattr(ROOT, d.id))).toBe('ESTALE');
    expect(fs.readdirSync(zoneDir)).toEqual([]);
    expect(z.nodes.count()).toBe(1); // only the root is left
  });

  it('removing the last link of a file not in the fd cache leaks no descriptor and frees its space', async () => {
    const fdCount = () => fs.readdirSync('/proc/self/fd').length;
    const before = fdCount();
    const ids: FileId[] = [];
    for (let i = 0; i < 200; i++) ids.push(await mkfile(z.rootId, `f${i}`, 'x'.repeat(8192)));
    // More files than the cache keeps: the first ones are not cached, the last ones are.
    const used = z.usage.used;
    const linked = await mkfile(z.rootId, 'linked', 'y');
    await z.link(ROOT, linked, z.rootId, b('other'));
    for (let i = 0; i < 200; i++) await z.remove(ROOT, z.rootId, b(`f${i}`));
    await z.remove(ROOT, z.rootId, b('linked')); // not the last link: nothing held open
    expect(z.usage.used).toBeLessThan(used);
    for (const id of ids) expect(await code(z.getattr(ROOT, id))).toBe('ESTALE');
    expect((await z.lookup(ROOT, z.rootId, b('other'))).id).toBe(linked);
    expect(fs.readdirSync(zoneDir)).toEqual(['other']);
    await z.fds.closeAll();
    // Descriptors held across an unlink close on the threadpool, after the call answered.
    for (let i = 0; i < 50 && fdCount() > before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fdCount()).toBeLessThanOrEqual(before);
  });

  it('renames across directories, over targets, and refuses moving a dir into itself', async () => {
    const a = await z.mkdir(ROOT, z.rootId, b('a'), {});
    const sub = await z.mkdir(ROOT, a.id, b('sub'), {});
    const x = await mkfile(a.id, 'x', 'X');
    const y = await mkfile(z.rootId, 'y', 'Y');
    const r = await z.rename(ROOT, a.id, b('x'), z.rootId, b('y'));
    expect(r.from.after).toBeDefined();
    expect(r.to.after).toBeDefined();
    expect(await code(z.getattr(ROOT, y))).toBe('ESTALE');
    expect((await z.read(ROOT, x, 0, 10)).data.toString()).toBe('X');
    expect((await z.lookup(ROOT, z.rootId, b('y'))).id).toBe(x);
    expect(await code(z.rename(ROOT, z.rootId, b('a'), sub.id, b('loop')))).toBe('EINVAL');
    expect(await code(z.rename(ROOT, z.rootId, b('a'), a.id, b('self')))).toBe('EINVAL');
    expect(await code(z.rename(ROOT, z.rootId, b('y'), a.id, b('sub')))).toBe('EISDIR');
    expect(await code(z.rename(ROOT, z.rootId, b('a'), z.rootId, b('y')))).toBe('ENOTDIR');
    const inner = await mkfile(sub.id, 'deep', 'D');
    await z.rename(ROOT, z.rootId, b('a'), z.rootId, b('A'));
    expect((await z.read(ROOT, inner, 0, 10)).data.toString()).toBe('D');
    expect((await z.lookup(ROOT, sub.id, b('..'))).id).toBe(a.id);
    // rename onto an empty directory replaces it
    const e = await z.mkdir(ROOT, z.rootId, b('empty'), {});
    await z.rename(ROOT, a.id, b('sub'), z.rootId, b('empty'));
    expect(await code(z.getattr(ROOT, e.id))).toBe('ESTALE');
    expect((await z.lookup(ROOT, z.rootId, b('empty'))).id).toBe(sub.id);
    expect((await z.lookup(ROOT, sub.id, b('..'))).id).toBe(z.rootId);
  });

  it('hard-links files (not directories) and keeps the id alive while a link remains', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('d'), {});
    const f = await mkfile(z.rootId, 'orig', 'L');
    const l = await z.link(ROOT, f, d.id, b('alias'));
    expect(l.attr?.nlink).toBe(2);
    expect(l.dir.after).toBeDefined();
    expect(await code(z.link(ROOT, d.id, z.rootId, b('dirlink')))).toBe('EISDIR');
    expect(await code(z.link(ROOT, f, d.id, b('alias')))).toBe('EEXIST');
    await z.remove(ROOT, z.rootId, b('orig'));
    await reopen();
    expect((await z.getattr(ROOT, f)).nlink).toBe(1);
    expect((await z.read(ROOT, f, 0, 10)).data.toString()).toBe('L');
    await z.remove(ROOT, d.id, b('alias'));
    expect(await code(z.getattr(ROOT, f))).toBe('ESTALE');
  });
});

describe('setattr', () => {
  it('applies mode, owner, size and times; guard mismatch is NOT_SYNC', async () => {
    const id = await mkfile(z.rootId, 's', '0123456789');
    const a = await z.getattr(ROOT, id);
    expect(await code(z.setattr(ROOT, id, { mode: 0o600 }, { sec: a.ctime.sec - 5, nsec: a.ctime.nsec }))).toBe('NOT_SYNC');
    const w = await z.setattr(ROOT, id, { mode: 0o600, uid: 1000, gid: 1000, size: 4n }, a.ctime);
    expect(w.before?.size).toBe(10n);
    expect(w.after?.size).toBe(4n);
    expect(w.after?.mode).toBe(0o600);
    expect([w.after?.uid, w.after?.gid]).toEqual([1000, 1000]);
    await z.setattr(ROOT, id, { atime: { sec: 1_000_000, nsec: 0 }, mtime: { sec: 2_000_000, nsec: 500_000_000 } });
    let now = await z.getattr(ROOT, id);
    expect(now.atime.sec).toBe(1_000_000);
    expect(now.mtime.sec).toBe(2_000_000);
    expect(Math.abs(now.mtime.nsec - 500_000_000)).toBeLessThan(1000);
    await z.setattr(USER, id, { mtime: 'now' });
    now = await z.getattr(ROOT, id);
    expect(now.mtime.sec).toBeGreaterThan(2_000_000);
    expect(fs.readFileSync(path.join(zoneDir, 's'), 'utf8')).toBe('0123');
    const d = await z.mkdir(ROOT, z.rootId, b('d'), {});
    expect(await code(z.setattr(ROOT, d.id, { size: 0n }))).toBe('EISDIR');
    await z.setattr(ROOT, d.id, { mode: 0o711, uid: 1000 });
    expect((await z.getattr(ROOT, d.id)).mode).toBe(0o711);
    expect((await z.getattr(ROOT, d.id)).uid).toBe(1000);
  });
});

describe('permissions for a non-root caller', () => {
  it('refuses writes to a 0755 root-owned directory and reads of private files', async () => {
    fs.chmodSync(zoneDir, 0o755);
    const priv = await mkfile(z.rootId, 'private', 'secret');
    await z.setattr(ROOT, priv, { mode: 0o600 });
    const pub = await mkfile(z.rootId, 'public', 'hello');
    const r = z.rootId;
    expect(await code(z.create(USER, r, b('x'), { mode: 'unchecked', attrs: {} }))).toBe('EACCES');
    expect(await code(z.mkdir(USER, r, b('x'), {}))).toBe('EACCES');
    expect(await code(z.symlink(USER, r, b('x'), b('t'), {}))).toBe('EACCES');
    expect(await code(z.remove(USER, r, b('public')))).toBe('EACCES');
    expect(await code(z.rename(USER, r, b('public'), r, b('p2')))).toBe('EACCES');
    expect(await code(z.link(USER, pub, r, b('p3')))).toBe('EACCES');
    expect(await code(z.read(USER, priv, 0, 10))).toBe('EACCES');
    expect(await code(z.write(USER, pub, 0, b('x'), 'unstable'))).toBe('EACCES');
    expect(await code(z.setattr(USER, pub, { mode: 0o777 }))).toBe('EPERM');
    expect(await code(z.setattr(USER, pub, { uid: 1000 }))).toBe('EPERM');
    expect(await code(z.setattr(USER, pub, { size: 0n }))).toBe('EACCES');
    expect(await code(z.setattr(USER, pub, { mtime: { sec: 5, nsec: 0 } }))).toBe('EPERM');
    expect(await code(z.setattr(USER, pub, { mtime: 'now' }))).toBe('EACCES');
    expect((await z.read(USER, pub, 0, 10)).data.toString()).toBe('hello');
    expect((await z.lookup(USER, r, b('public'))).id).toBe(pub);
    const acc = await z.access(USER, pub, ALL);
    expect(acc.granted).toBe(ACCESS_READ);
    const accDir = await z.access(USER, r, ALL);
    expect(accDir.granted).toBe(ACCESS_READ | ACCESS_LOOKUP);
    expect((await z.access(ROOT, r, ALL)).granted).toBe(ACCESS_READ | ACCESS_LOOKUP | ACCESS_MODIFY | ACCESS_EXTEND | ACCESS_DELETE);
    expect((await z.access(ROOT, pub, ALL)).granted).toBe(ACCESS_READ | ACCESS_MODIFY | ACCESS_EXTEND);
    const locked = await z.mkdir(ROOT, r, b('locked'), { mode: 0o700 });
    await mkfile(locked.id, 'inner');
    expect(await code(z.lookup(USER, locked.id, b('inner')))).toBe('EACCES');
    expect(await code(z.readdir(USER, locked.id, { cookie: 0n, verifier: Buffer.alloc(8), maxEntries: 10, withAttrs: false }))).toBe('EACCES');
    expect(fs.readdirSync(zoneDir).sort()).toEqual(['locked', 'private', 'public']);
  });

  it('lets owners work in their directory and enforces the sticky bit', async () => {
    const tmpDir = await z.mkdir(ROOT, z.rootId, b('shared'), { mode: 0o1777 });
    const mine = await z.create(USER, tmpDir.id, b('mine'), { mode: 'guarded', attrs: { mode: 0o644 } });
    await z.write(USER, mine.id, 0, b('u'), 'unstable');
    await z.setattr(USER, mine.id, { mode: 0o600, gid: 1000 });
    expect(await code(z.remove(OTHER, tmpDir.id, b('mine')))).toBe('EPERM');
    expect(await code(z.rename(OTHER, tmpDir.id, b('mine'), tmpDir.id, b('stolen')))).toBe('EPERM');
    expect(await code(z.setattr(USER, mine.id, { gid: 2000 }))).toBe('EPERM');
    await z.create(OTHER, tmpDir.id, b('theirs'), { mode: 'guarded', attrs: {} });
    expect(await code(z.rename(USER, tmpDir.id, b('mine'), tmpDir.id, b('theirs')))).toBe('EPERM');
    await z.remove(USER, tmpDir.id, b('mine'));
    expect(fs.readdirSync(path.join(zoneDir, 'shared'))).toEqual(['theirs']);
  });

  it('lets an owner write their read-only file (knfsd owner override), nobody else', async () => {
    const shared = await z.mkdir(ROOT, z.rootId, b('w'), { mode: 0o777 });
    const f = await z.create(USER, shared.id, b('ro'), { mode: 'guarded', attrs: { mode: 0o444 } });
    expect((await z.write(USER, f.id, 0, b('mine'), 'unstable')).count).toBe(4);
    expect(await code(z.write(OTHER, f.id, 0, b('theirs'), 'unstable'))).toBe('EACCES');
    expect((await z.access(USER, f.id, ACCESS_MODIFY)).granted).toBe(0); // ACCESS stays strict
    // Moving someone else's directory to a new parent needs write access to it.
    const rootOwned = await z.mkdir(ROOT, shared.id, b('rootdir'), { mode: 0o755 });
    const dest = await z.mkdir(USER, shared.id, b('dest'), {});
    expect(await code(z.rename(USER, shared.id, b('rootdir'), dest.id, b('moved')))).toBe('EACCES');
    await z.rename(USER, shared.id, b('rootdir'), shared.id, b('renamed'));
    expect((await z.lookup(ROOT, shared.id, b('renamed'))).id).toBe(rootOwned.id);
  });

  it('computes ACCESS bits as a pure function', () => {
    const file = { type: 'file' as const, mode: 0o640, uid: 1000, gid: 50 };
    expect(grantedAccess(file, USER, ALL)).toBe(ACCESS_READ | ACCESS_MODIFY | ACCESS_EXTEND);
    expect(grantedAccess(file, { ...OTHER, gids: [50] }, ALL)).toBe(ACCESS_READ);
    expect(grantedAccess(file, OTHER, ALL)).toBe(0);
    expect(grantedAccess(file, ROOT, ALL)).toBe(ACCESS_READ | ACCESS_MODIFY | ACCESS_EXTEND);
    expect(grantedAccess({ ...file, mode: 0o641 }, ROOT, ALL)).toBe(ACCESS_READ | ACCESS_MODIFY | ACCESS_EXTEND | ACCESS_EXECUTE);
    expect(grantedAccess({ ...file, mode: 0o750 }, USER, ACCESS_EXECUTE | ACCESS_READ)).toBe(ACCESS_EXECUTE | ACCESS_READ);
    const dir = { type: 'dir' as const, mode: 0o000, uid: 0, gid: 0 };
    expect(grantedAccess(dir, ROOT, ACCESS_LOOKUP | ACCESS_DELETE)).toBe(ACCESS_LOOKUP | ACCESS_DELETE);
    expect(grantedAccess(dir, USER, ALL)).toBe(0);
    expect(() => checkSetattr(file, OTHER, { mode: 0o600 })).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(checkSetattr(file, USER, { mode: 0o2640 })).toEqual({ mode: 0o640 }); // not in group 50
    expect(checkSetattr(file, { ...USER, gids: [50] }, { mode: 0o2640 })).toEqual({ mode: 0o2640 });
  });
});

describe('readdir', () => {
  const page = (dir: FileId, cookie: bigint, max: number, verifier = COOKIE_VERIFIER, withAttrs = false) =>
    z.readdir(ROOT, dir, { cookie, verifier, maxEntries: max, withAttrs });

  it('starts with . and .., returns attributes, and checks verifiers', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('d'), {});
    await mkfile(d.id, 'one', '1');
    const p = await page(d.id, 0n, 10, Buffer.alloc(8), true);
    expect(p.entries.map((e) => e.name.toString())).toEqual(['.', '..', 'one']);
    expect(p.entries.map((e) => e.cookie).slice(0, 2)).toEqual([1n, 2n]);
    expect(p.entries[0]!.id).toBe(d.id);
    expect(p.entries[1]!.id).toBe(z.rootId);
    expect(p.entries[2]!.attr?.size).toBe(1n);
    expect(p.entries[1]!.attr?.fileid).toBe(z.rootId);
    expect(p.eof).toBe(true);
    expect(p.verifier.equals(COOKIE_VERIFIER)).toBe(true);
    expect(p.dirAttr.fileid).toBe(d.id);
    const c = p.entries[2]!.cookie;
    expect(c).toBe(nameCookie(b('one')));
    expect(await code(page(d.id, c, 10, Buffer.from('wrongver')))).toBe('BAD_COOKIE');
    expect((await page(d.id, c, 10, Buffer.alloc(8))).entries).toEqual([]);
    expect((await page(d.id, 1n, 10)).entries.map((e) => e.name.toString())).toEqual(['..', 'one']);
    // the verifier stays valid across a restart
    await reopen();
    expect((await page(d.id, 2n, 10, p.verifier)).entries.map((e) => e.name.toString())).toEqual(['one']);
  });

  it('pages 5000 entries without duplicates or omissions while the directory changes', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('big'), {});
    const dirPath = path.join(zoneDir, 'big');
    const original: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const n = `file-${i}`;
      fs.writeFileSync(path.join(dirPath, n), '');
      original.push(n);
    }
    const builds = z.stats.listingBuilds;
    // Unchanged directory: one listing build for all pages.
    let cookie = 0n;
    let pages = 0;
    let seen: string[] = [];
    for (let guard = 0; guard < 200; guard++) {
      const p = await page(d.id, cookie, 100);
      seen.push(...p.entries.map((e) => e.name.toString()));
      pages++;
      if (p.eof) break;
      cookie = p.entries[p.entries.length - 1]!.cookie;
    }
    expect(z.stats.listingBuilds).toBe(builds + 1);
    expect(pages).toBe(51);
    expect(seen.length).toBe(5002);

    // Changing directory: creates and deletes (in band and out of band) between pages.
    const deleted = new Set<string>();
    cookie = 0n;
    seen = [];
    let lastCookie = 0n;
    for (let guard = 0, k = 0; guard < 400; guard++, k++) {
      const p = await page(d.id, cookie, 100, COOKIE_VERIFIER, guard % 2 === 0);
      for (const e of p.entries) {
        expect(e.cookie > lastCookie).toBe(true);
        lastCookie = e.cookie;
      }
      seen.push(...p.entries.map((e) => e.name.toString()));
      if (p.eof) break;
      cookie = p.entries[p.entries.length - 1]!.cookie;
      for (let j = 0; j < 5; j++) {
        const victim = original[(k * 37 + j * 997) % original.length]!;
        if (deleted.has(victim)) continue;
        deleted.add(victim);
        if (j % 2 === 0) await z.remove(ROOT, d.id, b(victim));
        else fs.unlinkSync(path.join(dirPath, victim));
      }
      await mkfile(d.id, `new-${k}-a`);
      fs.writeFileSync(path.join(dirPath, `new-${k}-b`), '');
    }
    expect(new Set(seen).size).toBe(seen.length);
    // Rebuilds after changes reuse what the previous listing knew: only new names are lstat'ed.
    expect(z.stats.listingStats).toBeLessThan(5000 + 2 * 5000);
    const seenSet = new Set(seen);
    for (const n of original) if (!deleted.has(n)) expect(seenSet.has(n)).toBe(true);
    expect(deleted.size).toBeGreaterThan(100);
  });

  it('sorts a listing on cookie words exactly as on the 63-bit cookies, and makes the same cookies', async () => {
    const { buildListing } = await import('../src/vfs/local-listing.js');
    const { cookieOfWords, nameCookieWords, wordsOfCookie } = await import('../src/vfs/names.js');
    const names: Buffer[] = [];
    let seed = 12345;
    for (let i = 0; i < 3000; i++) {
      const len = 1 + (i % 40);
      const n = Buffer.alloc(len);
      for (let j = 0; j < len; j++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        n[j] = 1 + (seed >>> 16) % 255;
      }
      names.push(n);
    }
    const raw = names.map((name, i) => {
      const w = { hi: 0, lo: 0 };
      nameCookieWords(name, w);
      return { hi: w.hi, lo: w.lo, name, id: BigInt(i + 1) };
    });
    const l = buildListing('k', raw);
    const want = names.map((name) => ({ c: nameCookie(name), name }))
      .sort((a, b) => (a.c < b.c ? -1 : a.c > b.c ? 1 : Buffer.compare(a.name, b.name)));
    expect(l.cookies).toEqual(want.map((e) => e.c));
    expect(l.names.map((n) => n.toString('hex'))).toEqual(want.map((e) => e.name.toString('hex')));
    // the words are the cookie's halves, at the extremes too
    for (const [hi, lo] of [[0, 3], [0x7fffffff, 0xffffffff], [1, 0], [0x12345678, 0x9abcdef0]] as const) {
      const c = cookieOfWords(hi, lo);
      expect(c).toBe((BigInt(hi) << 32n) | BigInt(lo));
      const w = { hi: 0, lo: 0 };
      wordsOfCookie(c, w);
      expect(w).toEqual({ hi, lo });
    }
  });

  it('never splits entries sharing a cookie between pages', async () => {
    const { buildListing, pageEnd } = await import('../src/vfs/local-listing.js');
    const l = buildListing('k', [5n, 7n, 7n, 7n, 9n].map((c, i) => ({ hi: 0, lo: Number(c), name: b(`n${i}`), id: BigInt(i + 10) })));
    expect(l.cookies).toEqual([5n, 7n, 7n, 7n, 9n]);
    expect(pageEnd(l, 0, 2)).toBe(1); // would split the 7s → stop before them
    expect(pageEnd(l, 1, 2)).toBe(4); // the run alone exceeds the page → whole run
    expect(pageEnd(l, 0, 4)).toBe(4);
    expect(pageEnd(l, 4, 10)).toBe(5);
  });

  it('takes only the names that fit a byte budget (READDIRPLUS), so only those are looked up', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('budget'), {});
    for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(zoneDir, 'budget', `b${String(i).padStart(3, '0')}`), 'x');
    const entryBytes = (n: number): number => 100 + n;
    const ask = (cookie: bigint, bytes: number) => z.readdir(ROOT, d.id, {
      cookie, verifier: COOKIE_VERIFIER, maxEntries: 1000, withAttrs: true, budget: { bytes, entryBytes },
    });
    let before = z.stats.listingStats;
    // '.' (101) and '..' (102) first, then names of 4 bytes (104 each)
    const p1 = await ask(0n, 203 + 10 * 104);
    expect(p1.entries.map((e) => e.name.toString()).slice(0, 2)).toEqual(['.', '..']);
    expect(p1.entries.length).toBe(12);
    expect(z.stats.listingStats - before).toBe(10);
    expect((await ask(0n, 203 + 10 * 104 - 1)).entries.length).toBe(11);
    before = z.stats.listingStats;
    const p2 = await ask(p1.entries[11]!.cookie, 5 * 104);
    expect(p2.entries.length).toBe(5);
    expect(p2.entries.every((e) => e.attr?.fileid === e.id)).toBe(true);
    expect(z.stats.listingStats - before).toBe(5);
    // A budget smaller than one entry still moves on by one name.
    const p3 = await ask(p2.entries[4]!.cookie, 10);
    expect(p3.entries.length).toBe(1);
    // Every name once, in order, through budgeted pages.
    const seen: string[] = [];
    let cookie = 0n;
    for (let guard = 0; guard < 200; guard++) {
      const p = await ask(cookie, 7 * 104);
      seen.push(...p.entries.map((e) => e.name.toString()).filter((n) => !n.startsWith('.')));
      if (p.eof) break;
      cookie = p.entries[p.entries.length - 1]!.cookie;
    }
    expect(seen.length).toBe(100);
    expect(new Set(seen).size).toBe(100);
  });

  it('learns ids page by page: a listing is not lstat\'ed whole, every entry has its inode, a name gone by then is left out', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('lazy'), {});
    const dirPath = path.join(zoneDir, 'lazy');
    for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(dirPath, `f${i}`), String(i));
    const before = z.stats.listingStats;
    const first = await page(d.id, 0n, 52);
    // Only the names of the page served were looked up (not the 300 of the directory).
    expect(z.stats.listingStats - before).toBe(50);
    for (const withAttrs of [false, true]) {
      let cookie = 0n;
      const seen = new Map<string, bigint>();
      for (let guard = 0; guard < 50; guard++) {
        const p = await page(d.id, cookie, 40, COOKIE_VERIFIER, withAttrs);
        for (const e of p.entries) {
          if (e.name.toString().startsWith('.')) continue;
          seen.set(e.name.toString(), e.id);
          if (withAttrs) expect(e.attr?.fileid).toBe(e.id);
        }
        if (p.eof) break;
        cookie = p.entries[p.entries.length - 1]!.cookie;
      }
      expect(seen.size).toBe(300);
      for (const [n, id] of seen) expect(id).toBe(fs.statSync(path.join(dirPath, n), { bigint: true }).ino);
    }
    expect(first.entries.length).toBe(52);
    // A name readdir reports but that is gone when its page is served: never served with fileid 0.
    const ghost = path.join(zoneDir, 'ghosts');
    const g = await z.mkdir(ROOT, z.rootId, b('ghosts'), {});
    fs.writeFileSync(path.join(ghost, 'real'), 'r');
    // The directory is read synchronously or not by its size (readListing): answer both ways.
    const spy = vi.spyOn(fsp, 'readdir').mockImplementationOnce((async () => ['real', 'ghost']) as never);
    const spySync = vi.spyOn(fs, 'readdirSync').mockImplementationOnce((() => ['real', 'ghost']) as never);
    const builds = z.stats.listingBuilds;
    try {
      // One listing (the spy answers once): READDIR then READDIRPLUS pages of it.
      for (const withAttrs of [false, true]) {
        const p = await page(g.id, 0n, 10, COOKIE_VERIFIER, withAttrs);
        const names = p.entries.map((e) => e.name.toString());
        expect(names).toContain('real');
        expect(names).not.toContain('ghost');
        expect(p.entries.every((e) => e.id !== 0n)).toBe(true);
      }
      expect(z.stats.listingBuilds).toBe(builds + 1);
      // the listing came from one of the stand-ins (else 'ghost' was never offered)
      expect(spy.mock.calls.length + spySync.mock.calls.length).toBe(1);
    } finally {
      spy.mockRestore();
      spySync.mockRestore();
    }
  });

  it('reads small directories synchronously and large ones on the threadpool, with the same listing', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('sizes'), {});
    for (let i = 0; i < 400; i++) fs.writeFileSync(path.join(zoneDir, 'sizes', `name-${i}`), '');
    const size = fs.statSync(path.join(zoneDir, 'sizes')).size;
    const all = async (): Promise<string[]> => {
      const out: string[] = [];
      let cookie = 0n;
      for (let guard = 0; guard < 100; guard++) {
        const p = await page(d.id, cookie, 64, COOKIE_VERIFIER, false);
        out.push(...p.entries.map((e) => e.name.toString()));
        if (p.eof) break;
        cookie = p.entries[p.entries.length - 1]!.cookie;
      }
      return out;
    };
    // As many bytes per name as the directory has: one name by the estimate, read synchronously.
    z.dirBytesPerEntry = size;
    let syncs = z.stats.syncReaddirs;
    const small = await all();
    expect(z.stats.syncReaddirs).toBe(syncs + 1);
    expect(small.length).toBe(402);
    // One byte per name: over the limit (a directory of 400 names is more than 4,096 bytes here).
    if (size > 4096) {
      z.dirBytesPerEntry = 1;
      fs.writeFileSync(path.join(zoneDir, 'sizes', 'one-more'), ''); // a new listing
      syncs = z.stats.syncReaddirs;
      const large = await all();
      expect(z.stats.syncReaddirs).toBe(syncs);
      expect(large.filter((n) => n !== 'one-more')).toEqual(small);
    }
  });

  it('a page whose names are all gone moves on: no reply short of the end comes back without a name', async () => {
    const g = await z.mkdir(ROOT, z.rootId, b('mostlygone'), {});
    fs.writeFileSync(path.join(zoneDir, 'mostlygone', 'real'), 'r');
    // readdir reports 60 names that are gone by the time their page is served, and one real one.
    const names = [Buffer.from('real'), ...Array.from({ length: 60 }, (_, i) => Buffer.from(`gone${i}`))];
    const spy = vi.spyOn(fsp, 'readdir').mockImplementationOnce((async () => names) as never);
    try {
      for (const withAttrs of [false, true]) {
        let cookie = 0n;
        const seen: string[] = [];
        let replies = 0;
        for (let guard = 0; guard < 100; guard++) {
          const p = await page(g.id, cookie, 4, COOKIE_VERIFIER, withAttrs);
          replies++;
          const named = p.entries.filter((e) => e.name.toString() !== '.' && e.name.toString() !== '..');
          seen.push(...named.map((e) => e.name.toString()));
          if (p.eof) break;
          expect(named.length).toBeGreaterThan(0);
          cookie = p.entries[p.entries.length - 1]!.cookie;
        }
        expect(seen).toEqual(['real']);
        expect(replies).toBeLessThanOrEqual(3);
      }
    } finally {
      spy.mockRestore();
    }
  });

  it('lists a fresh directory after changes made out of band', async () => {
    const d = await z.mkdir(ROOT, z.rootId, b('d'), {});
    expect((await page(d.id, 0n, 10)).entries.length).toBe(2);
    fs.writeFileSync(path.join(zoneDir, 'd', 'oob'), 'o');
    const p = await page(d.id, 0n, 10);
    const e = p.entries.find((x: DirEntry) => x.name.toString() === 'oob');
    expect(e?.id).toBe(fs.statSync(path.join(zoneDir, 'd', 'oob'), { bigint: true }).ino);
    expect((await z.read(ROOT, e!.id, 0, 10)).data.toString()).toBe('o'); // ids from readdir resolve
    // A name replaced through the backend shows its new id after the rebuild.
    const keep = await mkfile(d.id, 'keep');
    await page(d.id, 0n, 10);
    await z.remove(ROOT, d.id, b('oob'));
    await mkfile(d.id, 'spacer'); // likely takes the freed inode number
    const again = await mkfile(d.id, 'oob', 'new');
    const ids = new Map((await page(d.id, 0n, 10)).entries.map((x) => [x.name.toString(), x.id]));
    expect(ids.get('oob')).toBe(again);
    expect(ids.get('keep')).toBe(keep);
    // A name replaced out of band is corrected by READDIRPLUS.
    fs.renameSync(path.join(zoneDir, 'd', 'keep'), path.join(zoneDir, 'd', 'keep.old'));
    fs.writeFileSync(path.join(zoneDir, 'd', 'keep'), 'replacement');
    const plus = await page(d.id, 0n, 10, COOKIE_VERIFIER, true);
    const k = plus.entries.find((x) => x.name.toString() === 'keep')!;
    expect(k.id).toBe(fs.statSync(path.join(zoneDir, 'd', 'keep'), { bigint: true }).ino);
    expect(k.attr?.size).toBe(11n);
    expect(plus.entries.find((x) => x.name.toString() === 'keep.old')?.id).toBe(keep);
  });
});

describe('fsstat, pathconf and usage', () => {
  it('reports the quota as total and tracks usage', async () => {
    await z.close();
    const quota = 8n << 20n;
    z = await openZone({ quotaBytes: quota });
    await z.usage.settled();
    const s0 = (await z.fsstat(ROOT, z.rootId)).stat;
    expect(s0.totalBytes).toBe(quota);
    expect(s0.totalFiles).toBeGreaterThan(0n);
    const id = await mkfile(z.rootId, 'big');
    await z.write(ROOT, id, 0, Buffer.alloc(2 << 20, 1), 'file_sync');
    const s1 = (await z.fsstat(ROOT, z.rootId)).stat;
    expect(s0.availBytes - s1.availBytes).toBeGreaterThanOrEqual(2n << 20n);
    expect(s0.availBytes - s1.availBytes).toBeLessThan(3n << 20n);
    expect(await code(z.write(ROOT, id, 2 << 20, Buffer.alloc(7 << 20), 'unstable'))).toBe('EDQUOT');
    await z.setattr(ROOT, id, { size: 0n });
    const s2 = (await z.fsstat(ROOT, z.rootId)).stat;
    expect(s2.availBytes).toBe(s0.availBytes);
    const sfs = fs.statfsSync(zoneDir, { bigint: true });
    await z.close();
    z = await openZone();
    const plain = (await z.fsstat(ROOT, z.rootId)).stat;
    expect(plain.totalBytes).toBe(sfs.blocks * sfs.bsize);
    const pc = (await z.pathconf(ROOT, z.rootId)).conf;
    expect(pc).toMatchObject({ nameMax: 255, noTrunc: true, chownRestricted: true, caseInsensitive: false, casePreserving: true });
    expect(pc.linkMax).toBeGreaterThan(1);
  });

  it('UsageTracker: scan counts allocated bytes once per inode and applies deltas', async () => {
    const t = path.join(tmp, 'tree');
    fs.mkdirSync(path.join(t, 'a', 'b'), { recursive: true });
    fs.writeFileSync(path.join(t, 'a', 'one'), Buffer.alloc(1 << 20, 1));
    fs.writeFileSync(path.join(t, 'a', 'b', 'two'), Buffer.alloc(1 << 19, 1));
    fs.linkSync(path.join(t, 'a', 'one'), path.join(t, 'hard'));
    fs.symlinkSync('/etc', path.join(t, 'a', 'sym'));
    const tracker = new UsageTracker();
    const r = await tracker.scan(t);
    expect(r.complete).toBe(true);
    const files = (1 << 20) + (1 << 19);
    expect(tracker.used).toBeGreaterThanOrEqual(BigInt(files));
    expect(tracker.used).toBeLessThan(BigInt(files + (1 << 20)));
    tracker.add(-(1n << 20n));
    expect(tracker.used).toBeLessThan(BigInt(files));
    tracker.add(-(1n << 40n));
    expect(tracker.used).toBe(0n);
    const partial = await new UsageTracker().scan(t, { maxEntries: 2 });
    expect(partial.complete).toBe(false);
  });
});

describe('close', () => {
  it('closes cached fds and refuses further calls', async () => {
    const id = await mkfile(z.rootId, 'c', 'x');
    await z.read(ROOT, id, 0, 1);
    expect(z.fds.size).toBe(1);
    await z.close();
    expect(z.fds.size).toBe(0);
    expect(await code(z.getattr(ROOT, id))).toBe('EIO');
    z = await openZone();
  });
});
