import type { Logger } from 'pino';
import type { PortmapMode } from '../config/types.js';
import { GvError } from '../errors.js';
import { IPPROTO_TCP, IPPROTO_UDP, PMAP_PORT, PMAP_PROG, PMAP_VERS, type mapping } from '../portmap/constants.js';
import { portmapperAnswers, registerWithPortmapper } from '../portmap/client.js';
import { createPortmapProgram } from '../portmap/program.js';
import { RpcServer } from '../rpc/server.js';
import { UdpRpcServer } from '../rpc/udp.js';
import { isRoot, tcpPortFree } from '../util/ports.js';

export interface PortmapSetup {
  /** 'served': our own portmapper; 'registered': an rpcbind we registered with; 'off'. */
  mode: 'served' | 'registered' | 'off';
  port: number | null;
  stop(): Promise<void>;
}

export interface PortmapSetupOptions {
  mode: PortmapMode;
  listen: string;
  /** The mappings of our own services (nfs, mount). */
  services: mapping[];
  log: Logger;
  /** Port to serve on (tests); default 111. */
  port?: number;
}

async function serve(opts: PortmapSetupOptions, port: number): Promise<PortmapSetup> {
  const prog = createPortmapProgram({ log: (o, m) => opts.log.debug(o, m) });
  const tcp = new RpcServer({ onError: (err, where) => opts.log.warn({ err: String(err), where }, 'portmap error') });
  tcp.register(prog);
  const bound = await tcp.listen(port, opts.listen);
  const udp = new UdpRpcServer(tcp, { onError: (err, where) => opts.log.debug({ err: String(err), where }, 'portmap udp error') });
  let udpOk = true;
  try {
    await udp.listen(bound, opts.listen);
  } catch (err) {
    udpOk = false;
    opts.log.warn({ err: String(err), port: bound }, 'portmapper: UDP port unavailable, serving TCP only');
  }
  prog.table.set({ prog: PMAP_PROG, vers: PMAP_VERS, prot: IPPROTO_TCP, port: bound });
  if (udpOk) prog.table.set({ prog: PMAP_PROG, vers: PMAP_VERS, prot: IPPROTO_UDP, port: bound });
  for (const m of opts.services) prog.table.set(m);
  return {
    mode: 'served',
    port: bound,
    stop: async () => {
      await Promise.all([tcp.close(1000), udp.close(1000)]);
    },
  };
}

function offHint(opts: PortmapSetupOptions, why: string): PortmapSetup {
  const nfs = opts.services.find((m) => m.prog === 100003)?.port;
  const mnt = opts.services.find((m) => m.prog === 100005)?.port;
  opts.log.info(
    { why, nfsPort: nfs, mountPort: mnt },
    `no portmapper: clients must name the ports (mount -o port=${nfs},mountport=${mnt}; libnfs ?nfsport=${nfs}&mountport=${mnt})`,
  );
  return { mode: 'off', port: null, stop: async () => {} };
}

/**
 * portmap = "on": serve port 111 ourselves or fail. "auto": serve it when root and it is free, else
 * register with the rpcbind answering on it, else nothing (with a hint). "off": nothing.
 */
export async function setupPortmap(opts: PortmapSetupOptions): Promise<PortmapSetup> {
  const port = opts.port ?? PMAP_PORT;
  if (opts.mode === 'off') return offHint(opts, 'portmap = "off"');
  if (opts.mode === 'on') {
    try {
      return await serve(opts, port);
    } catch (err) {
      throw new GvError('CONFIG', `nfs.portmap = "on" but port ${port} cannot be served: ${(err as Error).message}`);
    }
  }
  if ((port >= 1024 || isRoot()) && (await tcpPortFree(port, opts.listen))) {
    try {
      return await serve(opts, port);
    } catch (err) {
      opts.log.warn({ err: String(err) }, 'portmapper: could not serve, trying an existing one');
    }
  }
  const pmHost = '127.0.0.1';
  if (await portmapperAnswers(pmHost, port, 1000)) {
    try {
      const unregister = await registerWithPortmapper(opts.services, pmHost, port);
      opts.log.info({ port }, 'registered with the running portmapper');
      return {
        mode: 'registered',
        port,
        stop: async () => {
          try {
            await unregister();
          } catch (err) {
            opts.log.warn({ err: String(err) }, 'could not unregister from the portmapper');
          }
        },
      };
    } catch (err) {
      return offHint(opts, `the portmapper on ${pmHost}:${port} refused our registration: ${(err as Error).message}`);
    }
  }
  return offHint(opts, isRoot() ? `port ${port} is taken by something that is not a portmapper` : `not root, and no portmapper answers on ${pmHost}:${port}`);
}
