import dgram from 'node:dgram';
import net from 'node:net';

/** True when a TCP listener can bind host:port right now (the probe is closed again). */
export function tcpPortFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** True when a UDP socket can bind host:port right now. */
export function udpPortFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, host, () => s.close(() => resolve(true)));
  });
}

/** The first port from `start` (at most `tries` of them) that is free for TCP on host, or null. */
export async function firstFreeTcpPort(start: number, host: string, tries = 50, except: number[] = []): Promise<number | null> {
  for (let p = start, i = 0; i < tries && p <= 65535; p++, i++) {
    if (except.includes(p)) continue;
    if (await tcpPortFree(p, host)) return p;
  }
  return null;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
