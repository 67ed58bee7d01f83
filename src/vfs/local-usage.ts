import fsp from 'node:fs/promises';
import { joinName } from './names.js';

export interface UsageScanLimits {
  /** Stop after this many objects (the total is then a lower bound). */
  maxEntries?: number;
  /** Stop after this long. */
  maxMs?: number;
  /** Concurrent lstat calls. */
  concurrency?: number;
}

export interface UsageScanResult {
  bytes: bigint;
  entries: number;
  complete: boolean;
}

/**
 * Bytes a zone occupies (allocated blocks, hard links counted once). Seeded by a bounded scan at
 * open, then adjusted by the deltas of every write, truncate, create and remove the backend
 * performs. Deltas arriving while the scan runs are added on top of it: a file the scan has not
 * reached yet may be counted twice until the next rescan, which is the approximation we accept.
 */
export class UsageTracker {
  private bytes = 0n;
  private scanning: Promise<UsageScanResult> | undefined;
  lastScan: UsageScanResult | undefined;

  /** Current estimate (never negative). */
  get used(): bigint {
    return this.bytes < 0n ? 0n : this.bytes;
  }

  /** True once a scan completed without hitting its limits. */
  get exact(): boolean {
    return this.lastScan?.complete === true;
  }

  add(delta: bigint): void {
    this.bytes += delta;
  }

  /** Replace the estimate by a fresh walk of `root` (never follows symlinks). */
  scan(root: string | Buffer, limits: UsageScanLimits = {}): Promise<UsageScanResult> {
    if (this.scanning) return this.scanning;
    const before = this.bytes;
    this.scanning = scanTree(root, limits).then((r) => {
      // Keep deltas that arrived during the scan; drop the old base.
      this.bytes = r.bytes + (this.bytes - before);
      this.lastScan = r;
      return r;
    }).finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  /** Wait for a scan in progress, if any. */
  async settled(): Promise<void> {
    await this.scanning?.catch(() => undefined);
  }
}

/** Walk a tree with lstat, summing allocated bytes; bounded in entries and time. */
export async function scanTree(root: string | Buffer, limits: UsageScanLimits = {}): Promise<UsageScanResult> {
  const maxEntries = limits.maxEntries ?? 10_000_000;
  const deadline = Date.now() + (limits.maxMs ?? 10 * 60_000);
  const concurrency = Math.max(1, limits.concurrency ?? 16);
  const rootBuf = Buffer.isBuffer(root) ? root : Buffer.from(root);
  const seenLinks = new Set<bigint>();
  const dirs: Buffer[] = [];
  let bytes = 0n;
  let entries = 0;
  let complete = true;

  const account = async (p: Buffer): Promise<void> => {
    let st;
    try {
      st = await fsp.lstat(p, { bigint: true });
    } catch {
      return; // vanished or unreadable: skip
    }
    entries++;
    if (st.isDirectory()) dirs.push(p);
    if (st.nlink > 1n && !st.isDirectory()) {
      if (seenLinks.has(st.ino)) return;
      seenLinks.add(st.ino);
    }
    bytes += st.blocks * 512n;
  };

  await account(rootBuf);
  while (dirs.length > 0) {
    if (entries >= maxEntries || Date.now() > deadline) {
      complete = false;
      break;
    }
    const dir = dirs.pop()!;
    let names: Buffer[];
    try {
      names = await fsp.readdir(dir, { encoding: 'buffer' });
    } catch {
      continue;
    }
    for (let i = 0; i < names.length; i += concurrency) {
      if (entries >= maxEntries || Date.now() > deadline) {
        complete = false;
        break;
      }
      await Promise.all(names.slice(i, i + concurrency).map((n) => account(joinName(dir, n))));
    }
  }
  return { bytes, entries, complete };
}
