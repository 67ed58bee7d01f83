/**
 * The change journal behind a real daemon: every mutation made through NFS (our own client) is
 * journaled with its kind and path, versions are visible in the control socket's status and keep
 * growing across a restart, and changes made directly in the zone directory (while running, and
 * while the daemon is down) are journaled too.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './harness/wait.js';
import { controlRequest } from '../src/control/client.js';
import { hashBuffer } from '../src/journal/hasher.js';
import { startTestDaemon, type TestDaemon } from './harness/daemon.js';
import { expectOk, mountZone, type Nfs3Client, STABLE } from './harness/nfs3-client.js';

const ZONE = 'jz';
let d: TestDaemon;

beforeAll(async () => {
  d = await startTestDaemon({ zones: [ZONE] });
}, 200_000);

afterAll(async () => {
  await d?.stop();
});

interface Row {
  version: number;
  kind: string;
  path: string;
  to_path: string | null;
  hashes: Buffer | null;
  origin: string;
}

/** Journal rows after `since`, read with a separate read-only connection (WAL allows it). */
function rows(since = 0): Row[] {
  const db = new Database(path.join(d.stateDir, 'gv.sqlite'), { readonly: true });
  try {
    return (db.prepare(
      `SELECT version, kind, CAST(path AS TEXT) AS path, CAST(to_path AS TEXT) AS to_path, hashes, origin
       FROM zone_changes WHERE zone = ? AND version > ? ORDER BY version`,
    ).all(ZONE, since) as Row[]);
  } finally {
    db.close();
  }
}

async function statusVersion(): Promise<number> {
  const r = await controlRequest(path.join(d.stateDir, 'gvd.sock'), 'status', 5000);
  if (!r.running) throw new Error(r.reason);
  const z = (r.result as { zones: { name: string; version: string | null }[] }).zones.find((x) => x.name === ZONE)!;
  return Number(z.version);
}


const summary = (rs: Row[]) => rs.map((r) => `${r.kind} ${r.path}${r.to_path ? ` -> ${r.to_path}` : ''}`);

async function fhOf(nfs: Nfs3Client, dir: Buffer, name: string): Promise<Buffer> {
  return expectOk(await nfs.lookup(dir, name), `LOOKUP ${name}`).fh;
}

