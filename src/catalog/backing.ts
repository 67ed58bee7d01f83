import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/types.js';
import { GvError } from '../errors.js';
import { formatSize } from '../util/size.js';
import { scanTree } from '../vfs/local-usage.js';
import type { Zfs } from '../zfs/zfs.js';
import type { ZoneBacking } from './catalog.js';

/**
 * A zone's storage on this node: a ZFS dataset (quota= set on it, ZFS enforces it) or a plain
 * directory (the daemon enforces the quota). Creation, usage, free space, quota changes and
 * destruction for both kinds.
 */

export interface BackingUsage {
  /** Bytes in use. */
  used: number;
  /** The quota ZFS holds for the dataset (null for directories or no quota). */
  zfsQuota: number | null;
  /** The local export path (dataset mountpoint or directory); null when the dataset is not mounted. */
  path: string | null;
}

/** The default dataset of a new zone: `<pool>/<dataset_root>/<zone>`. */
export function defaultDataset(config: Config, zone: string): string | null {
  return config.zfs.pool ? `${config.zfs.pool}/${config.zfs.datasetRoot}/${zone}` : null;
}

/** The default directory of a new zone without ZFS: `<state_dir>/zones/<zone>`. */
export function defaultZoneDir(stateDir: string, zone: string): string {
  return path.join(stateDir, 'zones', zone);
}

/**
 * Create the backing with its quota. A dataset that exists is refused (EEXIST); a directory may
 * exist if what it holds fits the quota (adopting existing data is allowed; it is never wiped).
 */
export async function createBacking(b: ZoneBacking, quotaBytes: number, zfs: Zfs): Promise<void> {
  if (b.kind === 'zfs') {
    if (await zfs.datasetExists(b.dataset)) {
      throw new GvError('EEXIST', `dataset ${b.dataset} already exists; choose another with --dataset, or declare it in the config as a zone with dataset = "${b.dataset}"`, { dataset: b.dataset });
    }
    await zfs.create(b.dataset, { quota: BigInt(quotaBytes), parents: true });
    await zfs.mount(b.dataset);
    return;
  }
  const st = fs.statSync(b.path, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) throw new GvError('ENOTDIR', `${b.path} exists and is not a directory; choose another --path`);
  fs.mkdirSync(b.path, { recursive: true });
  if (st) {
    const used = Number((await scanTree(b.path)).bytes);
    if (used > quotaBytes) {
      throw new GvError('EDQUOT', `${b.path} already holds ${formatSize(used)}, more than the quota ${formatSize(quotaBytes)}; choose a larger quota or another --path`);
    }
  }
}

/** The mountpoint of a dataset, mounting it when needed; ENOENT-like errors when it has none. */
export async function datasetPath(zfs: Zfs, dataset: string): Promise<string> {
  const mp = await zfs.mountpoint(dataset);
  if (!mp) throw new GvError('ENOENT', `dataset ${dataset} has mountpoint=none/legacy; set a mountpoint (zfs set mountpoint=DIR ${dataset})`);
  if (!(await zfs.isMounted(dataset))) await zfs.mount(dataset);
  return mp;
}

export async function backingUsage(b: ZoneBacking, zfs: Zfs): Promise<BackingUsage> {
  if (b.kind === 'zfs') {
    const u = await zfs.usage(b.dataset);
    const mounted = await zfs.isMounted(b.dataset).catch(() => false);
    return { used: Number(u.used), zfsQuota: u.quota === null ? null : Number(u.quota), path: mounted ? await zfs.mountpoint(b.dataset) : null };
  }
  const exists = fs.existsSync(b.path);
  return { used: exists ? Number((await scanTree(b.path)).bytes) : 0, zfsQuota: null, path: exists ? b.path : null };
}

/**
 * Space this node can give a zone stored like `b`: for a dataset, what its parent (or the pool)
 * has available; for a directory, what the file system under it has (statfs of the nearest
 * existing ancestor). Null when it cannot be told.
 */
export async function freeSpace(b: ZoneBacking, zfs: Zfs): Promise<number | null> {
  if (b.kind === 'zfs') {
    const parts = b.dataset.split('/');
    for (let n = parts.length - 1; n >= 1; n--) {
      const parent = parts.slice(0, n).join('/');
      try {
        return Number((await zfs.usage(parent)).available);
      } catch {
        /* try the next one up */
      }
    }
    return null;
  }
  let dir = path.resolve(b.path);
  for (let i = 0; i < 256; i++) {
    try {
      const s = await fsp.statfs(dir, { bigint: true });
      return Number(s.bavail * s.bsize);
    } catch {
      const up = path.dirname(dir);
      if (up === dir) return null;
      dir = up;
    }
  }
  return null;
}

/** The warning the design asks for when a quota is larger than the space this node has. */
export function quotaWarning(zone: string, quotaBytes: number, free: number | null, alreadyUsed = 0): string | null {
  if (free === null) return null;
  const room = free + alreadyUsed;
  if (quotaBytes <= room) return null;
  return `zone ${zone}: quota ${formatSize(quotaBytes)} is larger than the ${formatSize(room)} this node has free; writes will fail with "no space" before the quota is reached`;
}

/** True when the zone's backing holds any file or directory. */
export async function holdsData(b: ZoneBacking, zfs: Zfs): Promise<boolean> {
  let dir: string | null;
  if (b.kind === 'zfs') {
    if (!(await zfs.datasetExists(b.dataset))) return false;
    dir = await datasetPath(zfs, b.dataset);
  } else dir = b.path;
  try {
    return (await fsp.readdir(dir)).length > 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Apply a new quota; refuses one below what the zone already uses. */
export async function setBackingQuota(zone: string, b: ZoneBacking, quotaBytes: number, zfs: Zfs): Promise<void> {
  const { used } = await backingUsage(b, zfs);
  if (quotaBytes < used) {
    throw new GvError('EDQUOT', `zone ${zone} already uses ${formatSize(used)}, more than ${formatSize(quotaBytes)}; remove data first or choose a quota of at least ${formatSize(used)}`, { used, quota: quotaBytes });
  }
  if (b.kind === 'zfs') await zfs.setQuota(b.dataset, BigInt(quotaBytes));
}

/** Destroy the dataset or remove the directory with everything in it. */
export async function destroyBacking(b: ZoneBacking, zfs: Zfs): Promise<void> {
  if (b.kind === 'zfs') {
    if (await zfs.datasetExists(b.dataset)) await zfs.destroy(b.dataset, { recursive: true });
    return;
  }
  await fsp.rm(b.path, { recursive: true, force: true });
}
