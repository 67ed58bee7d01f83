import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChangeLog } from '../src/journal/changes.js';
import { GvDatabase } from '../src/journal/db.js';
import { hashBuffer } from '../src/journal/hasher.js';
import { JournalService } from '../src/journal/service.js';
import { LocalZoneFs } from '../src/vfs/local.js';
import { crashContent, spawnCrashChild } from './harness/crash-child.js';
import { ensureBuilt } from './harness/daemon.js';

let tmp: string | null = null;

beforeAll(() => ensureBuilt(), 200_000);

afterEach(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  tmp = null;
});

/** Output lines of the child until `pred` holds for one (bounded). */
function waitLine(child: ReturnType<typeof spawnCrashChild>, pred: (l: string) => boolean, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`child did not get there in ${ms} ms; stderr: ${err}`)), ms);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      if (lines.some(pred)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`child exited (${code}): ${err}`));
    });
  });
}

/** Which file number a path stands for ("f12" / "r12"). */
const numberOf = (p: Buffer): number => Number(p.toString().slice(1));

describe('journal crash safety', () => {
  for (const round of [0, 1, 2]) {
    it(`SIGKILL mid-stream (round ${round}): versions contiguous, nothing recorded that did not happen`, async () => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-jcrash-'));
      const stateDir = path.join(tmp, 'state');
      const zoneDir = path.join(tmp, 'zone');
      fs.mkdirSync(zoneDir);
      const child = spawnCrashChild(stateDir, zoneDir);
      const exited = new Promise((r) => child.once('exit', r));
      try {
        await waitLine(child, (l) => l === 'ready', 20_000);
        // Let it run a varying while, then kill it wherever it is.
        await waitLine(child, (l) => l === `i ${60 + round * 40}`, 60_000);
        await new Promise((r) => setTimeout(r, 7 * round));
      } finally {
        child.kill('SIGKILL');
        await exited;
      }

      const db = GvDatabase.open(stateDir);
      try {
        const log = new ChangeLog(db, 'z');
        const rows = log.since(0n, 1_000_000);
        expect(rows.length).toBeGreaterThan(40);
        // Contiguous from 1, unique, and the counter says exactly the last one.
        rows.forEach((r, i) => expect(r.version).toBe(BigInt(i + 1)));
        expect(log.version()).toBe(BigInt(rows.length));
        // Every content row holds the hashes of the content that was written for that file.
        for (const r of rows.filter((x) => x.kind === 'create' || x.kind === 'write')) {
          const n = numberOf(r.path);
          expect(r.hashes!.equals(hashBuffer(crashContent(n))), `row ${r.version} ${r.kind} ${r.path}`).toBe(true);
          expect(r.size).toBe(BigInt(crashContent(n).length));
        }
        // A removal is only recorded for a file that was created (journaled) before it.
        const created = new Set(rows.filter((r) => r.kind === 'create').map((r) => r.fileid));
        for (const r of rows.filter((x) => x.kind !== 'create')) expect(created.has(r.fileid), `row ${r.version} ${r.kind} ${r.path} ${r.fileid}`).toBe(true);
        // The index describes files that exist, with exactly their content. The one exception is
        // the tail in flight at the kill: the child does not wait for the journal (its tasks run
        // on a queue after each call returns), so a rename or removal that reached the disk may
        // not be journaled yet. Such an entry must be the name a later step of the child's own
        // sequence moves or removes, no row may say that step happened, and it must be among the
        // last files made.
        const onDiskNames = fs.readdirSync(zoneDir);
        const newest = Math.max(...onDiskNames.map((n) => numberOf(Buffer.from(n))));
        let inFlight = 0;
        for (const e of log.index.all()) {
          const name = e.path.toString();
          const n = numberOf(e.path);
          if (!onDiskNames.includes(name)) {
            inFlight++;
            const movedLater = name === `f${n}` && n % 7 === 3;
            const removedLater = n % 11 === 5;
            expect(movedLater || removedLater, `${name} is indexed but gone, and nothing the child does removes it`).toBe(true);
            const later = rows.filter((r) => numberOf(r.path) === n && (r.kind === 'remove' || (r.kind === 'rename' && r.path.toString() === name)));
            expect(later, `${name}: its move or removal is journaled, yet the index still has it`).toEqual([]);
            expect(n, `${name} is indexed but gone, and is not among the last files made (newest f${newest})`).toBeGreaterThan(newest - 16);
            continue;
          }
          const onDisk = fs.readFileSync(path.join(zoneDir, name));
          expect(e.hashes!.equals(hashBuffer(onDisk)), name).toBe(true);
          expect(onDisk.equals(crashContent(n))).toBe(true);
        }
        if (inFlight) console.log(`in flight at the kill: ${inFlight}`);
        expect(inFlight).toBeLessThanOrEqual(4);
      } finally {
        db.close();
      }

      // Reopen with the journal: the scan journals what reached the disk but not the journal, and
      // afterwards the index is exactly what is on disk; versions still contiguous.
      const db2 = GvDatabase.open(stateDir);
      try {
        const local = await LocalZoneFs.open({ name: 'z', zoneId: 1, root: zoneDir, db: db2, usageScan: false });
        const att = await new JournalService(db2, { nodeId: 'ab'.repeat(16), watch: false }).attach(local, zoneDir);
        const s = await att.scanned;
        expect(s.changes).toBeLessThanOrEqual(16); // only the few changes in flight at the kill
        const rows = att.journal.log.since(0n, 1_000_000);
        rows.forEach((r, i) => expect(r.version).toBe(BigInt(i + 1)));
        const names = fs.readdirSync(zoneDir).sort();
        expect(att.journal.index.all().map((e) => e.path.toString()).sort()).toEqual(names);
        for (const n of names) {
          const e = att.journal.index.byPath(Buffer.from(n))!;
          expect(e.hashes!.equals(hashBuffer(fs.readFileSync(path.join(zoneDir, n))))).toBe(true);
        }
        await att.fs.close();
      } finally {
        db2.close();
      }
    }, 120_000);
  }
});
