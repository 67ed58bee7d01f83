/**
 * Test harness: a child process that journals in a loop, to be SIGKILLed mid-stream
 * (test/journal-crash.test.ts). It opens a zone directly (no NFS) through the journaled ZoneFs
 * from dist/ (built by ensureBuilt) and, forever: creates file i, writes crashContent(i), commits,
 * and now and then renames, chmods or removes it. It prints "ready" once the journal is open and
 * "i N" every 20 files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './daemon.js';

/** What file i holds once written (deterministic, 10 bytes .. ~1.2 MiB). */
export function crashContent(i: number): Buffer {
  const unit = Buffer.from(`file ${String(i).padStart(6, '0')};`);
  const reps = i % 13 === 0 ? 100_000 : 1 + (i % 40);
  return Buffer.alloc(unit.length * reps, unit);
}

const dist = (p: string): string => pathToFileURL(path.join(REPO_ROOT, 'dist', p)).href;

function childSource(): string {
  return `
const { GvDatabase } = await import(${JSON.stringify(dist('journal/db.js'))});
const { LocalZoneFs } = await import(${JSON.stringify(dist('vfs/local.js'))});
const { JournalService } = await import(${JSON.stringify(dist('journal/service.js'))});
const [stateDir, zoneDir] = process.argv.slice(1);
const ROOT = { uid: 0, gid: 0, gids: [], client: 'crash', origin: 'nfs' };
const content = ${crashContent.toString()};
const db = GvDatabase.open(stateDir);
const local = await LocalZoneFs.open({ name: 'z', zoneId: 1, root: zoneDir, db, usageScan: false });
const svc = new JournalService(db, { nodeId: 'c0ffee00c0ffee00c0ffee00c0ffee00', watch: false, settleMs: 20 });
const att = await svc.attach(local, zoneDir);
await att.scanned;
const z = att.fs;
const b = (s) => Buffer.from(s);
process.stdout.write('ready\\n');
for (let i = 0; ; i++) {
  const c = await z.create(ROOT, z.rootId, b('f' + i), { mode: 'guarded', attrs: { mode: 0o644 } });
  const data = content(i);
  for (let off = 0; off < data.length; off += 65536) await z.write(ROOT, c.id, off, data.subarray(off, off + 65536), 'unstable');
  await z.commit(ROOT, c.id, 0, 0);
  let name = 'f' + i;
  if (i % 7 === 3) { await z.rename(ROOT, z.rootId, b(name), z.rootId, b('r' + i)); name = 'r' + i; }
  if (i % 5 === 1) await z.setattr(ROOT, c.id, { mode: 0o600 });
  if (i % 11 === 5) await z.remove(ROOT, z.rootId, b(name));
  if (i % 20 === 0) process.stdout.write('i ' + i + '\\n');
}
`;
}

/** Start the child on `stateDir` / `zoneDir`. */
export function spawnCrashChild(stateDir: string, zoneDir: string): ChildProcess {
  return spawn(process.execPath, ['--input-type=module', '-e', childSource(), stateDir, zoneDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}
