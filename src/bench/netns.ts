/**
 * A few "hosts" as network namespaces on one private L2 segment, for multi-host tests and the
 * replication bench. Each host namespace has `eth0` (a veth whose other end, `v<host>`, is a port
 * of bridge `br0` in a separate switch namespace), an address in 10.213.71.0/24, a multicast route
 * and IPv6 off; nothing is created in the root namespace, so no packet can reach a real network.
 * Names carry a prefix and a random run id, so concurrent runs do not collide.
 *
 *  - partition(h) pulls host h's cable (its switch port down); heal(h) plugs it back.
 *  - partitionPair(x, y) cuts only the traffic between x and y (unicast, multicast, ARP) while both
 *    still reach everyone else: an nftables bridge-family rule in the switch drops frames whose
 *    ingress/egress port pair is in the set `cut`. healPair(x, y) removes the pair.
 *  - pairBytes(x, y) counts the bytes the switch delivered from x's port to y's (nft counters, IP
 *    length, delivered frames only); portBytes(h) reads the switch port's interface counters.
 *  - spawn(h, cmd, args) runs a process inside h's network namespace (nsenter --net, staying in
 *    this mount namespace, so files and unix sockets are shared with the caller).
 *  - forward(h, port) makes h's TCP service at its address reachable on 127.0.0.1 of the caller
 *    (through a relay in h listening on a unix socket).
 *  - cleanup() kills every process started inside and deletes the namespaces; it also runs on
 *    process exit if the caller forgot.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { GvError } from '../errors.js';

export const NETNS_SUBNET = '10.213.71';
const IP_BIN = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => fs.existsSync(p)) ?? 'ip';
const NSENTER = ['/usr/bin/nsenter', '/usr/sbin/nsenter', '/bin/nsenter'].find((p) => fs.existsSync(p)) ?? 'nsenter';
const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => fs.existsSync(p)) ?? null;
const NFT_TABLE = 'gvlab';

export interface NetnsHost {
  /** Short name given by the caller ("A"). */
  name: string;
  /** Namespace name (/run/netns/<ns>). */
  ns: string;
  /** Address of eth0. */
  ip: string;
}

export interface Forward {
  /** Port on 127.0.0.1 of the caller. */
  port: number;
  close(): Promise<void>;
}

export interface PortBytes {
  /** Bytes the host sent into its switch port (the port's rx). */
  fromHost: number;
  /** Bytes the switch sent to the host (the port's tx). */
  toHost: number;
}

