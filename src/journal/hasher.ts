/**
 * Per-block content hashes: SHA-256 of each fixed 1 MiB block of a file, kept as one buffer of
 * concatenated 32-byte digests. Blocks are read in 256 KiB chunks through an async reader and fed
 * to the hash incrementally, so no single step holds the event loop for more than a chunk's hash
 * (well under a millisecond). Only the blocks asked for are read and hashed.
 */
import { createHash } from 'node:crypto';

export const BLOCK_SIZE = 1024 * 1024;
export const DIGEST_SIZE = 32;
const CHUNK = 256 * 1024;

/** Reads up to `length` bytes at `offset` into `into`; answers the bytes read (0 at EOF). */
export type BlockReader = (into: Buffer, offset: number, length: number) => Promise<number>;

export interface HasherStats {
  /** Blocks hashed (each read fully from the file). */
  blocks: number;
  /** Bytes read for hashing. */
  bytes: number;
}

/** Number of blocks of a file of `size` bytes (an empty file has none). */
export function blockCount(size: number | bigint): number {
  const n = Number(size);
  return Math.ceil(n / BLOCK_SIZE);
}

/** Digest of block `i` of `hashes` (a view). */
export function digestAt(hashes: Buffer, i: number): Buffer {
  return hashes.subarray(i * DIGEST_SIZE, (i + 1) * DIGEST_SIZE);
}

/** SHA-256 per block of an in-memory buffer (tests, small content). */
export function hashBuffer(data: Buffer): Buffer {
  const n = blockCount(data.length);
  const out = Buffer.alloc(n * DIGEST_SIZE);
  for (let i = 0; i < n; i++) {
    createHash('sha256').update(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)).digest().copy(out, i * DIGEST_SIZE);
  }
  return out;
}

/**
 * Hashes blocks through a reader. One instance per zone; `stats` counts the work done (tests check
 * that unchanged blocks are not re-read).
 */
export class BlockHasher {
  readonly stats: HasherStats = { blocks: 0, bytes: 0 };
  private readonly chunk = Buffer.allocUnsafe(CHUNK);
  private busy: Promise<unknown> = Promise.resolve();

  /**
   * The block-hash list of a file now `size` bytes long, given the previous list and size (`old`,
   * null when unknown: every block is hashed) and the blocks known to have changed. Blocks past the
   * old end, and the blocks holding the old and new end of file when the size changed, are always
   * rehashed.
   */
  update(read: BlockReader, size: number, old: { hashes: Buffer; size: number } | null, dirty: Iterable<number>): Promise<Buffer> {
    // One hash at a time per hasher: the chunk buffer is shared.
    const run = this.busy.then(() => this.updateNow(read, size, old, dirty));
    this.busy = run.catch(() => undefined);
    return run;
  }

  private async updateNow(
    read: BlockReader, size: number, old: { hashes: Buffer; size: number } | null, dirty: Iterable<number>,
  ): Promise<Buffer> {
    const n = blockCount(size);
    const out = Buffer.alloc(n * DIGEST_SIZE);
    const todo = new Set<number>();
    let known = 0;
    if (old) {
      known = Math.min(Math.floor(old.hashes.length / DIGEST_SIZE), blockCount(old.size), n);
      old.hashes.copy(out, 0, 0, known * DIGEST_SIZE);
      if (old.size !== size) {
        // The block that held the old end (if partial) and the one holding the new end (if partial).
        if (old.size % BLOCK_SIZE !== 0) todo.add(Math.floor(old.size / BLOCK_SIZE));
        if (size % BLOCK_SIZE !== 0) todo.add(Math.floor(size / BLOCK_SIZE));
      }
    }
    for (let i = known; i < n; i++) todo.add(i);
    for (const i of dirty) todo.add(i);
    for (const i of [...todo].filter((i) => i >= 0 && i < n).sort((a, b) => a - b)) {
      const digest = await this.hashBlock(read, i, size);
      digest.copy(out, i * DIGEST_SIZE);
    }
    return out;
  }

  private async hashBlock(read: BlockReader, i: number, size: number): Promise<Buffer> {
    const h = createHash('sha256');
    const start = i * BLOCK_SIZE;
    const end = Math.min(size, start + BLOCK_SIZE);
    let off = start;
    while (off < end) {
      const want = Math.min(CHUNK, end - off);
      const got = await read(this.chunk, off, want);
      if (got <= 0) break; // shrank under us: hash what is there; the next change rehashes
      h.update(this.chunk.subarray(0, got));
      off += got;
    }
    this.stats.blocks++;
    this.stats.bytes += off - start;
    return h.digest();
  }
}
