/**
 * The staging directory `.grapevine` at the root of a zone belongs to the daemon (replication's
 * temporary files): through NFS it cannot be looked up, listed, created, renamed, removed or
 * reached by a handle, and neither the watcher nor the start-up scan journals anything in it.
 * Checked against a real daemon with our NFSv3 client and the libnfs tools.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../src/control/client.js';
import { decodeHandle, encodeHandle } from '../src/nfs/handle.js';
import { startTestDaemon, type TestDaemon } from './harness/daemon.js';
import {
  expectOk, mountZone, NFS3_OK, NFS3ERR, type Nfs3Client, STABLE, statName,
} from './harness/nfs3-client.js';
import { waitFor } from './harness/wait.js';

const ZONE = 'sz';
const STAGING = '.grapevine';
let d: TestDaemon;
let nfs: Nfs3Client;
let root: Buffer;

const zoneDir = (...p: string[]) => path.join(d.zonePath(ZONE), ...p);

/** Files a replication transfer might leave in the staging area, made behind the daemon's back. */
function stage(tag: string): void {
  fs.mkdirSync(zoneDir(STAGING, 'tmp', tag), { recursive: true, mode: 0o700 });
  fs.writeFileSync(zoneDir(STAGING, 'tmp', `${tag}.part`), Buffer.alloc(70_000, 9));
  fs.writeFileSync(zoneDir(STAGING, 'tmp', tag, 'inner'), 'x');
  fs.symlinkSync('tmp', zoneDir(STAGING, `${tag}-link`));
}

interface Counts {
  rows: number;
  stagingRows: number;
  stagingIndex: number;
  stagingNodes: number;
}

function counts(): Counts {
  const db = new Database(path.join(d.stateDir, 'gv.sqlite'), { readonly: true });
  try {
    const one = (sql: string, ...args: unknown[]) => (db.prepare(sql).get(...args) as { n: number }).n;
    const like = `${STAGING}%`;
    return {
      rows: one('SELECT count(*) AS n FROM zone_changes WHERE zone = ?', ZONE),
      stagingRows: one(
        'SELECT count(*) AS n FROM zone_changes WHERE zone = ? AND (CAST(path AS TEXT) LIKE ? OR CAST(to_path AS TEXT) LIKE ?)',
        ZONE, like, like,
      ),
      stagingIndex: one('SELECT count(*) AS n FROM file_index WHERE CAST(path AS TEXT) LIKE ?', like),
      stagingNodes: one('SELECT count(*) AS n FROM nodes WHERE CAST(name AS TEXT) = ? AND parent = ?', STAGING, fs.lstatSync(zoneDir()).ino),
    };
  } finally {
    db.close();
  }
}

