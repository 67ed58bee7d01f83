/**
 * Listings (ReplicaSource.list): a directory renamed on the peer whose contents this node never
 * saw under the old name is filled from a listing, and a new member syncs from a snapshot of the
 * tree instead of replaying the peer's history — with the same result as a replay.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ZoneApplier } from '../src/replication/apply.js';
import type { ReplicaSource } from '../src/replication/source.js';
import { compare } from '../src/replication/vector.js';
import {
  mkdir, remove, rename, ReplicaLab, symlink, treeOf, writeFile, ZONE, type LabNode,
} from './harness/replica-cluster.js';
import { waitFor } from './harness/wait.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

const b = (s: string): Buffer => Buffer.from(s);

function direct(from: LabNode, to: LabNode): ReplicaSource {
  const caller = { nodeId: from.id, nodeName: from.name };
  const s = to.source;
  return {
    journal: (z, since, limit) => s.journal(caller, z, since, limit),
    entries: (z, paths, inlineMax) => s.entries(caller, z, paths, inlineMax),
    block: (z, p, off, len) => s.block(caller, z, p, off, len),
    catalog: () => s.catalog(caller),
    list: (z, dir, after, limit, inlineMax) => s.list(caller, z, dir, after, limit, inlineMax),
  };
}

/** Live index entries: path → type and vector (compared across nodes). */
function indexOf(n: LabNode): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of n.att.journal.index.all()) {
    if (e.path.length === 0) continue;
    out.set(e.path.toString(), `${e.type} ${[...e.vector.entries()].map(([k, v]) => `${k}:${v}`).sort().join(",")} ${e.origin}`);
  }
  return out;
}

describe('list', () => {
  it('pages a subtree in path order, a directory before its contents, small files inline, owners given', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    await mkdir(a, 'd');
    await mkdir(a, 'd/sub');
    for (let i = 0; i < 5; i++) await writeFile(a, `d/f${i}`, `file ${i}\n`);
    await writeFile(a, 'd/sub/g', 'g');
    await writeFile(a, 'd.x', 'not below d');
    await writeFile(a, 'top', 'top');
    const caller = { nodeId: 'x', nodeName: 'x' };
    const seen: string[] = [];
    let after: Buffer | null = null;
    for (let pages = 0; pages < 10; pages++) {
      const page = await a.source.list(caller, ZONE, b('d'), after, 3, 1024);
      expect(page.entries.length).toBeLessThanOrEqual(3);
      expect(page.version).toBe(a.att.journal.version());
      for (const e of page.entries) {
        seen.push(e.path.toString());
        if (e.type === 'file') expect(e.data?.toString()).toBe(fs.readFileSync(path.join(a.zoneDir, e.path.toString()), 'utf8'));
        expect(e.uid).toBe(fs.lstatSync(path.join(a.zoneDir, e.path.toString())).uid);
      }
      if (page.done) break;
      after = page.next;
    }
    expect(seen).toEqual(['d/f0', 'd/f1', 'd/f2', 'd/f3', 'd/f4', 'd/sub', 'd/sub/g']);
    const whole = await a.source.list(caller, ZONE, Buffer.alloc(0), null, 256, 0);
    expect(whole.done).toBe(true);
    expect(whole.entries.map((e) => e.path.toString())).toEqual(['d', 'd.x', 'd/f0', 'd/f1', 'd/f2', 'd/f3', 'd/f4', 'd/sub', 'd/sub/g', 'top']);
    expect(whole.entries.every((e) => e.data === undefined)).toBe(true);
    await expect(a.source.list(caller, ZONE, b('../etc'), null, 10, 0)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(a.source.list(caller, ZONE, b('d'), null, 100_000, 0)).rejects.toMatchObject({ code: 'EINVAL' });
  }, 30_000);
});

describe('the tree-rename gap', () => {
  it('contents skipped under the old name (an earlier pull) arrive when the rename is applied', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const bn = await lab.add('b');
    await mkdir(a, 'proj');
    await mkdir(a, 'proj/src');
    for (let i = 0; i < 20; i++) await writeFile(a, `proj/src/m${i}.ts`, `export const v${i} = ${i};\n`);
    await writeFile(a, 'proj/big.bin', Buffer.alloc(200 * 1024, 7));
    await rename(a, 'proj', 'renamed');
    const src = direct(bn, a);
    const rows = (await src.journal(ZONE, 0n, 1000)).rows;
    const at = rows.findIndex((r) => r.kind === 'rename');
    expect(at).toBeGreaterThan(0);
    const applier = new ZoneApplier({ name: ZONE, root: bn.zoneDir, journal: bn.att.journal });
    // First pull: everything up to the rename; the old paths are gone on A, so nothing lands.
    // (Only this page's own later rows could forward them, and the rename is not in it.)
    await applier.apply(src, rows.slice(0, at));
    expect(fs.existsSync(path.join(bn.zoneDir, 'proj/src/m0.ts'))).toBe(false);
    // A later pull (what it learnt before is forgotten) applies the rename alone.
    applier.beginPull();
    await applier.apply(src, rows.slice(at));
    await bn.att.journal.settled();
    expect(Object.fromEntries(treeOf(bn.zoneDir))).toEqual(Object.fromEntries(treeOf(a.zoneDir)));
    expect(fs.readFileSync(path.join(bn.zoneDir, 'renamed/src/m7.ts'), 'utf8')).toBe('export const v7 = 7;\n');
    expect(indexOf(bn)).toEqual(indexOf(a));
  }, 30_000);

  it('a populated tree renamed on A before B first pulls: B ends with the contents (replay, no snapshot)', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    await mkdir(a, 'd');
    await mkdir(a, 'd/e');
    for (let i = 0; i < 10; i++) await writeFile(a, `d/e/f${i}`, `content ${i}`);
    await rename(a, 'd/e', 'd/moved');
    await rename(a, 'd', 'top');
    const bn = await lab.add('b', { snapshotMinVersion: 1_000_000 });
    lab.startAll();
    await waitFor('b has the tree', async () => {
      await bn.att.journal.settled();
      return treeOf(bn.zoneDir).size === treeOf(a.zoneDir).size && bn.repl.status()[0]!.inSync;
    }, 20_000, 50);
    expect(Object.fromEntries(treeOf(bn.zoneDir))).toEqual(Object.fromEntries(treeOf(a.zoneDir)));
    expect(fs.readFileSync(path.join(bn.zoneDir, 'top/moved/f3'), 'utf8')).toBe('content 3');
    expect(bn.repl.applyStats(ZONE)!.rows).toBeGreaterThan(0);
  }, 30_000);
});

