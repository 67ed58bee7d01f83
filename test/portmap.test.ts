import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOUNT_PROGRAM } from '../src/mount/constants.js';
import { createMountProgram } from '../src/mount/program.js';
import { PortmapClient, portmapperAnswers, registerWithPortmapper } from '../src/portmap/client.js';
import { IPPROTO_TCP, IPPROTO_UDP, PMAP_PROG } from '../src/portmap/constants.js';
import { createPortmapProgram, type PortmapProgram } from '../src/portmap/program.js';
import { accept_stat, encodeCall } from '../src/rpc/message.js';
import { RpcServer } from '../src/rpc/server.js';
import { UdpRpcServer } from '../src/rpc/udp.js';
import { parseCidr } from '../src/util/cidr.js';
import { RpcTcpClient, rpcCallUdp } from '../src/util/rpc-client.js';
import { decodeCall } from '../src/rpc/message.js';
import type { ZoneFs } from '../src/vfs/types.js';
import { XdrWriter } from '../src/xdr/writer.js';

const run = promisify(execFile);
const mapping = (prog: number, vers: number, prot: number, port: number) =>
  new XdrWriter(16).u32(prog).u32(vers).u32(prot).u32(port).bytes();

describe('portmapper v2 over a real RpcServer', () => {
  let server: RpcServer;
  let udp: UdpRpcServer;
  let port: number;
  let client: RpcTcpClient;
  let prog: PortmapProgram;

  beforeAll(async () => {
    prog = createPortmapProgram();
    server = new RpcServer();
    server.register(prog);
    port = await server.listen(0, '127.0.0.1');
    udp = new UdpRpcServer(server);
    await udp.listen(port, '127.0.0.1');
    client = await RpcTcpClient.connect(port);
  });

  afterAll(async () => {
    client.close();
    await udp.close();
    await server.close();
  });

  const call = (proc: number, args?: Buffer, xid?: number) => client.call(PMAP_PROG, 2, proc, args, { xid });

  it('SET, GETPORT (golden bytes), duplicate SET refused, UNSET', async () => {
    expect((await call(1, mapping(100003, 3, IPPROTO_TCP, 2049))).body.bool()).toBe(true);
    expect((await call(1, mapping(100003, 3, IPPROTO_TCP, 3049))).body.bool()).toBe(false);
    const r = await call(3, mapping(100003, 3, IPPROTO_TCP, 0), 0xdeadbeef);
    expect(r.raw.toString('hex')).toBe(
      'deadbeef' + '00000001' + '00000000' + '00000000' + '00000000' + '00000000' + '00000801',
    );
    expect((await call(3, mapping(100003, 3, IPPROTO_UDP, 0))).body.u32()).toBe(0);
    expect((await call(3, mapping(100099, 1, IPPROTO_TCP, 0))).body.u32()).toBe(0);
    // another version of a registered program answers (the client learns versions from PROG_MISMATCH)
    expect((await call(3, mapping(100003, 4, IPPROTO_TCP, 0))).body.u32()).toBe(2049);
    expect((await call(2, mapping(100003, 3, 0, 0))).body.bool()).toBe(true);
    expect((await call(3, mapping(100003, 3, IPPROTO_TCP, 0))).body.u32()).toBe(0);
    expect((await call(2, mapping(100003, 3, 0, 0))).body.bool()).toBe(false);
  });

  it('DUMP lists every mapping', async () => {
    await call(1, mapping(MOUNT_PROGRAM, 3, IPPROTO_TCP, 20048));
    await call(1, mapping(MOUNT_PROGRAM, 3, IPPROTO_UDP, 20048));
    const r = await call(4);
    const maps: number[][] = [];
    for (let i = 0; i < 100 && r.body.bool(); i++) maps.push([r.body.u32(), r.body.u32(), r.body.u32(), r.body.u32()]);
    expect(maps).toEqual([
      [MOUNT_PROGRAM, 3, 6, 20048],
      [MOUNT_PROGRAM, 3, 17, 20048],
    ]);
    await call(2, mapping(MOUNT_PROGRAM, 3, 0, 0));
  });

  it('SET and UNSET from a non-loopback client are refused', async () => {
    const conn = { remoteAddress: '192.0.2.7', remotePort: 700 };
    const set = decodeCall(encodeCall(1, PMAP_PROG, 2, 1, mapping(100005, 3, 6, 1)));
    if ('notCall' in set) throw new Error('bad call');
    expect((prog.handle(set, conn) as Buffer).readUInt32BE(0)).toBe(0);
    expect(prog.table.getport(100005, 3, 6)).toBe(0);
    prog.table.set({ prog: 100005, vers: 3, prot: 6, port: 9 });
    const unset = decodeCall(encodeCall(2, PMAP_PROG, 2, 2, mapping(100005, 3, 0, 0)));
    if ('notCall' in unset) throw new Error('bad call');
    expect((prog.handle(unset, conn) as Buffer).readUInt32BE(0)).toBe(0);
    expect(prog.table.getport(100005, 3, 6)).toBe(9);
    prog.table.unset(100005, 3);
  });

  it('CALLIT is PROC_UNAVAIL; rpcbind v3/v4 get PROG_MISMATCH 2-2', async () => {
    expect((await call(5, Buffer.alloc(16))).stat).toBe(accept_stat.PROC_UNAVAIL);
    const r = await client.call(PMAP_PROG, 4, 0);
    expect(r.stat).toBe(accept_stat.PROG_MISMATCH);
    expect([r.body.u32(), r.body.u32()]).toEqual([2, 2]);
  });

  it('answers GETPORT over UDP', async () => {
    prog.table.set({ prog: 100003, vers: 3, prot: 6, port: 2050 });
    const r = await rpcCallUdp(port, '127.0.0.1', PMAP_PROG, 2, 3, mapping(100003, 3, 6, 0));
    expect(r.body.u32()).toBe(2050);
    prog.table.unset(100003, 3);
  });

  it('the portmap client registers, replaces stale entries and unregisters', async () => {
    prog.table.set({ prog: MOUNT_PROGRAM, vers: 3, prot: 6, port: 1 }); // stale, from an "earlier run"
    expect(await portmapperAnswers('127.0.0.1', port)).toBe(true);
    const unregister = await registerWithPortmapper(
      [
        { prog: 100003, vers: 3, prot: 6, port: 2049 },
        { prog: MOUNT_PROGRAM, vers: 3, prot: 6, port: 20048 },
        { prog: MOUNT_PROGRAM, vers: 3, prot: 17, port: 20048 },
      ],
      '127.0.0.1', port,
    );
    const c = await PortmapClient.connect('127.0.0.1', port);
    expect(await c.getport(MOUNT_PROGRAM, 3, 6)).toBe(20048);
    expect((await c.dump()).length).toBe(3);
    await unregister();
    expect(await c.dump()).toEqual([]);
    c.close();
  });

  it('portmapperAnswers is false when nothing listens', async () => {
    const s = new RpcServer();
    const p = await s.listen(0, '127.0.0.1');
    await s.close();
    expect(await portmapperAnswers('127.0.0.1', p, 500)).toBe(false);
  });
});

