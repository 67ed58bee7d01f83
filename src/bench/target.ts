/** The systems a bench run compares, and how the client helpers reach each of them. */
export type SystemId = 'gv' | 'ganesha' | 'local';

export const SYSTEM_IDS: readonly SystemId[] = ['gv', 'ganesha', 'local'];

export const SYSTEM_LABELS: Record<SystemId, string> = {
  gv: 'GrapeVineFS',
  ganesha: 'nfs-ganesha',
  local: 'local disk',
};

export interface BenchTarget {
  readonly system: SystemId;
  /** where it is: an export URL or a directory */
  readonly location: string;
  /** argv prefix for every client command (e.g. nsenter into ganesha's network namespace) */
  readonly wrap: readonly string[];
  /** name of the copy tool measured in the "copy" rows */
  readonly copyTool: string;
  /** what nfsio / the copy tool use for a file called `name` at the top of the export */
  fileRef(name: string): string;
  /** smallfiles' target: the export URL or the local directory */
  readonly rootRef: string;
  /** copy a local file into the target (timed as a whole process) */
  copyInArgv(localSrc: string, dst: string): string[];
  /** copy a target file to a local file (timed as a whole process) */
  copyOutArgv(src: string, localDst: string): string[];
  /** stop what was started for this target (idempotent) */
  stop(): Promise<void>;
}

/** libnfs URL of an export; nfsport/mountport make libnfs skip the portmapper. */
export function exportUrl(host: string, exportPath: string, nfsPort: number, mountPort: number): string {
  const p = exportPath.startsWith('/') ? exportPath : `/${exportPath}`;
  return `nfs://${host}${p}?version=3&nfsport=${nfsPort}&mountport=${mountPort}`;
}

/** URL of `name` inside the export named by `url` (query kept). */
export function fileInExport(url: string, name: string): string {
  const q = url.indexOf('?');
  const base = q >= 0 ? url.slice(0, q) : url;
  const query = q >= 0 ? url.slice(q) : '';
  return `${base.replace(/\/+$/, '')}/${name}${query}`;
}

/** A target served over NFS by a server that is already listening (or started by the caller). */
export function nfsTarget(
  system: SystemId, url: string, nfsCp: string, wrap: readonly string[], stop: () => Promise<void>,
): BenchTarget {
  return {
    system,
    location: url,
    wrap,
    copyTool: 'nfs-cp',
    rootRef: url,
    fileRef: (name) => fileInExport(url, name),
    copyInArgv: (src, dst) => [nfsCp, src, dst],
    copyOutArgv: (src, dst) => [nfsCp, src, dst],
    stop,
  };
}

/** The local-disk baseline: same helpers on a plain directory; dd stands in for nfs-cp. */
export function localTarget(dir: string): BenchTarget {
  return {
    system: 'local',
    location: dir,
    wrap: [],
    copyTool: 'dd bs=1M (write: conv=fsync)',
    rootRef: dir,
    fileRef: (name) => `${dir.replace(/\/+$/, '')}/${name}`,
    copyInArgv: (src, dst) => ['dd', `if=${src}`, `of=${dst}`, 'bs=1M', 'conv=fsync', 'status=none'],
    copyOutArgv: (src, dst) => ['dd', `if=${src}`, `of=${dst}`, 'bs=1M', 'status=none'],
    stop: async () => {},
  };
}
