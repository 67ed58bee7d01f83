/**
 * In-process replication lab: each node has its own state dir, GvDatabase, zone directory,
 * journal (JournalService.attach, no watcher) and ReplicationService; nodes reach each other's
 * LocalSource directly through an in-memory PeerConnector/PeerDirectory, with links that can be
 * cut (partitions) and sources that can be wrapped (counting, failing).
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GvDatabase } from '../../src/journal/db.js';
import { JournalService, type AttachedZone } from '../../src/journal/service.js';
import { LocalSource } from '../../src/replication/local-source.js';
import { ReplicationService } from '../../src/replication/service.js';
import type {
  CatalogSnapshot, PeerCaller, PeerConnector, PeerDirectory, ReplicaSource,
} from '../../src/replication/source.js';
import { LocalZoneFs } from '../../src/vfs/local.js';
import type { CallContext, FileId } from '../../src/vfs/types.js';

export const ROOT_CTX: CallContext = { uid: 0, gid: 0, gids: [], client: '127.0.0.1', origin: 'nfs' };
export const ZONE = 'z';

export interface LabNode {
  name: string;
  id: string;
  dir: string;
  zoneDir: string;
  db: GvDatabase;
  local: LocalZoneFs;
  att: AttachedZone;
  source: LocalSource;
  repl: ReplicationService;
}

type Wrap = (peer: string, s: ReplicaSource) => ReplicaSource;

export class ReplicaLab {
  readonly nodes = new Map<string, LabNode>();
  private readonly cut = new Set<string>();
  private readonly newsCbs = new Map<string, Set<(id: string) => void>>();
  private readonly changeCbs = new Map<string, Set<(c: { id: string; name: string; state: 'reachable' | 'unreachable'; isNew: boolean }) => void>>();
  /** Wraps the source node `from` gets for a peer (counting, failing). */
  wrap: Wrap | null = null;
  readonly tmp: string;

  constructor(prefix = 'gv-repl-') {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  }

  static idOf(name: string): string {
    return Buffer.from(name.padEnd(16, '.')).toString('hex').slice(0, 32);
  }

  private linked(a: string, b: string): boolean {
    return !this.cut.has([a, b].sort().join('|'));
  }

  /** Cut or restore the link between two nodes (news flows again when restored). */
  setLink(a: string, b: string, up: boolean): void {
    const k = [a, b].sort().join('|');
    if (up) this.cut.delete(k);
    else this.cut.add(k);
    for (const [self, other] of [[a, b], [b, a]] as const) {
      for (const cb of this.changeCbs.get(self) ?? []) {
        cb({ id: ReplicaLab.idOf(other), name: other, state: up ? 'reachable' : 'unreachable', isNew: false });
      }
    }
  }

  async add(
    name: string,
    opts: { intervalMs?: number; bandwidth?: number; snapshotMinVersion?: number; prefill?: (zoneDir: string) => void; quotaBytes?: number } = {},
  ): Promise<LabNode> {
    const dir = path.join(this.tmp, name);
    const zoneDir = path.join(dir, 'zone');
    fs.mkdirSync(zoneDir, { recursive: true });
    // Content present before the node starts (found by its start-up scan).
    opts.prefill?.(zoneDir);
    const id = ReplicaLab.idOf(name);
    const db = GvDatabase.open(path.join(dir, 'state'));
    const local = await LocalZoneFs.open({ name: ZONE, zoneId: 1, root: zoneDir, db, usageScan: false, quotaBytes: opts.quotaBytes });
    const js = new JournalService(db, { nodeId: id, watch: process.env.GV_LAB_WATCH === '1' });
    const att = await js.attach(local, zoneDir);
    await att.scanned;
    const source = new LocalSource({
      zones: () => [{ name: ZONE, root: zoneDir, journal: att.journal }],
      catalog: async (): Promise<CatalogSnapshot> => ({ version: 0, zones: [], deleted: [], nodes: [] }),
    });
    const directory: PeerDirectory = {
      peers: () => [...this.nodes.values()].filter((n) => n.name !== name).map((n) => ({
        id: n.id, name: n.name, state: this.linked(name, n.name) ? 'reachable' as const : 'unreachable' as const,
        addresses: ['127.0.0.1'], rttMs: 1, catalogVersion: '0', zones: { [ZONE]: String(n.att.journal.version()) },
      })),
      onNews: (cb) => {
        let s = this.newsCbs.get(name);
        if (!s) this.newsCbs.set(name, (s = new Set()));
        s.add(cb);
        return () => s!.delete(cb);
      },
      onPeerChange: (cb) => {
        let s = this.changeCbs.get(name);
        if (!s) this.changeCbs.set(name, (s = new Set()));
        s.add(cb);
        return () => s!.delete(cb);
      },
    };
    const caller: PeerCaller = { nodeId: id, nodeName: name };
    const connector: PeerConnector = {
      source: (peerId) => {
        const peer = [...this.nodes.values()].find((n) => n.id === peerId);
        if (!peer) return null;
        const lab = this;
        const direct: ReplicaSource = {
          journal: (z, since, limit) => lab.reach(name, peer.name, () => peer.source.journal(caller, z, since, limit)),
          entries: (z, paths, inlineMax) => lab.reach(name, peer.name, () => peer.source.entries(caller, z, paths, inlineMax)),
          block: (z, p, off, len) => lab.reach(name, peer.name, () => peer.source.block(caller, z, p, off, len)),
          catalog: () => lab.reach(name, peer.name, () => peer.source.catalog(caller)),
          list: (z, dir, after, limit, inlineMax) => lab.reach(name, peer.name, () => peer.source.list(caller, z, dir, after, limit, inlineMax)),
        };
        return this.wrap ? this.wrap(peer.name, direct) : direct;
      },
      traffic: () => ({ bytesIn: 0, bytesOut: 0 }),
    };
    const repl = new ReplicationService({
      db, nodeId: id, nodeName: name, directory, connector,
      zones: () => [{ name: ZONE, root: zoneDir, journal: att.journal, members: [...this.nodes.keys(), name], consistency: 'pull-first', space: local }],
      log: { warn: (o: object, m: string) => { if (process.env.GV_LAB_LOG) console.log('WARN', name, m, JSON.stringify(o)); } },
      options: {
        concurrency: 2, intervalMs: opts.intervalMs ?? 200, maxBandwidthBytesPerSec: opts.bandwidth, snapshotMinVersion: opts.snapshotMinVersion,
      },
    });
    const node: LabNode = { name, id, dir, zoneDir, db, local, att, source, repl };
    this.nodes.set(name, node);
    // News: a committed version reaches every linked node.
    js.versions.onChange(() => {
      for (const other of this.nodes.values()) {
        if (other.name === name || !this.linked(name, other.name)) continue;
        for (const cb of this.newsCbs.get(other.name) ?? []) cb(id);
      }
    });
    return node;
  }

  private async reach<T>(from: string, to: string, fn: () => Promise<T>): Promise<T> {
    if (!this.linked(from, to)) throw new Error(`${from} cannot reach ${to}`);
    return fn();
  }

  node(name: string): LabNode {
    return this.nodes.get(name)!;
  }

  startAll(): void {
    for (const n of this.nodes.values()) n.repl.start();
  }

  async close(): Promise<void> {
    for (const n of this.nodes.values()) await n.repl.stop();
    for (const n of this.nodes.values()) {
      await n.att.fs.close().catch(() => undefined);
      n.db.close();
    }
    fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- local changes through the journaled fs

const b = (s: string): Buffer => Buffer.from(s);

/** The id of the object at a relative path (walking lookups). */
export async function idOf(n: LabNode, rel: string): Promise<FileId> {
  let id = n.local.rootId;
  for (const part of rel.split('/').filter(Boolean)) id = (await n.att.fs.lookup(ROOT_CTX, id, b(part))).id;
  return id;
}

function split(rel: string): [string, string] {
  const i = rel.lastIndexOf('/');
  return i < 0 ? ['', rel] : [rel.slice(0, i), rel.slice(i + 1)];
}

/** Create or overwrite a file with `data` through the journaled ZoneFs, and journal it. */
export async function writeFile(n: LabNode, rel: string, data: Buffer | string, mode = 0o644): Promise<void> {
  const [dir, name] = split(rel);
  const parent = await idOf(n, dir);
  let id: FileId;
  try {
    id = (await n.att.fs.lookup(ROOT_CTX, parent, b(name))).id;
    await n.att.fs.setattr(ROOT_CTX, id, { size: 0n });
  } catch {
    id = (await n.att.fs.create(ROOT_CTX, parent, b(name), { mode: 'unchecked', attrs: { mode } })).id;
  }
  const buf = typeof data === 'string' ? b(data) : data;
  for (let off = 0; off < buf.length; off += 1024 * 1024) {
    await n.att.fs.write(ROOT_CTX, id, off, buf.subarray(off, off + 1024 * 1024), 'unstable');
  }
  await n.att.fs.commit(ROOT_CTX, id, 0, 0);
  await n.att.journal.idle();
}

export async function mkdir(n: LabNode, rel: string): Promise<void> {
  const [dir, name] = split(rel);
  await n.att.fs.mkdir(ROOT_CTX, await idOf(n, dir), b(name), { mode: 0o755 });
  await n.att.journal.idle();
}

export async function remove(n: LabNode, rel: string): Promise<void> {
  const [dir, name] = split(rel);
  const parent = await idOf(n, dir);
  const attr = await n.att.fs.getattr(ROOT_CTX, await idOf(n, rel));
  if (attr.type === 'dir') await n.att.fs.rmdir(ROOT_CTX, parent, b(name));
  else await n.att.fs.remove(ROOT_CTX, parent, b(name));
  await n.att.journal.idle();
}

export async function rename(n: LabNode, from: string, to: string): Promise<void> {
  const [fd, fnm] = split(from);
  const [td, tnm] = split(to);
  await n.att.fs.rename(ROOT_CTX, await idOf(n, fd), b(fnm), await idOf(n, td), b(tnm));
  await n.att.journal.idle();
}

export async function symlink(n: LabNode, rel: string, target: string): Promise<void> {
  const [dir, name] = split(rel);
  await n.att.fs.symlink(ROOT_CTX, await idOf(n, dir), b(name), b(target), { mode: 0o777 });
  await n.att.journal.idle();
}

/** Every object under a zone dir (not the staging area): path → description with content hash. */
export function treeOf(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    const abs = rel ? path.join(root, rel) : root;
    for (const name of fs.readdirSync(abs)) {
      if (!rel && name === '.grapevine') continue;
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(root, r));
      if (st.isDirectory()) {
        out.set(r, `dir ${(st.mode & 0o7777).toString(8)}`);
        walk(r);
      } else if (st.isSymbolicLink()) out.set(r, `symlink ${fs.readlinkSync(path.join(root, r))}`);
      else {
        const data = fs.readFileSync(path.join(root, r));
        out.set(r, `file ${(st.mode & 0o7777).toString(8)} ${data.length} ${hash(data)}`);
      }
    }
  };
  walk('');
  return out;
}

const hash = (d: Buffer): string => createHash('sha256').update(d).digest('hex');
