import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import type { ChangeRow } from '../src/journal/changes.js';
import { certificateOf } from '../src/peer/certificate.js';
import { PeerClient } from '../src/peer/client.js';
import { FrameType, MAX_FRAME, Op, frameHead } from '../src/peer/frame.js';
import { tlsBase } from '../src/peer/tls-options.js';
import { BLOCK_SIZE, MAX_ENTRIES, MAX_JOURNAL_PAGE } from '../src/replication/source.js';
import { vectorOf } from '../src/replication/vector.js';
import { blockPool } from '../src/util/block-pool.js';
import { PeerLab, nodeRows, type LabNode } from './harness/peer-lab.js';
import { waitFor } from './harness/wait.js';

const lab = new PeerLab();
let a: LabNode;
let b: LabNode;
const big = randomBytes(BLOCK_SIZE + 12345);
const small = Buffer.from('hello, replica\n');

const errCode = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    return e instanceof GvError ? e.code : `not a GvError: ${String(e)}`;
  }
  return 'no error';
};

function sha(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

beforeAll(async () => {
  a = lab.node('a');
  b = lab.node('b');
  const src = b.source;
  const idB = b.identity.id;
  const idA = a.identity.id;
  const rows: ChangeRow[] = [];
  for (let i = 1; i <= 1200; i++) {
    rows.push({
      version: BigInt(i), atMs: 1_700_000_000_000 + i, kind: i % 3 === 0 ? 'rename' : 'write', fileid: BigInt(1000 + i),
      path: Buffer.from(`dir/file-${i}.txt`), toPath: i % 3 === 0 ? Buffer.from(`dir/moved-${i}`) : null, type: 'file',
      size: BigInt(i * 7), mtimeNs: i === 5 ? -1_000_000n : 1_700_000_000_123_456_789n + BigInt(i), mode: 0o100644,
      hashes: i % 2 ? Buffer.concat([sha(Buffer.from(String(i))), sha(Buffer.from(`x${i}`))]) : null,
      target: null, origin: i % 2 ? idB : idA, vector: vectorOf([[idB, i], [idA, i % 5]]),
    });
  }
  rows.push({
    version: 1201n, atMs: 1, kind: 'symlink', fileid: 7n, path: Buffer.from([0xff, 0x2f, 0x61]), type: 'symlink',
    target: Buffer.from('../elsewhere'), origin: idB, vector: vectorOf([[idB, 1201]]), size: null, mtimeNs: null, mode: null, hashes: null, toPath: null,
  });
  src.rows = rows;
  src.files.set('small.txt', small);
  src.files.set('big.bin', big);
  src.entryMap.set('small.txt', {
    path: Buffer.from('small.txt'), type: 'file', size: BigInt(small.length), mtimeNs: 1_600_000_000_000_000_001n, mode: 0o100600,
    vector: vectorOf([[idB, 3]]), origin: idB, hashes: sha(small), target: null, linkOf: Buffer.from('other-name.txt'),
  });
  src.entryMap.set('big.bin', {
    path: Buffer.from('big.bin'), type: 'file', size: BigInt(big.length), mtimeNs: 5n, mode: 0o100644,
    vector: vectorOf([[idB, 9], [idA, 2]]), origin: idA, hashes: Buffer.concat([sha(big.subarray(0, BLOCK_SIZE)), sha(big.subarray(BLOCK_SIZE))]), target: null,
  });
  src.entryMap.set('link', {
    path: Buffer.from('link'), type: 'symlink', size: 4n, mtimeNs: 5n, mode: 0o120777, vector: vectorOf([[idB, 1]]), origin: idB, hashes: null,
    target: Buffer.from('dest'),
  });
  src.snapshot = {
    version: 42,
    zones: [{ name: 'z1', quotaBytes: 2 ** 40, members: ['a', 'b'], createdMs: 1, updatedMs: 2, updatedBy: idB, consistency: 'available' }],
    deleted: [{ name: 'old', deletedMs: 3, deletedBy: idA }],
    nodes: [{ name: 'a', nodeId: idA, fingerprint: null, addedMs: 4 }],
  };
  await lab.serve(b);
  await lab.serve(a);
});

afterAll(() => lab.cleanup());

describe('peer protocol between two nodes with the same cluster key', () => {
  it('round-trips every op with real data, and pins both certificates', async () => {
    const pool = lab.pool(a);
    const s = pool.source(b.identity.id)!;
    expect(s).not.toBeNull();
    expect(pool.source('0123456789abcdef0123456789abcdef')).toBeNull();

    const p1 = await s.journal('z1', 0n, MAX_JOURNAL_PAGE);
    expect(p1.version).toBe(1201n);
    expect(p1.rows.length).toBe(MAX_JOURNAL_PAGE);
    expect(p1.rows).toEqual(b.source.rows.slice(0, MAX_JOURNAL_PAGE));
    const p2 = await s.journal('z1', 1000n, MAX_JOURNAL_PAGE);
    expect(p2.rows).toEqual(b.source.rows.slice(1000));
    expect(p2.rows[200]!.path).toEqual(Buffer.from([0xff, 0x2f, 0x61]));
    expect(p1.rows[4]!.mtimeNs).toBe(-1_000_000n);

    const es = await s.entries('z1', [Buffer.from('small.txt'), Buffer.from('nothing'), Buffer.from('big.bin'), Buffer.from('link')], 65536);
    expect(es[0]).toEqual({ ...b.source.entryMap.get('small.txt'), data: small });
    expect(es[1]).toBeNull();
    expect(es[2]).toEqual({ ...b.source.entryMap.get('big.bin'), linkOf: null });
    expect(es[2]!.data).toBeUndefined();
    expect(es[3]).toEqual({ ...b.source.entryMap.get('link'), linkOf: null });
    const noInline = await s.entries('z1', [Buffer.from('small.txt')], 4);
    expect(noInline[0]!.data).toBeUndefined();

    const blk = await s.block('z1', Buffer.from('big.bin'), 0n, BLOCK_SIZE);
    expect(blk.length).toBe(BLOCK_SIZE);
    expect(blk.equals(big.subarray(0, BLOCK_SIZE))).toBe(true);
    const tail = await s.block('z1', Buffer.from('big.bin'), BigInt(BLOCK_SIZE), BLOCK_SIZE);
    expect(tail.equals(big.subarray(BLOCK_SIZE))).toBe(true);
    expect((await s.block('z1', Buffer.from('big.bin'), BigInt(big.length), 10)).length).toBe(0);

    expect(await s.catalog()).toEqual(b.source.snapshot);

    // list: the whole zone in path order, page by page, small files inline, owners carried.
    b.source.entryMap.set('big.bin', { ...b.source.entryMap.get('big.bin')!, uid: 1234, gid: 0xfffffffe });
    const l1 = await s.list('z1', Buffer.alloc(0), null, 2, 65536);
    expect(l1.done).toBe(false);
    expect(l1.version).toBe(1201n);
    expect(l1.entries.map((e) => e.path.toString())).toEqual(['big.bin', 'link']);
    expect(l1.entries[0]).toEqual({ ...b.source.entryMap.get('big.bin'), linkOf: null });
    expect(l1.next).toEqual(Buffer.from('link'));
    const l2 = await s.list('z1', Buffer.alloc(0), l1.next, 2, 65536);
    expect(l2.done).toBe(true);
    expect(l2.entries).toEqual([{ ...b.source.entryMap.get('small.txt'), data: small }]);
    await expect(s.list('z1', Buffer.alloc(0), null, 100_000, 0)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(s.list('nope', Buffer.alloc(0), null, 1, 0)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(b.source.callers.every((c) => c.nodeId === a.identity.id && c.nodeName === 'a')).toBe(true);

    // Pinned on both sides, by node id, with the other's certificate fingerprint.
    expect(nodeRows(a)).toContainEqual({ name: 'b', node_id: b.identity.id, fingerprint: b.cert.fingerprint });
    expect(nodeRows(b)).toContainEqual({ name: 'a', node_id: a.identity.id, fingerprint: a.cert.fingerprint });
    const t = pool.traffic(b.identity.id);
    expect(t.bytesIn).toBeGreaterThan(big.length);
    expect(t.bytesOut).toBeGreaterThan(0);
    expect(t.bytesOut).toBeLessThan(64 * 1024);
  });

  it('keeps error codes across the wire, and checks limits on both sides', async () => {
    const s = lab.pool(a).source(b.identity.id)!;
    expect(await errCode(s.journal('nope', 0n, 10))).toBe('ENOENT');
    expect(await errCode(s.block('z1', Buffer.from('missing'), 0n, 10))).toBe('ENOENT');
    expect(await errCode(s.block('z1', Buffer.from('bad-arg'), 0n, 10))).toBe('EINVAL');
    expect(await errCode(s.block('z1', Buffer.from('crash'), 0n, 10))).toBe('EIO');
    expect(await errCode(s.journal('z1', 0n, MAX_JOURNAL_PAGE + 1))).toBe('EINVAL');
    expect(await errCode(s.block('z1', Buffer.from('big.bin'), 0n, BLOCK_SIZE + 1))).toBe('EINVAL');
    expect(await errCode(s.entries('z1', Array.from({ length: MAX_ENTRIES + 1 }, () => Buffer.from('x')), 0))).toBe('EINVAL');
    const e = await s.journal('nope', 0n, 1).catch((x: GvError) => x);
    expect((e as GvError).message).toMatch(/no zone nope/);
    // The connection survived every error.
    expect((await s.journal('z1', 1199n, 5)).rows.length).toBe(2);
  });

  it('answers EINVAL for a request over a limit sent by a client that skips its own checks', async () => {
    const pool = lab.pool(a);
    const s = pool.source(b.identity.id)!;
    await s.catalog();
    // A raw request with limit 5000 through the open connection.
    const client = (pool as unknown as { peers: Map<string, { client: { request: (op: number, h: Buffer, d: () => unknown) => Promise<unknown> } }> })
      .peers.get(b.identity.id)!.client;
    const { XdrWriter } = await import('../src/xdr/writer.js');
    const h = new XdrWriter().string('z1').u64(0n).u32(5000).bytes();
    expect(await errCode(client.request(Op.JOURNAL, h, () => null))).toBe('EINVAL');
    expect((await s.catalog()).version).toBe(42);
  });

  it('serves more than 64 concurrent requests', async () => {
    const s = lab.pool(a).source(b.identity.id)!;
    const calls = Array.from({ length: 200 }, (_, i) => s.block('z1', Buffer.from('big.bin'), BigInt(i * 1000), 1000));
    const res = await Promise.all(calls);
    res.forEach((r, i) => expect(r.equals(big.subarray(i * 1000, i * 1000 + 1000))).toBe(true));
  });

  it('answers EAGAIN past 64 requests on the wire from one connection, and keeps serving', async () => {
    const s = lab.pool(a, { maxInFlight: 200 }).source(b.identity.id)!;
    await s.catalog();
    b.source.blockDelayMs = 500;
    try {
      const settled = await Promise.allSettled(Array.from({ length: 100 }, () => s.block('z1', Buffer.from('small.txt'), 0n, 5)));
      const ok = settled.filter((r) => r.status === 'fulfilled').length;
      const again = settled.filter((r) => r.status === 'rejected' && (r.reason as GvError).code === 'EAGAIN').length;
      expect(ok).toBe(64);
      expect(again).toBe(36);
    } finally {
      b.source.blockDelayMs = 0;
    }
    expect((await s.block('z1', Buffer.from('small.txt'), 0n, 5)).toString()).toBe('hello');
  });

  it('recycles block buffers on both ends without ever handing out bytes still in use', async () => {
    // Sender and receiver share this process's block pool, so a buffer given back too early by
    // either side (the server before TLS took it, the client while a caller holds it) would show
    // up as another block's bytes here.
    const files = Array.from({ length: 6 }, () => randomBytes(BLOCK_SIZE));
    files.forEach((f, k) => b.source.files.set(`pool-${k}.bin`, f));
    b.source.pooled = true;
    try {
      const s = lab.pool(a).source(b.identity.id)!;
      let next = 0;
      let checked = 0;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < 240) {
          const k = next++ % files.length;
          const got = await s.block('z1', Buffer.from(`pool-${k}.bin`), 0n, BLOCK_SIZE);
          // Let other frames arrive and be decoded while this one is held.
          await new Promise((r) => setImmediate(r));
          expect(got.equals(files[k]!)).toBe(true);
          checked++;
          s.recycle!(got);
        }
      }));
      expect(checked).toBe(240);
      expect(blockPool.idle).toBeGreaterThan(0);
    } finally {
      b.source.pooled = false;
    }
  });

  it('prints the throughput of 1 MiB blocks with 4 in flight', async () => {
    const s = lab.pool(a).source(b.identity.id)!;
    await s.block('z1', Buffer.from('big.bin'), 0n, BLOCK_SIZE);
    const n = 200;
    const t0 = process.hrtime.bigint();
    let next = 0;
    let bytes = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < n) {
        next++;
        const got = await s.block('z1', Buffer.from('big.bin'), 0n, BLOCK_SIZE);
        bytes += got.length;
      }
    }));
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    expect(bytes).toBe(n * BLOCK_SIZE);
    console.log(`peer throughput: ${n} x 1 MiB blocks, 4 in flight: ${(bytes / 2 ** 20 / sec).toFixed(0)} MiB/s over loopback TLS`);
  });
});

