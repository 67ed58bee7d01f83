import { readIdentity } from '../catalog/identity.js';
import { formatSize } from '../util/size.js';
import { askDaemon, Output, table, type CliContext } from './context.js';
import { zoneViews } from './zone.js';

interface DaemonStatus {
  pid: number;
  nfsPort: number;
  mountPort: number;
  portmapPort: number | null;
  listen: string;
  startedAt: string;
  zones: { name: string }[];
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
  const lines = [
    `node:    ${ctx.config.node.name}${identity ? ` (id ${identity.id})` : ' (no identity: run gv init)'}`,
    `config:  ${ctx.configFile}`,
    `state:   ${ctx.stateDir}`,
  ];
  if (daemon.running) {
    const d = daemon as unknown as DaemonStatus;
    lines.push(`daemon:  running, pid ${d.pid}, nfs ${d.listen}:${d.nfsPort}, mount ${d.mountPort}, portmap ${d.portmapPort ?? 'off'}, since ${d.startedAt}`);
  } else lines.push(`daemon:  not running (${String(daemon.reason)})`);
  const rows = [['ZONE', 'QUOTA', 'USED', 'SERVED', 'EXPORT']];
  for (const z of zones) {
    rows.push([z.name, z.quota ?? 'none', z.used ?? '-', daemon.running ? (served.has(z.name) ? 'yes' : 'no') : '-', z.exportPath]);
  }
  const used = zones.reduce((a, z) => a + (z.usedBytes ?? 0), 0);
  out.done(
    {
      node: { name: ctx.config.node.name, id: identity?.id ?? null },
      config: ctx.configFile,
      stateDir: ctx.stateDir,
      catalogVersion: ctx.catalog.version(),
      zones: zones.map((z) => ({ ...z, served: daemon.running ? served.has(z.name) : null })),
      daemon,
    },
    `${lines.join('\n')}\n${zones.length ? table(rows) : 'zones:   none\n'}total used: ${formatSize(used)}`,
  );
}
