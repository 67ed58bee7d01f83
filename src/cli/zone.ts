import fs from 'node:fs';
import path from 'node:path';
import {
  backingUsage, createBacking, defaultDataset, defaultZoneDir, destroyBacking, freeSpace, holdsData, quotaWarning,
  setBackingQuota,
} from '../catalog/backing.js';
import type { ZoneBacking } from '../catalog/catalog.js';
import type { Consistency, ZoneSyncStatus } from '../replication/source.js';
import { NODE_NAME_RE, ZONE_NAME_RE } from '../config/schema.js';
import { GvError } from '../errors.js';
import { formatSize } from '../util/size.js';
import { validateDatasetName } from '../zfs/names.js';
import { askDaemon, Output, sizeArg, table, type CliContext } from './context.js';
import { memberText, statusLine } from './progress.js';
import { replicationStatus } from './sync.js';

/** A zone as the CLI shows it (list, show, and the result of create/set-quota). */
export interface ZoneView {
  name: string;
  source: 'catalog' | 'config';
  quotaBytes: number | null;
  quota: string | null;
  usedBytes: number | null;
  used: string | null;
  members: string[];
  backing: ZoneBacking | null;
  exportPath: string;
  /** Where this node keeps it (directory or dataset mountpoint), null when it has no copy. */
  localPath: string | null;
  createdMs: number | null;
  version: number | null;
  /** pull-first or available (catalog zones; config zones: null). */
  consistency: Consistency | null;
  /** Last change: when and by which node id (catalog zones). */
  updatedMs: number | null;
  updatedBy: string | null;
}

const NAME_RULE = "letters, digits, '_', '.', '-', 1-64 characters, starting with a letter or digit";

function checkZoneName(name: string): void {
  if (!ZONE_NAME_RE.test(name)) throw new GvError('USAGE', `invalid zone name "${name}" (allowed: ${NAME_RULE})`);
}

/** Nodes a zone may list: this node, `[cluster] nodes` of the config, and nodes in the catalog. */
export function knownNodes(ctx: CliContext): string[] {
  return [...new Set([ctx.config.node.name, ...ctx.config.cluster.nodes, ...ctx.catalog.nodes()])].sort();
}

function declared(ctx: CliContext, name: string) {
  return ctx.config.zones.find((z) => z.name === name);
}

async function view(ctx: CliContext, name: string, out?: Output): Promise<ZoneView> {
  const dz = declared(ctx, name);
  const cz = ctx.catalog.get(name);
  if (!dz && !cz) throw new GvError('ENOENT', `no zone "${name}" (gv zone list shows the zones)`, { zone: name });
  let backing: ZoneBacking | null;
  let quotaBytes: number | null;
  if (dz) {
    backing = dz.dataset ? { kind: 'zfs', dataset: dz.dataset } : { kind: 'dir', path: dz.path };
    quotaBytes = dz.quotaBytes;
  } else {
    backing = cz!.backing;
    quotaBytes = cz!.quotaBytes;
  }
  let usedBytes: number | null = null;
  let localPath: string | null = null;
  if (backing) {
    try {
      const u = await backingUsage(backing, ctx.zfs);
      usedBytes = u.used;
      localPath = u.path;
      if (dz && backing.kind === 'zfs') quotaBytes = u.zfsQuota;
      if (out && quotaBytes !== null) {
        const w = quotaWarning(name, quotaBytes, await freeSpace(backing, ctx.zfs), backing.kind === 'zfs' ? u.used : 0);
        if (w) out.warn(w);
      }
    } catch (err) {
      out?.warn(`zone ${name}: cannot read its usage: ${(err as Error).message}`);
    }
  }
  return {
    name,
    source: dz ? 'config' : 'catalog',
    quotaBytes,
    quota: quotaBytes === null ? null : formatSize(quotaBytes),
    usedBytes,
    used: usedBytes === null ? null : formatSize(usedBytes),
    members: dz ? [ctx.config.node.name] : cz!.members,
    backing,
    exportPath: `/${name}`,
    localPath,
    createdMs: cz?.createdMs ?? null,
    version: cz?.version ?? null,
    consistency: cz?.consistency ?? null,
    updatedMs: cz?.updatedMs ?? null,
    updatedBy: cz?.updatedBy ?? null,
  };
}

function backingText(b: ZoneBacking | null): string {
  if (!b) return '-';
  return b.kind === 'zfs' ? `zfs:${b.dataset}` : `dir:${b.path}`;
}