describe('peer authentication', () => {
  it('gives a node with the wrong cluster key nothing, and pins nothing', async () => {
    const evil = lab.node('evil');
    const pool = lab.pool(evil, { clusterKey: randomBytes(32) });
    const before = nodeRows(b);
    expect(await errCode(pool.source(b.identity.id)!.catalog())).toBe('EACCES');
    expect(pool.traffic(b.identity.id).bytesIn).toBe(0);
    expect(nodeRows(b)).toEqual(before);
    expect(nodeRows(b).some((r) => r.node_id === evil.identity.id)).toBe(false);
    expect(nodeRows(evil).some((r) => r.node_id === b.identity.id)).toBe(false);
    expect(b.logs.some((l) => l.msg === 'peer refused: cluster key proof failed')).toBe(true);
  });

  it('counts zero application bytes for a raw TLS client sending a forged HELLO', async () => {
    const evil = lab.node('evil2');
    const sock = tls.connect({ ...tlsBase(evil.cert.keyPem, evil.cert.pem), host: '127.0.0.1', port: b.port });
    let got = 0;
    sock.on('data', (d: Buffer) => (got += d.length));
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', reject);
    });
    const { encodeHello } = await import('../src/peer/hello.js');
    const hello = encodeHello({ version: 1, nodeId: evil.identity.id, nodeName: 'evil2', proof: randomBytes(32) });
    sock.write(frameHead(FrameType.HELLO, Op.NONE, 0, hello, 0));
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 5000);
      sock.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
    expect(sock.destroyed).toBe(true);
    expect(got).toBe(0);
    sock.destroy();
  });

  it('refuses a pinned node presenting another certificate, in both directions', async () => {
    const c = lab.node('c');
    await lab.serve(c);
    const poolC = lab.pool(c);
    expect((await poolC.source(b.identity.id)!.catalog()).version).toBe(42); // pins c at b, b at c
    expect(nodeRows(b)).toContainEqual({ name: 'c', node_id: c.identity.id, fingerprint: c.cert.fingerprint });
    // c comes back with another key (same node id): b refuses it as a client ...
    const otherKey = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const pinned = c.cert.fingerprint;
    const forged = { ...certificateOf(otherKey), keyPem: otherKey };
    const poolForged = lab.pool(c, { keyPem: forged.keyPem, certPem: forged.pem });
    expect(await errCode(poolForged.source(b.identity.id)!.catalog())).toBe('EACCES');
    expect(poolForged.traffic(b.identity.id).bytesIn).toBe(0);
    expect(b.logs.some((l) => l.msg === 'peer refused: certificate differs from the pinned one' && l.obj.id === c.identity.id)).toBe(true);
    // ... and as a server: b's client refuses it.
    await c.server!.close();
    const port = c.port;
    c.cert = forged;
    await lab.serve(c, port);
    const poolB = lab.pool(b);
    expect(await errCode(poolB.source(c.identity.id)!.catalog())).toBe('EACCES');
    expect(c.source.callers.length).toBe(0);
    expect(b.logs.filter((l) => l.msg === 'peer refused: certificate differs from the pinned one' && l.obj.id === c.identity.id).length).toBe(2);
    expect(nodeRows(b).find((r) => r.name === 'c')!.fingerprint).toBe(pinned);
    expect(pinned).not.toBe(forged.fingerprint);
  });

  it('refuses a HELLO claiming the server\'s own node id, and a server that is not the node asked for', async () => {
    const twin = lab.node('twin');
    const self = {
      nodeId: b.identity.id, nodeName: 'twin', clusterKey: lab.clusterKey, pins: twin.pins, log: twin.log,
      fingerprint: Buffer.from(twin.cert.fingerprint, 'hex'),
    };
    const opts = {
      keyPem: twin.cert.keyPem, certPem: twin.cert.pem, self, log: twin.log, requestTimeoutMs: 5000, maxInFlight: 8,
      pingIntervalMs: 15_000, idleCloseMs: 60_000,
    };
    expect(await errCode(PeerClient.connect(`127.0.0.1:${b.port}`, null, opts))).toBe('EACCES');
    expect(b.logs.some((l) => /claims this node's own id/.test(l.msg))).toBe(true);
    // a asks for b's id at a's own address: a answers as a, so the client refuses.
    const wrong = lab.pool(b, { addressesOf: () => [`127.0.0.1:${a.port}`] });
    expect(await errCode(wrong.source('0123456789abcdef0123456789abcdef')!.catalog())).toBe('EACCES');
  });
});

