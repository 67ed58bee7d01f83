/**
 * Test harness: a few "hosts" as network namespaces on one private L2 segment, for multi-host
 * tests (ELP multicast, partitions). Each host namespace has `eth0` (a veth whose other end is a
 * port of bridge `br0` in a separate switch namespace), an address in 10.213.71.0/24, a multicast
 * route and IPv6 off; nothing is created in the root namespace, so no test packet can reach a
 * real network. Names carry a random run id, so concurrent runs do not collide.
 *
 *  - partition(h) pulls host h's cable (its switch port down: its sends still "succeed" but go
 *    nowhere); heal(h) plugs it back.
 *  - spawn(h, cmd, args) runs a process inside h's network namespace (nsenter --net, staying in
 *    this mount namespace, so files and unix sockets are shared with the test).
 *  - forward(h, port) makes h's TCP service at its address reachable on 127.0.0.1 of the test
 *    process (through a relay in h listening on a unix socket).
 *  - cleanup() kills every process started inside and deletes the namespaces; it also runs on
 *    process exit if a test forgot.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const NETNS_SUBNET = '10.213.71';
const IP_BIN = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'].find((p) => fs.existsSync(p)) ?? 'ip';
const NSENTER = ['/usr/bin/nsenter', '/usr/sbin/nsenter', '/bin/nsenter'].find((p) => fs.existsSync(p)) ?? 'nsenter';

export interface NetnsHost {
  /** Short name given by the test ("A"). */
  name: string;
  /** Namespace name (/run/netns/<ns>). */
  ns: string;
  /** Address of eth0. */
  ip: string;
}

export interface Forward {
  /** Port on 127.0.0.1 of the test process. */
  port: number;
  close(): Promise<void>;
}

export interface NetnsLab {
  id: string;
  hosts: Record<string, NetnsHost>;
  switchNs: string;
  /** Run a command inside a host (synchronously, bounded); throws on a non-zero exit. */
  exec(host: string, cmd: string, args: string[], timeoutMs?: number): string;
  /** Start a process inside a host; it is killed by cleanup(). */
  spawn(host: string, cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Cut host's switch port (cable pull). */
  partition(host: string): void;
  /** Plug host's switch port back in. */
  heal(host: string): void;
  forward(host: string, port: number): Promise<Forward>;
  cleanup(): Promise<void>;
}

/** Why multi-host tests cannot run here, or null when they can. */
export function netnsSkipReason(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'network namespaces need root (run the tests as root)';
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
  if (r.error || r.status !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
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

/** Create hosts (default A, B, C) on one bridge. Call cleanup() in afterAll. */
export async function createNetnsLab(names: string[] = ['A', 'B', 'C']): Promise<NetnsLab> {
  if (names.length > 200) throw new Error('too many hosts');
  const id = randomBytes(3).toString('hex');
  const switchNs = `gvt-${id}-sw`;
  const hosts: Record<string, NetnsHost> = {};
  names.forEach((n, i) => {
    hosts[n] = { name: n, ns: `gvt-${id}-${n}`, ip: `${NETNS_SUBNET}.${i + 1}` };
  });
  const all = [switchNs, ...Object.values(hosts).map((h) => h.ns)];
  const children = new Set<ChildProcess>();
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), `gvt-${id}-`));
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
    if (!x) throw new Error(`unknown host ${h} (hosts: ${names.join(', ')})`);
    return x;
  };

  try {
    ip(['netns', 'add', switchNs]);
    ip(['-n', switchNs, 'link', 'set', 'lo', 'up']);
    // No IGMP querier on this segment: snooping off, so the bridge floods multicast to every port.
    ip(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    for (const h of Object.values(hosts)) {
      ip(['netns', 'add', h.ns]);
      // IPv6 off: no duplicate-address detection or MLD traffic in the way.
      const v6 = spawnSync(NSENTER, [`--net=/run/netns/${h.ns}`, '--', 'sh', '-c',
        'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'], { timeout: 10_000 });
      void v6;
      ip(['-n', h.ns, 'link', 'set', 'lo', 'up']);
      ip(['-n', switchNs, 'link', 'add', `v${h.name}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns]);
      ip(['-n', switchNs, 'link', 'set', `v${h.name}`, 'master', 'br0']);
      ip(['-n', switchNs, 'link', 'set', `v${h.name}`, 'up']);
      ip(['-n', h.ns, 'addr', 'add', `${h.ip}/24`, 'dev', 'eth0']);
      ip(['-n', h.ns, 'link', 'set', 'eth0', 'up']);
      // Multicast leaves through eth0 without every program naming the interface.
      ip(['-n', h.ns, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0']);
    }
    for (const h of Object.values(hosts)) {
      let state = '';
      for (let i = 0; i < 100 && state !== 'UP'; i++) {
        state = /state (\w+)/.exec(ip(['-n', h.ns, 'link', 'show', 'eth0']))?.[1] ?? '';
        if (state !== 'UP') await new Promise((r) => setTimeout(r, 50));
      }
      if (state !== 'UP') throw new Error(`${h.ns}: eth0 did not come up (state ${state})`);
    }
  } catch (err) {
    cleanupSync();
    throw err;
  }

  const spawnIn = (h: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess => {
    const c = spawn(NSENTER, [`--net=/run/netns/${host(h).ns}`, '--', cmd, ...args], opts);
    children.add(c);
    c.once('exit', () => children.delete(c));
    return c;
  };

  return {
    id,
    hosts,
    switchNs,
    exec(h, cmd, args, timeoutMs = 20_000) {
      const r = spawnSync(NSENTER, [`--net=/run/netns/${host(h).ns}`, '--', cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
      if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${h} failed: ${r.error?.message ?? ''}${r.stderr}${r.stdout}`);
      return r.stdout;
    },
    spawn: spawnIn,
    partition(h) {
      ip(['-n', switchNs, 'link', 'set', `v${host(h).name}`, 'down']);
    },
    heal(h) {
      ip(['-n', switchNs, 'link', 'set', `v${host(h).name}`, 'up']);
    },
    async forward(h, port) {
      const target = host(h);
      const sock = path.join(sockDir, `fwd-${h}-${port}-${randomBytes(3).toString('hex')}.sock`);
      const relay = spawnIn(h, process.execPath, ['-e', RELAY_JS, sock, target.ip, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
      await new Promise<void>((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => reject(new Error(`relay in ${h} not ready: ${out}`)), 10_000);
        relay.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready')) {
            clearTimeout(t);
            resolve();
          }
        });
        relay.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`relay in ${h} exited (${code}): ${out}`));
        });
      });
      const conns = new Set<net.Socket>();
      const server = net.createServer((c) => {
        const u = net.connect(sock);
        conns.add(c).add(u);
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
  c.pipe(u); u.pipe(c);
  c.on('error', () => u.destroy()); u.on('error', () => c.destroy());
  c.on('close', () => u.destroy()); u.on('close', () => c.destroy());
}).listen(sock, () => console.log('ready'));
`;
