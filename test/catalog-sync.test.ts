import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { defaultZoneDir } from '../src/catalog/backing.js';
import { SqlitePinStore } from '../src/peer/pins.js';
import { Catalog } from '../src/catalog/catalog.js';
import { startCatalogSync, type CatalogSync } from '../src/catalog/catalog-sync.js';
import { parseConfigText } from '../src/config/load.js';
import { GvError } from '../src/errors.js';
import { GvDatabase } from '../src/journal/db.js';
import type { CatalogSnapshot, PeerConnector, PeerDirectory, ReplicaSource } from '../src/replication/source.js';
import { Zfs } from '../src/zfs/zfs.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-catalog-sync-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let seq = 0;

/** No ZFS on these nodes: every zfs/zpool command fails. */
const noZfs = new Zfs({ runner: async () => ({ exitCode: 1, stdout: '', stderr: 'no zfs here', signal: null, failure: null }) as never });

interface Node {
  name: string;
  id: string;
  stateDir: string;
  db: GvDatabase;
  catalog: Catalog;
  sync: CatalogSync | null;
  reloads: number;
  logs: { level: string; msg: string }[];
  zfs?: { zfs: Zfs; pool: string };
}

/**
 * An in-memory cluster: each node's PeerDirectory lists the nodes it can see with their current
 * catalog version (as ELP would announce it); the connector serves their snapshots directly.
 * `links` says who sees whom; `failNext` makes the next fetches from a node fail.
 */
class Lab {
  readonly nodes = new Map<string, Node>();
  links = new Set<string>();
  readonly failNext = new Map<string, number>();
  private readonly news = new Map<string, Set<(id: string) => void>>();

  add(name: string, zfs?: { zfs: Zfs; pool: string }): Node {
    const stateDir = path.join(tmp, `n${seq++}-${name}`);
    const db = GvDatabase.open(stateDir);
    const id = `id-${name}`;
    const n: Node = { name, id, stateDir, db, catalog: new Catalog(db, { nodeId: id }), sync: null, reloads: 0, logs: [], zfs };
    n.catalog.addNode(name, id, 1);
    this.nodes.set(id, n);
    return n;
  }

  link(a: Node, b: Node): void {
    this.links.add(`${a.id}|${b.id}`).add(`${b.id}|${a.id}`);
  }

  unlink(a: Node, b: Node): void {
    this.links.delete(`${a.id}|${b.id}`);
    this.links.delete(`${b.id}|${a.id}`);
  }

  start(n: Node): void {
    const directory: PeerDirectory = {
      peers: () => [...this.nodes.values()].filter((p) => this.links.has(`${n.id}|${p.id}`)).map((p) => ({
        id: p.id, name: p.name, state: 'reachable' as const, addresses: ['127.0.0.1'], rttMs: 1, catalogVersion: String(p.catalog.version()), zones: {},
      })),
      onNews: (cb) => {
        let s = this.news.get(n.id);
        if (!s) this.news.set(n.id, (s = new Set()));
        s.add(cb);
        return () => s.delete(cb);
      },
      onPeerChange: () => () => undefined,
    };
    const connector: PeerConnector = {
      source: (peerId) => {
        const p = this.nodes.get(peerId);
        if (!p || !this.links.has(`${n.id}|${peerId}`)) return null;
        const src: Pick<ReplicaSource, 'catalog'> = {
          catalog: async () => {
            const f = this.failNext.get(peerId) ?? 0;
            if (f > 0) {
              this.failNext.set(peerId, f - 1);
              throw new GvError('EIO', 'connection reset');
            }
            // Over the wire: a JSON copy, never the same objects.
            return JSON.parse(JSON.stringify(p.catalog.snapshot())) as CatalogSnapshot;
          },
        };
        return src as ReplicaSource;
      },
      traffic: () => ({ bytesIn: 0, bytesOut: 0 }),
    };
    const log = (level: string) => (_o: unknown, msg?: string) => void n.logs.push({ level, msg: msg ?? '' });
    n.sync = startCatalogSync({
      catalog: n.catalog, directory, connector, selfName: n.name, nodeId: n.id, zfs: n.zfs?.zfs ?? noZfs,
      config: parseConfigText(
        `[node]\nname = "${n.name}"\nstate_dir = ${JSON.stringify(n.stateDir)}\n${n.zfs ? `[zfs]\npool = "${n.zfs.pool}"\n` : ''}`, '/etc/gv.toml',
      ),
      onChanged: async () => void n.reloads++,
      log: { info: log('info'), warn: log('warn'), error: log('error') } as never,
      retry: { baseMs: 5, maxMs: 20, attempts: 5 },
    });
  }

