/**
 * Assembling a file's new content in the staging area: blocks already in the temp file (an
 * interrupted transfer) are kept once re-hashed, blocks present locally (the old version of the
 * same path first, then any file of the zone with the same SHA-256) are copied and re-verified,
 * and only the rest is fetched from the peer, each block verified against the announced hash.
 * The temp file is fsynced before it is handed back; the caller renames it into place.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { GvError } from '../errors.js';
import { blockPool } from '../util/block-pool.js';
import { DIRECT_ALIGN, DirectWriter } from '../util/direct-io.js';
import { blockCount, digestAt, DIGEST_SIZE, hashBuffer } from '../journal/hasher.js';
import type { IndexEntry } from '../journal/index-store.js';
import type { ZoneJournal } from '../journal/zone-journal.js';
import type { TokenBucket } from './bandwidth.js';
import { absOf, parentsOk } from './paths.js';
import { BLOCK_SIZE, type RemoteEntry, type ReplicaSource } from './source.js';
import { ensureStaging, tempName } from './staging.js';

const { O_RDONLY, O_RDWR, O_CREAT, O_TRUNC, O_WRONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

export interface FetchStats {
  /** Block bytes fetched from peers. */
  fetchedBytes: number;
  /** Bytes copied from local files. */
  reusedBytes: number;
  /** Bytes found already in a temp file (resumed). */
  resumedBytes: number;
  /** Inline bytes received with entries. */
  inlineBytes: number;
}

export const newFetchStats = (): FetchStats => ({ fetchedBytes: 0, reusedBytes: 0, resumedBytes: 0, inlineBytes: 0 });

export interface FetchContext {
  zone: string;
  root: string;
  rootBuf: Buffer;
  journal: ZoneJournal;
  source: ReplicaSource;
  bucket: TokenBucket;
  stats: FetchStats;
  /** Called for each block fetched (status, rates). */
  onFetched?: (bytes: number) => void;
  /** Parallel block requests per file. */
  blockConcurrency?: number;
  /** True once the transfer should end (the service stops): checked between blocks. */
  stopped?: () => boolean;
  /** The zone-wide block map (digest → a local file and block holding it), built once, kept by the caller. */
  blocks?: BlockMap;
  /** The staging directory, when the caller made sure it exists (else checked per file). */
  staging?: string;
}

/** Zones with more indexed objects than this skip the zone-wide map (memory); the old version of a path is still used. */
const BLOCK_MAP_MAX_OBJECTS = 500_000;

/**
 * Block digest (binary, as a latin1 key) → a local file and block index that held it when seen.
 * Built lazily from the index on first need; files placed later are added. Entries may go stale
 * (a file changed or went): every use re-reads and re-hashes the block.
 */
export class BlockMap {
  private map: Map<string, { path: Buffer; i: number }> | null = null;

  constructor(private readonly journal: ZoneJournal) {}

  get(digest: Buffer): { path: Buffer; i: number } | undefined {
    if (!this.map) this.build();
    return this.map!.get(digest.toString('latin1'));
  }

  /** A file now holds these blocks (only once the map is built; until then the index has it). */
  add(path: Buffer, hashes: Buffer | null): void {
    if (!this.map || !hashes) return;
    const n = Math.floor(hashes.length / DIGEST_SIZE);
    for (let i = 0; i < n; i++) {
      const k = digestAt(hashes, i).toString('latin1');
      if (!this.map.has(k)) this.map.set(k, { path, i });
    }
  }

  private build(): void {
    const m = new Map<string, { path: Buffer; i: number }>();
    this.map = m;
    if (this.journal.index.count() > BLOCK_MAP_MAX_OBJECTS) return;
    for (const e of this.journal.index.all()) {
      if (e.type === 'file') this.add(e.path, e.hashes);
    }
  }
}

/**
 * SHA-256 of a block, on the event loop. (WebCrypto's digest, used before to keep hashing off the
 * loop, copies its input on the main thread before it hops to the pool: for 1 GiB it measured
 * 0.85 s one block at a time and 2.0 s with many in flight, against 0.58 s synchronously; its
 * copies were a third of the receiver's busy time.)
 */