function rowsAt(rel: string): number {
  const db = new Database(path.join(d.stateDir, 'gv.sqlite'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM zone_changes WHERE zone = ? AND CAST(path AS TEXT) = ?').get(ZONE, rel) as { n: number }).n;
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

/** Make a visible out-of-band change and wait until it is journaled: later than anything staged before it. */
async function sentinel(name: string): Promise<void> {
  fs.writeFileSync(zoneDir(name), name);
  await waitFor(`journal row for ${name}`, () => rowsAt(name) > 0, 15_000);
}

async function connect(): Promise<void> {
  const m = await mountZone(d.nfsPort, d.mountPort, ZONE);
  nfs = m.nfs;
  root = m.root;
}

/** Every name READDIR (or READDIRPLUS) returns for the root, paging with a small reply size. */
async function listRoot(plus: boolean): Promise<{ names: string[]; pages: number; emptyPages: number }> {
  const names: string[] = [];
  let cookie = 0n;
  let verf: Buffer = Buffer.alloc(8);
  let pages = 0;
  let emptyPages = 0;
  for (let i = 0; i < 500; i++) {
    const r = plus ? await nfs.readdirplus(root, cookie, verf, 120, 600) : await nfs.readdir(root, cookie, verf, 160);
    const ok = expectOk(r, plus ? 'READDIRPLUS' : 'READDIR');
    pages++;
    if (ok.entries.length === 0 && !ok.eof) emptyPages++;
    for (const e of ok.entries) {
      names.push(e.name);
      cookie = e.cookie;
      if (plus && e.name !== '..') expect('fh' in e && e.fh !== null, `handle of ${e.name}`).toBe(true);
    }
    verf = ok.verf;
    if (ok.eof) return { names, pages, emptyPages };
  }
  throw new Error('listing did not end within 500 pages');
}

beforeAll(async () => {
  d = await startTestDaemon({ zones: [ZONE] });
  // A few visible entries whose names sort (by cookie) around the staging directory's.
  for (const n of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) fs.writeFileSync(zoneDir(n), n);
  fs.mkdirSync(zoneDir('sub'));
  await sentinel('s0');
  await connect();
}, 200_000);

afterAll(async () => {
  nfs?.close();
  await d?.stop();
});

describe('staging directory .grapevine', () => {
  it('out-of-band files in it are never journaled while running, nor by the start-up scan', async () => {
    nfs.close();
    const v0 = await statusVersion();
    const c0 = counts();
    stage('live');
    fs.appendFileSync(zoneDir(STAGING, 'tmp', 'live.part'), 'more');
    fs.renameSync(zoneDir(STAGING, 'tmp', 'live', 'inner'), zoneDir(STAGING, 'tmp', 'inner-moved'));
    await sentinel('s1');
    const c1 = counts();
    expect(c1.rows).toBe(c0.rows + 1); // the sentinel's row only
    expect(c1.stagingRows).toBe(0);
    expect(c1.stagingIndex).toBe(0);
    expect(await statusVersion()).toBe(v0 + 1);

    // While stopped: more staged files, and a file renamed out of the staging area into place
    // (what the replication engine does; journaling that is the engine's job, the scan sees it as new).
    await d.kill9();
    stage('offline');
    fs.writeFileSync(zoneDir(STAGING, 'tmp', 'done'), 'complete');
    fs.renameSync(zoneDir(STAGING, 'tmp', 'done'), zoneDir('landed'));
    await d.restart();
    await sentinel('s2');
    const c2 = counts();
    expect(c2.stagingRows).toBe(0);
    expect(c2.stagingIndex).toBe(0);
    const v2 = await statusVersion();
    expect(v2).toBe(v0 + 3); // landed (found by the scan) + s2
    await connect();
  }, 60_000);

  it('LOOKUP of it at the root is NOENT; MOUNT of a path through it fails', async () => {
    const r = await nfs.lookup(root, STAGING);
    expect(statName(r.status)).toBe('NFS3ERR_NOENT');
    const dot = expectOk(await nfs.lookup(root, '.'), 'LOOKUP .');
    expect(dot.fh.equals(root)).toBe(true);
    await expect(mountZone(d.nfsPort, d.mountPort, `${ZONE}/${STAGING}/tmp`)).rejects.toThrow();
  });

  it('READDIR and READDIRPLUS never list it; small pages stay consistent', async () => {
    const expected = ['.', '..', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'landed', 's0', 's1', 's2', 'sub'];
    for (const plus of [false, true]) {
      const l = await listRoot(plus);
      expect([...l.names].sort()).toEqual([...expected].sort());
      expect(new Set(l.names).size).toBe(l.names.length); // no duplicates across pages
      expect(l.pages).toBeGreaterThan(2);
      expect(l.emptyPages).toBe(0);
    }
    // One big page: the count is exact too.
    const one = expectOk(await nfs.readdir(root, 0n, Buffer.alloc(8), 65536), 'READDIR');
    expect(one.eof).toBe(true);
    expect(one.entries.map((e) => e.name).sort()).toEqual([...expected].sort());
  });

  it('creating, renaming, linking or removing that name at the root is ACCES; nothing in it changes', async () => {
    const before = fs.readdirSync(zoneDir(STAGING, 'tmp')).sort();
    const file = expectOk(await nfs.lookup(root, 'a'), 'LOOKUP a').fh;
    const sub = expectOk(await nfs.lookup(root, 'sub'), 'LOOKUP sub').fh;
    const results: Record<string, number> = {
      create: (await nfs.create(root, STAGING, { mode: 'unchecked', attrs: { mode: 0o644 } })).status,
      createExclusive: (await nfs.create(root, STAGING, { mode: 'exclusive', verf: Buffer.alloc(8, 1) })).status,
      mkdir: (await nfs.mkdir(root, STAGING)).status,
      symlink: (await nfs.symlink(root, STAGING, 'a')).status,
      mknod: (await nfs.mknod(root, STAGING, { type: 'fifo', attrs: { mode: 0o644 } })).status,
      link: (await nfs.link(file, root, STAGING)).status,
      renameFrom: (await nfs.rename(root, STAGING, sub, 'stolen')).status,
      renameTo: (await nfs.rename(root, 'b', root, STAGING)).status,
      renameDirTo: (await nfs.rename(root, 'sub', root, STAGING)).status,
      remove: (await nfs.remove(root, STAGING)).status,
      rmdir: (await nfs.rmdir(root, STAGING)).status,
    };
    for (const [op, status] of Object.entries(results)) expect(statName(status), op).toBe('NFS3ERR_ACCES');
    expect(fs.lstatSync(zoneDir(STAGING)).isDirectory()).toBe(true);
    expect(fs.readdirSync(zoneDir(STAGING, 'tmp')).sort()).toEqual(before);
    expect(fs.readFileSync(zoneDir('b'), 'utf8')).toBe('b');
    expect(fs.existsSync(zoneDir('sub'))).toBe(true);
    expect(fs.existsSync(zoneDir('sub', 'stolen'))).toBe(false);
  });

  it('the name is only reserved at the root: sub/.grapevine is an ordinary directory', async () => {
    const sub = expectOk(await nfs.lookup(root, 'sub'), 'LOOKUP sub').fh;
    const made = expectOk(await nfs.mkdir(sub, STAGING), 'MKDIR sub/.grapevine');
    const f = expectOk(await nfs.create(made.fh!, 'x', { mode: 'guarded', attrs: { mode: 0o644 } }), 'CREATE');
    expectOk(await nfs.write(f.fh!, 0, Buffer.from('hello'), STABLE.FILE_SYNC), 'WRITE');
    expect(fs.readFileSync(zoneDir('sub', STAGING, 'x'), 'utf8')).toBe('hello');
    const names = expectOk(await nfs.readdir(sub, 0n, Buffer.alloc(8), 65536), 'READDIR sub').entries.map((e) => e.name);
    expect(names).toContain(STAGING);
    await waitFor('journal row for sub/.grapevine/x', () => rowsAt('sub/.grapevine/x') > 0, 15_000);
  });

  it('no handle reaches it: forged handles of the directory and of files in it are STALE', async () => {
    const h = decodeHandle(root)!;
    expect(h).not.toBeNull();
    const inos = [
      fs.lstatSync(zoneDir(STAGING)).ino, fs.lstatSync(zoneDir(STAGING, 'tmp')).ino, fs.lstatSync(zoneDir(STAGING, 'tmp', 'live.part')).ino,
    ];
    for (const ino of inos) {
      for (const gen of [0, 1, 2, 3, h.generation, h.generation + 1]) {
        const forged = encodeHandle(h.zoneId, BigInt(ino), gen);
        const g = await nfs.getattr(forged);
        expect([NFS3ERR.STALE, NFS3ERR.BADHANDLE], `GETATTR of forged handle ino ${ino} gen ${gen}`).toContain(g.status);
        const rd = await nfs.read(forged, 0, 10);
        expect(rd.status).not.toBe(NFS3_OK);
        const w = await nfs.write(forged, 0, Buffer.from('evil'), STABLE.FILE_SYNC);
        expect(w.status).not.toBe(NFS3_OK);
      }
    }
    expect(fs.readFileSync(zoneDir(STAGING, 'tmp', 'live.part')).subarray(0, 4).equals(Buffer.alloc(4, 9))).toBe(true);
    expect(counts().stagingNodes).toBe(0);
  });

  it('libnfs: nfs-ls (and -R) never show it, and nfs-ls of it fails', () => {
    if (!fs.existsSync('/usr/bin/nfs-ls')) {
      console.warn('skipping nfs-ls checks: libnfs-utils not installed');
      return;
    }
    const ls = spawnSync('nfs-ls', [d.url(ZONE)], { timeout: 60_000, encoding: 'utf8' });
    expect(ls.status, ls.stderr).toBe(0);
    const names = ls.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/).slice(5).join(' '));
    expect(names).toContain('landed');
    expect(names).not.toContain(STAGING);
    const rec = spawnSync('nfs-ls', ['-R', d.url(ZONE)], { timeout: 60_000, encoding: 'utf8' });
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout).toContain('sub/.grapevine/x');
    expect(rec.stdout.split('\n').some((l) => /\s\/?\.grapevine(\/|$)/.test(l))).toBe(false);
    expect(rec.stdout).not.toContain('live.part');
    const inside = spawnSync('nfs-ls', [d.url(ZONE, `${STAGING}/tmp`)], { timeout: 60_000, encoding: 'utf8' });
    expect(inside.status).not.toBe(0);
    expect(inside.stdout).not.toContain('live.part');
  });
});
