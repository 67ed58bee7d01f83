import { GvError } from '../errors.js';
import { accept_stat } from '../rpc/message.js';
import { RpcTcpClient } from '../util/rpc-client.js';
import { XdrWriter } from '../xdr/writer.js';
import { PMAP_PORT, PMAP_PROG, PMAP_VERS, pmapproc, type mapping } from './constants.js';
import { readMapping, writeMapping } from './program.js';

/**
 * A portmapper v2 client over TCP, to register our programs with an rpcbind already running on
 * the host (and unregister them on shutdown), and to probe whether one answers at all.
 */
export class PortmapClient {
  private constructor(private readonly rpc: RpcTcpClient) {}

  static async connect(host = '127.0.0.1', port = PMAP_PORT, timeoutMs = 2000): Promise<PortmapClient> {
    return new PortmapClient(await RpcTcpClient.connect(port, host, timeoutMs));
  }

  private async call(proc: pmapproc, args: Buffer, timeoutMs: number) {
    const reply = await this.rpc.call(PMAP_PROG, PMAP_VERS, proc, args, { timeoutMs });
    if (!reply.accepted || reply.stat !== accept_stat.SUCCESS) {
      throw new GvError('PROTOCOL', `portmapper refused call ${proc} (${reply.accepted ? 'accept' : 'reject'}_stat ${reply.stat})`);
    }
    return reply.body;
  }

  async ping(timeoutMs = 2000): Promise<void> {
    await this.call(pmapproc.NULL, Buffer.alloc(0), timeoutMs);
  }

  async set(m: mapping, timeoutMs = 2000): Promise<boolean> {
    return (await this.call(pmapproc.SET, writeMapping(new XdrWriter(16), m).bytes(), timeoutMs)).bool();
  }

  async unset(prog: number, vers: number, timeoutMs = 2000): Promise<boolean> {
    const args = writeMapping(new XdrWriter(16), { prog, vers, prot: 0, port: 0 }).bytes();
    return (await this.call(pmapproc.UNSET, args, timeoutMs)).bool();
  }

  async getport(prog: number, vers: number, prot: number, timeoutMs = 2000): Promise<number> {
    const args = writeMapping(new XdrWriter(16), { prog, vers, prot, port: 0 }).bytes();
    return (await this.call(pmapproc.GETPORT, args, timeoutMs)).u32();
  }

  async dump(timeoutMs = 2000): Promise<mapping[]> {
    const r = await this.call(pmapproc.DUMP, Buffer.alloc(0), timeoutMs);
    const out: mapping[] = [];
    for (let i = 0; i < 10_000 && r.bool(); i++) out.push(readMapping(r));
    return out;
  }

  close(): void {
    this.rpc.close();
  }
}

/** True when a portmapper answers NULL on host:port within the timeout. */
export async function portmapperAnswers(host = '127.0.0.1', port = PMAP_PORT, timeoutMs = 1000): Promise<boolean> {
  let c: PortmapClient | null = null;
  try {
    c = await PortmapClient.connect(host, port, timeoutMs);
    await c.ping(timeoutMs);
    return true;
  } catch {
    return false;
  } finally {
    c?.close();
  }
}

/**
 * Register mappings with an external portmapper, replacing stale registrations of the same
 * (prog, vers) left by an earlier run. Returns a function that unregisters them again.
 */
export async function registerWithPortmapper(
  maps: readonly mapping[], host = '127.0.0.1', port = PMAP_PORT,
): Promise<() => Promise<void>> {
  const c = await PortmapClient.connect(host, port);
  try {
    const pairs = new Map<string, { prog: number; vers: number }>();
    for (const m of maps) pairs.set(`${m.prog}/${m.vers}`, { prog: m.prog, vers: m.vers });
    for (const p of pairs.values()) await c.unset(p.prog, p.vers);
    for (const m of maps) {
      if (!(await c.set(m))) throw new GvError('EBUSY', `portmapper refused SET ${m.prog} v${m.vers} prot ${m.prot} port ${m.port}`);
    }
  } finally {
    c.close();
  }
  return async () => {
    const u = await PortmapClient.connect(host, port);
    try {
      const pairs = new Set<string>();
      for (const m of maps) {
        const k = `${m.prog}/${m.vers}`;
        if (pairs.has(k)) continue;
        pairs.add(k);
        await u.unset(m.prog, m.vers);
      }
    } finally {
      u.close();
    }
  };
}
