import { spawn, type ChildProcess } from 'node:child_process';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** The process is SIGKILLed and the promise rejects after this long. */
  timeoutMs?: number;
  /** Children are added here while they run, so a suite can kill leftovers in afterAll. */
  track?: Set<ChildProcess>;
}

/** Run a command to completion (bounded in time), collecting its output. */
export function runProcess(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    opts.track?.add(c);
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not exit; stderr: ${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    c.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
    c.on('exit', (code) => {
      clearTimeout(t);
      opts.track?.delete(c);
      resolve({ code, stdout, stderr });
    });
  });
}
