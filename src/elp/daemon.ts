/**
 * Echolocation as the daemon runs it: key and identity from disk, the multicast beacon (plus
 * static peers) from the config, the service, its metrics. Returns null when the node has no
 * cluster key (a single node: nothing to announce) or [elp] enabled = false.
 */
import os from 'node:os';
import type { Registry } from 'prom-client';
import { createIdentity, readIdentity } from '../catalog/identity.js';
import type { Config } from '../config/types.js';
import { readClusterKey } from './cluster-key.js';
import { elpConfigFromRaw } from './config.js';
import { registerElpMetrics } from './metrics.js';
import { MulticastBeacon } from './multicast.js';
import { ElpService } from './service.js';
import type { ZoneVersions } from '../journal/versions.js';

export interface ElpWiring {
  config: Config;
  stateDir: string;
  versions: ZoneVersions;
  catalogVersion: () => number | bigint;
  /** Address and port peers would reach this node at (NFS until the peer protocol exists). */
  listen: string;
  port: number;
  log: (level: 'info' | 'warn' | 'debug', obj: Record<string, unknown>, msg: string) => void;
  registry?: Registry;
}

/** IPv4 addresses to announce for `listen` (every non-internal one for a wildcard). */
export function announcedHosts(listen: string): string[] {
  if (listen !== '0.0.0.0' && listen !== '::') return [listen];
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out.length ? out : ['127.0.0.1'];
}

export async function startElp(w: ElpWiring): Promise<ElpService | null> {
  const { config } = w;
  const elpCfg = config.elp ?? elpConfigFromRaw(undefined, config.file ?? 'config');
  if (!config.cluster.keyFile || !config.cluster.name || !elpCfg.enabled) return null;
  const key = readClusterKey(config.cluster.keyFile);
  let identity = readIdentity(w.stateDir);
  if (!identity) {
    identity = createIdentity(w.stateDir, config.node.name);
    w.log('info', { id: identity.id }, 'node identity created (no gv init ran for this state directory)');
  }
  const hosts = announcedHosts(w.listen);
  const addresses = hosts.map((h) => (h.includes(':') ? `[${h}]:${w.port}` : `${h}:${w.port}`));
  const clusterName = config.cluster.name;
  const self = { id: identity.id, name: config.node.name };
  let service: ElpService | null = null;
  const beacon = new MulticastBeacon({
    group: elpCfg.group,
    port: elpCfg.port,
    interface: elpCfg.interface,
    peers: (config.peers ?? []).map((p) => ({ address: p.host, port: p.port })),
    service: elpCfg.mdns
      ? {
          instance: config.node.name,
          port: w.port,
          addresses: hosts.filter((h) => !h.includes(':')),
          txt: () => [
            `id=${self.id}`, `cluster=${clusterName}`, `catalog=${String(w.catalogVersion())}`,
            ...[...w.versions.current()].slice(0, 16).map(([z, v]) => `zone.${z}=${v}`),
          ],
        }
      : undefined,
    onWarning: (err) => w.log('debug', { err: String(err) }, 'elp socket warning'),
  });
  service = new ElpService(
    { beacon, versions: w.versions, catalogVersion: w.catalogVersion, self, key, clusterName, addresses: () => addresses, log: w.log },
    { intervalMs: elpCfg.intervalMs, unreachableAfterMs: elpCfg.unreachableAfterMs },
  );
  await service.start();
  if (w.registry) registerElpMetrics(w.registry, service);
  w.log('info', { group: elpCfg.group, port: elpCfg.port, interface: elpCfg.interface, mdns: elpCfg.mdns, peers: (config.peers ?? []).map((p) => p.address), cluster: clusterName, id: self.id }, 'elp started');
  return service;
}
