import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { z } from 'zod';
import { GvError } from '../errors.js';
import { parseAddress, parseCidr, type Cidr } from '../util/cidr.js';
import { parseSize } from '../util/size.js';
import { validateDatasetName, validatePoolName } from '../zfs/names.js';
import { clusterSchema, elpSchema, fileSchema, peerSchema, metricsSchema, nfsSchema, nodeSchema, NODE_NAME_RE, replicationSchema, zfsSchema, zoneSchema, ZONE_NAME_RE, type RawConfig } from './schema.js';
import { metricsConfigFromRaw } from '../metrics/config.js';
import { elpConfigFromRaw, peersFromRaw } from '../elp/config.js';
import { validateClusterName } from '../elp/cluster-key.js';
import type { Config, ReplicationConfig, ZoneConfig } from './types.js';

export const DEFAULT_ALLOW = ['127.0.0.1/32'];
export const DEFAULTS = {
  datasetRoot: 'gv-zones',
  listen: '127.0.0.1',
  port: 2049,
  mountPort: 20048,
  anonId: 65534,
  busyPollUs: 50,
};
/** `[replication]` defaults (listen: the [nfs] listen address). */
export const REPLICATION_DEFAULTS = {
  port: 7386,
  consistency: 'pull-first',
  pullWaitMs: 1000,
  concurrency: 4,
  maxBandwidthBytesPerSec: 0,
} as const;
const MIN_RECORD = 64 * 1024;
const MAX_RECORD = 64 * 1024 * 1024;

/** Render a key path as written in TOML: zones.tier-1.quota (segments with dots are quoted). */
export function keyPath(segments: readonly PropertyKey[]): string {
  return segments
    .map((s) => (typeof s === 'number' ? `[${s}]` : /^[A-Za-z0-9_-]+$/.test(String(s)) ? String(s) : JSON.stringify(String(s))))
    .join('.')
    .replace(/\.\[/g, '[');
}

function fail(file: string, key: string, reason: string): never {
  throw new GvError('CONFIG', `${file}: ${key}: ${reason}`, { file, key, reason });
}

function allowedKeys(key: string): string[] {
  const shapes: Record<string, z.ZodObject> = {
    '': fileSchema, node: nodeSchema, nfs: nfsSchema, zfs: zfsSchema, cluster: clusterSchema, metrics: metricsSchema, elp: elpSchema,
    replication: replicationSchema,
  };
  const shape = shapes[key] ?? (key.startsWith('zones.') ? zoneSchema : key.startsWith('peers[') ? peerSchema : undefined);
  return shape ? Object.keys(shape.shape) : [];
}

function valueAt(raw: unknown, segs: readonly PropertyKey[]): unknown {
  let v: unknown = raw;
  for (const s of segs) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[s];
  }
  return v;
}

/** Read a TOML config file; every problem is a GvError('CONFIG') naming the file and key. */
export function loadConfigFile(file: string): Config {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new GvError('CONFIG', `${abs}: cannot read config file (${code})`, { file: abs });
  }
  return parseConfigText(text, abs);
}

/** Zone tables declared more than once, found before the TOML parser's generic message. */
function findDuplicateZones(text: string, file: string): void {
  const seen = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  const re = /^\s*\[\s*zones\s*\.\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]\s*(?:#.*)?$/;
  for (let i = 0; i < lines.length; i++) {
    const m = re.exec(lines[i]!);
    if (!m) continue;
    const name = m[1] ?? m[2] ?? m[3]!;
    const first = seen.get(name);
    if (first !== undefined) {
      fail(file, keyPath(['zones', name]), `duplicate zone "${name}" (defined at line ${first} and again at line ${i + 1}); each zone needs a unique name`);
    }
    seen.set(name, i + 1);
  }
}

export function parseConfigText(text: string, file: string): Config {
  findDuplicateZones(text, file);
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    const e = err as Error & { line?: number; column?: number };
    const first = (e.message ?? String(err)).split('\n')[0]!.replace(/^Invalid TOML document:\s*/, '');
    const where = e.line ? `line ${e.line}${e.column ? `, column ${e.column}` : ''}` : 'TOML';
    const hint = /redefine/.test(first) ? ' (a key or table, e.g. a zone, is defined twice)' : '';
    throw new GvError('CONFIG', `${file}: ${where}: invalid TOML: ${first}${hint}`, { file, line: e.line });
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const parent = keyPath(issue.path);
      const key = keyPath([...issue.path, issue.keys[0]!]);
      const allowed = allowedKeys(parent.startsWith('zones.') ? 'zones.' : parent);
      fail(file, key, `unknown key${allowed.length ? ` (allowed here: ${allowed.join(', ')})` : ''}`);
    }
    const key = keyPath(issue.path) || '(top level)';
    if (issue.code === 'invalid_type' && valueAt(raw, issue.path) === undefined) {
      const last = issue.path[issue.path.length - 1];
      fail(file, key, `missing ${String(last)} (required)`);
    }
    fail(file, key, issue.message);
  }
  return buildConfig(parsed.data, file);
}

