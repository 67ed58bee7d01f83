/**
 * Block transfers: only the blocks a node lacks cross the wire, interrupted transfers resume,
 * the target path never shows partial content, and hostile rows from a peer are refused.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChangeRow } from '../src/journal/changes.js';
import { ZoneApplier } from '../src/replication/apply.js';
import { BLOCK_SIZE, type RemoteEntry, type ReplicaSource } from '../src/replication/source.js';
import { vectorOf } from '../src/replication/vector.js';
import { hashBuffer } from '../src/journal/hasher.js';
import { scanZone } from '../src/journal/scan.js';
import { idOf, ReplicaLab, ROOT_CTX, writeFile, ZONE, type LabNode } from './harness/replica-cluster.js';
import { waitFor } from './harness/wait.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

const MB = 1024 * 1024;

/** Deterministic pseudo-random content (xorshift), fast enough for hundreds of MB. */
function content(bytes: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= bytes; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  return buf;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Counts block bytes per fetching node; optional failure after N blocks and delay per block. */
function counting(l: ReplicaLab): { bytes: Map<string, number>; failAfter: { n: number | null }; delayMs: { v: number } } {
  const bytes = new Map<string, number>();
  const failAfter = { n: null as number | null };
  const delayMs = { v: 0 };
  l.wrap = (_peer, s) => ({
    ...s,
    journal: s.journal.bind(s),
    entries: s.entries.bind(s),
    catalog: s.catalog.bind(s),
    block: async (zone, p, off, len) => {
      if (failAfter.n !== null) {
        if (failAfter.n <= 0) throw new Error('link dropped (test)');
        failAfter.n--;
      }
      if (delayMs.v > 0) await new Promise((r) => setTimeout(r, delayMs.v));
      const got = await s.block(zone, p, off, len);
      bytes.set('all', (bytes.get('all') ?? 0) + got.length);
      return got;
    },
  });
  return { bytes, failAfter, delayMs };
}

async function writeAt(n: LabNode, rel: string, offset: number, data: Buffer): Promise<void> {
  const id = await idOf(n, rel);
  await n.att.fs.write(ROOT_CTX, id, offset, data, 'unstable');
  await n.att.fs.commit(ROOT_CTX, id, 0, 0);
  await n.att.journal.idle();
}

describe('replication transfers', () => {
  it('200 MB file: initial sync, then a 1-byte change fetches exactly one block', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    const { bytes } = counting(lab);
    const data = content(200 * MB, 7);
    await writeFile(a, 'big.bin', data);
    let t0 = Date.now();
    lab.startAll();
    const target = path.join(b.zoneDir, 'big.bin');
    await waitFor('big file on B', () => b.att.journal.index.byPath(Buffer.from('big.bin')), 120_000, 50);
    const secs = (Date.now() - t0) / 1000;
    console.log(`initial sync of 200 MB: ${secs.toFixed(2)} s, ${(200 / secs).toFixed(0)} MB/s`);
    expect(sha(fs.readFileSync(target))).toBe(sha(data));
    expect(bytes.get('all')).toBe(200 * MB);

    bytes.clear();
    data[123 * MB + 45] ^= 0xff;
    await writeAt(a, 'big.bin', 123 * MB + 45, data.subarray(123 * MB + 45, 123 * MB + 46));
    t0 = Date.now();
    const wantHashes = a.att.journal.index.byPath(Buffer.from('big.bin'))!.hashes!;
    await waitFor('change on B', () => b.att.journal.index.byPath(Buffer.from('big.bin'))?.hashes?.equals(wantHashes), 120_000, 50);
    console.log(`1-byte change in 200 MB applied in ${Date.now() - t0} ms, ${bytes.get('all')} block bytes fetched`);
    expect(bytes.get('all')).toBe(BLOCK_SIZE);
    expect(sha(fs.readFileSync(target))).toBe(sha(data));
  }, 300_000);

  it('blocks present in any local file are copied, not fetched', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    const { bytes } = counting(lab);
    const x = content(3 * MB, 21);
    await writeFile(a, 'x.bin', x);
    lab.startAll();
    await waitFor('x on B', () => b.att.journal.index.byPath(Buffer.from('x.bin')), 30_000, 20);
    bytes.clear();
    // y: the 3 MB of x (another name, another file) plus 1 MB of new content.
    const y = Buffer.concat([x, content(MB, 22)]);
    await writeFile(a, 'sub-y.bin', y);
    await waitFor('y on B', () => b.att.journal.index.byPath(Buffer.from('sub-y.bin')), 30_000, 20);
    expect(sha(fs.readFileSync(path.join(b.zoneDir, 'sub-y.bin')))).toBe(sha(y));
    expect(bytes.get('all')).toBe(MB);
    expect(b.repl.applyStats(ZONE)!.reusedBytes).toBeGreaterThanOrEqual(3 * MB);
  }, 60_000);

  it('a chmod replicates without moving or copying content', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    const { bytes } = counting(lab);
    await writeFile(a, 'm.bin', content(3 * MB, 31), 0o644);
    lab.startAll();
    await waitFor('m on B', () => b.att.journal.index.byPath(Buffer.from('m.bin')), 30_000, 20);
    const before = { ...b.repl.applyStats(ZONE)! };
    const inoBefore = fs.statSync(path.join(b.zoneDir, 'm.bin')).ino;
    bytes.clear();
    await a.att.fs.setattr(ROOT_CTX, await idOf(a, 'm.bin'), { mode: 0o600 });
    await a.att.journal.idle();
    await waitFor('mode on B', () => (fs.statSync(path.join(b.zoneDir, 'm.bin')).mode & 0o777) === 0o600, 30_000, 20);
    expect(bytes.get('all') ?? 0).toBe(0);
    expect(b.repl.applyStats(ZONE)!.reusedBytes).toBe(before.reusedBytes);
    expect(fs.statSync(path.join(b.zoneDir, 'm.bin')).ino).toBe(inoBefore);
  }, 60_000);

  it('an interrupted transfer resumes: the retry fetches only the blocks still missing', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    const { bytes, failAfter } = counting(lab);
    const data = content(20 * MB + 5, 11);
    await writeFile(a, 'r.bin', data);
    failAfter.n = 7;
    lab.startAll();
    await waitFor('the pull to fail', () => b.repl.status()[0]!.members.find((m) => m.peerName === 'a')?.lastError, 20_000, 20);
    expect(fs.existsSync(path.join(b.zoneDir, 'r.bin'))).toBe(false);
    const first = bytes.get('all') ?? 0;
    expect(first).toBe(7 * BLOCK_SIZE);
    // The blocks fetched so far wait in the staging area.
    const tmpDir = path.join(b.zoneDir, '.grapevine/tmp');
    expect(fs.readdirSync(tmpDir)).toHaveLength(1);
    bytes.clear();
    failAfter.n = null;
    await waitFor('file on B', () => b.att.journal.index.byPath(Buffer.from('r.bin')), 30_000, 20);
    expect(sha(fs.readFileSync(path.join(b.zoneDir, 'r.bin')))).toBe(sha(data));
    expect(bytes.get('all')).toBe(data.length - 7 * BLOCK_SIZE);
    expect(b.repl.applyStats(ZONE)!.resumedBytes).toBe(7 * BLOCK_SIZE);
    expect(fs.readdirSync(tmpDir)).toEqual([]);
  }, 120_000);

  it('the target path never shows partial content while a transfer runs', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    const b = await lab.add('b');
    const { delayMs } = counting(lab);
    const old = content(4 * MB, 3);
    await writeFile(a, 'p.bin', old);
    lab.startAll();
    await waitFor('first version on B', () => b.att.journal.index.byPath(Buffer.from('p.bin')), 30_000, 20);
    const fresh = content(24 * MB, 5);
    delayMs.v = 50;
    await writeFile(a, 'p.bin', fresh);
    // Every look must be a whole version A journaled (A's own writer passes through a truncate
    // and partial states, each journaled as a version of its own), never a transfer in progress.
    const target = path.join(b.zoneDir, 'p.bin');
    const seenHashes = new Set<string>();
    let looks = 0;
    let duringTransfer = 0;
    let sawNew = false;
    const tmpDir = path.join(b.zoneDir, '.grapevine/tmp');
    for (let i = 0; i < 5000 && !sawNew; i++) {
      if (fs.existsSync(tmpDir) && fs.readdirSync(tmpDir).length > 0) duringTransfer++;
      const seen = fs.readFileSync(target);
      seenHashes.add(hashBuffer(seen).toString('hex'));
      sawNew = seen.length === fresh.length && sha(seen) === sha(fresh);
      looks++;
      await new Promise((r) => setTimeout(r, 5));
    }
    const journaled = new Set(a.att.journal.log.since(0n).filter((r) => r.hashes && r.path.toString() === 'p.bin').map((r) => r.hashes!.toString('hex')));
    expect([...seenHashes].filter((h) => !journaled.has(h))).toEqual([]);
    expect(sawNew).toBe(true);
    expect(duringTransfer).toBeGreaterThan(3);
    console.log(`looked at the target ${looks} times (${duringTransfer} with a transfer in progress); every look was a whole version`);
  }, 120_000);
});