/** Tell a running daemon to reload; returns what to put in the JSON result. */
async function notifyDaemon(ctx: CliContext, out: Output, zone: string): Promise<Record<string, unknown>> {
  try {
    const r = await askDaemon(ctx, 'reload');
    if (!r.running) return { running: false, reloaded: false, reason: r.reason };
    const res = r.result as { errors?: string[] };
    for (const e of res.errors ?? []) if (e.includes(zone)) out.warn(`daemon: ${e}`);
    return { running: true, reloaded: true, ...(r.result as object) };
  } catch (err) {
    out.warn(`the daemon did not reload (${(err as Error).message}); send it SIGHUP`);
    return { running: true, reloaded: false, reason: (err as Error).message };
  }
}

function daemonLine(d: Record<string, unknown>): string {
  if (d.reloaded) return 'gvd reloaded: the change is live';
  return d.running ? 'gvd did not reload: send it SIGHUP' : 'gvd is not running: the change applies when it starts';
}

export interface CreateFlags {
  quota: string;
  nodes?: string;
  dataset?: string;
  path?: string;
  consistency?: Consistency;
}

export async function zoneCreate(ctx: CliContext, out: Output, name: string, f: CreateFlags): Promise<void> {
  checkZoneName(name);
  const quotaBytes = sizeArg(f.quota, '--quota');
  if (f.dataset !== undefined && f.path !== undefined) throw new GvError('USAGE', '--dataset and --path cannot be used together (a zone is a dataset or a directory)');
  const members = (f.nodes ?? ctx.config.node.name).split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (members.length === 0) throw new GvError('USAGE', '--nodes: name at least one node (e.g. --nodes a,b,c)');
  const known = knownNodes(ctx);
  for (const m of members) {
    if (!NODE_NAME_RE.test(m)) throw new GvError('USAGE', `--nodes: invalid node name "${m}" (allowed: ${NAME_RULE})`);
    if (!known.includes(m)) {
      throw new GvError('USAGE', `--nodes: unknown node "${m}" (known: ${known.join(', ')}); add it to [cluster] nodes in ${ctx.configFile}`);
    }
  }
  if (new Set(members).size !== members.length) throw new GvError('USAGE', '--nodes: a node is listed twice');
  if (declared(ctx, name)) throw new GvError('EEXIST', `zone "${name}" already exists (declared in ${ctx.configFile}); choose another name`);
  if (ctx.catalog.get(name)) throw new GvError('EEXIST', `zone "${name}" already exists; choose another name (gv zone list shows the zones)`);
  const member = members.includes(ctx.config.node.name);
  if (!member && (f.dataset !== undefined || f.path !== undefined)) {
    throw new GvError('USAGE', `--dataset/--path give this node's storage, but this node (${ctx.config.node.name}) is not in --nodes`);
  }

  let backing: ZoneBacking | null = null;
  if (member) {
    if (f.dataset !== undefined) {
      try {
        validateDatasetName(f.dataset);
      } catch (err) {
        throw new GvError('USAGE', `--dataset: ${(err as Error).message}`);
      }
      if (!f.dataset.includes('/')) throw new GvError('USAGE', `--dataset: "${f.dataset}" is a pool; name a dataset inside it (e.g. ${f.dataset}/gv-zones/${name})`);
      backing = { kind: 'zfs', dataset: f.dataset };
    } else if (f.path !== undefined) {
      backing = { kind: 'dir', path: path.resolve(f.path) };
    } else {
      const ds = defaultDataset(ctx.config, name);
      const zfsState = ds ? await ctx.zfs.detect() : null;
      if (ds && zfsState?.available) backing = { kind: 'zfs', dataset: ds };
      else {
        if (ds) out.warn(`ZFS is not usable (${zfsState?.reason}); zone ${name} is a directory instead of dataset ${ds}`);
        backing = { kind: 'dir', path: defaultZoneDir(ctx.stateDir, name) };
      }
    }
    const w = quotaWarning(name, quotaBytes, await freeSpace(backing, ctx.zfs));
    await createBacking(backing, quotaBytes, ctx.zfs);
    if (w) out.warn(w); // after the checks: a refused create prints only its error
  }
  try {
    ctx.catalog.create({ name, quotaBytes, members, backing, consistency: f.consistency ?? 'pull-first' });
  } catch (err) {
    if (backing) await destroyBacking(backing, ctx.zfs).catch(() => undefined);
    throw err;
  }
  const daemon = member ? await notifyDaemon(ctx, out, name) : { running: null, reloaded: false, reason: 'not a member' };
  const v = await view(ctx, name);
  const where = backing ? ` on ${backingText(backing)}` : ` (no copy on this node, ${ctx.config.node.name})`;
  out.done({ zone: v, daemon }, `zone ${name} created: quota ${v.quota}, nodes ${members.join(',')}${where}, export ${v.exportPath}\n${member ? daemonLine(daemon) : ''}`);
}

