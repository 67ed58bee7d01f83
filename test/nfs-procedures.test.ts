/**
 * The 22 NFSv3 procedures (RFC 1813) and the RPC layer (RFC 5531) of a running daemon, driven by
 * our own independent test client, with results checked on the host side (the zone directory).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { encodeCall } from '../src/rpc/message.js';
import { XdrWriter } from '../src/xdr/writer.js';
import { startTestDaemon, type TestDaemon } from './harness/daemon.js';
import {
  ACCESS3, expectOk, FTYPE, mountExport, mountMnt, mountZone, MNT3_OK, Nfs3Client, NFS3_OK,
  NFS_PROGRAM, PROC, STABLE, statName, type DirEntry3, type Fattr3, type WccData,
} from './harness/nfs3-client.js';
import { RpcClient, successResults, type Cred } from './harness/rpc-client.js';

const ZONE = 'tier-1';
const ZONE2 = 'tier-2';
/** A zone whose allow list excludes 127.0.0.1. */
const CLOSED = 'closed';
const QUOTA_BYTES = 1n << 30n; // quota = "1G"
const USER: Cred = { uid: 1000, gid: 1000, gids: [1000] };
const ZERO_VERF: Buffer = Buffer.alloc(8);

let d: TestDaemon;
let nfs: Nfs3Client;
let root: Buffer;
let hostZone: string;
let seq = 0;

/** Status check with the status name in the failure message. */
function st(res: { status: number }): string {
  return statName(res.status);
}

/** A fresh directory per test, created through NFS. */
async function freshDir(label: string): Promise<{ fh: Buffer; host: string; name: string }> {
  const name = `${label}-${++seq}`;
  const res = await nfs.mkdir(root, name, { mode: 0o777 });
  expect(st(res)).toBe('NFS3_OK');
  const fh = res.ok!.fh ?? expectOk(await nfs.lookup(root, name), 'LOOKUP').fh;
  return { fh, host: path.join(hostZone, name), name };
}

async function createFile(dir: Buffer, name: string, content?: Buffer, mode = 0o644): Promise<Buffer> {
  const c = await nfs.create(dir, name, { mode: 'guarded', attrs: { mode } });
  expect(st(c), `CREATE ${name}`).toBe('NFS3_OK');
  const fh = c.ok!.fh ?? expectOk(await nfs.lookup(dir, name), 'LOOKUP').fh;
  if (content && content.length) {
    const w = await nfs.write(fh, 0, content, STABLE.FILE_SYNC);
    expect(st(w)).toBe('NFS3_OK');
    expect(w.ok!.count).toBe(content.length);
  }
  return fh;
}

function expectWcc(wcc: WccData, what: string): void {
  expect(wcc.before, `${what}: wcc_data.before (pre_op_attr) missing`).not.toBeNull();
  expect(wcc.after, `${what}: wcc_data.after (post_op_attr) missing`).not.toBeNull();
}

async function getattr(fh: Buffer): Promise<Fattr3> {
  return expectOk(await nfs.getattr(fh), 'GETATTR');
}

beforeAll(async () => {
  d = await startTestDaemon({ zones: [ZONE, ZONE2, CLOSED], quota: '1G', allow: { [CLOSED]: ['10.200.0.0/16'] } });
  hostZone = d.zonePath(ZONE);
  ({ nfs, root } = await mountZone(d.nfsPort, d.mountPort, ZONE));
});

afterAll(async () => {
  nfs?.close();
  await d?.stop();
});

describe('MOUNT v3', () => {
  it('MNT of the zone returns a root handle and AUTH_SYS among the flavors', async () => {
    const m = await RpcClient.connect(d.mountPort);
    try {
      const res = await mountMnt(m, `/${ZONE}`);
      expect(res.status).toBe(MNT3_OK);
      expect(res.fh!.length).toBeGreaterThan(0);
      expect(res.fh!.length).toBeLessThanOrEqual(64);
      expect(res.flavors).toContain(1);
      const bad = await mountMnt(m, '/no-such-zone');
      expect(bad.status).not.toBe(MNT3_OK);
      const exports = await mountExport(m);
      expect(exports.map((e) => e.dir)).toContain(`/${ZONE}`);
    } finally {
      m.close();
    }
  });

  it('GETATTR of the root matches the zone directory', async () => {
    const a = await getattr(root);
    expect(a.type).toBe(FTYPE.DIR);
    expect(a.fileid).not.toBe(0n);
    const s = fs.statSync(hostZone);
    expect(a.mode & 0o7777).toBe(s.mode & 0o7777);
    expect(a.uid).toBe(s.uid);
  });
});