describe('initial sync from a snapshot', () => {
  it('a new member syncs from a listing, with the same tree and vectors as a replay, then follows the journal', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    // A history with overwrites, removals and renames of populated trees.
    await mkdir(a, 'docs');
    await mkdir(a, 'docs/old');
    for (let i = 0; i < 30; i++) await writeFile(a, `docs/old/n${i}.txt`, `note ${i}\n`.repeat(i + 1), 0o640);
    for (let i = 0; i < 10; i++) await writeFile(a, `docs/old/n${i}.txt`, `rewritten ${i}\n`);
    for (let i = 20; i < 25; i++) await remove(a, `docs/old/n${i}.txt`);
    await rename(a, 'docs/old', 'docs/archive');
    await writeFile(a, 'docs/big.bin', Buffer.alloc(3 * 1024 * 1024 + 5, 3));
    await symlink(a, 'latest', 'docs/archive/n1.txt');
    await mkdir(a, 'tmp');
    await writeFile(a, 'tmp/x', 'x');
    await remove(a, 'tmp/x');
    await remove(a, 'tmp');
    const history = a.att.journal.version();
    expect(history).toBeGreaterThan(40n);
    // B replays the history; C (threshold below A's version) takes a snapshot. Neither hears of the other.
    const replay = await lab.add('b', { snapshotMinVersion: 1_000_000 });
    const snap = await lab.add('c', { snapshotMinVersion: 10 });
    lab.setLink('b', 'c', false);
    lab.startAll();
    const synced = async (): Promise<boolean> => {
      for (const n of [a, replay, snap]) await n.att.journal.settled();
      const ta = JSON.stringify([...treeOf(a.zoneDir)].sort());
      return [replay, snap].every((n) => JSON.stringify([...treeOf(n.zoneDir)].sort()) === ta && n.repl.status()[0]!.inSync);
    };
    await waitFor('both synced', synced, 20_000, 50);
    expect(Object.fromEntries(treeOf(snap.zoneDir))).toEqual(Object.fromEntries(treeOf(replay.zoneDir)));
    expect(indexOf(snap)).toEqual(indexOf(replay));
    expect(indexOf(snap)).toEqual(indexOf(a));
    // The snapshot replayed no journal rows (nothing changed on A meanwhile); the replay did.
    expect(snap.repl.applyStats(ZONE)!.rows).toBe(0);
    expect(replay.repl.applyStats(ZONE)!.rows).toBeGreaterThanOrEqual(Number(history));
    const cur = snap.repl.status()[0]!.members.find((m) => m.peerName === 'a')!;
    expect(cur.applied).toBe(String(history));
    // Afterwards both follow A's journal: a new change and a tree rename.
    await writeFile(a, 'docs/archive/new.txt', 'after the snapshot');
    await rename(a, 'docs/archive', 'docs/kept');
    await waitFor('both follow', synced, 20_000, 50).catch((err) => {
      const ta = treeOf(a.zoneDir);
      console.log('A', a.att.journal.log.since(a.att.journal.version() - 4n).map((r) => `${r.version} ${r.kind} ${r.path} ${r.toPath ?? ''} ${r.size} ${[...r.vector]}`));
      for (const n of [replay, snap]) {
        const tn = treeOf(n.zoneDir);
        console.log(n.name, [...ta].filter(([k, v]) => tn.get(k) !== v), [...tn].filter(([k, v]) => ta.get(k) !== v), n.att.journal.log.since(n.att.journal.version() - 4n).map((r) => `${r.version} ${r.kind} ${r.path} ${r.toPath ?? ''}`));
      }
      throw err;
    });
    expect(fs.readFileSync(path.join(snap.zoneDir, 'docs/kept/new.txt'), 'utf8')).toBe('after the snapshot');
    expect(indexOf(snap)).toEqual(indexOf(replay));
    const e = snap.att.journal.index.byPath(b('docs/kept/new.txt'))!;
    expect(compare(e.vector, a.att.journal.index.byPath(b('docs/kept/new.txt'))!.vector)).toBe('equal');
  }, 60_000);
});
