/**
 * Test harness: a GrapeVineFS cluster of N hosts in network namespaces, one real gvd each (the lab
 * and daemons are src/bench/replicationCluster.ts, shared with the replication bench), plus what
 * tests need on top: NFS clients per host with whole-file helpers, ELP peer views, partitions of a
 * host or of one pair of hosts, byte counters.
 *
 *   const c = await startCluster({ hosts: ['a', 'b', 'c'] });   // zone tier-1 on every host
 *   const nfs = await c.nfs('a');  await nfs.writeFile('x/y.txt', data);
 *   c.partitionPair('a', 'c');  ...  c.healPair('a', 'c');
 *   await c.stop();                                              // in afterAll, also on failure
 *
 * Node names are host names (also the netns host names). NFS: ports 2049/20048 inside each
 * namespace, reached through lab.forward. Every wait is bounded.
 */
import path from 'node:path';
import { GvError } from '../../src/errors.js';
import type { Forward } from '../../src/bench/netns.js';
import {
  CLUSTER_MOUNT_PORT, CLUSTER_NFS_PORT, startGvCluster,
  type ClusterNode, type GvCluster, type GvClusterOptions, type GvResult,
} from '../../src/bench/replicationCluster.js';
import type { ElpSnapshot } from '../../src/elp/service.js';
import { ensureBuilt } from './daemon.js';
import { expectOk, FTYPE, mountZone, NFS3ERR, STABLE, type Fattr3, type Nfs3Client } from './nfs3-client.js';
import { waitFor } from './wait.js';

export { netnsSkipReason } from '../../src/bench/netns.js';

export type StartClusterOptions = Omit<GvClusterOptions, 'mainJs'>;

