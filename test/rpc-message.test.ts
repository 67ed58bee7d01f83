/**
 * RPC messages (RFC 5531 §9) with golden bytes, and RpcServer in process on 127.0.0.1:0 with a
 * toy program: every accept/reject path, replies matched by xid, hostile record marks.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import {
  acceptedError, authError, decodeCall, encodeCall, parseAuthSys, progMismatch, rpcMismatch,
  type accept_stat, type auth_stat, type RpcCall,
} from '../src/rpc/message.js';
import { RpcServer, type ProcResult, type RpcProgram } from '../src/rpc/server.js';
import { XdrWriter } from '../src/xdr/writer.js';
import { RpcClient, type RpcReply } from './harness/rpc-client.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// RFC 5531 numbers written out, so the tests do not depend on the enums they check.
const PROG_UNAVAIL = 1 as accept_stat;
const PROC_UNAVAIL = 3 as accept_stat;
const GARBAGE_ARGS = 4 as accept_stat;
const SYSTEM_ERR = 5 as accept_stat;
const AUTH_BADCRED = 1 as auth_stat;
const AUTH_TOOWEAK = 5 as auth_stat;

// AUTH_SYS body: stamp 0x11, machinename "box", uid 1000, gid 100, gids [100, 27]
const AUTH_SYS_BODY = '00000011 00000003 626f7800 000003e8 00000064 00000002 00000064 0000001b';
const CALL_AUTH_SYS = hex(
  'deadbeef 00000000 00000002 000186a3 00000003 00000001' + // xid CALL rpcvers prog=100003 vers=3 GETATTR
    '00000001 00000020' + AUTH_SYS_BODY + // cred: AUTH_SYS, 32 bytes
    '00000000 00000000' + // verf: AUTH_NONE
    '00000004 01020304', // args: a 4-byte handle
);
const CALL_AUTH_NONE = hex(
  '00000001 00000000 00000002 000186a5 00000003 00000000' + // MOUNT v3 NULL
    '00000000 00000000' +
    '00000000 00000000',
);

function isCall(c: ReturnType<typeof decodeCall>): c is RpcCall {
  return !('notCall' in c);
}

describe('decodeCall (golden bytes)', () => {
  it('decodes a CALL with AUTH_SYS and leaves args positioned after the verifier', () => {
    const c = decodeCall(CALL_AUTH_SYS);
    expect(isCall(c)).toBe(true);
    if (!isCall(c)) return;
    expect({ xid: c.xid, rpcvers: c.rpcvers, prog: c.prog, vers: c.vers, proc: c.proc, flavor: c.credFlavor }).toEqual({
      xid: 0xdeadbeef, rpcvers: 2, prog: 100003, vers: 3, proc: 1, flavor: 1,
    });
    expect(c.authSys).toEqual({ stamp: 0x11, machinename: 'box', uid: 1000, gid: 100, gids: [100, 27] });
    expect(c.args.opaque(64).toString('hex')).toBe('01020304');
    expect(c.args.remaining).toBe(0);
  });

  it('decodes a CALL with AUTH_NONE (authSys null, empty args)', () => {
    const c = decodeCall(CALL_AUTH_NONE);
    if (!isCall(c)) throw new Error('not a call');
    expect(c.xid).toBe(1);
    expect(c.prog).toBe(100005);
    expect(c.proc).toBe(0);
    expect(c.credFlavor).toBe(0);
    expect(c.authSys).toBeNull();
    expect(c.args.remaining).toBe(0);
  });

  it('encodeCall produces exactly the golden bytes', () => {
    const args = hex('00000004 01020304');
    const enc = encodeCall(0xdeadbeef, 100003, 3, 1, args, { uid: 1000, gid: 100, gids: [100, 27], machinename: 'box' });
    // encodeCall always uses stamp 0
    const want = Buffer.from(CALL_AUTH_SYS);
    want.writeUInt32BE(0, 32);
    expect(enc.toString('hex')).toBe(want.toString('hex'));
    expect(encodeCall(1, 100005, 3, 0, Buffer.alloc(0)).toString('hex')).toBe(CALL_AUTH_NONE.toString('hex'));
  });

  it('malformed AUTH_SYS bodies give authSys null (→ AUTH_BADCRED), not an exception', () => {
    const bodies = [
      '00000011 00000003 626f78', // truncated
      '00000011 00000003 626f7800 000003e8 00000064 00000011' + '00000000'.repeat(17), // 17 gids > 16
      AUTH_SYS_BODY + '00000000', // trailing bytes
      '00000011 00000100' + '61'.repeat(256) + ' 000003e8 00000064 00000000', // machinename > 255
    ];
    for (const b of bodies) {
      expect(parseAuthSys(hex(b))).toBeNull();
      const body = hex(b);
      const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length & 3)) & 3)]);
      const rec = Buffer.concat([
        hex('00000007 00000000 00000002 000186a3 00000003 00000000 00000001'),
        new XdrWriter().u32(body.length).bytes(), padded, hex('00000000 00000000'),
      ]);
      const c = decodeCall(rec);
      if (!isCall(c)) throw new Error('not a call');
      expect(c.credFlavor).toBe(1);
      expect(c.authSys).toBeNull();
    }
  });

  it('a REPLY message is reported as notCall with its xid', () => {
    expect(decodeCall(hex('0000002a 00000001 00000000 00000000 00000000 00000000'))).toEqual({ xid: 42, notCall: true });
  });

  it('a truncated header throws GvError PROTOCOL', () => {
    for (let n = 0; n < CALL_AUTH_NONE.length; n += 4) {
      if (n === 8) continue; // (8 bytes is xid + msg_type: complete for notCall only when REPLY)
      let err: unknown;
      try {
        decodeCall(CALL_AUTH_NONE.subarray(0, n));
      } catch (e) {
        err = e;
      }
      expect(err, `truncated at ${n}`).toBeInstanceOf(GvError);
      expect((err as GvError).code).toBe('PROTOCOL');
    }
  });

  it('a credential body over 400 bytes throws PROTOCOL', () => {
    const rec = Buffer.concat([hex('00000007 00000000 00000002 000186a3 00000003 00000000 00000001 00000194'), Buffer.alloc(404)]);
    expect(() => decodeCall(rec)).toThrow(GvError);
  });
});

describe('reply builders (golden bytes, RFC 5531 §9)', () => {
  it('progMismatch: MSG_ACCEPTED, AUTH_NONE verifier, PROG_MISMATCH, low, high', () => {
    expect(progMismatch(0x01020304, 2, 3).toString('hex')).toBe(
      '01020304 00000001 00000000 00000000 00000000 00000002 00000002 00000003'.replace(/ /g, ''),
    );
  });

  it('rpcMismatch: MSG_DENIED, RPC_MISMATCH, low 2, high 2', () => {
    expect(rpcMismatch(9).toString('hex')).toBe('00000009 00000001 00000001 00000000 00000002 00000002'.replace(/ /g, ''));
  });

  it('authError: MSG_DENIED, AUTH_ERROR, auth_stat', () => {
    expect(authError(9, AUTH_TOOWEAK).toString('hex')).toBe('00000009 00000001 00000001 00000001 00000005'.replace(/ /g, ''));
    expect(authError(0xffffffff, AUTH_BADCRED).toString('hex')).toBe('ffffffff 00000001 00000001 00000001 00000001'.replace(/ /g, ''));
  });

  it('acceptedError: MSG_ACCEPTED, AUTH_NONE verifier, accept_stat and nothing after', () => {
    expect(acceptedError(9, PROG_UNAVAIL).toString('hex')).toBe('00000009 00000001 00000000 00000000 00000000 00000001'.replace(/ /g, ''));
    expect(acceptedError(9, PROC_UNAVAIL).toString('hex')).toBe('00000009 00000001 00000000 00000000 00000000 00000003'.replace(/ /g, ''));
    expect(acceptedError(9, GARBAGE_ARGS).toString('hex')).toBe('00000009 00000001 00000000 00000000 00000000 00000004'.replace(/ /g, ''));
    expect(acceptedError(9, SYSTEM_ERR).toString('hex')).toBe('00000009 00000001 00000000 00000000 00000000 00000005'.replace(/ /g, ''));
  });
});

// ---------------------------------------------------------------- RpcServer in process

const TOY_PROG = 0x20000123;

/** A toy program: proc 0 NULL, 1 add-one, 2 unavailable, 3 garbage, 4 slow echo, 5 bug. */
const toy: RpcProgram = {
  prog: TOY_PROG,
  low: 1,
  high: 2,
  async handle(call): Promise<ProcResult> {
    switch (call.proc) {
      case 0:
        return Buffer.alloc(0);
      case 1:
        return new XdrWriter().u32(call.args.u32() + 1).bytes();
      case 2:
        return { stat: PROC_UNAVAIL as accept_stat.PROC_UNAVAIL };
      case 3:
        call.args.u32(); // throws PROTOCOL when args are missing
        throw new GvError('PROTOCOL', 'bad args');
      case 4: {
        const v = call.args.u32();
        const delay = call.args.u32();
        await new Promise((r) => setTimeout(r, delay));
        return [new XdrWriter().u32(v).bytes(), new XdrWriter().u32(call.vers).bytes()];
      }
      default:
        throw new TypeError('bug in a handler');
    }
  },
};

