import { encodeHandle } from '../nfs/handle.js';
import { accept_stat, AUTH_NONE, AUTH_SYS, type RpcCall } from '../rpc/message.js';
import type { ConnInfo, ProcResult, RpcProgram } from '../rpc/server.js';
import { matchesAny, type Cidr } from '../util/cidr.js';
import { GvError, toGvError } from '../errors.js';
import type { CallContext, FileId, ZoneFs } from '../vfs/types.js';
import type { XdrReader } from '../xdr/reader.js';
import { XdrWriter } from '../xdr/writer.js';
import { MNTNAMLEN, MNTPATHLEN, MOUNT_PROGRAM, MOUNT_V1, MOUNT_V3, mountproc3, mountstat3 } from './constants.js';
import { MountList } from './mountlist.js';

/** One exported zone: clients mount `/<name>` from an address inside `allow`. */
export interface MountExport {
  readonly zone: ZoneFs;
  readonly allow: readonly Cidr[];
}

export interface MountDeps {
  /** The current exports (a function so a config reload is seen at once). */
  exports: () => readonly MountExport[];
  log?: (obj: object, msg: string) => void;
  mounts?: MountList;
}

export type MountProgram = RpcProgram & { readonly mounts: MountList };

export function exportPath(zoneName: string): string {
  return `/${zoneName}`;
}

/** `/tier-1/` and `//tier-1` name the same export as `/tier-1`. */
export function normaliseDirpath(p: string): string {
  const parts = p.split('/').filter((s) => s.length > 0);
  return '/' + parts.join('/');
}

function readDirpath(r: XdrReader): string {
  return r.string(MNTPATHLEN);
}

/**
 * The export a dirpath names, and the components below the export's root: `/tier-1/a/b` mounts
 * directory a/b inside zone tier-1 (libnfs mounts the directory part of every URL).
 */
function findExport(list: readonly MountExport[], dirpath: string): { exp: MountExport; rest: string[] } | undefined {
  const parts = normaliseDirpath(dirpath).split('/').slice(1);
  const exp = list.find((e) => e.zone.name === parts[0]);
  return exp ? { exp, rest: parts.slice(1) } : undefined;
}

const MOUNT_ERRORS: Record<string, mountstat3> = {
  ENOENT: mountstat3.MNT3ERR_NOENT,
  ESTALE: mountstat3.MNT3ERR_NOENT,
  EACCES: mountstat3.MNT3ERR_ACCES,
  EPERM: mountstat3.MNT3ERR_PERM,
  ENOTDIR: mountstat3.MNT3ERR_NOTDIR,
  ENAMETOOLONG: mountstat3.MNT3ERR_NAMETOOLONG,
  EINVAL: mountstat3.MNT3ERR_INVAL,
};

/** Walk `rest` from the zone root with the caller's credentials; never '..', never a symlink. */
async function walk(zone: ZoneFs, rest: string[], call: RpcCall, conn: ConnInfo): Promise<FileId> {
  const a = call.authSys;
  const ctx: CallContext = {
    uid: a ? a.uid : 65534, gid: a ? a.gid : 65534, gids: a ? a.gids : [], client: conn.remoteAddress, origin: 'nfs',
  };
  let id = zone.rootId;
  for (const part of rest) {
    if (part === '.' || part === '..') throw new GvError('EINVAL', 'dirpath may not contain . or ..');
    const found = await zone.lookup(ctx, id, Buffer.from(part, 'utf8'));
    if (found.attr.type !== 'dir') throw new GvError('ENOTDIR', `${part} is not a directory`);
    id = found.id;
  }
  return id;
}

function statusOnly(stat: mountstat3): Buffer {
  return new XdrWriter(4).u32(stat).bytes();
}

