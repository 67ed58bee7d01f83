/**
 * Test harness: a real ZFS pool from zfs-fuse (Debian package zfs-fuse 0.7) on a sparse file in a
 * temp directory, for tests of src/zfs. No kernel module needed, but root and /dev/fuse are.
 *
 *   const reason = await zfsFuseUnavailableReason();   // null, or why the real tests must skip
 *   const tp = await createZfsTestPool();                // daemon (ours or a running one) + pool
 *   ... tp.zfs.create(`${tp.pool}/a`, { quota: 64n << 20n }) ...
 *   await tp.teardown();                                 // export pool, stop *our* daemon, clean up
 *
 * zfs-fuse facts this relies on (learned the hard way, see the project notes):
 * - One daemon per mount namespace (fixed /run/zfs/zfs_socket and lock): reuse one that answers,
 *   and only ever stop the one we started, by its pid.
 * - A pidfile naming a dead pid makes zfs-fuse exit after creating its socket: remove it first.
 * - `-a 0 -e 0` turns off the FUSE attr/entry caches /etc/zfs/zfsrc sets to an hour.
 * - A killed daemon leaves mounts that fail with ENOTCONN: `umount -l` them.
 * - `cachefile=none` keeps the pool out of /var/lib/zfs/zpool.cache (no auto-import later).
 * - Pool names are unique per test run: libzfs matches mounts by dataset *name*.
 * - Export fails "pool is busy" while a process has its cwd/open files inside: retry, then -f.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Zfs } from '../../src/zfs/zfs.js';

const ZFS_FUSE_CANDIDATES = ['/sbin/zfs-fuse', '/usr/sbin/zfs-fuse'];
const POLICY_RC_D = '/usr/sbin/policy-rc.d';
const INSTALL_TIMEOUT_MS = 300_000;
const CMD_TIMEOUT_MS = 60_000;
const DAEMON_UP_TIMEOUT_MS = 15_000;
const DAEMON_STOP_TIMEOUT_MS = 20_000;
const POLL_MS = 100;

const log = (msg: string): void => {
  process.stderr.write(`[zfs-pool] ${msg}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface CmdResult {
  ok: boolean;
  stdout: string;
  stderr: string;
  code: number | string | null;
}

/** execFile (no shell) with a timeout and bounded output; never throws. */
function run(file: string, args: string[], timeoutMs = CMD_TIMEOUT_MS, env?: NodeJS.ProcessEnv): Promise<CmdResult> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 8 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C', ...env } },
      (err, stdout, stderr) => {
        const code = err ? ((err as NodeJS.ErrnoException).code ?? null) : 0;
        resolve({ ok: !err, stdout: String(stdout ?? ''), stderr: String(stderr ?? ''), code: code as number | string | null });
      },
    );
  });
}