describe('NFSv3 procedures', () => {
  it('NULL answers with empty results', async () => {
    await nfs.null();
  });

  it('CREATE UNCHECKED / GUARDED / EXCLUSIVE', async () => {
    const dir = await freshDir('create');
    // GUARDED creates, then refuses an existing name.
    const g = await nfs.create(dir.fh, 'g', { mode: 'guarded', attrs: { mode: 0o640 } });
    expect(st(g)).toBe('NFS3_OK');
    expectWcc(g.dirWcc, 'CREATE');
    expect(g.ok!.attr?.type).toBe(FTYPE.REG);
    expect(fs.statSync(path.join(dir.host, 'g')).mode & 0o777).toBe(0o640);
    expect(st(await nfs.create(dir.fh, 'g', { mode: 'guarded', attrs: { mode: 0o640 } }))).toBe('NFS3ERR_EXIST');

    // UNCHECKED on an existing file succeeds, keeps the file, and applies size=0.
    const gfh = g.ok!.fh ?? expectOk(await nfs.lookup(dir.fh, 'g')).fh;
    expect(st(await nfs.write(gfh, 0, Buffer.from('hello world'), STABLE.FILE_SYNC))).toBe('NFS3_OK');
    const u = await nfs.create(dir.fh, 'g', { mode: 'unchecked', attrs: { size: 0 } });
    expect(st(u)).toBe('NFS3_OK');
    expect(fs.statSync(path.join(dir.host, 'g')).size).toBe(0);
    const u2 = await nfs.create(dir.fh, 'u', { mode: 'unchecked', attrs: { mode: 0o600 } });
    expect(st(u2)).toBe('NFS3_OK');
    expect(fs.statSync(path.join(dir.host, 'u')).isFile()).toBe(true);

    // EXCLUSIVE: a retry with the same verifier succeeds (same file), another verifier is EXIST.
    const verf = Buffer.from('0123abcd');
    const e1 = await nfs.create(dir.fh, 'x', { mode: 'exclusive', verf });
    expect(st(e1)).toBe('NFS3_OK');
    const fid1 = (await getattr(e1.ok!.fh ?? expectOk(await nfs.lookup(dir.fh, 'x')).fh)).fileid;
    const e2 = await nfs.create(dir.fh, 'x', { mode: 'exclusive', verf });
    expect(st(e2), 'EXCLUSIVE retry with the same verifier').toBe('NFS3_OK');
    const fid2 = (await getattr(e2.ok!.fh ?? expectOk(await nfs.lookup(dir.fh, 'x')).fh)).fileid;
    expect(fid2).toBe(fid1);
    const e3 = await nfs.create(dir.fh, 'x', { mode: 'exclusive', verf: Buffer.from('zzzzzzzz') });
    expect(st(e3), 'EXCLUSIVE with another verifier').toBe('NFS3ERR_EXIST');
    // EXCLUSIVE on a name created another way is EXIST too.
    expect(st(await nfs.create(dir.fh, 'u', { mode: 'exclusive', verf }))).toBe('NFS3ERR_EXIST');
    // After an exclusive create the client sets the real attributes.
    const xfh = expectOk(await nfs.lookup(dir.fh, 'x')).fh;
    expect(st(await nfs.setattr(xfh, { mode: 0o604 }))).toBe('NFS3_OK');
    expect(fs.statSync(path.join(dir.host, 'x')).mode & 0o777).toBe(0o604);
  });

  it('GETATTR and SETATTR (mode, owner, size, times) show on the host side', async () => {
    const dir = await freshDir('setattr');
    const fh = await createFile(dir.fh, 'f', Buffer.from('0123456789abcdef'));
    const a = await getattr(fh);
    expect(a.type).toBe(FTYPE.REG);
    expect(a.size).toBe(16n);
    expect(a.nlink).toBe(1);
    const s = await nfs.setattr(fh, { mode: 0o600, uid: 1000, gid: 1001, size: 10, mtime: { sec: 1_000_000_000, nsec: 0 }, atime: { sec: 999_999_999, nsec: 0 } });
    expect(st(s)).toBe('NFS3_OK');
    expectWcc(s.wcc, 'SETATTR');
    expect(s.wcc.before!.size).toBe(16n);
    expect(s.wcc.after!.size).toBe(10n);
    const hs = fs.statSync(path.join(dir.host, 'f'));
    expect(hs.mode & 0o7777).toBe(0o600);
    expect([hs.uid, hs.gid]).toEqual([1000, 1001]);
    expect(hs.size).toBe(10);
    expect(Math.floor(hs.mtimeMs / 1000)).toBe(1_000_000_000);
    expect(Math.floor(hs.atimeMs / 1000)).toBe(999_999_999);
    const b = await getattr(fh);
    expect(b.mode & 0o7777).toBe(0o600);
    expect([b.uid, b.gid]).toEqual([1000, 1001]);
    expect(b.mtime.sec).toBe(1_000_000_000);
    // SET_TO_SERVER_TIME moves mtime forward from 2001.
    expect(st(await nfs.setattr(fh, { mtime: 'server' }))).toBe('NFS3_OK');
    expect((await getattr(fh)).mtime.sec).toBeGreaterThan(1_000_000_000);
  });

  it('SETATTR with a ctime guard: mismatch is NFS3ERR_NOT_SYNC and changes nothing', async () => {
    const dir = await freshDir('guard');
    const fh = await createFile(dir.fh, 'f', undefined, 0o644);
    const a = await getattr(fh);
    const wrong = { sec: a.ctime.sec - 1000, nsec: a.ctime.nsec };
    const bad = await nfs.setattr(fh, { mode: 0o600 }, wrong);
    expect(st(bad)).toBe('NFS3ERR_NOT_SYNC');
    expect(fs.statSync(path.join(dir.host, 'f')).mode & 0o777).toBe(0o644);
    const good = await nfs.setattr(fh, { mode: 0o600 }, a.ctime);
    expect(st(good)).toBe('NFS3_OK');
    expect(fs.statSync(path.join(dir.host, 'f')).mode & 0o777).toBe(0o600);
  });

  it('LOOKUP: found, NOENT with dir attributes, NOTDIR, host-created files visible', async () => {
    const dir = await freshDir('lookup');
    const fh = await createFile(dir.fh, 'a');
    const l = await nfs.lookup(dir.fh, 'a');
    expect(st(l)).toBe('NFS3_OK');
    expect(l.ok!.attr?.fileid).toBe((await getattr(fh)).fileid);
    const missing = await nfs.lookup(dir.fh, 'nope');
    expect(st(missing)).toBe('NFS3ERR_NOENT');
    expect(missing.dirAttr, 'LOOKUP failure carries dir_attributes').not.toBeNull();
    expect(st(await nfs.lookup(fh, 'x'))).toBe('NFS3ERR_NOTDIR');
    fs.writeFileSync(path.join(dir.host, 'from-host'), 'made on the host');
    const h = await nfs.lookup(dir.fh, 'from-host');
    expect(st(h)).toBe('NFS3_OK');
    const data = await nfs.readAll(h.ok!.fh);
    expect(data.toString()).toBe('made on the host');
  });

  it('ACCESS: uid 1000 gets nothing on a 0700 root file, root gets read/modify', async () => {
    const dir = await freshDir('access');
    const p = path.join(dir.host, 'secret');
    fs.writeFileSync(p, 'secret');
    fs.chownSync(p, 0, 0);
    fs.chmodSync(p, 0o700);
    const fh = expectOk(await nfs.lookup(dir.fh, 'secret')).fh;
    const all = ACCESS3.READ | ACCESS3.MODIFY | ACCESS3.EXTEND | ACCESS3.EXECUTE;
    const asUser = await nfs.as(USER).access(fh, all);
    expect(st(asUser)).toBe('NFS3_OK');
    expect(asUser.ok!.access & all).toBe(0);
    const asRoot = await nfs.access(fh, all);
    expect(st(asRoot)).toBe('NFS3_OK');
    expect(asRoot.ok!.access & (ACCESS3.READ | ACCESS3.MODIFY | ACCESS3.EXTEND)).toBe(ACCESS3.READ | ACCESS3.MODIFY | ACCESS3.EXTEND);
    // Granted bits are a subset of those asked for.
    const onlyRead = await nfs.access(fh, ACCESS3.READ);
    expect(onlyRead.ok!.access & ~ACCESS3.READ).toBe(0);
    // A 0644 root file: the user may read, not modify.
    const q = path.join(dir.host, 'public');
    fs.writeFileSync(q, 'public');
    fs.chmodSync(q, 0o644);
    const pfh = expectOk(await nfs.lookup(dir.fh, 'public')).fh;
    const pu = await nfs.as(USER).access(pfh, ACCESS3.READ | ACCESS3.MODIFY);
    expect(pu.ok!.access).toBe(ACCESS3.READ);
    // And the server enforces it: uid 1000 cannot read the 0700 file.
    const r = await nfs.as(USER).read(fh, 0, 100);
    expect(st(r)).toBe('NFS3ERR_ACCES');
    const w = await nfs.as(USER).write(pfh, 0, Buffer.from('x'), STABLE.FILE_SYNC);
    expect(st(w)).toBe('NFS3ERR_ACCES');
    expect(fs.readFileSync(q, 'utf8')).toBe('public');
  });

  it('SYMLINK and READLINK; READLINK of a regular file is NFS3ERR_INVAL', async () => {
    const dir = await freshDir('symlink');
    const s = await nfs.symlink(dir.fh, 'ln', 'some/relative/target');
    expect(st(s)).toBe('NFS3_OK');
    expectWcc(s.dirWcc, 'SYMLINK');
    expect(fs.readlinkSync(path.join(dir.host, 'ln'))).toBe('some/relative/target');
    const lfh = s.ok!.fh ?? expectOk(await nfs.lookup(dir.fh, 'ln')).fh;
    expect((await getattr(lfh)).type).toBe(FTYPE.LNK);
    const r = await nfs.readlink(lfh);
    expect(st(r)).toBe('NFS3_OK');
    expect(r.ok!.target).toBe('some/relative/target');
    const ffh = await createFile(dir.fh, 'plain');
    expect(st(await nfs.readlink(ffh))).toBe('NFS3ERR_INVAL');
    expect(st(await nfs.symlink(dir.fh, 'ln', 'other'))).toBe('NFS3ERR_EXIST');
  });

  it('WRITE FILE_SYNC of 1 MiB in one call, READ back, EOF handling', async () => {
    const dir = await freshDir('rw');
    const fh = await createFile(dir.fh, 'big');
    const data = Buffer.alloc(1 << 20);
    for (let i = 0; i < data.length; i += 4) data.writeUInt32BE((i * 2654435761) >>> 0, i);
    const w = await nfs.write(fh, 0, data, STABLE.FILE_SYNC);
    expect(st(w)).toBe('NFS3_OK');
    expect(w.ok!.count).toBe(data.length);
    expect(w.ok!.committed).toBe(STABLE.FILE_SYNC);
    expectWcc(w.wcc, 'WRITE');
    expect(w.wcc.after!.size).toBe(BigInt(data.length));
    expect(fs.readFileSync(path.join(dir.host, 'big')).equals(data)).toBe(true);
    const r = await nfs.read(fh, 0, 1 << 20);
    expect(st(r)).toBe('NFS3_OK');
    expect(r.ok!.count).toBe(data.length);
    expect(r.ok!.data.equals(data)).toBe(true);
    const mid = await nfs.read(fh, 1000, 5000);
    expect(mid.ok!.data.equals(data.subarray(1000, 6000))).toBe(true);
    expect(mid.ok!.eof).toBe(false);
    const tail = await nfs.read(fh, data.length - 10, 100);
    expect(tail.ok!.count).toBe(10);
    expect(tail.ok!.eof).toBe(true);
    const past = await nfs.read(fh, data.length + 100, 100);
    expect(st(past)).toBe('NFS3_OK');
    expect(past.ok!.count).toBe(0);
    expect(past.ok!.eof).toBe(true);
    // A write past the end leaves a hole of zeros.
    expect(st(await nfs.write(fh, data.length + 4096, Buffer.from('end'), STABLE.FILE_SYNC))).toBe('NFS3_OK');
    const host = fs.readFileSync(path.join(dir.host, 'big'));
    expect(host.length).toBe(data.length + 4096 + 3);
    expect(host.subarray(data.length, data.length + 4096).every((b) => b === 0)).toBe(true);
    // READ and WRITE on a directory are refused.
    expect(st(await nfs.read(dir.fh, 0, 10))).toBe('NFS3ERR_ISDIR');
    expect((await nfs.write(dir.fh, 0, Buffer.from('x'))).status).not.toBe(NFS3_OK);
  });

  it('WRITE UNSTABLE + COMMIT: one verifier for the daemon life, data durable after COMMIT', async () => {
    const dir = await freshDir('unstable');
    const fh = await createFile(dir.fh, 'f');
    const verfs: Buffer[] = [];
    for (let i = 0; i < 8; i++) {
      const w = await nfs.write(fh, i * 65536, Buffer.alloc(65536, i + 1), STABLE.UNSTABLE);
      expect(st(w)).toBe('NFS3_OK');
      expect(w.ok!.count).toBe(65536);
      expect([STABLE.UNSTABLE, STABLE.DATA_SYNC, STABLE.FILE_SYNC]).toContain(w.ok!.committed);
      verfs.push(w.ok!.verf);
    }
    const c = await nfs.commit(fh, 0, 0);
    expect(st(c)).toBe('NFS3_OK');
    expectWcc(c.wcc, 'COMMIT');
    verfs.push(c.ok!.verf);
    for (const v of verfs) expect(v.toString('hex')).toBe(verfs[0]!.toString('hex'));
    const host = fs.readFileSync(path.join(dir.host, 'f'));
    expect(host.length).toBe(8 * 65536);
    for (let i = 0; i < 8; i++) expect(host[i * 65536]).toBe(i + 1);
    // DATA_SYNC is honoured at least as DATA_SYNC.
    const ds = await nfs.write(fh, 0, Buffer.from('zz'), STABLE.DATA_SYNC);
    expect(ds.ok!.committed).toBeGreaterThanOrEqual(STABLE.DATA_SYNC);
    expect(ds.ok!.verf.equals(verfs[0]!)).toBe(true);
    writeVerfBeforeRestart = verfs[0]!;
  });

  it('MKDIR, and MKDIR of an existing name is NFS3ERR_EXIST', async () => {
    const dir = await freshDir('mkdir');
    const m = await nfs.mkdir(dir.fh, 'sub', { mode: 0o750 });
    expect(st(m)).toBe('NFS3_OK');
    expectWcc(m.dirWcc, 'MKDIR');
    expect(m.ok!.attr?.type).toBe(FTYPE.DIR);
    const hs = fs.statSync(path.join(dir.host, 'sub'));
    expect(hs.isDirectory()).toBe(true);
    expect(hs.mode & 0o777).toBe(0o750);
    expect(st(await nfs.mkdir(dir.fh, 'sub'))).toBe('NFS3ERR_EXIST');
  });

  it('MKNOD: FIFO works, a character device is NFS3ERR_NOTSUPP, a regular file NFS3ERR_BADTYPE', async () => {
    const dir = await freshDir('mknod');
    const f = await nfs.mknod(dir.fh, 'fifo', { type: 'fifo', attrs: { mode: 0o600 } });
    expect(st(f)).toBe('NFS3_OK');
    expectWcc(f.dirWcc, 'MKNOD');
    expect(fs.lstatSync(path.join(dir.host, 'fifo')).isFIFO()).toBe(true);
    const ffh = f.ok!.fh ?? expectOk(await nfs.lookup(dir.fh, 'fifo')).fh;
    expect((await getattr(ffh)).type).toBe(FTYPE.FIFO);
    const c = await nfs.mknod(dir.fh, 'chr', { type: 'chr', major: 1, minor: 3 });
    expect(st(c)).toBe('NFS3ERR_NOTSUPP');
    expect(fs.existsSync(path.join(dir.host, 'chr'))).toBe(false);
    expect(st(await nfs.mknod(dir.fh, 'reg', { type: 'reg' }))).toBe('NFS3ERR_BADTYPE');
  });

  it('REMOVE: file gone on the host, its handle NFS3ERR_STALE; missing name NFS3ERR_NOENT', async () => {
    const dir = await freshDir('remove');
    const fh = await createFile(dir.fh, 'f', Buffer.from('bye'));
    const r = await nfs.remove(dir.fh, 'f');
    expect(st(r)).toBe('NFS3_OK');
    expectWcc(r.dirWcc, 'REMOVE');
    expect(fs.existsSync(path.join(dir.host, 'f'))).toBe(false);
    expect(st(await nfs.getattr(fh))).toBe('NFS3ERR_STALE');
    expect(st(await nfs.read(fh, 0, 10))).toBe('NFS3ERR_STALE');
    expect(st(await nfs.remove(dir.fh, 'f'))).toBe('NFS3ERR_NOENT');
    expect(st(await nfs.lookup(dir.fh, 'f'))).toBe('NFS3ERR_NOENT');
    // A file removed on the host side: its handle is stale too.
    const h2 = await createFile(dir.fh, 'g');
    fs.unlinkSync(path.join(dir.host, 'g'));
    expect(st(await nfs.getattr(h2))).toBe('NFS3ERR_STALE');
  });

  it('RMDIR: NOTEMPTY, NOTDIR, then success', async () => {
    const dir = await freshDir('rmdir');
    const sub = expectOk(await nfs.mkdir(dir.fh, 'sub'));
    const subFh = sub.fh ?? expectOk(await nfs.lookup(dir.fh, 'sub')).fh;
    await createFile(subFh, 'inside');
    expect(st(await nfs.rmdir(dir.fh, 'sub'))).toBe('NFS3ERR_NOTEMPTY');
    await createFile(dir.fh, 'file');
    expect(st(await nfs.rmdir(dir.fh, 'file'))).toBe('NFS3ERR_NOTDIR');
    expect(st(await nfs.remove(subFh, 'inside'))).toBe('NFS3_OK');
    const r = await nfs.rmdir(dir.fh, 'sub');
    expect(st(r)).toBe('NFS3_OK');
    expectWcc(r.dirWcc, 'RMDIR');
    expect(fs.existsSync(path.join(dir.host, 'sub'))).toBe(false);
    expect(st(await nfs.getattr(subFh))).toBe('NFS3ERR_STALE');
  });

  it('RENAME: across directories, over an existing file, handles follow the file', async () => {
    const dir = await freshDir('rename');
    const a = expectOk(await nfs.mkdir(dir.fh, 'a'));
    const b = expectOk(await nfs.mkdir(dir.fh, 'b'));
    const aFh = a.fh ?? expectOk(await nfs.lookup(dir.fh, 'a')).fh;
    const bFh = b.fh ?? expectOk(await nfs.lookup(dir.fh, 'b')).fh;
    const fh = await createFile(aFh, 'f', Buffer.from('moving'));
    const fid = (await getattr(fh)).fileid;
    const r = await nfs.rename(aFh, 'f', bFh, 'g');
    expect(st(r)).toBe('NFS3_OK');
    expectWcc(r.fromWcc, 'RENAME from');
    expectWcc(r.toWcc, 'RENAME to');
    expect(fs.existsSync(path.join(dir.host, 'a', 'f'))).toBe(false);
    expect(fs.readFileSync(path.join(dir.host, 'b', 'g'), 'utf8')).toBe('moving');
    // The old handle still names the file; LOOKUP of the new name gives the same fileid.
    expect((await getattr(fh)).fileid).toBe(fid);
    expect(expectOk(await nfs.lookup(bFh, 'g')).attr?.fileid).toBe(fid);
    // Over an existing file: the target is replaced and its handle becomes stale.
    const victim = await createFile(bFh, 'victim', Buffer.from('old'));
    expect(st(await nfs.rename(bFh, 'g', bFh, 'victim'))).toBe('NFS3_OK');
    expect(fs.readFileSync(path.join(dir.host, 'b', 'victim'), 'utf8')).toBe('moving');
    expect(st(await nfs.getattr(victim))).toBe('NFS3ERR_STALE');
    expect(st(await nfs.rename(aFh, 'missing', bFh, 'x'))).toBe('NFS3ERR_NOENT');
    // A directory into its own subdirectory is refused.
    expect(st(await nfs.rename(dir.fh, 'a', aFh, 'inside'))).toBe('NFS3ERR_INVAL');
    // A directory over a non-empty directory is refused.
    await createFile(aFh, 'keep');
    expect(st(await nfs.rename(dir.fh, 'b', dir.fh, 'a'))).toMatch(/NFS3ERR_(NOTEMPTY|EXIST)/);
  });

  it('LINK: second name, nlink 2, same inode on the host', async () => {
    const dir = await freshDir('link');
    const fh = await createFile(dir.fh, 'orig', Buffer.from('shared'));
    const l = await nfs.link(fh, dir.fh, 'alias');
    expect(st(l)).toBe('NFS3_OK');
    expect(l.attr?.nlink).toBe(2);
    expectWcc(l.dirWcc, 'LINK');
    const h1 = fs.statSync(path.join(dir.host, 'orig'));
    const h2 = fs.statSync(path.join(dir.host, 'alias'));
    expect(h2.ino).toBe(h1.ino);
    expect(expectOk(await nfs.lookup(dir.fh, 'alias')).attr?.fileid).toBe((await getattr(fh)).fileid);
    expect(st(await nfs.link(fh, dir.fh, 'alias'))).toBe('NFS3ERR_EXIST');
    // Removing one name leaves the other working with the same handle.
    expect(st(await nfs.remove(dir.fh, 'orig'))).toBe('NFS3_OK');
    expect((await getattr(fh)).nlink).toBe(1);
    expect((await nfs.readAll(fh)).toString()).toBe('shared');
  });

  it('READDIR pages with a small count: no duplicates, none missing, cookies survive creates and deletes', async () => {
    const dir = await freshDir('readdir');
    const N = 200;
    const names = Array.from({ length: N }, (_, i) => `file-with-a-longish-name-${String(i).padStart(4, '0')}`);
    for (const n of names) await createFile(dir.fh, n);
    const deleted = new Set<string>();
    const created = new Set<string>();
    const seen = new Map<string, number>();
    let cookie = 0n;
    let verf: Buffer = ZERO_VERF;
    let pages = 0;
    let eof = false;
    const count = 1024;
    while (!eof && pages < 1000) {
      const r = await nfs.readdir(dir.fh, cookie, verf, count);
      expect(st(r), `READDIR page ${pages} (cookie ${cookie})`).toBe('NFS3_OK');
      expect(nfs.lastResultsLength, 'READDIR reply larger than count').toBeLessThanOrEqual(count);
      const page = r.ok!;
      expect(page.entries.length > 0 || page.eof, 'READDIR page with no entries and no eof').toBe(true);
      for (const e of page.entries) {
        expect(e.cookie).not.toBe(0n);
        seen.set(e.name, (seen.get(e.name) ?? 0) + 1);
      }
      eof = page.eof;
      if (page.entries.length) cookie = page.entries[page.entries.length - 1]!.cookie;
      verf = page.verf;
      pages++;
      if (!eof && pages <= 6) {
        // Mutate between pages: delete the entry the cookie points at and one not seen yet,
        // and create two new names.
        const last = page.entries[page.entries.length - 1]!.name;
        if (last !== '.' && last !== '..' && !deleted.has(last)) {
          expect(st(await nfs.remove(dir.fh, last))).toBe('NFS3_OK');
          deleted.add(last);
        }
        const unseen = names.find((n) => !seen.has(n) && !deleted.has(n));
        if (unseen) {
          expect(st(await nfs.remove(dir.fh, unseen))).toBe('NFS3_OK');
          deleted.add(unseen);
        }
        for (const k of [0, 1]) {
          const n = `new-${pages}-${k}`;
          await createFile(dir.fh, n);
          created.add(n);
        }
      }
    }
    expect(eof).toBe(true);
    expect(pages).toBeGreaterThan(5);
    const dups = [...seen].filter(([, c]) => c > 1).map(([n]) => n);
    expect(dups, 'names listed twice').toEqual([]);
    const missing = names.filter((n) => !deleted.has(n) && !seen.has(n));
    expect(missing, 'names that existed all along but were not listed').toEqual([]);
    const unknown = [...seen.keys()].filter((n) => n !== '.' && n !== '..' && !names.includes(n) && !created.has(n));
    expect(unknown).toEqual([]);
    // A fresh listing matches the host directory exactly.
    const all = (await listAll(dir.fh, 4096)).filter((e) => e.name !== '.' && e.name !== '..');
    expect(all.map((e) => e.name).sort()).toEqual(fs.readdirSync(dir.host).sort());
    // Among files that exist together, fileids are unique (a deleted file's id may be reused).
    expect(new Set(all.map((e) => e.fileid)).size).toBe(all.length);
  });

  it('READDIRPLUS pages with small dircount/maxcount: attributes, working handles, cookies survive changes', async () => {
    const dir = await freshDir('rdplus');
    const N = 120;
    const names = Array.from({ length: N }, (_, i) => `entry-${i}`);
    for (const n of names) await createFile(dir.fh, n, Buffer.from(n));
    const deleted = new Set<string>();
    const seen = new Map<string, number>();
    let cookie = 0n;
    let verf: Buffer = ZERO_VERF;
    let pages = 0;
    let eof = false;
    const maxcount = 2048;
    while (!eof && pages < 1000) {
      const r = await nfs.readdirplus(dir.fh, cookie, verf, 512, maxcount);
      expect(st(r), `READDIRPLUS page ${pages}`).toBe('NFS3_OK');
      expect(nfs.lastResultsLength, 'READDIRPLUS reply larger than maxcount').toBeLessThanOrEqual(maxcount);
      for (const e of r.ok!.entries) {
        seen.set(e.name, (seen.get(e.name) ?? 0) + 1);
        if (e.name === '.' || e.name === '..') continue;
        expect(e.attr, `attributes of ${e.name}`).not.toBeNull();
        expect(e.fh, `handle of ${e.name}`).not.toBeNull();
        expect(e.attr!.fileid).toBe(e.fileid);
        expect(e.attr!.size).toBe(BigInt(e.name.length));
        const a = await getattr(e.fh!);
        expect(a.fileid).toBe(e.fileid);
      }
      eof = r.ok!.eof;
      if (r.ok!.entries.length) cookie = r.ok!.entries[r.ok!.entries.length - 1]!.cookie;
      verf = r.ok!.verf;
      pages++;
      if (!eof && pages <= 3) {
        // Remove the entry the next cookie points at, and add one.
        const last = r.ok!.entries[r.ok!.entries.length - 1]!.name;
        if (names.includes(last)) {
          expect(st(await nfs.remove(dir.fh, last))).toBe('NFS3_OK');
          deleted.add(last);
        }
        await createFile(dir.fh, `later-${pages}`, Buffer.from(`later-${pages}`));
      }
    }
    expect(eof).toBe(true);
    expect(pages).toBeGreaterThan(3);
    expect([...seen].filter(([, c]) => c > 1)).toEqual([]);
    expect(names.filter((n) => !seen.has(n) && !deleted.has(n))).toEqual([]);
  });

  it('READDIR of a file is NFS3ERR_NOTDIR', async () => {
    const dir = await freshDir('rdfile');
    const fh = await createFile(dir.fh, 'f');
    expect(st(await nfs.readdir(fh, 0n, ZERO_VERF, 4096))).toBe('NFS3ERR_NOTDIR');
  });

  it('FSSTAT total bytes equal the zone quota', async () => {
    const r = await nfs.fsstat(root);
    expect(st(r)).toBe('NFS3_OK');
    expect(r.ok!.tbytes).toBe(QUOTA_BYTES);
    expect(r.ok!.fbytes).toBeLessThanOrEqual(r.ok!.tbytes);
    expect(r.ok!.abytes).toBeLessThanOrEqual(r.ok!.fbytes);
    expect(r.ok!.fbytes).toBeGreaterThan(0n);
  });

  it('FSINFO: rtmax = wtmax = 1 MiB and sane preferences', async () => {
    const r = await nfs.fsinfo(root);
    expect(st(r)).toBe('NFS3_OK');
    const f = r.ok!;
    expect(f.rtmax).toBe(1 << 20);
    expect(f.wtmax).toBe(1 << 20);
    expect(f.rtpref).toBeGreaterThan(0);
    expect(f.rtpref).toBeLessThanOrEqual(f.rtmax);
    expect(f.wtpref).toBeGreaterThan(0);
    expect(f.wtpref).toBeLessThanOrEqual(f.wtmax);
    expect(f.dtpref).toBeGreaterThan(0);
    expect(f.maxfilesize).toBeGreaterThan(1n << 32n);
    expect(f.properties & 0x03).toBe(0x03); // FSF3_LINK | FSF3_SYMLINK
    expect(r.attr).not.toBeNull();
  });

  it('PATHCONF', async () => {
    const r = await nfs.pathconf(root);
    expect(st(r)).toBe('NFS3_OK');
    expect(r.ok!.nameMax).toBe(255);
    expect(r.ok!.linkmax).toBeGreaterThan(1);
    expect(r.ok!.caseInsensitive).toBe(false);
    expect(r.ok!.casePreserving).toBe(true);
    expect(r.ok!.noTrunc).toBe(true);
  });
});

