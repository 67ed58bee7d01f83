import fs from 'node:fs';
import type { Logger } from 'pino';
import { sqliteZoneIds, assignZoneIds } from '../config/zone-ids.js';
import type { Config, LogLevel, PortmapMode } from '../config/types.js';
import { GvError } from '../errors.js';
import { GvDatabase } from '../journal/db.js';
import { MOUNT_PROGRAM } from '../mount/constants.js';
import { createMountProgram, type MountExport } from '../mount/program.js';
import { createNfsProgram, type ZoneRegistry } from '../nfs/program.js';
import { IPPROTO_TCP, IPPROTO_UDP, type mapping } from '../portmap/constants.js';
import { RpcServer, type RpcServerOptions } from '../rpc/server.js';
import { UdpRpcServer } from '../rpc/udp.js';
import { matchesAny } from '../util/cidr.js';
import { formatSize } from '../util/size.js';
import { LocalZoneFs } from '../vfs/local.js';
import type { ZoneFs } from '../vfs/types.js';
import { createLogger, notice } from './logger.js';
import { setupPortmap, type PortmapSetup } from './portmap-setup.js';

const NFS_PROGRAM = 100003;

export interface DaemonOverrides {
  nfsPort?: number;
  mountPort?: number;
  stateDir?: string;
  logLevel?: LogLevel;
  portmap?: PortmapMode;
  /** Port the portmapper is served on / looked for (tests); default 111. */
  portmapPort?: number;
  logger?: Logger;
}

export interface Daemon {
  nfsPort: number;
  mountPort: number;
  portmapPort: number | null;
  portmapMode: PortmapSetup['mode'];
  zones: readonly ZoneFs[];
  log: Logger;
  /** Stop accepting, finish in-flight calls, close zones and the database. Idempotent. */
  stop(): Promise<void>;
}

