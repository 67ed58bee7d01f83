/**
 * Turns a failed `zfs`/`zpool` run into one GvError with a one-line message such as
 * `zfs create tank/a: dataset already exists`. The code follows the reason ZFS printed; whatever
 * we do not recognise is EIO with the full stderr in `data`.
 */
import { GvError, type GvErrorCode } from '../errors.js';
import type { RunResult, ZfsCommand } from './runner.js';

/** Short machine-readable reason kept in `data.reason` (callers branch on some of them). */
export type ZfsFailureReason =
  | 'not-installed' | 'daemon-unreachable' | 'permission' | 'no-such-pool' | 'no-such-dataset'
  | 'parent-missing' | 'exists' | 'busy' | 'has-children' | 'no-space' | 'not-mounted'
  | 'already-mounted' | 'invalid' | 'timeout' | 'output-limit' | 'killed' | 'unknown';

interface Rule {
  test: RegExp;
  code: GvErrorCode;
  reason: ZfsFailureReason;
}

/**
 * First match wins. Permission problems come before "daemon unreachable" because an unprivileged
 * zfs-fuse client prints both "connect: Permission denied" and "failed to initialize ZFS library".
 */
const RULES: Rule[] = [
  { test: /permission denied|must be run as root|EACCES/i, code: 'EACCES', reason: 'permission' },
  { test: /operation not permitted|insufficient privileges|EPERM/i, code: 'EPERM', reason: 'permission' },
  {
    test: /failed to initialize ZFS library|zfs-fuse daemon is running|modules are not loaded|\/dev\/zfs/i,
    code: 'ENOTSUP',
    reason: 'daemon-unreachable',
  },
  { test: /no such pool/i, code: 'ENOENT', reason: 'no-such-pool' },
  { test: /parent does not exist/i, code: 'ENOENT', reason: 'parent-missing' },
  { test: /dataset does not exist|no such (?:dataset|file or directory)|could not find any/i, code: 'ENOENT', reason: 'no-such-dataset' },
  { test: /already exists/i, code: 'EEXIST', reason: 'exists' },
  { test: /not currently mounted/i, code: 'EINVAL', reason: 'not-mounted' },
  { test: /already mounted/i, code: 'EBUSY', reason: 'already-mounted' },
  { test: /is busy|target is busy|device (?:or resource )?busy|resource busy/i, code: 'EBUSY', reason: 'busy' },
  { test: /has children/i, code: 'ENOTEMPTY', reason: 'has-children' },
  { test: /out of space|no space left/i, code: 'ENOSPC', reason: 'no-space' },
  {
    test: /bad numeric value|invalid numeric suffix|invalid property|bad property list|invalid option|unrecognized command|must be an absolute path|invalid character|size is less than current used|missing (?:dataset|pool|command)|name is too long/i,
    code: 'EINVAL',
    reason: 'invalid',
  },
];

/** stderr lines that are noise, not the reason (zpool create on a file vdev prints this). */
const NOISE = /^Defaulting to 4K blocksize/;

/** The most telling stderr line: the `cannot <verb> '<name>': <reason>` one, else the first. */
function reasonLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !NOISE.test(l));
  const cannot = lines.find((l) => /^cannot [a-z ]+'/.test(l));
  const line = cannot ?? lines[0] ?? '';
  // "cannot create 'tank/a': dataset already exists" -> "dataset already exists"
  // "cannot set property for 'tank/a': size is less ..." -> "size is less ..."
  const m = /^cannot [a-z ]+ '[^']*': (.*)$/.exec(line);
  return (m ? m[1]! : line).slice(0, 300);
}

/** `zfs create -o quota=67108864 tank/a` → `zfs create tank/a` for messages (options dropped). */
function describe(command: ZfsCommand, args: readonly string[]): string {
  const verb = args[0] ?? '';
  const last = args.length > 1 ? args[args.length - 1]! : '';
  return `${command} ${verb}${last && !last.startsWith('-') ? ` ${last}` : ''}`;
}

const MAX_STDERR_IN_DATA = 4096;

/** Map a non-successful RunResult to a GvError. */
export function mapZfsFailure(command: ZfsCommand, args: readonly string[], result: RunResult): GvError {
  const what = describe(command, args);
  const data: Record<string, unknown> = {
    command,
    args: [...args],
    exitCode: result.exitCode,
    stderr: result.stderr.slice(0, MAX_STDERR_IN_DATA),
  };
  const fail = (code: GvErrorCode, reason: ZfsFailureReason, msg: string): GvError =>
    new GvError(code, `${what}: ${msg}`, { ...data, reason });

  switch (result.failure) {
    case 'not-found':
    case 'not-executable':
      return fail('ENOTSUP', 'not-installed', `zfs is not installed (${result.detail ?? command + ' missing'})`);
    case 'timeout':
      return fail('EIO', 'timeout', `timed out (${result.detail ?? 'killed'})`);
    case 'output-limit':
      return fail('EIO', 'output-limit', result.detail ?? 'too much output');
    case 'signal':
      return fail('EIO', 'killed', result.detail ?? 'killed by a signal');
    case 'spawn':
      return fail('EIO', 'unknown', `could not run: ${result.detail ?? 'spawn failed'}`);
    default:
      break;
  }
  const stderr = result.stderr;
  for (const rule of RULES) {
    if (rule.test.test(stderr)) {
      let msg = reasonLine(stderr);
      if (rule.reason === 'daemon-unreachable') msg = `ZFS daemon or kernel module not reachable (${msg})`;
      return fail(rule.code, rule.reason, msg);
    }
  }
  const line = reasonLine(stderr) || `exit status ${result.exitCode}`;
  return fail('EIO', 'unknown', line);
}
