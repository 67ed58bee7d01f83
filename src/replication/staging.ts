/**
 * The staging area of a zone (`<root>/.grapevine/tmp`, mode 0700, on the zone's own filesystem so
 * a finished file is renamed into place). A transfer's temp file is named after what it will hold
 * (the target path and the expected hash list), so a retry or a restart finds the blocks fetched
 * before and fetches only the rest.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
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
/** The longest one `sync -f` may take before it counts as failed. */
const SYNC_TIMEOUT_MS = 60_000;

/**
 * Flush the filesystem holding `dir` in one step (syncfs through coreutils' `sync -f`): one journal
 * commit for a whole batch of small temp files instead of one fsync each. Answers false when that
 * is not available (the caller then fsyncs each file).
 *
 * `sync -f` runs from a small long-lived shell (SyncHelper) rather than being spawned by the
 * daemon each time: forking the daemon, whose address space is large, cost it 2-5 ms of its own
 * event-loop time per batch.
 */
export async function syncFileSystem(dir: string): Promise<boolean> {
  if (syncfsWorks === false || process.platform !== 'linux') return false;
  let status = dir.includes('\n') ? null : await sharedHelper().sync(dir);
  status ??= await syncOnce(dir);
  // 127: no `sync` here; every later batch fsyncs its files instead.
  if (status === 127) syncfsWorks = false;
  return status === 0;
}

/** One `sync -f DIR`, spawned (no shell): its exit status (127 when it cannot run). */
function syncOnce(dir: string): Promise<number> {
  return new Promise((resolve) => {
    execFile('sync', ['-f', dir], { timeout: SYNC_TIMEOUT_MS }, (err) => {
      if (!err) resolve(0);
      else resolve(typeof err.code === 'number' ? err.code : 127);
    });
  });
}

/**
 * A `sh` that runs `sync -f` for each directory written to its stdin (one per line; `read -r`
 * with IFS empty keeps every other byte as is) and answers each with its exit status, in order;
 * null when the helper is not usable (the caller spawns `sync` itself). Unref'd: it
 * never keeps the daemon alive, and it exits when the daemon's end of its stdin closes.
 */
export class SyncHelper {
  private shell: Shell | null = null;
  private broken = false;
  private readonly timeoutMs: number;
  private readonly script: string;

  /**
   * `timeoutMs`: a request not answered by then (a filesystem that hangs) stops the shell; it and
   * the requests behind it answer null (the caller then spawns `sync` itself, with its own limit).
   * `script` replaces the shell loop (tests).
   */
  constructor(opts: { timeoutMs?: number; script?: string } = {}) {
    this.timeoutMs = opts.timeoutMs ?? SYNC_TIMEOUT_MS;
    this.script = opts.script ?? 'while IFS= read -r d; do sync -f "$d"; echo "$?"; done';
  }

  /** The exit status of `sync -f DIR`, or null when the helper cannot run it. */
  sync(dir: string): Promise<number | null> {
    const sh = this.start();
    if (!sh) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.shell === sh) this.close();
      }, this.timeoutMs);
      timer.unref();
      sh.waiting.push((status) => {
        clearTimeout(timer);
        resolve(status);
      });
      sh.child.stdin!.write(`${dir}\n`);
    });
  }

  /** Stop the shell; requests not answered yet get null. */
  close(): void {
    const sh = this.shell;
    this.shell = null;
    if (!sh) return;
    sh.child.stdin?.end();
    sh.child.kill();
    failShell(sh);
  }

  private start(): Shell | null {
    if (this.broken) return null;
    if (this.shell) return this.shell;
    let child: ChildProcess;
    try {
      child = spawn('sh', ['-c', this.script], { stdio: ['pipe', 'pipe', 'ignore'] });
    } catch {
      this.broken = true;
      return null;
    }
    const sh: Shell = { child, waiting: [], out: '' };
    this.shell = sh;
    const gone = (): void => {
      if (this.shell === sh) this.shell = null;
      failShell(sh);
    };
    child.on('error', () => {
      this.broken = true;
      gone();
    });
    child.on('exit', gone);
    child.stdin!.on('error', () => undefined);
    child.stdout!.setEncoding('latin1');
    child.stdout!.on('data', (chunk: string) => {
      sh.out += chunk;
      for (let nl = sh.out.indexOf('\n'); nl >= 0; nl = sh.out.indexOf('\n')) {
        const n = Number.parseInt(sh.out.slice(0, nl), 10);
        sh.out = sh.out.slice(nl + 1);
        sh.waiting.shift()?.(Number.isInteger(n) ? n : null);
      }
    });
    // Never what keeps the daemon running.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    return sh;
  }
}

interface Shell {
  child: ChildProcess;
  /** Requests sent, oldest first: each line of output answers the first. */
  waiting: ((status: number | null) => void)[];
  out: string;
}

/** Everyone still waiting on this shell is told it could not answer. */
function failShell(sh: Shell): void {
  sh.out = '';
  for (const w of sh.waiting.splice(0)) w(null);
}

let helper: SyncHelper | null = null;

function sharedHelper(): SyncHelper {
  helper ??= new SyncHelper();
  return helper;
}
