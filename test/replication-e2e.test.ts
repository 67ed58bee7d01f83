/**
 * Replication end to end: three gvd in network namespaces (test/harness/cluster.ts), the zone
 * created on one node and replicated through the catalog, data written through NFS on one node
 * and read back through NFS on the others.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsSkipReason, startCluster, zoneDir, type TestCluster } from './harness/cluster.js';
import { waitFor } from './harness/wait.js';

const HOSTS = ['a', 'b', 'c'];

/** Every file under `dir` on `host` through NFS: relative path → content (hex digest would do; bytes are small). */
async function tree(host: string, dir = ''): Promise<Map<string, string>> {
  const nfs = await c.nfs(host);
  const out = new Map<string, string>();
  try {
    const walk = async (d: string, depth: number): Promise<void> => {
      if (depth > 8) return;
      for (const name of await nfs.list(d)) {
        const p = d ? `${d}/${name}` : name;
        const st = await nfs.stat(p);
        if (!st) continue;
        if (st.type === 2) {
          out.set(p + '/', '');
          await walk(p, depth + 1);
        } else if (st.type === 5) {
          const l = await nfs.client.readlink((await nfs.lookup(p))!);
          out.set(p, `-> ${l.ok?.target}`);
        } else out.set(p, (await nfs.readFile(p)).toString('latin1'));
      }
    };
    await walk(dir, 0);
  } finally {
    nfs.close();
  }
  return out;
}

const same = (a: Map<string, string>, b: Map<string, string>): boolean =>
  a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

/**
 * Wait until every host has the same tree under `dir`, and the same in two reads in a row; answers
 * it. (A tree is read file by file while pulls land, so a read can mix states: during a conflict,
 * the directory listed before the loser was moved aside and the winner's content read after it
 * landed, on every host at once, looks converged for a few milliseconds.)
 */
async function converged(dir: string, ms = 60_000): Promise<Map<string, string>> {
  let last: Map<string, string>[] = [];
  let before: Map<string, string> | undefined;
  try {
    await waitFor(`hosts converge on ${dir || '/'}`, async () => {
      try {
        last = await Promise.all(HOSTS.map((h) => tree(h, dir)));
      } catch {
        before = undefined;
        return undefined; // not there yet on some host
      }
      const now = last.every((t) => same(t, last[0]!)) ? last[0]! : undefined;
      const stable = now !== undefined && before !== undefined && same(now, before);
      before = now;
      return stable ? true : undefined;
    }, ms, 250);
  } catch (err) {
    const show = last.map((t, i) => `${HOSTS[i]}: ${[...t.keys()].join(' ')}`).join('\n');
    throw new Error(`${(err as Error).message}\n${show}`);
  }
  return last[0]!;
}

const SKIP = netnsSkipReason();
if (SKIP) console.warn(`replication e2e tests skipped: ${SKIP}`);

let c: TestCluster;