/** Every zone: declared in the config and in the catalog, by name. */
export async function zoneViews(ctx: CliContext): Promise<ZoneView[]> {
  const names = [...new Set([...ctx.config.zones.map((z) => z.name), ...ctx.catalog.list().map((z) => z.name)])].sort();
  const zones: ZoneView[] = [];
  for (const n of names) zones.push(await view(ctx, n));
  return zones;
}

export async function zoneList(ctx: CliContext, out: Output): Promise<void> {
  const zones = await zoneViews(ctx);
  const rows = [['NAME', 'QUOTA', 'USED', 'MEMBERS', 'SOURCE', 'BACKING', 'EXPORT']];
  for (const z of zones) {
    rows.push([z.name, z.quota ?? 'none', z.used ?? '-', z.members.join(','), z.source, backingText(z.backing), z.exportPath]);
  }
  out.done({ catalogVersion: ctx.catalog.version(), zones }, zones.length ? table(rows) : 'no zones (create one with gv zone create NAME --quota SIZE)');
}

export async function zoneShow(ctx: CliContext, out: Output, name: string): Promise<void> {
  checkZoneName(name);
  const v = await view(ctx, name, out);
  const lines = [
    `name:     ${v.name}`,
    `quota:    ${v.quota ?? 'none'}`,
    `used:     ${v.used ?? '-'}`,
    `members:  ${v.members.join(', ')}`,
    `backing:  ${backingText(v.backing)}`,
    `path:     ${v.localPath ?? '-'}`,
    `export:   ${v.exportPath}`,
    `source:   ${v.source === 'config' ? `declared in ${ctx.configFile}` : `catalog (version ${v.version})`}`,
  ];
  if (v.consistency) lines.splice(4, 0, `consistency: ${v.consistency}`);
  // Replication per member, when the daemon runs it (absent otherwise).
  const rep = await replicationOf(ctx, name);
  if (rep) {
    lines.push(`sync:     ${statusLine(rep).slice(name.length + 2)}`);
    for (const m of rep.members) lines.push(`  ${m.peerName}: ${memberText(m)}`);
  }
  out.done({ zone: rep ? { ...v, replication: replicationView(rep) } : v }, lines.join('\n'));
}

/** The daemon's replication state of one zone, or null (daemon down, replication off, not replicated). */
export async function replicationOf(ctx: CliContext, zone: string): Promise<ZoneSyncStatus | null> {
  try {
    const r = await replicationStatus(ctx, zone);
    return r.statuses?.find((s) => s.zone === zone) ?? null;
  } catch {
    return null;
  }
}

/** Per member: versions behind, bytes to fetch, transfer rate (what status and show print). */
export function replicationView(s: ZoneSyncStatus): Record<string, unknown> {
  return {
    inSync: s.inSync, version: s.version, pendingPaths: s.pendingPaths,
    members: s.members.map((m) => ({
      name: m.peerName, id: m.peerId, state: m.state, advertised: m.advertised, applied: m.applied, behind: m.behind,
      bytesToFetch: m.bytesToFetch, rateBytesPerSec: m.rateBytesPerSec, pulling: m.pulling, lastError: m.lastError,
    })),
  };
}

function catalogOnly(ctx: CliContext, name: string, what: string): void {
  if (declared(ctx, name)) {
    throw new GvError('EINVAL', `zone "${name}" is declared in ${ctx.configFile}, not in the catalog; ${what} there and reload the daemon (kill -HUP)`);
  }
}

