/**
 * The multicast beacon: ELP packets inside DNS messages sent with multicast-dns, on a GrapeVine
 * group and port by default (239.255.71.86:5386) or on standard mDNS (224.0.0.251:5353, `mdns`),
 * where the node is also announced as a DNS-SD service `_grapevine._tcp` that avahi-browse lists.
 * Static peers get the same datagrams by unicast UDP from the same socket (which also receives
 * theirs), for networks where multicast does not pass.
 *
 * The packet rides in a TXT record named `_gvelp._udp.local`, split into strings of at most 255
 * bytes. Note on multicast-dns: `interface` alone also binds the socket to that address (and then
 * no multicast arrives), so the socket is always bound to 0.0.0.0.
 */
import makeMdns from 'multicast-dns';
import type { Answer } from 'dns-packet';
import { Listeners, type Beacon, type BeaconFrom, type ReceiveListener } from './beacon.js';

export const ELP_RECORD = '_gvelp._udp.local';
export const SERVICE_TYPE = '_grapevine._tcp.local';
export const DEFAULT_GROUP = '239.255.71.86';
export const DEFAULT_PORT = 5386;
export const MDNS_GROUP = '224.0.0.251';
export const MDNS_PORT = 5353;

/** DNS-SD description of this node (mdns mode). */
export interface ServiceInfo {
  /** Instance name (the node name). */
  instance: string;
  /** Port advertised in SRV (the peer-protocol / NFS port). */
  port: number;
  /** IPv4 addresses for A records. */
  addresses: string[];
  /** key=value strings for the service's TXT record, computed on each announcement. */
  txt: () => string[];
}

export interface MulticastBeaconOptions {
  group: string;
  port: number;
  /** IPv4 address of the interface to use; null: every interface (multicast-dns default). */
  interface: string | null;
  /** Static peers, sent every packet by unicast. */
  peers: BeaconFrom[];
  /** Announce as `_grapevine._tcp` too (meant for mdns mode). */
  service?: ServiceInfo;
  /** Warnings from the socket (membership failures, ...). */
  onWarning?: (err: Error) => void;
}

type Mdns = ReturnType<typeof makeMdns>;

function chunks(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 255) out.push(buf.subarray(i, Math.min(buf.length, i + 255)));
  return out.length ? out : [Buffer.alloc(0)];
}

export class MulticastBeacon implements Beacon {
  private mdns: Mdns | null = null;
  private readonly listeners = new Listeners();

  constructor(private readonly o: MulticastBeaconOptions) {}

  async start(): Promise<void> {
    if (this.mdns) return;
    const m = makeMdns({
      port: this.o.port,
      ip: this.o.group,
      ...(this.o.interface ? { interface: this.o.interface } : {}),
      bind: '0.0.0.0',
      reuseAddr: true,
      loopback: true,
    } as Parameters<typeof makeMdns>[0]);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        m.removeListener('ready', onReady);
        reject(err);
      };
      const onReady = () => {
        m.removeListener('error', onError);
        resolve();
      };
      m.once('error', onError);
      m.once('ready', onReady);
    }).catch((err) => {
      m.destroy();
      throw err;
    });
    m.on('error', (err: Error) => this.o.onWarning?.(err));
    m.on('warning', (err: Error) => this.o.onWarning?.(err));
    m.on('response', (res, rinfo) => {
      for (const a of res.answers ?? []) {
        if (a.type !== 'TXT' || a.name !== ELP_RECORD) continue;
        const data = Array.isArray(a.data) ? a.data : [a.data];
        const buf = Buffer.concat(data.map((d) => (typeof d === 'string' ? Buffer.from(d) : Buffer.from(d))));
        this.listeners.emit(buf, { address: rinfo.address, port: rinfo.port });
      }
    });
    if (this.o.service) {
      m.on('query', (q, rinfo) => {
        const wants = (q.questions ?? []).some((x) => x.name === SERVICE_TYPE || x.name === '_services._dns-sd._udp.local');
        if (!wants) return;
        // Legacy unicast queries (source port not the mDNS port) get a unicast answer.
        const to = rinfo.port !== this.o.port ? { address: rinfo.address, port: rinfo.port } : undefined;
        m.respond({ answers: this.serviceRecords() }, to as never, () => undefined);
      });
    }
    this.mdns = m;
  }

  send(buf: Buffer): Promise<void> {
    const m = this.mdns;
    if (!m) return Promise.reject(new Error('beacon not started'));
    const answers: Answer[] = [{ type: 'TXT', name: ELP_RECORD, ttl: 0, data: chunks(buf) } as Answer];
    const targets: (BeaconFrom | undefined)[] = [undefined, ...this.o.peers];
    const additionals = this.o.service ? this.serviceRecords() : [];
    return Promise.all(
      targets.map(
        (to) =>
          new Promise<void>((resolve, reject) => {
            m.respond({ answers, additionals: to ? [] : additionals }, to as never, (err: Error | null) => (err ? reject(err) : resolve()));
          }),
      ),
    ).then(() => undefined);
  }

  onReceive(cb: ReceiveListener): () => void {
    return this.listeners.add(cb);
  }

  close(): Promise<void> {
    const m = this.mdns;
    this.mdns = null;
    if (!m) return Promise.resolve();
    // mdns mode: say goodbye (the service records again with TTL 0, RFC 6762 section 10.1), or
    // avahi and other caches keep listing a stopped node until its 120 s TTL runs out.
    const goodbye = this.o.service
      ? new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 1000);
          m.respond({ answers: this.serviceRecords(0) }, () => {
            clearTimeout(t);
            resolve();
          });
        })
      : Promise.resolve();
    return goodbye.then(() => new Promise((resolve) => m.destroy(() => resolve())));
  }

  private serviceRecords(ttl = 120): Answer[] {
    const s = this.o.service!;
    const inst = `${s.instance}.${SERVICE_TYPE}`;
    const host = `${s.instance}.gv.local`;
    const out: Answer[] = [
      { type: 'PTR', name: '_services._dns-sd._udp.local', ttl, data: SERVICE_TYPE },
      { type: 'PTR', name: SERVICE_TYPE, ttl, data: inst },
      { type: 'SRV', name: inst, ttl, data: { port: s.port, target: host, priority: 0, weight: 0 } },
      { type: 'TXT', name: inst, ttl, data: s.txt().map((t) => Buffer.from(t)) },
    ] as Answer[];
    for (const a of s.addresses) out.push({ type: 'A', name: host, ttl, data: a } as Answer);
    return out;
  }
}
