/**
 * Owners replicate: uid/gid of files, directories and symlinks as the peer has them, applied with
 * lchown when this node runs as root (the in-memory lab; skipped otherwise), a chown alone too.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { idOf, mkdir, ReplicaLab, ROOT_CTX, symlink, writeFile, ZONE, type LabNode } from './harness/replica-cluster.js';
import { waitFor } from './harness/wait.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

async function chown(n: LabNode, rel: string, uid: number, gid: number): Promise<void> {
  await n.att.fs.setattr(ROOT_CTX, await idOf(n, rel), { uid, gid });
  await n.att.journal.idle();
}

const owner = (n: LabNode, rel: string): string => {
  const st = fs.lstatSync(path.join(n.zoneDir, rel));
  return `${st.uid}:${st.gid}`;
};

describe.skipIf(!asRoot)('owners', () => {
  it('uid and gid of files, directories and symlinks reach B; a later chown alone too; set-id bits kept', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    await mkdir(a, 'home');
    await writeFile(a, 'home/notes.txt', 'mine\n', 0o640);
    await writeFile(a, 'home/big.bin', Buffer.alloc(300 * 1024, 9), 0o600);
    await writeFile(a, 'home/tool', '#!/bin/sh\n', 0o2755);
    await symlink(a, 'home/link', 'notes.txt');
    await chown(a, 'home', 1001, 1002);
    await chown(a, 'home/notes.txt', 1001, 100);
    await chown(a, 'home/big.bin', 2000, 2001);
    await chown(a, 'home/tool', 0, 50);
    await chown(a, 'home/link', 1001, 1002);
    await a.att.fs.setattr(ROOT_CTX, await idOf(a, 'home/tool'), { mode: 0o2755 });
    await writeFile(a, 'root-owned', 'r');
    // The owner is served with the entry.
    const [e] = await a.source.entries({ nodeId: b.id, nodeName: 'b' }, ZONE, [Buffer.from('home/notes.txt')], 0);
    expect([e!.uid, e!.gid]).toEqual([1001, 100]);
    lab.startAll();
    const paths = ['home', 'home/notes.txt', 'home/big.bin', 'home/tool', 'home/link', 'root-owned'];
    const same = (): boolean => paths.every((p) => fs.existsSync(path.join(b.zoneDir, p)) || fs.lstatSync(path.join(b.zoneDir, p), { throwIfNoEntry: false }))
      && paths.every((p) => owner(a, p) === owner(b, p));
    await waitFor('owners on B', async () => {
      await b.att.journal.settled();
      return same() && b.repl.status()[0]!.inSync;
    }, 20_000, 50);
    expect(paths.map((p) => owner(b, p))).toEqual(['1001:1002', '1001:100', '2000:2001', '0:50', '1001:1002', '0:0']);
    expect((fs.statSync(path.join(a.zoneDir, 'home/tool')).mode & 0o7777).toString(8)).toBe('2755');
    expect(fs.statSync(path.join(b.zoneDir, 'home/tool')).mode & 0o7777).toBe(0o2755);
    expect(fs.readFileSync(path.join(b.zoneDir, 'home/big.bin')).equals(Buffer.alloc(300 * 1024, 9))).toBe(true);
    // A chown alone (same bytes) is applied in place.
    const ino = fs.statSync(path.join(b.zoneDir, 'home/notes.txt')).ino;
    await chown(a, 'home/notes.txt', 3000, 3001);
    await waitFor('chown on B', async () => owner(b, 'home/notes.txt') === '3000:3001', 20_000, 50);
    expect(fs.statSync(path.join(b.zoneDir, 'home/notes.txt')).ino).toBe(ino);
    expect(fs.statSync(path.join(b.zoneDir, 'home/notes.txt')).mode & 0o7777).toBe(0o640);
  }, 60_000);
});