function buildConfig(raw: RawConfig, file: string): Config {
  const base = path.dirname(file);
  const node = raw.node ?? {};
  const nfs = raw.nfs ?? {};
  const nodeName = node.name ?? os.hostname().split('.')[0]!;
  if (!NODE_NAME_RE.test(nodeName)) {
    fail(file, 'node.name', `bad node name "${nodeName}" (allowed: letters, digits, '_', '.', '-', 1-64 characters, starting with a letter or digit)`);
  }
  const listen = nfs.listen ?? DEFAULTS.listen;
  if (!parseAddress(listen)) fail(file, 'nfs.listen', `"${listen}" is not an IPv4 or IPv6 address`);
  let maxRecordSize: number | null = null;
  if (nfs.max_record_size !== undefined) {
    try {
      maxRecordSize = parseSize(nfs.max_record_size);
    } catch (err) {
      fail(file, 'nfs.max_record_size', (err as Error).message);
    }
    if (maxRecordSize < MIN_RECORD || maxRecordSize > MAX_RECORD) {
      fail(file, 'nfs.max_record_size', `out of range (${MIN_RECORD} to ${MAX_RECORD} bytes)`);
    }
  }
  const replication = replicationConfigFromRaw(raw.replication, file, listen);
  const zones: ZoneConfig[] = [];
  const byPath = new Map<string, string>();
  for (const [name, z] of Object.entries(raw.zones ?? {})) {
    const key = keyPath(['zones', name]);
    if (!ZONE_NAME_RE.test(name)) {
      fail(file, key, `bad zone name "${name}" (allowed: letters, digits, '_', '.', '-', 1-64 characters, starting with a letter or digit)`);
    }
    if (z.path !== undefined && z.dataset !== undefined) {
      fail(file, `${key}.dataset`, 'a zone has either path (a directory) or dataset (a ZFS dataset), not both');
    }
    if (z.path === undefined && z.dataset === undefined) fail(file, `${key}.path`, 'missing path (required)');
    let dataset: string | null = null;
    if (z.dataset !== undefined) {
      try {
        validateDatasetName(z.dataset);
      } catch (err) {
        fail(file, `${key}.dataset`, (err as Error).message);
      }
      if (!z.dataset.includes('/')) fail(file, `${key}.dataset`, `"${z.dataset}" is a pool; name a dataset inside it (e.g. ${z.dataset}/gv-zones/${name})`);
      if (z.quota !== undefined) fail(file, `${key}.quota`, 'not used with dataset: the quota is the dataset\'s (zfs set quota=SIZE DATASET)');
      dataset = z.dataset;
    }
    // A dataset zone's path is its mountpoint, found when the daemon opens it.
    const zonePath = z.path !== undefined ? path.resolve(base, z.path) : '';
    const other = z.path !== undefined ? byPath.get(zonePath) : undefined;
    if (other !== undefined) fail(file, `${key}.path`, `same directory as zone "${other}" (${zonePath}); two zones cannot share a directory`);
    if (z.path !== undefined) byPath.set(zonePath, name);
    if (dataset !== null) {
      const otherDs = byPath.get(`zfs:${dataset}`);
      if (otherDs !== undefined) fail(file, `${key}.dataset`, `same dataset as zone "${otherDs}" (${dataset}); two zones cannot share a dataset`);
      byPath.set(`zfs:${dataset}`, name);
    }
    let quotaBytes: number | null = null;
    if (z.quota !== undefined && z.quota !== 'none') {
      try {
        quotaBytes = parseSize(z.quota);
      } catch (err) {
        fail(file, `${key}.quota`, (err as Error).message);
      }
    }
    const allow = parseAllow(file, `${key}.allow`, z.allow ?? DEFAULT_ALLOW);
    zones.push({ name, path: zonePath, quotaBytes, allow, dataset, consistency: z.consistency ?? replication.consistency });
  }
  const zfs = raw.zfs ?? {};
  if (zfs.pool !== undefined) {
    try {
      validatePoolName(zfs.pool);
    } catch (err) {
      fail(file, 'zfs.pool', (err as Error).message);
    }
  }
  const datasetRoot = zfs.dataset_root ?? DEFAULTS.datasetRoot;
  try {
    validateDatasetName(`${zfs.pool ?? 'pool'}/${datasetRoot}`);
  } catch (err) {
    fail(file, 'zfs.dataset_root', (err as Error).message);
  }
  const cluster = raw.cluster ?? {};
  const peers: string[] = [];
  (cluster.nodes ?? []).forEach((n, i) => {
    if (!NODE_NAME_RE.test(n)) fail(file, `cluster.nodes[${i}]`, `bad node name "${n}" (allowed: letters, digits, '_', '.', '-', 1-64 characters, starting with a letter or digit)`);
    if (n === nodeName || peers.includes(n)) fail(file, `cluster.nodes[${i}]`, `node "${n}" is listed twice (this node, ${nodeName}, is always known)`);
    peers.push(n);
  });
  const zoneAllow = parseAllow(file, 'cluster.zone_allow', cluster.zone_allow ?? DEFAULT_ALLOW);
  if (cluster.name !== undefined) {
    try {
      validateClusterName(cluster.name);
    } catch (err) {
      fail(file, 'cluster.name', (err as Error).message);
    }
  }
  if (cluster.key_file !== undefined && cluster.name === undefined) fail(file, 'cluster.name', 'missing name (required with key_file)');
  const elp = elpConfigFromRaw(raw.elp, file);
  return {
    file,
    node: {
      name: nodeName,
      stateDir: node.state_dir !== undefined ? path.resolve(base, node.state_dir) : null,
      logLevel: node.log_level ?? 'info',
    },
    nfs: {
      listen,
      port: nfs.port ?? DEFAULTS.port,
      mountPort: nfs.mount_port ?? DEFAULTS.mountPort,
      portmap: nfs.portmap ?? 'auto',
      maxRecordSize,
      requirePrivilegedPort: nfs.require_privileged_port ?? false,
      busyPollUs: nfs.busy_poll_us ?? DEFAULTS.busyPollUs,
      squash: nfs.squash ?? 'none',
      anonUid: nfs.anon_uid ?? DEFAULTS.anonId,
      anonGid: nfs.anon_gid ?? DEFAULTS.anonId,
    },
    zones,
    zfs: { pool: zfs.pool ?? null, datasetRoot },
    cluster: { nodes: peers, zoneAllow, name: cluster.name ?? null, keyFile: cluster.key_file !== undefined ? path.resolve(base, cluster.key_file) : null },
    metrics: metricsConfigFromRaw(raw.metrics, file),
    elp,
    peers: peersFromRaw(raw.peers, file, elp.port),
    replication,
  };
}