  /** Announce every node's version to the nodes that see it until nothing moves (bounded). */
  async settle(): Promise<void> {
    for (let round = 0; round < 20; round++) {
      const before = [...this.nodes.values()].map((n) => n.catalog.version()).join(',');
      for (const [to, cbs] of this.news) for (const cb of cbs) for (const p of this.nodes.values()) if (this.links.has(`${to}|${p.id}`)) cb(p.id);
      for (const n of this.nodes.values()) await n.sync?.idle();
      const after = [...this.nodes.values()].map((n) => n.catalog.version()).join(',');
      if (before === after && [...this.failNext.values()].every((v) => v === 0)) return;
    }
    throw new Error('catalogs did not settle in 20 rounds');
  }

  async close(): Promise<void> {
    for (const n of this.nodes.values()) {
      await n.sync?.stop();
      n.db.close();
    }
    this.nodes.clear();
  }
}

let lab: Lab;
afterEach(async () => lab?.close());

const zonesOf = (n: Node) => n.catalog.snapshot().zones;

function three(): [Node, Node, Node] {
  lab = new Lab();
  const a = lab.add('a');
  const b = lab.add('b');
  const c = lab.add('c');
  lab.link(a, b);
  lab.link(b, c);
  lab.link(a, c);
  for (const n of [a, b, c]) lab.start(n);
  return [a, b, c];
}

