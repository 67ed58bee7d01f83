import type { ZoneSyncStatus } from '../replication/source.js';
import { formatSize } from '../util/size.js';

/** Bytes for people: 512 B, 1.5KiB, 3MiB. */
export function bytesText(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  return n < 1024 ? `${Math.round(n)} B` : `${formatSize(Math.round(n))}iB`;
}

export function rateText(bytesPerSec: number): string {
  return `${bytesText(bytesPerSec)}/s`;
}

function big(s: string): bigint {
  try {
    return /^\d+$/.test(s) ? BigInt(s) : 0n;
  } catch {
    return 0n;
  }
}

/** A zone's replication state summed over its members. */
export interface SyncSummary {
  behind: bigint;
  bytesToFetch: number;
  rateBytesPerSec: number;
  reachable: number;
  errors: string[];
}

export function summarize(s: ZoneSyncStatus): SyncSummary {
  let behind = 0n;
  let bytes = 0;
  let rate = 0;
  let reachable = 0;
  const errors: string[] = [];
  for (const m of s.members) {
    behind += big(m.behind);
    bytes += Number.isFinite(m.bytesToFetch) ? m.bytesToFetch : 0;
    rate += Number.isFinite(m.rateBytesPerSec) ? m.rateBytesPerSec : 0;
    if (m.state === 'reachable') reachable++;
    if (m.lastError) errors.push(`${m.peerName}: ${m.lastError}`);
  }
  return { behind, bytesToFetch: bytes, rateBytesPerSec: rate, reachable, errors };
}

/** One member's state in a few words: "3 behind, 1.5MiB to fetch, 200KiB/s" or "in sync". */
export function memberText(m: ZoneSyncStatus['members'][number]): string {
  if (m.state === 'unreachable') return `unreachable (applied ${m.applied})`;
  const behind = big(m.behind);
  if (behind === 0n && m.bytesToFetch === 0) return 'in sync';
  return `${behind} behind, ${bytesText(m.bytesToFetch)} to fetch, ${rateText(m.rateBytesPerSec)}`;
}

export function bar(fraction: number, width = 24): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`;
}

/** The line describing where a zone's sync stands. */
export function statusLine(s: ZoneSyncStatus, sum = summarize(s)): string {
  if (s.inSync) return `${s.zone}: in sync at version ${s.version}`;
  const parts = [`${sum.behind} version${sum.behind === 1n ? '' : 's'} behind`, `${bytesText(sum.bytesToFetch)} to fetch`, rateText(sum.rateBytesPerSec)];
  if (s.pendingPaths > 0) parts.push(`${s.pendingPaths} path${s.pendingPaths === 1 ? '' : 's'} waiting`);
  return `${s.zone}: ${parts.join(', ')}`;
}

interface Sink {
  write(text: string): unknown;
}

/**
 * Prints sync progress: on a terminal one line redrawn in place (\r, at most every
 * `ttyIntervalMs`), otherwise plain lines (at most one per `plainIntervalMs`, and only when
 * something changed). `finish` always prints the last state.
 */
export class ProgressPrinter {
  private last = -Infinity;
  private lastText = '';
  private drawn = false;
  private maxBytes = 0;
  private maxBehind = 0n;

  constructor(
    private readonly out: Sink,
    private readonly tty: boolean,
    private readonly now: () => number = Date.now,
    private readonly ttyIntervalMs = 100,
    private readonly plainIntervalMs = 1000,
  ) {}

  update(s: ZoneSyncStatus): void {
    const sum = summarize(s);
    if (sum.bytesToFetch > this.maxBytes) this.maxBytes = sum.bytesToFetch;
    if (sum.behind > this.maxBehind) this.maxBehind = sum.behind;
    const t = this.now();
    if (this.tty) {
      if (t - this.last < this.ttyIntervalMs) return;
      this.last = t;
      this.out.write(`\r${this.ttyLine(s, sum)}\x1b[K`);
      this.drawn = true;
      return;
    }
    const text = statusLine(s, sum);
    if (text === this.lastText || t - this.last < this.plainIntervalMs) return;
    this.last = t;
    this.lastText = text;
    this.out.write(`${text}\n`);
  }

  /** The final state (and, on a terminal, the end of the redrawn line). */
  finish(s: ZoneSyncStatus | null, note?: string): void {
    if (this.tty) {
      if (s) this.out.write(`\r${this.ttyLine(s, summarize(s))}\x1b[K\n`);
      else if (this.drawn) this.out.write('\n');
    } else if (s) {
      const text = statusLine(s);
      if (text !== this.lastText) this.out.write(`${text}\n`);
    }
    if (note) this.out.write(`${note}\n`);
  }

  private fraction(sum: SyncSummary, inSync: boolean): number {
    if (inSync) return 1;
    if (this.maxBytes > 0) return 1 - sum.bytesToFetch / this.maxBytes;
    if (this.maxBehind > 0n) return 1 - Number(sum.behind) / Number(this.maxBehind);
    return 0;
  }

  private ttyLine(s: ZoneSyncStatus, sum: SyncSummary): string {
    const f = this.fraction(sum, s.inSync);
    const pct = `${Math.floor(f * 100)}%`.padStart(4);
    if (s.inSync) return `${s.zone} ${bar(1)} 100%  in sync at version ${s.version}`;
    return `${s.zone} ${bar(f)} ${pct}  ${sum.behind} behind  ${bytesText(sum.bytesToFetch)} to fetch  ${rateText(sum.rateBytesPerSec)}`;
  }
}