describe('hostile rows', () => {
  it('paths with .., absolute, NUL, through a symlink, into .grapevine are refused and counted; nothing written outside', async () => {
    lab = new ReplicaLab();
    const b = await lab.add('b');
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-outside-'));
    try {
      fs.symlinkSync(outside, path.join(b.zoneDir, 'escape'));
      fs.mkdirSync(path.join(b.zoneDir, 'plain'));
      await b.att.journal.enqueue('scan', async () => {
        await scanZone(b.att.journal, b.zoneDir);
      });
      const evil = ['../evil', '/tmp/evil-abs', 'a\0b', 'escape/evil', '.grapevine/tmp/evil', '.grapevine', 'plain/../../evil', 'plain//x', './x', 'escape'];
      const payload = Buffer.from('pwned');
      const vec = vectorOf([['ee'.repeat(16), 1]]);
      const rows: ChangeRow[] = evil.map((p, i) => ({
        version: BigInt(i + 1), kind: 'create', fileid: BigInt(100 + i), path: Buffer.from(p), toPath: null, type: 'file',
        size: 5n, mtimeNs: 1n, mode: 0o644, hashes: hashBuffer(payload), target: null, origin: 'ee'.repeat(16), vector: vec, atMs: 0,
      }));
      rows.push({ ...rows[0]!, version: 99n, kind: 'rename', path: Buffer.from('plain'), toPath: Buffer.from('../../moved') });
      rows.push({ ...rows[0]!, version: 100n, kind: 'remove', path: Buffer.from('../../etc/passwd') });
      const hostile: ReplicaSource = {
        journal: async () => ({ rows, version: 100n }),
        entries: async (_z, paths) => paths.map((p): RemoteEntry => ({
          path: p, type: 'file', size: 5n, mtimeNs: 1n, mode: 0o100644, vector: vec, origin: 'ee'.repeat(16),
          hashes: hashBuffer(payload), target: null, data: payload,
        })),
        block: async () => payload,
        catalog: async () => ({ version: 0, zones: [], deleted: [], nodes: [] }),
        // A listing of the same hostile paths (the rename's destination, if it were a directory).
        list: async () => ({
          entries: evil.map((p): RemoteEntry => ({
            path: Buffer.from(p), type: 'file', size: 5n, mtimeNs: 1n, mode: 0o100644, vector: vec, origin: 'ee'.repeat(16),
            hashes: hashBuffer(payload), target: null, data: payload,
          })),
          version: 100n, done: true, next: null,
        }),
      };
      const applier = new ZoneApplier({ name: ZONE, root: b.zoneDir, journal: b.att.journal });
      await applier.apply(hostile, rows);
      // 'escape' itself names the symlink: replacing the link (not writing through it) is allowed.
      expect(applier.stats.refused).toBe(evil.length - 1 + 2);
      expect(fs.readdirSync(outside)).toEqual([]);
      expect(fs.existsSync(path.join(b.dir, 'evil'))).toBe(false);
      expect(fs.existsSync('/tmp/evil-abs')).toBe(false);
      expect(fs.readdirSync(path.join(b.zoneDir, '.grapevine/tmp'))).toEqual([]);
      expect(fs.readdirSync(path.join(b.zoneDir, 'plain'))).toEqual([]);
    } finally {
      fs.rmSync(outside, { recursive: true, force: true });
    }
  }, 60_000);
});