function acceptStatOf(r: RpcReply): string {
  return r.kind;
}

describe('RpcServer (toy program on 127.0.0.1:0)', () => {
  let server: RpcServer;
  let port = 0;
  const errors: string[] = [];
  const clients: RpcClient[] = [];
  const connect = async () => {
    const c = await RpcClient.connect(port);
    c.timeoutMs = 10_000;
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    server = new RpcServer({ maxInFlight: 8, onError: (e, where) => errors.push(`${where}: ${String(e)}`) });
    server.register(toy);
    port = await server.listen(0, '127.0.0.1');
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await server.close(2000);
  });

  it('SUCCESS carries the handler result after the accepted header', async () => {
    const c = await connect();
    const r = await c.call(TOY_PROG, 1, 1, new XdrWriter().u32(41).bytes());
    expect(r.kind).toBe('success');
    if (r.kind !== 'success') return;
    expect(r.results.u32()).toBe(42);
    expect(r.results.remaining).toBe(0);
    // full reply bytes: xid REPLY MSG_ACCEPTED verf(0,0) SUCCESS 42
    expect(r.raw.subarray(4).toString('hex')).toBe('00000001 00000000 00000000 00000000 00000000 0000002a'.replace(/ /g, ''));
  });

  it('PROG_UNAVAIL for an unknown program', async () => {
    const c = await connect();
    const r = await c.call(TOY_PROG + 1, 1, 0, Buffer.alloc(0));
    expect(acceptStatOf(r)).toBe('prog_unavail');
  });

  it('PROG_MISMATCH with the supported range for an unknown version', async () => {
    const c = await connect();
    for (const v of [0, 3, 0xffffffff]) {
      const r = await c.call(TOY_PROG, v, 0, Buffer.alloc(0));
      expect(r).toMatchObject({ kind: 'prog_mismatch', low: 1, high: 2 });
    }
  });

  it('PROC_UNAVAIL returned by the handler', async () => {
    const c = await connect();
    expect((await c.call(TOY_PROG, 2, 2, Buffer.alloc(0))).kind).toBe('proc_unavail');
  });

  it('GARBAGE_ARGS when the handler throws GvError PROTOCOL (also on truncated args)', async () => {
    const c = await connect();
    expect((await c.call(TOY_PROG, 1, 3, new XdrWriter().u32(1).bytes())).kind).toBe('garbage_args');
    expect((await c.call(TOY_PROG, 1, 3, Buffer.alloc(0))).kind).toBe('garbage_args');
    expect((await c.call(TOY_PROG, 1, 1, Buffer.alloc(0))).kind).toBe('garbage_args');
  });

  it('SYSTEM_ERR when the handler has a bug, and the error is reported', async () => {
    const c = await connect();
    const before = errors.length;
    expect((await c.call(TOY_PROG, 1, 9, Buffer.alloc(0))).kind).toBe('system_err');
    expect(errors.length).toBe(before + 1);
    expect(errors[before]).toMatch(/bug in a handler/);
  });

  it('RPC_MISMATCH (low 2, high 2) for rpcvers != 2', async () => {
    const c = await connect();
    const xid = c.allocXid();
    const msg = encodeCall(xid, TOY_PROG, 1, 0, Buffer.alloc(0));
    msg.writeUInt32BE(3, 8);
    const r = await c.sendRecord(xid, msg);
    expect(r).toMatchObject({ kind: 'rpc_mismatch', low: 2, high: 2, xid });
  });

  it('AUTH_ERROR: AUTH_BADCRED for a malformed AUTH_SYS body, AUTH_REJECTEDCRED for an unknown flavor', async () => {
    const c = await connect();
    let xid = c.allocXid();
    const bad = Buffer.concat([
      new XdrWriter().u32(xid).u32(0).u32(2).u32(TOY_PROG).u32(1).u32(0).bytes(),
      hex('00000001 00000008 00000000 00000001 00000000 00000000'), // AUTH_SYS body too short
    ]);
    expect(await c.sendRecord(xid, bad)).toMatchObject({ kind: 'auth_error', stat: 1 });
    xid = c.allocXid();
    const gss = Buffer.concat([
      new XdrWriter().u32(xid).u32(0).u32(2).u32(TOY_PROG).u32(1).u32(0).bytes(),
      hex('00000006 00000000 00000000 00000000'), // RPCSEC_GSS, empty
    ]);
    expect(await c.sendRecord(xid, gss)).toMatchObject({ kind: 'auth_error', stat: 2 });
  });

  it('a REPLY sent to the server is ignored and the connection keeps working', async () => {
    const c = await connect();
    const rep = hex('00000001 00000001 00000000 00000000 00000000 00000000');
    c.writeRaw(Buffer.concat([hex('80000018'), rep]));
    const r = await c.call(TOY_PROG, 1, 1, new XdrWriter().u32(1).bytes());
    expect(r.kind).toBe('success');
    expect(c.unmatched).toEqual([]);
  });

  it('many calls in flight on several connections, replies matched by xid', async () => {
    const conns = await Promise.all([connect(), connect(), connect()]);
    const jobs: Promise<void>[] = [];
    let seed = 12345;
    const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    for (let i = 0; i < 600; i++) {
      const c = conns[i % conns.length]!;
      const value = rnd();
      const delay = rnd() % 5;
      const vers = 1 + (i & 1);
      jobs.push(
        c.call(TOY_PROG, vers, 4, new XdrWriter().u32(value).u32(delay).bytes()).then((r) => {
          expect(r.kind).toBe('success');
          if (r.kind !== 'success') return;
          expect(r.results.u32()).toBe(value);
          expect(r.results.u32()).toBe(vers);
        }),
      );
    }
    await Promise.all(jobs);
    for (const c of conns) expect(c.unmatched).toEqual([]);
  });

  it('pipelined records written as one buffer are all answered', async () => {
    const c = await connect();
    const xids: number[] = [];
    const parts: Buffer[] = [];
    for (let i = 0; i < 50; i++) {
      const xid = c.allocXid();
      xids.push(xid);
      const m = encodeCall(xid, TOY_PROG, 1, 1, new XdrWriter().u32(i).bytes());
      parts.push(new XdrWriter().u32((0x80000000 | m.length) >>> 0).bytes(), m);
    }
    // the raw records carry no pending entry in the client: their replies land in `unmatched`
    const last = c.call(TOY_PROG, 1, 1, new XdrWriter().u32(1000).bytes());
    c.writeRaw(Buffer.concat(parts));
    const r = await last;
    expect(r.kind).toBe('success');
    // replies to the raw calls arrive too; with no pending entry they are counted as unmatched
    for (let i = 0; i < 200 && c.unmatched.length < xids.length; i++) await new Promise((res) => setTimeout(res, 10));
    expect(new Set(c.unmatched)).toEqual(new Set(xids));
  });

  it('a 2 GiB record mark closes that connection; the server still serves new ones', async () => {
    const c = await connect();
    const dropped = server.stats.droppedConnections;
    c.writeRaw(hex('ffffffff 00000000'));
    await c.closed;
    expect(c.isClosed).toBe(true);
    expect(server.stats.droppedConnections).toBe(dropped + 1);
    const c2 = await connect();
    const r = await c2.call(TOY_PROG, 1, 1, new XdrWriter().u32(7).bytes());
    expect(r.kind === 'success' && r.results.u32()).toBe(8);
  });

  it('a record over maxRecordSize (split in fragments) also closes the connection', async () => {
    const c = await connect();
    const frag = Buffer.alloc(600_000);
    c.writeRaw(Buffer.concat([hex('000927c0'), frag, hex('000927c0'), frag]));
    await c.closed;
    const c2 = await connect();
    expect((await c2.call(TOY_PROG, 1, 0, Buffer.alloc(0))).kind).toBe('success');
  });
});