function zfsFuseBinary(): string | null {
  for (const p of ZFS_FUSE_CANDIDATES) {
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** apt-get install zfs-fuse without letting the package start its own service. */
async function installZfsFuse(): Promise<string | null> {
  log('zfs-fuse is not installed; running apt-get install -y zfs-fuse');
  // policy-rc.d exiting 101 tells invoke-rc.d not to start services. Keep an existing one; add
  // ours only for the duration of the install.
  let addedPolicy = false;
  if (!fs.existsSync(POLICY_RC_D)) {
    fs.writeFileSync(POLICY_RC_D, '#!/bin/sh\n# written by GrapeVineFS test/harness/zfs-pool.ts during apt-get install\nexit 101\n', { mode: 0o755 });
    addedPolicy = true;
  }
  try {
    const env = { DEBIAN_FRONTEND: 'noninteractive' };
    let r = await run('apt-get', ['install', '-y', '--no-install-recommends', 'zfs-fuse'], INSTALL_TIMEOUT_MS, env);
    if (!r.ok && /Unable to locate|has no installation candidate/.test(r.stderr)) {
      await run('apt-get', ['update'], INSTALL_TIMEOUT_MS, env);
      r = await run('apt-get', ['install', '-y', '--no-install-recommends', 'zfs-fuse'], INSTALL_TIMEOUT_MS, env);
    }
    if (!r.ok) return `apt-get install zfs-fuse failed: ${(r.stderr.trim().split('\n').pop() ?? '').slice(0, 200)}`;
  } finally {
    if (addedPolicy) fs.rmSync(POLICY_RC_D, { force: true });
  }
  return zfsFuseBinary() ? null : 'apt-get install zfs-fuse did not provide /sbin/zfs-fuse';
}

let supportChecked: Promise<string | null> | null = null;

/**
 * null when real zfs-fuse tests can run here (installing zfs-fuse with apt-get if needed), else a
 * one-line reason to print when skipping. Set GV_TEST_NO_ZFS=1 to skip on purpose.
 */
export function zfsFuseUnavailableReason(): Promise<string | null> {
  supportChecked ??= (async () => {
    if (process.env.GV_TEST_NO_ZFS === '1') return 'GV_TEST_NO_ZFS=1';
    if (process.platform !== 'linux') return `zfs-fuse needs Linux (this is ${process.platform})`;
    if (process.getuid?.() !== 0) return 'zfs-fuse needs root (mounting FUSE filesystems, apt-get)';
    try {
      if (!fs.statSync('/dev/fuse').isCharacterDevice()) return '/dev/fuse is not a character device';
    } catch {
      return '/dev/fuse is missing (no FUSE in this kernel/container)';
    }
    if (!zfsFuseBinary()) {
      const why = await installZfsFuse();
      if (why) return why;
    }
    return null;
  })();
  return supportChecked;
}

/** Mount points (decoded) of fuse.zfs mounts visible to this process. */
function zfsFuseMounts(): string[] {
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f[sep + 1] !== 'fuse.zfs') continue;
    out.push(f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

/**
 * `umount -l` fuse.zfs mounts whose daemon is gone (stat fails with ENOTCONN), or all under `under`.
 * Outermost first: a lazy unmount takes the mounts below it along (and a dead parent makes the
 * paths below it unreachable anyway).
 */
async function unmountDeadMounts(under?: string): Promise<void> {
  const mounts = zfsFuseMounts().sort((a, b) => a.length - b.length);
  for (const m of mounts.slice(0, 200)) {
    if (!zfsFuseMounts().includes(m)) continue; // went with its parent
    let dead = false;
    if (under && (m === under || m.startsWith(`${under}/`))) dead = true;
    else {
      try {
        fs.statSync(m);
      } catch (e) {
        dead = (e as NodeJS.ErrnoException).code === 'ENOTCONN';
      }
    }
    if (dead) {
      const r = await run('umount', ['-l', m], 10_000);
      log(r.ok ? `lazily unmounted ${m}` : `umount -l ${m} failed: ${r.stderr.trim()}`);
    }
  }
}

/** Pid from our pidfile when that process is a live zfs-fuse, else null. */
function livePid(pidfile: string): number | null {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(pidfile, 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 1) return null;
  try {
    if (fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'zfs-fuse') return null;
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').charAt(0);
    if (state === 'Z' || state === 'X' || state === 'x') return null;
  } catch {
    return null;
  }
  return pid;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').charAt(0);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function daemonAnswers(zfs: Zfs): Promise<boolean> {
  return (await zfs.detect()).available;
}

/** Start zfs-fuse (it daemonizes) and wait until it answers; returns its pid. */
async function startDaemon(binary: string, pidfile: string, zfs: Zfs): Promise<number> {
  fs.rmSync(pidfile, { force: true }); // a stale pidfile makes zfs-fuse exit right after starting
  await unmountDeadMounts();
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    // stdio ignored: the forked daemon must not hold pipes of ours open.
    const child = spawn(binary, ['--pidfile', pidfile, '--no-kstat-mount', '-a', '0', '-e', '0'], { stdio: 'ignore' });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${binary} did not daemonize within ${DAEMON_UP_TIMEOUT_MS} ms`));
    }, DAEMON_UP_TIMEOUT_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  if (exitCode !== 0) throw new Error(`${binary} exited with status ${exitCode} (it logs to syslog only; try ${binary} -n)`);
  const deadline = Date.now() + DAEMON_UP_TIMEOUT_MS;
  for (let i = 0; i < DAEMON_UP_TIMEOUT_MS / POLL_MS && Date.now() < deadline; i++) {
    const pid = livePid(pidfile);
    if (pid !== null && (await daemonAnswers(zfs))) return pid;
    await sleep(POLL_MS);
  }
  const pid = livePid(pidfile);
  if (pid !== null) await stopDaemon(pid);
  throw new Error(`zfs-fuse did not answer within ${DAEMON_UP_TIMEOUT_MS} ms`);
}

/** SIGTERM our daemon (it unmounts and exits after a few seconds), SIGKILL if it hangs. */
async function stopDaemon(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + DAEMON_STOP_TIMEOUT_MS;
  for (let i = 0; i < DAEMON_STOP_TIMEOUT_MS / POLL_MS && Date.now() < deadline && pidAlive(pid); i++) await sleep(POLL_MS);
  if (pidAlive(pid)) {
    log(`zfs-fuse ${pid} ignored SIGTERM for ${DAEMON_STOP_TIMEOUT_MS} ms; SIGKILL`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 50 && pidAlive(pid); i++) await sleep(POLL_MS);
  }
}

export interface ZfsTestPool {
  /** Pool name, unique per call (gvt…). */
  pool: string;
  /** Temp directory holding vdev/, mnt/ and the pidfile. */
  dir: string;
  /** The pool's root dataset is mounted at `${mountRoot}/${pool}`. */
  mountRoot: string;
  /** The sparse file backing the pool. */
  vdev: string;
  /** Pid of the daemon we started, or null when we reused a running one. */
  startedPid: number | null;
  /** Wrapper talking to this daemon. */
  zfs: Zfs;
  /** `${pool}/${child}` */
  dataset(child: string): string;
  /** Export the pool, stop the daemon if we started it and nobody else has pools on it, remove `dir`. */
  teardown(): Promise<void>;
}

export interface ZfsTestPoolOptions {
  /** Sparse vdev size in bytes (default 512 MiB; ZFS needs ≥ 64 MiB). */
  sizeBytes?: number;
}

/** Call only when zfsFuseUnavailableReason() gave null. Throws (test fails) if setup breaks. */
export async function createZfsTestPool(opts: ZfsTestPoolOptions = {}): Promise<ZfsTestPool> {
  const reason = await zfsFuseUnavailableReason();
  if (reason) throw new Error(`zfs-fuse unavailable: ${reason}`);
  const binary = zfsFuseBinary()!;
  const zfs = new Zfs({ timeoutMs: CMD_TIMEOUT_MS });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-zfs-test-'));
  const pidfile = path.join(dir, 'zfs-fuse.pid');
  const mountRoot = path.join(dir, 'mnt');
  const vdevDir = path.join(dir, 'vdev');
  fs.mkdirSync(mountRoot);
  fs.mkdirSync(vdevDir);
  const pool = `gvt${process.pid.toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
  const vdev = path.join(vdevDir, `${pool}.img`);

  let startedPid: number | null = null;
  try {
    if (await daemonAnswers(zfs)) {
      log('reusing the zfs-fuse daemon that already answers on /run/zfs/zfs_socket');
    } else {
      try {
        startedPid = await startDaemon(binary, pidfile, zfs);
        log(`started zfs-fuse pid ${startedPid}`);
      } catch (e) {
        // Somebody else may have started one at the same moment: use it if it answers.
        if (!(await daemonAnswers(zfs))) throw e;
        log(`our zfs-fuse did not start (${(e as Error).message}); reusing the one that answers`);
      }
    }
    const fd = fs.openSync(vdev, 'wx');
    fs.ftruncateSync(fd, opts.sizeBytes ?? 512 * 1024 * 1024);
    fs.closeSync(fd);
    const r = await run('zpool', ['create', '-o', 'cachefile=none', '-m', path.join(mountRoot, pool), pool, vdev]);
    if (!r.ok) throw new Error(`zpool create ${pool} failed: ${r.stderr.trim()}`);
    const health = await run('zpool', ['list', '-H', '-o', 'health', pool]);
    if (health.stdout.trim() !== 'ONLINE') throw new Error(`pool ${pool} is ${health.stdout.trim() || health.stderr.trim()}`);
  } catch (e) {
    await teardownPool(pool, dir, startedPid);
    throw e;
  }

  let done = false;
  return {
    pool,
    dir,
    mountRoot,
    vdev,
    startedPid,
    zfs,
    dataset: (child) => `${pool}/${child}`,
    teardown: async () => {
      if (done) return;
      done = true;
      await teardownPool(pool, dir, startedPid);
    },
  };
}

async function teardownPool(pool: string, dir: string, startedPid: number | null): Promise<void> {
  // 1. export (unmounts every dataset of the pool)
  const imported = await run('zpool', ['list', '-H', '-o', 'name', pool], 10_000);
  if (imported.ok) {
    let exported = false;
    for (let i = 0; i < 10 && !exported; i++) {
      exported = (await run('zpool', ['export', pool])).ok;
      if (!exported) await sleep(300);
    }
    if (!exported) {
      const f = await run('zpool', ['export', '-f', pool]);
      exported = f.ok;
      if (!exported) log(`could not export ${pool}: ${f.stderr.trim()} (a process may still use it)`);
    }
  }
  // 2. our daemon, unless another user has pools on it meanwhile
  if (startedPid !== null && pidAlive(startedPid)) {
    const others = (await run('zpool', ['list', '-H', '-o', 'name'], 10_000)).stdout
      .split('\n')
      .filter((l) => l && l !== 'no pools available');
    if (others.length > 0) log(`leaving zfs-fuse ${startedPid} running: pools ${others.join(', ')} are still imported`);
    else {
      await stopDaemon(startedPid);
      log(`stopped zfs-fuse pid ${startedPid}`);
    }
  }
  // 3. dead mounts below our dir, then the dir itself (never while something is mounted in it)
  await unmountDeadMounts(dir);
  if (zfsFuseMounts().some((m) => m === dir || m.startsWith(`${dir}/`))) {
    log(`not removing ${dir}: something is still mounted below it`);
  } else {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
