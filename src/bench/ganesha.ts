import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { runCommand, startChild, waitForExit, type CleanupRegistry } from './processes.js';
import { benchDir, findExecutable } from './tools.js';
import { exportUrl, nfsTarget, type BenchTarget } from './target.js';

const NEEDED = ['ganesha.nfsd', 'rpcbind', 'unshare', 'nsenter', 'ip', 'ss', 'bash'] as const;
const FSAL_VFS = '/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so';
/** ports inside ganesha's private network namespace: nothing else is there */
const NFS_PORT = 2049;
const MOUNT_PORT = 20048;

export interface GaneshaOptions {
  /** directory for config, logs and recovery state */
  stateDir: string;
  /** the exported directory (put it on the same filesystem as our zone) */
  exportDir: string;
  nfsCp: string;
  cleanup: CleanupRegistry;
  log: (line: string) => void;
  /** try `apt-get install` when ganesha is missing (root only) */
  allowInstall: boolean;
  /** upper bound on how long the namespace lives, even if we vanish */
  maxSeconds: number;
}

export type GaneshaStart = { ok: true; target: BenchTarget } | { ok: false; reason: string };

async function missingPieces(): Promise<string[]> {
  const missing: string[] = [];
  for (const exe of NEEDED) if (!(await findExecutable(exe))) missing.push(exe);
  try {
    await stat(FSAL_VFS);
  } catch {
    missing.push('nfs-ganesha-vfs');
  }
  return missing;
}

/** Why ganesha cannot run here, or null when it can (installing it if allowed). */
async function unavailableReason(opts: GaneshaOptions): Promise<string | null> {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'needs root (namespaces, rpcbind, ganesha.nfsd)';
  }
  let missing = await missingPieces();
  if (missing.length && opts.allowInstall) {
    opts.log(`ganesha: missing ${missing.join(', ')}; apt-get install -y nfs-ganesha nfs-ganesha-vfs rpcbind`);
    try {
      await runCommand(
        ['apt-get', '-o', 'DPkg::Lock::Timeout=120', 'install', '-y', '-q', '--no-install-recommends',
          'nfs-ganesha', 'nfs-ganesha-vfs', 'rpcbind', 'iproute2'],
        { timeoutMs: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
      );
    } catch (err) {
      return `not installable: ${(err as Error).message.slice(0, 200)}`;
    }
    missing = await missingPieces();
  }
  return missing.length ? `not installed: ${missing.join(', ')}` : null;
}

/** PIDs of the direct children of `pid` (Linux /proc). */
async function childrenOf(pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Start rpcbind + ganesha as PID 1 of private pid/net/mount namespaces (bench/ganesha-ns.sh).
 * Clients reach it through `nsenter --net=/proc/<unshare pid>/ns/net`.
 */
export async function startGanesha(opts: GaneshaOptions): Promise<GaneshaStart> {
  const reason = await unavailableReason(opts);
  if (reason) return { ok: false, reason };

  const script = path.join(benchDir, 'ganesha-ns.sh');
  const child = startChild([
    'unshare', '--pid', '--fork', '--kill-child=SIGTERM', '--mount-proc', '--net', '--mount',
    '--propagation', 'private', '--',
    'bash', script, opts.stateDir, opts.exportDir, String(NFS_PORT), String(MOUNT_PORT), String(opts.maxSeconds),
  ]);
  const unsharePid = child.pid;
  let output = '';
  child.stderr?.on('data', (b: Buffer) => { output += b.toString(); });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (unsharePid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    // unshare ignores SIGTERM while it waits; signal the namespace's PID 1 (our script) instead
    for (const pid of await childrenOf(unsharePid)) {
      try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
    }
    if (await waitForExit(child, 15_000)) return;
    // --kill-child: SIGKILL on unshare makes the kernel send SIGTERM to PID 1
    child.kill('SIGKILL');
    await waitForExit(child, 5_000);
    for (const pid of await childrenOf(unsharePid)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  };
  const unregister = opts.cleanup.add('ganesha', stop);

  const ready = await new Promise<string | null>((resolve) => {
    let buf = '';
    const timer = setTimeout(() => finish(`did not report ready within 30 s`), 30_000);
    const finish = (err: string | null): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      resolve(err);
    };
    const onData = (b: Buffer): void => {
      buf += b.toString();
      if (buf.includes('GANESHA_READY')) finish(null);
    };
    const onExit = (code: number | null): void => finish(`exited with ${code} before ready`);
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
    child.once('error', (err) => finish(err.message));
  });
  child.stdout?.resume();
  if (ready !== null || unsharePid === undefined) {
    await stop();
    unregister();
    const tail = output.trim().split('\n').slice(-6).join(' | ');
    return { ok: false, reason: `failed to start: ${ready ?? 'no pid'}${tail ? `: ${tail}` : ''}` };
  }
  const url = exportUrl('127.0.0.1', '/bench', NFS_PORT, MOUNT_PORT);
  const wrap = ['nsenter', `--net=/proc/${unsharePid}/ns/net`, '--'];
  const target = nfsTarget('ganesha', url, opts.nfsCp, wrap, async () => {
    await stop();
    unregister();
  });
  return { ok: true, target };
}

