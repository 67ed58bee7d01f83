/**
 * Three hosts (network namespaces on one bridge), one daemon each, one cluster: a write through
 * NFS on A reaches B's and C's peer tables within a second; a fourth node with another key is
 * ignored (its packets counted as bad_mac); a partition makes A unreachable and healing brings it
 * back. Skipped, with the reason printed, when namespaces cannot be made (not root, no ip netns).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../src/control/client.js';
import { controlSocketPath } from '../src/control/protocol.js';
import type { ElpSnapshot } from '../src/elp/service.js';
import { DAEMON_MAIN, ensureBuilt } from './harness/daemon.js';
import { createNetnsLab, netnsSkipReason, NETNS_SUBNET, type Forward, type NetnsLab } from './harness/netns.js';
import { expectOk, mountZone, STABLE } from './harness/nfs3-client.js';

const SKIP = netnsSkipReason();
if (SKIP) console.warn(`multihost tests skipped: ${SKIP}`);

const INTERVAL_MS = 200;
const UNREACHABLE_MS = 800;

interface Node {
  name: string;
  host: string;
  dir: string;
  config: string;
  stateDir: string;
  child: ChildProcess | null;
  out: string;
}

let lab: NetnsLab;
let tmp: string;
const nodes: Record<string, Node> = {};
const forwards: Forward[] = [];

function gv(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [DAEMON_MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

async function gvJson(args: string[]): Promise<Record<string, any>> {
  const r = await gv([...args, '--json']);
  if (r.code !== 0) throw new Error(`gv ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout) as Record<string, any>;
}

async function nodesOf(n: Node): Promise<ElpSnapshot & { enabled: boolean }> {
  const r = await controlRequest(controlSocketPath(n.stateDir), 'nodes', 5000);
  if (!r.running) throw new Error(`${n.name}: daemon not running (${r.reason})`);
  return r.result as ElpSnapshot & { enabled: boolean };
}

/** Poll `fn` every 20 ms for at most `ms`; the last value is returned either way. */
async function poll<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms: number): Promise<{ value: T; ok: boolean }> {
  const deadline = Date.now() + ms;
  let value = await fn();
  while (!ok(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    value = await fn();
  }
  return { value, ok: ok(value) };
}

/** gv init made the config; point it at the host's address, fast ELP timers, catalog members. */
function adaptConfig(n: Node, ip: string, members: string[]): void {
  let text = fs.readFileSync(n.config, 'utf8');
  const sub = (re: RegExp, to: string) => {
    if (!re.test(text)) throw new Error(`${n.config}: no match for ${re}`);
    text = text.replace(re, to);
  };
  sub(/^listen = "127\.0\.0\.1"$/m, `listen = "${ip}"`);
  sub(/^portmap = "auto"$/m, 'portmap = "off"');
  sub(/^nodes = \[\]/m, `nodes = ${JSON.stringify(members.filter((m) => m !== n.name))}`);
  sub(/^# zone_allow = .*$/m, `zone_allow = ["${NETNS_SUBNET}.0/24"]`);
  text += `\n[elp]\ninterface = "${ip}"\ninterval_ms = ${INTERVAL_MS}\nunreachable_after_ms = ${UNREACHABLE_MS}\n`;
  fs.writeFileSync(n.config, text);
}

async function startDaemon(n: Node): Promise<void> {
  const child = lab.spawn(n.host, process.execPath, [DAEMON_MAIN, 'daemon', '--config', n.config, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  n.child = child;
  n.out = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${n.name}: not ready in 20 s\n${n.out}`)), 20_000);
    const onData = (d: Buffer) => {
      if (n.out.length < 2_000_000) n.out += d.toString();
      if (/"msg":"gvd ready"/.test(n.out)) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(t);
      reject(new Error(`${n.name}: daemon exited (${code ?? sig})\n${n.out}`));
    });
  });
}

async function stopDaemon(n: Node): Promise<void> {
  const c = n.child;
  n.child = null;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

describe.skipIf(SKIP !== null)('three hosts in network namespaces', () => {
  beforeAll(async () => {
    ensureBuilt();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-multihost-'));
    lab = await createNetnsLab(['A', 'B', 'C', 'D']);
    const members = ['a', 'b', 'c'];
    for (const [name, host] of [['a', 'A'], ['b', 'B'], ['c', 'C'], ['d', 'D']] as const) {
      const dir = path.join(tmp, name);
      nodes[name] = { name, host, dir, config: path.join(dir, 'gv.toml'), stateDir: path.join(dir, 'state'), child: null, out: '' };
    }
    // a creates the cluster; b and c join with the printed token; d makes a cluster of the same
    // name with its own key (an outsider).
    const a = await gvJson(['init', '--name', 'a', '--cluster', 'gvtest', '--state-dir', nodes.a!.stateDir, '--config', nodes.a!.config]);
    expect(a.joinToken).toMatch(/^gvjoin1\./);
    for (const name of ['b', 'c']) {
      const j = await gvJson(['init', '--name', name, '--join-token', a.joinToken as string, '--state-dir', nodes[name]!.stateDir, '--config', nodes[name]!.config]);
      expect(j.cluster).toEqual({ name: 'gvtest', keyFile: path.join(nodes[name]!.stateDir, 'cluster.key'), joined: true });
    }
    await gvJson(['init', '--name', 'd', '--cluster', 'gvtest', '--state-dir', nodes.d!.stateDir, '--config', nodes.d!.config]);
    const keyA = fs.readFileSync(path.join(nodes.a!.stateDir, 'cluster.key'));
    expect(fs.readFileSync(path.join(nodes.b!.stateDir, 'cluster.key')).equals(keyA)).toBe(true);
    expect(fs.statSync(path.join(nodes.b!.stateDir, 'cluster.key')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(path.join(nodes.d!.stateDir, 'cluster.key')).equals(keyA)).toBe(false);
    for (const n of Object.values(nodes)) {
      adaptConfig(n, lab.hosts[n.host]!.ip, n.name === 'd' ? ['d'] : members);
      const z = await gvJson(['zone', 'create', 'tier-1', '--quota', '1G', '--nodes', n.name === 'd' ? 'd' : members.join(','), '--config', n.config]);
      expect(z.ok).toBe(true);
    }
    await Promise.all(Object.values(nodes).map((n) => startDaemon(n)));
  }, 120_000);

  afterAll(async () => {
    for (const f of forwards.splice(0)) await f.close().catch(() => undefined);
    await Promise.all(Object.values(nodes).map((n) => stopDaemon(n)));
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  it('every member hears the others, with their addresses, RTT and zone versions', async () => {
    for (const me of ['a', 'b', 'c']) {
      const others = ['a', 'b', 'c'].filter((x) => x !== me);
      const r = await poll(() => nodesOf(nodes[me]!), (s) => others.every((o) => s.peers.some((p) => p.name === o && p.state === 'reachable' && p.rttMs !== null)), 10_000);
      expect(r.ok, JSON.stringify(r.value.peers)).toBe(true);
      for (const o of others) {
        const p = r.value.peers.find((x) => x.name === o)!;
        expect(p.addresses).toEqual([`${lab.hosts[o.toUpperCase()]!.ip}:7386`]);
        expect(p.from.startsWith(`${lab.hosts[o.toUpperCase()]!.ip}:`)).toBe(true);
        expect(p.rttMs!).toBeGreaterThanOrEqual(0);
      }
    }
    // The CLI shows the same through the control socket.
    const list = await gvJson(['node', 'list', '--config', nodes.b!.config]);
    expect(list.peers.map((p: { name: string }) => p.name).sort()).toEqual(['a', 'c']);
    expect(list.self).toMatchObject({ name: 'b' });
    const human = await gv(['node', 'list', '--config', nodes.b!.config]);
    expect(human.stdout).toMatch(/^a\s+[0-9a-f]{12}\s+10\.213\.71\.1:7386\s+.*reachable/m);
  });

  it('a write through NFS on A makes B and C report A\'s new zone version within one second', async () => {
    const a = nodes.a!;
    const before = (await nodesOf(a)).self.zones['tier-1'];
    expect(before, 'A announces a version for tier-1 (journal versions wired into the daemon)').toBeDefined();
    const nfsFwd = await lab.forward('A', 2049);
    const mountFwd = await lab.forward('A', 20048);
    forwards.push(nfsFwd, mountFwd);
    const { nfs, root } = await mountZone(nfsFwd.port, mountFwd.port, 'tier-1');
    try {
      const f = expectOk(await nfs.create(root, 'hello.txt', { mode: 'unchecked', attrs: { mode: 0o644 } }), 'CREATE');
      expectOk(await nfs.write(f.fh!, 0n, Buffer.from('hello from A\n'), STABLE.UNSTABLE), 'WRITE');
      expectOk(await nfs.commit(f.fh!, 0n, 0), 'COMMIT');
    } finally {
      nfs.close();
    }
    const mine = await poll(() => nodesOf(a), (s) => s.self.zones['tier-1'] !== before, 2000);
    expect(mine.ok).toBe(true);
    const v = mine.value.self.zones['tier-1']!;
    expect(BigInt(v)).toBeGreaterThan(BigInt(before!));
    // From the moment A has committed the new version, B and C know it within one second.
    await Promise.all(['b', 'c'].map(async (peer) => {
      const r = await poll(() => nodesOf(nodes[peer]!), (s) => s.peers.find((p) => p.name === 'a')?.zones['tier-1'] === v, 1000);
      expect(r.ok, `${peer}: ${JSON.stringify(r.value.peers.find((p) => p.name === 'a'))}`).toBe(true);
    }));
    // gv status on B: its version of tier-1 and what each member advertises.
    const st = await gvJson(['status', '--config', nodes.b!.config]);
    const zone = (st.zones as { name: string; memberVersions: Record<string, string | null> }[]).find((z) => z.name === 'tier-1')!;
    expect(zone.memberVersions.a).toBe(v);
    expect(Object.keys(zone.memberVersions).sort()).toEqual(['a', 'c']);
  });

  it('ignores the node with another key: never in a peer table, its packets counted as bad_mac', async () => {
    for (const me of ['a', 'b', 'c']) {
      const r = await poll(() => nodesOf(nodes[me]!), (s) => s.packets.bad_mac >= 2, 5000);
      expect(r.ok, JSON.stringify(r.value.packets)).toBe(true);
      expect(r.value.peers.map((p) => p.name)).not.toContain('d');
    }
    const d = await nodesOf(nodes.d!);
    expect(d.peers).toEqual([]);
    expect(d.packets.bad_mac).toBeGreaterThan(0);
  });

  it('a partition makes A unreachable to B and C (and them to A); healing brings everyone back', async () => {
    lab.partition('A');
    try {
      const gone = await Promise.all(['b', 'c'].map((m) => poll(() => nodesOf(nodes[m]!), (s) => s.peers.find((p) => p.name === 'a')?.state === 'unreachable', 5000)));
      for (const g of gone) expect(g.ok).toBe(true);
      // B and C still hear each other.
      expect((await nodesOf(nodes.b!)).peers.find((p) => p.name === 'c')?.state).toBe('reachable');
      const lonely = await poll(() => nodesOf(nodes.a!), (s) => s.peers.filter((p) => p.name !== 'd').every((p) => p.state === 'unreachable'), 5000);
      expect(lonely.ok, JSON.stringify(lonely.value.peers)).toBe(true);
    } finally {
      lab.heal('A');
    }
    for (const me of ['a', 'b', 'c']) {
      const others = ['a', 'b', 'c'].filter((x) => x !== me);
      const back = await poll(() => nodesOf(nodes[me]!), (s) => others.every((o) => s.peers.find((p) => p.name === o)?.state === 'reachable'), 5000);
      expect(back.ok, `${me}: ${JSON.stringify(back.value.peers)}`).toBe(true);
    }
  });
});
