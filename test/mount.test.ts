import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MOUNT_PROGRAM, mountstat3 } from '../src/mount/constants.js';
import { createMountProgram, normaliseDirpath, type MountProgram } from '../src/mount/program.js';
import { decodeHandle } from '../src/nfs/handle.js';
import { accept_stat } from '../src/rpc/message.js';
import { RpcServer } from '../src/rpc/server.js';
import { UdpRpcServer } from '../src/rpc/udp.js';
import { parseCidr } from '../src/util/cidr.js';
import { RpcTcpClient, rpcCallUdp, type RpcReply } from '../src/util/rpc-client.js';
import type { ZoneFs } from '../src/vfs/types.js';
import { XdrReader } from '../src/xdr/reader.js';
import { XdrWriter } from '../src/xdr/writer.js';

/** The MOUNT program only touches name, zoneId, rootId and generation(). */
function zoneStub(name: string, zoneId: number, rootId: bigint, gen: number): ZoneFs {
  return {
    name, zoneId, rootId,
    generation: async (id: bigint) => {
      if (id !== rootId) throw new Error('unexpected id');
      return gen;
    },
  } as unknown as ZoneFs;
}

const dirpath = (p: string | Buffer) => new XdrWriter(64).string(p).bytes();

function readMountList(r: XdrReader): { hostname: string; directory: string }[] {
  const out: { hostname: string; directory: string }[] = [];
  for (let i = 0; i < 1000 && r.bool(); i++) out.push({ hostname: r.string(255), directory: r.string(1024) });
  return out;
}

function readExports(r: XdrReader): { dir: string; groups: string[] }[] {
  const out: { dir: string; groups: string[] }[] = [];
  for (let i = 0; i < 1000 && r.bool(); i++) {
    const dir = r.string(1024);
    const groups: string[] = [];
    for (let j = 0; j < 1000 && r.bool(); j++) groups.push(r.string(255));
    out.push({ dir, groups });
  }
  return out;
}

