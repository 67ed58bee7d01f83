import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createIdentity } from '../src/catalog/identity.js';
import { GvError } from '../src/errors.js';
import { GvDatabase } from '../src/journal/db.js';
import { CERT_FILE } from '../src/peer/certificate.js';
import { startPeerService, type PeerService } from '../src/peer/daemon.js';
import { FrameType, MAX_FRAME, Op } from '../src/peer/frame.js';
import { FrameSocket } from '../src/peer/frame-socket.js';
import { serverHandshake } from '../src/peer/handshake.js';
import { tlsBase } from '../src/peer/tls-options.js';
import { MemorySource, PeerLab, type LabNode } from './harness/peer-lab.js';
import { waitFor } from './harness/wait.js';

const lab = new PeerLab();
const closers: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await lab.cleanup();
});

const errCode = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    return e instanceof GvError ? e.code : `not a GvError: ${String(e)}`;
  }
  return 'no error';
};

/** A TCP relay to `port` that can be frozen (bytes held, nothing forwarded: a dead peer). */
async function relay(port: number): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  let frozen = false;
  const socks = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const out = net.connect(port, '127.0.0.1');
    socks.add(inbound).add(out);
    inbound.on('data', (d) => !frozen && out.write(d));
    out.on('data', (d) => !frozen && inbound.write(d));
    const end = () => {
      inbound.destroy();
      out.destroy();
    };
    inbound.on('error', end).on('close', end);
    out.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => (frozen = true),
    close: () => new Promise<void>((r) => {
      for (const s of socks) s.destroy();
      server.close(() => r());
    }),
  };
}

function served(name: string): Promise<LabNode> {
  const n = lab.node(name);
  n.source.snapshot = { version: 7, zones: [], deleted: [], nodes: [] };
  n.source.files.set('f', randomBytes(1000));
  return lab.serve(n).then(() => n);
}

describe('PeerPool connections', () => {
  it('tries addresses in order and counts traffic per peer', async () => {
    const a = lab.node('a');
    const b = await served('b');
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadPort = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const pool = lab.pool(a, { addressesOf: (id) => (id === b.identity.id ? [`127.0.0.1:${deadPort}`, `127.0.0.1:${b.port}`] : []) });
    const s = pool.source(b.identity.id)!;
    expect((await s.catalog()).version).toBe(7);
    const t1 = pool.traffic(b.identity.id);
    const got = await s.block('z1', Buffer.from('f'), 0n, 1000);
    expect(got.equals(b.source.files.get('f')!)).toBe(true);
    const t2 = pool.traffic(b.identity.id);
    expect(t2.bytesIn - t1.bytesIn).toBe(4 + 12 + 1000); // one response frame
    expect(t2.bytesOut - t1.bytesOut).toBeGreaterThan(16);
    expect(pool.traffic('ff'.repeat(16))).toEqual({ bytesIn: 0, bytesOut: 0 });
  });

  it('finds a dead peer by its missing pongs and fails the calls waiting on it', async () => {
    const a = lab.node('a2');
    const b = await served('b2');
    const r = await relay(b.port);
    closers.push(() => r.close());
    const pool = lab.pool(a, { addressesOf: () => [`127.0.0.1:${r.port}`], pingIntervalMs: 200, requestTimeoutMs: 30_000 });
    const s = pool.source(b.identity.id)!;
    expect((await s.catalog()).version).toBe(7);
    b.source.blockDelayMs = 300;
    const call = s.block('z1', Buffer.from('f'), 0n, 10).catch((e: GvError) => e);
    r.freeze();
    const e = await call;
    b.source.blockDelayMs = 0;
    expect(e).toBeInstanceOf(GvError);
    expect((e as GvError).code).toBe('EIO');
    expect((e as GvError).message).toMatch(/stopped answering pings/);
    expect(pool.connected(b.identity.id)).toBe(false);
  });

  it('closes an idle connection and opens a new one on the next call; backs off after a failure', async () => {
    const a = lab.node('a3');
    const b = await served('b3');
    const pool = lab.pool(a, { idleCloseMs: 200, pingIntervalMs: 100 });
    const s = pool.source(b.identity.id)!;
    await s.catalog();
    expect(pool.connected(b.identity.id)).toBe(true);
    await waitFor('idle close', () => !pool.connected(b.identity.id), 5000);
    await waitFor('server side closed', () => b.server!.connections === 0, 5000);
    expect((await s.catalog()).version).toBe(7);
    expect(pool.connected(b.identity.id)).toBe(true);
    // Server gone: the first call fails to connect, the next within the backoff fails at once.
    const port = b.port;
    await b.server!.close();
    await waitFor('connection dropped', () => !pool.connected(b.identity.id), 5000);
    expect(await errCode(s.catalog())).toBe('EIO');
    const e = await s.catalog().catch((x: GvError) => x);
    expect((e as GvError).data.backoff).toBe(true);
    await lab.serve(b, port);
    expect((await waitFor('back', () => s.catalog().catch(() => undefined), 10_000, 50)).version).toBe(7);
  });
});

