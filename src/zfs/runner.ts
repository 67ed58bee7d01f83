/**
 * Runs the `zfs`/`zpool` binaries: child_process.execFile with an argument array (never a shell),
 * a bounded run time and bounded output. The result is data, never a throw, so the error mapping
 * (zfs/error-map.ts) sees every failure the same way and unit tests inject a scripted runner.
 */
import { execFile as nodeExecFile, type ExecFileOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export type ZfsCommand = 'zfs' | 'zpool';

export interface RunOptions {
  /** Kill the child (SIGKILL) after this many milliseconds. */
  timeoutMs: number;
  /** Kill the child when stdout or stderr grows beyond this many bytes. */
  maxOutputBytes: number;
}

export interface RunResult {
  /** Exit status, or null when the child did not exit normally (signal, spawn failure). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Set when the command could not run to completion. */
  failure?: 'not-found' | 'not-executable' | 'timeout' | 'output-limit' | 'signal' | 'spawn';
  /** Details of the failure (signal name, spawn error message). */
  detail?: string;
}

/** The seam unit tests replace: run one command, report what happened. */
export type ZfsRunner = (command: ZfsCommand, args: readonly string[], opts: RunOptions) => Promise<RunResult>;

/** Node's execFile signature as far as we use it (injectable so tests can check the call). */
export type ExecFileFn = (
  file: string,
  args: readonly string[],
  options: ExecFileOptions & { encoding: 'utf8' },
  callback: (error: (Error & { code?: unknown; killed?: boolean; signal?: NodeJS.Signals | null }) | null, stdout: string, stderr: string) => void,
) => unknown;

/** Directories searched after $PATH: the tools live in sbin, which a non-login PATH may miss. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of `command` from $PATH or the sbin directories, or null when absent. */
export function findBinary(command: string, envPath: string | undefined = process.env.PATH): string | null {
  const dirs = [...(envPath ?? '').split(path.delimiter).filter((d) => d.startsWith('/')), ...SBIN_DIRS];
  for (const d of dirs) {
    const p = path.join(d, command);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

export interface ExecFileRunnerOptions {
  /** Binary per command; default: looked up with findBinary() on first use. */
  paths?: Partial<Record<ZfsCommand, string>>;
  /** Replacement for child_process.execFile (tests). */
  execFile?: ExecFileFn;
  /** Extra environment; LC_ALL=C is always set so messages are the English ones we match. */
  env?: NodeJS.ProcessEnv;
}

/** The real runner. */
export function createExecFileRunner(options: ExecFileRunnerOptions = {}): ZfsRunner {
  const exec = options.execFile ?? (nodeExecFile as unknown as ExecFileFn);
  const resolved: Partial<Record<ZfsCommand, string>> = { ...options.paths };
  return (command, args, opts) => {
    const file = resolved[command] ?? findBinary(command);
    if (file === null) {
      return Promise.resolve({ exitCode: null, stdout: '', stderr: '', failure: 'not-found', detail: `${command} not found in PATH or ${SBIN_DIRS.join(', ')}` });
    }
    resolved[command] = file;
    return new Promise<RunResult>((resolve) => {
      exec(
        file,
        [...args],
        {
          encoding: 'utf8',
          shell: false,
          timeout: opts.timeoutMs,
          killSignal: 'SIGKILL',
          maxBuffer: opts.maxOutputBytes,
          windowsHide: true,
          env: { ...process.env, ...options.env, LC_ALL: 'C', LANG: 'C' },
        },
        (error, stdout, stderr) => {
          const out = typeof stdout === 'string' ? stdout : String(stdout ?? '');
          const err = typeof stderr === 'string' ? stderr : String(stderr ?? '');
          if (!error) {
            resolve({ exitCode: 0, stdout: out, stderr: err });
            return;
          }
          const code = error.code;
          if (typeof code === 'number') {
            resolve({ exitCode: code, stdout: out, stderr: err });
          } else if (code === 'ENOENT') {
            resolve({ exitCode: null, stdout: out, stderr: err, failure: 'not-found', detail: `${file}: not found` });
          } else if (code === 'EACCES') {
            resolve({ exitCode: null, stdout: out, stderr: err, failure: 'not-executable', detail: `${file}: permission denied` });
          } else if (code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
            resolve({ exitCode: null, stdout: out, stderr: err, failure: 'output-limit', detail: `output exceeded ${opts.maxOutputBytes} bytes` });
          } else if (error.killed && error.signal === 'SIGKILL') {
            resolve({ exitCode: null, stdout: out, stderr: err, failure: 'timeout', detail: `no exit within ${opts.timeoutMs} ms` });
          } else if (error.signal) {
            resolve({ exitCode: null, stdout: out, stderr: err, failure: 'signal', detail: `killed by ${error.signal}` });
          } else {
            resolve({ exitCode: null, stdout: out, stderr: err, failure: 'spawn', detail: error.message });
          }
        },
      );
    });
  };
}