async function listAll(dir: Buffer, count: number): Promise<DirEntry3[]> {
  const out: DirEntry3[] = [];
  let cookie = 0n;
  let verf: Buffer = ZERO_VERF;
  for (let i = 0; i < 10_000; i++) {
    const r = expectOk(await nfs.readdir(dir, cookie, verf, count), 'READDIR');
    out.push(...r.entries);
    if (r.eof) return out;
    cookie = r.entries[r.entries.length - 1]!.cookie;
    verf = r.verf;
  }
  throw new Error('READDIR never reached eof');
}

describe('handles and names', () => {
  it('forged handles are NFS3ERR_BADHANDLE', async () => {
    const forged = [
      Buffer.alloc(0),
      Buffer.alloc(8, 0xab),
      Buffer.from(root.map((b) => b ^ 0xff)),
      Buffer.alloc(64, 0x5a),
    ];
    for (const h of forged) {
      expect(st(await nfs.getattr(h)), `GETATTR of forged handle ${h.toString('hex')}`).toBe('NFS3ERR_BADHANDLE');
      expect(st(await nfs.lookup(h, 'x')), `LOOKUP in forged handle ${h.toString('hex')}`).toBe('NFS3ERR_BADHANDLE');
    }
  });

  it("'.', '..', '' and names with '/' are refused for creation; long names are NAMETOOLONG", async () => {
    const dir = await freshDir('names');
    const fh = await createFile(dir.fh, 'src');
    for (const bad of ['..', '.', '', 'a/b', '../escape', 'x\0y']) {
      const what = JSON.stringify(bad);
      expect((await nfs.create(dir.fh, bad, { mode: 'guarded' })).status, `CREATE ${what}`).not.toBe(NFS3_OK);
      expect((await nfs.mkdir(dir.fh, bad)).status, `MKDIR ${what}`).not.toBe(NFS3_OK);
      expect((await nfs.symlink(dir.fh, bad, 'target')).status, `SYMLINK ${what}`).not.toBe(NFS3_OK);
      expect((await nfs.mknod(dir.fh, bad, { type: 'fifo' })).status, `MKNOD ${what}`).not.toBe(NFS3_OK);
      expect((await nfs.link(fh, dir.fh, bad)).status, `LINK ${what}`).not.toBe(NFS3_OK);
      expect((await nfs.rename(dir.fh, 'src', dir.fh, bad)).status, `RENAME to ${what}`).not.toBe(NFS3_OK);
    }
    // Nothing appeared anywhere: the directory holds only 'src', and the zone's parent got nothing.
    expect(fs.readdirSync(dir.host)).toEqual(['src']);
    expect(fs.existsSync(path.join(hostZone, 'escape'))).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(hostZone), 'escape'))).toBe(false);
    const long = 'n'.repeat(256);
    expect(st(await nfs.create(dir.fh, long, { mode: 'guarded' }))).toBe('NFS3ERR_NAMETOOLONG');
    // LOOKUP with a '/' never resolves a path.
    fs.mkdirSync(path.join(dir.host, 'a'));
    fs.writeFileSync(path.join(dir.host, 'a', 'b'), 'nested');
    expect((await nfs.lookup(dir.fh, 'a/b')).status, "LOOKUP 'a/b'").not.toBe(NFS3_OK);
    // '..' at the zone root never leaves the zone.
    const up = await nfs.lookup(root, '..');
    if (up.status === NFS3_OK) {
      expect(expectOk(await nfs.getattr(up.ok!.fh)).fileid).toBe((await getattr(root)).fileid);
    }
    // '..' below the root is the parent.
    const sub = await nfs.lookup(dir.fh, '..');
    if (sub.status === NFS3_OK) expect((await getattr(sub.ok!.fh)).fileid).toBe((await getattr(root)).fileid);
  });

  it('a symlink pointing outside the zone is never followed', async () => {
    const dir = await freshDir('escape');
    fs.symlinkSync('/etc', path.join(dir.host, 'etc-link'));
    const outside = path.join(d.dir, 'outside');
    fs.mkdirSync(outside, { recursive: true });
    const secret = path.join(outside, 'secret.txt');
    fs.writeFileSync(secret, 'outside the zone');
    fs.chmodSync(secret, 0o644);
    fs.symlinkSync(secret, path.join(dir.host, 'file-link'));
    fs.symlinkSync(path.relative(dir.host, outside), path.join(dir.host, 'rel-link'));

    const etc = await nfs.lookup(dir.fh, 'etc-link');
    expect(st(etc)).toBe('NFS3_OK');
    expect(etc.ok!.attr?.type, 'LOOKUP returns the link itself').toBe(FTYPE.LNK);
    const passwd = await nfs.lookup(etc.ok!.fh, 'passwd');
    expect(passwd.status, 'LOOKUP passwd through a symlink to /etc').not.toBe(NFS3_OK);
    expect(expectOk(await nfs.readlink(etc.ok!.fh)).target).toBe('/etc');
    expect((await nfs.readdir(etc.ok!.fh, 0n, ZERO_VERF, 4096)).status).not.toBe(NFS3_OK);
    expect((await nfs.create(etc.ok!.fh, 'planted', { mode: 'guarded' })).status).not.toBe(NFS3_OK);
    expect(fs.existsSync('/etc/planted')).toBe(false);

    const rel = expectOk(await nfs.lookup(dir.fh, 'rel-link'));
    expect((await nfs.lookup(rel.fh, 'secret.txt')).status).not.toBe(NFS3_OK);
    expect((await nfs.create(rel.fh, 'planted', { mode: 'guarded' })).status).not.toBe(NFS3_OK);
    expect(fs.existsSync(path.join(outside, 'planted'))).toBe(false);

    const fl = expectOk(await nfs.lookup(dir.fh, 'file-link'));
    expect(fl.attr?.type).toBe(FTYPE.LNK);
    const rd = await nfs.read(fl.fh, 0, 100);
    if (rd.status === NFS3_OK) expect(rd.ok!.data.toString()).not.toContain('outside the zone');
    expect((await nfs.write(fl.fh, 0, Buffer.from('pwned'), STABLE.FILE_SYNC)).status).not.toBe(NFS3_OK);
    await nfs.setattr(fl.fh, { mode: 0o777, size: 0 });
    const s = fs.statSync(secret);
    expect(s.mode & 0o777).toBe(0o644);
    expect(fs.readFileSync(secret, 'utf8')).toBe('outside the zone');
    // RENAME/LINK through the link do not reach outside either.
    await nfs.rename(dir.fh, 'file-link', rel.fh, 'moved');
    expect(fs.existsSync(path.join(outside, 'moved'))).toBe(false);
    expect(fs.readdirSync(outside)).toEqual(['secret.txt']);
  });
});

