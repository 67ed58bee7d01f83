/**
 * File handles survive a daemon restart (they are persisted, not derived from process state), and
 * a handle of a file removed while the daemon was down, or after, answers NFS3ERR_STALE.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from './harness/daemon.js';
import { expectOk, FTYPE, mountZone, Nfs3Client, STABLE, statName } from './harness/nfs3-client.js';

const ZONE = 'tier-1';
const ZERO_VERF: Buffer = Buffer.alloc(8);

let d: TestDaemon;

beforeAll(async () => {
  d = await startTestDaemon({ zones: [ZONE] });
});

afterAll(async () => {
  await d?.stop();
});

async function connect(): Promise<{ nfs: Nfs3Client; root: Buffer }> {
  return mountZone(d.nfsPort, d.mountPort, ZONE);
}

async function names(nfs: Nfs3Client, dir: Buffer): Promise<string[]> {
  const out: string[] = [];
  let cookie = 0n;
  let verf: Buffer = ZERO_VERF;
  for (let i = 0; i < 1000; i++) {
    const r = expectOk(await nfs.readdir(dir, cookie, verf, 8192), 'READDIR');
    out.push(...r.entries.map((e) => e.name).filter((n) => n !== '.' && n !== '..'));
    if (r.eof) return out.sort();
    cookie = r.entries[r.entries.length - 1]!.cookie;
    verf = r.verf;
  }
  throw new Error('READDIR never reached eof');
}

describe('handles across restarts', () => {
  it('handles of a file and a directory keep working after restart and after kill -9', async () => {
    const content = Buffer.from('persistent handles\n'.repeat(100));
    let { nfs, root } = await connect();
    const dirFh = expectOk(await nfs.mkdir(root, 'dir', { mode: 0o755 }), 'MKDIR').fh ?? expectOk(await nfs.lookup(root, 'dir')).fh;
    const c = expectOk(await nfs.create(dirFh, 'file', { mode: 'guarded', attrs: { mode: 0o644 } }), 'CREATE');
    const created = c.fh ?? expectOk(await nfs.lookup(dirFh, 'file')).fh;
    expect(expectOk(await nfs.write(created, 0, content, STABLE.FILE_SYNC), 'WRITE').count).toBe(content.length);
    expectOk(await nfs.create(dirFh, 'other', { mode: 'guarded' }), 'CREATE');
    // Handles obtained by LOOKUP, as a client that mounted earlier holds them.
    const fileFh = expectOk(await nfs.lookup(dirFh, 'file'), 'LOOKUP file').fh;
    const dirFh2 = expectOk(await nfs.lookup(root, 'dir'), 'LOOKUP dir').fh;
    const fileId = expectOk(await nfs.getattr(fileFh)).fileid;
    const dirId = expectOk(await nfs.getattr(dirFh2)).fileid;
    nfs.close();

    for (const how of ['restart', 'kill -9'] as const) {
      if (how === 'restart') await d.restart();
      else {
        await d.kill9();
        await d.restart();
      }
      ({ nfs, root } = await connect());
      try {
        const fa = await nfs.getattr(fileFh);
        expect(statName(fa.status), `GETATTR of the file handle after ${how}`).toBe('NFS3_OK');
        expect(fa.ok!.fileid).toBe(fileId);
        expect(fa.ok!.type).toBe(FTYPE.REG);
        expect(fa.ok!.size).toBe(BigInt(content.length));
        const da = await nfs.getattr(dirFh2);
        expect(statName(da.status), `GETATTR of the directory handle after ${how}`).toBe('NFS3_OK');
        expect(da.ok!.fileid).toBe(dirId);
        expect(da.ok!.type).toBe(FTYPE.DIR);
        const r = await nfs.read(fileFh, 0, 1 << 20);
        expect(statName(r.status), `READ after ${how}`).toBe('NFS3_OK');
        expect(r.ok!.data.equals(content)).toBe(true);
        expect(await names(nfs, dirFh2)).toEqual(['file', 'other']);
        // The root handle is stable too, and LOOKUP gives back the same file.
        expect(expectOk(await nfs.lookup(root, 'dir')).attr?.fileid).toBe(dirId);
        expect(expectOk(await nfs.lookup(dirFh2, 'file')).attr?.fileid).toBe(fileId);
      } finally {
        nfs.close();
      }
    }

    // Remove the file through NFS: its handle is stale, the directory's still fine.
    ({ nfs, root } = await connect());
    try {
      expect(statName((await nfs.remove(dirFh2, 'file')).status)).toBe('NFS3_OK');
      expect(statName((await nfs.getattr(fileFh)).status)).toBe('NFS3ERR_STALE');
    } finally {
      nfs.close();
    }
    // ...and stays stale after a restart.
    await d.restart();
    ({ nfs, root } = await connect());
    try {
      expect(statName((await nfs.getattr(fileFh)).status), 'removed file after restart').toBe('NFS3ERR_STALE');
      expect(statName((await nfs.read(fileFh, 0, 10)).status)).toBe('NFS3ERR_STALE');
      expect(await names(nfs, dirFh2)).toEqual(['other']);
    } finally {
      nfs.close();
    }
  });

  it('a file removed on the host while the daemon is down has a stale handle afterwards', async () => {
    let { nfs, root } = await connect();
    const fh = expectOk(await nfs.create(root, 'doomed', { mode: 'guarded' }), 'CREATE').fh ?? expectOk(await nfs.lookup(root, 'doomed')).fh;
    const keep = expectOk(await nfs.create(root, 'kept', { mode: 'guarded' }), 'CREATE').fh ?? expectOk(await nfs.lookup(root, 'kept')).fh;
    nfs.close();
    await d.kill9();
    fs.unlinkSync(path.join(d.zonePath(ZONE), 'doomed'));
    // A new file takes the name: the old handle must not reach it.
    fs.writeFileSync(path.join(d.zonePath(ZONE), 'doomed'), 'a different file');
    await d.restart();
    ({ nfs, root } = await connect());
    try {
      expect(statName((await nfs.getattr(fh)).status)).toBe('NFS3ERR_STALE');
      expect(statName((await nfs.getattr(keep)).status)).toBe('NFS3_OK');
      const fresh = expectOk(await nfs.lookup(root, 'doomed'), 'LOOKUP').fh;
      expect((await nfs.readAll(fresh)).toString()).toBe('a different file');
    } finally {
      nfs.close();
    }
  });
});
