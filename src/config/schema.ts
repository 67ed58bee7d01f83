import { z } from 'zod';

/**
 * The shape of zones.toml as zod schemas. Every object is strict (an unknown key is an error, so a
 * typo never silently falls back to a default). Semantic checks (sizes, CIDRs, names) run in
 * load.ts so their messages can name the key path.
 */
export const ZONE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const port = z.number().int('must be a whole number').min(0, 'port out of range (0-65535)').max(65535, 'port out of range (0-65535)');
const id32 = z.number().int('must be a whole number').min(0).max(0xffffffff);

export const nodeSchema = z.strictObject({
  name: z.string().optional(),
  state_dir: z.string().min(1, 'must not be empty').optional(),
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
});

export const nfsSchema = z.strictObject({
  listen: z.string().optional(),
  port: port.optional(),
  mount_port: port.optional(),
  portmap: z.enum(['auto', 'on', 'off']).optional(),
  max_record_size: z.union([z.number(), z.string()]).optional(),
  require_privileged_port: z.boolean().optional(),
  busy_poll_us: z.number().int('must be a whole number').min(0, 'must be 0 (off) to 1000').max(1000, 'must be 0 (off) to 1000').optional(),
  squash: z.enum(['none', 'root', 'all']).optional(),
  anon_uid: id32.optional(),
  anon_gid: id32.optional(),
});

export const zoneSchema = z.strictObject({
  path: z.string().min(1, 'must not be empty').optional(),
  quota: z.union([z.string(), z.number()]).optional(),
  allow: z.array(z.string()).optional(),
  /** A ZFS dataset served instead of `path` (its mountpoint); the quota is the dataset's. */
  dataset: z.string().min(1, 'must not be empty').optional(),
  /** Pull before write for this zone; absent: [replication] consistency. */
  consistency: z.enum(['pull-first', 'available'], 'must be "pull-first" or "available"').optional(),
});

export const zfsSchema = z.strictObject({
  /** Pool new zones are created in (`gv zone create`); absent: zones are directories. */
  pool: z.string().min(1, 'must not be empty').optional(),
  /** Parent dataset below the pool: `<pool>/<dataset_root>/<zone>`. */
  dataset_root: z.string().min(1, 'must not be empty').optional(),
});

export const clusterSchema = z.strictObject({
  /** Names of the other nodes zones may list as members (this node is always known). */
  nodes: z.array(z.string()).optional(),
  /** Clients allowed to mount zones from the catalog (zones in this file have their own allow). */
  zone_allow: z.array(z.string()).optional(),
  /** Cluster name (in every ELP packet, hashed) and the 32-byte shared secret that signs them. */
  name: z.string().optional(),
  key_file: z.string().min(1, 'must not be empty').optional(),
});

/** `[elp]`: echolocation (multicast announcements of zone versions). */
export const elpSchema = z.strictObject({
  enabled: z.boolean().optional(),
  group: z.string().optional(),
  port: port.optional(),
  /** IPv4 address of the interface to send and listen on (default: every interface). */
  interface: z.string().optional(),
  /** Use standard mDNS (224.0.0.251:5353) and announce `_grapevine._tcp` (avahi-browse sees it). */
  mdns: z.boolean().optional(),
  interval_ms: z.number().int('must be a whole number').min(10, 'at least 10').max(3_600_000, 'at most 3600000').optional(),
  unreachable_after_ms: z.number().int('must be a whole number').min(10, 'at least 10').max(86_400_000, 'at most 86400000').optional(),
});

/** `[[peers]]`: static peers sent the same packets by unicast UDP. */
export const peerSchema = z.strictObject({
  address: z.string(),
});

/** `[metrics]`: the Prometheus endpoint (see src/metrics). */
export const metricsSchema = z.strictObject({
  enabled: z.boolean().optional(),
  listen: z.string().optional(),
  port: port.optional(),
});

/** `[replication]`: the peer protocol and how pulls and NFS writes meet (see src/replication). */
export const replicationSchema = z.strictObject({
  enabled: z.boolean().optional(),
  /** Address the peer protocol listens on (default: [nfs] listen). */
  listen: z.string().optional(),
  port: port.optional(),
  /** Default for zones without their own `consistency`. */
  consistency: z.enum(['pull-first', 'available'], 'must be "pull-first" or "available"').optional(),
  /** How long an NFS write waits for a pending pull before NFS3ERR_JUKEBOX. */
  pull_wait_ms: z.number().int('must be a whole number').min(0, 'at least 0').max(60_000, 'at most 60000').optional(),
  /** Parallel transfers. */
  concurrency: z.number().int('must be a whole number').min(1, 'at least 1').max(256, 'at most 256').optional(),
  /** Bytes per second for block transfers, as a size ("50M"); 0: unlimited. */
  max_bandwidth: z.union([z.string(), z.number()]).optional(),
});

export const fileSchema = z.strictObject({
  node: nodeSchema.optional(),
  nfs: nfsSchema.optional(),
  zones: z.record(z.string(), zoneSchema).optional(),
  zfs: zfsSchema.optional(),
  cluster: clusterSchema.optional(),
  metrics: metricsSchema.optional(),
  elp: elpSchema.optional(),
  peers: z.array(peerSchema).optional(),
  replication: replicationSchema.optional(),
});

export type RawConfig = z.infer<typeof fileSchema>;