describe('catalog replication', () => {
  it('a zone created on A reaches B and C; members get a directory, others only the row', async () => {
    const [a, b, c] = three();
    await lab.settle();
    a.catalog.create({ name: 'tier-1', quotaBytes: 512 * 2 ** 30, members: ['a', 'b'], backing: { kind: 'dir', path: path.join(a.stateDir, 't1') }, consistency: 'available' }, 5000);
    await lab.settle();
    const zb = b.catalog.get('tier-1')!;
    expect(zb).toMatchObject({ quotaBytes: 512 * 2 ** 30, members: ['a', 'b'], updatedMs: 5000, updatedBy: 'id-a', consistency: 'available', createdMs: 5000 });
    expect(zb.backing).toEqual({ kind: 'dir', path: defaultZoneDir(b.stateDir, 'tier-1') });
    expect(fs.statSync(defaultZoneDir(b.stateDir, 'tier-1')).isDirectory()).toBe(true);
    expect(b.reloads).toBeGreaterThan(0);
    const zc = c.catalog.get('tier-1')!;
    expect(zc.members).toEqual(['a', 'b']);
    expect(zc.backing).toBeNull();
    expect(fs.existsSync(defaultZoneDir(c.stateDir, 'tier-1'))).toBe(false);
    // A's own backing untouched; all three hold the same records; nodes learned from each other.
    expect(a.catalog.get('tier-1')!.backing).toEqual({ kind: 'dir', path: path.join(a.stateDir, 't1') });
    expect(zonesOf(b)).toEqual(zonesOf(a));
    expect(zonesOf(c)).toEqual(zonesOf(a));
    for (const n of [a, b, c]) expect(n.catalog.nodeRecords().map((r) => [r.name, r.nodeId])).toEqual([['a', 'id-a'], ['b', 'id-b'], ['c', 'id-c']]);
  });

  it('set-quota and member changes propagate; a node added as member gets its storage then', async () => {
    const [a, b, c] = three();
    a.catalog.create({ name: 'z', quotaBytes: 1 << 20, members: ['a', 'b'], backing: null }, 1000);
    await lab.settle();
    b.catalog.setQuota('z', 2 << 20, 2000);
    await lab.settle();
    expect(a.catalog.get('z')!.quotaBytes).toBe(2 << 20);
    expect(c.catalog.get('z')).toMatchObject({ quotaBytes: 2 << 20, updatedBy: 'id-b', updatedMs: 2000 });
    expect(c.catalog.get('z')!.backing).toBeNull();
    a.catalog.update('z', { members: ['a', 'b', 'c'] }, 3000);
    await lab.settle();
    expect(c.catalog.get('z')!.backing).toEqual({ kind: 'dir', path: defaultZoneDir(c.stateDir, 'z') });
    expect(fs.statSync(defaultZoneDir(c.stateDir, 'z')).isDirectory()).toBe(true);
    expect(b.catalog.get('z')!.members).toEqual(['a', 'b', 'c']);
  });

  it('destroy on A removes the zone everywhere but keeps the data on B', async () => {
    const [a, b, c] = three();
    a.catalog.create({ name: 'gone', quotaBytes: 1 << 20, members: ['a', 'b', 'c'], backing: null }, 1000);
    await lab.settle();
    const dirB = defaultZoneDir(b.stateDir, 'gone');
    fs.writeFileSync(path.join(dirB, 'keep.txt'), 'precious');
    a.catalog.remove('gone', 4000);
    await lab.settle();
    for (const n of [b, c]) {
      expect(n.catalog.get('gone')).toBeUndefined();
      expect(n.catalog.tombstone('gone')).toEqual({ name: 'gone', deletedMs: 4000, deletedBy: 'id-a' });
    }
    expect(fs.readFileSync(path.join(dirB, 'keep.txt'), 'utf8')).toBe('precious');
    expect(b.logs.some((l) => l.level === 'warn' && l.msg.includes(`its data stays in ${dirB}`))).toBe(true);
    // A late update of the old zone (older stamp) does not bring it back ...
    expect(b.catalog.merge({ version: 99, zones: [{ name: 'gone', quotaBytes: 5, members: ['b'], createdMs: 1000, updatedMs: 3999, updatedBy: 'id-z', consistency: 'pull-first' }], deleted: [], nodes: [] }).changed).toEqual([]);
    // ... a newer create does, everywhere, and it beats the tombstone even with a clock behind.
    c.catalog.create({ name: 'gone', quotaBytes: 7 << 20, members: ['a', 'c'], backing: null }, 100);
    expect(c.catalog.get('gone')!.updatedMs).toBe(4001);
    await lab.settle();
    for (const n of [a, b]) expect(n.catalog.get('gone')).toMatchObject({ quotaBytes: 7 << 20, members: ['a', 'c'], updatedBy: 'id-c' });
    expect(a.catalog.tombstone('gone')).toBeUndefined();
  });

  it('concurrent creates of one name on two nodes end the same on all three', async () => {
    const [a, b, c] = three();
    lab.unlink(a, c);
    lab.unlink(a, b);
    a.catalog.create({ name: 'dup', quotaBytes: 1 << 20, members: ['a'], backing: null }, 7000);
    c.catalog.create({ name: 'dup', quotaBytes: 3 << 20, members: ['c', 'b'], backing: null }, 7000);
    await lab.settle();
    lab.link(a, b);
    lab.link(a, c);
    await lab.settle();
    // Same ms: the larger writer id wins (id-c > id-a).
    for (const n of [a, b, c]) expect(n.catalog.get('dup')).toMatchObject({ quotaBytes: 3 << 20, members: ['b', 'c'], updatedBy: 'id-c' });
    expect(zonesOf(a)).toEqual(zonesOf(c));
    expect(zonesOf(b)).toEqual(zonesOf(c));
    expect(b.catalog.get('dup')!.backing).toEqual({ kind: 'dir', path: defaultZoneDir(b.stateDir, 'dup') });
  });

  it('is transitive: A and C never talk, C still gets A\'s zone through B', async () => {
    const [a, , c] = three();
    lab.unlink(a, c);
    a.catalog.create({ name: 'via-b', quotaBytes: 1 << 20, members: ['c'], backing: null }, 1000);
    await lab.settle();
    expect(c.catalog.get('via-b')!.backing).toEqual({ kind: 'dir', path: defaultZoneDir(c.stateDir, 'via-b') });
  });

  it('retries failed fetches with backoff and then merges', async () => {
    const [a, b] = three();
    await lab.settle();
    lab.failNext.set(a.id, 3);
    a.catalog.create({ name: 'flaky', quotaBytes: 1 << 20, members: ['a'], backing: null }, 1000);
    await lab.settle();
    expect(b.catalog.get('flaky')).toBeDefined();
    expect(b.logs.filter((l) => l.msg.includes('catalog fetch failed; retrying')).length).toBeGreaterThanOrEqual(1);
    expect(b.sync!.merged(a.id)).toBe(String(a.catalog.version()));
  });
});

