/**
 * The replication service around the applier: pull gate, per-member status, bandwidth limit, and
 * a local writer racing an incoming change (the local write is never lost).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PendingPaths } from '../src/replication/pull-gate.js';
import { conflictsOf } from '../src/replication/service.js';
import { idOf, ReplicaLab, ROOT_CTX, treeOf, writeFile, ZONE, type LabNode } from './harness/replica-cluster.js';
import { waitFor } from './harness/wait.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

const MB = 1024 * 1024;

function slowBlocks(l: ReplicaLab, ms: number): void {
  l.wrap = (_peer, s) => ({
    journal: s.journal.bind(s), entries: s.entries.bind(s), catalog: s.catalog.bind(s), list: s.list.bind(s),
    block: async (zone, p, off, len) => {
      await new Promise((r) => setTimeout(r, ms));
      return s.block(zone, p, off, len);
    },
  });
}

const memberOf = (n: LabNode, peer: string) => n.repl.status()[0]!.members.find((m) => m.peerName === peer)!;

describe('pull gate', () => {
  it('nothing pending: null at once; pending: resolves when applied, false after the wait', async () => {
    const gate = new PendingPaths((zone) => zone !== 'avail');
    expect(gate.wait('z', Buffer.from('f'), 1000)).toBeNull();
    expect(gate.idle('z')).toBe(true);
    const release = gate.add('z', [Buffer.from('f'), Buffer.from('g')]);
    expect(gate.idle('z')).toBe(false);
    const w = gate.wait('z', Buffer.from('f'), 5000)!;
    expect(w).not.toBeNull();
    expect(gate.wait('z', Buffer.from('other'), 1000)).toBeNull();
    expect(await gate.wait('z', Buffer.from('g'), 10)).toBe(false);
    release();
    expect(await w).toBe(true);
    expect(gate.count('z')).toBe(0);
    expect(gate.idle('z')).toBe(true);
    // 'available' zones never wait.
    const r2 = gate.add('avail', [Buffer.from('f')]);
    expect(gate.wait('avail', Buffer.from('f'), 1000)).toBeNull();
    r2();
  });

  it('a write to a path being pulled waits until the pull landed', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    slowBlocks(lab, 40);
    const data = Buffer.alloc(12 * MB, 0x5a);
    await writeFile(a, 'pulled.bin', data);
    lab.startAll();
    // (Wrapped: waitFor would await a bare promise.)
    const { w } = await waitFor('the path pending on B', () => {
      const p = b.repl.wait(ZONE, Buffer.from('pulled.bin'), 30_000);
      return p ? { w: p } : false;
    }, 20_000, 2);
    expect(fs.existsSync(path.join(b.zoneDir, 'pulled.bin'))).toBe(false);
    // Status while the transfer runs.
    const during = memberOf(b, "a");
    expect(during.pulling).toBe(true);
    expect(b.repl.status()[0]!.pendingPaths).toBeGreaterThan(0);
    expect(await w).toBe(true);
    expect(fs.readFileSync(path.join(b.zoneDir, 'pulled.bin')).equals(data)).toBe(true);
    await waitFor('in sync', () => b.repl.waitInSync(ZONE, 5000), 10_000);
    const after = memberOf(b, 'a');
    expect(after.bytesFetched).toBe(12 * MB);
    expect(after.behind).toBe('0');
    expect(after.applied).toBe(String(a.att.journal.version()));
    expect(after.lastError).toBeNull();
    expect(b.repl.status()[0]!.inSync).toBe(true);
  }, 60_000);
});

describe('bandwidth limit', () => {
  it('block bytes stay under the limit', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b', { bandwidth: 4 * MB });
    await writeFile(a, 'limited.bin', Buffer.alloc(10 * MB, 1));
    const t0 = Date.now();
    lab.startAll();
    await waitFor('file on B', () => b.att.journal.index.byPath(Buffer.from('limited.bin')), 30_000, 20);
    const secs = (Date.now() - t0) / 1000;
    console.log(`10 MB under a 4 MB/s limit took ${secs.toFixed(2)} s`);
    // A burst of one second's worth, then the rate: at least (10 - 4) / 4 s.
    expect(secs).toBeGreaterThan(1.2);
  }, 60_000);
});

describe('a local writer racing an incoming change', () => {
  it('a write pending on B is never overwritten: both versions survive on both nodes', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    lab.startAll();
    await writeFile(a, 'f.txt', 'base\n');
    await waitFor('base on B', () => b.att.journal.index.byPath(Buffer.from('f.txt')), 10_000);
    // B writes (not committed: the journal coalesces it for up to 200 ms) ...
    const id = await idOf(b, 'f.txt');
    await b.att.fs.write(ROOT_CTX, id, 0, Buffer.from('B!!!\n'), 'unstable');
    // ... while A's change arrives.
    await writeFile(a, 'f.txt', 'from A\n');
    await waitFor('converged', async () => {
      await a.att.journal.settled();
      await b.att.journal.settled();
      const ta = JSON.stringify([...treeOf(a.zoneDir)]);
      return ta === JSON.stringify([...treeOf(b.zoneDir)]) && treeOf(a.zoneDir).size === 2;
    }, 20_000, 50);
    for (const n of [a, b]) {
      const files = [...treeOf(n.zoneDir).keys()];
      const contents = files.map((f) => fs.readFileSync(path.join(n.zoneDir, f), 'utf8')).sort();
      expect(contents).toEqual(['B!!!\n', 'from A\n']);
      expect(conflictsOf(ZONE, n.att.journal)).toHaveLength(1);
    }
    expect(b.repl.applyStats(ZONE)!.redecided).toBeGreaterThan(0);
  }, 60_000);
});
