import type { Cidr } from '../util/cidr.js';

export type PortmapMode = 'auto' | 'on' | 'off';
export type SquashMode = 'none' | 'root' | 'all';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** Pull before write ('pull-first') or write at once and reconcile later ('available'). */
export type ConsistencyMode = 'pull-first' | 'available';

export interface ZoneConfig {
  /** Export path is `/<name>`. */
  name: string;
  /** Absolute directory (or dataset mountpoint) served. */
  path: string;
  /** Bytes enforced by the daemon, or null when unlimited (or, with `dataset`, enforced by ZFS). */
  quotaBytes: number | null;
  allow: Cidr[];
  /** ZFS dataset whose mountpoint is served (then `path` is resolved at start), or null. */
  dataset: string | null;
  /** The zone's own consistency, else [replication] consistency (the loader always fills it). */
  consistency?: ConsistencyMode;
}

export interface ZfsConfig {
  /** Default pool for new zones, or null (zones are then directories). */
  pool: string | null;
  /** Dataset below the pool that holds zone datasets. */
  datasetRoot: string;
}

export interface ClusterConfig {
  /** Other nodes' names (this node is always known too). */
  nodes: string[];
  /** Allow list of zones that come from the catalog. */
  zoneAllow: Cidr[];
  /** Cluster name; null/absent when the node is in no cluster yet. */
  name?: string | null;
  /** Absolute path of the cluster key file; null/absent: no key, echolocation is off. */
  keyFile?: string | null;
}

/** `[elp]`: echolocation announcements (src/elp). */
export interface ElpConfig {
  enabled: boolean;
  /** Multicast group and port (224.0.0.251:5353 when `mdns`). */
  group: string;
  port: number;
  /** IPv4 address of the interface to use, or null for every interface. */
  interface: string | null;
  mdns: boolean;
  intervalMs: number;
  unreachableAfterMs: number;
}

/** `[[peers]]`: a static peer reached by unicast UDP. */
export interface StaticPeer {
  address: string;
  host: string;
  port: number;
}

/** `[metrics]`: Prometheus text format on http://listen:port/metrics. */
export interface MetricsConfig {
  enabled: boolean;
  /** Address to serve on; loopback by default (metrics reveal zone names and usage). */
  listen: string;
  /** 0 picks a free port. */
  port: number;
}

/** `[replication]`: the peer protocol and pulls (src/replication, src/peer). */
export interface ReplicationConfig {
  enabled: boolean;
  /** Address the peer protocol listens on (default: the [nfs] listen address). */
  listen: string;
  /** 0 picks a free port. */
  port: number;
  /** Default for zones without their own. */
  consistency: ConsistencyMode;
  /** How long an NFS write waits for a pending pull before NFS3ERR_JUKEBOX. */
  pullWaitMs: number;
  /** Parallel transfers. */
  concurrency: number;
  /** Block transfer limit in bytes per second; 0 = unlimited. */
  maxBandwidthBytesPerSec: number;
}

export interface NfsConfig {
  listen: string;
  port: number;
  mountPort: number;
  portmap: PortmapMode;
  maxRecordSize: number | null;
  requirePrivilegedPort: boolean;
  /** Microseconds a connection is polled after a reply while nothing is in flight (0: off). */
  busyPollUs: number;
  squash: SquashMode;
  anonUid: number;
  anonGid: number;
}

export interface Config {
  /** The file it was loaded from (null for a built-in config such as --demo). */
  file: string | null;
  node: { name: string; stateDir: string | null; logLevel: LogLevel };
  nfs: NfsConfig;
  zones: ZoneConfig[];
  zfs: ZfsConfig;
  cluster: ClusterConfig;
  /** Absent: the defaults (enabled, 127.0.0.1:9586). */
  metrics?: MetricsConfig;
  /** Absent: the defaults (see src/config/load.ts elpConfigFromRaw). */
  elp?: ElpConfig;
  peers?: StaticPeer[];
  /** Absent: the defaults (src/config/load.ts replicationConfigFromRaw with the [nfs] listen address). */
  replication?: ReplicationConfig;
}
