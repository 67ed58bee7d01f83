import type { Logger } from 'pino';
import { startZoneService, type ApplyResult } from '../catalog/served-zones.js';
import { loadConfigFile } from '../config/load.js';
import { controlSocketPath } from '../control/protocol.js';
import { startControlServer } from '../control/server.js';
import type { Config, LogLevel, PortmapMode } from '../config/types.js';
import { GvError } from '../errors.js';
import { GvDatabase } from '../journal/db.js';
import { MOUNT_PROGRAM } from '../mount/constants.js';
import { createMountProgram } from '../mount/program.js';
import { createNfsProgram } from '../nfs/program.js';
import { IPPROTO_TCP, IPPROTO_UDP, type mapping } from '../portmap/constants.js';
import { RpcServer, type RpcServerOptions } from '../rpc/server.js';
import { UdpRpcServer } from '../rpc/udp.js';
import { MAX_IO } from '../nfs/constants.js';
import { BufferPool } from '../util/buffer-pool.js';
import type { ZoneFs } from '../vfs/types.js';
import { createLogger, notice } from './logger.js';
import { setupPortmap, type PortmapSetup } from './portmap-setup.js';
import { effectiveMetricsConfig } from '../metrics/config.js';
import { MetricsServer } from '../metrics/http.js';
import { GvMetrics } from '../metrics/registry.js';
import { instrumentProgram } from '../metrics/rpc.js';
import { collectZoneUsage } from '../metrics/zone-usage.js';
import { meteredZones } from '../vfs/metered.js';
import { journalNodeId } from '../journal/node-id.js';
import { JournalService } from '../journal/service.js';
import type { ZoneVersions } from '../journal/versions.js';
import { startElp } from '../elp/daemon.js';
import type { ElpService } from '../elp/service.js';
import { readClusterKey } from '../elp/cluster-key.js';
import type { AttachedZone } from '../journal/service.js';
import { gated } from '../vfs/gated.js';
import { REPLICATION_DEFAULTS } from '../config/load.js';
import { startPeerService, type PeerService } from '../peer/daemon.js';
import { LocalSource } from '../replication/local-source.js';
import { ReplicationService, type ReplicatedZone } from '../replication/service.js';
import type { Consistency, PullGate } from '../replication/source.js';
import { catalogSnapshotFor } from '../catalog/catalog.js';
import { startCatalogSync, type CatalogSync } from '../catalog/catalog-sync.js';
import { Zfs } from '../zfs/zfs.js';

const NFS_PROGRAM = 100003;

export interface DaemonOverrides {
  nfsPort?: number;
  mountPort?: number;
  stateDir?: string;
  logLevel?: LogLevel;
  portmap?: PortmapMode;
  /** Port the portmapper is served on / looked for (tests); default 111. */
  portmapPort?: number;
  /** Port of the /metrics listener (overrides [metrics] port; 0 picks one). */
  metricsPort?: number;
  logger?: Logger;
}

