/**
 * A directory zone's quota and usage count replicated data: what the engine places or removes
 * moves the zone's usage, and files that would take it past its quota wait (logged, in the
 * member's lastError, retried) with nothing half-applied; raising the quota lets them in.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { mkdir, remove, ReplicaLab, treeOf, writeFile, ZONE, type LabNode } from './harness/replica-cluster.js';
import { waitFor } from './harness/wait.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

const KiB = 1024;

/** Allocated bytes of everything in the zone but its root and the staging area. */
function allocated(n: LabNode): bigint {
  let sum = 0n;
  for (const rel of treeOf(n.zoneDir).keys()) sum += fs.lstatSync(path.join(n.zoneDir, rel), { bigint: true }).blocks * 512n;
  return sum;
}

const memberA = (n: LabNode) => n.repl.status()[0]!.members.find((m) => m.peerName === 'a')!;

describe('quota of a directory zone and replicated data', () => {
  it('counts applied data, holds back what does not fit (lastError, retried), takes it once the quota allows', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b', { quotaBytes: 250 * KiB });
    await mkdir(a, 'd');
    for (let i = 1; i <= 3; i++) await writeFile(a, `d/f${i}`, Buffer.alloc(100 * KiB, i));
    lab.startAll();
    await waitFor('B refuses past its quota', async () => /quota exceeded/.test(memberA(b).lastError ?? ''), 20_000, 50);
    await b.att.journal.settled();
    // What fitted is there, whole; the file that did not fit is absent; nothing half-written.
    expect(fs.readFileSync(path.join(b.zoneDir, 'd/f1')).equals(Buffer.alloc(100 * KiB, 1))).toBe(true);
    expect(fs.readFileSync(path.join(b.zoneDir, 'd/f2')).equals(Buffer.alloc(100 * KiB, 2))).toBe(true);
    expect(fs.existsSync(path.join(b.zoneDir, 'd/f3'))).toBe(false);
    expect(b.att.journal.index.byPath(Buffer.from('d/f3'))).toBeUndefined();
    expect(b.local.usage.used).toBe(allocated(b));
    expect(b.local.usage.used).toBeLessThanOrEqual(250n * 1024n);
    expect(b.repl.status()[0]!.inSync).toBe(false);
    expect(b.repl.applyStats(ZONE)!.quotaRefused).toBeGreaterThan(0);
    expect(fs.readdirSync(path.join(b.zoneDir, '.grapevine/tmp'))).toEqual([]);
    // The quota is raised: the retry takes the rest.
    b.local.setQuota(1024 * KiB);
    await waitFor('B catches up', async () => {
      await b.att.journal.settled();
      return fs.existsSync(path.join(b.zoneDir, 'd/f3')) && b.repl.status()[0]!.inSync && memberA(b).lastError === null;
    }, 40_000, 50);
    expect(Object.fromEntries(treeOf(b.zoneDir))).toEqual(Object.fromEntries(treeOf(a.zoneDir)));
    expect(b.local.usage.used).toBe(allocated(b));
    // A removal and an overwrite on A move B's usage too.
    const before = b.local.usage.used;
    await remove(a, 'd/f1');
    await writeFile(a, 'd/f2', Buffer.alloc(10 * KiB, 7));
    await waitFor('B follows', async () => {
      await b.att.journal.settled();
      return !fs.existsSync(path.join(b.zoneDir, 'd/f1')) && fs.statSync(path.join(b.zoneDir, 'd/f2')).size === 10 * KiB;
    }, 20_000, 50);
    expect(b.local.usage.used).toBe(allocated(b));
    expect(b.local.usage.used).toBeLessThan(before - 150n * 1024n);
  }, 90_000);
});
