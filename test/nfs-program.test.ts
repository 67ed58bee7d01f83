import { describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import { encodeHandle } from '../src/nfs/handle.js';
import { createNfsProgram } from '../src/nfs/program.js';
import { NO_SQUASH } from '../src/nfs/context.js';
import { encodeCall } from '../src/rpc/message.js';
import { RpcServer } from '../src/rpc/server.js';
import { RpcTcpClient } from '../src/util/rpc-client.js';
import type { Attr, ZoneFs } from '../src/vfs/types.js';
import { XdrWriter } from '../src/xdr/writer.js';

// A scripted backend: each test overrides the methods it needs; anything else fails loudly.
function fakeZone(over: Partial<ZoneFs>): ZoneFs {
  const base = {
    name: 'z', zoneId: 7, rootId: 1n,
    generation: async (id: bigint) => {
      if (id === 99n) throw new GvError('ESTALE');
      return 3;
    },
  };
  return new Proxy({ ...base, ...over } as ZoneFs, {
    get(t, k) {
      const v = (t as unknown as Record<string | symbol, unknown>)[k];
      // The optional synchronous forms (generationNow, getattrNow, …) stay absent unless given.
      if (v === undefined && typeof k === 'string' && !k.endsWith('Now')) return async () => { throw new GvError('EIO', `unexpected ${k}`); };
      return v;
    },
  });
}

const ATTR: Attr = {
  type: 'file', mode: 0o644, nlink: 1, uid: 1000, gid: 100, size: 5n, used: 4096n,
  rdev: { major: 0, minor: 0 }, fsid: 7n, fileid: 42n,
  atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 },
};

// fattr3 for ATTR, written out by hand from RFC 1813 §2.6 (84 bytes).
const ATTR_HEX =
  '00000001' + '000001a4' + '00000001' + '000003e8' + '00000064' +
  '0000000000000005' + '0000000000001000' + '00000000' + '00000000' +
  '0000000000000007' + '000000000000002a' +
  '00000001' + '00000002' + '00000003' + '00000004' + '00000005' + '00000006';

async function call(zone: ZoneFs, proc: number, args: Buffer, auth = { uid: 0, gid: 0 }) {
  const srv = new RpcServer();
  const prog = createNfsProgram({ zones: { byId: (id) => (id === 7 ? zone : undefined), list: () => [zone] }, squash: NO_SQUASH });
  srv.register(prog);
  const rec = encodeCall(0x1234, 100003, 3, proc, args, auth);
  const out = await srv.dispatch(rec, { remoteAddress: '127.0.0.1', remotePort: 900 });
  expect(out).not.toBeNull();
  const reply = Buffer.concat(out!.chunks);
  // xid, REPLY, MSG_ACCEPTED, verf AUTH_NONE/0, accept_stat
  const head = reply.subarray(0, 24).toString('hex');
  return { head, body: reply.subarray(24), verifier: prog.writeVerifier };
}
const OK_HEAD = '00001234' + '00000001' + '00000000' + '00000000' + '00000000' + '00000000';

const fh = (id: bigint, gen = 3) => encodeHandle(7, id, gen);
const fhArg = (id: bigint, gen = 3) => new XdrWriter().opaque(fh(id, gen)).bytes();

