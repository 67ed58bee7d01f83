import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GvDatabase } from '../src/journal/db.js';
import { JournalService, type AttachedZone } from '../src/journal/service.js';
import { LocalZoneFs } from '../src/vfs/local.js';
import type { CallContext } from '../src/vfs/types.js';

const ROOT: CallContext = { uid: 0, gid: 0, gids: [], client: '127.0.0.1', origin: 'nfs' };
/** Long enough that nothing in these tests ever reaches the end of a batch wait. */
const FOREVER_MS = 600_000;

let tmp: string;
let db: GvDatabase;
let att: AttachedZone;

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Wait for `p`, starting queued journal tasks as they come (the batch wait never ends here); bounded. */
async function through<T>(p: Promise<T>): Promise<T> {
  let done = false;
  void p.finally(() => (done = true)).catch(() => undefined);
  for (let i = 0; i < 5000 && !done; i++) {
    att.journal.drainSoon();
    await new Promise((r) => setTimeout(r, 1));
  }
  return p;
}

beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-jdrain-'));
  const zoneDir = path.join(tmp, 'zone');
  fs.mkdirSync(zoneDir);
  db = GvDatabase.open(path.join(tmp, 'state'));
  const local = await LocalZoneFs.open({ name: 'z', zoneId: 1, root: zoneDir, db, usageScan: false });
  const svc = new JournalService(db, { nodeId: 'ab'.repeat(16), watch: false, batchMs: FOREVER_MS });
  att = await svc.attach(local, zoneDir);
  // The start-up scan is a task too (and queues others): let it through.
  await through(att.scanned);
});

afterEach(async () => {
  await through(att.fs.close());
  db.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('journal queue: drainSoon', () => {
  it('queued tasks wait for the batch; drainSoon starts them on the next turns', async () => {
    let ran = 0;
    const done = att.journal.enqueue('t1', () => void ran++);
    void att.journal.enqueue('t2', () => void ran++);
    for (let i = 0; i < 3; i++) await turn();
    expect(ran).toBe(0); // still waiting for the (long) batch
    att.journal.drainSoon();
    await done;
    for (let i = 0; i < 3 && ran < 2; i++) await turn();
    expect(ran).toBe(2);
    att.journal.drainSoon(); // nothing queued: a no-op
  });

  it('a COMMIT starts the tasks queued before it (they run while its fsync does)', async () => {
    const c = await att.fs.create(ROOT, att.fs.rootId, Buffer.from('f'), { mode: 'guarded', attrs: { mode: 0o644 } });
    await att.fs.write(ROOT, c.id, 0, Buffer.from('hello'), 'unstable');
    let ran = false;
    const queued = att.journal.enqueue('before commit', () => void (ran = true));
    await att.fs.commit(ROOT, c.id, 0, 0);
    await queued; // would wait for the batch (10 minutes) without the COMMIT's kick
    expect(ran).toBe(true);
    // The COMMIT's own flush (the new file with its content) is queued behind; a second kick lets it through.
    await through(att.journal.idle());
    const rows = att.journal.log.since(0n);
    expect(rows.map((r) => [r.kind, r.path.toString(), r.size])).toEqual([['create', 'f', 5n]]);
  });
});
