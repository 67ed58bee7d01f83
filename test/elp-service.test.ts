import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBeaconHub, type Beacon } from '../src/elp/beacon.js';
import { MulticastBeacon } from '../src/elp/multicast.js';
import { ElpService } from '../src/elp/service.js';
import { VersionRegistry } from '../src/journal/versions.js';

const KEY = randomBytes(32);
const started: ElpService[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
});

function node(beacon: Beacon, name: string, opts: { key?: Buffer; intervalMs?: number; unreachableAfterMs?: number } = {}) {
  const versions = new VersionRegistry();
  versions.hold('tier-1', 0n);
  const id = randomBytes(16).toString('hex');
  const svc = new ElpService(
    { beacon, versions, catalogVersion: () => 3, self: { id, name }, key: opts.key ?? KEY, clusterName: 'home', addresses: () => [`${name}.test:2049`] },
    { intervalMs: opts.intervalMs ?? 100, unreachableAfterMs: opts.unreachableAfterMs ?? 300 },
  );
  started.push(svc);
  return { svc, versions, id };
}

/** Poll `fn` every 10 ms until it returns true, at most `ms`. */
async function until(fn: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return fn();
}

const peerZone = (s: ElpService, name: string) => s.peers().find((p) => p.name === name)?.zones['tier-1'];

describe('ELP service over the in-memory beacon', () => {
  it('nodes find each other; a version bump reaches the others long before the next interval', async () => {
    const hub = new MemoryBeaconHub();
    const a = node(hub.join('A'), 'a', { intervalMs: 60_000, unreachableAfterMs: 180_000 });
    const b = node(hub.join('B'), 'b', { intervalMs: 60_000, unreachableAfterMs: 180_000 });
    await a.svc.start();
    await b.svc.start();
    expect(await until(() => peerZone(b.svc, 'a') === '0' && peerZone(a.svc, 'b') === '0', 2000)).toBe(true);
    a.versions.committed('tier-1', 42n);
    // The interval is a minute: only the change-triggered announcement can deliver this.
    expect(await until(() => peerZone(b.svc, 'a') === '42', 2000)).toBe(true);
    expect(b.svc.peers()[0]).toMatchObject({ name: 'a', id: a.id, state: 'reachable', addresses: ['a.test:2049'], catalogVersion: '3' });
  });

  it('a catalog change is announced without waiting for the interval', async () => {
    const hub = new MemoryBeaconHub();
    let catalog = 3;
    const versions = new VersionRegistry();
    const a = new ElpService(
      { beacon: hub.join('A'), versions, catalogVersion: () => catalog, self: { id: 'a1'.repeat(16), name: 'a' }, key: KEY, clusterName: 'home', addresses: () => [] },
      { intervalMs: 1000, unreachableAfterMs: 180_000 },
    );
    started.push(a);
    const b = node(hub.join('B'), 'b', { intervalMs: 60_000, unreachableAfterMs: 180_000 });
    await a.start();
    await b.svc.start();
    const cat = () => b.svc.peers().find((p) => p.name === 'a')?.catalogVersion;
    expect(await until(() => cat() === '3', 2000)).toBe(true);
    catalog = 4;
    // Checked every quarter interval (250 ms): well before the next periodic announcement.
    expect(await until(() => cat() === '4', 700)).toBe(true);
  });

  it('debounces a burst of bumps into few announcements, the last version always sent', async () => {
    const hub = new MemoryBeaconHub();
    const a = node(hub.join('A'), 'a', { intervalMs: 60_000, unreachableAfterMs: 180_000 });
    const b = node(hub.join('B'), 'b', { intervalMs: 60_000, unreachableAfterMs: 180_000 });
    await a.svc.start();
    await b.svc.start();
    expect(await until(() => peerZone(b.svc, 'a') === '0', 2000)).toBe(true);
    const before = a.svc.announcements;
    for (let i = 1; i <= 200; i++) a.versions.committed('tier-1', BigInt(i));
    expect(await until(() => peerZone(b.svc, 'a') === '200', 2000)).toBe(true);
    // 200 bumps in one tick: one or two announcements (50 ms debounce), not 200.
    expect(a.svc.announcements - before).toBeLessThanOrEqual(3);
  });

  it('marks a silent peer unreachable, brings it back when the link heals, and measures RTT', async () => {
    const hub = new MemoryBeaconHub();
    const a = node(hub.join('A'), 'a');
    const b = node(hub.join('B'), 'b');
    await a.svc.start();
    await b.svc.start();
    expect(await until(() => b.svc.peers()[0]?.rttMs != null, 3000)).toBe(true);
    expect(b.svc.peers()[0]!.rttMs).toBeGreaterThanOrEqual(0);
    hub.link('A', 'B', false);
    expect(await until(() => b.svc.peers()[0]?.state === 'unreachable' && a.svc.peers()[0]?.state === 'unreachable', 3000)).toBe(true);
    hub.link('A', 'B', true);
    expect(await until(() => b.svc.peers()[0]?.state === 'reachable' && a.svc.peers()[0]?.state === 'reachable', 3000)).toBe(true);
  });

  it('ignores a node with another key and counts its packets; replayed packets are counted too', async () => {
    const hub = new MemoryBeaconHub();
    const a = node(hub.join('A'), 'a');
    const rogue = node(hub.join('R'), 'rogue', { key: randomBytes(32) });
    await a.svc.start();
    await rogue.svc.start();
    expect(await until(() => a.svc.packets.bad_mac >= 2, 3000)).toBe(true);
    expect(a.svc.peers()).toEqual([]);
    expect(rogue.svc.peers()).toEqual([]);
    const b = node(hub.join('B'), 'b');
    await b.svc.start();
    expect(await until(() => a.svc.peers().some((p) => p.name === 'b'), 3000)).toBe(true);
    const fromB = hub.sent.filter((s) => s.from === 'B').at(-1)!;
    const replays = a.svc.packets.replay;
    hub.inject('X', fromB.buf);
    expect(await until(() => a.svc.packets.replay === replays + 1, 1000)).toBe(true);
  });
});

describe('multicast beacon on loopback', () => {
  it('delivers ELP packets between two services through multicast-dns, and to a static peer by unicast', async () => {
    // Loopback only (interface 127.0.0.1): nothing leaves this machine. Random ports keep
    // concurrent runs apart.
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const mk = (peers: { address: string; port: number }[] = [], p = port) =>
      new MulticastBeacon({ group: '239.255.71.86', port: p, interface: '127.0.0.1', peers });
    const a = node(mk(), 'a');
    const b = node(mk(), 'b');
    await a.svc.start();
    await b.svc.start();
    expect(await until(() => peerZone(b.svc, 'a') === '0' && peerZone(a.svc, 'b') === '0', 3000)).toBe(true);
    a.versions.committed('tier-1', 7n);
    expect(await until(() => peerZone(b.svc, 'a') === '7', 2000)).toBe(true);
    expect(b.svc.packets.self).toBeGreaterThan(0); // multicast loopback: own packets heard and ignored
    // A third node on another port and group hears nothing by multicast, but gets unicast
    // from a node that lists it as a static peer.
    const port2 = port + 1;
    const c = node(mk([], port2), 'c');
    await c.svc.start();
    const d = node(mk([{ address: '127.0.0.1', port: port2 }], port), 'd');
    await d.svc.start();
    expect(await until(() => peerZone(c.svc, 'd') === '0', 3000)).toBe(true);
    expect(c.svc.peers().map((p) => p.name)).toEqual(['d']);
  });
});
