/**
 * Coalescing of WRITE streams: per file, the set of 1 MiB blocks written since the last journal
 * entry, and the smallest size it was cut to meanwhile (a truncation). A file is flushed (one
 * journal entry) when its writer commits, or once it has been quiet for `settleMs`, or at the
 * latest `maxAgeMs` after its first unflushed write.
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
  /** Smallest size the file was cut to since its last flush. */
  cut?: number;
  since: number;
  timer: NodeJS.Timeout;
}

/** What a flush takes: the blocks written, and the cut (no earlier hash holds from its block on). */
export interface Taken {
  blocks: Set<number>;
  cut?: number;
}

/** The file was cut to `size`: its pending cut is the smaller of the two. */
function lowerCut(d: Dirty, size: number): void {
  d.cut = d.cut === undefined ? size : Math.min(d.cut, size);
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
    const d = this.touch(fileid);
    for (let b = first; b <= last; b++) d.blocks.add(b);
  }

  /**
   * The file was cut to `size` (SETATTR of the size, CREATE with a size over it): from the block
   * the cut fell in onwards, the hashes of the last entry no longer hold, written again or not.
   */
  cut(fileid: bigint, size: number): void {
    lowerCut(this.touch(fileid), size);
  }

  /** The file's entry, made if missing, its settle timer started again. */
  private touch(fileid: bigint): Dirty {
    let d = this.files.get(fileid);
    const now = Date.now();
    if (d) clearTimeout(d.timer);
    else {
      d = { blocks: new Set(), since: now, timer: undefined as unknown as NodeJS.Timeout };
      this.files.set(fileid, d);
    }
    const wait = Math.max(0, Math.min(this.settleMs, d.since + this.maxAgeMs - now));
    d.timer = setTimeout(() => this.opts.onSettle(fileid), wait);
    d.timer.unref();
    return d;
  }

  has(fileid: bigint): boolean {
    return this.files.has(fileid);
  }

  /** Files with unflushed writes. */
  pending(): bigint[] {
    return [...this.files.keys()];
  }

  /** Take (and forget) what is pending for a file; undefined when nothing is. */
  take(fileid: bigint): Taken | undefined {
    const d = this.files.get(fileid);
    if (!d) return undefined;
    clearTimeout(d.timer);
    this.files.delete(fileid);
    return { blocks: d.blocks, cut: d.cut };
  }

  /** Put back what a failed flush took (merged with anything written since); flushed after settling. */
  restore(fileid: bigint, taken: Taken): void {
    const d = this.touch(fileid);
    for (const b of taken.blocks) d.blocks.add(b);
    if (taken.cut !== undefined) lowerCut(d, taken.cut);
  }

  /** Forget everything (the zone is closing after a final flush). */
  clear(): void {
    for (const d of this.files.values()) clearTimeout(d.timer);
    this.files.clear();
  }
}