export interface NetnsLab {
  id: string;
  hosts: Record<string, NetnsHost>;
  switchNs: string;
  /** Run a command inside a host (synchronously, bounded); throws on a non-zero exit. */
  exec(host: string, cmd: string, args: string[], timeoutMs?: number): string;
  /** argv prefix that runs a command inside host's network namespace (for runCommand & co.). */
  wrap(host: string): string[];
  /** Start a process inside a host; it is killed by cleanup(). */
  spawn(host: string, cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Cut host's switch port (cable pull). */
  partition(host: string): void;
  /** Plug host's switch port back in. */
  heal(host: string): void;
  /** Drop every frame between x and y in the switch (both ways); both still reach the others. */
  partitionPair(x: string, y: string): void;
  /** Undo partitionPair(x, y). */
  healPair(x: string, y: string): void;
  /** Why partitionPair/pairBytes cannot work here (no nft), or null. */
  pairSupport(): string | null;
  /** Bytes (IP length) the switch delivered from x's port to y's since the lab was made. */
  pairBytes(x: string, y: string): number;
  /** Interface byte counters of host's switch port. */
  portBytes(host: string): PortBytes;
  forward(host: string, port: number): Promise<Forward>;
  cleanup(): Promise<void>;
}

export interface NetnsLabOptions {
  /** Namespace name prefix (default "gvt"). */
  prefix?: string;
}

/** Why multi-host runs cannot happen here, or null when they can. */
export function netnsSkipReason(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespaces need root (run as root)';
  const r = spawnSync(IP_BIN, ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return `"ip netns" unavailable: ${r.error?.message ?? r.stderr.trim()}`;
  const probe = `gvt-probe-${randomBytes(3).toString('hex')}`;
  const add = spawnSync(IP_BIN, ['netns', 'add', probe], { encoding: 'utf8', timeout: 10_000 });
  if (add.status !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  const veth = spawnSync(IP_BIN, ['-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1'], { encoding: 'utf8', timeout: 10_000 });
  const br = spawnSync(IP_BIN, ['-n', probe, 'link', 'add', 'b0', 'type', 'bridge'], { encoding: 'utf8', timeout: 10_000 });
  spawnSync(IP_BIN, ['netns', 'del', probe], { timeout: 10_000 });
  if (veth.status !== 0) return `veth links unavailable: ${veth.stderr.trim()}`;
  if (br.status !== 0) return `bridges unavailable: ${br.stderr.trim()}`;
  if (!fs.existsSync(NSENTER)) return 'nsenter not found (util-linux)';
  return null;
}

function ip(args: string[]): string {
  const r = spawnSync(IP_BIN, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) throw new GvError('EIO', `ip ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout;
}

function nsPids(ns: string): number[] {
  const r = spawnSync(IP_BIN, ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 });
  return (r.stdout ?? '').split(/\s+/).filter(Boolean).map(Number).filter((n) => n > 0 && n !== process.pid);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM every process in `ns`, SIGKILL what is left after `graceMs`; then delete it. Synchronous. */
function destroyNamespace(ns: string, graceMs: number): void {
  if (!fs.existsSync(`/run/netns/${ns}`)) return;
  let pids = nsPids(ns);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + graceMs;
  while (pids.length && Date.now() < deadline) {
    spawnSync('sleep', ['0.05']);
    pids = pids.filter(alive);
  }
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  spawnSync(IP_BIN, ['netns', 'del', ns], { timeout: 10_000 });
}

const live = new Set<() => void>();
process.once('exit', () => {
  for (const f of live) f();
});

/** nft in namespace `ns`, script on stdin; returns stdout or throws. */
function nft(ns: string, args: string[], script?: string): string {
  if (!NFT) throw new GvError('ENOTSUP', 'nft not found (Debian package nftables)');
  const r = spawnSync(NSENTER, [`--net=/run/netns/${ns}`, '--', NFT, ...args], { encoding: 'utf8', timeout: 10_000, input: script });
  if (r.error || r.status !== 0) throw new GvError('EIO', `nft ${args.join(' ')} in ${ns} failed: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout;
}

/** Counter name of the ordered pair (x index, y index). */
const counterName = (xi: number, yi: number): string => `c_${xi}_${yi}`;

/** Create hosts (default A, B, C) on one bridge. Call cleanup() when done (also on failure). */
export async function createNetnsLab(names: string[] = ['A', 'B', 'C'], opts: NetnsLabOptions = {}): Promise<NetnsLab> {
  if (names.length > 200) throw new GvError('EINVAL', 'too many hosts');
  for (const n of names) {
    if (!/^[A-Za-z0-9_-]{1,12}$/.test(n)) throw new GvError('EINVAL', `bad host name "${n}" (1-12 of A-Z a-z 0-9 _ -)`);
  }
  const prefix = opts.prefix ?? 'gvt';
  const id = randomBytes(3).toString('hex');
  const switchNs = `${prefix}-${id}-sw`;
  const hosts: Record<string, NetnsHost> = {};
  names.forEach((n, i) => {
    hosts[n] = { name: n, ns: `${prefix}-${id}-${n}`, ip: `${NETNS_SUBNET}.${i + 1}` };
  });
  const index = new Map(names.map((n, i) => [n, i]));
  const all = [switchNs, ...Object.values(hosts).map((h) => h.ns)];
  const children = new Set<ChildProcess>();
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-${id}-`));
  let nftError: string | null = NFT ? null : 'nft not found (install the Debian package nftables)';
  let cleaned = false;
  const cleanupSync = () => {
    if (cleaned) return;
    cleaned = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    for (const ns of all) destroyNamespace(ns, 3000);
    fs.rmSync(sockDir, { recursive: true, force: true });
    live.delete(cleanupSync);
  };
  live.add(cleanupSync);

  const host = (h: string): NetnsHost => {
    const x = hosts[h];
    if (!x) throw new GvError('EINVAL', `unknown host ${h} (hosts: ${names.join(', ')})`);
    return x;
  };
  const port = (h: string): string => `v${host(h).name}`;

  try {
    ip(['netns', 'add', switchNs]);
    ip(['-n', switchNs, 'link', 'set', 'lo', 'up']);
    // No IGMP querier on this segment: snooping off, so the bridge floods multicast to every port.
    ip(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    for (const h of Object.values(hosts)) {
      ip(['netns', 'add', h.ns]);
      // IPv6 off: no duplicate-address detection or MLD traffic in the way.
      spawnSync(NSENTER, [`--net=/run/netns/${h.ns}`, '--', 'sh', '-c',
        'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'], { timeout: 10_000 });
      ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
      ip(['-n', switchNs, 'link', 'add', `v${h.name}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
      ip(['-n', switchNs, 'link', 'set', `v${h.name}`, 'master', 'br0']);
      ip(['-n', switchNs, 'link', 'set', `v${h.name}`, 'up']);
      ip(['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
      ip(['-n', h.ns, 'link', 'set', 'eth0', 'up']);
      // Multicast leaves through eth0 without every program naming the interface.
      ip(['-n', h.ns, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0']);
    }
    if (!nftError) {
      // The switch's filter: a set of cut (ingress port . egress port) pairs, then one named
      // counter per ordered pair of ports, counting what was delivered.
      const lines = [`table bridge ${NFT_TABLE} {`, '  set cut { type ifname . ifname; }'];
      names.forEach((_x, xi) => names.forEach((_y, yi) => {
        if (xi !== yi) lines.push(`  counter ${counterName(xi, yi)} { }`);
      }));
      lines.push('  chain ports {', '    type filter hook forward priority 0; policy accept;', '    iifname . oifname @cut drop');
      names.forEach((x, xi) => names.forEach((y, yi) => {
        if (xi !== yi) lines.push(`    iifname "v${x}" oifname "v${y}" counter name "${counterName(xi, yi)}"`);
      }));
      lines.push('  }', '}', '');
      try {
        nft(switchNs, ['-f', '-'], lines.join('\n'));
      } catch (err) {
        nftError = (err as Error).message;
      }
    }
    for (const h of Object.values(hosts)) {
      let state = '';
      for (let i = 0; i < 100 && state !== 'UP'; i++) {
        state = /state (\w+)/.exec(ip(['-n', h.ns, 'link', 'show', 'eth0']))?.[1] ?? '';
        if (state !== 'UP') await new Promise((r) => setTimeout(r, 50));
      }
      if (state !== 'UP') throw new GvError('EIO', `${h.ns}: eth0 did not come up (state ${state})`);
    }
  } catch (err) {
    cleanupSync();
    throw err;
  }

  const spawnIn = (h: string, cmd: string, args: string[], o: SpawnOptions = {}): ChildProcess => {
    const c = spawn(NSENTER, [`--net=/run/netns/${host(h).ns}`, '--', cmd, ...args], o);
    children.add(c);
    c.once('exit', () => children.delete(c));
    return c;
  };

  const needPairs = (): void => {
    if (nftError) throw new GvError('ENOTSUP', `per-pair partitions and counters unavailable: ${nftError}`);
  };
  const pairElements = (x: string, y: string): string => `{ "${port(x)}" . "${port(y)}", "${port(y)}" . "${port(x)}" }`;

  return {
    id,
    hosts,
    switchNs,
    exec(h, cmd, args, timeoutMs = 20_000) {
      const r = spawnSync(NSENTER, [`--net=/run/netns/${host(h).ns}`, '--', cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
      if (r.error || r.status !== 0) throw new GvError('EIO', `${cmd} ${args.join(' ')} in ${h} failed: ${r.error?.message ?? ''}${r.stderr}${r.stdout}`);
      return r.stdout;
    },
    wrap: (h) => [NSENTER, `--net=/run/netns/${host(h).ns}`, '--'],
    spawn: spawnIn,
    partition(h) {
      ip(['-n', switchNs, 'link', 'set', port(h), 'down']);
    },
    heal(h) {
      ip(['-n', switchNs, 'link', 'set', port(h), 'up']);
    },
    partitionPair(x, y) {
      needPairs();
      if (x === y) throw new GvError('EINVAL', 'partitionPair needs two different hosts');
      nft(switchNs, ['add', 'element', 'bridge', NFT_TABLE, 'cut', pairElements(x, y)]);
    },
    healPair(x, y) {
      needPairs();
      // Deleting an element that is not there fails; heal what is cut, ignore the rest.
      const cut = nft(switchNs, ['-j', 'list', 'set', 'bridge', NFT_TABLE, 'cut']);
      for (const [a, b] of [[x, y], [y, x]] as const) {
        if (cut.includes(`"${port(a)}", "${port(b)}"`) || cut.includes(`"${port(a)}","${port(b)}"`)) {
          nft(switchNs, ['delete', 'element', 'bridge', NFT_TABLE, 'cut', `{ "${port(a)}" . "${port(b)}" }`]);
        }
      }
    },
    pairSupport: () => nftError,
    pairBytes(x, y) {
      needPairs();
      const xi = index.get(host(x).name)!;
      const yi = index.get(host(y).name)!;
      const out = JSON.parse(nft(switchNs, ['-j', 'list', 'counter', 'bridge', NFT_TABLE, counterName(xi, yi)])) as {
        nftables: { counter?: { bytes: number } }[];
      };
      const c = out.nftables.find((e) => e.counter)?.counter;
      if (!c) throw new GvError('EIO', `no counter ${counterName(xi, yi)} in the switch`);
      return c.bytes;
    },
    portBytes(h) {
      const j = JSON.parse(ip(['-n', switchNs, '-s', '-j', 'link', 'show', port(h)])) as { stats64?: { rx: { bytes: number }; tx: { bytes: number } } }[];
      const s = j[0]?.stats64;
      if (!s) throw new GvError('EIO', `no statistics for ${port(h)}`);
      return { fromHost: s.rx.bytes, toHost: s.tx.bytes };
    },
    async forward(h, p) {
      const target = host(h);
      const sock = path.join(sockDir, `fwd-${h}-${p}-${randomBytes(3).toString('hex')}.sock`);
      const relay = spawnIn(h, process.execPath, ['-e', RELAY_JS, sock, target.ip, String(p)], { stdio: ['ignore', 'pipe', 'pipe'] });
      await new Promise<void>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new GvError('EIO', `relay in ${h} not ready: ${out}`)), 10_000);
        relay.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready')) {
            clearTimeout(t);
            resolve();
          }
        });
        relay.once('exit', (code) => {
          clearTimeout(t);
          reject(new GvError('EIO', `relay in ${h} exited (${code}): ${out}`));
        });
      });
      const conns = new Set<net.Socket>();
      const server = net.createServer((c) => {
        const u = net.connect(sock);
        conns.add(c).add(u);
        c.setNoDelay(true);
        c.pipe(u);
        u.pipe(c);
        const end = () => {
          c.destroy();
          u.destroy();
          conns.delete(c);
          conns.delete(u);
        };
        c.on('error', end).on('close', end);
        u.on('error', end).on('close', end);
      });
      const localPort = await new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
      });
      return {
        port: localPort,
        close: async () => {
          for (const c of conns) c.destroy();
          await new Promise<void>((r) => server.close(() => r()));
          relay.kill('SIGTERM');
        },
      };
    },
    async cleanup() {
      cleanupSync();
    },
  };
}

/** Inside a namespace: accept on a unix socket, connect each client to host:port, pipe both ways. */
const RELAY_JS = `
const net = require('net');
const [sock, host, port] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect({ host, port: Number(port) });
  u.setNoDelay(true);
  c.pipe(u); u.pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
  c.on('close', () => u.destroy()); u.on('close', () => c.destroy());
}).listen(sock, () => console.log('ready'));
`;
