/**
 * Pull before write (src/vfs/gated.ts): NFS mutations of a path with a pull pending wait for it, or
 * answer NFS3ERR_JUKEBOX when the wait runs out; other paths, reads, 'available' zones and the
 * daemon's own calls never wait. An in-process NFS server over a journaled LocalZoneFs, driven
 * with our NFSv3 client; the PullGate is a scripted one whose pulls the test releases.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GvDatabase } from '../src/journal/db.js';
import { JournalService, type AttachedZone } from '../src/journal/service.js';
import { NO_SQUASH } from '../src/nfs/context.js';
import { encodeHandle } from '../src/nfs/handle.js';
import { createNfsProgram } from '../src/nfs/program.js';
import type { Consistency, PullGate } from '../src/replication/source.js';
import { RpcServer } from '../src/rpc/server.js';
import { gated } from '../src/vfs/gated.js';
import { LocalZoneFs } from '../src/vfs/local.js';
import type { CallContext, ZoneFs } from '../src/vfs/types.js';
import { expectOk, NFS3ERR, Nfs3Client, STABLE, statName } from './harness/nfs3-client.js';
import { waitFor } from './harness/wait.js';

const NODE = '0123456789abcdef0123456789abcdef';

/** A PullGate whose pending paths the test adds and releases. */
class ScriptedGate implements PullGate {
  readonly asked: string[] = [];
  private readonly pending = new Map<string, { promise: Promise<void>; release: () => void }>();

  hold(zone: string, rel: string): void {
    let release: () => void = () => undefined;
    const promise = new Promise<void>((r) => {
      release = r;
    });
    this.pending.set(`${zone}\0${rel}`, { promise, release });
  }

  release(zone: string, rel: string): void {
    const p = this.pending.get(`${zone}\0${rel}`);
    this.pending.delete(`${zone}\0${rel}`);
    p?.release();
  }

  idle(zone: string): boolean {
    for (const k of this.pending.keys()) if (k.startsWith(`${zone}\0`)) return false;
    return true;
  }

  wait(zone: string, rel: Buffer, maxWaitMs: number): Promise<boolean> | null {
    const key = `${zone}\0${rel.toString()}`;
    this.asked.push(rel.toString());
    const p = this.pending.get(key);
    if (!p) return null;
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), maxWaitMs);
      void p.promise.then(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  waiting(rel: string): number {
    return this.asked.filter((a) => a === rel).length;
  }
}

let tmp: string;
let zoneDir: string;
let db: GvDatabase;
let att: AttachedZone;
let gate: ScriptedGate;
let consistency: Consistency;
let srv: RpcServer;
let nfs: Nfs3Client;
let root: Buffer;
let zone: ZoneFs;

async function setup(maxWaitMs: number): Promise<void> {
  db = GvDatabase.open(path.join(tmp, 'state'));
  const local = await LocalZoneFs.open({ name: 'gz', zoneId: 3, root: zoneDir, db, usageScan: false });
  const svc = new JournalService(db, { nodeId: NODE, watch: false, settleMs: 50 });
  att = await svc.attach(local, zoneDir);
  await att.scanned;
  zone = gated(att.fs, { gate, pathOf: (id) => att.journal.pathOf(id), maxWaitMs, consistency: () => consistency });
  srv = new RpcServer();
  srv.register(createNfsProgram({ zones: { byId: (id) => (id === 3 ? zone : undefined), list: () => [zone] }, squash: NO_SQUASH }));
  const port = await srv.listen(0, '127.0.0.1');
  nfs = await Nfs3Client.connect(port, { uid: 0, gid: 0 });
  root = encodeHandle(3, zone.rootId, await zone.generation(zone.rootId));
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-gated-'));
  zoneDir = path.join(tmp, 'zone');
  fs.mkdirSync(zoneDir);
  fs.mkdirSync(path.join(zoneDir, 'd'));
  fs.writeFileSync(path.join(zoneDir, 'd', 'f'), 'old content');
  fs.writeFileSync(path.join(zoneDir, 'other'), 'other');
  gate = new ScriptedGate();
  consistency = 'pull-first';
});