export interface Daemon {
  nfsPort: number;
  mountPort: number;
  portmapPort: number | null;
  portmapMode: PortmapSetup['mode'];
  /** Port of the Prometheus /metrics listener, or null when disabled or unavailable. */
  metricsPort: number | null;
  /** The zones served now (changes on reload). */
  readonly zones: readonly ZoneFs[];
  log: Logger;
  /** The control socket (`<state_dir>/gvd.sock`). */
  controlSocket: string;
  /** Per-zone versions (the change journal), by zone name; ELP announces them. */
  versions: ZoneVersions;
  /** Echolocation (null without a cluster key, or with [elp] enabled = false). */
  elp: ElpService | null;
  /** Port of the peer protocol, or null when replication is off (no cluster key, or disabled). */
  peerPort: number | null;
  /** Replication (null when off). */
  replication: ReplicationService | null;
  /** Re-read the config file and the catalog; open, change and close zones accordingly. */
  reload(): Promise<ApplyResult & { catalogVersion: number }>;
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
    // Zones from the config file and the catalog; reloaded on SIGHUP / control request.
    // Change journal, block hashes and versions of every zone (src/journal/service.ts).
    let onJournal: ((zone: string, kind: string) => void) | undefined;
    const nodeId = journalNodeId(db, stateDir);
    const journals = new JournalService(db, {
      nodeId, warn: (o, m) => log.warn(o, m), onRecord: (z, k) => onJournal?.(z, k),
    });
    const repCfg = config.replication ?? { ...REPLICATION_DEFAULTS, enabled: true, listen: config.nfs.listen };
    // Replication needs a cluster (key) and may be switched off; zones are gated either way (a
    // gate with nothing pending costs one map look-up per mutation).
    const clusterKey = repCfg.enabled && config.cluster.keyFile && config.cluster.name ? readClusterKey(config.cluster.keyFile) : null;
    let engine: ReplicationService | null = null;
    const gate: PullGate & { idle(zone: string): boolean } = {
      wait: (zone, path, ms) => engine?.wait(zone, path, ms) ?? null,
      idle: (zone) => engine === null || engine.idle(zone),
    };
    // The zones being served, with their journals (the replication engine applies through them).
    const attached = new Map<string, { att: AttachedZone; root: string }>();
    let consistencyOf: (zone: string) => Consistency = () => repCfg.consistency;
    const service = await startZoneService(
      config, db, log, () => (config.file ? loadConfigFile(config.file) : config), undefined,
      async (zone, spec) => {
        const att = await journals.attach(zone, spec.path);
        attached.set(spec.name, { att, root: spec.path });
        // metered(gated(journaled(local))): a write waits for a pending pull before it reaches
        // the journal; metering (outside, at the RPC seam) counts JUKEBOX answers per call.
        return gated(att.fs, {
          gate, pathOf: (id) => att.journal.pathOf(id), maxWaitMs: repCfg.pullWaitMs, consistency: () => consistencyOf(spec.name),
        });
      },
    );
    cleanups.push(() => service.set.closeAll());
    service.catalog.setNodeId(nodeId);
    consistencyOf = (zone) =>
      service.catalog.get(zone)?.consistency ?? config.zones.find((z) => z.name === zone)?.consistency ?? repCfg.consistency;
    /** Served zones whose journal is open (a closed zone drops out). */
    const liveZones = () => {
      const out: { name: string; root: string; att: AttachedZone }[] = [];
      for (const spec of service.set.specs()) {
        const a = attached.get(spec.name);
        if (!a || a.att.journal.isClosed) continue;
        out.push({ name: spec.name, root: a.root, att: a.att });
      }
      return out;
    };
    const registry = service.set.registry;
    const metricsCfg = effectiveMetricsConfig(config.metrics);
    const metrics = metricsCfg.enabled ? new GvMetrics() : null;
    onJournal = metrics?.journalMeter(journals.versions);
    metrics?.setZoneUsage(() => collectZoneUsage(registry.list()));

