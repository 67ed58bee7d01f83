import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { GvError } from '../errors.js';

/**
 * Child processes and clean-up actions of one bench run. Everything the bench starts is registered
 * here so that it is stopped on success, on error and on SIGINT/SIGTERM/SIGHUP.
 */
export class CleanupRegistry {
  private readonly actions: { name: string; fn: () => Promise<void> | void }[] = [];
  private running: Promise<void> | null = null;

  /** Register an action; returns a function that unregisters it (after you did the work yourself). */
  add(name: string, fn: () => Promise<void> | void): () => void {
    const entry = { name, fn };
    this.actions.push(entry);
    return () => {
      const i = this.actions.indexOf(entry);
      if (i >= 0) this.actions.splice(i, 1);
    };
  }

  /** Run all actions, newest first; each bounded by `perActionMs`. Never throws. */
  runAll(log: (line: string) => void, perActionMs = 20_000): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      killActiveCommands();
      while (this.actions.length) {
        const { name, fn } = this.actions.pop()!;
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(fn),
            new Promise<void>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`clean-up '${name}' took over ${perActionMs} ms`)), perActionMs);
            }),
          ]);
        } catch (err) {
          log(`clean-up ${name}: ${(err as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
      }
      this.running = null;
    })();
    return this.running;
  }

  /** On SIGINT/SIGTERM/SIGHUP: run the clean-up, then exit 130. Returns an uninstaller. */
  installSignalHandlers(log: (line: string) => void): () => void {
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    const onSignal = (sig: NodeJS.Signals): void => {
      log(`got ${sig}, cleaning up`);
      void this.runAll(log).finally(() => process.exit(130));
    };
    for (const s of signals) process.on(s, onSignal);
    return () => {
      for (const s of signals) process.off(s, onSignal);
    };
  }
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** wall time from spawn to exit, seconds */
  seconds: number;
}

export interface RunOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** when false, a non-zero exit resolves instead of throwing (default true) */
  check?: boolean;
}

const MAX_CAPTURE = 1 << 20;

/** short-lived commands of runCommand() that are still running */
const activeCommands = new Set<ChildProcess>();

let refuseNewCommands = false;

/** true once clean-up began: callers stop measuring instead of recording failures */
export function shuttingDown(): boolean {
  return refuseNewCommands;
}

/** SIGKILL every runCommand() child still running, and refuse new ones (clean-up on signal). */
export function killActiveCommands(): void {
  refuseNewCommands = true;
  for (const child of activeCommands) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

function describe(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Run a command to completion with a hard time limit (SIGKILL on expiry); captures output. */
export function runCommand(argv: readonly string[], opts: RunOptions): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) return Promise.reject(new GvError('USAGE', 'empty command'));
  if (refuseNewCommands) return Promise.reject(new GvError('EIO', `not started (shutting down): ${describe(argv)}`));
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    activeCommands.add(child);
    child.once('exit', () => activeCommands.delete(child));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => { if (stdout.length < MAX_CAPTURE) stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { if (stderr.length < MAX_CAPTURE) stderr += b.toString(); });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      activeCommands.delete(child);
      reject(new GvError('EIO', `cannot run ${describe(argv)}: ${err.message}`, { argv: [...argv] }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const result: RunResult = { code, signal, stdout, stderr, seconds };
      if (timedOut) {
        reject(new GvError('EIO', `timed out after ${opts.timeoutMs} ms: ${describe(argv)}`, { argv: [...argv], stderr: stderr.trim() }));
      } else if (code !== 0 && opts.check !== false) {
        const tail = stderr.trim().split('\n').slice(-5).join(' | ') || stdout.trim().split('\n').slice(-3).join(' | ');
        reject(new GvError('EIO', `${describe(argv)} exited with ${code ?? signal}: ${tail}`, { argv: [...argv], code, signal, stderr: stderr.trim() }));
      } else {
        resolve(result);
      }
    });
  });
}

/** Wait until a child exits, at most `ms`; true when it exited. */
export function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { child.off('exit', onExit); resolve(false); }, ms);
    const onExit = (): void => { clearTimeout(timer); resolve(true); };
    child.once('exit', onExit);
  });
}

/** Stop a child we started: `signal`, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  if (await waitForExit(child, graceMs)) return;
  child.kill('SIGKILL');
  await waitForExit(child, 5_000);
}

/** Start a long-running child (server); the caller registers its clean-up. */
export function startChild(argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
  const [cmd, ...args] = argv;
  if (!cmd) throw new GvError('USAGE', 'empty command');
  return spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

export { describe as describeCommand };
