/**
 * Test harness: run the real GrapeVineFS daemon (dist/cli/main.js) in a child process on a temp
 * directory, with free ports, and control its life (stop, restart with the same state, kill -9).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DAEMON_MAIN = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');

const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

export interface TestDaemonOptions {
  /** Zone names; each is exported as `/<name>` (default ['tier-1']). */
  zones?: string[];
  /** Quota written for every zone (default '1G'). */
  quota?: string;
  /** Client allow list per zone (default ["127.0.0.1/32"]). */
  allow?: Record<string, string[]>;
  /** TOML appended verbatim to the generated config. */
  extraConfig?: string;
  env?: Record<string, string>;
  logLevel?: string;
}

export interface TestDaemon {
  nfsPort: number;
  mountPort: number;
  portmapPort: number | null;
  /** Temp directory holding config, state and zone directories. */
  dir: string;
  stateDir: string;
  configPath: string;
  zonePath(name?: string): string;
  /** libnfs URL of a zone (optionally with a path inside it). */
  url(zone?: string, sub?: string): string;
  /** Output collected from the current process so far. */
  stdout(): string;
  stderr(): string;
  pid(): number | undefined;
  /** SIGTERM, wait (bounded), SIGKILL if needed; removes the temp directory. */
  stop(): Promise<void>;
  /** Stop (keeping dir and state) and start again; ports are new. */
  restart(): Promise<void>;
  /** SIGKILL without any shutdown, keeping dir and state (call restart() or stop() after). */
  kill9(): Promise<void>;
}

/** Newest mtime of any .ts file under src/. */
function newestSourceMtime(dir: string): number {
  let newest = 0;
  const stack = [dir];
  let guard = 0;
  while (stack.length && guard++ < 10_000) {
    const d = stack.pop()!;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
    }
  }
  return newest;
}

function distIsFresh(): boolean {
  try {
    return fs.statSync(DAEMON_MAIN).mtimeMs >= newestSourceMtime(path.join(REPO_ROOT, 'src'));
  } catch {
    return false;
  }
}

let builtThisProcess = false;

/**
 * Build dist/ with `tsc -p .` once if any source is newer than dist/cli/main.js. Type errors in
 * files under construction do not stop emission; the build only fails when main.js is missing.
 * A lock directory keeps two test processes from building at the same time.
 */
export function ensureBuilt(): void {
  if (builtThisProcess || process.env.GV_TEST_NO_BUILD === '1') return;
  if (distIsFresh()) {
    builtThisProcess = true;
    return;
  }
  const lock = path.join(os.tmpdir(), 'gvfs-test-build.lock');
  const deadline = Date.now() + 180_000;
  let locked = false;
  while (!locked && Date.now() < deadline) {
    try {
      fs.mkdirSync(lock);
      locked = true;
    } catch {
      // Another process builds; a lock older than 3 minutes is abandoned.
      try {
        if (Date.now() - fs.statSync(lock).mtimeMs > 180_000) fs.rmSync(lock, { recursive: true, force: true });
      } catch {
        /* gone already */
      }
      spawnSync('sleep', ['0.2']);
    }
  }
  try {
    if (!distIsFresh()) {
      const tsc = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsc');
      const r = spawnSync(tsc, ['-p', '.'], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 170_000 });
      if (!fs.existsSync(DAEMON_MAIN)) {
        throw new Error(`build did not produce ${DAEMON_MAIN}:\n${r.stdout}\n${r.stderr}`);
      }
      // tsc may leave main.js untouched when nothing changed in it; mark the build as done.
      const now = new Date();
      fs.utimesSync(DAEMON_MAIN, now, now);
    }
  } finally {
    if (locked) fs.rmSync(lock, { recursive: true, force: true });
  }
  builtThisProcess = true;
}

function writeConfig(
  file: string, dir: string, stateDir: string, zones: string[], quota: string, extra: string,
  allow: Record<string, string[]>,
): void {
  const lines = [
    '[node]',
    'name = "test"',
    `state_dir = ${JSON.stringify(stateDir)}`,
    '',
    '[nfs]',
    'listen = "127.0.0.1"',
    'port = 0',
    'mount_port = 0',
    'portmap = "off"',
    '',
  ];
  // Each test daemon gets its own metrics port (the default 9586 would be shared).
  if (!/^\[metrics\]/m.test(extra)) lines.push('[metrics]', 'port = 0', '');
  // Likewise the peer protocol (used when the test gives the node a cluster key).
  if (!/^\[replication\]/m.test(extra)) lines.push('[replication]', 'port = 0', '');
  for (const z of zones) {
    lines.push(
      `[zones.${z}]`,
      `path = ${JSON.stringify(path.join(dir, 'zones', z))}`,
      `quota = ${JSON.stringify(quota)}`,
      `allow = ${JSON.stringify(allow[z] ?? ['127.0.0.1/32'])}`,
      '',
    );
  }
  if (extra) lines.push(extra, '');
  fs.writeFileSync(file, lines.join('\n'));
}

