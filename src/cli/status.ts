import { readIdentity } from '../catalog/identity.js';
import { formatSize } from '../util/size.js';
import { askDaemon, Output, table, type CliContext } from './context.js';
import type { ZoneSyncStatus } from '../replication/source.js';
import { bytesText, rateText } from './progress.js';
import { replicationStatus } from './sync.js';
import { replicationView, zoneViews } from './zone.js';

interface DaemonStatus {
  pid: number;
  nfsPort: number;
  mountPort: number;
  portmapPort: number | null;
  listen: string;
  startedAt: string;
  zones: { name: string }[];
  /** Echolocation: this node's zone versions and what each peer advertises (null when off). */
  elp?: { zones: Record<string, string>; peers: { name: string; state: string; zones: Record<string, string> }[] } | null;
}

/** Per zone: this node's version and each other member's advertised one ("?" when not heard). */
function zoneVersions(elp: DaemonStatus['elp'], zone: string, members: string[], self: string): { version: string | null; members: Record<string, string | null> } {
  const out: Record<string, string | null> = {};
  for (const m of members) {
    if (m === self) continue;
    const peer = elp?.peers.find((p) => p.name === m);
    out[m] = peer?.zones[zone] ?? null;
  }
  return { version: elp?.zones[zone] ?? null, members: out };
}

/** gv status: this node, its zones with quota and usage, and whether the daemon runs. */
export async function status(ctx: CliContext, out: Output): Promise<void> {
  const identity = readIdentity(ctx.stateDir);
  const zones = (await zoneViews(ctx)).filter((z) => z.members.includes(ctx.config.node.name));
  let daemon: Record<string, unknown>;
  try {
    const r = await askDaemon(ctx, 'status');
    daemon = r.running ? { running: true, ...(r.result as DaemonStatus) } : { running: false, reason: r.reason };
  } catch (err) {
    daemon = { running: null, reason: (err as Error).message };
  }
  const served = new Set(((daemon.zones as { name: string }[] | undefined) ?? []).map((z) => z.name));
  // This node's version of each zone from the journal (status zones[].version), also without ELP.
  const own = new Map(((daemon.zones as { name: string; version?: string | null }[] | undefined) ?? []).map((z) => [z.name, z.version ?? null]));
  const lines = [
    `node:    ${ctx.config.node.name}${identity ? ` (id ${identity.id})` : ' (no identity: run gv init)'}`,
    `config:  ${ctx.configFile}`,
    `state:   ${ctx.stateDir}`,
  ];
  if (daemon.running) {
    const d = daemon as unknown as DaemonStatus;
    lines.push(`daemon:  running, pid ${d.pid}, nfs ${d.listen}:${d.nfsPort}, mount ${d.mountPort}, portmap ${d.portmapPort ?? 'off'}, since ${d.startedAt}`);
  } else lines.push(`daemon:  not running (${String(daemon.reason)})`);
  const elp = daemon.running ? (daemon as unknown as DaemonStatus).elp ?? null : null;
  // Replication per zone and member (absent when the daemon is down or replication is off).
  const rep = new Map<string, ZoneSyncStatus>();
  if (daemon.running) {
    try {
      for (const s of (await replicationStatus(ctx)).statuses ?? []) rep.set(s.zone, s);
    } catch (err) {
      out.warn(`replication state unavailable: ${(err as Error).message}`);
    }
  }
  const rows = [['ZONE', 'QUOTA', 'USED', 'SERVED', 'VERSION', 'MEMBERS', 'EXPORT']];
  if (rep.size > 0) rows[0]!.push('SYNC');
  for (const z of zones) {
    const v = zoneVersions(elp, z.name, z.members, ctx.config.node.name);
    const peers = Object.entries(v.members).map(([m, mv]) => `${m}=${mv ?? '?'}`).join(' ') || '-';
    const row = [z.name, z.quota ?? 'none', z.used ?? '-', daemon.running ? (served.has(z.name) ? 'yes' : 'no') : '-', v.version ?? own.get(z.name) ?? '-', peers, z.exportPath];
    if (rep.size > 0) row.push(syncText(rep.get(z.name)));
    rows.push(row);
  }
  const used = zones.reduce((a, z) => a + (z.usedBytes ?? 0), 0);
  out.done(
    {
      node: { name: ctx.config.node.name, id: identity?.id ?? null },
      config: ctx.configFile,
      stateDir: ctx.stateDir,
      catalogVersion: ctx.catalog.version(),
      zones: zones.map((z) => {
        const v = zoneVersions(elp, z.name, z.members, ctx.config.node.name);
        const r = rep.get(z.name);
        return {
          ...z, served: daemon.running ? served.has(z.name) : null, version: v.version ?? own.get(z.name) ?? null, memberVersions: v.members,
          ...(r ? { replication: replicationView(r) } : {}),
        };
      }),
      daemon,
    },
    `${lines.join('\n')}\n${zones.length ? table(rows) : 'zones:   none\n'}total used: ${formatSize(used)}`,
  );
}

/** "in sync", or per member behind: "b: 3 behind 1.5MiB @ 200KiB/s; c: unreachable". */
function syncText(s: ZoneSyncStatus | undefined): string {
  if (!s) return '-';
  if (s.inSync && s.members.every((m) => m.behind === '0' || m.state !== 'reachable')) return 'in sync';
  return s.members
    .map((m) => (m.state === 'unreachable' ? `${m.peerName}: unreachable` : `${m.peerName}: ${m.behind} behind ${bytesText(m.bytesToFetch)} @ ${rateText(m.rateBytesPerSec)}`))
    .join('; ');
}