describe('MOUNT v3 over a real RpcServer', () => {
  let server: RpcServer;
  let udp: UdpRpcServer;
  let port: number;
  let udpPort: number;
  let client: RpcTcpClient;
  let prog: MountProgram;
  const logs: string[] = [];

  beforeAll(async () => {
    prog = createMountProgram({
      exports: () => [
        { zone: zoneStub('tier-1', 7, 1n, 42), allow: [parseCidr('127.0.0.1/32'), parseCidr('::1')] },
        { zone: zoneStub('closed', 8, 5n, 1), allow: [parseCidr('10.0.0.0/8')] },
      ],
      log: (_o, m) => logs.push(m),
    });
    server = new RpcServer();
    server.register(prog);
    port = await server.listen(0, '127.0.0.1');
    udp = new UdpRpcServer(server);
    udpPort = await udp.listen(0, '127.0.0.1');
    client = await RpcTcpClient.connect(port);
  });

  afterAll(async () => {
    client.close();
    await udp.close();
    await server.close();
  });

  const call = (proc: number, args?: Buffer, vers = 3, xid?: number): Promise<RpcReply> =>
    client.call(MOUNT_PROGRAM, vers, proc, args, { xid, auth: { uid: 0, gid: 0 } });

  it('NULL answers with an empty SUCCESS reply', async () => {
    const r = await call(0);
    expect(r.accepted).toBe(true);
    expect(r.stat).toBe(accept_stat.SUCCESS);
    expect(r.body.remaining).toBe(0);
  });

  it('MNT returns the zone root handle and [AUTH_SYS, AUTH_NONE] (golden bytes)', async () => {
    const r = await call(1, dirpath('/tier-1'), 3, 0x01020304);
    const golden = Buffer.from(
      '01020304' + '00000001' + '00000000' + '00000000' + '00000000' + '00000000' + // reply header, SUCCESS
      '00000000' + // MNT3_OK
      '00000011' + '01' + '00000007' + '0000000000000001' + '0000002a' + '000000' + // fhandle3, 17 bytes + pad
      '00000002' + '00000001' + '00000000', // auth_flavors<>: AUTH_SYS, AUTH_NONE
      'hex',
    );
    expect(r.raw.toString('hex')).toBe(golden.toString('hex'));
    expect(r.body.u32()).toBe(mountstat3.MNT3_OK);
    expect(decodeHandle(r.body.opaque(64))).toEqual({ zoneId: 7, fileid: 1n, generation: 42 });
  });

  it('MNT accepts a trailing slash and answers NOENT for unknown paths', async () => {
    expect((await call(1, dirpath('/tier-1/'))).body.u32()).toBe(mountstat3.MNT3_OK);
    const r = await call(1, dirpath('/nope'));
    expect(r.body.u32()).toBe(mountstat3.MNT3ERR_NOENT);
    expect(r.body.remaining).toBe(0);
    expect((await call(1, dirpath('/'))).body.u32()).toBe(mountstat3.MNT3ERR_NOENT);
  });

  it('MNT refuses a client outside the allow list with MNT3ERR_ACCES', async () => {
    const r = await call(1, dirpath('/closed'));
    expect(r.body.u32()).toBe(mountstat3.MNT3ERR_ACCES);
    expect(logs).toContain('mount refused: client not in allow list');
  });

  it('a dirpath over MNTPATHLEN (1024) is GARBAGE_ARGS', async () => {
    const r = await call(1, dirpath('/' + 'x'.repeat(1100)));
    expect(r.stat).toBe(accept_stat.GARBAGE_ARGS);
  });

  it('DUMP lists mounts; UMNT and UMNTALL remove them', async () => {
    await call(4); // UMNTALL: start clean
    expect(readMountList((await call(2)).body)).toEqual([]);
    await call(1, dirpath('/tier-1'));
    expect(readMountList((await call(2)).body)).toEqual([{ hostname: '127.0.0.1', directory: '/tier-1' }]);
    // refused mounts are not listed
    await call(1, dirpath('/closed'));
    expect(readMountList((await call(2)).body)).toHaveLength(1);
    const um = await call(3, dirpath('/tier-1'));
    expect(um.stat).toBe(accept_stat.SUCCESS);
    expect(um.body.remaining).toBe(0);
    expect(readMountList((await call(2)).body)).toEqual([]);
    await call(1, dirpath('/tier-1'));
    prog.mounts.add('192.0.2.9', '/tier-1'); // another client's mount survives our UMNTALL
    await call(4);
    expect(readMountList((await call(2)).body)).toEqual([{ hostname: '192.0.2.9', directory: '/tier-1' }]);
  });

  it('EXPORT lists every export with its allow list as groups', async () => {
    const r = await call(5);
    expect(readExports(r.body)).toEqual([
      { dir: '/tier-1', groups: ['127.0.0.1/32', '::1'] },
      { dir: '/closed', groups: ['10.0.0.0/8'] },
    ]);
    expect(r.body.remaining).toBe(0);
  });

  it('EXPORT works in MOUNT v1 (showmount); MNT v1 is PROC_UNAVAIL; v4 is PROG_MISMATCH 1-3', async () => {
    expect(readExports((await call(5, undefined, 1)).body).map((e) => e.dir)).toEqual(['/tier-1', '/closed']);
    expect((await call(1, dirpath('/tier-1'), 1)).stat).toBe(accept_stat.PROC_UNAVAIL);
    const r = await call(0, undefined, 4);
    expect(r.stat).toBe(accept_stat.PROG_MISMATCH);
    expect([r.body.u32(), r.body.u32()]).toEqual([1, 3]);
    expect((await call(9)).stat).toBe(accept_stat.PROC_UNAVAIL);
  });

  it('answers over UDP, one datagram per call, and survives garbage datagrams', async () => {
    const dgram = await import('node:dgram');
    const s = dgram.createSocket('udp4');
    await new Promise<void>((res) => s.send(Buffer.from('not an rpc call at all, just bytes'), udpPort, '127.0.0.1', () => res()));
    await new Promise<void>((res) => s.send(Buffer.alloc(9000, 0xff), udpPort, '127.0.0.1', () => res()));
    s.close();
    const r = await rpcCallUdp(udpPort, '127.0.0.1', MOUNT_PROGRAM, 3, 1, dirpath('/tier-1'));
    expect(r.stat).toBe(accept_stat.SUCCESS);
    expect(r.body.u32()).toBe(mountstat3.MNT3_OK);
    expect(decodeHandle(r.body.opaque(64))?.zoneId).toBe(7);
    expect(udp.dropped).toBeGreaterThanOrEqual(1);
  });

  it('normaliseDirpath collapses slashes', () => {
    expect(normaliseDirpath('//a//b/')).toBe('/a/b');
    expect(normaliseDirpath('/')).toBe('/');
  });
});