describe('zones', () => {
  it('each zone is its own file system: distinct fsid, EXDEV across zones', async () => {
    const { nfs: nfs2, root: root2 } = await mountZone(d.nfsPort, d.mountPort, ZONE2);
    try {
      const a1 = await getattr(root);
      const a2 = expectOk(await nfs2.getattr(root2), 'GETATTR tier-2 root');
      expect(a2.fsid).not.toBe(a1.fsid);
      expect(root2.equals(root)).toBe(false);
      const fh = await createFile(root, `cross-${++seq}`, Buffer.from('zone one'));
      const name = `cross-${seq}`;
      // The same connection serves both zones: handles carry their zone.
      expect(st(await nfs.rename(root, name, root2, name))).toBe('NFS3ERR_XDEV');
      expect(st(await nfs.link(fh, root2, name))).toBe('NFS3ERR_XDEV');
      expect(fs.existsSync(path.join(d.zonePath(ZONE2), name))).toBe(false);
      expect(fs.readFileSync(path.join(hostZone, name), 'utf8')).toBe('zone one');
      expect(st(await nfs.lookup(root2, name))).toBe('NFS3ERR_NOENT');
      fs.writeFileSync(path.join(d.zonePath(ZONE2), 'only-in-two'), '2');
      expect(st(await nfs.lookup(root2, 'only-in-two'))).toBe('NFS3_OK');
      expect(st(await nfs.lookup(root, 'only-in-two'))).toBe('NFS3ERR_NOENT');
    } finally {
      nfs2.close();
    }
  });

  it('a zone whose allow list excludes the client cannot be mounted', async () => {
    const m = await RpcClient.connect(d.mountPort);
    try {
      const res = await mountMnt(m, `/${CLOSED}`);
      expect(res.status, 'MNT of a zone not allowed for 127.0.0.1').toBe(13); // MNT3ERR_ACCES
      expect(res.fh).toBeUndefined();
    } finally {
      m.close();
    }
  });
});