describe('a peer that answers garbage', () => {
  it('fails the call with PROTOCOL, drops the connection, and the next call reconnects', async () => {
    const a = lab.node('a4');
    const m = lab.node('m4');
    let mode: 'truncated' | 'wrong-op' | 'ok' = 'truncated';
    const self = {
      nodeId: m.identity.id, nodeName: 'm4', clusterKey: lab.clusterKey, pins: m.pins, log: m.log,
      fingerprint: Buffer.from(m.cert.fingerprint, 'hex'),
    };
    let accepted = 0;
    const server = tls.createServer({ ...tlsBase(m.cert.keyPem, m.cert.pem), requestCert: true }, (sock) => {
      accepted++;
      const fs = new FrameSocket(sock, MAX_FRAME, m.log);
      void serverHandshake(fs, self).then((peer) => {
        if (!peer) return;
        fs.onFrame = (f) => {
          if (mode === 'truncated') fs.send(FrameType.RESPONSE, f.op, f.id, Buffer.from([0, 0, 0]));
          else if (mode === 'wrong-op') fs.send(FrameType.RESPONSE, Op.BLOCK, f.id, Buffer.alloc(0));
          else fs.send(FrameType.RESPONSE, f.op, f.id, Buffer.alloc(0), [Buffer.from('{"version":3,"zones":[],"deleted":[],"nodes":[]}')]);
        };
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    const pool = lab.pool(a, { addressesOf: () => [`127.0.0.1:${port}`] });
    const s = pool.source(m.identity.id)!;
    expect(await errCode(s.journal('z1', 0n, 10))).toBe('PROTOCOL');
    expect(pool.connected(m.identity.id)).toBe(false);
    mode = 'wrong-op';
    expect(await errCode(s.catalog())).toBe('EIO');
    mode = 'ok';
    expect((await s.catalog()).version).toBe(3);
    expect(accepted).toBe(3);
    pool.close();
  });
});

describe('startPeerService', () => {
  it('creates the certificate, serves, and keeps its fingerprint and pins across restarts', async () => {
    const key = randomBytes(32);
    const dirs = ['x', 'y'].map((n) => path.join(lab.root, `svc-${n}`));
    createIdentity(dirs[0]!, 'x');
    const dbs = dirs.map((d) => GvDatabase.open(d));
    closers.push(() => dbs.forEach((d) => d.close()));
    const ports = new Map<string, number>();
    const start = async (i: number, port = 0): Promise<PeerService> => {
      const source = new MemorySource();
      source.snapshot = { version: 100 + i, zones: [], deleted: [], nodes: [] };
      const svc = await startPeerService({
        stateDir: dirs[i]!, nodeName: i ? 'y' : 'x', clusterKey: key, db: dbs[i]!, source, listen: '127.0.0.1', port,
        addressesOf: (id) => (ports.has(id) ? [`127.0.0.1:${ports.get(id)}`] : []),
      });
      ports.set(svc.identity.id, svc.port);
      closers.push(() => svc.close());
      return svc;
    };
    const x = await start(0);
    const y = await start(1); // no identity yet: created
    expect(fs.existsSync(path.join(dirs[1]!, CERT_FILE))).toBe(true);
    expect(x.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect((await x.pool.source(y.identity.id)!.catalog()).version).toBe(101);
    expect((await y.pool.source(x.identity.id)!.catalog()).version).toBe(100);
    const pinned = dbs[0]!.prepare('SELECT fingerprint FROM catalog_nodes WHERE node_id = ?').pluck(true).get(y.identity.id);
    expect(pinned).toBe(y.fingerprint);
    await y.close();
    const y2 = await start(1, y.port);
    expect(y2.fingerprint).toBe(y.fingerprint);
    expect(y2.identity.id).toBe(y.identity.id);
    expect((await waitFor('y back', () => x.pool.source(y.identity.id)!.catalog().catch(() => undefined), 10_000, 50)).version).toBe(101);
  });
});