describe('journal through NFS', () => {
  it('journals every kind of mutation with its kind and path; status reports the version', async () => {
    const v0 = await statusVersion();
    const { nfs, root } = await mountZone(d.nfsPort, d.mountPort, ZONE);
    try {
      const dir = expectOk(await nfs.mkdir(root, 'd'), 'MKDIR').fh!;
      const f = expectOk(await nfs.create(dir, 'f', { mode: 'guarded', attrs: { mode: 0o644 } }), 'CREATE').fh!;
      const data = Buffer.alloc(300_000);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
      for (let off = 0; off < data.length; off += 32768) {
        expectOk(await nfs.write(f, off, data.subarray(off, off + 32768), STABLE.UNSTABLE), 'WRITE');
      }
      expectOk(await nfs.commit(f), 'COMMIT');
      // The create and its ten WRITEs are one entry, with the content's block hashes.
      const created = await waitFor('create row', () => rows(v0).find((r) => r.kind === 'create'));
      expect(created.path).toBe('d/f');
      expect(created.hashes!.equals(hashBuffer(data))).toBe(true);
      expect(rows(v0).length).toBe(2);

      expectOk(await nfs.write(f, 10, Buffer.from('xyz'), STABLE.FILE_SYNC), 'WRITE file_sync');
      await waitFor('write row', () => rows(v0).some((r) => r.kind === 'write'));
      expectOk(await nfs.setattr(f, { size: 1000 }), 'SETATTR size');
      await waitFor('truncate row', () => rows(v0).some((r) => r.kind === 'truncate'));
      expectOk(await nfs.setattr(f, { mode: 0o600 }), 'SETATTR mode');
      expectOk(await nfs.symlink(dir, 'ln', 'f'), 'SYMLINK');
      expectOk(await nfs.mknod(dir, 'fifo', { type: 'fifo', attrs: { mode: 0o644 } }), 'MKNOD');
      expectOk(await nfs.link(f, root, 'hard'), 'LINK');
      expectOk(await nfs.rename(dir, 'f', root, 'moved'), 'RENAME');
      expectOk(await nfs.remove(root, 'hard'), 'REMOVE link');
      expectOk(await nfs.remove(dir, 'ln'), 'REMOVE symlink');
      expectOk(await nfs.remove(dir, 'fifo'), 'REMOVE fifo');
      expectOk(await nfs.rmdir(root, 'd'), 'RMDIR');
      const want = [
        'mkdir d', 'create d/f', 'write d/f', 'truncate d/f', 'setattr d/f', 'symlink d/ln', 'mknod d/fifo', 'link hard',
        'rename d/f -> moved', 'remove hard', 'remove d/ln', 'remove d/fifo', 'rmdir d',
      ];
      const all = await waitFor('all rows', () => rows(v0).length >= want.length && rows(v0));
      expect(summary(all)).toEqual(want);
      all.forEach((r, i) => expect(r.version).toBe(v0 + 1 + i));
      expect(new Set(all.map((r) => r.origin)).size).toBe(1);
      expect(all[0]!.origin).toMatch(/^[0-9a-f]{32}$/);
      await waitFor('status version', async () => (await statusVersion()) === v0 + want.length);
      // Nothing more trickles in (e.g. from the watcher seeing the daemon's own changes).
      await new Promise((r) => setTimeout(r, 700));
      expect(rows(v0).length).toBe(want.length);
    } finally {
      nfs.close();
    }
  }, 60_000);

  it('journals changes made directly in the zone directory, while running and while down', async () => {
    const zoneDir = d.zonePath(ZONE);
    let v = await statusVersion();
    fs.writeFileSync(path.join(zoneDir, 'direct.txt'), 'written behind the daemon');
    await waitFor('watcher create', () => rows(v).some((r) => r.kind === 'create' && r.path === 'direct.txt'));
    fs.renameSync(path.join(zoneDir, 'direct.txt'), path.join(zoneDir, 'direct2.txt'));
    await waitFor('watcher rename', () => rows(v).some((r) => r.kind === 'rename' && r.to_path === 'direct2.txt'));
    fs.unlinkSync(path.join(zoneDir, 'direct2.txt'));
    await waitFor('watcher remove', () => rows(v).some((r) => r.kind === 'remove' && r.path === 'direct2.txt'));

    v = await statusVersion();
    const zoneDirBefore = zoneDir;
    // Versions survive a restart, and changes made while the daemon was down are found at start.
    const { nfs, root } = await mountZone(d.nfsPort, d.mountPort, ZONE);
    try {
      const f = expectOk(await nfs.create(root, 'kept', { mode: 'guarded', attrs: { mode: 0o644 } }), 'CREATE').fh!;
      expectOk(await nfs.write(f, 0, Buffer.from('kept'), STABLE.FILE_SYNC), 'WRITE');
      await fhOf(nfs, root, 'kept');
    } finally {
      nfs.close();
    }
    await waitFor('kept journaled', () => rows(v).some((r) => r.path === 'kept'));
    const before = rows(0).at(-1)!.version;
    await d.kill9();
    fs.writeFileSync(path.join(zoneDirBefore, 'offline.txt'), 'made while down');
    fs.appendFileSync(path.join(zoneDirBefore, 'kept'), ' and more');
    await d.restart();
    const after = await waitFor('offline changes', () => {
      const rs = rows(before);
      return rs.length >= 2 && rs;
    });
    expect(summary(after).sort()).toEqual(['create offline.txt', 'write kept']);
    expect(after.map((r) => r.version)).toEqual([before + 1, before + 2]);
    await waitFor('status after restart', async () => (await statusVersion()) === before + 2);
  }, 60_000);
});
