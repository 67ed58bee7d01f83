import fs from 'node:fs';
import path from 'node:path';
import { Catalog } from '../catalog/catalog.js';
import { createIdentity, writeExclusive } from '../catalog/identity.js';
import { NODE_NAME_RE } from '../config/schema.js';
import { GvError } from '../errors.js';
import { GvDatabase } from '../journal/db.js';
import { validatePoolName } from '../zfs/names.js';
import { DEFAULT_STATE_DIR, Output, configPath } from './context.js';

export interface InitFlags {
  name: string;
  stateDir?: string;
  config?: string;
  pool?: string;
}

function configText(name: string, stateDir: string, pool: string | undefined): string {
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
  const identity = createIdentity(stateDir, f.name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeExclusive(file, configText(f.name, stateDir, f.pool), 0o644);
  const db = GvDatabase.open(stateDir);
  try {
    new Catalog(db).addNode(f.name, identity.id);
  } finally {
    db.close();
  }
  out.done(
    { node: { name: identity.name, id: identity.id, publicKey: identity.publicKey }, config: file, stateDir },
    `node ${identity.name} (id ${identity.id}) initialised\nconfig: ${file}\nstate:  ${stateDir}\nnext:   gv zone create NAME --quota SIZE --config ${file}`,
  );
}
