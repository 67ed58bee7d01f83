/**
 * Replication between in-process nodes (each its own database, zone directory and journal; the
 * nodes call each other's LocalSource directly): content, metadata, transitivity, trees.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compare } from '../src/replication/vector.js';
import {
  idOf, mkdir, remove, rename, ReplicaLab, ROOT_CTX, symlink, treeOf, writeFile, ZONE, type LabNode,
} from './harness/replica-cluster.js';
import { waitFor } from './harness/wait.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

/** A new lab with these nodes, started. */
async function started(...names: string[]): Promise<LabNode[]> {
  lab = new ReplicaLab();
  const nodes: LabNode[] = [];
  for (const n of names) nodes.push(await lab.add(n));
  lab.startAll();
  return nodes;
}

const same = (a: LabNode, b: LabNode): boolean => {
  const ta = treeOf(a.zoneDir);
  const tb = treeOf(b.zoneDir);
  return ta.size === tb.size && [...ta].every(([k, v]) => tb.get(k) === v);
};

async function converged(nodes: LabNode[], ms = 20_000): Promise<void> {
  await waitFor('convergence', async () => {
    for (const n of nodes) await n.att.journal.settled();
    return nodes.every((n) => same(nodes[0]!, n) && n.repl.status()[0]!.inSync);
  }, ms, 50);
  // Stable: one more look after the pulls settled.
  for (const n of nodes) await n.att.journal.settled();
  for (const n of nodes.slice(1)) expect(Object.fromEntries(treeOf(n.zoneDir))).toEqual(Object.fromEntries(treeOf(nodes[0]!.zoneDir)));
}

