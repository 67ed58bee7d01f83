import fs from 'node:fs';
import path from 'node:path';
import { Catalog } from '../catalog/catalog.js';
import { createIdentity, IDENTITY_FILE, writeExclusive } from '../catalog/identity.js';
import { NODE_NAME_RE } from '../config/schema.js';
import { GvError } from '../errors.js';
import { GvDatabase } from '../journal/db.js';
import { CLUSTER_KEY_BYTES, createClusterKey, decodeJoinToken, encodeJoinToken, validateClusterName, writeClusterKey } from '../elp/cluster-key.js';
import { validatePoolName } from '../zfs/names.js';
import { DEFAULT_STATE_DIR, Output, configPath } from './context.js';

export interface InitFlags {
  name: string;
  stateDir?: string;
  config?: string;
  pool?: string;
  /** Cluster name (default "grapevine"; a join token carries its own). */
  cluster?: string;
  /** Join a cluster with a copy of its key file instead of creating a new key. */
  join?: string;
  /** Join with the token `gv init` printed on the first node (cluster name + key). */
  joinToken?: string;
}

export const DEFAULT_CLUSTER_NAME = 'grapevine';
export const CLUSTER_KEY_FILE = 'cluster.key';

/** The cluster to be in: name and key (new, from a key file, or from a token), checked before anything is written. */
function clusterFor(f: InitFlags): { name: string; key: Buffer | null } {
  if (f.join !== undefined && f.joinToken !== undefined) throw new GvError('USAGE', '--join and --join-token cannot be used together');
  if (f.cluster !== undefined) validateClusterName(f.cluster);
  if (f.joinToken !== undefined) {
    const t = decodeJoinToken(f.joinToken);
    if (f.cluster !== undefined && f.cluster !== t.clusterName) {
      throw new GvError('USAGE', `--cluster ${f.cluster} does not match the token's cluster "${t.clusterName}"`);
    }
    return { name: t.clusterName, key: t.key };
  }
  if (f.join !== undefined) {
    let key: Buffer;
    try {
      key = fs.readFileSync(f.join);
    } catch (err) {
      throw new GvError('USAGE', `--join ${f.join}: cannot read key file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (key.length !== CLUSTER_KEY_BYTES) throw new GvError('USAGE', `--join ${f.join}: not a cluster key (${key.length} bytes, expected ${CLUSTER_KEY_BYTES})`);
    return { name: f.cluster ?? DEFAULT_CLUSTER_NAME, key };
  }
  return { name: f.cluster ?? DEFAULT_CLUSTER_NAME, key: null };
}

function configText(name: string, stateDir: string, pool: string | undefined, cluster: { name: string; keyFile: string }): string {
  return `# GrapeVineFS node configuration, written by gv init (zones.example.toml documents every key).

[node]
name = ${JSON.stringify(name)}
state_dir = ${JSON.stringify(stateDir)}
# log_level = "info"

[nfs]
listen = "127.0.0.1"
port = 2049
mount_port = 20048
portmap = "auto"

[zfs]
${pool ? `pool = ${JSON.stringify(pool)}` : '# pool = "tank"                   # new zones become datasets <pool>/<dataset_root>/<zone>'}
dataset_root = "gv-zones"

[cluster]
name = ${JSON.stringify(cluster.name)}
key_file = ${JSON.stringify(cluster.keyFile)}   # 32-byte secret shared by every node (0600)
nodes = []                          # other nodes zones may name in gv zone create --nodes
# zone_allow = ["127.0.0.1/32"]     # clients allowed to mount zones made with gv zone create
`;
}

/** gv init: node identity in the state dir, a config file, this node in the catalog. */
export async function init(out: Output, f: InitFlags): Promise<void> {
  if (!NODE_NAME_RE.test(f.name)) {
    throw new GvError('USAGE', `invalid node name "${f.name}" (allowed: letters, digits, '_', '.', '-', 1-64 characters, starting with a letter or digit)`);
  }
  if (f.pool !== undefined) {
    try {
      validatePoolName(f.pool);
    } catch (err) {
      throw new GvError('USAGE', `--pool: ${(err as Error).message}`);
    }
  }
  const file = path.resolve(configPath(f.config));
  const stateDir = path.resolve(f.stateDir ?? DEFAULT_STATE_DIR);
  if (fs.existsSync(file)) throw new GvError('EEXIST', `${file} exists; gv init never overwrites a config (edit it, or pass --config NEW_FILE)`);
  const cluster = clusterFor(f);
  const keyFile = path.join(stateDir, CLUSTER_KEY_FILE);
  // (An existing identity is reported by createIdentity, which refuses first.)
  if (fs.existsSync(keyFile) && !fs.existsSync(path.join(stateDir, IDENTITY_FILE))) throw new GvError('EEXIST', `${keyFile} exists: this state directory already belongs to a cluster (use another --state-dir)`);
  const identity = createIdentity(stateDir, f.name);
  let key: Buffer;
  if (cluster.key) {
    writeClusterKey(keyFile, cluster.key);
    key = cluster.key;
  } else key = createClusterKey(keyFile);
  const joinToken = encodeJoinToken(cluster.name, key);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeExclusive(file, configText(f.name, stateDir, f.pool, { name: cluster.name, keyFile }), 0o644);
  const db = GvDatabase.open(stateDir);
  try {
    new Catalog(db).addNode(f.name, identity.id);
  } finally {
    db.close();
  }
  out.done(
    {
      node: { name: identity.name, id: identity.id, publicKey: identity.publicKey }, config: file, stateDir,
      cluster: { name: cluster.name, keyFile, joined: cluster.key !== null }, joinToken,
    },
    `node ${identity.name} (id ${identity.id}) initialised\nconfig: ${file}\nstate:  ${stateDir}\n` +
      `cluster: ${cluster.name} (${cluster.key ? 'joined' : 'new key'}: ${keyFile})\n` +
      `join other nodes (the token is a secret): gv init --name NAME --join-token ${joinToken}\n` +
      `next:   gv zone create NAME --quota SIZE --config ${file}`,
  );
}