/** MNT: dirpath → mountres3 (root handle and auth flavors, or an error status). */
async function mnt(deps: MountDeps, mounts: MountList, call: RpcCall, conn: ConnInfo): Promise<Buffer> {
  const dirpath = readDirpath(call.args);
  const found = findExport(deps.exports(), dirpath);
  if (!found) {
    deps.log?.({ client: conn.remoteAddress, dirpath }, 'mount refused: no such export');
    return statusOnly(mountstat3.MNT3ERR_NOENT);
  }
  const exp = found.exp;
  if (!matchesAny(conn.remoteAddress, exp.allow)) {
    deps.log?.({ client: conn.remoteAddress, dirpath, allow: exp.allow.map((c) => c.text) }, 'mount refused: client not in allow list');
    return statusOnly(mountstat3.MNT3ERR_ACCES);
  }
  const zone = exp.zone;
  let id: FileId;
  let generation: number;
  try {
    id = await walk(zone, found.rest, call, conn);
    generation = await zone.generation(id);
  } catch (err) {
    const e = toGvError(err);
    const stat = MOUNT_ERRORS[e.code] ?? mountstat3.MNT3ERR_IO;
    deps.log?.({ client: conn.remoteAddress, dirpath, err: e.message }, 'mount refused');
    return statusOnly(stat);
  }
  const mounted = normaliseDirpath(dirpath);
  mounts.add(conn.remoteAddress, mounted);
  deps.log?.({ client: conn.remoteAddress, dirpath: mounted }, 'mounted');
  const w = new XdrWriter(96);
  w.u32(mountstat3.MNT3_OK);
  w.opaque(encodeHandle(zone.zoneId, id, generation));
  w.u32(2).u32(AUTH_SYS).u32(AUTH_NONE);
  return w.bytes();
}

/** DUMP: mountlist (a linked list of hostname + directory). */
function dump(mounts: MountList): Buffer {
  const w = new XdrWriter(256);
  for (const m of mounts.list()) {
    w.bool(true);
    w.string(Buffer.from(m.hostname, 'utf8').subarray(0, MNTNAMLEN));
    w.string(m.directory);
  }
  w.bool(false);
  return w.bytes();
}

/** EXPORT: exports (each directory with its allow list as groups). */
function exportList(list: readonly MountExport[]): Buffer {
  const w = new XdrWriter(256);
  for (const e of list) {
    w.bool(true);
    w.string(exportPath(e.zone.name));
    for (const c of e.allow) {
      w.bool(true);
      w.string(c.text.slice(0, MNTNAMLEN));
    }
    w.bool(false);
  }
  w.bool(false);
  return w.bytes();
}

const EMPTY = Buffer.alloc(0);

/**
 * MOUNT program 100005. Version 3 is the one NFSv3 clients use; versions 1 and 2 share the wire
 * format of NULL, DUMP, UMNT, UMNTALL and EXPORT (showmount may use them), but their MNT returns
 * NFSv2 handles, which we do not serve (PROC_UNAVAIL).
 */
export function createMountProgram(deps: MountDeps): MountProgram {
  const mounts = deps.mounts ?? new MountList();
  return {
    prog: MOUNT_PROGRAM,
    low: MOUNT_V1,
    high: MOUNT_V3,
    mounts,
    async handle(call: RpcCall, conn: ConnInfo): Promise<ProcResult> {
      switch (call.proc) {
        case mountproc3.NULL:
          return EMPTY;
        case mountproc3.MNT:
          if (call.vers !== MOUNT_V3) return { stat: accept_stat.PROC_UNAVAIL };
          return mnt(deps, mounts, call, conn);
        case mountproc3.DUMP:
          return dump(mounts);
        case mountproc3.UMNT: {
          const dirpath = normaliseDirpath(readDirpath(call.args));
          if (mounts.remove(conn.remoteAddress, dirpath)) deps.log?.({ client: conn.remoteAddress, dirpath }, 'unmounted');
          return EMPTY;
        }
        case mountproc3.UMNTALL:
          mounts.removeHost(conn.remoteAddress);
          return EMPTY;
        case mountproc3.EXPORT:
          return exportList(deps.exports());
        default:
          return { stat: accept_stat.PROC_UNAVAIL };
      }
    },
  };
}
