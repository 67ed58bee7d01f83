/**
 * Paths that come from a peer are untrusted: every component is checked (no empty, '.', '..',
 * NUL or over-long component, never absolute), the staging area is never named, and nothing is
 * ever reached through a symlink (every parent is lstat'ed and must be a real directory).
 */
import fs from 'node:fs';
import { GvError } from '../errors.js';
import { isReservedPath } from '../vfs/reserved.js';

const NAME_MAX = 255;
const PATH_MAX = 4096;

/** Why `rel` is not an acceptable zone-relative path, or null when it is. */
export function badPath(rel: Buffer): string | null {
  if (rel.length === 0) return 'empty path';
  if (rel.length > PATH_MAX) return 'path too long';
  if (rel[0] === 0x2f) return 'absolute path';
  if (rel.includes(0)) return 'NUL in path';
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i < rel.length && rel[i] !== 0x2f) continue;
    const len = i - start;
    if (len === 0) return 'empty component';
    if (len > NAME_MAX) return 'component too long';
    if (rel[start] === 0x2e && (len === 1 || (len === 2 && rel[start + 1] === 0x2e))) return "'.' or '..' component";
    start = i + 1;
  }
  if (isReservedPath(rel)) return 'staging area';
  return null;
}

/** Throws EINVAL unless `rel` is acceptable. */
export function checkPath(rel: Buffer): void {
  const why = badPath(rel);
  if (why) throw new GvError('EINVAL', `refused path: ${why}`, { path: rel.toString('latin1').slice(0, 200) });
}

/** Absolute path (as bytes) of a checked relative path under `root`. */
export function absOf(root: Buffer, rel: Buffer): Buffer {
  return rel.length === 0 ? root : Buffer.concat([root, Buffer.from('/'), rel]);
}

/** The parent of a relative path ('' for a top-level name). */
export function parentOf(rel: Buffer): Buffer {
  const i = rel.lastIndexOf(0x2f);
  return i < 0 ? Buffer.alloc(0) : rel.subarray(0, i);
}

/** The last component of a relative path. */
export function baseOf(rel: Buffer): Buffer {
  const i = rel.lastIndexOf(0x2f);
  return i < 0 ? rel : rel.subarray(i + 1);
}

/**
 * True when every directory above `rel` exists as a real directory (not a symlink). With
 * `create`, missing parents are made (mode 0755) — a last resort, parents normally arrive first;
 * answers the parents it made (relative paths) through `made`.
 */
export function parentsOk(root: Buffer, rel: Buffer, create = false, made?: Buffer[]): boolean {
  let i = rel.indexOf(0x2f);
  while (i >= 0) {
    const dir = rel.subarray(0, i);
    const abs = absOf(root, dir);
    const st = fs.lstatSync(abs, { throwIfNoEntry: false });
    if (!st) {
      if (!create) return false;
      try {
        fs.mkdirSync(abs, { mode: 0o755 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
        const again = fs.lstatSync(abs, { throwIfNoEntry: false });
        if (!again?.isDirectory()) return false;
      }
      made?.push(Buffer.from(dir));
    } else if (!st.isDirectory()) return false;
    i = rel.indexOf(0x2f, i + 1);
  }
  return true;
}
