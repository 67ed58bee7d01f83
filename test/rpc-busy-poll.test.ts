/**
 * Busy polling (src/rpc/busy-poll.ts): after a reply, with nothing in flight, the server reads the
 * connection itself. Each case makes the poll's outcome deterministic: with maxInFlight 1 the
 * server stops reading while a call runs, so bytes the client sends meanwhile wait in the kernel
 * until the reply is written, and the poll that follows the reply is what finds them.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeCall } from '../src/rpc/message.js';
import { RpcServer, type ProcResult, type RpcProgram } from '../src/rpc/server.js';
import { BufferPool } from '../src/util/buffer-pool.js';
import { XdrWriter } from '../src/xdr/writer.js';

const PROG = 0x20000456;

const digest32 = (b: Uint8Array): number => createHash('sha256').update(b).digest().readUInt32BE(0);

/**
 * proc 1: add one (synchronous); proc 2: wait for the test to release it, then add one;
 * proc 3: an opaque argument, answered with the first 32 bits of its SHA-256 (synchronous).
 */
function program(gates: (() => void)[], started: () => void): RpcProgram {
  return {
    prog: PROG,
    low: 1,
    high: 1,
    handle(call): ProcResult | Promise<ProcResult> {
      if (call.proc === 3) return new XdrWriter().u32(digest32(call.args.opaque(1 << 20))).bytes();
      const v = call.args.u32();
      const out = new XdrWriter().u32(v + 1).bytes();
      if (call.proc === 1) return out;
      started();
      return new Promise((resolve) => gates.push(() => resolve(out)));
    },
  };
}

function record(xid: number, proc: number, value: number | Buffer): Buffer {
  const args = typeof value === 'number' ? new XdrWriter().u32(value).bytes() : new XdrWriter().opaque(value).bytes();
  const m = encodeCall(xid, PROG, 1, proc, args);
  return Buffer.concat([new XdrWriter().u32((0x80000000 | m.length) >>> 0).bytes(), m]);
}

/** A raw client: collects (xid, value) of every SUCCESS reply. */
class Raw {
  readonly replies: [number, number][] = [];
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  readonly closed: Promise<void>;
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 4) {
        const len = this.buf.readUInt32BE(0) & 0x7fffffff;
        if (this.buf.length < 4 + len) break;
        const rec = this.buf.subarray(4, 4 + len);
        this.buf = this.buf.subarray(4 + len);
        // xid REPLY MSG_ACCEPTED verf(flavor, len 0) SUCCESS value
        this.replies.push([rec.readUInt32BE(0), rec.readUInt32BE(24)]);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((r) => sock.once('close', () => r()));
  }
  static async connect(port: number): Promise<Raw> {
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r, j) => sock.once('connect', r).once('error', j));
    sock.setNoDelay(true);
    return new Raw(sock);
  }
  async until(n: number): Promise<void> {
    for (let i = 0; i < 500 && this.replies.length < n; i++) {
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), new Promise((r) => setTimeout(r, 20))]);
    }
  }
}