describe('NFSv3 program (in-process, golden bytes)', () => {
  it('GETATTR encodes fattr3 exactly', async () => {
    const z = fakeZone({ getattr: async (_c, id) => ({ ...ATTR, fileid: id }) });
    const { head, body } = await call(z, 1, fhArg(42n));
    expect(head).toBe(OK_HEAD);
    expect(body.toString('hex')).toBe('00000000' + ATTR_HEX);
  });

  it('a zone with the synchronous forms answers GETATTR, LOOKUP and ACCESS without a promise, the same bytes', async () => {
    const sync = fakeZone({
      generationNow: (id: bigint) => {
        if (id === 99n) throw new GvError('ESTALE');
        return 3;
      },
      getattrNow: (_c, id) => ({ ...ATTR, fileid: id }),
      lookupNow: (_c, _d, name) => {
        if (name.toString() === 'missing') throw new GvError('ENOENT');
        return { id: 42n, attr: ATTR, dirAttr: { ...ATTR, type: 'dir', fileid: 1n } };
      },
      accessNow: () => ({ granted: 0x3f, attr: ATTR }),
    });
    const async_ = fakeZone({
      getattr: async (_c, id) => ({ ...ATTR, fileid: id }),
      lookup: async (_c, _d, name) => {
        if (name.toString() === 'missing') throw new GvError('ENOENT');
        return { id: 42n, attr: ATTR, dirAttr: { ...ATTR, type: 'dir', fileid: 1n } };
      },
      access: async () => ({ granted: 0x3f, attr: ATTR }),
    });
    const lookupArgs = (name: string) => new XdrWriter().opaque(fh(1n)).opaque(Buffer.from(name)).bytes();
    const cases: [number, Buffer][] = [
      [1, fhArg(42n)], [1, fhArg(42n, 4)], [1, fhArg(99n)],
      [3, lookupArgs('a')], [3, lookupArgs('missing')],
      [4, new XdrWriter().opaque(fh(42n)).u32(0x07).bytes()],
    ];
    for (const [proc, a] of cases) {
      const prog = createNfsProgram({ zones: { byId: (id) => (id === 7 ? sync : undefined), list: () => [sync] }, squash: NO_SQUASH });
      const srv = new RpcServer();
      srv.register(prog);
      const rec = encodeCall(0x1234, 100003, 3, proc, a, { uid: 0, gid: 0 });
      const { decodeCall } = await import('../src/rpc/message.js');
      const c = decodeCall(rec);
      if ('notCall' in c) throw new Error('not a call');
      const direct = prog.handle(c, { remoteAddress: '127.0.0.1', remotePort: 900 });
      expect(direct instanceof Promise).toBe(false);
      expect((await call(sync, proc, a)).body.toString('hex')).toBe((await call(async_, proc, a)).body.toString('hex'));
    }
  });

  it('malformed handle → NFS3ERR_BADHANDLE, wrong generation → NFS3ERR_STALE, gone → STALE', async () => {
    const z = fakeZone({ getattr: async () => ATTR });
    const bad = await call(z, 1, new XdrWriter().opaque(Buffer.from('nonsense')).bytes());
    expect(bad.body.toString('hex')).toBe('00002711'); // 10001
    const stale = await call(z, 1, fhArg(42n, 4));
    expect(stale.body.toString('hex')).toBe('00000046'); // 70
    const gone = await call(z, 1, fhArg(99n));
    expect(gone.body.toString('hex')).toBe('00000046');
    const otherZone = await call(z, 1, new XdrWriter().opaque(encodeHandle(8, 42n, 3)).bytes());
    expect(otherZone.body.toString('hex')).toBe('00000046');
  });

  it('LOOKUP failure carries the directory post_op_attr; success carries handle and both attrs', async () => {
    const z = fakeZone({
      getattr: async () => ({ ...ATTR, type: 'dir', fileid: 1n }),
      lookup: async (_c, _d, name) => {
        if (name.toString() === 'x') return { id: 42n, attr: ATTR };
        throw new GvError('ENOENT');
      },
    });
    const args = (n: string) => Buffer.concat([fhArg(1n), new XdrWriter().string(n).bytes()]);
    const miss = await call(z, 3, args('nope'));
    expect(miss.body.readUInt32BE(0)).toBe(2);
    expect(miss.body.readUInt32BE(4)).toBe(1); // attributes follow
    expect(miss.body.readUInt32BE(8)).toBe(2); // NF3DIR
    expect(miss.body.length).toBe(4 + 4 + 84);
    const hit = await call(z, 3, args('x'));
    const expected = '00000000' + '00000011' + fh(42n).toString('hex') + '000000' + '00000001' + ATTR_HEX + '00000000';
    expect(hit.body.toString('hex')).toBe(expected);
  });

  it('READ sends the payload as its own chunk with XDR padding', async () => {
    const data = Buffer.from('hello');
    const z = fakeZone({ read: async () => ({ data, eof: true, attr: ATTR }) });
    const args = Buffer.concat([fhArg(42n), Buffer.from('0000000000000000' + '00001000', 'hex')]);
    const { body } = await call(z, 6, args);
    expect(body.toString('hex')).toBe(
      '00000000' + '00000001' + ATTR_HEX + '00000005' + '00000001' + '00000005' + Buffer.from('hello').toString('hex') + '000000',
    );
  });

  it('WRITE honours count < data length, returns wcc, committed and the write verifier', async () => {
    let got: Buffer | undefined;
    let stableSeen = '';
    const z = fakeZone({
      write: async (_c, _id, off, d, stable) => {
        got = Buffer.from(d);
        stableSeen = stable;
        expect(off).toBe(4096);
        return { count: d.length, committed: 'file_sync', file: { before: { size: 0n, mtime: ATTR.mtime, ctime: ATTR.ctime }, after: ATTR } };
      },
    });
    const w = new XdrWriter();
    w.opaque(fh(42n)).u64(4096).u32(3).u32(2).opaque(Buffer.from('abcdef'));
    const { body, verifier } = await call(z, 7, w.bytes());
    expect(got!.toString()).toBe('abc');
    expect(stableSeen).toBe('file_sync');
    const pre = '00000001' + '0000000000000000' + '00000003' + '00000004' + '00000005' + '00000006';
    expect(body.toString('hex')).toBe('00000000' + pre + '00000001' + ATTR_HEX + '00000003' + '00000002' + verifier.toString('hex'));
  });

  it('errno table: EDQUOT → 69, ENOTEMPTY → 66, unknown → NFS3ERR_IO (5) with wcc_data', async () => {
    for (const [code, want] of [['EDQUOT', 69], ['ENOTEMPTY', 66], ['EWEIRD', 5]] as const) {
      const z = fakeZone({
        getattr: async () => ({ ...ATTR, type: 'dir' }),
        rmdir: async () => {
          if (code === 'EWEIRD') throw Object.assign(new Error('odd'), { code: 'EWEIRD' });
          throw new GvError(code);
        },
      });
      const { body } = await call(z, 13, Buffer.concat([fhArg(1n), new XdrWriter().string('d').bytes()]));
      expect(body.readUInt32BE(0)).toBe(want);
      expect(body.readUInt32BE(4)).toBe(0); // no pre_op_attr
      expect(body.readUInt32BE(8)).toBe(1); // post_op_attr of the directory
    }
  });

  it('a name over 255 bytes → NFS3ERR_NAMETOOLONG without reaching the backend', async () => {
    const z = fakeZone({ getattr: async () => ({ ...ATTR, type: 'dir' }) });
    const args = Buffer.concat([fhArg(1n), new XdrWriter().string('n'.repeat(256)).bytes(), Buffer.from('00000000', 'hex')]);
    const withSattr = Buffer.concat([args, Buffer.alloc(6 * 4)]);
    const { body } = await call(z, 9, withSattr);
    expect(body.readUInt32BE(0)).toBe(63);
  });

  it('READDIR trims by the byte budget and reports TOOSMALL when not even one entry fits', async () => {
    const entries = Array.from({ length: 50 }, (_, i) => ({ id: BigInt(100 + i), name: Buffer.from(`file-${i}`), cookie: BigInt(1000 + i) }));
    const z = fakeZone({
      readdir: async () => ({ entries, eof: true, verifier: Buffer.alloc(8, 9), dirAttr: { ...ATTR, type: 'dir' } }),
      getattr: async () => ({ ...ATTR, type: 'dir' }),
    });
    const args = (count: number) => {
      const w = new XdrWriter();
      w.opaque(fh(1n)).u64(0).fixed(Buffer.alloc(8)).u32(count);
      return w.bytes();
    };
    const small = await call(z, 16, args(1024));
    expect(small.body.readUInt32BE(0)).toBe(0);
    // The reply must fit the budget: count covers the whole READDIR3resok.
    expect(small.body.length).toBeLessThanOrEqual(1024);
    const after = 4 + 88 + 8;
    let n = 0;
    let off = after;
    while (small.body.readUInt32BE(off) === 1) {
      const len = small.body.readUInt32BE(off + 12);
      off += 4 + 8 + 4 + ((len + 3) & ~3) + 8;
      n++;
    }
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(50);
    expect(small.body.readUInt32BE(off + 4)).toBe(0); // eof false: entries were trimmed
    const all = await call(z, 16, args(65536));
    expect(all.body.readUInt32BE(all.body.length - 4)).toBe(1); // eof
    const tiny = await call(z, 16, args(64));
    expect(tiny.body.readUInt32BE(0)).toBe(10005);
  });

  it('unknown procedure → PROC_UNAVAIL; truncated arguments → GARBAGE_ARGS', async () => {
    const z = fakeZone({});
    const unknown = await call(z, 22, Buffer.alloc(0));
    expect(unknown.head.slice(-8)).toBe('00000003');
    const truncated = await call(z, 6, fhArg(42n)); // READ without offset/count
    expect(truncated.head.slice(-8)).toBe('00000004');
  });

  it('a call gets CallContext.inline only when the TCP server had no other call in flight', async () => {
    const seen: (boolean | undefined)[] = [];
    const z = fakeZone({ getattr: async (ctx) => { seen.push(ctx.inline); return ATTR; } });
    const srv = new RpcServer();
    srv.register(createNfsProgram({ zones: { byId: () => z, list: () => [z] }, squash: NO_SQUASH }));
    // dispatch() (UDP, tests) is not counted in flight: never inline.
    await srv.dispatch(encodeCall(1, 100003, 3, 1, fhArg(42n), { uid: 0, gid: 0 }), { remoteAddress: '127.0.0.1', remotePort: 1 });
    expect(seen).toEqual([false]);
    // Over TCP: a lone call is inline; one of two calls in flight together is not.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const slow = fakeZone({
      getattr: async (ctx) => {
        seen.push(ctx.inline);
        if (seen.length === 3) await gate;
        return ATTR;
      },
    });
    const tcp = new RpcServer();
    tcp.register(createNfsProgram({ zones: { byId: () => slow, list: () => [slow] }, squash: NO_SQUASH }));
    const port = await tcp.listen(0, '127.0.0.1');
    const client = await RpcTcpClient.connect(port);
    try {
      await client.call(100003, 3, 1, fhArg(42n));
      expect(seen).toEqual([false, true]);
      const first = client.call(100003, 3, 1, fhArg(42n)); // held until released
      await new Promise((r) => setTimeout(r, 50));
      const second = client.call(100003, 3, 1, fhArg(42n));
      await new Promise((r) => setTimeout(r, 50));
      release();
      await Promise.all([first, second]);
      expect(seen).toEqual([false, true, true, false]);
    } finally {
      client.close();
      await tcp.close();
    }
  });

  it('root squash maps uid 0 to the anonymous user', async () => {
    let seen = -1;
    const z = fakeZone({ getattr: async (ctx) => { seen = ctx.uid; return ATTR; } });
    const srv = new RpcServer();
    srv.register(createNfsProgram({
      zones: { byId: () => z, list: () => [z] },
      squash: { mode: 'root', anonUid: 65534, anonGid: 65534 },
    }));
    await srv.dispatch(encodeCall(1, 100003, 3, 1, fhArg(42n), { uid: 0, gid: 0 }), { remoteAddress: '127.0.0.1', remotePort: 1 });
    expect(seen).toBe(65534);
    await srv.dispatch(encodeCall(2, 100003, 3, 1, fhArg(42n), { uid: 1000, gid: 0 }), { remoteAddress: '127.0.0.1', remotePort: 1 });
    expect(seen).toBe(1000);
  });
});

describe('GvError', () => {
  it('keeps code, message and data; expected conditions carry no stack frames, faults do', () => {
    const miss = new GvError('ENOENT', 'no such file', { path: 'x' });
    expect(miss).toBeInstanceOf(Error);
    expect(miss.code).toBe('ENOENT');
    expect(miss.message).toBe('no such file');
    expect(miss.toJSON()).toEqual({ name: 'GvError', code: 'ENOENT', message: 'no such file', data: { path: 'x' } });
    expect(miss.stack ?? '').not.toMatch(/\n\s+at /);
    const fault = new GvError('EIO', 'disk on fire');
    expect(fault.stack ?? '').toMatch(/\n\s+at /);
    // The global limit is restored after each construction.
    const limit = Error.stackTraceLimit;
    new GvError('ESTALE');
    expect(Error.stackTraceLimit).toBe(limit);
  });
});