interface Running {
  child: ChildProcess;
  out: string;
  err: string;
  exited: Promise<void>;
  exitInfo: string | null;
}

export async function startTestDaemon(opts: TestDaemonOptions = {}): Promise<TestDaemon> {
  ensureBuilt();
  const zones = opts.zones ?? ['tier-1'];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-test-'));
  const stateDir = path.join(dir, 'state');
  fs.mkdirSync(stateDir, { recursive: true });
  for (const z of zones) fs.mkdirSync(path.join(dir, 'zones', z), { recursive: true });
  const configPath = path.join(dir, 'gv.toml');
  writeConfig(configPath, dir, stateDir, zones, opts.quota ?? '1G', opts.extraConfig ?? '', opts.allow ?? {});

  let cur: Running | null = null;
  const ports = { nfsPort: 0, mountPort: 0, portmapPort: null as number | null };

  const launch = async (): Promise<void> => {
    const child = spawn(
      process.execPath,
      [
        DAEMON_MAIN, 'daemon', '--config', configPath, '--nfs-port', '0', '--mount-port', '0',
        '--state-dir', stateDir, '--log-level', opts.logLevel ?? 'info',
      ],
      { cwd: dir, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const run: Running = { child, out: '', err: '', exited: Promise.resolve(), exitInfo: null };
    run.exited = new Promise((resolve) => {
      child.once('exit', (code, sig) => {
        run.exitInfo = `exit code ${code} signal ${sig}`;
        resolve();
      });
      child.once('error', (e) => {
        run.exitInfo = `spawn error ${e.message}`;
        resolve();
      });
    });
    cur = run;
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => {
      if (run.err.length < 1_000_000) run.err += s;
    });
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(new Error(`daemon not ready within ${READY_TIMEOUT_MS} ms\nstdout:\n${run.out}\nstderr:\n${run.err}`));
      }, READY_TIMEOUT_MS);
      let pending = '';
      child.stdout!.on('data', (s: string) => {
        if (run.out.length < 1_000_000) run.out += s;
        if (settled) return;
        pending += s;
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (!line.includes('gvd ready')) continue;
          try {
            const j = JSON.parse(line) as { msg?: string; nfsPort?: number; mountPort?: number; portmapPort?: number | null };
            if (j.msg !== 'gvd ready') continue;
            if (typeof j.nfsPort !== 'number' || typeof j.mountPort !== 'number') {
              finish(new Error(`"gvd ready" line without numeric nfsPort/mountPort: ${line}`));
              return;
            }
            ports.nfsPort = j.nfsPort;
            ports.mountPort = j.mountPort;
            ports.portmapPort = typeof j.portmapPort === 'number' ? j.portmapPort : null;
            finish();
            return;
          } catch {
            /* not JSON: keep waiting */
          }
        }
      });
      void run.exited.then(() =>
        finish(new Error(`daemon exited before ready (${run.exitInfo})\nstdout:\n${run.out}\nstderr:\n${run.err}`)),
      );
    });
  };

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    const run = cur;
    if (!run) return;
    cur = null;
    if (run.exitInfo === null) {
      run.child.kill(signal);
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_TIMEOUT_MS).unref());
      if ((await Promise.race([run.exited.then(() => 'exited' as const), timer])) === 'timeout') {
        run.child.kill('SIGKILL');
        await Promise.race([run.exited, new Promise((r) => setTimeout(r, 5000).unref())]);
      }
    }
  };

  try {
    await launch();
  } catch (e) {
    await terminate('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    get nfsPort() {
      return ports.nfsPort;
    },
    get mountPort() {
      return ports.mountPort;
    },
    get portmapPort() {
      return ports.portmapPort;
    },
    dir,
    stateDir,
    configPath,
    zonePath: (name = zones[0]!) => path.join(dir, 'zones', name),
    url: (zone = zones[0]!, sub = '') =>
      `nfs://127.0.0.1/${zone}${sub ? '/' + sub.replace(/^\/+/, '') : ''}?version=3&nfsport=${ports.nfsPort}&mountport=${ports.mountPort}`,
    stdout: () => (cur as Running | null)?.out ?? '',
    stderr: () => (cur as Running | null)?.err ?? '',
    pid: () => (cur as Running | null)?.child.pid,
    async stop() {
      await terminate('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await terminate('SIGTERM');
      await launch();
    },
    async kill9() {
      await terminate('SIGKILL');
    },
  };
}
