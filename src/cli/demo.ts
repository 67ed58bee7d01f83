import fs from 'node:fs';
import path from 'node:path';
import { DEFAULTS } from '../config/load.js';
import type { Config, PortmapMode } from '../config/types.js';
import { parseCidr } from '../util/cidr.js';
import { firstFreeTcpPort, isRoot, tcpPortFree } from '../util/ports.js';

export const DEMO_ZONE = 'demo';
export const DEFAULT_DEMO_DIR = '.gv-demo';

const README = `Welcome to GrapeVineFS.

This directory is the "demo" zone, served over NFSv3 by \`gv daemon --demo\`.
Anything you create here through the NFS mount lands in the directory next to this file, and
the daemon records it in its journal (state/ next to the zone).

Stop the daemon with Ctrl-C; start it again and the same mount keeps working.
`;

/** The built-in configuration of `gv daemon --demo DIR`: one zone `demo`, loopback only. */
export function demoConfig(dir: string, opts: { nfsPort: number; mountPort: number; portmap: PortmapMode }): Config {
  const root = path.resolve(dir);
  return {
    file: null,
    node: { name: 'demo', stateDir: path.join(root, 'state'), logLevel: 'info' },
    nfs: {
      listen: '127.0.0.1',
      port: opts.nfsPort,
      mountPort: opts.mountPort,
      portmap: opts.portmap,
      maxRecordSize: null,
      requirePrivilegedPort: false,
      busyPollUs: DEFAULTS.busyPollUs,
      squash: 'none',
      anonUid: 65534,
      anonGid: 65534,
    },
    zones: [{ name: DEMO_ZONE, path: path.join(root, DEMO_ZONE), quotaBytes: null, allow: [parseCidr('127.0.0.1/32')], dataset: null }],
    zfs: { pool: null, datasetRoot: 'gv-zones' },
    cluster: { nodes: [], zoneAllow: [parseCidr('127.0.0.1/32')] },
  };
}

/** Create the zone directory and its README (kept if the user edited it). */
export function prepareDemoDir(dir: string): void {
  const zone = path.join(path.resolve(dir), DEMO_ZONE);
  fs.mkdirSync(zone, { recursive: true });
  const readme = path.join(zone, 'README.txt');
  if (!fs.existsSync(readme)) fs.writeFileSync(readme, README);
}

/** 2049/20048 when root and free, else 12049/12048 (or the next free ports above them). */
export async function demoPorts(host = '127.0.0.1'): Promise<{ nfsPort: number; mountPort: number }> {
  if (isRoot() && (await tcpPortFree(2049, host)) && (await tcpPortFree(20048, host))) {
    return { nfsPort: 2049, mountPort: 20048 };
  }
  const nfsPort = (await firstFreeTcpPort(12049, host, 100)) ?? 0;
  const mountPort = (await firstFreeTcpPort(12048, host, 100, [nfsPort, 12049])) ?? 0;
  return { nfsPort, mountPort };
}

/** What a human needs to mount the demo zone from Linux, macOS, FreeBSD and libnfs. */
export function mountInstructions(p: { nfsPort: number; mountPort: number; portmapPort: number | null; host?: string; zone?: string }): string {
  const host = p.host ?? '127.0.0.1';
  const zone = p.zone ?? DEMO_ZONE;
  const { nfsPort: n, mountPort: m } = p;
  const lines = [
    '',
    `GrapeVineFS demo: zone /${zone} is served on ${host} (NFSv3 on port ${n}, MOUNT on port ${m}).`,
    '',
    'Linux:',
    `  sudo mkdir -p /mnt/${zone}`,
    `  sudo mount -t nfs -o vers=3,proto=tcp,port=${n},mountport=${m},mountproto=tcp,nolock ${host}:/${zone} /mnt/${zone}`,
    '',
    'macOS:',
    `  mkdir -p ~/gv-${zone}`,
    `  sudo mount -t nfs -o vers=3,tcp,port=${n},mountport=${m},resvport,nolocks ${host}:/${zone} ~/gv-${zone}`,
    '',
    'FreeBSD:',
    `  sudo mkdir -p /mnt/${zone}`,
    `  sudo mount_nfs -o nfsv3,tcp,port=${n},nolockd ${host}:/${zone} /mnt/${zone}`,
    p.portmapPort === null
      ? '  (FreeBSD asks the portmapper for the MOUNT port: run the demo as root with port 111 free, or with rpcbind running)'
      : `  (MOUNT port found through the portmapper on port ${p.portmapPort})`,
    '',
    'libnfs (no root needed):',
    `  nfs-ls "nfs://${host}/${zone}?version=3&nfsport=${n}&mountport=${m}"`,
    `  URL: nfs://${host}/${zone}?version=3&nfsport=${n}&mountport=${m}`,
    '',
    'Stop with Ctrl-C.',
    '',
  ];
  return lines.join('\n');
}
