import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeMessage, type ElpMessage } from '../src/elp/packet.js';
import { ElpReceiver } from '../src/elp/receiver.js';
import { PeerTable } from '../src/elp/peers.js';

const KEY = randomBytes(32);
const A = 'aa'.repeat(16);
const B = 'bb'.repeat(16);
const msg = (nodeId: string, zones: [string, bigint][] = [['tier-1', 1n]]): ElpMessage => ({
  nodeId, nodeName: nodeId === A ? 'a' : 'b', addresses: ['10.1.1.1:2049'], catalogVersion: 1n, zones: new Map(zones), echoes: [],
});

function setup(now = { t: 1_700_000_000_000 }) {
  const rx = new ElpReceiver({ key: KEY, clusterName: 'home', selfId: B, now: () => now.t, windowMs: 30_000 });
  const enc = (m: ElpMessage, seq: bigint, o: { key?: Buffer; cluster?: string; ts?: number; max?: number } = {}) =>
    encodeMessage(m, { key: o.key ?? KEY, clusterName: o.cluster ?? 'home', seq, timestampMs: o.ts ?? now.t, nonce: () => randomBytes(16), maxPacketBytes: o.max });
  return { rx, enc, now };
}

describe('ELP receiver', () => {
  it('takes an authentic announcement once; a replay of the same bytes is dropped as replay', () => {
    const { rx, enc } = setup();
    const [p] = enc(msg(A), 5n);
    const first = rx.accept(p!);
    expect(first.result).toBe('ok');
    expect(first.message?.message.zones.get('tier-1')).toBe(1n);
    expect(rx.accept(p!)).toEqual({ result: 'replay' });
  });

  it('drops an older or equal sequence from the same node (fresh nonce) as replay; a newer one is taken', () => {
    const { rx, enc } = setup();
    expect(rx.accept(enc(msg(A), 10n)[0]!).result).toBe('ok');
    expect(rx.accept(enc(msg(A), 10n)[0]!).result).toBe('replay');
    expect(rx.accept(enc(msg(A), 9n)[0]!).result).toBe('replay');
    expect(rx.accept(enc(msg(A), 11n)[0]!).message?.seq).toBe(11n);
  });

  it('drops forged (other key), altered, foreign-cluster, stale, own and malformed packets', () => {
    const { rx, enc, now } = setup();
    expect(rx.accept(enc(msg(A), 1n, { key: randomBytes(32) })[0]!).result).toBe('bad_mac');
    const altered = Buffer.from(enc(msg(A), 2n)[0]!);
    altered[altered.length - 40]! ^= 0x01; // inside the body
    expect(rx.accept(altered).result).toBe('bad_mac');
    expect(rx.accept(enc(msg(A), 3n, { cluster: 'work' })[0]!).result).toBe('other_cluster');
    expect(rx.accept(enc(msg(A), 4n, { ts: now.t - 31_000 })[0]!).result).toBe('stale');
    expect(rx.accept(enc(msg(A), 5n, { ts: now.t + 31_000 })[0]!).result).toBe('stale');
    expect(rx.accept(enc(msg(B), 6n)[0]!).result).toBe('self');
    expect(rx.accept(Buffer.from('not an elp packet')).result).toBe('malformed');
    // Everything above left no trace: the next real packet is taken.
    expect(rx.accept(enc(msg(A), 7n)[0]!).result).toBe('ok');
  });

  it('reassembles parts in any order; a duplicate part is a replay; memory for partial ones is bounded', () => {
    const now = { t: 1_700_000_000_000 };
    const rx = new ElpReceiver({ key: KEY, clusterName: 'home', selfId: B, now: () => now.t, maxPending: 4, maxPendingBytes: 20_000 });
    const many: [string, bigint][] = Array.from({ length: 200 }, (_, i) => [`zone-${i}`, BigInt(i)]);
    const parts = encodeMessage(msg(A, many), { key: KEY, clusterName: 'home', seq: 100n, timestampMs: now.t, nonce: () => randomBytes(16), maxPacketBytes: 400 });
    expect(parts.length).toBeGreaterThan(3);
    const order = [...parts.keys()].reverse();
    let done: ReturnType<ElpReceiver['accept']> | null = null;
    for (const [i, idx] of order.entries()) {
      const r = rx.accept(parts[idx]!);
      expect(r.result).toBe('ok');
      if (i === 0) expect(rx.accept(parts[idx]!).result).toBe('replay');
      if (r.message) done = r;
    }
    expect(done?.message?.message.zones.size).toBe(200);
    expect(rx.pendingCount).toBe(0);
    // 10 incomplete announcements from 10 "nodes": only the newest 4 are kept, bytes bounded.
    for (let n = 0; n < 10; n++) {
      const id = n.toString(16).padStart(2, '0').repeat(16);
      const ps = encodeMessage(msg(id, many), { key: KEY, clusterName: 'home', seq: 1n, timestampMs: now.t, nonce: () => randomBytes(16), maxPacketBytes: 400 });
      rx.accept(ps[0]!);
    }
    expect(rx.pendingCount).toBeLessThanOrEqual(4);
    expect(rx.pendingByteCount).toBeLessThanOrEqual(20_000);
  });
});

describe('peer table', () => {
  it('marks a peer unreachable after the configured time and reachable again when heard', () => {
    const t = new PeerTable(300);
    const first = t.heard(msg(A), 1n, '10.1.1.1:5386', 1000, 0);
    expect(first.change).toMatchObject({ isNew: true, state: 'reachable' });
    expect(first.versionsMoved).toBe(true);
    expect(t.heard(msg(A), 2n, '10.1.1.1:5386', 1100, 100).versionsMoved).toBe(false);
    expect(t.heard(msg(A, [['tier-1', 2n]]), 3n, '10.1.1.1:5386', 1200, 200).versionsMoved).toBe(true);
    expect(t.expire(400)).toEqual([]);
    expect(t.expire(501)).toEqual([{ id: A, name: 'a', state: 'unreachable', isNew: false }]);
    expect(t.list(600)[0]).toMatchObject({ state: 'unreachable', ageMs: 400, zones: { 'tier-1': '2' } });
    expect(t.heard(msg(A), 4n, '10.1.1.1:5386', 1800, 800).change).toMatchObject({ state: 'reachable', isNew: false });
    t.rtt(A, 1.23456);
    expect(t.list(800)[0]!.rttMs).toBe(1.235);
  });
});
