import { GvError } from '../errors.js';
import {
  ACCESS_DELETE, ACCESS_EXECUTE, ACCESS_EXTEND, ACCESS_LOOKUP, ACCESS_MODIFY, ACCESS_READ,
  type CallContext, type FileType,
} from './types.js';

/** The parts of an object's attributes permission checks look at. */
export interface Owned {
  type: FileType;
  mode: number;
  uid: number;
  gid: number;
}

export const PERM_R = 4;
export const PERM_W = 2;
export const PERM_X = 1;

const S_ISVTX = 0o1000;

export const isRoot = (ctx: Pick<CallContext, 'uid'>): boolean => ctx.uid === 0;

export function inGroup(ctx: Pick<CallContext, 'gid' | 'gids'>, gid: number): boolean {
  return ctx.gid === gid || ctx.gids.includes(gid);
}

/** The rwx triplet (0..7) that applies to the caller, ignoring root's override. */
export function classBits(obj: Owned, ctx: CallContext): number {
  if (ctx.uid === obj.uid) return (obj.mode >> 6) & 7;
  if (inGroup(ctx, obj.gid)) return (obj.mode >> 3) & 7;
  return obj.mode & 7;
}

/**
 * Whether the caller holds every bit of `want` (PERM_R|PERM_W|PERM_X). Root holds r and w always,
 * and x on directories always, on other objects only when some x bit is set.
 */
export function hasPerm(obj: Owned, ctx: CallContext, want: number): boolean {
  if (isRoot(ctx)) {
    if ((want & PERM_X) === 0 || obj.type === 'dir') return true;
    return (obj.mode & 0o111) !== 0;
  }
  return (classBits(obj, ctx) & want) === want;
}

/** Throw EACCES unless the caller holds `want`. */
export function requirePerm(obj: Owned, ctx: CallContext, want: number): void {
  if (!hasPerm(obj, ctx, want)) throw new GvError('EACCES', 'permission denied', { want });
}

/** Which of the requested ACCESS bits (RFC 1813) the caller has on `obj`. Pure. */
export function grantedAccess(obj: Owned, ctx: CallContext, mask: number): number {
  let granted = 0;
  const r = hasPerm(obj, ctx, PERM_R);
  const w = hasPerm(obj, ctx, PERM_W);
  const x = hasPerm(obj, ctx, PERM_X);
  if (r) granted |= ACCESS_READ;
  if (obj.type === 'dir') {
    if (x) granted |= ACCESS_LOOKUP;
    if (w) granted |= ACCESS_MODIFY | ACCESS_EXTEND;
    // Deleting entries needs w and x on the directory (sticky rules are checked per entry).
    if (w && x) granted |= ACCESS_DELETE;
  } else {
    if (w) granted |= ACCESS_MODIFY | ACCESS_EXTEND;
    if (x) granted |= ACCESS_EXECUTE;
  }
  return granted & mask;
}

/** Creating, removing or renaming an entry of `dir` needs w and x on it. */
export function requireDirWrite(dir: Owned, ctx: CallContext): void {
  if (dir.type !== 'dir') throw new GvError('ENOTDIR');
  requirePerm(dir, ctx, PERM_W | PERM_X);
}

/**
 * Sticky directories: only the entry's owner, the directory's owner or root may remove or rename
 * an entry (EPERM, as Linux).
 */
export function requireStickyOk(dir: Owned, entry: Pick<Owned, 'uid'>, ctx: CallContext): void {
  if ((dir.mode & S_ISVTX) === 0 || isRoot(ctx)) return;
  if (ctx.uid === entry.uid || ctx.uid === dir.uid) return;
  throw new GvError('EPERM', 'sticky directory');
}

export interface AttrChange {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: bigint;
  atime?: unknown;
  mtime?: unknown;
  /** True when both given times are 'now' (or absent). */
  timesAreNow?: boolean;
}

/**
 * SETATTR rules: mode only by owner or root; uid change only by root; gid change by root or by the
 * owner into one of their groups; size needs w; explicit times need owner or root, 'now' needs
 * owner, root or w. Returns the mode to apply (setgid dropped for a non-root caller outside the
 * file's group, as Linux does).
 */
export function checkSetattr(obj: Owned, ctx: CallContext, ch: AttrChange): { mode?: number } {
  const root = isRoot(ctx);
  const owner = ctx.uid === obj.uid;
  let mode = ch.mode;
  if (mode !== undefined) {
    if (!root && !owner) throw new GvError('EPERM', 'only the owner may change the mode');
    mode &= 0o7777;
    const gid = ch.gid ?? obj.gid;
    if (!root && obj.type !== 'dir' && (mode & 0o2000) !== 0 && !inGroup(ctx, gid)) mode &= ~0o2000;
  }
  if (ch.uid !== undefined && ch.uid !== obj.uid && !root) {
    throw new GvError('EPERM', 'only root may change the owner');
  }
  if (ch.gid !== undefined && ch.gid !== obj.gid && !root) {
    if (!owner || !inGroup(ctx, ch.gid)) throw new GvError('EPERM', 'may not change the group');
  }
  if (ch.size !== undefined) {
    if (obj.type === 'dir') throw new GvError('EISDIR');
    if (obj.type !== 'file') throw new GvError('EINVAL');
    requirePerm(obj, ctx, PERM_W);
  }
  if (ch.atime !== undefined || ch.mtime !== undefined) {
    if (!root && !owner) {
      if (!ch.timesAreNow) throw new GvError('EPERM', 'only the owner may set times');
      requirePerm(obj, ctx, PERM_W);
    }
  }
  return mode === undefined ? {} : { mode };
}
