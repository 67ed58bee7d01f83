/**
 * Validation of the strings we hand to `zfs`/`zpool` as arguments. Everything is checked before a
 * command runs: a name starting with '-' would be read as an option, a tab or newline would break
 * the `-H` output we parse, and '@'/'#' would address snapshots/bookmarks we never mean to touch.
 */
import { GvError } from '../errors.js';

/** ZFS_MAX_DATASET_NAME_LEN is 256 including the terminating NUL. */
export const MAX_DATASET_NAME_LENGTH = 255;

/** Characters ZFS accepts in a dataset component (we leave out the space it also tolerates). */
const COMPONENT = /^[A-Za-z0-9_.:-]+$/;

/** Words `zpool` reserves for vdev types; a pool cannot be called that. */
const RESERVED_POOL_NAMES = new Set(['mirror', 'raidz', 'raidz1', 'raidz2', 'raidz3', 'spare', 'log', 'cache', 'draid']);

function bad(kind: string, name: string, why: string): GvError {
  return new GvError('EINVAL', `invalid ${kind} name ${JSON.stringify(name)}: ${why}`, { name });
}

/** Throws GvError('EINVAL') unless `name` is a valid pool name. */
export function validatePoolName(name: string): void {
  if (typeof name !== 'string' || name.length === 0) throw bad('pool', String(name), 'empty');
  if (name.length > MAX_DATASET_NAME_LENGTH) throw bad('pool', name, `longer than ${MAX_DATASET_NAME_LENGTH}`);
  if (!/^[A-Za-z]/.test(name)) throw bad('pool', name, 'must start with a letter');
  if (!COMPONENT.test(name)) throw bad('pool', name, 'only letters, digits, "_", "-", ".", ":" are allowed');
  if (RESERVED_POOL_NAMES.has(name) || /^c[0-9]/.test(name)) throw bad('pool', name, 'reserved by zpool');
  if (/^(mirror|raidz|draid|spare)/.test(name)) throw bad('pool', name, 'begins with a reserved vdev word');
}

/**
 * Throws GvError('EINVAL') unless `name` is a valid filesystem dataset name: `pool[/child]*`,
 * components of [A-Za-z0-9_.:-], not '.' or '..', no leading '-', no '@'/'#'/'%', no '//'.
 */
export function validateDatasetName(name: string): void {
  if (typeof name !== 'string' || name.length === 0) throw bad('dataset', String(name), 'empty');
  if (name.length > MAX_DATASET_NAME_LENGTH) throw bad('dataset', name, `longer than ${MAX_DATASET_NAME_LENGTH}`);
  if (name.startsWith('-')) throw bad('dataset', name, 'must not start with "-"');
  if (/[@#%]/.test(name)) throw bad('dataset', name, 'snapshots, bookmarks and "%" are not allowed here');
  const parts = name.split('/');
  const [pool, ...children] = parts;
  try {
    validatePoolName(pool!);
  } catch (e) {
    throw bad('dataset', name, `pool part: ${(e as GvError).message.replace(/^invalid pool name "[^"]*": /, '')}`);
  }
  for (const c of children) {
    if (c.length === 0) throw bad('dataset', name, 'empty component (leading, trailing or double "/")');
    if (c === '.' || c === '..') throw bad('dataset', name, `component "${c}" is not allowed`);
    if (!COMPONENT.test(c)) throw bad('dataset', name, 'only letters, digits, "_", "-", ".", ":" and "/" are allowed');
  }
}

/** Native (`quota`) or user (`gv:zone-id`) property name; throws GvError('EINVAL') otherwise. */
export function validatePropertyName(prop: string): void {
  if (typeof prop !== 'string' || prop.length === 0 || prop.length > 255) {
    throw new GvError('EINVAL', `invalid property name ${JSON.stringify(prop)}`, { prop });
  }
  if (!/^[a-z][a-z0-9_.:@-]*$/i.test(prop)) {
    throw new GvError('EINVAL', `invalid property name ${JSON.stringify(prop)}: only letters, digits, "_", ".", ":", "@", "-"`, { prop });
  }
}

/** A mountpoint value: an absolute path without control characters or commas, or none/legacy. */
export function validateMountpoint(mp: string): void {
  if (mp === 'none' || mp === 'legacy') return;
  if (typeof mp !== 'string' || !mp.startsWith('/')) {
    throw new GvError('EINVAL', `invalid mountpoint ${JSON.stringify(mp)}: must be an absolute path, "none" or "legacy"`, { mountpoint: mp });
  }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(mp) || mp.length > 1023) {
    throw new GvError('EINVAL', `invalid mountpoint ${JSON.stringify(mp)}: control characters or too long`, { mountpoint: mp });
  }
}
