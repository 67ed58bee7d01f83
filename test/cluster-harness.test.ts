/**
 * The multi-host cluster harness (test/harness/cluster.ts) on what the daemon does today: three
 * gvd in network namespaces hear each other over ELP; a pair partition cuts exactly one pair (ping
 * and ELP) and heals; kill -9 and restart of a daemon; NFS write/read on each host's own zone; the
 * switch's byte counters count what flows, per pair. Skipped, with the reason printed, when
 * namespaces cannot be made (not root, no ip netns).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsSkipReason, startCluster, zoneDir, type TestCluster } from './harness/cluster.js';
import { waitFor } from './harness/wait.js';

const SKIP = netnsSkipReason();
if (SKIP) console.warn(`cluster harness tests skipped: ${SKIP}`);

const HOSTS = ['a', 'b', 'c'];
let c: TestCluster;

/** Send `bytes` over TCP from host x to a sink on host y (both inside their namespaces); returns what y counted. */
async function tcpTransfer(x: string, y: string, bytes: number): Promise<number> {
  const ip = c.node(y).ip;
  const sink = c.cluster.lab.spawn(y, process.execPath, ['-e',
    `const s=require('net').createServer((k)=>{let n=0;k.on('data',(d)=>{n+=d.length});k.on('end',()=>{console.log('got '+n);s.close()})});` +
    `s.listen(9999,'${ip}',()=>console.log('ready'));setTimeout(()=>process.exit(3),20000).unref()`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  sink.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await waitFor('sink ready', () => out.includes('ready'), 10_000);
    c.cluster.lab.exec(x, process.execPath, ['-e',
      `const k=require('net').connect(9999,'${ip}',()=>{k.end(Buffer.alloc(${bytes},7))});k.on('error',(e)=>{console.error(e);process.exit(1)})`], 20_000);
    const got = await waitFor('sink count', () => /got (\d+)/.exec(out)?.[1], 10_000);
    return Number(got);
  } finally {
    sink.kill('SIGKILL');
  }
}

describe.skipIf(SKIP !== null)('cluster harness: three hosts, one gvd each', () => {
  beforeAll(async () => {
    c = await startCluster({ hosts: HOSTS });
  }, 120_000);

  afterAll(async () => {
    await c?.stop();
    if (c) expect(fs.existsSync(c.dir)).toBe(false);
  }, 60_000);

  it('every daemon lists the two others as reachable, at their addresses', async () => {
    for (const h of HOSTS) {
      const others = HOSTS.filter((x) => x !== h);
      const peers = await c.waitPeers(h, { reachable: others });
      for (const o of others) {
        // host:port of the other's service (the peer protocol's port once replication is on)
        const addrs = peers.find((p) => p.name === o)?.addresses ?? [];
        expect(addrs.length).toBe(1);
        expect(addrs[0]!.startsWith(`${c.node(o).ip}:`)).toBe(true);
      }
    }
    const human = await c.gv('b', ['node', 'list']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^a\s+[0-9a-f]{12}\s+10\.213\.71\.1:\d+\s+.*reachable/m);
  });

  it('NFS on each host reads back what was written to its own zone, and the bytes are on that host\'s disk', async () => {
    for (const h of HOSTS) {
      const nfs = await c.nfs(h);
      try {
        // A directory per host: once replication runs, the others' files show up in every zone.
        const d = `dir-${h}`;
        const data = randomBytes(300_000 + HOSTS.indexOf(h));
        await nfs.mkdirp(`${d}/sub`);
        await nfs.writeFile(`${d}/sub/own-${h}.bin`, data);
        expect((await nfs.readFile(`${d}/sub/own-${h}.bin`)).equals(data)).toBe(true);
        expect(fs.readFileSync(path.join(zoneDir(c, h, 'tier-1'), d, 'sub', `own-${h}.bin`)).equals(data)).toBe(true);
        await nfs.rename(`${d}/sub/own-${h}.bin`, `${d}/moved-${h}.bin`);
        expect(await nfs.list(d)).toEqual([`moved-${h}.bin`, 'sub']);
        expect(await nfs.hasContent(`${d}/moved-${h}.bin`, data)).toBe(true);
        expect(await nfs.hasContent(`${d}/sub/own-${h}.bin`, data)).toBe(false);
        // Overwrite with a shorter content truncates.
        await nfs.writeFile(`${d}/moved-${h}.bin`, 'short');
        expect((await nfs.readFile(`${d}/moved-${h}.bin`)).toString()).toBe('short');
        await nfs.remove(`${d}/sub`);
        expect(await nfs.list(d)).toEqual([`moved-${h}.bin`]);
        expect(await nfs.stat(`${d}/sub`)).toBeNull();
      } finally {
        nfs.close();
      }
    }
  });

  it('partitionPair(a, c) cuts a–c only (ping and ELP); both still see b; healPair restores', async () => {
    expect(c.ping('a', 'c')).toBe(true);
    c.partitionPair('a', 'c');
    try {
      expect(c.ping('a', 'c')).toBe(false);
      expect(c.ping('c', 'a')).toBe(false);
      expect(c.ping('a', 'b')).toBe(true);
      expect(c.ping('c', 'b')).toBe(true);
      const aPeers = await c.waitPeers('a', { reachable: ['b'], unreachable: ['c'] });
      expect(aPeers.find((p) => p.name === 'c')?.state).toBe('unreachable');
      await c.waitPeers('c', { reachable: ['b'], unreachable: ['a'] });
      // b hears both the whole time.
      await c.waitPeers('b', { reachable: ['a', 'c'] }, 2000);
      // Nothing from a reaches c any more, multicast included.
      const before = c.bytesOnWire('a', 'c');
      await new Promise((r) => setTimeout(r, 1000));
      expect(c.bytesOnWire('a', 'c')).toBe(before);
    } finally {
      c.healPair('a', 'c');
    }
    expect(c.ping('a', 'c')).toBe(true);
    await c.waitPeers('a', { reachable: ['b', 'c'] });
    await c.waitPeers('c', { reachable: ['a', 'b'] });
    // Healing twice is harmless.
    c.healPair('a', 'c');
  });

  it('counts bytes per pair and per port: a TCP transfer a→b shows on a→b, not on a→c', async () => {
    // Whatever the daemons still exchange (replication of the earlier writes) settles first.
    await c.waitQuiet('a', 'b');
    await c.waitQuiet('a', 'c');
    const ab = c.bytesOnWire('a', 'b');
    const ac = c.bytesOnWire('a', 'c');
    const portA = c.portBytes('a');
    const n = 2 * 1024 * 1024;
    expect(await tcpTransfer('a', 'b', n)).toBe(n);
    const sentAB = c.bytesOnWire('a', 'b') - ab;
    const sentAC = c.bytesOnWire('a', 'c') - ac;
    expect(sentAB).toBeGreaterThanOrEqual(n);
    expect(sentAB).toBeLessThan(n * 1.2);
    // a→c carries only ELP announcements meanwhile.
    expect(sentAC).toBeLessThan(64 * 1024);
    expect(c.portBytes('a').fromHost - portA.fromHost).toBeGreaterThanOrEqual(n);
    expect(c.bytesBetween('a', 'b')).toBeGreaterThan(sentAB + ab);
  });

  it('waitContent sees a write on a arrive through NFS on b and c (replication), waitQuiet returns once it is done', async () => {
    const nfs = await c.nfs('a');
    const data = randomBytes(200_000);
    try {
      await nfs.writeFile('from-a.bin', data);
    } finally {
      nfs.close();
    }
    await Promise.all(['b', 'c'].map((h) => c.waitContent(h, 'from-a.bin', data, 15_000)));
    await c.waitQuiet('a', 'b');
    const before = c.bytesBetween('a', 'b');
    await new Promise((r) => setTimeout(r, 500));
    expect(c.bytesBetween('a', 'b') - before).toBeLessThan(64 * 1024);
  });

  it('kill9 stops a daemon dead (peers notice), restart brings it back with its data', async () => {
    const nfs = await c.nfs('b');
    const data = randomBytes(10_000);
    try {
      await nfs.writeFile('before-kill.bin', data);
    } finally {
      nfs.close();
    }
    const pid = c.node('b').pid();
    expect(pid).toBeGreaterThan(0);
    await c.kill9('b');
    expect(c.node('b').running()).toBe(false);
    expect(() => process.kill(pid!, 0)).toThrow();
    await c.waitPeers('a', { reachable: ['c'], unreachable: ['b'] });
    await c.restart('b');
    expect(c.node('b').running()).toBe(true);
    expect(c.node('b').pid()).not.toBe(pid);
    await c.waitPeers('a', { reachable: ['b', 'c'] });
    await c.waitPeers('b', { reachable: ['a', 'c'] });
    const again = await c.nfs('b');
    try {
      expect((await again.readFile('before-kill.bin')).equals(data)).toBe(true);
    } finally {
      again.close();
    }
    const st = await c.gvJson('b', ['status']);
    expect(st.zones.map((z: { name: string }) => z.name)).toContain('tier-1');
  });
});
