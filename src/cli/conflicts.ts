import path from 'node:path';
import type { ConflictCopy } from '../control/protocol.js';
import { GvError } from '../errors.js';
import { CONFLICT_RE } from '../replication/conflict.js';
import type { GvDatabase } from '../journal/db.js';
import { askDaemon, daemonErrorCode, Output, table, type CliContext } from './context.js';
import { bytesText } from './progress.js';

/** The conflict copy a path names, or null when it is not one (names as replication/conflict.ts makes them). */
export function parseConflictPath(zone: string, p: string, size: number | null = null): ConflictCopy | null {
  const base = path.posix.basename(p);
  const m = CONFLICT_RE.exec(base);
  if (!m) return null;
  const [, stem, date, time, node, ext] = m as unknown as [string, string, string, string, string, string | undefined];
  const dir = path.posix.dirname(p);
  const originalBase = `${stem}${ext ?? ''}`;
  return {
    zone, path: p, original: dir === '.' ? originalBase : `${dir}/${originalBase}`,
    at: `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${time.slice(0, 2)}:${time.slice(2, 4)}:${time.slice(4, 6)}Z`, node, size,
  };
}

/** Conflict copies recorded in the file index (what `gv conflicts` reads when gvd is not running). */
export function conflictsFromIndex(db: GvDatabase, zone?: string): ConflictCopy[] {
  const rows = db.prepare(
    `SELECT zone, path, size FROM file_index WHERE (@zone IS NULL OR zone = @zone) AND instr(path, @needle) > 0 ORDER BY zone, path`,
  ).all({ zone: zone ?? null, needle: Buffer.from('.gv-conflict-') }) as { zone: string; path: Buffer; size: number | bigint }[];
  const out: ConflictCopy[] = [];
  for (const r of rows) {
    const c = parseConflictPath(r.zone, Buffer.from(r.path).toString('utf8'), Number(r.size));
    if (c) out.push(c);
  }
  return out;
}

/** The daemon's answer as ConflictCopy[] (paths it gives are parsed; other fields kept). */
function fromDaemon(result: unknown, zone?: string): ConflictCopy[] {
  const list = Array.isArray(result) ? result : Array.isArray((result as { conflicts?: unknown })?.conflicts) ? (result as { conflicts: unknown[] }).conflicts : null;
  if (!list) throw new GvError('PROTOCOL', 'gvd answered "conflicts" with something that is not a list');
  const out: ConflictCopy[] = [];
  for (const e of list) {
    const o = (typeof e === 'string' ? { path: e } : e) as Partial<ConflictCopy>;
    const z = typeof o.zone === 'string' ? o.zone : zone;
    if (typeof o.path !== 'string' || !z) continue;
    const parsed = parseConflictPath(z, o.path, typeof o.size === 'number' ? o.size : null);
    out.push({
      zone: z, path: o.path, original: o.original ?? parsed?.original ?? o.path, at: o.at ?? parsed?.at ?? '',
      node: o.node ?? parsed?.node ?? '', size: typeof o.size === 'number' ? o.size : null,
    });
  }
  return out.sort((a, b) => (a.zone === b.zone ? (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) : a.zone < b.zone ? -1 : 1));
}

/** gv conflicts [ZONE]: the conflict copies kept beside their winners. */
export async function conflicts(ctx: CliContext, out: Output, zone?: string): Promise<void> {
  if (zone !== undefined && !ctx.catalog.get(zone) && !ctx.config.zones.some((z) => z.name === zone)) {
    throw new GvError('ENOENT', `no zone "${zone}" (gv zone list shows the zones)`, { zone });
  }
  let list: ConflictCopy[];
  let source: 'daemon' | 'database';
  let reason: string | null = null;
  try {
    const r = await askDaemon(ctx, 'conflicts', zone !== undefined ? { zone } : {});
    if (r.running) {
      list = fromDaemon(r.result, zone);
      source = 'daemon';
    } else {
      reason = `gvd is not running (${r.reason})`;
      list = conflictsFromIndex(ctx.db, zone);
      source = 'database';
    }
  } catch (err) {
    if (daemonErrorCode(err) !== 'ENOTSUP') throw err;
    reason = 'replication is not running in gvd';
    list = conflictsFromIndex(ctx.db, zone);
    source = 'database';
  }
  const rows = [['ZONE', 'PATH', 'ORIGINAL', 'WHEN (UTC)', 'NODE', 'SIZE']];
  for (const c of list) rows.push([c.zone, c.path, c.original, c.at.replace('T', ' ').replace('Z', ''), c.node, c.size === null ? '-' : bytesText(c.size)]);
  const note = reason ? `(${reason}: read from the journal's file index)\n` : '';
  const scope = zone ? ` in zone ${zone}` : '';
  out.done({ source, ...(reason ? { reason } : {}), conflicts: list }, list.length ? `${table(rows)}${note}` : `no conflict copies${scope}\n${note}`);
}