/** One NFS connection to one zone on one host, with path-based helpers (paths relative to the zone). */
export interface ClusterNfs {
  client: Nfs3Client;
  root: Buffer;
  /** Handle of `p` ('' = the zone root), or null when some component does not exist. */
  lookup(p: string): Promise<Buffer | null>;
  /** Attributes of `p`, or null when it does not exist. */
  stat(p: string): Promise<Fattr3 | null>;
  /** Create or truncate `p` (its directory must exist) and write `bytes`: UNSTABLE WRITEs + COMMIT. */
  writeFile(p: string, bytes: Buffer | string, mode?: number): Promise<void>;
  readFile(p: string): Promise<Buffer>;
  /** The file's bytes when it exists with exactly this content, for waits (no throw on ENOENT). */
  hasContent(p: string, bytes: Buffer): Promise<boolean>;
  mkdirp(p: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** A file, symlink or empty directory. */
  remove(p: string): Promise<void>;
  /** Names in directory `p`, sorted, without "." and "..". */
  list(p?: string): Promise<string[]>;
  close(): void;
}

export interface NodeListPeer {
  name: string;
  id?: string;
  state: string;
  addresses?: string[];
  rttMs?: number | null;
  zones?: Record<string, string>;
}

export interface TestCluster {
  cluster: GvCluster;
  hosts: string[];
  dir: string;
  node(host: string): ClusterNode;
  /** A new NFS connection to `zone` (default the first zone) on `host`; closed by stop(). */
  nfs(host: string, zone?: string): Promise<ClusterNfs>;
  /** The CLI in host's namespace against its config (bounded). */
  gv(host: string, args: string[], timeoutMs?: number): Promise<GvResult>;
  gvJson<T = Record<string, any>>(host: string, args: string[], timeoutMs?: number): Promise<T>;
  /** `gv node list --json` on host: its peers. */
  peers(host: string): Promise<NodeListPeer[]>;
  /** Wait (bounded) until host lists each of `reachable` as reachable and each of `unreachable` as not. */
  waitPeers(host: string, want: { reachable?: string[]; unreachable?: string[] }, ms?: number): Promise<NodeListPeer[]>;
  kill9(host: string): Promise<void>;
  restart(host: string): Promise<void>;
  start(host: string): Promise<void>;
  stopNode(host: string): Promise<void>;
  partition(host: string): void;
  heal(host: string): void;
  partitionPair(x: string, y: string): void;
  healPair(x: string, y: string): void;
  /** Bytes the switch delivered from x to y (IP length). */
  bytesOnWire(x: string, y: string): number;
  /** Both directions between x and y. */
  bytesBetween(x: string, y: string): number;
  /** Interface counters of host's switch port. */
  portBytes(host: string): { fromHost: number; toHost: number };
  /** Is `to` answering pings from `from` (one ping, 1 s)? */
  ping(from: string, to: string): boolean;
  /** Wait (bounded) until `p` reads back as `bytes` through NFS on host (zone default the first). */
  waitContent(host: string, p: string, bytes: Buffer, ms?: number, zone?: string): Promise<void>;
  /** `gv zone sync ZONE --wait` on host (bounded); throws on a non-zero exit. */
  syncZone(host: string, zone?: string, timeoutMs?: number): Promise<GvResult>;
  /** Wait (bounded) until at most `bytes` flow x→y and y→x within `windowMs` (transfers done). */
  waitQuiet(x: string, y: string, opts?: { bytes?: number; windowMs?: number; ms?: number }): Promise<void>;
  stop(): Promise<void>;
}

const zoneName = (z: string | { name: string }): string => (typeof z === 'string' ? z : z.name);

function splitPath(p: string): string[] {
  const parts = p.split('/').filter((x) => x && x !== '.');
  if (parts.includes('..')) throw new GvError('EINVAL', `no ".." in cluster paths: ${p}`);
  return parts;
}

function makeNfs(client: Nfs3Client, root: Buffer): ClusterNfs {
  const lookup = async (p: string): Promise<Buffer | null> => {
    let fh = root;
    for (const part of splitPath(p)) {
      const r = await client.lookup(fh, part);
      if (r.status === NFS3ERR.NOENT || r.status === NFS3ERR.NOTDIR) return null;
      fh = expectOk(r, `LOOKUP ${part} in ${p}`).fh;
    }
    return fh;
  };
  const parent = async (p: string): Promise<{ dir: Buffer; name: string }> => {
    const parts = splitPath(p);
    const name = parts.pop();
    if (!name) throw new GvError('EINVAL', `path names the zone root: "${p}"`);
    const dir = await lookup(parts.join('/'));
    if (!dir) throw new GvError('ENOENT', `no directory ${parts.join('/')} (for ${p})`);
    return { dir, name };
  };
  const readFile = async (p: string): Promise<Buffer> => {
    const fh = await lookup(p);
    if (!fh) throw new GvError('ENOENT', `no file ${p}`);
    return client.readAll(fh, 1 << 20, 1 << 30);
  };
  return {
    client,
    root,
    lookup,
    async stat(p) {
      const fh = await lookup(p);
      if (!fh) return null;
      const r = await client.getattr(fh);
      if (r.status === NFS3ERR.NOENT || r.status === NFS3ERR.STALE) return null;
      return expectOk(r, `GETATTR ${p}`);
    },
    async writeFile(p, bytes, mode = 0o644) {
      const data = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
      const { dir, name } = await parent(p);
      const fh = expectOk(await client.create(dir, name, { mode: 'unchecked', attrs: { mode, size: 0 } }), `CREATE ${p}`).fh
        ?? (await lookup(p));
      if (!fh) throw new GvError('EIO', `CREATE ${p} returned no handle`);
      const chunk = 1 << 20;
      for (let off = 0; off < data.length; off += chunk) {
        const part = data.subarray(off, Math.min(data.length, off + chunk));
        const w = expectOk(await client.write(fh, off, part, STABLE.UNSTABLE), `WRITE ${p}@${off}`);
        if (w.count !== part.length) throw new GvError('EIO', `WRITE ${p}@${off}: short write ${w.count}/${part.length}`);
      }
      expectOk(await client.commit(fh), `COMMIT ${p}`);
    },
    readFile,
    async hasContent(p, bytes) {
      try {
        return (await readFile(p)).equals(bytes);
      } catch (err) {
        if (err instanceof GvError && err.code === 'ENOENT') return false;
        if (/NFS3ERR_(NOENT|STALE)/.test((err as Error).message)) return false;
        throw err;
      }
    },
    async mkdirp(p) {
      let fh = root;
      for (const part of splitPath(p)) {
        const r = await client.lookup(fh, part);
        if (r.status === NFS3ERR.NOENT) {
          const m = await client.mkdir(fh, part, { mode: 0o755 });
          if (m.status === NFS3ERR.EXIST) fh = expectOk(await client.lookup(fh, part), `LOOKUP ${part}`).fh;
          else fh = expectOk(m, `MKDIR ${part} of ${p}`).fh ?? expectOk(await client.lookup(fh, part), `LOOKUP ${part}`).fh;
        } else {
          fh = expectOk(r, `LOOKUP ${part} of ${p}`).fh;
        }
      }
    },
    async rename(from, to) {
      const a = await parent(from);
      const b = await parent(to);
      expectOk(await client.rename(a.dir, a.name, b.dir, b.name), `RENAME ${from} -> ${to}`);
    },
    async remove(p) {
      const { dir, name } = await parent(p);
      const fh = expectOk(await client.lookup(dir, name), `LOOKUP ${p}`).fh;
      const attr = expectOk(await client.getattr(fh), `GETATTR ${p}`);
      if (attr.type === FTYPE.DIR) expectOk(await client.rmdir(dir, name), `RMDIR ${p}`);
      else expectOk(await client.remove(dir, name), `REMOVE ${p}`);
    },
    async list(p = '') {
      const dir = await lookup(p);
      if (!dir) throw new GvError('ENOENT', `no directory ${p}`);
      const names: string[] = [];
      let cookie = 0n;
      let verf: Buffer = Buffer.alloc(8);
      for (let i = 0; i < 100_000; i++) {
        const r = expectOk(await client.readdir(dir, cookie, verf, 32 * 1024), `READDIR ${p}`);
        for (const e of r.entries) {
          if (e.name !== '.' && e.name !== '..') names.push(e.name);
          cookie = e.cookie;
        }
        verf = r.verf;
        if (r.eof || r.entries.length === 0) return names.sort();
      }
      throw new GvError('EIO', `READDIR ${p}: too many pages`);
    },
    close: () => client.close(),
  };
}

/** Start the cluster; on failure everything made so far is removed before the error is thrown. */
export async function startCluster(opts: StartClusterOptions): Promise<TestCluster> {
  ensureBuilt();
  const cluster = await startGvCluster({ prefix: 'gvt', ...opts, keepDir: opts.keepDir ?? process.env.GV_TEST_KEEP === '1', logLevel: opts.logLevel ?? process.env.GV_TEST_LOG_LEVEL });
  const zones = (opts.zones ?? ['tier-1']).map(zoneName);
  const forwards = new Map<string, Promise<{ nfs: Forward; mount: Forward }>>();
  const clients = new Set<ClusterNfs>();
  let stopped = false;

  const fwd = (h: string): Promise<{ nfs: Forward; mount: Forward }> => {
    cluster.node(h);
    let f = forwards.get(h);
    if (!f) {
      f = (async () => ({ nfs: await cluster.lab.forward(h, CLUSTER_NFS_PORT), mount: await cluster.lab.forward(h, CLUSTER_MOUNT_PORT) }))();
      forwards.set(h, f);
    }
    return f;
  };

  const openNfs = async (h: string, zone = zones[0]): Promise<ClusterNfs> => {
    if (!zone) throw new GvError('EINVAL', 'the cluster has no zone');
    const f = await fwd(h);
    const { nfs, root } = await mountZone(f.nfs.port, f.mount.port, zone);
    const c = makeNfs(nfs, root);
    clients.add(c);
    return c;
  };

  const peers = async (h: string): Promise<NodeListPeer[]> => {
    const j = await cluster.gvJson<{ peers: NodeListPeer[] } & Partial<ElpSnapshot>>(h, ['node', 'list']);
    return j.peers;
  };

  return {
    cluster,
    hosts: opts.hosts,
    dir: cluster.dir,
    node: cluster.node,
    nfs: openNfs,
    gv: cluster.gv,
    gvJson: cluster.gvJson,
    peers,
    async waitPeers(h, want, ms = 10_000) {
      let last: NodeListPeer[] = [];
      try {
        return await waitFor(`${h}: peers ${JSON.stringify(want)}`, async () => {
          last = await peers(h);
          const state = (n: string) => last.find((p) => p.name === n)?.state;
          const ok = (want.reachable ?? []).every((n) => state(n) === 'reachable') &&
            (want.unreachable ?? []).every((n) => state(n) !== 'reachable');
          return ok ? last : undefined;
        }, ms, 100);
      } catch (err) {
        throw new GvError('EIO', `${(err as Error).message}; last: ${JSON.stringify(last.map((p) => [p.name, p.state]))}`);
      }
    },
    kill9: cluster.kill9,
    restart: cluster.restart,
    start: cluster.start,
    stopNode: cluster.stopNode,
    partition: (h) => cluster.lab.partition(h),
    heal: (h) => cluster.lab.heal(h),
    partitionPair: (x, y) => cluster.lab.partitionPair(x, y),
    healPair: (x, y) => cluster.lab.healPair(x, y),
    bytesOnWire: (x, y) => cluster.lab.pairBytes(x, y),
    bytesBetween: (x, y) => cluster.lab.pairBytes(x, y) + cluster.lab.pairBytes(y, x),
    portBytes: (h) => cluster.lab.portBytes(h),
    ping(from, to) {
      try {
        cluster.lab.exec(from, 'ping', ['-c', '1', '-W', '1', cluster.node(to).ip], 5000);
        return true;
      } catch {
        return false;
      }
    },
    async waitContent(h, p, bytes, ms = 10_000, zone) {
      const nfs = await openNfs(h, zone);
      try {
        await waitFor(`${p} on ${h} (${bytes.length} bytes)`, () => nfs.hasContent(p, bytes), ms, 20);
      } finally {
        nfs.close();
        clients.delete(nfs);
      }
    },
    async syncZone(h, zone = zones[0], timeoutMs = 60_000) {
      if (!zone) throw new GvError('EINVAL', 'the cluster has no zone');
      const r = await cluster.gv(h, ['zone', 'sync', zone, '--wait'], timeoutMs);
      if (r.code !== 0) throw new GvError('EIO', `gv zone sync ${zone} --wait on ${h} exited ${r.code}: ${r.stderr.trim()}${r.stdout.trim()}`);
      return r;
    },
    async waitQuiet(x, y, o = {}) {
      const both = (): number => cluster.lab.pairBytes(x, y) + cluster.lab.pairBytes(y, x);
      const windowMs = o.windowMs ?? 500;
      const limit = o.bytes ?? 16 * 1024;
      let prev = both();
      await waitFor(`quiet wire between ${x} and ${y}`, async () => {
        await new Promise((r) => setTimeout(r, windowMs));
        const now = both();
        const quiet = now - prev <= limit;
        prev = now;
        return quiet;
      }, o.ms ?? 20_000, 0);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of clients) c.close();
      for (const f of forwards.values()) {
        const x = await f.catch(() => null);
        await x?.nfs.close().catch(() => undefined);
        await x?.mount.close().catch(() => undefined);
      }
      await cluster.stop();
    },
  };
}

/** Where a host keeps zone `zone` on disk (for tests that look under the daemon). */
export const zoneDir = (c: TestCluster, host: string, zone: string): string => path.join(c.node(host).stateDir, 'zones', zone);