const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** Start writing back a file's dirty pages this often while it is assembled (the final fsync then has little left). */
const WRITEBACK_EVERY = 32 * 1024 * 1024;

/** Read `len` bytes at block `i` of local file `rel`, if it is still there and hashes to `want`. */
async function readLocal(ctx: FetchContext, rel: Buffer, i: number, len: number, want: Buffer, into: Buffer): Promise<boolean> {
  if (!parentsOk(ctx.rootBuf, rel)) return false;
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(absOf(ctx.rootBuf, rel), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    let got = 0;
    while (got < len) {
      const { bytesRead } = await fh.read(into, got, len - got, i * BLOCK_SIZE + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return got === len && sha(into.subarray(0, len)).equals(want);
  } finally {
    await fh.close();
  }
}

/** Where to take block `i` locally: its index in the old version of the path, or any file's. */
function localCandidates(want: Buffer, old: IndexEntry | undefined, i: number): { path: Buffer; i: number }[] {
  const out: { path: Buffer; i: number }[] = [];
  if (old?.hashes && old.type === 'file') {
    const n = Math.floor(old.hashes.length / DIGEST_SIZE);
    if (i < n && digestAt(old.hashes, i).equals(want)) out.push({ path: old.path, i });
    else {
      for (let j = 0; j < n; j++) {
        if (digestAt(old.hashes, j).equals(want)) {
          out.push({ path: old.path, i: j });
          break;
        }
      }
    }
  }
  return out;
}

/**
 * Write the content of `e` into its temp file and fsync it; answers the temp file's path. Throws
 * GvError EIO with data.mismatch when a fetched block does not match its hash (refetch the entry).
 */
export async function assembleFile(
  ctx: FetchContext, e: RemoteEntry, old: IndexEntry | undefined,
  opts: { skipSyncInline?: boolean; attrs?: { mode: number; mtimeSeconds: number; uid?: number; gid?: number } } = {},
): Promise<string> {
  const dir = ctx.staging ?? ensureStaging(ctx.root);
  const tmp = path.join(dir, tempName(e.path, e.hashes, e.size));
  const size = Number(e.size);
  const hashes = e.hashes ?? Buffer.alloc(0);
  const n = blockCount(size);
  if (hashes.length !== n * DIGEST_SIZE) throw new GvError('EIO', 'hash list does not fit the size', { mismatch: true });
  // Mode, owner and mtime go on the open file (no path look-ups later, off the event loop).
  const finish = async (fh: fsp.FileHandle): Promise<void> => {
    const a = opts.attrs;
    if (!a) return;
    if (a.uid !== undefined && a.gid !== undefined) await fh.chown(a.uid, a.gid);
    await fh.chmod(a.mode);
    await fh.utimes(Date.now() / 1000, a.mtimeSeconds);
  };
  if (e.data) {
    if (e.data.length !== size || !hashBuffer(e.data).equals(hashes)) throw new GvError('EIO', 'inline data does not match its hashes', { mismatch: true });
    // Synchronous on purpose: a small file is a few fast syscalls, and thread-pool hops for each
    // (open, write, chmod, utimes, close) measured twice as slow for 1,000 files of 4 KiB.
    const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600);
    try {
      let off = 0;
      while (off < e.data.length) off += fs.writeSync(fd, e.data, off, e.data.length - off, off);
      const a = opts.attrs;
      if (a) {
        if (a.uid !== undefined && a.gid !== undefined) fs.fchownSync(fd, a.uid, a.gid);
        fs.fchmodSync(fd, a.mode);
        fs.futimesSync(fd, Date.now() / 1000, a.mtimeSeconds);
      }
      // Small files of a batch are flushed together by the caller (one syncfs).
      if (!opts.skipSyncInline) await new Promise<void>((res, rej) => fs.fsync(fd, (err) => (err ? rej(err) : res())));
    } finally {
      fs.closeSync(fd);
    }
    ctx.stats.inlineBytes += size;
    return tmp;
  }
  const fh = await fsp.open(tmp, O_RDWR | O_CREAT | O_NOFOLLOW, 0o600);
  // Files of a block or more: their blocks go to the disk directly (see direct-io.ts); the file
  // is fsynced below all the same (its size and extents).
  let direct: DirectWriter | null = null;
  try {
    if (size >= BLOCK_SIZE) direct = await DirectWriter.open(tmp, dir, BLOCK_SIZE);
    const have = Number((await fh.stat()).size);
    // A short last block written directly is padded: the file is cut to its size at the end.
    let padded = false;
    const put = async (b: Buffer, len: number, off: number): Promise<void> => {
      if (direct && (await direct.write(b, len, off))) {
        padded ||= len % DIRECT_ALIGN !== 0;
        return;
      }
      await fh.write(b, 0, len, off);
    };
    let next = 0;
    const worker = async (): Promise<void> => {
      // Only for blocks taken from this disk (resumed or reused); fetched blocks come in their own.
      const local = { buf: null as Buffer | null };
      try {
        await run(local);
      } catch (err) {
        next = n; // the other workers stop at their next block
        throw err;
      } finally {
        if (local.buf) blockPool.give(local.buf);
      }
    };
    const run = async (local: { buf: Buffer | null }): Promise<void> => {
      for (let i = next++; i < n; i = next++) {
        if (ctx.stopped?.()) throw new GvError('EAGAIN', 'transfer stopped');
        const off = i * BLOCK_SIZE;
        const len = Math.min(BLOCK_SIZE, size - off);
        const want = digestAt(hashes, i);
        // 1. Already in the temp file from an interrupted run.
        if (have >= off + len) {
          local.buf ??= blockPool.take(BLOCK_SIZE);
          const view = local.buf.subarray(0, len);
          const { bytesRead } = await fh.read(view, 0, len, off);
          if (bytesRead === len && sha(view).equals(want)) {
            ctx.stats.resumedBytes += len;
            continue;
          }
        }
        // 2. Present locally: the old version of this path, then any file of the zone (the
        // zone-wide map is looked at, and built, only when the old version does not have it).
        let reused = false;
        for (const c of localCandidates(want, old, i)) {
          local.buf ??= blockPool.take(BLOCK_SIZE);
          if ((reused = await readLocal(ctx, c.path, c.i, len, want, local.buf.subarray(0, len)))) break;
        }
        const any = reused ? undefined : ctx.blocks?.get(want);
        if (any) {
          local.buf ??= blockPool.take(BLOCK_SIZE);
          reused = await readLocal(ctx, any.path, any.i, len, want, local.buf.subarray(0, len));
        }
        if (reused) {
          ctx.stats.reusedBytes += len;
          await put(local.buf!, len, off);
          continue;
        }
        // 3. From the peer.
        await ctx.bucket.take(len);
        const got = await ctx.source.block(ctx.zone, e.path, BigInt(off), len);
        ctx.stats.fetchedBytes += got.length;
        ctx.onFetched?.(got.length);
        try {
          if (got.length !== len || !sha(got).equals(want)) {
            throw new GvError('EIO', `block ${i} of ${e.path.toString()} does not match its hash`, { mismatch: true });
          }
          await put(got, len, off);
        } finally {
          ctx.source.recycle?.(got);
        }
        written += len;
        if (written - flushedAt >= WRITEBACK_EVERY && !flushing && !direct) {
          // Early writeback, one at a time, not awaited here: overlaps the disk with the network.
          flushedAt = written;
          flushing = fh.datasync().catch(() => undefined).finally(() => {
            flushing = null;
          });
        }
      }
    };
    let written = 0;
    let flushedAt = 0;
    let flushing: Promise<void> | null = null;
    const k = Math.max(1, Math.min(ctx.blockConcurrency ?? 4, n));
    const results = await Promise.allSettled(Array.from({ length: k }, worker));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    await flushing;
    if (failed) throw failed.reason;
    if (have !== size || padded) await fh.truncate(size);
    await finish(fh);
    await fh.sync();
  } finally {
    await direct?.close().catch(() => undefined);
    await fh.close();
  }
  return tmp;
}
