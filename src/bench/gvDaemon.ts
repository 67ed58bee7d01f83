import { createWriteStream } from 'node:fs';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { GvError, toGvError } from '../errors.js';
import { startChild, stopChild, type CleanupRegistry } from './processes.js';
import { repoRoot } from './tools.js';
import { exportUrl, nfsTarget, type BenchTarget } from './target.js';

export const BENCH_ZONE = 'bench';

export interface GvDaemonOptions {
  /** holds config, state dir, daemon log */
  workDir: string;
  /** the zone's directory (same filesystem as ganesha's export) */
  zoneDir: string;
  nfsCp: string;
  cleanup: CleanupRegistry;
  log: (line: string) => void;
  /** when set, run the daemon under `node --cpu-prof --cpu-prof-dir DIR` */
  cpuProfDir?: string;
  logLevel: string;
  readyTimeoutMs: number;
}

/** TOML string literal (basic string with escapes) */
function tomlString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function benchConfigToml(stateDir: string, zoneDir: string): string {
  return [
    '# written by `npm run bench`',
    '[node]',
    'name = "bench"',
    `state_dir = ${tomlString(stateDir)}`,
    '',
    '[nfs]',
    'listen = "127.0.0.1"',
    'port = 0',
    'mount_port = 0',
    'portmap = "off"',
    '# the reference server runs with No_Root_Squash; compare like with like',
    'squash = "none"',
    '',
    `[zones.${BENCH_ZONE}]`,
    `path = ${tomlString(zoneDir)}`,
    'allow = ["127.0.0.1/32"]',
    '',
  ].join('\n');
}

interface ReadyLine {
  nfsPort: number;
  mountPort: number;
}

function parseReady(line: string): ReadyLine | null {
  if (!line.includes('gvd ready')) return null;
  try {
    const obj = JSON.parse(line) as Record<string, unknown>;
    if (obj.msg !== 'gvd ready') return null;
    const nfsPort = Number(obj.nfsPort);
    const mountPort = Number(obj.mountPort);
    if (!Number.isInteger(nfsPort) || nfsPort <= 0 || !Number.isInteger(mountPort) || mountPort <= 0) return null;
    return { nfsPort, mountPort };
  } catch {
    return null;
  }
}

/** Start `node dist/cli/main.js daemon --config F --nfs-port 0 --mount-port 0` and wait for its ready line. */
export async function startGvDaemon(opts: GvDaemonOptions): Promise<BenchTarget> {
  const mainJs = path.join(repoRoot, 'dist', 'cli', 'main.js');
  try {
    await access(mainJs);
  } catch {
    throw new GvError('CONFIG', `${mainJs} is missing: the daemon CLI is not built (npm run build)`);
  }
  const stateDir = path.join(opts.workDir, 'state');
  const configFile = path.join(opts.workDir, 'gvd.toml');
  const logFile = path.join(opts.workDir, 'daemon.log');
  try {
    await mkdir(stateDir, { recursive: true });
    await mkdir(opts.zoneDir, { recursive: true });
    await writeFile(configFile, benchConfigToml(stateDir, opts.zoneDir));
  } catch (err) {
    throw toGvError(err);
  }
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const argv = [
    process.execPath, ...nodeArgs, mainJs, 'daemon', '--config', configFile,
    '--nfs-port', '0', '--mount-port', '0', '--state-dir', stateDir, '--log-level', opts.logLevel,
  ];
  const child = startChild(argv, { cwd: repoRoot });
  const logStream = createWriteStream(logFile);
  logStream.on('error', (err) => opts.log(`gv: daemon log ${logFile}: ${err.message}`));
  const toLog = (b: Buffer): void => {
    if (!logStream.writableEnded) logStream.write(b);
  };
  const recent: string[] = [];
  const remember = (text: string): void => {
    for (const line of text.split('\n')) if (line.trim()) recent.push(line.slice(0, 400));
    if (recent.length > 20) recent.splice(0, recent.length - 20);
  };
  child.stderr?.on('data', (b: Buffer) => { toLog(b); remember(b.toString()); });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await stopChild(child, 'SIGTERM', 15_000);
    await new Promise<void>((resolve) => logStream.end(resolve));
  };
  const unregister = opts.cleanup.add('gv daemon', stop);

  const ready = await new Promise<ReadyLine | string>((resolve) => {
    let pending = '';
    const timer = setTimeout(() => finish(`no "gvd ready" line within ${opts.readyTimeoutMs} ms`), opts.readyTimeoutMs);
    const finish = (r: ReadyLine | string): void => {
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(r);
    };
    child.stdout?.on('data', (b: Buffer) => {
      toLog(b);
      remember(b.toString());
      pending += b.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const r = parseReady(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        if (r) finish(r);
      }
      if (pending.length > 1 << 20) pending = '';
    });
    const onExit = (code: number | null, sig: NodeJS.Signals | null): void => finish(`exited with ${code ?? sig} before ready`);
    child.once('exit', onExit);
    child.once('error', (err) => finish(`cannot start: ${err.message}`));
  });
  if (typeof ready === 'string') {
    await stop();
    unregister();
    throw new GvError('EIO', `GrapeVineFS daemon ${ready}; last output: ${recent.slice(-6).join(' | ')}`, { logFile });
  }
  opts.log(`gv: daemon pid ${child.pid} ready, nfs port ${ready.nfsPort}, mount port ${ready.mountPort} (log ${logFile})`);
  const url = exportUrl('127.0.0.1', `/${BENCH_ZONE}`, ready.nfsPort, ready.mountPort);
  return nfsTarget('gv', url, opts.nfsCp, [], async () => {
    await stop();
    unregister();
  });
}