describe('RpcServer busy polling', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(opts: { busyPollUs: number; maxInFlight?: number; pool?: BufferPool }) {
    const gates: (() => void)[] = [];
    let startedCount = 0;
    const server = new RpcServer({ busyPollUs: opts.busyPollUs, maxInFlight: opts.maxInFlight ?? 1, pool: opts.pool });
    server.register(program(gates, () => startedCount++));
    const port = await server.listen(0, '127.0.0.1');
    cleanup.push(() => server.close(1000));
    const client = await Raw.connect(port);
    cleanup.push(() => void client.sock.destroy());
    const waitStarted = async (n: number) => {
      for (let i = 0; i < 500 && startedCount < n; i++) await new Promise((r) => setTimeout(r, 5));
      expect(startedCount).toBe(n);
    };
    /** Let the held call answer (its reply is written synchronously in the promise's continuation). */
    const release = async () => {
      for (let i = 0; i < 500 && gates.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      gates.shift()!();
    };
    return { server, client, port, gates, waitStarted, release };
  }

  it('a call waiting in the socket when a reply goes out is read and answered by the poll', async () => {
    const { server, client, waitStarted, release } = await setup({ busyPollUs: 1000 });
    client.sock.write(record(1, 2, 10)); // held by the test
    await waitStarted(1);
    client.sock.write(record(2, 1, 20)); // waits in the kernel: the server is not reading
    await new Promise((r) => setTimeout(r, 20));
    expect(client.replies).toEqual([]);
    await release();
    await client.until(2);
    expect(client.replies).toEqual([[1, 11], [2, 21]]);
    expect(server.stats.pollHits).toBeGreaterThanOrEqual(1);
  });

  it('a record split across a poll and the event loop is reassembled in order', async () => {
    const { server, client, waitStarted, release } = await setup({ busyPollUs: 1000 });
    client.sock.write(record(1, 2, 1));
    await waitStarted(1);
    const second = Buffer.concat([record(2, 1, 100), record(3, 1, 200)]);
    client.sock.write(second.subarray(0, 30)); // the poll finds the first 30 bytes of call 2
    await new Promise((r) => setTimeout(r, 20));
    await release();
    await new Promise((r) => setTimeout(r, 20));
    expect(server.stats.pollHits).toBeGreaterThanOrEqual(1);
    client.sock.write(second.subarray(30)); // the rest comes through the event loop's read
    await client.until(3);
    expect(client.replies).toEqual([[1, 2], [2, 101], [3, 201]]);
  });

  it('a large record received in place, partly by a poll and partly by the event loop, arrives intact', async () => {
    // The first bytes of the record land in the scratch buffer, the rest straight in a pooled
    // record buffer at a growing offset: the event loop's next read must continue where the poll
    // stopped (a stale read target would overwrite the start of the record or scramble it).
    const { server, client, waitStarted, release } = await setup({ busyPollUs: 1000, pool: new BufferPool((1 << 20) + 65536, 4) });
    const payload = Buffer.alloc(600_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 9)) & 0xff;
    const big = record(2, 3, payload);
    client.sock.write(record(1, 2, 1));
    await waitStarted(1);
    client.sock.write(big.subarray(0, 200_000));
    await new Promise((r) => setTimeout(r, 30));
    await release();
    await new Promise((r) => setTimeout(r, 30));
    expect(server.stats.pollHits).toBeGreaterThanOrEqual(1);
    client.sock.write(big.subarray(200_000));
    await client.until(2);
    expect(client.replies).toEqual([[1, 2], [2, digest32(payload)]]);
  });

  it('no poll while the socket reads a large record in place (its next read would land at a stale offset)', async () => {
    const pool = new BufferPool((1 << 20) + 65536, 4);
    const { client, gates, waitStarted } = await setup({ busyPollUs: 1000, maxInFlight: 8, pool });
    const payload = Buffer.alloc(700_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 13 + (i >> 11)) & 0xff;
    const big = record(2, 3, payload);
    client.sock.write(record(1, 2, 1)); // held
    await waitStarted(1);
    client.sock.write(big.subarray(0, 150_000)); // read by the event loop, the tail in place
    await new Promise((r) => setTimeout(r, 30));
    // Same tick: more of the record reaches the kernel, and the held call answers; the poll after
    // its reply runs before the event loop could read those bytes.
    client.sock.write(big.subarray(150_000, 400_000));
    gates.shift()!();
    await new Promise((r) => setTimeout(r, 30));
    client.sock.write(big.subarray(400_000));
    await client.until(2);
    expect(client.replies).toEqual([[1, 2], [2, digest32(payload)]]);
  });

  it('calls answered while a read is still being parsed do not poll into that read', async () => {
    // 3,000 pipelined calls (~190 KB) are more than one 64 KiB read: each is answered
    // synchronously while its read is parsed, and the poll it asks for waits until the decoder is
    // done with that read (polling from inside it would overwrite the bytes not yet parsed).
    const { client } = await setup({ busyPollUs: 1000, maxInFlight: 64 });
    const calls: Buffer[] = [];
    for (let i = 0; i < 3000; i++) calls.push(record(1000 + i, 1, i * 3));
    client.sock.write(Buffer.concat(calls));
    await client.until(3000);
    expect(client.replies.length).toBe(3000);
    expect(client.replies.every(([xid, v], i) => xid === 1000 + i && v === i * 3 + 1)).toBe(true);
  });

  it('a client that sends its last call and closes: answered, then the connection closes', async () => {
    const { server, client, waitStarted, release } = await setup({ busyPollUs: 1000 });
    client.sock.write(record(1, 2, 5));
    await waitStarted(1);
    client.sock.end(record(2, 1, 6)); // call, then FIN, both behind the held call
    await new Promise((r) => setTimeout(r, 20));
    await release();
    await client.closed;
    expect(client.replies).toEqual([[1, 6], [2, 7]]);
    for (let i = 0; i < 100 && server.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(server.connectionCount).toBe(0);
  });

  it('a hostile record mark found by a poll drops that connection only', async () => {
    const { server, client, port, waitStarted, release } = await setup({ busyPollUs: 1000 });
    client.sock.write(record(1, 2, 5));
    await waitStarted(1);
    client.sock.write(Buffer.from('ffffffff00000000', 'hex')); // a 2 GiB record
    await new Promise((r) => setTimeout(r, 20));
    const dropped = server.stats.droppedConnections;
    await release();
    await client.closed;
    expect(client.replies).toEqual([[1, 6]]);
    expect(server.stats.droppedConnections).toBe(dropped + 1);
    const other = await Raw.connect(port);
    cleanup.push(() => void other.sock.destroy());
    other.sock.write(record(9, 1, 41));
    await other.until(1);
    expect(other.replies).toEqual([[9, 42]]);
  });

  it('polls that find nothing back off: 8 misses, then 64 replies without polling', async () => {
    // The client shares this event loop, so it can never send during a poll: every poll misses.
    const { server, client } = await setup({ busyPollUs: 50, maxInFlight: 8 });
    // Polling starts once the connection has had the calls to itself for a millisecond.
    client.sock.write(record(99, 1, 0));
    await client.until(1);
    await new Promise((r) => setTimeout(r, 5));
    const before = server.stats.polls;
    for (let i = 0; i < 20; i++) {
      client.sock.write(record(100 + i, 1, i));
      await client.until(i + 2);
    }
    expect(client.replies.length).toBe(21);
    expect(server.stats.polls - before).toBe(8);
    expect(server.stats.pollHits).toBe(0);
  });

  it('no polling while several connections send calls (a poll would hold up the others)', async () => {
    const { server, client, port } = await setup({ busyPollUs: 1000, maxInFlight: 8 });
    const other = await Raw.connect(port);
    cleanup.push(() => void other.sock.destroy());
    for (let i = 0; i < 20; i++) {
      // Both calls reach the server together: each follows a call from the other connection.
      client.sock.write(record(100 + i, 1, i));
      other.sock.write(record(200 + i, 1, i));
      await Promise.all([client.until(i + 1), other.until(i + 1)]);
    }
    expect(client.replies.length + other.replies.length).toBe(40);
    // At most the very first call could poll (no other connection had called yet).
    expect(server.stats.polls).toBeLessThanOrEqual(1);
  });

  it('busyPollUs 0: no polling at all', async () => {
    const { server, client, waitStarted, release } = await setup({ busyPollUs: 0 });
    client.sock.write(record(1, 2, 1));
    await waitStarted(1);
    client.sock.write(record(2, 1, 2));
    await release();
    await client.until(2);
    expect(client.replies).toEqual([[1, 2], [2, 3]]);
    expect(server.stats.polls).toBe(0);
  });
});
