/**
 * Conflicts between in-process nodes: concurrent edits keep both (same winner and same conflict
 * copy everywhere), modify beats delete both ways, file vs directory, and a long partition with
 * mixed changes on both sides converges with every write present.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { conflictPath, isConflictPath, originalOf, wins } from '../src/replication/conflict.js';
import { conflictsOf } from '../src/replication/service.js';
import { compare } from '../src/replication/vector.js';
import {
  mkdir, remove, rename, ReplicaLab, treeOf, writeFile, ZONE, type LabNode,
} from './harness/replica-cluster.js';
import { waitFor } from './harness/wait.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

const flat = (n: LabNode): Record<string, string> => Object.fromEntries(treeOf(n.zoneDir));

async function converged(nodes: LabNode[], ms = 30_000): Promise<void> {
  await waitFor('convergence', async () => {
    for (const n of nodes) await n.att.journal.settled();
    const first = JSON.stringify(flat(nodes[0]!));
    return nodes.every((n) => JSON.stringify(flat(n)) === first && n.repl.status()[0]!.inSync && !n.repl.status()[0]!.members.some((m) => m.pulling));
  }, ms, 50);
  for (const n of nodes) await n.att.journal.settled();
  for (const n of nodes.slice(1)) expect(flat(n)).toEqual(flat(nodes[0]!));
}

function partition(l: ReplicaLab, names: string[], up: boolean): void {
  for (let i = 0; i < names.length; i++) for (let j = i + 1; j < names.length; j++) l.setLink(names[i]!, names[j]!, up);
}

const read = (n: LabNode, rel: string): string => fs.readFileSync(path.join(n.zoneDir, rel), 'utf8');

/** Index vectors agree for every path on every node. */
function sameVectors(nodes: LabNode[]): void {
  const a = nodes[0]!;
  for (const e of a.att.journal.index.all()) {
    for (const n of nodes.slice(1)) {
      const o = n.att.journal.index.byPath(e.path);
      expect(o, `${n.name} ${e.path}`).toBeDefined();
      expect(compare(o!.vector, e.vector), `${n.name} ${e.path}`).toBe('equal');
      expect(o!.origin, `${n.name} ${e.path}`).toBe(e.origin);
    }
  }
}

describe('conflict names and winners', () => {
  const loser = { mtimeNs: 1_700_000_000_123_456_789n, origin: '0123456789abcdef0123456789abcdef' };
  it('names: timestamp in UTC, 7 hex of the origin, the extension kept (not for dotfiles)', () => {
    const cases: [string, string][] = [
      ['notes.txt', 'notes.gv-conflict-20231114-221320-0123456.txt'],
      ['dir/archive.tar.gz', 'dir/archive.tar.gv-conflict-20231114-221320-0123456.gz'],
      ['.bashrc', '.bashrc.gv-conflict-20231114-221320-0123456'],
      ['Makefile', 'Makefile.gv-conflict-20231114-221320-0123456'],
      ['a/b/trailing.', 'a/b/trailing..gv-conflict-20231114-221320-0123456'],
    ];
    for (const [p, want] of cases) {
      const got = conflictPath(Buffer.from(p), loser).toString();
      expect(got).toBe(want);
      expect(isConflictPath(Buffer.from(got))).toBe(true);
      expect(originalOf(Buffer.from(got))?.toString()).toBe(p);
    }
    expect(isConflictPath(Buffer.from('notes.txt'))).toBe(false);
  });

  it('winner: newer mtime (in microseconds), then the greater origin', () => {
    const other = { mtimeNs: loser.mtimeNs + 1000n, origin: '00' };
    expect(wins(other, loser)).toBe(true);
    expect(wins(loser, other)).toBe(false);
    // Within one microsecond the mtimes tie (replicas carry them truncated): origin decides.
    const tie = { mtimeNs: loser.mtimeNs - 789n, origin: 'ff' };
    expect(wins(tie, loser)).toBe(true);
    expect(wins(loser, tie)).toBe(false);
  });
});

