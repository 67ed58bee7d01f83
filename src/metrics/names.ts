/**
 * Label values for RPC metrics: program and procedure names, and reply status names by number
 * (the protocol modules keep theirs as `const enum`s, which have no reverse mapping at run time).
 */
import { MOUNT_PROGRAM } from '../mount/constants.js';
import { NFS_PROGRAM, PROC_NAMES } from '../nfs/constants.js';

export interface ProgramNames {
  /** Label value of the `program` label. */
  program: string;
  procedures: readonly string[];
  /**
   * Reads the protocol status of a successful reply's first result word, or returns null when the
   * procedure has no status word (then the status label is 'ok').
   */
  statusOf(proc: number, first: Buffer | undefined): string | null;
}

const NFSSTAT3: Record<number, string> = {
  0: 'NFS3_OK', 1: 'NFS3ERR_PERM', 2: 'NFS3ERR_NOENT', 5: 'NFS3ERR_IO', 6: 'NFS3ERR_NXIO',
  13: 'NFS3ERR_ACCES', 17: 'NFS3ERR_EXIST', 18: 'NFS3ERR_XDEV', 19: 'NFS3ERR_NODEV',
  20: 'NFS3ERR_NOTDIR', 21: 'NFS3ERR_ISDIR', 22: 'NFS3ERR_INVAL', 27: 'NFS3ERR_FBIG',
  28: 'NFS3ERR_NOSPC', 30: 'NFS3ERR_ROFS', 31: 'NFS3ERR_MLINK', 63: 'NFS3ERR_NAMETOOLONG',
  66: 'NFS3ERR_NOTEMPTY', 69: 'NFS3ERR_DQUOT', 70: 'NFS3ERR_STALE', 71: 'NFS3ERR_REMOTE',
  10001: 'NFS3ERR_BADHANDLE', 10002: 'NFS3ERR_NOT_SYNC', 10003: 'NFS3ERR_BAD_COOKIE',
  10004: 'NFS3ERR_NOTSUPP', 10005: 'NFS3ERR_TOOSMALL', 10006: 'NFS3ERR_SERVERFAULT',
  10007: 'NFS3ERR_BADTYPE', 10008: 'NFS3ERR_JUKEBOX',
};

const MOUNTSTAT3: Record<number, string> = {
  0: 'MNT3_OK', 1: 'MNT3ERR_PERM', 2: 'MNT3ERR_NOENT', 5: 'MNT3ERR_IO', 13: 'MNT3ERR_ACCES',
  20: 'MNT3ERR_NOTDIR', 22: 'MNT3ERR_INVAL', 63: 'MNT3ERR_NAMETOOLONG', 10004: 'MNT3ERR_NOTSUPP',
  10006: 'MNT3ERR_SERVERFAULT',
};

function firstWord(b: Buffer | undefined, table: Record<number, string>): string | null {
  if (!b || b.length < 4) return null;
  const v = b.readUInt32BE(0);
  return table[v] ?? 'unknown';
}

export const NFS_NAMES: ProgramNames = {
  program: 'nfs',
  procedures: PROC_NAMES,
  // Every NFSv3 procedure but NULL starts its result with nfsstat3.
  statusOf: (proc, first) => (proc === 0 ? null : firstWord(first, NFSSTAT3)),
};

export const MOUNT_NAMES: ProgramNames = {
  program: 'mount',
  procedures: ['NULL', 'MNT', 'DUMP', 'UMNT', 'UMNTALL', 'EXPORT'],
  // Only MNT answers a mountstat3 (v1 answers fhstatus, whose first word is a status too).
  statusOf: (proc, first) => (proc === 1 ? firstWord(first, MOUNTSTAT3) : null),
};

/** Names for the programs the daemon serves, by program number. */
export function namesFor(prog: number): ProgramNames {
  if (prog === NFS_PROGRAM) return NFS_NAMES;
  if (prog === MOUNT_PROGRAM) return MOUNT_NAMES;
  return { program: String(prog), procedures: [], statusOf: () => null };
}