describe('Debian rpcinfo and showmount against our portmapper on port 111', () => {
  let pm: RpcServer | null = null;
  let pmUdp: UdpRpcServer | null = null;
  let mount: RpcServer | null = null;
  let skipReason = '';

  beforeAll(async () => {
    if (process.getuid?.() !== 0) {
      skipReason = 'not root: cannot bind port 111';
      return;
    }
    const prog = createPortmapProgram();
    pm = new RpcServer();
    pm.register(prog);
    try {
      await pm.listen(111, '127.0.0.1');
    } catch (err) {
      skipReason = `port 111 unavailable (${(err as Error).message})`;
      await pm.close();
      pm = null;
      return;
    }
    pmUdp = new UdpRpcServer(pm);
    try {
      await pmUdp.listen(111, '127.0.0.1');
      prog.table.set({ prog: PMAP_PROG, vers: 2, prot: IPPROTO_UDP, port: 111 });
    } catch {
      pmUdp = null;
    }
    prog.table.set({ prog: PMAP_PROG, vers: 2, prot: IPPROTO_TCP, port: 111 });
    mount = new RpcServer();
    const zone = { name: 'tier-1', zoneId: 1, rootId: 1n, generation: async () => 1 } as unknown as ZoneFs;
    mount.register(createMountProgram({ exports: () => [{ zone, allow: [parseCidr('127.0.0.1/32'), parseCidr('10.1.0.0/16')] }] }));
    const mp = await mount.listen(0, '127.0.0.1');
    const mu = new UdpRpcServer(mount);
    void mu; // MOUNT over TCP is enough for showmount
    for (const v of [1, 2, 3]) prog.table.set({ prog: MOUNT_PROGRAM, vers: v, prot: IPPROTO_TCP, port: mp });
  });

  afterAll(async () => {
    await pmUdp?.close();
    await pm?.close();
    await mount?.close();
  });

  it('rpcinfo -p lists the registrations', async (ctx) => {
    if (skipReason) {
      console.warn(`skipped: ${skipReason}`);
      ctx.skip(skipReason);
    }
    const { stdout } = await run('rpcinfo', ['-p', '127.0.0.1'], { timeout: 10_000 });
    expect(stdout).toMatch(/100000\s+2\s+tcp\s+111\s+portmapper/);
    expect(stdout).toMatch(/100005\s+3\s+tcp\s+\d+\s+mountd/);
  });

  it('showmount -e lists the export and its allow list', async (ctx) => {
    if (skipReason) {
      console.warn(`skipped: ${skipReason}`);
      ctx.skip(skipReason);
    }
    const { stdout } = await run('showmount', ['-e', '127.0.0.1'], { timeout: 10_000 });
    expect(stdout).toContain('Export list for 127.0.0.1:');
    expect(stdout).toMatch(/\/tier-1\s+127\.0\.0\.1\/32,10\.1\.0\.0\/16/);
  });
});