afterEach(async () => {
  nfs?.close();
  await srv?.close(1000);
  await att?.fs.close().catch(() => undefined);
  db?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const onDisk = (rel: string): string | null => {
  try {
    return fs.readFileSync(path.join(zoneDir, rel), 'utf8');
  } catch {
    return null;
  }
};

async function handles(): Promise<{ d: Buffer; f: Buffer; other: Buffer }> {
  const d = expectOk(await nfs.lookup(root, 'd'), 'LOOKUP d').fh;
  const f = expectOk(await nfs.lookup(d, 'f'), 'LOOKUP d/f').fh;
  const other = expectOk(await nfs.lookup(root, 'other'), 'LOOKUP other').fh;
  return { d, f, other };
}

/** Start `call`, wait until the gate was asked about `rel`, and check the reply has not come. */
async function parked<T>(rel: string, call: () => Promise<T>): Promise<{ reply: Promise<T>; answered: () => boolean }> {
  const before = gate.waiting(rel);
  let answered = false;
  const reply = call().finally(() => {
    answered = true;
  });
  await waitFor(`gate asked about ${rel}`, () => gate.waiting(rel) > before, 5000, 2);
  // A full round trip on the same connection: the parked call still has no answer.
  await nfs.null();
  expect(answered).toBe(false);
  return { reply, answered: () => answered };
}

describe('gated ZoneFs through NFS', () => {
  it('WRITE to a path being pulled waits for the pull and then lands; other paths go through meanwhile', async () => {
    await setup(10_000);
    const h = await handles();
    gate.hold('gz', 'd/f');
    const p = await parked('d/f', () => nfs.write(h.f, 0, Buffer.from('NEW'), STABLE.FILE_SYNC));
    expect(onDisk('d/f')).toBe('old content');
    // Another file is not held: written at once, while d/f waits.
    expectOk(await nfs.write(h.other, 0, Buffer.from('OTHER'), STABLE.FILE_SYNC), 'WRITE other');
    expect(onDisk('other')).toBe('OTHER');
    // Reads of the held file never wait.
    const rd = expectOk(await nfs.read(h.f, 0, 100), 'READ d/f');
    expect(rd.data.toString()).toBe('old content');
    expectOk(await nfs.getattr(h.f), 'GETATTR d/f');
    expectOk(await nfs.lookup(h.d, 'f'), 'LOOKUP d/f');
    expect(p.answered()).toBe(false);
    gate.release('gz', 'd/f');
    const w = expectOk(await p.reply, 'WRITE d/f');
    expect(w.count).toBe(3);
    expect(onDisk('d/f')).toBe('NEW content');
  });

  it('a wait that runs out answers NFS3ERR_JUKEBOX and changes nothing; the retry after the pull succeeds', async () => {
    await setup(150);
    const h = await handles();
    gate.hold('gz', 'd/f');
    const w = await nfs.write(h.f, 0, Buffer.from('NEW'), STABLE.FILE_SYNC);
    expect(statName(w.status)).toBe('NFS3ERR_JUKEBOX');
    expect(onDisk('d/f')).toBe('old content');
    const sa = await nfs.setattr(h.f, { size: 0 });
    expect(sa.status).toBe(NFS3ERR.JUKEBOX);
    const rm = await nfs.remove(h.d, 'f');
    expect(rm.status).toBe(NFS3ERR.JUKEBOX);
    expect(onDisk('d/f')).toBe('old content');
    gate.release('gz', 'd/f');
    expectOk(await nfs.write(h.f, 0, Buffer.from('NEW'), STABLE.FILE_SYNC), 'WRITE retry');
    expect(onDisk('d/f')).toBe('NEW content');
  });

  it('SETATTR, REMOVE, RENAME (source and target) and CREATE of a held path wait for the pull', async () => {
    await setup(10_000);
    const h = await handles();

    gate.hold('gz', 'd/f');
    const sa = await parked('d/f', () => nfs.setattr(h.f, { size: 3 }));
    expect(onDisk('d/f')).toBe('old content');
    gate.release('gz', 'd/f');
    expectOk(await sa.reply, 'SETATTR');
    expect(onDisk('d/f')).toBe('old');

    gate.hold('gz', 'd/new');
    const cr = await parked('d/new', () => nfs.create(h.d, 'new', { mode: 'guarded', attrs: { mode: 0o644 } }));
    expect(onDisk('d/new')).toBeNull();
    gate.release('gz', 'd/new');
    const created = expectOk(await cr.reply, 'CREATE');
    expect(created.fh).not.toBeNull();
    expect(onDisk('d/new')).toBe('');

    gate.hold('gz', 'moved');
    const rn = await parked('moved', () => nfs.rename(h.d, 'new', root, 'moved'));
    expect(onDisk('d/new')).toBe('');
    gate.release('gz', 'moved');
    expectOk(await rn.reply, 'RENAME to held target');
    expect(onDisk('moved')).toBe('');
    expect(onDisk('d/new')).toBeNull();

    gate.hold('gz', 'other');
    const rn2 = await parked('other', () => nfs.rename(root, 'other', h.d, 'other2'));
    expect(onDisk('other')).toBe('other');
    gate.release('gz', 'other');
    expectOk(await rn2.reply, 'RENAME of held source');
    expect(onDisk('d/other2')).toBe('other');

    gate.hold('gz', 'moved');
    const rm = await parked('moved', () => nfs.remove(root, 'moved'));
    expect(onDisk('moved')).toBe('');
    gate.release('gz', 'moved');
    expectOk(await rm.reply, 'REMOVE');
    expect(onDisk('moved')).toBeNull();

    gate.hold('gz', 'sub');
    const mk = await parked('sub', () => nfs.mkdir(root, 'sub'));
    gate.release('gz', 'sub');
    expectOk(await mk.reply, 'MKDIR');
    expect(fs.statSync(path.join(zoneDir, 'sub')).isDirectory()).toBe(true);
  });

  it("consistency 'available' never waits, even with the path held", async () => {
    await setup(10_000);
    const h = await handles();
    gate.hold('gz', 'd/f');
    consistency = 'available';
    const asked = gate.asked.length;
    expectOk(await nfs.write(h.f, 0, Buffer.from('NOW'), STABLE.FILE_SYNC), 'WRITE');
    expect(onDisk('d/f')).toBe('NOW content');
    expectOk(await nfs.remove(h.d, 'f'), 'REMOVE');
    expect(gate.asked.length).toBe(asked); // not even asked
    // Switching back (a reload) applies to the next call.
    consistency = 'pull-first';
    gate.hold('gz', 'other');
    const sa = await parked('other', () => nfs.setattr(h.other, { mode: 0o600 }));
    gate.release('gz', 'other');
    expectOk(await sa.reply, 'SETATTR');
    expect(fs.statSync(path.join(zoneDir, 'other')).mode & 0o777).toBe(0o600);
  });

  it("the daemon's own calls (origin local/peer) and COMMIT never wait", async () => {
    await setup(10_000);
    const h = await handles();
    const id = expectOk(await nfs.getattr(h.f), 'GETATTR').fileid;
    gate.hold('gz', 'd/f');
    const peer: CallContext = { uid: 0, gid: 0, gids: [], client: 'peer', origin: 'peer' };
    await zone.write(peer, id, 0, Buffer.from('PEER'), 'file_sync');
    expect(onDisk('d/f')).toBe('PEERcontent');
    await zone.commit({ ...peer, origin: 'nfs' }, id, 0, 0);
    expectOk(await nfs.commit(h.f), 'COMMIT');
    gate.release('gz', 'd/f');
  });

  it('a gate that never settles is bounded: JUKEBOX after maxWaitMs plus a grace period', async () => {
    await setup(50);
    const h = await handles();
    const stuck: PullGate = { wait: () => new Promise<boolean>(() => undefined) };
    zone = gated(att.fs, { gate: stuck, pathOf: (i) => att.journal.pathOf(i), maxWaitMs: 50, consistency: () => 'pull-first' });
    const w = await nfs.write(h.f, 0, Buffer.from('X'), STABLE.FILE_SYNC);
    expect(statName(w.status)).toBe('NFS3ERR_JUKEBOX');
    expect(onDisk('d/f')).toBe('old content');
  });
});
