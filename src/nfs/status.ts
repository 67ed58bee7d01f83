import { GvError, toGvError, type GvErrorCode } from '../errors.js';
import { nfsstat3 } from './constants.js';

/** The one errno → nfsstat3 table. Anything not listed becomes NFS3ERR_IO (and is logged). */
const TABLE: Partial<Record<GvErrorCode, nfsstat3>> = {
  EPERM: nfsstat3.NFS3ERR_PERM,
  ENOENT: nfsstat3.NFS3ERR_NOENT,
  EIO: nfsstat3.NFS3ERR_IO,
  ENXIO: nfsstat3.NFS3ERR_NXIO,
  EACCES: nfsstat3.NFS3ERR_ACCES,
  EEXIST: nfsstat3.NFS3ERR_EXIST,
  EXDEV: nfsstat3.NFS3ERR_XDEV,
  ENODEV: nfsstat3.NFS3ERR_NODEV,
  ENOTDIR: nfsstat3.NFS3ERR_NOTDIR,
  EISDIR: nfsstat3.NFS3ERR_ISDIR,
  EINVAL: nfsstat3.NFS3ERR_INVAL,
  EFBIG: nfsstat3.NFS3ERR_FBIG,
  ENOSPC: nfsstat3.NFS3ERR_NOSPC,
  EROFS: nfsstat3.NFS3ERR_ROFS,
  EMLINK: nfsstat3.NFS3ERR_MLINK,
  ENAMETOOLONG: nfsstat3.NFS3ERR_NAMETOOLONG,
  ENOTEMPTY: nfsstat3.NFS3ERR_NOTEMPTY,
  EDQUOT: nfsstat3.NFS3ERR_DQUOT,
  ESTALE: nfsstat3.NFS3ERR_STALE,
  ELOOP: nfsstat3.NFS3ERR_INVAL,
  EBADF: nfsstat3.NFS3ERR_STALE,
  ENOTSUP: nfsstat3.NFS3ERR_NOTSUPP,
  EAGAIN: nfsstat3.NFS3ERR_JUKEBOX,
  EBUSY: nfsstat3.NFS3ERR_JUKEBOX,
  ETXTBSY: nfsstat3.NFS3ERR_JUKEBOX,
  BADHANDLE: nfsstat3.NFS3ERR_BADHANDLE,
  NOT_SYNC: nfsstat3.NFS3ERR_NOT_SYNC,
  BAD_COOKIE: nfsstat3.NFS3ERR_BAD_COOKIE,
  TOOSMALL: nfsstat3.NFS3ERR_TOOSMALL,
  JUKEBOX: nfsstat3.NFS3ERR_JUKEBOX,
  BADTYPE: nfsstat3.NFS3ERR_BADTYPE,
};

export interface MappedStatus {
  status: nfsstat3;
  /** True when the error was not in the table (worth logging). */
  unexpected: boolean;
  error: GvError;
}

export function statusOf(err: unknown): MappedStatus {
  const e = toGvError(err);
  const s = TABLE[e.code];
  if (s !== undefined) return { status: s, unexpected: false, error: e };
  return { status: nfsstat3.NFS3ERR_IO, unexpected: true, error: e };
}
