import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GvError } from '../errors.js';

/**
 * The cluster key: 32 random bytes shared by every node of a cluster, kept in a file of mode 0600.
 * It authenticates echolocation packets (HMAC-SHA256). A join token carries the cluster name and
 * the key in one printable string, so a second node can be set up from a line of text.
 */
export const CLUSTER_KEY_BYTES = 32;
const TOKEN_PREFIX = 'gvjoin1.';
const CLUSTER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function validateClusterName(name: string): void {
  if (!CLUSTER_NAME_RE.test(name)) {
    throw new GvError('USAGE', `invalid cluster name "${name}" (allowed: letters, digits, '_', '.', '-', 1-64 characters, starting with a letter or digit)`);
  }
}

/** Write `key` to `file` (never overwriting), mode 0600, fsynced. */
export function writeClusterKey(file: string, key: Buffer): void {
  if (key.length !== CLUSTER_KEY_BYTES) throw new GvError('EINVAL', `a cluster key is ${CLUSTER_KEY_BYTES} bytes, not ${key.length}`);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new GvError('EEXIST', `${file} exists: a cluster key is never overwritten (remove it by hand if you really mean to leave the cluster)`, { file });
    }
    throw err;
  }
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, key);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A new random key written to `file`. */
export function createClusterKey(file: string): Buffer {
  const key = randomBytes(CLUSTER_KEY_BYTES);
  writeClusterKey(file, key);
  return key;
}

/** Read and check a key file: exactly 32 bytes, not readable by group or others. */
export function readClusterKey(file: string): Buffer {
  let st: fs.Stats;
  let key: Buffer;
  try {
    st = fs.statSync(file);
    key = fs.readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new GvError('CONFIG', `${file}: cannot read cluster key (${code}); create one with gv init, or copy it from another node`, { file });
  }
  if (key.length !== CLUSTER_KEY_BYTES) {
    throw new GvError('CONFIG', `${file}: not a cluster key (${key.length} bytes, expected ${CLUSTER_KEY_BYTES})`, { file });
  }
  if ((st.mode & 0o077) !== 0) {
    throw new GvError('CONFIG', `${file}: cluster key readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`, { file });
  }
  return key;
}

/** `gvjoin1.` + base64url(name length, name, key). */
export function encodeJoinToken(clusterName: string, key: Buffer): string {
  validateClusterName(clusterName);
  if (key.length !== CLUSTER_KEY_BYTES) throw new GvError('EINVAL', `a cluster key is ${CLUSTER_KEY_BYTES} bytes`);
  const name = Buffer.from(clusterName, 'utf8');
  return TOKEN_PREFIX + Buffer.concat([Buffer.from([name.length]), name, key]).toString('base64url');
}

export function decodeJoinToken(token: string): { clusterName: string; key: Buffer } {
  const bad = (why: string) => new GvError('USAGE', `--join-token: not a join token (${why}); copy the whole line gv init printed`);
  const t = token.trim();
  if (!t.startsWith(TOKEN_PREFIX)) throw bad(`it starts with "${TOKEN_PREFIX}"`);
  const body = t.slice(TOKEN_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(body)) throw bad('bad characters');
  const raw = Buffer.from(body, 'base64url');
  const len = raw[0] ?? 0;
  if (len === 0 || raw.length !== 1 + len + CLUSTER_KEY_BYTES) throw bad('wrong length');
  const clusterName = raw.subarray(1, 1 + len).toString('utf8');
  try {
    validateClusterName(clusterName);
  } catch {
    throw bad('bad cluster name');
  }
  return { clusterName, key: Buffer.from(raw.subarray(1 + len)) };
}