describe.skipIf(SKIP !== null)('replication across three hosts', () => {
  beforeAll(async () => {
    c = await startCluster({
      hosts: HOSTS, zoneCreate: 'first',
      // B pulls at most 40 MB/s, so a 200 MB transfer is long enough to be interrupted.
      configExtra: (h) => (h === 'b' ? '[replication]\nmax_bandwidth = "40M"\n' : ''),
    });
  }, 180_000);

  afterAll(async () => {
    await c?.stop();
  }, 60_000);

  it('a write through NFS on A is readable, byte for byte, through NFS on B and C', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const a = await c.nfs('a');
    try {
      await a.mkdirp('docs/2026');
      await a.writeFile('docs/2026/report.bin', data);
    } finally {
      a.close();
    }
    await c.waitContent('b', 'docs/2026/report.bin', data, 30_000);
    await c.waitContent('c', 'docs/2026/report.bin', data, 30_000);
  }, 120_000);

  it('transitive: with A and C partitioned from each other but both seeing B, a write on A reaches C', async (ctx) => {
    const why = c.cluster.lab.pairSupport();
    if (why) {
      console.warn(`transitive test skipped: pair partitions need nftables here (${why})`);
      ctx.skip();
    }
    c.partitionPair('a', 'c');
    try {
      await c.waitPeers('a', { reachable: ['b'], unreachable: ['c'] });
      await c.waitPeers('c', { reachable: ['b'], unreachable: ['a'] });
      const data = randomBytes(200_000);
      const a = await c.nfs('a');
      try {
        await a.writeFile('via-b.bin', data);
      } finally {
        a.close();
      }
      await c.waitContent('c', 'via-b.bin', data, 30_000);
      // C never talked to A: everything came through B.
      expect(c.ping('a', 'c')).toBe(false);
    } finally {
      c.healPair('a', 'c');
    }
  }, 120_000);

  it('concurrent edits of one file on A and C during a partition: same winner and same conflict copy everywhere', async () => {
    const a0 = await c.nfs('a');
    try {
      await a0.mkdirp('conflict');
      await a0.writeFile('conflict/notes.txt', 'original\n');
    } finally {
      a0.close();
    }
    await converged('conflict');
    c.partition('c');
    try {
      await c.waitPeers('a', { unreachable: ['c'] });
      await c.waitPeers('c', { unreachable: ['a', 'b'] });
      const a = await c.nfs('a');
      const cc = await c.nfs('c');
      try {
        await a.writeFile('conflict/notes.txt', 'edited on A\n');
        // C's edit is later: its mtime is newer, so C wins everywhere.
        await new Promise((r) => setTimeout(r, 1100));
        await cc.writeFile('conflict/notes.txt', 'edited on C, later\n');
      } finally {
        a.close();
        cc.close();
      }
    } finally {
      c.heal('c');
    }
    // Both edits are kept: wait for the conflict copy to be everywhere (a lost edit never gets one).
    await waitFor('a conflict copy on every host', async () => {
      const trees = await Promise.all(HOSTS.map((h) => tree(h, 'conflict').catch(() => new Map<string, string>())));
      return trees.every((t) => [...t.keys()].some((k) => k.includes('.gv-conflict-'))) ? true : undefined;
    }, 60_000, 250);
    const t = await converged('conflict');
    expect(t.get('conflict/notes.txt')).toBe('edited on C, later\n');
    const copies = [...t.keys()].filter((k) => k.includes('.gv-conflict-'));
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(/^conflict\/notes\.gv-conflict-\d{8}-\d{6}-[0-9a-f]{7}\.txt$/);
    expect(t.get(copies[0]!)).toBe('edited on A\n');
    // gv conflicts lists it on every node.
    for (const h of HOSTS) {
      const r = await c.gv(h, ['conflicts', 'tier-1', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.stringify(JSON.parse(r.stdout))).toContain('notes.gv-conflict-');
    }
  }, 180_000);

  it('offline laptop: C partitioned, 100 changes on A and on C, heal: converged, nothing lost', async () => {
    const D = 'laptop';
    const a0 = await c.nfs('a');
    try {
      await a0.mkdirp(D);
      for (let i = 0; i < 20; i++) await a0.writeFile(`${D}/base-${i}.txt`, `base ${i}\n`);
    } finally {
      a0.close();
    }
    await converged(D);
    c.partition('c');
    let opsA = 0;
    let opsC = 0;
    try {
      await c.waitPeers('c', { unreachable: ['a', 'b'] });
      const a = await c.nfs('a');
      try {
        for (let i = 0; i < 46; i++, opsA++) await a.writeFile(`${D}/a-new-${i}.txt`, `A new ${i}\n`);
        for (let i = 0; i < 20; i++, opsA++) await a.writeFile(`${D}/a-new-${i}.txt`, `A new ${i}, edited\n`);
        for (let i = 5; i < 10; i++, opsA++) await a.writeFile(`${D}/base-${i}.txt`, `A edit ${i}\n`);
        for (let i = 10; i < 15; i++, opsA++) await a.rename(`${D}/base-${i}.txt`, `${D}/a-renamed-${i}.txt`);
        for (let i = 15; i < 18; i++, opsA++) await a.remove(`${D}/base-${i}.txt`);
        await a.mkdirp(`${D}/a-dir`);
        opsA++;
        for (let i = 0; i < 20; i++, opsA++) await a.writeFile(`${D}/a-dir/f${i}`, `A dir ${i}\n`);
      } finally {
        a.close();
      }
      // C's edits come later than A's: C wins the concurrent ones on mtime.
      await new Promise((r) => setTimeout(r, 1100));
      const cc = await c.nfs('c');
      try {
        for (let i = 0; i < 47; i++, opsC++) await cc.writeFile(`${D}/c-new-${i}.txt`, `C new ${i}\n`);
        for (let i = 0; i < 20; i++, opsC++) await cc.writeFile(`${D}/c-new-${i}.txt`, `C new ${i}, edited\n`);
        for (let i = 5; i < 10; i++, opsC++) await cc.writeFile(`${D}/base-${i}.txt`, `C edit ${i}\n`);
        await cc.writeFile(`${D}/base-15.txt`, 'C edit 15\n'); // A deletes it: modify beats delete
        opsC++;
        for (let i = 18; i < 20; i++, opsC++) await cc.remove(`${D}/base-${i}.txt`);
        for (let i = 1; i < 5; i++, opsC++) await cc.rename(`${D}/base-${i}.txt`, `${D}/c-renamed-${i}.txt`);
        await cc.mkdirp(`${D}/c-dir`);
        opsC++;
        for (let i = 0; i < 20; i++, opsC++) await cc.writeFile(`${D}/c-dir/f${i}`, `C dir ${i}\n`);
      } finally {
        cc.close();
      }
    } finally {
      c.heal('c');
    }
    expect(opsA).toBe(100);
    expect(opsC).toBe(100);
    const t = await converged(D, 120_000);
    const want = new Map<string, string>();
    want.set(`${D}/base-0.txt`, 'base 0\n');
    for (let i = 0; i < 46; i++) want.set(`${D}/a-new-${i}.txt`, i < 20 ? `A new ${i}, edited\n` : `A new ${i}\n`);
    for (let i = 0; i < 47; i++) want.set(`${D}/c-new-${i}.txt`, i < 20 ? `C new ${i}, edited\n` : `C new ${i}\n`);
    for (let i = 5; i < 10; i++) want.set(`${D}/base-${i}.txt`, `C edit ${i}\n`);
    for (let i = 10; i < 15; i++) want.set(`${D}/a-renamed-${i}.txt`, `base ${i}\n`);
    want.set(`${D}/base-15.txt`, 'C edit 15\n');
    for (let i = 1; i < 5; i++) want.set(`${D}/c-renamed-${i}.txt`, `base ${i}\n`);
    want.set(`${D}/a-dir/`, '');
    want.set(`${D}/c-dir/`, '');
    for (let i = 0; i < 20; i++) {
      want.set(`${D}/a-dir/f${i}`, `A dir ${i}\n`);
      want.set(`${D}/c-dir/f${i}`, `C dir ${i}\n`);
    }
    const copies = new Map([...t].filter(([k]) => k.includes('.gv-conflict-')));
    const rest = new Map([...t].filter(([k]) => !k.includes('.gv-conflict-')));
    expect([...rest.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, v] of want) expect(rest.get(k), k).toBe(v);
    // A's five concurrent edits lost on mtime and are kept as conflict copies, one each.
    expect(copies.size).toBe(5);
    for (let i = 5; i < 10; i++) {
      const mine = [...copies].filter(([k]) => k.startsWith(`${D}/base-${i}.gv-conflict-`));
      expect(mine, `copy of base-${i}`).toHaveLength(1);
      expect(mine[0]![1]).toBe(`A edit ${i}\n`);
    }
  }, 300_000);

  it('kill -9 of the pulling daemon in the middle of a 200 MB transfer, restart: converges, no partial file ever visible; a 1-byte change then moves about one block', async () => {
    const size = 200 * 1024 * 1024;
    const data = randomBytes(size);
    const digest = createHash('sha256').update(data).digest('hex');
    const target = path.join(zoneDir(c, 'b', 'tier-1'), 'big.bin');
    // Watch B's copy of the file on its disk the whole time: absent, or a complete version that A
    // journaled (under load A's journal may record the 200 MB write in two steps — the write
    // stream's 5 s limit — and B may place that earlier, complete version first; what must never
    // show is a file that is still being written).
    const seen = new Set<number>();
    let polls = 0;
    const poll = (): void => {
      polls++;
      try {
        seen.add(fs.statSync(target).size);
      } catch {
        /* not there yet */
      }
    };
    const watch = setInterval(poll, 20);
    try {
      const before = c.portBytes('b').toHost;
      const a = await c.nfs('a');
      try {
        await a.writeFile('big.bin', data);
      } finally {
        a.close();
      }
      // Let B fetch part of it (its pulls are limited to 40 MB/s), then kill it.
      await waitFor('B fetched 60 MB', () => (c.portBytes('b').toHost - before > 60 * 1024 * 1024 ? true : undefined), 60_000, 50);
      await c.kill9('b');
      const atKill = c.portBytes('b').toHost - before;
      expect(fs.existsSync(target) ? fs.statSync(target).size : -1).not.toBe(size - 1);
      await c.restart('b');
      await waitFor('B has big.bin', () => {
        try {
          return fs.statSync(target).size === size ? true : undefined;
        } catch {
          return undefined;
        }
      }, 120_000, 100);
      // The poller and this wait share the event loop: the wait may see the complete file before
      // the poller's next tick (and the hashing below blocks the loop), so look once more here.
      poll();
      const total = c.portBytes('b').toHost - before;
      console.log(`200 MB transfer: ${atKill} bytes reached B before kill -9, ${total} in all; ${polls} polls of B's copy`);
      expect(createHash('sha256').update(fs.readFileSync(target)).digest('hex')).toBe(digest);
      // Resumed: what was fetched before the kill was not fetched again (200 MB + a little, not 200 MB + what came before).
      expect(total).toBeLessThan(size + atKill / 2);
      expect(atKill).toBeGreaterThan(60 * 1024 * 1024);
    } finally {
      clearInterval(watch);
    }
    // Every size B ever showed is the size of a version A journaled for big.bin.
    const db = new Database(path.join(c.node('a').stateDir, 'gv.sqlite'), { readonly: true });
    let journaled: Set<number>;
    try {
      const rows = db.prepare("SELECT size FROM zone_changes WHERE zone = 'tier-1' AND path = ? AND size IS NOT NULL").all(Buffer.from('big.bin')) as { size: number }[];
      journaled = new Set(rows.map((r) => Number(r.size)));
    } finally {
      db.close();
    }
    expect(journaled.has(size)).toBe(true);
    for (const s of seen) expect(journaled.has(s), `B showed big.bin at ${s} bytes; A journaled ${[...journaled].join(', ')}`).toBe(true);
    expect(seen.has(size)).toBe(true);
    expect(polls).toBeGreaterThan(10);

    // One byte changed in the middle: B and C each fetch about one 1 MiB block, not 200 MB.
    for (const h of HOSTS) await c.waitQuiet('a', h).catch(() => undefined);
    const wire = () => c.portBytes('b').toHost + c.portBytes('c').toHost;
    const w0 = wire();
    const a = await c.nfs('a');
    try {
      const fh = (await a.lookup('big.bin'))!;
      const one = Buffer.from([data[size / 2]! ^ 0xff]);
      const r = await a.client.write(fh, BigInt(size / 2), one, 2);
      expect(r.status).toBe(0);
    } finally {
      a.close();
    }
    data[size / 2] ^= 0xff;
    const digest2 = createHash('sha256').update(data).digest('hex');
    for (const h of ['b', 'c']) {
      const f = path.join(zoneDir(c, h, 'tier-1'), 'big.bin');
      await waitFor(`${h} has the edit`, () => (fs.readFileSync(f).subarray(size / 2, size / 2 + 1).equals(data.subarray(size / 2, size / 2 + 1)) ? true : undefined), 60_000, 100);
      expect(createHash('sha256').update(fs.readFileSync(f)).digest('hex')).toBe(digest2);
    }
    const moved = wire() - w0;
    console.log(`1-byte edit of a 200 MB file: ${moved} bytes reached B and C together`);
    expect(moved).toBeLessThan(2 * (1024 * 1024 + 512 * 1024));
    expect(moved).toBeGreaterThan(2 * 1024 * 1024 - 1);
  }, 400_000);

  it('directories, empty files, symlinks, and a rename and a delete of a 1,000-entry tree replicate', async () => {
    const a = await c.nfs('a');
    try {
      for (let d = 0; d < 10; d++) {
        await a.mkdirp(`tree/d${d}`);
        for (let f = 0; f < 99; f++) await a.writeFile(`tree/d${d}/f${f}`, f % 10 === 0 ? '' : `tree ${d}/${f}\n`);
      }
      const t = (await a.lookup('tree'))!;
      expect((await a.client.symlink(t, 'link', 'd0/f1')).status).toBe(0);
      expect((await a.client.mkdir(t, 'empty-dir')).status).toBe(0);
    } finally {
      a.close();
    }
    const t1 = await converged('tree', 120_000);
    expect(t1.size).toBe(10 + 990 + 2);
    expect(t1.get('tree/link')).toBe('-> d0/f1');
    expect(t1.get('tree/d3/f20')).toBe('');
    expect(t1.get('tree/empty-dir/')).toBe('');
    // The rename is one rename on the other nodes too: B's directory keeps its inode.
    const bTree = path.join(zoneDir(c, 'b', 'tier-1'), 'tree');
    const ino = fs.statSync(bTree).ino;
    const a2 = await c.nfs('a');
    try {
      await a2.rename('tree', 'tree-moved');
    } finally {
      a2.close();
    }
    const t2 = await converged('tree-moved', 60_000);
    expect(t2.size).toBe(t1.size);
    expect(fs.statSync(path.join(zoneDir(c, 'b', 'tier-1'), 'tree-moved')).ino).toBe(ino);
    expect(fs.existsSync(bTree)).toBe(false);
    // Delete the whole tree on A (as rm -rf does: children first).
    const a3 = await c.nfs('a');
    try {
      const rm = async (p: string): Promise<void> => {
        const st = await a3.stat(p);
        if (st?.type === 2) for (const n of await a3.list(p)) await rm(`${p}/${n}`);
        await a3.remove(p);
      };
      await rm('tree-moved');
    } finally {
      a3.close();
    }
    await waitFor('tree gone everywhere', () => (HOSTS.every((h) => !fs.existsSync(path.join(zoneDir(c, h, 'tier-1'), 'tree-moved'))) ? true : undefined), 60_000, 200);
  }, 300_000);

  it('the catalog replicates: a zone created on B for a and b is served by A; C (not a member) gets no copy', async () => {
    const r = await c.gv('b', ['zone', 'create', 'tier-2', '--quota', '1G', '--nodes', 'a,b']);
    expect(r.code, r.stderr).toBe(0);
    await waitFor('A serves tier-2', async () => {
      const l = await c.gv('a', ['zone', 'list', '--json']);
      const z = JSON.parse(l.stdout).zones.find((x: { name: string }) => x.name === 'tier-2');
      return z?.backing ? true : undefined;
    }, 60_000, 250);
    const b = await c.nfs('b', 'tier-2');
    const data = randomBytes(100_000);
    try {
      await b.writeFile('from-b.bin', data);
    } finally {
      b.close();
    }
    await c.waitContent('a', 'from-b.bin', data, 30_000, 'tier-2');
    const l = await c.gv('c', ['zone', 'list', '--json']);
    const zc = JSON.parse(l.stdout).zones.find((x: { name: string }) => x.name === 'tier-2');
    expect(zc).toBeDefined();
    expect(zc.backing).toBeNull();
    expect(fs.existsSync(zoneDir(c, 'c', 'tier-2'))).toBe(false);
    // gv zone sync --wait on A returns once A has everything B advertises.
    const s = await c.syncZone('a', 'tier-2', 30_000);
    expect(s.code).toBe(0);
    // gv status: per member, versions behind, bytes to fetch, rate.
    const st = await c.gv('a', ['status', '--json']);
    expect(st.code, st.stderr).toBe(0);
    const z2 = JSON.parse(st.stdout).zones.find((x: { name: string }) => x.name === 'tier-2');
    expect(z2.replication.inSync).toBe(true);
    const mb = z2.replication.members.find((m: { name: string }) => m.name === 'b');
    expect(mb).toMatchObject({ state: 'reachable', behind: '0', bytesToFetch: 0 });
    expect(Number(mb.applied)).toBeGreaterThan(0);
    const human = await c.gv('a', ['status']);
    expect(human.stdout).toMatch(/tier-2.*in sync/);
  }, 180_000);

  it('pull before write: a write on B to a file B is still pulling gets NFS3ERR_JUKEBOX, and succeeds once the pull landed', async () => {
    const size = 120 * 1024 * 1024;
    const data = randomBytes(size);
    const staging = path.join(zoneDir(c, 'b', 'tier-1'), '.grapevine', 'tmp');
    const target = path.join(zoneDir(c, 'b', 'tier-1'), 'jb.bin');
    const a = await c.nfs('a');
    try {
      await a.writeFile('jb.bin', data);
    } finally {
      a.close();
    }
    // B (40 MB/s) is transferring it: its temporary file grows in the staging area.
    await waitFor('B pulling jb.bin', () => {
      try {
        return fs.readdirSync(staging).some((n) => fs.statSync(path.join(staging, n)).size > 8 * 1024 * 1024) ? true : undefined;
      } catch {
        return undefined;
      }
    }, 60_000, 20);
    const b = await c.nfs('b');
    try {
      const r = await b.client.create(b.root, 'jb.bin', { mode: 'unchecked' });
      expect(r.status).toBe(10008); // NFS3ERR_JUKEBOX: pull_wait_ms (1 s) passed with the pull still running
      expect(fs.existsSync(target) ? fs.statSync(target).size : size).toBe(size); // nothing half-written appeared
      await waitFor('B has jb.bin', () => (fs.existsSync(target) && fs.statSync(target).size === size ? true : undefined), 60_000, 50);
      const r2 = await b.client.create(b.root, 'jb.bin', { mode: 'unchecked' });
      expect(r2.status).toBe(0);
      const w = await b.client.write(r2.ok!.fh!, BigInt(size), Buffer.from('tail from B'), 2);
      expect(w.status).toBe(0);
    } finally {
      b.close();
    }
    // B's write came after the version it pulled: it replaces it everywhere, no conflict copy.
    const want = Buffer.concat([data, Buffer.from('tail from B')]);
    await c.waitContent('a', 'jb.bin', want, 60_000);
    const names = await (async () => {
      const n = await c.nfs('a');
      try {
        return await n.list('');
      } finally {
        n.close();
      }
    })();
    expect(names.filter((x) => x.startsWith('jb.gv-conflict-'))).toEqual([]);
  }, 300_000);
});
