/**
 * `[elp]` and `[[peers]]` of zones.toml, validated with messages naming file and key (the same
 * form as src/config/load.ts). Kept here so the config loader only calls one function.
 */
import { GvError } from '../errors.js';
import { parseAddress } from '../util/cidr.js';
import type { ElpConfig, StaticPeer } from '../config/types.js';
import type { z } from 'zod';
import type { elpSchema, peerSchema } from '../config/schema.js';
import { DEFAULT_GROUP, DEFAULT_PORT, MDNS_GROUP, MDNS_PORT } from './multicast.js';
import { DEFAULT_INTERVAL_MS } from './service.js';

function fail(file: string, key: string, reason: string): never {
  throw new GvError('CONFIG', `${file}: ${key}: ${reason}`, { file, key, reason });
}

function isIpv4(text: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(text) && parseAddress(text) !== null;
}

function isMulticastV4(text: string): boolean {
  if (!isIpv4(text)) return false;
  const first = Number(text.split('.')[0]);
  return first >= 224 && first <= 239;
}

/** The effective [elp] settings (defaults when the table is absent). */
export function elpConfigFromRaw(raw: z.infer<typeof elpSchema> | undefined, file: string): ElpConfig {
  const r = raw ?? {};
  const mdns = r.mdns ?? false;
  const group = r.group ?? (mdns ? MDNS_GROUP : DEFAULT_GROUP);
  if (!isMulticastV4(group)) fail(file, 'elp.group', `"${group}" is not an IPv4 multicast address (224.0.0.0-239.255.255.255)`);
  if (r.interface !== undefined && !isIpv4(r.interface)) fail(file, 'elp.interface', `"${r.interface}" is not an IPv4 address (give the address of the interface, e.g. "192.168.1.10")`);
  const intervalMs = r.interval_ms ?? DEFAULT_INTERVAL_MS;
  const unreachableAfterMs = r.unreachable_after_ms ?? 3 * intervalMs;
  if (unreachableAfterMs <= intervalMs) fail(file, 'elp.unreachable_after_ms', `must be longer than interval_ms (${intervalMs}); three intervals is a good choice`);
  return {
    enabled: r.enabled ?? true,
    group,
    port: r.port ?? (mdns ? MDNS_PORT : DEFAULT_PORT),
    interface: r.interface ?? null,
    mdns,
    intervalMs,
    unreachableAfterMs,
  };
}

/** `[[peers]]` addresses: "host:port" with an IPv4 host (or "[v6]:port"). */
export function peersFromRaw(raw: z.infer<typeof peerSchema>[] | undefined, file: string, defaultPort: number): StaticPeer[] {
  const out: StaticPeer[] = [];
  (raw ?? []).forEach((p, i) => {
    const key = `peers[${i}].address`;
    const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(p.address.trim());
    const host = m?.[1] ?? m?.[2];
    if (!m || !host || !parseAddress(host)) fail(file, key, `"${p.address}" is not "address:port" (e.g. "10.0.0.7:${defaultPort}")`);
    const port = m[3] !== undefined ? Number(m[3]) : defaultPort;
    if (port < 1 || port > 65535) fail(file, key, `port out of range (1-65535)`);
    if (!isIpv4(host)) fail(file, key, `"${host}": only IPv4 peers are supported`);
    if (out.some((o) => o.host === host && o.port === port)) fail(file, key, `peer ${host}:${port} is listed twice`);
    out.push({ address: `${host}:${port}`, host, port });
  });
  return out;
}
