/**
 * Conflict resolution rules every node applies the same way, so all reach the same result alone:
 * the winner of two concurrent versions is the newer mtime, then the greater origin node id; the
 * loser is kept beside it as `name.gv-conflict-YYYYMMDD-HHMMSS-<node>.ext` (the loser's mtime in
 * UTC and the first 7 hex digits of its origin). A conflict copy never gets one of its own.
 */
import { baseOf, parentOf } from './paths.js';

/** One side of a conflict: what decides the winner and names the loser. */
export interface Side {
  mtimeNs: bigint;
  origin: string;
}

/** `<stem>.gv-conflict-YYYYMMDD-HHMMSS-<7 hex>[.ext]` (matched against the last component). */
export const CONFLICT_RE = /^(.+)\.gv-conflict-(\d{8})-(\d{6})-([0-9a-zA-Z_-]{1,7})(\.[^.]+)?$/;

/** True when the last component of `rel` is a conflict copy's name. */
export function isConflictPath(rel: Buffer): boolean {
  return CONFLICT_RE.test(baseOf(rel).toString('latin1'));
}

/**
 * True when side `a` wins over `b`. Mtimes compare in whole microseconds: replicas carry the
 * origin's mtime truncated to the microsecond (what utimes can set), so every node compares the
 * same numbers.
 */
export function wins(a: Side, b: Side): boolean {
  const ma = a.mtimeNs / 1000n;
  const mb = b.mtimeNs / 1000n;
  if (ma !== mb) return ma > mb;
  return a.origin > b.origin;
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** The conflict copy path of `rel` for the losing version `loser`. */
export function conflictPath(rel: Buffer, loser: Side): Buffer {
  const base = baseOf(rel).toString('latin1');
  const d = new Date(Number(loser.mtimeNs / 1_000_000n));
  const stamp = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}-${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
  const node = (loser.origin || 'unknown').replace(/[^0-9a-zA-Z_-]/g, '_').slice(0, 7);
  const dot = base.lastIndexOf('.');
  // A dotfile (".bashrc") has no extension; neither has a name ending in a dot.
  const [stem, ext] = dot > 0 && dot < base.length - 1 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
  const name = Buffer.from(`${stem}.gv-conflict-${stamp}-${node}${ext}`, 'latin1');
  const dir = parentOf(rel);
  return dir.length === 0 ? name : Buffer.concat([dir, Buffer.from('/'), name]);
}

/** The original path a conflict copy stands beside, or null when `rel` is not one. */
export function originalOf(rel: Buffer): Buffer | null {
  const base = baseOf(rel).toString('latin1');
  const m = CONFLICT_RE.exec(base);
  if (!m) return null;
  const name = Buffer.from(m[1]! + (m[5] ?? ''), 'latin1');
  const dir = parentOf(rel);
  return dir.length === 0 ? name : Buffer.concat([dir, Buffer.from('/'), name]);
}
