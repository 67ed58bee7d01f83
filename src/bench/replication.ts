/**
 * The replication bench: two hosts A and B in network namespaces (src/bench/netns.ts), one gvd
 * each (src/bench/replicationCluster.ts), and measures
 *  (a) propagation latency: a 4 KiB file written through NFS on A until it reads back byte for byte
 *      through NFS on B (B polled every POLL_MS), p50/p99 over N writes;
 *  (b) initial sync of one big file and of many small files from A to a member B that starts empty,
 *      beside rsync (daemon mode in A's namespace, `rsync -a` from B's) between the same hosts;
 *  (c) bytes on the wire (switch counters, both directions) for a 1-byte edit of a 200 MB file,
 *      beside rsync's delta transfer of the same edit.
 * Every wait is bounded: a stage with no progress for `stallMs` fails with a message naming what
 * was missing, and the next stage runs. Nothing is asserted; the caller prints the table.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { GvError } from '../errors.js';
import { netnsSkipReason, type Forward } from './netns.js';
import { runCommand, stopChild, shuttingDown, type CleanupRegistry } from './processes.js';
import { CLUSTER_MOUNT_PORT, CLUSTER_NFS_PORT, clusterBuildProblem, startGvCluster, type GvCluster } from './replicationCluster.js';
import { BenchNfsClient } from './replicationNfs.js';
import { findExecutable } from './tools.js';

const ZONE = 'bench';
const POLL_MS = 2;
const RSYNC_PORT = 8730;
/** Wire bytes that count as progress within one stall window (more than ELP chatter). */
const WIRE_NOISE_BYTES = 256 * 1024;
/** Every bench node runs the peer protocol and the puller (defaults otherwise). */
const REPLICATION_TOML = '[replication]\nenabled = true\n';

export interface ReplicationBenchOptions {
  baseDir: string;
  /** Number of 4 KiB propagation samples (default 100). */
  latencyWrites: number;
  /** Big file of the initial sync (0 skips it). */
  bigBytes: number;
  smallCount: number;
  smallSize: number;
  /** File edited by one byte (0 skips the edit row). */
  editBytes: number;
  /** A stage fails after this long without progress (default 15 s). */
  stallMs: number;
  /** One propagation sample fails after this long (default 5 s). */
  sampleTimeoutMs: number;
  cleanup: CleanupRegistry;
  log: (line: string) => void;
  logLevel: string;
  /** Keep the clusters' directories (configs, daemon logs). */
  keep?: boolean;
  /** Runs of each initial sync (best and median are reported; default 1). */
  runs?: number;
  /** Rows to measure (default all). */
  rows?: ReadonlySet<ReplRowId>;
}

/** Row names for `--repl-rows`. */
export const REPL_ROW_IDS = ['latency', 'edit', 'big', 'small'] as const;
export type ReplRowId = (typeof REPL_ROW_IDS)[number];

export type ReplMetricId = 'latency' | 'syncBig' | 'syncSmall' | 'editBytes';

export interface ReplRow {
  id: ReplMetricId;
  label: string;
  unit: string;
  gv: string;
  rsync: string;
  /** rsync -a --fsync, where measured. */
  rsyncFsync?: string;
  target: string;
  verdict: 'met' | 'not met' | 'n/a';
  /** Raw figures (JSON). */
  values: Record<string, number | null>;
}

export interface ReplicationReport {
  skipped?: string;
  rows: ReplRow[];
  errors: Partial<Record<ReplMetricId | 'setup', string>>;
  notes: string[];
}

