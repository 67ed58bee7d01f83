/**
 * The few NFSv3 calls the replication bench makes (RFC 1813): MNT, LOOKUP, CREATE, WRITE, COMMIT,
 * READ, GETATTR, over one TCP connection with AUTH_SYS root. In-process, so a latency sample is
 * network + server time, not process start-up.
 */
import { GvError } from '../errors.js';
import { RpcTcpClient, type RpcReply } from '../util/rpc-client.js';
import { XdrReader } from '../xdr/reader.js';
import { XdrWriter } from '../xdr/writer.js';

const NFS_PROGRAM = 100003;
const MOUNT_PROGRAM = 100005;
const PROC = { GETATTR: 1, LOOKUP: 3, READ: 6, WRITE: 7, CREATE: 8, COMMIT: 21 } as const;
const NFS3ERR_NOENT = 2;
const FATTR3_BYTES = 84;
const ROOT = { uid: 0, gid: 0, machinename: 'gvbench' };
export const UNSTABLE = 0;
export const FILE_SYNC = 2;

function results(reply: RpcReply, what: string): XdrReader {
  if (!reply.accepted || reply.stat !== 0) throw new GvError('PROTOCOL', `${what}: RPC not accepted (stat ${reply.stat})`);
  return reply.body;
}

function skipPostOpAttr(r: XdrReader): void {
  if (r.bool()) r.fixed(FATTR3_BYTES);
}

function skipWcc(r: XdrReader): void {
  if (r.bool()) r.fixed(24);
  skipPostOpAttr(r);
}

function nfsFail(what: string, status: number): GvError {
  return new GvError(status === NFS3ERR_NOENT ? 'ENOENT' : 'EIO', `${what}: nfsstat3 ${status}`, { nfsstat: status });
}

export class BenchNfsClient {
  private constructor(private readonly rpc: RpcTcpClient, readonly root: Buffer) {}

  /** MNT `/zone` on mountPort, then connect to nfsPort (both on 127.0.0.1, e.g. via a forward). */
  static async mount(nfsPort: number, mountPort: number, zone: string, timeoutMs = 5000): Promise<BenchNfsClient> {
    const m = await RpcTcpClient.connect(mountPort, '127.0.0.1', timeoutMs);
    let root: Buffer;
    try {
      const r = results(await m.call(MOUNT_PROGRAM, 3, 1, new XdrWriter().string(`/${zone}`).bytes(), { auth: ROOT, timeoutMs }), 'MNT');
      const status = r.u32();
      if (status !== 0) throw new GvError('EACCES', `MNT /${zone}: mountstat3 ${status}`);
      root = Buffer.from(r.opaque(64));
    } finally {
      m.close();
    }
    return new BenchNfsClient(await RpcTcpClient.connect(nfsPort, '127.0.0.1', timeoutMs), root);
  }

  close(): void {
    this.rpc.close();
  }

  private async call(proc: number, w: XdrWriter, timeoutMs = 30_000): Promise<XdrReader> {
    return results(await this.rpc.call(NFS_PROGRAM, 3, proc, w.bytes(), { auth: ROOT, timeoutMs }), `NFS proc ${proc}`);
  }

  /** The handle of `name` in `dir`, or null when it does not exist. */
  async lookup(dir: Buffer, name: string): Promise<Buffer | null> {
    const r = await this.call(PROC.LOOKUP, new XdrWriter().opaque(dir).string(name));
    const status = r.u32();
    if (status === NFS3ERR_NOENT) return null;
    if (status !== 0) throw nfsFail(`LOOKUP ${name}`, status);
    return Buffer.from(r.opaque(64));
  }

  /** CREATE (UNCHECKED, mode 0644): an existing file is opened, not truncated. */
  async create(dir: Buffer, name: string): Promise<Buffer> {
    const w = new XdrWriter().opaque(dir).string(name).u32(0);
    // sattr3: mode 0644, no uid/gid/size, times unchanged
    w.bool(true).u32(0o644).bool(false).bool(false).bool(false).u32(0).u32(0);
    const r = await this.call(PROC.CREATE, w);
    const status = r.u32();
    if (status !== 0) throw nfsFail(`CREATE ${name}`, status);
    if (!r.bool()) {
      const fh = await this.lookup(dir, name);
      if (!fh) throw new GvError('EIO', `CREATE ${name}: no handle and LOOKUP finds nothing`);
      return fh;
    }
    return Buffer.from(r.opaque(64));
  }

  async write(fh: Buffer, offset: number, data: Buffer, stable = UNSTABLE): Promise<number> {
    const w = new XdrWriter(128 + data.length).opaque(fh).u64(BigInt(offset)).u32(data.length).u32(stable).opaque(data);
    const r = await this.call(PROC.WRITE, w);
    const status = r.u32();
    skipWcc(r);
    if (status !== 0) throw nfsFail('WRITE', status);
    return r.u32();
  }

  async commit(fh: Buffer): Promise<void> {
    const r = await this.call(PROC.COMMIT, new XdrWriter().opaque(fh).u64(0n).u32(0));
    const status = r.u32();
    if (status !== 0) throw nfsFail('COMMIT', status);
  }

  async read(fh: Buffer, offset: number, count: number): Promise<{ data: Buffer; eof: boolean }> {
    const r = await this.call(PROC.READ, new XdrWriter().opaque(fh).u64(BigInt(offset)).u32(count));
    const status = r.u32();
    skipPostOpAttr(r);
    if (status !== 0) throw nfsFail('READ', status);
    r.u32();
    const eof = r.bool();
    return { data: r.opaque(count), eof };
  }

  async size(fh: Buffer): Promise<bigint> {
    const r = await this.call(PROC.GETATTR, new XdrWriter().opaque(fh));
    const status = r.u32();
    if (status !== 0) throw nfsFail('GETATTR', status);
    r.fixed(20);
    return r.u64();
  }

  /** Write `data` as file `name` (created or overwritten from offset 0), UNSTABLE + COMMIT. */
  async writeFile(name: string, data: Buffer, chunk = 1 << 20): Promise<void> {
    const fh = await this.create(this.root, name);
    for (let off = 0; off < data.length; off += chunk) {
      await this.write(fh, off, data.subarray(off, Math.min(data.length, off + chunk)));
    }
    await this.commit(fh);
  }
}