/** Compose the node: database, zones, NFS + MOUNT (+ portmap) servers. */
export async function startDaemon(config: Config, overrides: DaemonOverrides = {}): Promise<Daemon> {
  const log = overrides.logger ?? createLogger(overrides.logLevel ?? config.node.logLevel, { node: config.node.name });
  const stateDir = overrides.stateDir ?? config.node.stateDir;
  if (!stateDir) {
    throw new GvError('CONFIG', `${config.file ?? 'config'}: node.state_dir: missing (set it or pass --state-dir)`);
  }
  // Listeners and the portmapper close first, then zones and the database; each list in reverse.
  const closers: (() => Promise<void> | void)[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  const runAll = async (list: (() => Promise<void> | void)[]) => {
    for (const c of list.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ err: String(err) }, 'error while stopping');
      }
    }
  };
  const unwind = async () => {
    await runAll(closers);
    await runAll(cleanups);
  };
  try {
    const db = GvDatabase.open(stateDir);
    cleanups.push(() => db.close());
    const ids = assignZoneIds(sqliteZoneIds(db.sqlite), config.zones.map((z) => z.name));

    const zones: ZoneFs[] = [];
    const exports: MountExport[] = [];
    for (const zc of config.zones) {
      fs.mkdirSync(zc.path, { recursive: true });
      const zone = await LocalZoneFs.open({
        name: zc.name, zoneId: ids.get(zc.name)!, root: zc.path, db, quotaBytes: zc.quotaBytes === null ? undefined : BigInt(zc.quotaBytes),
      });
      cleanups.push(() => zone.close());
      zones.push(zone);
      exports.push({ zone, allow: zc.allow });
      log.info({ zone: zc.name, zoneId: zone.zoneId, path: zc.path, quota: zc.quotaBytes === null ? null : formatSize(zc.quotaBytes), allow: zc.allow.map((c) => c.text) }, 'zone open');
    }
    const byId = new Map(zones.map((z) => [z.zoneId, z]));
    const allowCache = new Map<string, boolean>();
    const allowById = new Map(exports.map((e) => [e.zone.zoneId, e.allow]));
    // `allows` is for the NFS program: handles must not outlive the MOUNT allow-list check.
    const registry: ZoneRegistry & { allows(zoneId: number, address: string): boolean } = {
      byId: (id) => byId.get(id),
      list: () => zones,
      allows: (id, address) => {
        // Checked on every NFS call: memoise per (zone, address), bounded.
        const key = `${id} ${address}`;
        let ok = allowCache.get(key);
        if (ok === undefined) {
          ok = matchesAny(address, allowById.get(id) ?? []);
          if (allowCache.size >= 4096) allowCache.clear();
          allowCache.set(key, ok);
        }
        return ok;
      },
    };

    const nfs = createNfsProgram({
      zones: registry,
      squash: { mode: config.nfs.squash, anonUid: config.nfs.anonUid, anonGid: config.nfs.anonGid },
      log: (obj, msg) => log.warn(obj, msg),
    });
    const mount = createMountProgram({ exports: () => exports, log: (o, m) => log.info(o, m) });
    const rpcOpts: RpcServerOptions = {
      maxRecordSize: config.nfs.maxRecordSize ?? undefined,
      requirePrivilegedPort: config.nfs.requirePrivilegedPort,
      onError: (err, where) => log.warn({ err: err instanceof Error ? err.stack : String(err), where }, 'rpc error'),
    };
    const host = config.nfs.listen;

    // NFS listener (MOUNT answered there too: some clients ask the NFS port for it).
    const nfsServer = new RpcServer(rpcOpts);
    nfsServer.register(nfs);
    nfsServer.register(mount);
    closers.push(() => nfsServer.close(4000));
    const nfsPort = await nfsServer.listen(overrides.nfsPort ?? config.nfs.port, host);

    // MOUNT listener, TCP and UDP (NFS answered there too).
    const wantMount = overrides.mountPort ?? config.nfs.mountPort;
    let mountPort = nfsPort;
    let mountUdpOk = false;
    const mountServer = new RpcServer(rpcOpts);
    mountServer.register(mount);
    mountServer.register(nfs);
    closers.push(() => mountServer.close(4000));
    if (wantMount !== nfsPort || wantMount === 0) mountPort = await mountServer.listen(wantMount, host);
    const mountUdp = new UdpRpcServer(mountServer, { onError: (err, where) => log.debug({ err: String(err), where }, 'udp error') });
    closers.push(() => mountUdp.close(1000));
    try {
      await mountUdp.listen(mountPort, host);
      mountUdpOk = true;
    } catch (err) {
      log.warn({ err: String(err), port: mountPort }, 'MOUNT over UDP unavailable (TCP only)');
    }

    const services: mapping[] = [{ prog: NFS_PROGRAM, vers: 3, prot: IPPROTO_TCP, port: nfsPort }];
    for (const vers of [1, 2, 3]) {
      services.push({ prog: MOUNT_PROGRAM, vers, prot: IPPROTO_TCP, port: mountPort });
      if (mountUdpOk) services.push({ prog: MOUNT_PROGRAM, vers, prot: IPPROTO_UDP, port: mountPort });
    }
    const pm = await setupPortmap({ mode: overrides.portmap ?? config.nfs.portmap, listen: host, services, log, port: overrides.portmapPort });
    closers.push(() => pm.stop());

    notice(log, { nfsPort, mountPort, portmapPort: pm.port, portmap: pm.mode, listen: host, zones: zones.map((z) => `/${z.name}`) }, 'gvd ready');

    let stopping: Promise<void> | null = null;
    return {
      nfsPort,
      mountPort,
      portmapPort: pm.port,
      portmapMode: pm.mode,
      zones,
      log,
      stop: () => {
        stopping ??= (async () => {
          log.info({}, 'gvd stopping');
          // Unregister first, stop every listener at once (each drains its in-flight calls), then
          // close the zones and the database.
          closers.splice(0);
          await pm.stop().catch((err) => log.warn({ err: String(err) }, 'portmap stop failed'));
          await Promise.all([nfsServer.close(4000), mountServer.close(4000), mountUdp.close(1000)]);
          await runAll(cleanups);
          log.info({}, 'gvd stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}
