import { GvError } from '../errors.js';
import type { ZoneSyncStatus } from '../replication/source.js';
import { askDaemon, daemonErrorCode, Output, type CliContext } from './context.js';
import { memberText, ProgressPrinter, statusLine } from './progress.js';

export interface SyncFlags {
  wait?: boolean;
  timeout?: string;
}

/** Longest --wait without --timeout. */
export const DEFAULT_SYNC_TIMEOUT_S = 24 * 3600;

/** --timeout S: seconds, > 0 (decimals allowed). */
export function timeoutArg(text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text) || Number(text) <= 0) throw new GvError('USAGE', `--timeout: "${text}" is not a number of seconds > 0 (e.g. 30)`);
  return Number(text) * 1000;
}

/** What the daemon's `replication` op says about every zone, or why it cannot say. */
export async function replicationStatus(ctx: CliContext, zone?: string): Promise<{ statuses: ZoneSyncStatus[] } | { statuses: null; reason: string }> {
  try {
    const r = await askDaemon(ctx, 'replication', zone !== undefined ? { zone } : {}, 10_000);
    if (!r.running) return { statuses: null, reason: `gvd is not running (${r.reason})` };
    if (!Array.isArray(r.result)) throw new GvError('PROTOCOL', 'gvd answered "replication" with something that is not a list');
    return { statuses: r.result as ZoneSyncStatus[] };
  } catch (err) {
    if (daemonErrorCode(err) === 'ENOTSUP') return { statuses: null, reason: 'replication is not running in gvd' };
    throw err;
  }
}

async function zoneStatus(ctx: CliContext, zone: string): Promise<ZoneSyncStatus> {
  const r = await replicationStatus(ctx, zone);
  if (r.statuses === null) throw new GvError('EAGAIN', `cannot sync zone ${zone}: ${r.reason}; start it (gv daemon) and try again`);
  const s = r.statuses.find((x) => x.zone === zone);
  if (!s) throw new GvError('ENOENT', `gvd does not replicate zone ${zone} (this node is not a member, or the zone is not served here: gv zone show ${zone})`, { zone });
  return s;
}

function membersText(s: ZoneSyncStatus): string {
  return s.members.map((m) => `  ${m.peerName}: ${memberText(m)}${m.lastError ? ` (last error: ${m.lastError})` : ''}`).join('\n');
}

/**
 * gv zone sync ZONE [--wait [--timeout S]]: where the zone's replication stands; with --wait,
 * block until every reachable member's advertised version is applied, showing progress (a bar
 * redrawn in place on a terminal, plain lines at most once a second otherwise).
 */
export async function zoneSync(ctx: CliContext, out: Output, zone: string, f: SyncFlags, stdout: { write(t: string): unknown; isTTY?: boolean } = process.stdout): Promise<void> {
  if (f.timeout !== undefined && !f.wait) throw new GvError('USAGE', '--timeout needs --wait');
  const timeoutMs = f.timeout !== undefined ? timeoutArg(f.timeout) : DEFAULT_SYNC_TIMEOUT_S * 1000;
  if (!ctx.catalog.get(zone) && !ctx.config.zones.some((z) => z.name === zone)) {
    throw new GvError('ENOENT', `no zone "${zone}" (gv zone list shows the zones)`, { zone });
  }
  let s = await zoneStatus(ctx, zone);
  if (!f.wait) {
    out.done({ zone, inSync: s.inSync, status: s }, `${statusLine(s)}\n${membersText(s)}`);
    return;
  }
  const tty = stdout.isTTY === true && !out.json;
  const printer = out.json ? null : new ProgressPrinter(stdout, tty);
  const pollMs = tty ? 100 : 250;
  const start = Date.now();
  const deadline = start + timeoutMs;
  const maxPolls = Math.ceil(timeoutMs / pollMs) + 2;
  for (let i = 0; i < maxPolls; i++) {
    printer?.update(s);
    if (s.inSync) break;
    const left = deadline - Date.now();
    if (left <= 0) break;
    await new Promise((r) => setTimeout(r, Math.min(pollMs, left)));
    try {
      s = await zoneStatus(ctx, zone);
    } catch (err) {
      printer?.finish(null);
      throw err;
    }
  }
  if (!s.inSync) {
    printer?.finish(s);
    const secs = ((Date.now() - start) / 1000).toFixed(1);
    throw new GvError('EAGAIN', `zone ${zone} is not in sync after ${secs} s (--timeout): ${statusLine(s).slice(zone.length + 2)}`, { zone });
  }
  printer?.finish(s);
  out.done({ zone, inSync: true, status: s }, '');
}