/**
 * A pretend ZFS (OpenZFS output) holding datasets in memory: enough of zpool/zfs for creating,
 * mounting, reading usage and setting quotas. Records every command.
 */
function fakeZfs(pool: string): { zfs: Zfs; datasets: Map<string, { quota: bigint }>; calls: string[] } {
  const datasets = new Map<string, { quota: bigint }>();
  const calls: string[] = [];
  const ok = (stdout = '') => ({ exitCode: 0, stdout, stderr: '', signal: null, failure: null });
  const fail = (stderr: string) => ({ exitCode: 1, stdout: '', stderr, signal: null, failure: null });
  const runner = async (cmd: string, args: readonly string[]) => {
    calls.push(`${cmd} ${args.join(' ')}`);
    const ds = args.at(-1)!;
    if (cmd === 'zpool' && args[0] === 'list') return ok(`${pool}\n`);
    if (args[0] === 'version') return ok('zfs-2.2.2-1\nzfs-kmod-2.2.2-1\n');
    if (args[0] === 'list') return datasets.has(ds) ? ok(`${ds}\n`) : fail(`cannot open '${ds}': dataset does not exist`);
    if (args[0] === 'create') {
      if (datasets.has(ds)) return fail(`cannot create '${ds}': dataset already exists`);
      const q = args.find((a) => a.startsWith('quota='));
      datasets.set(ds, { quota: BigInt(q ? q.slice(6) : 0) });
      return ok();
    }
    if (args[0] === 'mount') return ok();
    if (args[0] === 'set') {
      const d = datasets.get(ds);
      if (!d) return fail(`cannot open '${ds}': dataset does not exist`);
      d.quota = BigInt(args[1]!.slice('quota='.length));
      return ok();
    }
    if (args[0] === 'get') {
      const d = datasets.get(ds);
      if (!d) return fail(`cannot open '${ds}': dataset does not exist`);
      const vals: Record<string, string> = { used: '1000', available: String(1 << 30), quota: String(d.quota), referenced: '1000', mounted: 'yes', mountpoint: `/${ds}` };
      return ok(args[5]!.split(',').map((p) => `${p}\t${vals[p]}`).join('\n') + '\n');
    }
    return fail(`unexpected: ${cmd} ${args.join(' ')}`);
  };
  return { zfs: new Zfs({ runner: runner as never }), datasets, calls };
}

describe('catalog replication onto ZFS', () => {
  it('a member with a pool gets a dataset with the quota; quota changes reach it; destroy keeps it', async () => {
    lab = new Lab();
    const a = lab.add('a');
    const fz = fakeZfs('tank');
    const b = lab.add('b', { zfs: fz.zfs, pool: 'tank' });
    lab.link(a, b);
    lab.start(a);
    lab.start(b);
    a.catalog.create({ name: 'big', quotaBytes: 512 << 20, members: ['a', 'b'], backing: null }, 1000);
    await lab.settle();
    expect(b.catalog.get('big')!.backing).toEqual({ kind: 'zfs', dataset: 'tank/gv-zones/big' });
    expect(fz.datasets.get('tank/gv-zones/big')).toEqual({ quota: BigInt(512 << 20) });
    expect(fz.calls).toContain(`zfs create -p -o quota=${512 << 20} tank/gv-zones/big`);
    a.catalog.setQuota('big', 1024 << 20, 2000);
    await lab.settle();
    expect(fz.datasets.get('tank/gv-zones/big')).toEqual({ quota: BigInt(1024 << 20) });
    a.catalog.remove('big', 3000);
    await lab.settle();
    expect(b.catalog.get('big')).toBeUndefined();
    expect(fz.datasets.has('tank/gv-zones/big')).toBe(true);
    expect(fz.calls.some((c) => c.startsWith('zfs destroy'))).toBe(false);
    expect(b.logs.some((l) => l.msg.includes('its data stays in dataset tank/gv-zones/big'))).toBe(true);
  });
});

