import fs from 'node:fs';
import { Catalog } from '../catalog/catalog.js';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/types.js';
import { controlRequest, type ControlOutcome } from '../control/client.js';
import { controlSocketPath, type ControlOp, type ControlRequest } from '../control/protocol.js';
import { GvError } from '../errors.js';
import { GvDatabase } from '../journal/db.js';
import { journalNodeId } from '../journal/node-id.js';
import { parseSize } from '../util/size.js';
import { Zfs } from '../zfs/zfs.js';

/** Where every command but `daemon` looks for the config when --config is not given. */
export const DEFAULT_CONFIG = '/etc/grapevine/gv.toml';
export const DEFAULT_STATE_DIR = '/var/lib/grapevine';

/** --config, else $GV_CONFIG, else the default path. */
export function configPath(flag: string | undefined): string {
  return flag ?? (process.env.GV_CONFIG || DEFAULT_CONFIG);
}

/** What a command works with: the config, the node's database and catalog, a ZFS wrapper. */
export interface CliContext {
  config: Config;
  configFile: string;
  stateDir: string;
  db: GvDatabase;
  catalog: Catalog;
  zfs: Zfs;
  close(): void;
}

export function openContext(flag: string | undefined): CliContext {
  const file = configPath(flag);
  if (!flag && !fs.existsSync(file)) {
    throw new GvError('CONFIG', `no config file at ${file}; run gv init --name NAME, or pass --config FILE (or set GV_CONFIG)`);
  }
  const config = loadConfigFile(file);
  const stateDir = config.node.stateDir;
  if (!stateDir) throw new GvError('CONFIG', `${config.file}: node.state_dir: missing (the catalog lives there; set it)`);
  const db = GvDatabase.open(stateDir);
  return {
    config, configFile: config.file!, stateDir, db, catalog: new Catalog(db, { nodeId: journalNodeId(db, stateDir) }), zfs: new Zfs(), close: () => db.close(),
  };
}

/** Ask a running daemon for something; "not running" is an answer. */
export function askDaemon(ctx: CliContext, op: ControlOp, args: Omit<ControlRequest, 'op'> = {}, timeoutMs?: number): Promise<ControlOutcome> {
  return controlRequest(controlSocketPath(ctx.stateDir), op, timeoutMs, args);
}

/** The daemon's error code of a failed request (ENOTSUP: the op's feature is off), else null. */
export function daemonErrorCode(err: unknown): string | null {
  if (!(err instanceof GvError)) return null;
  const c = err.data.code;
  return typeof c === 'string' ? c : null;
}

/** A size argument (512G, 1.5T, 100M); a bad one is a usage error. */
export function sizeArg(text: string, what: string): number {
  let n: number;
  try {
    n = parseSize(text);
  } catch (err) {
    throw new GvError('USAGE', `${what}: ${(err as Error).message}`);
  }
  if (n <= 0) throw new GvError('USAGE', `${what}: must be larger than 0 (e.g. 512G)`);
  return n;
}

/** Result printing: one JSON document with --json, human lines otherwise; warnings to stderr. */
export class Output {
  readonly warnings: string[] = [];
  constructor(readonly json: boolean) {}

  warn(msg: string): void {
    this.warnings.push(msg);
    process.stderr.write(`gv: warning: ${msg}\n`);
  }

  done(result: Record<string, unknown>, human: string): void {
    if (this.json) process.stdout.write(JSON.stringify({ ok: true, ...result, warnings: this.warnings }, null, 2) + '\n');
    else if (human) process.stdout.write(human.endsWith('\n') ? human : `${human}\n`);
  }
}

/** Left-aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