    // One pool of 1 MiB buffers for WRITE records and READ payloads (at most 32 MiB), shared by
    // the RPC servers and the NFS program.
    const pool = new BufferPool(MAX_IO + 64 * 1024, 32);
    const nfsProgram = createNfsProgram({
      pool,
      // Bytes read/written and errors per zone are counted by a ZoneFs wrapper (src/vfs/metered.ts).
      zones: metrics ? meteredZones(registry, (z) => metrics.zoneMeter(z.name)) : registry,
      squash: { mode: config.nfs.squash, anonUid: config.nfs.anonUid, anonGid: config.nfs.anonGid },
      log: (obj, msg) => log.warn(obj, msg),
    });
    const mountProgram = createMountProgram({ exports: service.set.exports, log: (o, m) => log.info(o, m) });
    // Calls by program/procedure/status and their latency (src/metrics/rpc.ts).
    const nfs = metrics ? instrumentProgram(nfsProgram, metrics) : nfsProgram;
    const mount = metrics ? instrumentProgram(mountProgram, metrics) : mountProgram;
    const rpcOpts: RpcServerOptions = {
      pool,
      maxRecordSize: config.nfs.maxRecordSize ?? undefined,
      requirePrivilegedPort: config.nfs.requirePrivilegedPort,
      busyPollUs: config.nfs.busyPollUs,
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
    // No busy polling on the MOUNT listener: its calls are rare, and "nothing in flight" is
    // judged per listener, so a poll there could hold up NFS calls on the other one.
    const mountServer = new RpcServer({ ...rpcOpts, busyPollUs: 0 });
    mountServer.register(mount);
    mountServer.register(nfs);
    closers.push(() => mountServer.close(4000));
    if (wantMount !== nfsPort || wantMount === 0) mountPort = await mountServer.listen(wantMount, host);
    const mountUdp = new UdpRpcServer(mountServer, { onError: (err, where) => log.debug({ err: String(err), where }, 'udp error') });
    closers.push(() => mountUdp.close(1000));
    metrics?.addRpcListener('nfs', nfsServer);
    metrics?.addRpcListener('mount', mountServer);
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

    // The peer protocol (src/peer): this node's zones, journal and catalog served to authenticated
    // cluster members; before ELP, which announces its address.
    let peer: PeerService | null = null;
    let elp: ElpService | null = null;
    if (clusterKey) {
      const source = new LocalSource({
        zones: () => liveZones().map((z) => ({ name: z.name, root: z.root, journal: z.att.journal })),
        catalog: catalogSnapshotFor(service.catalog),
        // A zone's data goes to its members only (the catalog itself goes to every cluster node).
        mayRead: (caller, zone) => service.catalog.get(zone)?.members.includes(caller.nodeName) ?? false,
      });
      const elpRef = () => elp;
      peer = await startPeerService({
        stateDir, nodeName: config.node.name, clusterKey, db, source, listen: repCfg.listen, port: repCfg.port,
        addressesOf: (id) => elpRef()?.peers().find((p) => p.id === id)?.addresses ?? [],
        log: (level, o, m) => log[level](o, m),
      });
      const p = peer;
      closers.push(() => p.close());
    }

    // Echolocation (src/elp): announce zone versions, hear the other nodes'. Off without a cluster key.
    const zoneVersions: ZoneVersions = journals.versions;
    elp = await startElp({
      config, stateDir, versions: zoneVersions, catalogVersion: () => service.catalog.version(),
      listen: peer ? repCfg.listen : host, port: peer ? peer.port : nfsPort,
      log: (level, o, m) => log[level](o, m), registry: metrics?.registry,
    });
    const elpSvc = elp;
    if (elpSvc) closers.push(() => elpSvc.stop());

    // Replication (src/replication) and catalog replication (src/catalog/catalog-sync.ts).
    let catalogSync: CatalogSync | null = null;
    if (peer && elpSvc) {
      const pool = peer.pool;
      const eng = new ReplicationService({
        db, nodeId, nodeName: config.node.name, directory: elpSvc, connector: pool,
        zones: (): ReplicatedZone[] => liveZones().map((z) => ({
          name: z.name, root: z.root, journal: z.att.journal, consistency: consistencyOf(z.name),
          members: service.catalog.get(z.name)?.members ?? [],
          space: service.set.get(z.name),
        })),
        log: { warn: (o, m) => log.warn(o, m), info: (o, m) => log.info(o, m) },
        options: {
          concurrency: repCfg.concurrency, pullWaitMs: repCfg.pullWaitMs,
          maxBandwidthBytesPerSec: repCfg.maxBandwidthBytesPerSec > 0 ? repCfg.maxBandwidthBytesPerSec : undefined,
        },
      });
      engine = eng;
      catalogSync = startCatalogSync({
        catalog: service.catalog, directory: elpSvc, connector: pool, selfName: config.node.name, nodeId,
        zfs: new Zfs(), config, stateDir, log,
        onChanged: async () => {
          await service.reload();
          eng.kick();
        },
      });
      const cs = catalogSync;
      closers.push(() => cs.stop());
      eng.start();
      closers.push(() => eng.stop());
    }

    const startedAt = new Date().toISOString();
    const control = await startControlServer(controlSocketPath(stateDir), {
      status: async () => ({
        pid: process.pid, node: config.node.name, startedAt, listen: host, nfsPort, mountPort, portmapPort: pm.port,
        portmap: pm.mode, catalogVersion: service.catalog.version(),
        zones: service.set.specs().map((z) => ({
          name: z.name, zoneId: service.set.get(z.name)?.zoneId ?? null, path: z.path, source: z.source, dataset: z.dataset,
          quotaBytes: z.quotaBytes, usedBytes: z.dataset ? null : Number(service.set.get(z.name)?.usage.used ?? 0n),
          version: journals.versions.get(z.name)?.toString() ?? null,
        })),
        elp: elp ? elpStatus(elp) : null,
      }),
      reload: () => service.reload(),
      ...(engine ? {
        replication: async (req: { zone?: string }) => engine!.status().filter((z) => !req.zone || z.zone === req.zone),
        conflicts: async (req: { zone?: string }) => engine!.conflicts(req.zone),
      } : {}),
      nodes: async () => (elp ? { enabled: true, ...elp.snapshot() } : { enabled: false, reason: 'echolocation is off (no [cluster] key_file, or [elp] enabled = false)' }),
    }, (err) => log.warn({ err: String(err) }, 'control request failed'));
    closers.push(() => control.close());

    // Prometheus /metrics, loopback by default. Metrics are not worth refusing to serve NFS over:
    // a busy port is logged and the daemon runs without them.
    let metricsPort: number | null = null;
    let metricsServer: MetricsServer | null = null;
    if (metrics) {
      const srv = new MetricsServer(metrics, { log: (o, m) => log.warn(o, m) });
      const want = overrides.metricsPort ?? metricsCfg.port;
      try {
        metricsPort = await srv.listen(want, metricsCfg.listen);
        metricsServer = srv;
        closers.push(() => srv.close());
      } catch (err) {
        log.warn({ err: String(err), listen: metricsCfg.listen, port: want }, 'metrics endpoint unavailable; serving without it (set [metrics] port, or enabled = false)');
      }
    }

    notice(log, { nfsPort, mountPort, portmapPort: pm.port, portmap: pm.mode, metricsPort, peerPort: peer?.port ?? null, listen: host, zones: service.set.zones().map((z) => `/${z.name}`), control: control.path }, 'gvd ready');

    let stopping: Promise<void> | null = null;
    return {
      nfsPort,
      mountPort,
      portmapPort: pm.port,
      portmapMode: pm.mode,
      metricsPort,
      get zones() {
        return service.set.zones();
      },
      log,
      controlSocket: control.path,
      versions: journals.versions,
      elp,
      peerPort: peer?.port ?? null,
      replication: engine,
      reload: () => service.reload(),
      stop: () => {
        stopping ??= (async () => {
          // First thing, before any log line or await: the NFS and MOUNT listeners stop accepting
          // (synchronously inside close(), which then drains their in-flight calls).
          const rpcClosed = [nfsServer.close(4000), mountServer.close(4000), mountUdp.close(1000)];
          log.info({}, 'gvd stopping');
          // Stop every other listener at once too, then close the zones (fsyncing open files)
          // and the database. Unregistering from rpcbind and closing the control socket run
          // while the calls drain.
          closers.splice(0);
          // Pulls stop first (they write into zones), then the peer channel.
          await engine?.stop().catch((err) => log.warn({ err: String(err) }, 'replication stop failed'));
          await catalogSync?.stop().catch((err) => log.warn({ err: String(err) }, 'catalog sync stop failed'));
          await Promise.all([
            peer?.close().catch((err) => log.warn({ err: String(err) }, 'peer protocol close failed')),
            ...rpcClosed,
            control.close().catch((err) => log.warn({ err: String(err) }, 'control socket close failed')),
            pm.stop().catch((err) => log.warn({ err: String(err) }, 'portmap stop failed')),
            metricsServer?.close(),
            elp?.stop().catch((err) => log.warn({ err: String(err) }, 'elp stop failed')),
          ]);
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

/** Per zone: this node's version and each peer's advertised one (for gv status). */
function elpStatus(elp: ElpService): { cluster: string; id: string; zones: Record<string, string>; peers: { name: string; id: string; state: string; zones: Record<string, string> }[] } {
  const snap = elp.snapshot();
  return {
    cluster: snap.cluster, id: snap.self.id, zones: snap.self.zones,
    peers: snap.peers.map((p) => ({ name: p.name, id: p.id, state: p.state, zones: p.zones })),
  };
}