export function defaultReplicationOptions(quick: boolean, base: Pick<ReplicationBenchOptions, 'baseDir' | 'cleanup' | 'log' | 'logLevel'>): ReplicationBenchOptions {
  return {
    ...base,
    latencyWrites: 100,
    bigBytes: (quick ? 128 : 1024) * 1024 * 1024,
    smallCount: quick ? 300 : 1000,
    smallSize: 4096,
    editBytes: (quick ? 50 : 200) * 1000 * 1000,
    stallMs: 15_000,
    sampleTimeoutMs: 5_000,
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const mb = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

/** Why the replication bench cannot run at all here, or null. */
export function replicationSkipReason(): string | null {
  return netnsSkipReason() ?? clusterBuildProblem();
}

/** Write back everything dirty on the filesystem holding `dir` (`sync -f`, no shell). */
async function flushFs(dir: string): Promise<void> {
  await runCommand(['sync', '-f', dir], { timeoutMs: 120_000, check: false });
}

/** Remove these directories (the list is emptied). */
async function removeAll(dirs: string[]): Promise<void> {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 }).catch(() => undefined);
}

/** SHA-256 of a file, streamed. */
async function fileHash(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Write `bytes` of pseudo-random data (1 MiB pattern, each MiB stamped with its index). */
async function writeBigFile(file: string, bytes: number): Promise<void> {
  const block = randomBytes(1 << 20);
  const fh = await open(file, 'w');
  try {
    for (let off = 0, i = 0; off < bytes; off += block.length, i++) {
      block.writeUInt32BE(i, 0);
      await fh.write(block, 0, Math.min(block.length, bytes - off), off);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeSmallFiles(dir: string, count: number, size: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < count; i++) await writeFile(path.join(dir, `f${String(i).padStart(5, '0')}.bin`), randomBytes(size));
}

/**
 * Poll `probe` (how much of the goal is there) until it reports done; fail when neither it nor
 * the wire counter moved for stallMs, or after maxMs in all.
 */
async function waitProgress(
  what: string, probe: () => Promise<{ have: number; want: number }>, wire: () => number,
  stallMs: number, maxMs: number, stepMs = 50, diagnose?: () => string,
): Promise<void> {
  const started = Date.now();
  const wire0 = wire();
  let last = { have: -1, wire: wire0, at: Date.now() };
  for (let i = 0; i < 10_000_000; i++) {
    if (shuttingDown()) throw new GvError('EIO', 'interrupted');
    const p = await probe();
    if (p.have >= p.want) return;
    const w = wire();
    // ELP announcements trickle through all the time (~1 KB/s); only real transfer counts.
    if (p.have !== last.have || w - last.wire > WIRE_NOISE_BYTES) last = { have: p.have, wire: w, at: Date.now() };
    if (Date.now() - last.at > stallMs) {
      throw new GvError('EIO', `${what}: no progress for ${stallMs} ms (B has ${p.have} of ${p.want}; ${w - wire0} bytes on the wire meanwhile). ` +
        `Is the replication engine wired into gvd (peer protocol listening, pulls on ELP version change)?${diagnose?.() ?? ''}`);
    }
    if (Date.now() - started > maxMs) throw new GvError('EIO', `${what}: not complete after ${maxMs} ms (B has ${p.have} of ${p.want})`);
    await sleep(stepMs);
  }
  throw new GvError('EIO', `${what}: poll limit reached`);
}

/** rsync daemon serving `dir` as module "zone" in A's namespace, read-only. */
async function startRsyncd(cluster: GvCluster, host: string, dir: string, rsync: string): Promise<ChildProcess> {
  const conf = path.join(cluster.dir, `rsyncd-${host}.conf`);
  await writeFile(conf, [
    'use chroot = no', 'uid = root', 'gid = root', `pid file = ${path.join(cluster.dir, `rsyncd-${host}.pid`)}`,
    '[zone]', `path = ${dir}`, 'read only = yes', '',
  ].join('\n'));
  const child = cluster.lab.spawn(host, rsync, ['--daemon', '--no-detach', `--config=${conf}`, `--port=${RSYNC_PORT}`, `--address=${cluster.node(host).ip}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ip = cluster.node(host).ip;
  // Ready when it answers a module listing (bounded).
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new GvError('EIO', `rsync --daemon in ${host} exited ${child.exitCode}`);
    const r = await runCommand([...cluster.lab.wrap(host), rsync, `rsync://${ip}:${RSYNC_PORT}/`], { timeoutMs: 5000, check: false });
    if (r.code === 0 && r.stdout.includes('zone')) return child;
    await sleep(50);
  }
  await stopChild(child, 'SIGTERM', 2000);
  throw new GvError('EIO', `rsync --daemon in ${host} did not answer in 5 s`);
}

/** `rsync -a rsync://A/zone/<src> <dst>` from B's namespace; seconds and bytes on the wire. */
async function rsyncPull(
  cluster: GvCluster, rsync: string, from: string, to: string, src: string, dst: string, extra: readonly string[] = [],
): Promise<{ seconds: number; wire: number }> {
  const wire0 = cluster.lab.pairBytes(from, to) + cluster.lab.pairBytes(to, from);
  const r = await runCommand([...cluster.lab.wrap(to), rsync, '-a', ...extra, `rsync://${cluster.node(from).ip}:${RSYNC_PORT}/zone/${src}`, dst], { timeoutMs: 600_000 });
  const wire = cluster.lab.pairBytes(from, to) + cluster.lab.pairBytes(to, from) - wire0;
  return { seconds: r.seconds, wire };
}

interface Mounts {
  a: BenchNfsClient;
  b: BenchNfsClient;
}

async function mountBoth(cluster: GvCluster, opts: ReplicationBenchOptions): Promise<Mounts> {
  const fwd = async (h: string): Promise<BenchNfsClient> => {
    const n: Forward = await cluster.lab.forward(h, CLUSTER_NFS_PORT);
    const m: Forward = await cluster.lab.forward(h, CLUSTER_MOUNT_PORT);
    opts.cleanup.add(`forward ${h}`, async () => { await n.close(); await m.close(); });
    return BenchNfsClient.mount(n.port, m.port, ZONE);
  };
  const a = await fwd('a');
  const b = await fwd('b');
  opts.cleanup.add('nfs clients', () => { a.close(); b.close(); });
  return { a, b };
}

/** Poll B through NFS until `name` reads back as `data`; ms from `t0`. */
async function awaitOnB(b: BenchNfsClient, name: string, data: Buffer, t0: bigint, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1_000_000; i++) {
    const fh = await b.lookup(b.root, name);
    if (fh) {
      const r = await b.read(fh, 0, data.length + 1);
      if (r.data.length === data.length && r.data.equals(data)) return Number(process.hrtime.bigint() - t0) / 1e6;
    }
    if (Date.now() > deadline) break;
    await sleep(POLL_MS);
  }
  throw new GvError('EIO', `a ${data.length}-byte file written through NFS on A was not readable through NFS on B within ${timeoutMs} ms. ` +
    'Is the replication engine wired into gvd (peer protocol listening, pulls on ELP version change)?');
}

async function measureLatency(m: Mounts, opts: ReplicationBenchOptions, cluster: GvCluster): Promise<number[]> {
  try {
    return await latencySamples(m, opts);
  } catch (err) {
    throw new GvError('EIO', `${(err as Error).message}${diag(cluster)}`);
  }
}

async function latencySamples(m: Mounts, opts: ReplicationBenchOptions): Promise<number[]> {
  // One warm-up write (connections, first pull) that is not counted.
  const warm = randomBytes(4096);
  await m.a.writeFile('lat-warmup.bin', warm);
  await awaitOnB(m.b, 'lat-warmup.bin', warm, process.hrtime.bigint(), Math.max(opts.sampleTimeoutMs, 10_000));
  const samples: number[] = [];
  for (let i = 0; i < opts.latencyWrites; i++) {
    const data = randomBytes(4096);
    const name = `lat-${String(i).padStart(4, '0')}.bin`;
    const t0 = process.hrtime.bigint();
    await m.a.writeFile(name, data);
    samples.push(await awaitOnB(m.b, name, data, t0, opts.sampleTimeoutMs));
  }
  return samples;
}

/** Bytes on the wire for a 1-byte edit in the middle of an `editBytes` file: gv, then rsync. */
async function measureEdit(
  cluster: GvCluster, m: Mounts, opts: ReplicationBenchOptions, rsync: string | null, report: ReplicationReport,
): Promise<{ gv: number | null; rsync: number | null }> {
  const lab = cluster.lab;
  const wire = (): number => lab.pairBytes('a', 'b') + lab.pairBytes('b', 'a');
  const name = 'edit.bin';
  const srcA = path.join(cluster.node('a').zonePath(ZONE), name);
  const onB = path.join(cluster.node('b').zonePath(ZONE), name);
  // The file is written through NFS on A, then we wait for B to have it whole.
  const data = randomBytes(1 << 20);
  const fhA = await m.a.create(m.a.root, name);
  for (let off = 0; off < opts.editBytes; off += data.length) {
    await m.a.write(fhA, off, data.subarray(0, Math.min(data.length, opts.editBytes - off)));
  }
  await m.a.commit(fhA);
  const sizeOnB = async (): Promise<number> => {
    try {
      return (await stat(onB)).size;
    } catch {
      return 0;
    }
  };
  await waitProgress(`${opts.editBytes}-byte file to B`, async () => ({ have: await sizeOnB(), want: opts.editBytes }), wire, opts.stallMs, 600_000, 50, () => diag(cluster));
  await waitProgress('identical copy on B', async () => ({ have: (await fileHash(onB)) === (await fileHash(srcA)) ? 1 : 0, want: 1 }), wire, opts.stallMs, 120_000, 500, () => diag(cluster));
  let rsyncCopy: string | null = null;
  if (rsync) {
    rsyncCopy = path.join(cluster.dir, 'rsync-edit-copy.bin');
    await rsyncPull(cluster, rsync, 'a', 'b', name, rsyncCopy);
  }
  await sleep(1000); // let trailing traffic of the first transfer settle
  const offset = Math.floor(opts.editBytes / 2);
  const old = Buffer.alloc(1);
  const fd = await open(srcA, 'r');
  try {
    await fd.read(old, 0, 1, offset);
  } finally {
    await fd.close();
  }
  const edited = Buffer.from([old[0]! ^ 0xff]);
  const before = wire();
  await m.a.write(fhA, offset, edited);
  await m.a.commit(fhA);
  const byteOnB = async (): Promise<number> => {
    const b = Buffer.alloc(1);
    const h = await open(onB, 'r').catch(() => null);
    if (!h) return 0;
    try {
      await h.read(b, 0, 1, offset);
    } finally {
      await h.close();
    }
    return b[0] === edited[0] ? 1 : 0;
  };
  await waitProgress('1-byte edit to B', async () => ({ have: await byteOnB(), want: 1 }), wire, opts.stallMs, 120_000, 5, () => diag(cluster));
  await sleep(500); // the rest of the exchange (acks, journal) after the byte landed
  const gvBytes = wire() - before;
  let rsyncBytes: number | null = null;
  if (rsync && rsyncCopy) {
    const r = await rsyncPull(cluster, rsync, 'a', 'b', name, rsyncCopy);
    rsyncBytes = r.wire;
    report.notes.push(`rsync 1-byte edit: delta transfer of ${name} in ${r.seconds.toFixed(2)} s`);
  }
  return { gv: gvBytes, rsync: rsyncBytes };
}

interface SyncFigures {
  gvSeconds: number | null;
  rsyncSeconds: number | null;
  /** rsync -a --fsync (every file fsynced). */
  rsyncFsyncSeconds?: number | null;
  gvError?: string;
  rsyncError?: string;
  /** Medians over the runs (several runs only). */
  gvMedian?: number | null;
  rsyncMedian?: number | null;
  rsyncFsyncMedian?: number | null;
  runs?: number;
}

/**
 * Initial sync of `kind` from A to a B that starts empty: rsync first, then B's gvd.
 *
 * Nothing is deleted between the timed transfers, and the small-file runs' directories are
 * removed only after the last run (`removeLater`): on an ext4 without a journal (this machine's),
 * a new inode skips every inode of its group freed in the last minutes (`recently_deleted()`),
 * and 1,000 files deleted just before a transfer made each create of the next one cost about
 * 200 µs instead of a few µs (a C loop: 190 µs per open(O_CREAT) right after an rm -rf of 1,000
 * files). Deleting rsync's copy before GrapeVineFS ran charged that to GrapeVineFS alone.
 */
async function measureInitialSync(
  kind: 'big' | 'small', opts: ReplicationBenchOptions, rsync: string | null, removeLater: (dir: string) => void,
): Promise<SyncFigures> {
  const fig: SyncFigures = { gvSeconds: null, rsyncSeconds: null };
  const deferRemoval = kind === 'small' && !opts.keep;
  const cluster = await startGvCluster({
    hosts: ['a', 'b'], zones: [{ name: ZONE, quota: '4T', nodes: ['a', 'b'] }], baseDir: opts.baseDir, prefix: 'gvb',
    startHosts: [], logLevel: opts.logLevel, configExtra: () => REPLICATION_TOML, keepDir: opts.keep || deferRemoval,
  });
  if (deferRemoval) removeLater(cluster.dir);
  const unregister = opts.cleanup.add(`cluster (${kind} sync)`, () => cluster.stop());
  try {
    const zoneA = cluster.node('a').zonePath(ZONE);
    const zoneB = cluster.node('b').zonePath(ZONE);
    await mkdir(zoneA, { recursive: true });
    const want = kind === 'big' ? opts.bigBytes : opts.smallCount;
    opts.log(`replication: writing ${kind === 'big' ? `${(opts.bigBytes / 1048576).toFixed(0)} MiB` : `${opts.smallCount} files of ${opts.smallSize} B`} into A's zone`);
    if (kind === 'big') await writeBigFile(path.join(zoneA, 'big.bin'), opts.bigBytes);
    else await writeSmallFiles(path.join(zoneA, 'small'), opts.smallCount, opts.smallSize);
    await cluster.start('a');
    // A journals what its start-up scan found; wait until its zone version stops moving.
    let prev = '';
    for (let i = 0, same = 0; i < 600 && same < 4; i++) {
      const st = await cluster.gvJson<{ zones: { name: string; version: string | null }[] }>('a', ['status']);
      const v = String(st.zones.find((z) => z.name === ZONE)?.version ?? '');
      same = v && v === prev ? same + 1 : 0;
      prev = v;
      await sleep(250);
    }
    // Each timed transfer starts with nothing dirty on the filesystem (the files just written, a
    // copy just deleted): otherwise whichever runs first pays for the other's writeback.
    await flushFs(zoneA);
    if (rsync) {
      try {
        const d = await startRsyncd(cluster, 'a', zoneA, rsync);
        opts.cleanup.add('rsyncd', () => stopChild(d, 'SIGTERM', 3000));
        // Each pull into a directory of its own, kept until the cluster goes (see above).
        const pull = (dst: string, extra: string[] = []) =>
          rsyncPull(cluster, rsync, 'a', 'b', kind === 'big' ? 'big.bin' : 'small/', kind === 'big' ? `${dst}.bin` : `${dst}/`, extra);
        fig.rsyncSeconds = (await pull(path.join(cluster.dir, `rsync-${kind}`))).seconds;
        // The same with every file fsynced, as GrapeVineFS does (a durability-for-durability figure).
        await flushFs(zoneA);
        try {
          fig.rsyncFsyncSeconds = (await pull(path.join(cluster.dir, `rsync-fsync-${kind}`), ['--fsync'])).seconds;
        } catch (err) {
          fig.rsyncError = `rsync --fsync: ${(err as Error).message}`;
        }
        await stopChild(d, 'SIGTERM', 3000);
      } catch (err) {
        fig.rsyncError = (err as Error).message;
      }
      await flushFs(zoneA);
    }
    try {
      await cluster.start('b');
      const t0 = process.hrtime.bigint();
      const wire = (): number => cluster.lab.pairBytes('a', 'b');
      const probe = kind === 'big'
        ? async () => ({ have: await stat(path.join(zoneB, 'big.bin')).then((s) => s.size, () => 0), want })
        : async () => ({ have: await readdir(path.join(zoneB, 'small')).then((l) => l.filter((n) => n.endsWith('.bin')).length, () => 0), want });
      await waitProgress(`initial sync of ${kind === 'big' ? 'the big file' : `${want} small files`}`, probe, wire, opts.stallMs,
        Math.max(300_000, (opts.bigBytes / 5e6) * 1000), kind === 'big' ? 20 : 50, () => diag(cluster));
      fig.gvSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      // Verify outside the timed window.
      if (kind === 'big') {
        if ((await fileHash(path.join(zoneA, 'big.bin'))) !== (await fileHash(path.join(zoneB, 'big.bin')))) throw new GvError('EIO', 'big file on B differs from A');
      } else {
        for (const n of await readdir(path.join(zoneA, 'small'))) {
          if (!fs.readFileSync(path.join(zoneA, 'small', n)).equals(fs.readFileSync(path.join(zoneB, 'small', n)))) throw new GvError('EIO', `small/${n} on B differs from A`);
        }
      }
    } catch (err) {
      fig.gvSeconds = null;
      fig.gvError = (err as Error).message;
    }
  } finally {
    await cluster.stop();
    unregister();
  }
  return fig;
}

/** Warnings and errors the two daemons logged last, for failure messages. */
function diag(cluster: GvCluster): string {
  const parts = ['a', 'b'].map((h) => {
    const p = cluster.node(h).problems(3);
    return p.length ? ` ${h.toUpperCase()} logged: ${p.join(' | ')}` : '';
  });
  return parts.join(';');
}

const fmt = (v: number | null, digits = 1): string => (v === null || !Number.isFinite(v) ? '-' : v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(digits));

/** Run the whole replication bench; never throws (failures are in `errors`). */
export async function runReplicationBench(opts: ReplicationBenchOptions): Promise<ReplicationReport> {
  const report: ReplicationReport = { rows: [], errors: {}, notes: [] };
  const skip = replicationSkipReason();
  if (skip) return { ...report, skipped: skip };
  const rsync = await findExecutable('rsync');
  if (!rsync) report.notes.push('rsync not installed (bash scripts/test-deps.sh installs it): rsync columns skipped');
  await mkdir(opts.baseDir, { recursive: true });

  // (a) latency and (c) the 1-byte edit, on one two-node cluster.
  let latencies: number[] | null = null;
  let edit: { gv: number | null; rsync: number | null } = { gv: null, rsync: null };
  const want = (r: ReplRowId): boolean => !opts.rows || opts.rows.has(r);
  if (!want('edit')) opts.editBytes = 0;
  if (want('latency') || want('edit')) try {
    opts.log('replication: two nodes a, b in network namespaces');
    const cluster = await startGvCluster({ hosts: ['a', 'b'], zones: [{ name: ZONE, quota: '4T', nodes: ['a', 'b'] }], baseDir: opts.baseDir, prefix: 'gvb', logLevel: opts.logLevel,
      configExtra: () => REPLICATION_TOML, keepDir: opts.keep,
    });
    const unregister = opts.cleanup.add('cluster (latency)', () => cluster.stop());
    try {
      if (cluster.lab.pairSupport()) report.notes.push(`byte counters: ${cluster.lab.pairSupport()}`);
      const m = await mountBoth(cluster, opts);
      if (want('latency')) try {
        opts.log(`replication: propagation latency, ${opts.latencyWrites} writes of 4 KiB`);
        latencies = await measureLatency(m, opts, cluster);
      } catch (err) {
        report.errors.latency = (err as Error).message;
      }
      if (opts.editBytes > 0 && !cluster.lab.pairSupport()) {
        let rsyncd: ChildProcess | null = null;
        try {
          if (rsync) {
            rsyncd = await startRsyncd(cluster, 'a', cluster.node('a').zonePath(ZONE), rsync);
          }
          opts.log(`replication: 1-byte edit of a ${(opts.editBytes / 1e6).toFixed(0)} MB file`);
          edit = await measureEdit(cluster, m, opts, rsyncd ? rsync : null, report);
        } catch (err) {
          report.errors.editBytes = (err as Error).message;
        } finally {
          if (rsyncd) await stopChild(rsyncd, 'SIGTERM', 3000);
        }
      }
      m.a.close();
      m.b.close();
    } finally {
      await cluster.stop();
      unregister();
    }
  } catch (err) {
    report.errors.setup = (err as Error).message;
  }

  // (b) initial sync, one fresh cluster per kind.
  const sync: Partial<Record<'big' | 'small', SyncFigures>> = {};
  for (const kind of ['big', 'small'] as const) {
    if ((kind === 'big' && opts.bigBytes === 0) || (kind === 'small' && opts.smallCount === 0) || !want(kind)) continue;
    const runs = Math.max(1, opts.runs ?? 1);
    const gvs: number[] = [];
    const rsyncs: number[] = [];
    const rsyncFsyncs: number[] = [];
    const later: string[] = [];
    const unregisterLater = opts.cleanup.add(`initial sync (${kind}) directories`, () => removeAll(later));
    for (let run = 0; run < runs; run++) {
      try {
        opts.log(`replication: initial sync (${kind}) from A to a new member B${runs > 1 ? `, run ${run + 1} of ${runs}` : ''}`);
        const f = await measureInitialSync(kind, opts, rsync, (d) => later.push(d));
        if (f.gvSeconds !== null) gvs.push(f.gvSeconds);
        if (f.rsyncSeconds !== null) rsyncs.push(f.rsyncSeconds);
        if (f.rsyncFsyncSeconds != null) rsyncFsyncs.push(f.rsyncFsyncSeconds);
        if (f.gvError) report.errors[kind === 'big' ? 'syncBig' : 'syncSmall'] = f.gvError;
        if (f.rsyncError) report.notes.push(`rsync (${kind}) FAILED: ${f.rsyncError}`);
      } catch (err) {
        report.errors[kind === 'big' ? 'syncBig' : 'syncSmall'] = (err as Error).message;
      }
    }
    await removeAll(later);
    unregisterLater();
    if (gvs.length || rsyncs.length) {
      const best = (xs: number[]): number | null => (xs.length ? Math.min(...xs) : null);
      const med = (xs: number[]): number | null => (xs.length ? percentile([...xs].sort((x, y) => x - y), 50) : null);
      sync[kind] = {
        gvSeconds: best(gvs), rsyncSeconds: best(rsyncs), gvMedian: med(gvs), rsyncMedian: med(rsyncs), runs,
        rsyncFsyncSeconds: best(rsyncFsyncs), rsyncFsyncMedian: med(rsyncFsyncs),
      };
    }
  }

  const sorted = latencies ? [...latencies].sort((x, y) => x - y) : [];
  const p50 = sorted.length ? percentile(sorted, 50) : null;
  const p99 = sorted.length ? percentile(sorted, 99) : null;
  if (want('latency')) report.rows.push({
    id: 'latency', label: `propagation 4 KiB A→B (${opts.latencyWrites} writes)`, unit: 'ms p50 / p99',
    gv: latencies ? `${fmt(p50, 1)} / ${fmt(p99, 1)}` : 'FAILED', rsync: '-', target: 'p50 < 50, p99 < 200',
    verdict: latencies ? (p50! < 50 && p99! < 200 ? 'met' : 'not met') : 'not met',
    values: { p50, p99, min: sorted[0] ?? null, max: sorted[sorted.length - 1] ?? null },
  });
  const syncRow = (kind: 'big' | 'small'): void => {
    const f = sync[kind];
    if (!f && !report.errors[kind === 'big' ? 'syncBig' : 'syncSmall']) return;
    const big = kind === 'big';
    const rate = (s: number | null): number | null => (s === null ? null : big ? mb(opts.bigBytes, s) : opts.smallCount / s);
    const g = rate(f?.gvSeconds ?? null);
    const r = rate(f?.rsyncSeconds ?? null);
    const gm = rate(f?.gvMedian ?? null);
    const rm = rate(f?.rsyncMedian ?? null);
    const rf = rate(f?.rsyncFsyncSeconds ?? null);
    const rfm = rate(f?.rsyncFsyncMedian ?? null);
    const both = (best: number | null, median: number | null): string => (f?.runs && f.runs > 1 ? `${fmt(best)} / ${fmt(median)}` : fmt(best));
    report.rows.push({
      id: big ? 'syncBig' : 'syncSmall',
      label: big ? `initial sync, ${(opts.bigBytes / 1048576).toFixed(0)} MiB file` : `initial sync, ${opts.smallCount} files of ${opts.smallSize} B`,
      unit: (big ? 'MB/s' : 'files/s') + (f?.runs && f.runs > 1 ? ' best/med' : ''),
      gv: g === null ? 'FAILED' : both(g, gm), rsync: r === null ? (rsync ? 'FAILED' : 'skipped') : both(r, rm),
      rsyncFsync: rf === null ? '-' : both(rf, rfm), target: '>= rsync',
      verdict: g === null ? 'not met' : r === null ? 'n/a' : g >= r ? 'met' : 'not met',
      values: {
        gvSeconds: f?.gvSeconds ?? null, rsyncSeconds: f?.rsyncSeconds ?? null, gv: g, rsync: r, gvMedian: gm, rsyncMedian: rm,
        rsyncFsyncSeconds: f?.rsyncFsyncSeconds ?? null, rsyncFsync: rf, rsyncFsyncMedian: rfm,
      },
    });
  };
  syncRow('big');
  syncRow('small');
  if (opts.editBytes > 0) {
    report.rows.push({
      id: 'editBytes', label: `1-byte edit of a ${(opts.editBytes / 1e6).toFixed(0)} MB file`, unit: 'bytes on wire',
      gv: edit.gv === null ? 'FAILED' : edit.gv.toLocaleString('en-US'), rsync: edit.rsync === null ? '-' : edit.rsync.toLocaleString('en-US'),
      target: '~1 block (1 MiB)', verdict: edit.gv === null ? 'not met' : edit.gv <= 2 * 1048576 ? 'met' : 'not met',
      values: { gv: edit.gv, rsync: edit.rsync },
    });
  }
  report.notes.push('rsync --fsync: the same rsync pull with every written file fsynced (rsync 3.2.4+), for comparison with GrapeVineFS, which makes every file durable before it is placed; the target is judged against plain rsync');
  if (want('latency')) report.notes.push('latency: from the CREATE on A until B returns the same 4 KiB through NFS (B polled every 2 ms, in-process NFS client through a relay)');
  report.notes.push('initial sync: rsync -a (daemon mode in A, client in B) first, then B\'s gvd starts on an empty zone; gv is timed from B\'s ready line to the last byte present (verified after)');
  report.notes.push('bytes on wire: nft counters in the switch, IP bytes delivered in both directions between A and B');
  return report;
}

/** The replication table, in the style of the NFS bench's. */
export function formatReplicationTable(r: ReplicationReport): string {
  if (r.skipped) return `replication bench: skipped (${r.skipped})`;
  const head = ['metric', 'unit', 'GrapeVineFS', 'rsync', 'rsync --fsync', 'target', 'status'];
  const body = r.rows.map((row) => [row.label, row.unit, row.gv, row.rsync, row.rsyncFsync ?? '-', row.target, row.verdict]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i >= 2 && i < 5 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = ['Replication bench (two hosts in network namespaces, one gvd each)', '', line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line), ''];
  for (const [k, msg] of Object.entries(r.errors)) out.push(`  ${k} FAILED: ${msg}`);
  const judged = r.rows.filter((x) => x.verdict !== 'n/a');
  out.push(`targets: ${judged.filter((x) => x.verdict === 'met').length} of ${judged.length} met`);
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n');
}