describe('catalog merge of nodes and bad input', () => {
  it('fills in ids and fingerprints, never replaces a pinned fingerprint', () => {
    const db = GvDatabase.open(path.join(tmp, `m${seq++}`));
    try {
      const c = new Catalog(db, { nodeId: 'id-a' });
      c.addNode('a', 'id-a', 1);
      c.addNode('x', 'id-x', 5);
      // Pins are written by the peer protocol's pin store (src/peer/pins.ts) into the same table.
      const pins = new SqlitePinStore(db);
      pins.pin('id-x', 'x', 'aa'.repeat(32));
      expect(() => pins.pin('id-x', 'x', 'bb'.repeat(32))).toThrow(/pinned/);
      const v0 = c.version();
      const r = c.merge({
        version: 3, zones: [], deleted: [],
        nodes: [
          { name: 'a', nodeId: 'id-a', fingerprint: 'cc'.repeat(32), addedMs: 9 },
          { name: 'x', nodeId: 'id-x', fingerprint: 'bb'.repeat(32), addedMs: 2 },
          { name: 'y', nodeId: 'id-y', fingerprint: null, addedMs: 3 },
          { name: 'b@d', nodeId: 'id-q', fingerprint: null, addedMs: 3 },
        ],
      });
      expect(r.fingerprintConflicts).toEqual([{ node: 'x', nodeId: 'id-x', local: 'aa'.repeat(32), remote: 'bb'.repeat(32) }]);
      expect(r.nodes.sort()).toEqual(['a', 'x', 'y']);
      expect(r.rejected).toEqual(['node "b@d"']);
      expect(c.version()).toBe(v0 + 1);
      expect(c.nodeRecords()).toEqual([
        { name: 'a', nodeId: 'id-a', fingerprint: 'cc'.repeat(32), addedMs: 1 },
        { name: 'x', nodeId: 'id-x', fingerprint: 'aa'.repeat(32), addedMs: 2 },
        { name: 'y', nodeId: 'id-y', fingerprint: null, addedMs: 3 },
      ]);
      // The same snapshot again changes nothing and does not bump.
      expect(c.merge(c.snapshot()).changed).toEqual([]);
      expect(c.version()).toBe(v0 + 1);
    } finally {
      db.close();
    }
  });

  it('ignores malformed zones and keeps the local backing of an updated zone', () => {
    const db = GvDatabase.open(path.join(tmp, `m${seq++}`));
    try {
      const c = new Catalog(db, { nodeId: 'id-a' });
      c.create({ name: 'z', quotaBytes: 10, members: ['a'], backing: { kind: 'dir', path: '/srv/z' } }, 10);
      const r = c.merge({
        version: 1, deleted: [{ name: '../x', deletedMs: 1, deletedBy: 'id-b' }], nodes: [],
        zones: [
          { name: 'z', quotaBytes: 20, members: ['a', 'b'], createdMs: 10, updatedMs: 11, updatedBy: 'id-b', consistency: 'pull-first' },
          { name: 'q', quotaBytes: -1, members: ['a'], createdMs: 1, updatedMs: 1, updatedBy: 'id-b', consistency: 'pull-first' },
          { name: 'w', quotaBytes: 1, members: ['a'], createdMs: 1, updatedMs: 1, updatedBy: 'id-b', consistency: 'eventually' as never },
        ],
      });
      expect(r.changed).toEqual(['z']);
      expect(r.zones).toEqual([{ name: 'z', kind: 'updated', by: 'id-b', quotaChanged: true, backing: null }]);
      expect(r.rejected).toEqual(['tombstone "../x"', 'zone "q"', 'zone "w"']);
      expect(c.get('z')).toMatchObject({ quotaBytes: 20, members: ['a', 'b'], backing: { kind: 'dir', path: '/srv/z' } });
      expect(c.get('q')).toBeUndefined();
    } finally {
      db.close();
    }
  });
});