describe('peer robustness', () => {
  async function rawTls(port: number): Promise<{ sock: tls.TLSSocket; closed: Promise<number> }> {
    const evil = lab.node(`raw${Math.random().toString(36).slice(2, 8)}`);
    const sock = tls.connect({ ...tlsBase(evil.cert.keyPem, evil.cert.pem), host: '127.0.0.1', port });
    let got = 0;
    sock.on('data', (d: Buffer) => (got += d.length));
    sock.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', resolve);
      sock.once('error', reject);
    });
    const closed = new Promise<number>((resolve) => {
      const t = setTimeout(() => resolve(-1), 8000);
      sock.once('close', () => {
        clearTimeout(t);
        resolve(got);
      });
    });
    return { sock, closed };
  }

  it('closes on an oversized frame, on garbage, and on a slowloris before HELLO; still serves others', async () => {
    const big1 = await rawTls(b.port);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_FRAME + 1);
    big1.sock.write(head);
    expect(await big1.closed).toBe(0);

    const garbage = await rawTls(b.port);
    garbage.sock.write(randomBytes(5000));
    expect(await garbage.closed).toBe(0);

    // Slowloris: a plausible HELLO frame announced, then one byte every 200 ms.
    const slow = await rawTls(b.port);
    slow.sock.write(frameHead(FrameType.HELLO, Op.NONE, 0, Buffer.alloc(0), 200).subarray(0, 8));
    const dribble = setInterval(() => slow.sock.write(Buffer.from([0])), 200);
    const got = await slow.closed;
    clearInterval(dribble);
    expect(got).toBe(0);
    expect(b.logs.some((l) => /no HELLO in time/.test(l.msg))).toBe(true);

    // TLS without a client certificate: closed, nothing said.
    const anon = tls.connect({ host: '127.0.0.1', port: b.port, minVersion: 'TLSv1.3', rejectUnauthorized: false });
    let anonGot = 0;
    anon.on('data', (d: Buffer) => (anonGot += d.length));
    anon.on('error', () => {});
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 8000);
      anon.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
    expect(anon.destroyed).toBe(true);
    expect(anonGot).toBe(0);

    const plain = net.connect(b.port, '127.0.0.1');
    plain.on('error', () => {});
    plain.write(randomBytes(3000));
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 8000);
      plain.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
    expect(plain.destroyed).toBe(true);
    plain.destroy();

    expect((await lab.pool(a).source(b.identity.id)!.catalog()).version).toBe(42);
    expect(b.logs.some((l) => /over 4096 bytes before HELLO|frame length .* exceeds/.test(l.msg))).toBe(true);
  });

  it('fails callers (no hang) when the server closes with requests in flight, and reconnects after a restart', async () => {
    const pool = lab.pool(a, { requestTimeoutMs: 20_000 });
    const s = pool.source(b.identity.id)!;
    await s.catalog();
    b.source.blockDelayMs = 2000;
    const calls = Array.from({ length: 10 }, () => s.block('z1', Buffer.from('big.bin'), 0n, BLOCK_SIZE));
    await waitFor('requests inside the source', () => b.source.blocksActive === 10, 5000);
    const port = b.port;
    await b.server!.close();
    const codes = await Promise.all(calls.map(errCode));
    expect(codes).toEqual(Array(10).fill('EIO'));
    b.source.blockDelayMs = 0;
    expect(await errCode(s.catalog())).toBe('EIO'); // nobody listening
    await lab.serve(b, port);
    const snap = await waitFor('reconnect', async () => s.catalog().catch(() => undefined), 15_000, 100);
    expect(snap.version).toBe(42);
    expect(pool.connected(b.identity.id)).toBe(true);
  });

  it('times out a request the peer does not answer', async () => {
    const s = lab.pool(a, { requestTimeoutMs: 300 }).source(b.identity.id)!;
    b.source.blockDelayMs = 1000;
    try {
      const e = await s.block('z1', Buffer.from('small.txt'), 0n, 5).catch((x: GvError) => x);
      expect((e as GvError).code).toBe('EIO');
      expect((e as GvError).data.timeout).toBe(true);
    } finally {
      b.source.blockDelayMs = 0;
    }
    await new Promise((r) => setTimeout(r, 800));
    expect((await s.block('z1', Buffer.from('small.txt'), 0n, 5)).toString()).toBe('hello');
  });
});