describe('replication: content and metadata', () => {
  it('a write on A reaches B with identical bytes, mode and mtime; vectors and origins kept', async () => {
    const [a, b] = await started('a', 'b');
    const big = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
    await mkdir(a, 'docs');
    await writeFile(a, 'docs/small.txt', 'hello world\n', 0o640);
    await writeFile(a, 'docs/big.bin', big, 0o600);
    await writeFile(a, 'empty', '');
    await symlink(a, 'link', 'docs/small.txt');
    await converged([a, b]);
    const fb = path.join(b.zoneDir, 'docs/big.bin');
    expect(fs.readFileSync(fb).equals(big)).toBe(true);
    expect(fs.statSync(fb).mode & 0o7777).toBe(0o600);
    expect(fs.statSync(path.join(b.zoneDir, 'docs/small.txt')).mode & 0o7777).toBe(0o640);
    expect(fs.readlinkSync(path.join(b.zoneDir, 'link'))).toBe('docs/small.txt');
    expect(fs.statSync(path.join(b.zoneDir, 'empty')).size).toBe(0);
    // mtime: equal to what A has, within what a double of seconds can carry.
    const ma = fs.statSync(path.join(a.zoneDir, 'docs/big.bin'), { bigint: true }).mtimeNs;
    const mb = fs.statSync(fb, { bigint: true }).mtimeNs;
    // Exactly A's mtime truncated to the microsecond (what utimes can set).
    expect(mb).toBe((ma / 1000n) * 1000n);
    const ea = a.att.journal.index.byPath(Buffer.from('docs/big.bin'))!;
    const eb = b.att.journal.index.byPath(Buffer.from('docs/big.bin'))!;
    expect(compare(ea.vector, eb.vector)).toBe('equal');
    expect(eb.origin).toBe(a.id);
    expect(eb.hashes!.equals(ea.hashes!)).toBe(true);
    // B journaled exactly what it applied (no second entry of its own for the same change,
    // even with a watcher: GV_LAB_WATCH=1), and nothing echoes back to A.
    await new Promise((r) => setTimeout(r, 400));
    await b.att.journal.settled();
    expect(b.att.journal.log.since(0n).filter((r) => r.origin !== a.id).map((r) => `${r.kind} ${r.path}`)).toEqual([]);
    expect(a.repl.applyStats(ZONE)?.applied ?? 0).toBe(0);
    // No temp files left behind.
    expect(fs.readdirSync(path.join(b.zoneDir, '.grapevine/tmp'))).toEqual([]);
  }, 60_000);

  it('reads its own changes back from a member\'s journal without asking for their entries', async () => {
    const [a, b] = await started('a', 'b');
    for (let i = 0; i < 40; i++) await writeFile(a, `f${i}.txt`, `content ${i}\n`);
    await converged([a, b]);
    // A took B's journal (B journaled the 40 files it pulled, with A's vectors) up to B's version...
    expect(b.source.stats.journalRows).toBeGreaterThanOrEqual(40);
    // ...and, its index already holding those vectors, asked B for no entry and no byte.
    expect(b.source.stats.entries).toBe(0);
    expect(b.source.stats.blockCalls).toBe(0);
    expect(a.repl.applyStats(ZONE)!.skipped).toBeGreaterThanOrEqual(40);
    // A later change on B still reaches A.
    await writeFile(b, 'f3.txt', 'changed on b\n');
    await converged([a, b]);
    expect(fs.readFileSync(path.join(a.zoneDir, 'f3.txt'), 'utf8')).toBe('changed on b\n');
    expect(b.source.stats.entries).toBeGreaterThanOrEqual(1);
  });

  it('a directory moved over the name of a removed one keeps its contents on every node (rm -r E; mv D E)', async () => {
    const [a, b] = await started('a', 'b');
    await mkdir(a, 'D');
    await writeFile(a, 'D/p', 'D/p original\n');
    await writeFile(a, 'D/q', 'D/q original\n');
    await mkdir(a, 'E');
    for (let i = 0; i < 5; i++) await writeFile(a, 'E/p', `E/p version ${i}\n`);
    await converged([a, b]);
    await remove(a, 'E/p');
    await remove(a, 'E');
    await rename(a, 'D', 'E');
    await converged([a, b]);
    // B journaled A's removal of the old E/p; reading it back must not remove the E/p moved there.
    for (const n of [a, b]) {
      expect(fs.readFileSync(path.join(n.zoneDir, 'E/p'), 'utf8')).toBe('D/p original\n');
      expect(fs.readFileSync(path.join(n.zoneDir, 'E/q'), 'utf8')).toBe('D/q original\n');
      expect(fs.existsSync(path.join(n.zoneDir, 'D'))).toBe(false);
    }
    // The moved file comes after the removal at its new name, on both nodes.
    const tomb = a.att.journal.log.since(0n).filter((r) => r.kind === 'remove' && r.path.toString() === 'E/p').pop()!;
    for (const n of [a, b]) expect(compare(tomb.vector, n.att.journal.index.byPath(Buffer.from('E/p'))!.vector)).toBe('before');
    // A write after the move reaches B, and stays on A.
    await writeFile(a, 'E/p', 'E/p written after the move\n');
    await converged([a, b]);
    for (const n of [a, b]) expect(fs.readFileSync(path.join(n.zoneDir, 'E/p'), 'utf8')).toBe('E/p written after the move\n');
  });

  it('a hard link made where a file was removed reaches a node that still has the removed file (rm P; ln X P)', async () => {
    const [a, b] = await started('a', 'b');
    await writeFile(a, 'X', 'the linked file\n');
    // P's vector climbs well above X's.
    for (let i = 0; i < 12; i++) await writeFile(a, 'P', `P version ${i}\n`);
    await converged([a, b]);
    lab!.setLink('a', 'b', false);
    await remove(a, 'P');
    await a.att.fs.link(ROOT_CTX, await idOf(a, 'X'), a.local.rootId, Buffer.from('P'));
    await a.att.journal.settled();
    lab!.setLink('a', 'b', true);
    await converged([a, b]);
    for (const n of [a, b]) expect(fs.readFileSync(path.join(n.zoneDir, 'P'), 'utf8')).toBe('the linked file\n');
    expect(fs.statSync(path.join(b.zoneDir, 'P')).ino).toBe(fs.statSync(path.join(b.zoneDir, 'X')).ino);
  });

  it('transitive: A and C partitioned, both see B; a write on A reaches C', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    const c = await lab.add('c');
    lab.setLink('a', 'c', false);
    lab.startAll();
    await writeFile(a, 'via-b.txt', 'from a, through b');
    await waitFor('file on C', () => fs.existsSync(path.join(c.zoneDir, 'via-b.txt')), 20_000);
    expect(fs.readFileSync(path.join(c.zoneDir, 'via-b.txt'), 'utf8')).toBe('from a, through b');
    expect(c.att.journal.index.byPath(Buffer.from('via-b.txt'))!.origin).toBe(a.id);
    // The same mtime on every replica (setting it again changes nothing).
    const mt = (n: LabNode) => fs.statSync(path.join(n.zoneDir, 'via-b.txt'), { bigint: true }).mtimeNs;
    await waitFor('file on B', () => fs.existsSync(path.join(b.zoneDir, 'via-b.txt')), 20_000);
    expect(mt(c)).toBe(mt(b));
    expect(mt(c) / 1000n).toBe(mt(a) / 1000n);
    await converged([a, b, c]);
  }, 60_000);

  it('renames and deletes of a 1,000-entry tree', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    await mkdir(a, 't');
    for (let d = 0; d < 10; d++) {
      await mkdir(a, `t/d${d}`);
      for (let f = 0; f < 99; f++) await writeFile(a, `t/d${d}/f${f}`, `file ${d}/${f}\n`);
    }
    // B joins once A has everything: an initial sync of 1,000 entries.
    let t0 = Date.now();
    lab.startAll();
    await converged([a, b], 60_000);
    const secs = (Date.now() - t0) / 1000;
    console.log(`initial sync of 1,000 entries (990 small files + 10 dirs): ${secs.toFixed(2)} s, ${(1000 / secs).toFixed(0)} entries/s`);
    const rowsBefore = b.att.journal.version();
    await rename(a, 't', 'moved');
    t0 = Date.now();
    await converged([a, b]);
    console.log(`rename of the 1,000-entry tree applied in ${Date.now() - t0} ms`);
    // One rename row on B for the whole tree.
    expect(b.att.journal.version() - rowsBefore).toBe(1n);
    expect(fs.readFileSync(path.join(b.zoneDir, 'moved/d3/f42'), 'utf8')).toBe('file 3/42\n');
    // Delete the tree behind the daemon's back; the scan journals each removal, children first.
    fs.rmSync(path.join(a.zoneDir, 'moved'), { recursive: true });
    // The out-of-band removal is found by a scan (no watcher in this lab).
    const { scanZone } = await import('../src/journal/scan.js');
    await a.att.journal.enqueue('scan', async () => {
      await scanZone(a.att.journal, a.zoneDir);
    });
    t0 = Date.now();
    await converged([a, b]);
    console.log(`delete of the 1,000-entry tree applied in ${Date.now() - t0} ms`);
    expect(fs.existsSync(path.join(b.zoneDir, 'moved'))).toBe(false);
    expect(b.att.journal.index.count()).toBe(0);
  }, 180_000);

  it('hard links arrive as hard links', async () => {
    const [a, b] = await started('a', 'b');
    await writeFile(a, 'orig', 'linked content');
    await a.att.fs.link(ROOT_CTX, await idOf(a, 'orig'), a.local.rootId, Buffer.from('second'));
    await a.att.journal.idle();
    await converged([a, b]);
    const s1 = fs.statSync(path.join(b.zoneDir, 'orig'));
    const s2 = fs.statSync(path.join(b.zoneDir, 'second'));
    expect(s2.ino).toBe(s1.ino);
    expect(s1.nlink).toBe(2);
    expect(fs.readFileSync(path.join(b.zoneDir, 'second'), 'utf8')).toBe('linked content');
  }, 60_000);

  it('a removed directory that holds content the remover did not know of stays (modify beats delete)', async () => {
    const [a, c] = await started('a', 'c');
    await mkdir(a, 'd');
    await writeFile(a, 'd/old', 'known to both');
    await converged([a, c]);
    lab!.setLink('a', 'c', false);
    await remove(a, 'd/old');
    await remove(a, 'd');
    await writeFile(c, 'd/new', 'added on c meanwhile');
    lab!.setLink('a', 'c', true);
    await converged([a, c]);
    for (const n of [a, c]) {
      expect(fs.readdirSync(path.join(n.zoneDir, 'd'))).toEqual(['new']);
      expect(fs.readFileSync(path.join(n.zoneDir, 'd/new'), 'utf8')).toBe('added on c meanwhile');
    }
    // Converged in the indexes too: the same objects with the same vectors.
    await waitFor('same vectors', () => ['d', 'd/new'].every((p) => {
      const ea = a.att.journal.index.byPath(Buffer.from(p));
      const ec = c.att.journal.index.byPath(Buffer.from(p));
      return ea && ec && compare(ea.vector, ec.vector) === 'equal';
    }), 10_000);
  }, 60_000);

  it('removes and recreations propagate; a re-created file is after the delete everywhere', async () => {
    const [a, b] = await started('a', 'b');
    await writeFile(a, 'f', 'one');
    await converged([a, b]);
    await remove(a, 'f');
    await converged([a, b]);
    expect(fs.existsSync(path.join(b.zoneDir, 'f'))).toBe(false);
    await writeFile(b, 'f', 'two');
    await converged([a, b]);
    expect(fs.readFileSync(path.join(a.zoneDir, 'f'), 'utf8')).toBe('two');
  }, 60_000);
});
