/**
 * The staging area of a zone (`<root>/.grapevine/tmp`, mode 0700, on the zone's own filesystem so
 * a finished file is renamed into place). A transfer's temp file is named after what it will hold
 * (the target path and the expected hash list), so a retry or a restart finds the blocks fetched
 * before and fetches only the rest.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { STAGING_DIR } from '../vfs/reserved.js';

const DAY_MS = 24 * 3600 * 1000;

export function stagingDir(root: string): string {
  return path.join(root, STAGING_DIR, 'tmp');
}

/** Create the staging directory when missing (mode 0700); refuses a symlink in its place. */
export function ensureStaging(root: string): string {
  const top = path.join(root, STAGING_DIR);
  const dir = path.join(top, 'tmp');
  for (const d of [top, dir]) {
    const st = fs.lstatSync(d, { throwIfNoEntry: false });
    if (!st) {
      try {
        fs.mkdirSync(d, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    } else if (!st.isDirectory()) {
      throw new Error(`${d} is not a directory`);
    }
  }
  return dir;
}

/** Deterministic temp file name for `rel` with content `hashes` (hex SHA-256). */
export function tempName(rel: Buffer, hashes: Buffer | null, size: bigint, kind = 'f'): string {
  const h = createHash('sha256');
  h.update(kind);
  h.update(rel);
  h.update('\0');
  h.update(String(size));
  h.update('\0');
  if (hashes) h.update(hashes);
  return h.digest('hex');
}

/** A unique temp name (symlinks, whose content is small). */
export function uniqueTemp(): string {
  return `u-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

/** Remove temp files not touched for `maxAgeMs` (default a day); answers how many. */
export async function cleanStaging(root: string, maxAgeMs = DAY_MS): Promise<number> {
  const dir = stagingDir(root);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return 0;
  }
  const cut = Date.now() - maxAgeMs;
  let n = 0;
  for (const name of names) {
    const p = path.join(dir, name);
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st || st.mtimeMs >= cut) continue;
    try {
      if (st.isDirectory()) await fsp.rm(p, { recursive: true, force: true });
      else await fsp.unlink(p);
      n++;
    } catch {
      /* gone already */
    }
  }
  return n;
}

let syncfsWorks: boolean | null = null;

/**
 * Flush the filesystem holding `dir` in one step (syncfs through coreutils' `sync -f`, run
 * without a shell): one journal commit for a whole batch of small temp files instead of one
 * fsync each. Answers false when that is not available (the caller then fsyncs each file).
 */
export function syncFileSystem(dir: string): Promise<boolean> {
  if (syncfsWorks === false || process.platform !== 'linux') return Promise.resolve(false);
  return new Promise((resolve) => {
    execFile('sync', ['-f', dir], { timeout: 60_000 }, (err) => {
      syncfsWorks = !err;
      resolve(!err);
    });
  });
}
