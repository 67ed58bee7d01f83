import { controlRequest } from '../control/client.js';
import { controlSocketPath } from '../control/protocol.js';
import { GvError } from '../errors.js';
import type { ElpSnapshot } from '../elp/service.js';
import { Output, table, type CliContext } from './context.js';

type NodesReply = ({ enabled: true } & ElpSnapshot) | { enabled: false; reason: string };

function ago(ms: number): string {
  if (ms < 1000) return `${ms}ms ago`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)}s ago`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m ago`;
  return `${Math.round(ms / 3_600_000)}h ago`;
}

function versions(zones: Record<string, string>): string {
  const list = Object.entries(zones).map(([z, v]) => `${z}=${v}`);
  return list.length ? list.join(' ') : '-';
}

/** gv node list: the nodes this node's daemon hears (echolocation), from its control socket. */
export async function nodeList(ctx: CliContext, out: Output): Promise<void> {
  const r = await controlRequest(controlSocketPath(ctx.stateDir), 'nodes', 10_000);
  if (!r.running) throw new GvError('EAGAIN', `gvd is not running (${r.reason}); gv node list asks the daemon, start it first`);
  const reply = r.result as NodesReply;
  if (!reply.enabled) {
    out.done({ enabled: false, reason: reply.reason, self: null, peers: [] }, `echolocation off: ${reply.reason}`);
    return;
  }
  const rows = [['NAME', 'ID', 'ADDRESS', 'LAST SEEN', 'RTT', 'STATE', 'VERSIONS']];
  for (const p of reply.peers) {
    rows.push([
      p.name, p.id.slice(0, 12), p.addresses[0] ?? p.from, ago(p.ageMs), p.rttMs === null ? '-' : `${p.rttMs.toFixed(1)}ms`, p.state,
      `catalog=${p.catalogVersion} ${versions(p.zones)}`,
    ]);
  }
  const drops = Object.entries(reply.packets).filter(([k, v]) => k !== 'ok' && k !== 'self' && v > 0).map(([k, v]) => `${k} ${v}`);
  const human = [
    `this node: ${reply.self.name} (id ${reply.self.id}), cluster ${reply.cluster}, catalog=${reply.self.catalogVersion} ${versions(reply.self.zones)}`,
    reply.peers.length ? table(rows).trimEnd() : 'no other node heard yet',
    `packets: ok ${reply.packets.ok}${drops.length ? `, dropped: ${drops.join(', ')}` : ''}; announcements sent ${reply.announcements}`,
  ].join('\n');
  out.done({ ...reply }, human);
}