describe('replication conflicts', () => {
  it('concurrent edits on A and C: the same winner and the same conflict copy on all three', async () => {
    lab = new ReplicaLab();
    const [a, b, c] = [await lab.add('a'), await lab.add('b'), await lab.add('c')];
    lab.startAll();
    await writeFile(a, 'notes.txt', 'base\n');
    await converged([a, b, c]);
    partition(lab, ['a', 'b', 'c'], false);
    await writeFile(a, 'notes.txt', 'edit on a\n');
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(c, 'notes.txt', 'edit on c, later\n');
    const loser = a.att.journal.index.byPath(Buffer.from('notes.txt'))!;
    partition(lab, ['a', 'b', 'c'], true);
    await converged([a, b, c]);
    const copy = conflictPath(Buffer.from('notes.txt'), loser).toString();
    expect(copy).toMatch(/^notes\.gv-conflict-\d{8}-\d{6}-[0-9a-f]{7}\.txt$/);
    expect(copy).toContain(`-${a.id.slice(0, 7)}.txt`);
    for (const n of [a, b, c]) {
      expect(read(n, 'notes.txt')).toBe('edit on c, later\n');
      expect(read(n, copy)).toBe('edit on a\n');
      expect(conflictsOf(ZONE, n.att.journal).map((x) => [x.path, x.original])).toEqual([[copy, 'notes.txt']]);
    }
    sameVectors([a, b, c]);
    const copyEntry = b.att.journal.index.byPath(Buffer.from(copy))!;
    expect(copyEntry.origin).toBe(a.id);
    expect(compare(copyEntry.vector, loser.vector)).toBe('equal');
  }, 60_000);

  it('three-way concurrent edit: the newest wins, two conflict copies, identical everywhere', async () => {
    lab = new ReplicaLab();
    const [a, b, c] = [await lab.add('a'), await lab.add('b'), await lab.add('c')];
    lab.startAll();
    await writeFile(a, 'f.md', 'base\n');
    await converged([a, b, c]);
    partition(lab, ['a', 'b', 'c'], false);
    for (const n of [a, b, c]) {
      await writeFile(n, 'f.md', `edit on ${n.name}\n`);
      await new Promise((r) => setTimeout(r, 5));
    }
    partition(lab, ['a', 'b', 'c'], true);
    await converged([a, b, c]);
    for (const n of [a, b, c]) {
      expect(read(n, 'f.md')).toBe('edit on c\n');
      const copies = conflictsOf(ZONE, n.att.journal);
      expect(copies.map((x) => read(n, x.path)).sort()).toEqual(['edit on a\n', 'edit on b\n']);
    }
    sameVectors([a, b, c]);
  }, 60_000);

  it('same content on both sides: no conflict copy, vectors merged', async () => {
    lab = new ReplicaLab();
    const [a, b] = [await lab.add('a'), await lab.add('b')];
    lab.startAll();
    await writeFile(a, 'f', 'x');
    await converged([a, b]);
    lab.setLink('a', 'b', false);
    await writeFile(a, 'f', 'same');
    await writeFile(b, 'f', 'same');
    lab.setLink('a', 'b', true);
    await converged([a, b]);
    expect(Object.keys(flat(a))).toEqual(['f']);
    sameVectors([a, b]);
  }, 60_000);

  it('modify beats delete, both ways', async () => {
    lab = new ReplicaLab();
    const [a, c] = [await lab.add('a'), await lab.add('c')];
    lab.startAll();
    await writeFile(a, 'kept-by-c', 'v1');
    await writeFile(a, 'kept-by-a', 'v1');
    await converged([a, c]);
    lab.setLink('a', 'c', false);
    await remove(a, 'kept-by-c');
    await writeFile(c, 'kept-by-c', 'modified on c');
    await writeFile(a, 'kept-by-a', 'modified on a');
    await remove(c, 'kept-by-a');
    lab.setLink('a', 'c', true);
    await converged([a, c]);
    for (const n of [a, c]) {
      expect(read(n, 'kept-by-c')).toBe('modified on c');
      expect(read(n, 'kept-by-a')).toBe('modified on a');
    }
    sameVectors([a, c]);
  }, 60_000);

  it('file vs directory of the same name: neither is lost', async () => {
    lab = new ReplicaLab();
    const [a, c] = [await lab.add('a'), await lab.add('c')];
    lab.startAll();
    lab.setLink('a', 'c', false);
    await writeFile(a, 'x', 'a file on a');
    await new Promise((r) => setTimeout(r, 20));
    await mkdir(c, 'x');
    await writeFile(c, 'x/inside', 'in the directory on c');
    lab.setLink('a', 'c', true);
    await converged([a, c]);
    const t = flat(a);
    // The directory (newer) wins the name; the file is kept as its conflict copy.
    expect(t['x']).toMatch(/^dir/);
    expect(read(a, 'x/inside')).toBe('in the directory on c');
    const copies = Object.keys(t).filter((k) => k.startsWith('x.gv-conflict-'));
    expect(copies).toHaveLength(1);
    expect(read(a, copies[0]!)).toBe('a file on a');
  }, 60_000);

  it('file vs directory, the file newer: the directory and its contents are kept as the conflict copy', async () => {
    lab = new ReplicaLab();
    const [a, b, c] = [await lab.add('a'), await lab.add('b'), await lab.add('c')];
    lab.startAll();
    partition(lab, ['a', 'b', 'c'], false);
    await mkdir(c, 'x');
    await writeFile(c, 'x/inside', 'in the directory on c');
    await mkdir(c, 'x/sub');
    await writeFile(c, 'x/sub/deeper', 'deeper on c');
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(a, 'x', 'a newer file on a');
    partition(lab, ['a', 'b', 'c'], true);
    await converged([a, b, c]);
    const t = flat(b);
    expect(t['x']).toMatch(/^file/);
    expect(read(b, 'x')).toBe('a newer file on a');
    const copies = Object.keys(t).filter((k) => /^x\.gv-conflict-[^/]+$/.test(k));
    expect(copies).toHaveLength(1);
    expect(t[copies[0]!]).toMatch(/^dir/);
    for (const n of [a, b, c]) {
      expect(read(n, `${copies[0]}/inside`)).toBe('in the directory on c');
      expect(read(n, `${copies[0]}/sub/deeper`)).toBe('deeper on c');
    }
  }, 60_000);

  it('the directory losing to a file arrives with its contents in one pull: they go into the conflict copy', async () => {
    lab = new ReplicaLab();
    const [a, c] = [await lab.add('a'), await lab.add('c')];
    // c never hears of a's file (pulls from a fail), so it never resolves the conflict itself: a
    // gets the directory and everything in it as c still has it, in one run of content rows.
    lab.wrap = (peer, s) => (peer !== 'a' ? s : {
      journal: () => Promise.reject(new Error('a is unreadable in this test')),
      entries: () => Promise.reject(new Error('a is unreadable in this test')),
      block: () => Promise.reject(new Error('a is unreadable in this test')),
      catalog: () => Promise.reject(new Error('a is unreadable in this test')),
      list: () => Promise.reject(new Error('a is unreadable in this test')),
    });
    lab.setLink('a', 'c', false);
    lab.startAll();
    await mkdir(c, 'x');
    await writeFile(c, 'x/inside', 'in the directory on c');
    await mkdir(c, 'x/sub');
    await writeFile(c, 'x/sub/deeper', 'deeper on c');
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(a, 'x', 'a newer file on a');
    lab.setLink('a', 'c', true);
    const copyOf = (): string | undefined => Object.keys(flat(a)).find((k) => /^x\.gv-conflict-[^/]+$/.test(k));
    await waitFor('contents in the copy', () => {
      const cp = copyOf();
      return cp !== undefined && fs.existsSync(path.join(a.zoneDir, cp, 'sub', 'deeper'));
    }, 30_000, 50);
    const cp = copyOf()!;
    expect(read(a, 'x')).toBe('a newer file on a');
    expect(read(a, `${cp}/inside`)).toBe('in the directory on c');
    expect(read(a, `${cp}/sub/deeper`)).toBe('deeper on c');
    expect(a.repl.status()[0]!.members.find((m) => m.peerName === 'c')!.lastError).toBeNull();
    // Journaled under the copy too (what a gives its other peers).
    expect(a.att.journal.index.byPath(Buffer.from(`${cp}/sub/deeper`))?.origin).toBe(c.id);
    expect(c.att.journal.index.byPath(Buffer.from('x'))?.type).toBe('dir');
  }, 60_000);

  it('partition with 100 mixed changes on each side, then heal: converged, every write present', async () => {
    lab = new ReplicaLab();
    const [a, b, c] = [await lab.add('a'), await lab.add('b'), await lab.add('c')];
    lab.startAll();
    await mkdir(a, 'shared');
    for (let i = 0; i < 20; i++) await writeFile(a, `shared/s${i}`, `base ${i}\n`);
    await converged([a, b, c]);
    lab.setLink('a', 'c', false);
    lab.setLink('b', 'c', false);
    // The last content each node left at each path must survive (as the file or a conflict copy).
    const last = new Map<string, string | null>();
    let seq = 0;
    const put = async (n: LabNode, p: string, data: string): Promise<void> => {
      await writeFile(n, p, data);
      last.set(`${n.name}:${p}`, data);
    };
    const change = async (n: LabNode, i: number): Promise<void> => {
      const tag = `${n.name}-${seq++}`;
      switch (i % 5) {
        case 0:
          await put(n, `${n.name}-new-${i}`, `new ${tag}\n`);
          break;
        case 1: // edit a shared file (the other side edits or deletes some of the same)
          await put(n, `shared/s${i % 20}`, `edit ${tag}\n`);
          break;
        case 2: { // rename own earlier file
          const from = `${n.name}-new-${i - 2}`;
          if (fs.existsSync(path.join(n.zoneDir, from))) {
            await rename(n, from, `${n.name}-renamed-${i}`);
            last.set(`${n.name}:${n.name}-renamed-${i}`, last.get(`${n.name}:${from}`) ?? null);
            last.set(`${n.name}:${from}`, null);
          }
          break;
        }
        case 3: { // delete a shared file
          const p = `shared/s${(i * 7) % 20}`;
          if (fs.existsSync(path.join(n.zoneDir, p))) {
            await remove(n, p);
            last.set(`${n.name}:${p}`, null);
          }
          break;
        }
        default:
          await mkdir(n, `${n.name}-dir-${i}`);
          await put(n, `${n.name}-dir-${i}/f`, `in dir ${tag}\n`);
      }
    };
    for (let i = 0; i < 100; i++) {
      await change(a, i);
      await change(c, i);
      await new Promise((r) => setImmediate(r));
    }
    partition(lab, ['a', 'b', 'c'], true);
    const t0 = Date.now();
    await converged([a, b, c], 60_000);
    console.log(`partition healed: converged in ${Date.now() - t0} ms`);
    const tree = flat(a);
    const contents = new Set(Object.keys(tree).filter((k) => tree[k]!.startsWith('file')).map((k) => read(a, k)));
    const lost = [...last].filter(([, v]) => v !== null && !contents.has(v)).map(([k]) => k);
    expect(lost).toEqual([]);
    expect(conflictsOf(ZONE, a.att.journal).length).toBeGreaterThan(0);
    sameVectors([a, b, c]);
  }, 120_000);
});
