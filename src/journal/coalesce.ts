/**
 * Coalescing of WRITE streams: per file, the set of 1 MiB blocks written since the last journal
 * entry. A file is flushed (one journal entry) when its writer commits, or once it has been quiet
 * for `settleMs`, or at the latest `maxAgeMs` after its first unflushed write.
 */
import { BLOCK_SIZE } from './hasher.js';

export interface CoalescerOptions {
  /** Quiet time after the last WRITE before the file is flushed (default 200 ms). */
  settleMs?: number;
  /** Longest a file stays dirty under a continuous stream of WRITEs (default 5 s). */
  maxAgeMs?: number;
  /** Called when a file settles: flush it. */
  onSettle: (fileid: bigint) => void;
}

interface Dirty {
  blocks: Set<number>;
  since: number;
  timer: NodeJS.Timeout;
}

export class WriteCoalescer {
  private readonly files = new Map<bigint, Dirty>();
  private readonly settleMs: number;
  private readonly maxAgeMs: number;

  constructor(private readonly opts: CoalescerOptions) {
    this.settleMs = Math.min(200, Math.max(1, opts.settleMs ?? 200));
    this.maxAgeMs = Math.max(this.settleMs, opts.maxAgeMs ?? 5000);
  }

  /** A write of `length` bytes at `offset` reached the file. */
  note(fileid: bigint, offset: number, length: number): void {
    const first = Math.floor(offset / BLOCK_SIZE);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / BLOCK_SIZE);
    let d = this.files.get(fileid);
    const now = Date.now();
    if (d) clearTimeout(d.timer);
    else {
      d = { blocks: new Set(), since: now, timer: undefined as unknown as NodeJS.Timeout };
      this.files.set(fileid, d);
    }
    for (let b = first; b <= last; b++) d.blocks.add(b);
    const wait = Math.max(0, Math.min(this.settleMs, d.since + this.maxAgeMs - now));
    d.timer = setTimeout(() => this.opts.onSettle(fileid), wait);
    d.timer.unref();
  }

  has(fileid: bigint): boolean {
    return this.files.has(fileid);
  }

  /** Files with unflushed writes. */
  pending(): bigint[] {
    return [...this.files.keys()];
  }

  /** Take (and forget) the dirty blocks of a file; undefined when it has none. */
  take(fileid: bigint): Set<number> | undefined {
    const d = this.files.get(fileid);
    if (!d) return undefined;
    clearTimeout(d.timer);
    this.files.delete(fileid);
    return d.blocks;
  }

  /** Put back blocks a failed flush took (merged with anything written since); flushed after settling. */
  restore(fileid: bigint, blocks: Iterable<number>): void {
    const had = this.files.get(fileid);
    this.note(fileid, 0, 0);
    const d = this.files.get(fileid)!;
    if (!had) d.blocks.delete(0);
    for (const b of blocks) d.blocks.add(b);
  }

  /** Forget everything (the zone is closing after a final flush). */
  clear(): void {
    for (const d of this.files.values()) clearTimeout(d.timer);
    this.files.clear();
  }
}
