/**
 * The one error type of GrapeVineFS. `code` is a POSIX errno name (ENOENT, EACCES, ...) or one of
 * the GrapeVine-specific codes below; protocol layers translate it through one table each
 * (see nfs/status.ts). `data` carries structured details that survive JSON serialisation.
 */
export type GvErrorCode =
  // POSIX codes the filesystem layer raises
  | 'EPERM' | 'ENOENT' | 'EIO' | 'ENXIO' | 'EACCES' | 'EEXIST' | 'EXDEV' | 'ENODEV' | 'ENOTDIR'
  | 'EISDIR' | 'EINVAL' | 'EFBIG' | 'ENOSPC' | 'EROFS' | 'EMLINK' | 'ENAMETOOLONG' | 'ENOTEMPTY'
  | 'EDQUOT' | 'ESTALE' | 'ELOOP' | 'EBADF' | 'ENOTSUP' | 'EAGAIN' | 'EBUSY' | 'ETXTBSY'
  // NFS-specific conditions raised by the vfs layer
  | 'BADHANDLE' | 'NOT_SYNC' | 'BAD_COOKIE' | 'TOOSMALL' | 'JUKEBOX' | 'BADTYPE'
  // configuration / CLI / protocol
  | 'CONFIG' | 'USAGE' | 'PROTOCOL' | 'INTERNAL';

/**
 * Conditions that are answers, not faults (a LOOKUP miss, a name that exists, a stale handle):
 * they are raised on hot paths, so they skip the stack capture, which costs more than the lookup.
 */
const EXPECTED = new Set<string>([
  'ENOENT', 'EEXIST', 'ENOTEMPTY', 'EACCES', 'EPERM', 'ESTALE', 'BADHANDLE', 'NOT_SYNC', 'ENOTDIR',
  'EISDIR', 'ENAMETOOLONG', 'EDQUOT', 'JUKEBOX', 'TOOSMALL', 'BAD_COOKIE',
]);

let savedStackLimit = Error.stackTraceLimit;

/** Evaluated as super()'s argument: turns stack capture off for expected codes. */
function messageFor(code: string, message: string | undefined): string {
  savedStackLimit = Error.stackTraceLimit;
  if (EXPECTED.has(code)) Error.stackTraceLimit = 0;
  return message ?? code;
}

export class GvError extends Error {
  override readonly name = 'GvError';
  constructor(
    readonly code: GvErrorCode,
    message?: string,
    readonly data: Record<string, unknown> = {},
  ) {
    super(messageFor(code, message));
    Error.stackTraceLimit = savedStackLimit;
  }

  toJSON(): { name: string; code: string; message: string; data: Record<string, unknown> } {
    return { name: this.name, code: this.code, message: this.message, data: this.data };
  }
}

const KNOWN_POSIX = new Set<string>([
  'EPERM', 'ENOENT', 'EIO', 'ENXIO', 'EACCES', 'EEXIST', 'EXDEV', 'ENODEV', 'ENOTDIR', 'EISDIR',
  'EINVAL', 'EFBIG', 'ENOSPC', 'EROFS', 'EMLINK', 'ENAMETOOLONG', 'ENOTEMPTY', 'EDQUOT', 'ESTALE',
  'ELOOP', 'EBADF', 'ENOTSUP', 'EAGAIN', 'EBUSY', 'ETXTBSY',
]);

const EDQUOT_ERRNO = 122; // Linux; Node reports it as code 'UNKNOWN' (see zfs-fuse notes)

/** Turn anything thrown by node:fs (or our own code) into a GvError. */
export function toGvError(err: unknown): GvError {
  if (err instanceof GvError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e === 'object') {
    let code = typeof e.code === 'string' ? e.code : '';
    if (code === 'EOPNOTSUPP') code = 'ENOTSUP';
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      /* keep */
    }
    if ((code === 'UNKNOWN' || code === '' || !KNOWN_POSIX.has(code)) && typeof e.errno === 'number') {
      if (Math.abs(e.errno) === EDQUOT_ERRNO) code = 'EDQUOT';
    }
    if (KNOWN_POSIX.has(code)) return new GvError(code as GvErrorCode, e.message);
    return new GvError('EIO', e.message ?? String(err), { cause: code || String(e.errno ?? '') });
  }
  return new GvError('EIO', String(err));
}