/** The effective [replication] settings (the defaults when the table is absent). */
export function replicationConfigFromRaw(
  raw: z.infer<typeof replicationSchema> | undefined, file: string, nfsListen: string,
): ReplicationConfig {
  const r = raw ?? {};
  const listen = r.listen ?? nfsListen;
  if (!parseAddress(listen)) fail(file, 'replication.listen', `"${listen}" is not an IPv4 or IPv6 address`);
  let maxBandwidthBytesPerSec: number = REPLICATION_DEFAULTS.maxBandwidthBytesPerSec;
  if (r.max_bandwidth !== undefined) {
    const text = typeof r.max_bandwidth === 'string' ? r.max_bandwidth.replace(/\s*\/\s*s$/i, '') : r.max_bandwidth;
    try {
      maxBandwidthBytesPerSec = parseSize(text);
    } catch (err) {
      fail(file, 'replication.max_bandwidth', `${(err as Error).message} (bytes per second; 0 = unlimited)`);
    }
  }
  return {
    enabled: r.enabled ?? true,
    listen,
    port: r.port ?? REPLICATION_DEFAULTS.port,
    consistency: r.consistency ?? REPLICATION_DEFAULTS.consistency,
    pullWaitMs: r.pull_wait_ms ?? REPLICATION_DEFAULTS.pullWaitMs,
    concurrency: r.concurrency ?? REPLICATION_DEFAULTS.concurrency,
    maxBandwidthBytesPerSec,
  };
}

function parseAllow(file: string, key: string, list: readonly string[]): Cidr[] {
  const allow: Cidr[] = [];
  list.forEach((text, i) => {
    try {
      allow.push(parseCidr(text));
    } catch (err) {
      fail(file, `${key}[${i}]`, `bad CIDR: ${(err as Error).message}`);
    }
  });
  return allow;
}