describe('RPC layer', () => {
  // A connection per test, so that a server closing one does not hide the next result.
  let rpc: RpcClient;
  beforeEach(async () => {
    rpc = await RpcClient.connect(d.nfsPort);
  });
  afterEach(() => rpc?.close());

  it('unknown program → PROG_UNAVAIL', async () => {
    const r = await rpc.call(200_999, 1, 0, Buffer.alloc(0));
    expect(r.kind).toBe('prog_unavail');
  });

  it('NFS v2 and v4 → PROG_MISMATCH low = high = 3', async () => {
    for (const v of [2, 4]) {
      const r = await rpc.call(NFS_PROGRAM, v, 0, Buffer.alloc(0));
      expect(r.kind).toBe('prog_mismatch');
      if (r.kind === 'prog_mismatch') expect([r.low, r.high]).toEqual([3, 3]);
    }
  });

  it('unknown procedure → PROC_UNAVAIL', async () => {
    expect((await rpc.call(NFS_PROGRAM, 3, 22, Buffer.alloc(0))).kind).toBe('proc_unavail');
    expect((await rpc.call(NFS_PROGRAM, 3, 999, Buffer.alloc(0))).kind).toBe('proc_unavail');
  });

  it('truncated arguments → GARBAGE_ARGS', async () => {
    // GETATTR: handle length 17, but only 4 bytes follow.
    const truncated = new XdrWriter().u32(17).u32(0x01020304).bytes();
    expect((await rpc.call(NFS_PROGRAM, 3, PROC.GETATTR, truncated)).kind).toBe('garbage_args');
    // READ without its count.
    const read = new XdrWriter().opaque(root).u64(0).bytes();
    expect((await rpc.call(NFS_PROGRAM, 3, PROC.READ, read)).kind).toBe('garbage_args');
    // A handle longer than NFS3_FHSIZE (64).
    const huge = new XdrWriter().opaque(Buffer.alloc(65, 1)).bytes();
    expect((await rpc.call(NFS_PROGRAM, 3, PROC.GETATTR, huge)).kind).toBe('garbage_args');
    // Empty args to LOOKUP.
    expect((await rpc.call(NFS_PROGRAM, 3, PROC.LOOKUP, Buffer.alloc(0))).kind).toBe('garbage_args');
    // The connection still works.
    expect((await rpc.call(NFS_PROGRAM, 3, PROC.NULL, Buffer.alloc(0))).kind).toBe('success');
  });

  it('rpcvers 3 → MSG_DENIED RPC_MISMATCH (2..2)', async () => {
    const xid = rpc.allocXid();
    const msg = encodeCall(xid, NFS_PROGRAM, 3, 0, Buffer.alloc(0));
    msg.writeUInt32BE(3, 8);
    const r = await rpc.sendRecord(xid, msg);
    expect(r.kind).toBe('rpc_mismatch');
    if (r.kind === 'rpc_mismatch') expect([r.low, r.high]).toEqual([2, 2]);
  });

  it('malformed AUTH_SYS body → MSG_DENIED AUTH_ERROR (AUTH_BADCRED)', async () => {
    const xid = rpc.allocXid();
    const w = new XdrWriter();
    w.u32(xid).u32(0).u32(2).u32(NFS_PROGRAM).u32(3).u32(PROC.GETATTR);
    // AUTH_SYS whose machinename claims 0xffffffff bytes.
    w.u32(1).opaque(new XdrWriter().u32(0).u32(0xffffffff).bytes());
    w.u32(0).u32(0);
    w.opaque(root);
    const r = await rpc.sendRecord(xid, w.bytes());
    expect(r.kind).toBe('auth_error');
    if (r.kind === 'auth_error') expect(r.stat).toBe(1);
  });

  it('many calls in flight on one connection are answered with matching xids', async () => {
    const dir = await freshDir('inflight');
    const names = Array.from({ length: 40 }, (_, i) => `f${i}`);
    const expected = new Map<string, bigint>();
    for (const n of names) expected.set(n, (await getattr(await createFile(dir.fh, n))).fileid);
    const c = await Nfs3Client.connect(d.nfsPort);
    try {
      const jobs: Promise<void>[] = [];
      for (let round = 0; round < 10; round++) {
        for (const n of names) {
          jobs.push(c.lookup(dir.fh, n).then((r) => {
            expect(st(r)).toBe('NFS3_OK');
            expect(r.ok!.attr?.fileid, `LOOKUP ${n} answered with another call's result`).toBe(expected.get(n));
          }));
        }
        jobs.push(c.read(root, 0, 1).then((r) => expect(st(r)).toBe('NFS3ERR_ISDIR')));
      }
      await Promise.all(jobs);
      expect(c.rpc.unmatched).toEqual([]);
    } finally {
      c.close();
    }
  });

  it('a 2 GiB record mark closes the connection; the server still serves new ones', async () => {
    const victim = await RpcClient.connect(d.nfsPort);
    victim.writeRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]));
    const closed = await Promise.race([
      victim.closed.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
    ]);
    victim.close();
    expect(closed, 'server kept the connection open after a 2 GiB record mark').toBe(true);
    const fresh = await RpcClient.connect(d.nfsPort);
    try {
      const r = await fresh.call(NFS_PROGRAM, 3, PROC.GETATTR, new XdrWriter().opaque(root).bytes());
      const res = successResults(r);
      expect(res.u32()).toBe(NFS3_OK);
    } finally {
      fresh.close();
    }
  });
});

let writeVerfBeforeRestart: Buffer | null = null;

describe('after a daemon restart', () => {
  it('the write verifier changes', async () => {
    expect(writeVerfBeforeRestart, 'the UNSTABLE test ran first').not.toBeNull();
    nfs.close();
    await d.restart();
    ({ nfs, root } = await mountZone(d.nfsPort, d.mountPort, ZONE));
    const dir = await freshDir('verf');
    const fh = await createFile(dir.fh, 'f');
    const w = expectOk(await nfs.write(fh, 0, Buffer.from('after restart'), STABLE.UNSTABLE), 'WRITE');
    expect(w.verf.equals(writeVerfBeforeRestart!), 'write verifier unchanged across a restart').toBe(false);
    const c = expectOk(await nfs.commit(fh), 'COMMIT');
    expect(c.verf.equals(w.verf)).toBe(true);
  });
});