describe('RpcServer and a client that half-closes', () => {
  it('still answers the calls that arrived before the FIN', async () => {
    const server = new RpcServer();
    server.register(toy);
    const port = await server.listen(0, '127.0.0.1');
    const sock = net.connect(port, '127.0.0.1');
    try {
      await new Promise((r, j) => sock.once('connect', r).once('error', j));
      let got = Buffer.alloc(0);
      sock.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
      const closed = new Promise((r) => sock.once('close', r));
      // a slow call (10 ms), then shutdown(SHUT_WR), as `rpcinfo`-style one-shot clients may do
      const msg = encodeCall(77, TOY_PROG, 1, 4, new XdrWriter().u32(5).u32(10).bytes());
      sock.end(Buffer.concat([new XdrWriter().u32((0x80000000 | msg.length) >>> 0).bytes(), msg]));
      const how = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
      expect(got.length).toBeGreaterThan(4);
      expect(got.readUInt32BE(4)).toBe(77);
      expect(how).toBe('closed'); // and then the server closes its side too
    } finally {
      sock.destroy();
      await server.close(1000);
    }
  });
});

describe('RpcServer requirePrivilegedPort', () => {
  it('answers AUTH_TOOWEAK to calls from a port >= 1024 (NULL still allowed)', async () => {
    const server = new RpcServer({ requirePrivilegedPort: true });
    server.register(toy);
    const port = await server.listen(0, '127.0.0.1');
    const c = await RpcClient.connect(port);
    try {
      const r = await c.call(TOY_PROG, 1, 1, new XdrWriter().u32(1).bytes());
      expect(r).toMatchObject({ kind: 'auth_error', stat: 5 });
      expect((await c.call(TOY_PROG, 1, 0, Buffer.alloc(0))).kind).toBe('success');
    } finally {
      c.close();
      await server.close(1000);
    }
  });
});