export async function zoneSetQuota(ctx: CliContext, out: Output, name: string, size: string): Promise<void> {
  checkZoneName(name);
  const quotaBytes = sizeArg(size, 'quota');
  catalogOnly(ctx, name, 'change its quota');
  const cz = ctx.catalog.get(name);
  if (!cz) throw new GvError('ENOENT', `no zone "${name}" (gv zone list shows the zones)`, { zone: name });
  if (cz.backing) {
    await setBackingQuota(name, cz.backing, quotaBytes, ctx.zfs);
    const u = await backingUsage(cz.backing, ctx.zfs).catch(() => null);
    const w = quotaWarning(name, quotaBytes, await freeSpace(cz.backing, ctx.zfs), cz.backing.kind === 'zfs' ? u?.used ?? 0 : 0);
    if (w) out.warn(w);
  }
  ctx.catalog.setQuota(name, quotaBytes);
  const daemon = cz.backing ? await notifyDaemon(ctx, out, name) : { running: null, reloaded: false, reason: 'no copy on this node' };
  const v = await view(ctx, name);
  out.done({ zone: v, previousQuotaBytes: cz.quotaBytes, daemon }, `zone ${name}: quota ${formatSize(cz.quotaBytes)} -> ${v.quota}\n${cz.backing ? daemonLine(daemon) : ''}`);
}

export async function zoneDestroy(ctx: CliContext, out: Output, name: string, force: boolean): Promise<void> {
  checkZoneName(name);
  catalogOnly(ctx, name, 'remove it');
  const cz = ctx.catalog.get(name);
  if (!cz) {
    await destroyLeftover(ctx, out, name, force);
    return;
  }
  const b = cz.backing;
  const hasData = b ? await holdsData(b, ctx.zfs) : false;
  if (hasData && !force) {
    const u = await backingUsage(b!, ctx.zfs).catch(() => null);
    throw new GvError('ENOTEMPTY', `zone ${name} holds data${u ? ` (${formatSize(u.used)} in ${backingText(b)})` : ''}; move it away first, or pass --force to destroy the zone with its data`);
  }
  // Catalog first and the daemon told, so it closes the zone (and its files) before the storage goes.
  ctx.catalog.remove(name);
  const daemon = b ? await notifyDaemon(ctx, out, name) : { running: null, reloaded: false, reason: 'no copy on this node' };
  if (b) {
    try {
      await destroyBacking(b, ctx.zfs);
    } catch (err) {
      throw new GvError('EBUSY', `zone ${name} is out of the catalog, but ${backingText(b)} could not be removed: ${(err as Error).message}; remove it by hand`);
    }
    if (hasData) out.warn(`destroyed ${backingText(b)} with the data it held (--force)`);
  }
  out.done({ destroyed: name, backing: b, dataRemoved: hasData, daemon }, `zone ${name} destroyed${b ? ` (${backingText(b)} removed)` : ''}${b ? `\n${daemonLine(daemon)}` : ''}`);
}

/**
 * A zone destroyed on another node leaves its storage here (never removed automatically);
 * `gv zone destroy NAME` on this node removes it: the default dataset or directory of the name.
 */
async function destroyLeftover(ctx: CliContext, out: Output, name: string, force: boolean): Promise<void> {
  const tomb = ctx.catalog.tombstone(name);
  let left: ZoneBacking | null = null;
  if (tomb) {
    const ds = defaultDataset(ctx.config, name);
    if (ds && (await ctx.zfs.available()) && (await ctx.zfs.datasetExists(ds))) left = { kind: 'zfs', dataset: ds };
    else {
      const dir = defaultZoneDir(ctx.stateDir, name);
      if (fs.existsSync(dir)) left = { kind: 'dir', path: dir };
    }
  }
  if (!tomb || !left) throw new GvError('ENOENT', `no zone "${name}" (gv zone list shows the zones)`, { zone: name });
  const hasData = await holdsData(left, ctx.zfs);
  if (hasData && !force) {
    const u = await backingUsage(left, ctx.zfs).catch(() => null);
    throw new GvError('ENOTEMPTY', `zone ${name} was destroyed by another node; its data is still here${u ? ` (${formatSize(u.used)} in ${backingText(left)})` : ` (${backingText(left)})`}; move it away first, or pass --force to remove it`);
  }
  await destroyBacking(left, ctx.zfs);
  out.done(
    { destroyed: name, backing: left, dataRemoved: hasData, leftover: true, deletedBy: tomb.deletedBy, deletedMs: tomb.deletedMs },
    `zone ${name} (destroyed on node ${tomb.deletedBy}): removed what was left on this node, ${backingText(left)}`,
  );
}
