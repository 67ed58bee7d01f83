#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { loadConfigFile } from '../config/load.js';
import type { LogLevel, PortmapMode } from '../config/types.js';
import { startDaemon, type Daemon, type DaemonOverrides } from '../daemon/start.js';
import { GvError } from '../errors.js';
import { openContext, Output, type CliContext } from './context.js';
import { DEFAULT_DEMO_DIR, demoConfig, demoPorts, mountInstructions, prepareDemoDir } from './demo.js';
import { init, type InitFlags } from './init.js';
import { nodeList } from './node.js';
import { conflicts } from './conflicts.js';
import { status } from './status.js';
import { zoneSync, type SyncFlags } from './sync.js';
import { zoneCreate, zoneDestroy, zoneList, zoneSetQuota, zoneShow, type CreateFlags } from './zone.js';

/**
 * Exit codes: 0 ok; 1 operational failure (zone exists, dataset exists, zone holds data, ZFS
 * error, ...); 2 usage or configuration error (unknown flag, bad size, invalid name, unknown node,
 * broken config file).
 */
const EXIT_USAGE = 2;
const STOP_DEADLINE_MS = 9000;

function version(): string {
  try {
    const pkg = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
    return (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function portArg(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw new InvalidArgumentError('must be a port number 0-65535 (0 picks a free port)');
  return Number(v);
}

interface DaemonFlags {
  config?: string;
  demo?: string | boolean;
  nfsPort?: number;
  mountPort?: number;
  stateDir?: string;
  logLevel?: LogLevel;
  portmap?: PortmapMode;
}

/** Run until SIGTERM/SIGINT, then stop within the deadline and exit 0. */
async function runDaemon(flags: DaemonFlags): Promise<void> {
  if (flags.config && flags.demo !== undefined) throw new GvError('USAGE', '--config and --demo cannot be used together');
  if (!flags.config && flags.demo === undefined) throw new GvError('USAGE', 'gv daemon needs --config FILE (or --demo [DIR] for a quick start)');
  const overrides: DaemonOverrides = { stateDir: flags.stateDir, logLevel: flags.logLevel, portmap: flags.portmap };
  // Catch SIGTERM/SIGINT before "gvd ready" is printed: a supervisor may signal the moment it
  // reads that line. A signal during start-up stops the daemon as soon as it is up.
  let early: NodeJS.Signals | null = null;
  const onEarly = (sig: NodeJS.Signals) => (early ??= sig);
  process.on('SIGTERM', onEarly);
  process.on('SIGINT', onEarly);
  let daemon: Daemon;
  if (flags.config) {
    const config = loadConfigFile(flags.config);
    daemon = await startDaemon(config, { ...overrides, nfsPort: flags.nfsPort, mountPort: flags.mountPort });
  } else {
    const dir = typeof flags.demo === 'string' ? flags.demo : DEFAULT_DEMO_DIR;
    prepareDemoDir(dir);
    const ports = flags.nfsPort !== undefined && flags.mountPort !== undefined
      ? { nfsPort: flags.nfsPort, mountPort: flags.mountPort }
      : await demoPorts();
    const config = demoConfig(dir, {
      nfsPort: flags.nfsPort ?? ports.nfsPort,
      mountPort: flags.mountPort ?? ports.mountPort,
      portmap: flags.portmap ?? 'auto',
    });
    daemon = await startDaemon(config, overrides);
    process.stderr.write(mountInstructions({ nfsPort: daemon.nfsPort, mountPort: daemon.mountPort, portmapPort: daemon.portmapPort }));
  }
  // SIGHUP: re-read the config file and the catalog (same as `gv zone ...` asking over the socket).
  const onHup = () => {
    daemon.log.info({ signal: 'SIGHUP' }, 'signal received: reloading');
    daemon.reload().catch((err) => daemon.log.error({ err: String(err) }, 'reload failed'));
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      process.off('SIGHUP', onHup);
      daemon.log.info({ signal: sig }, 'signal received');
      const deadline = setTimeout(() => {
        daemon.log.error({}, 'stop took too long; exiting');
        process.exit(1);
      }, STOP_DEADLINE_MS);
      deadline.unref();
      daemon.stop().then(
        () => {
          clearTimeout(deadline);
          resolve();
        },
        (err) => {
          daemon.log.error({ err: String(err) }, 'error while stopping');
          clearTimeout(deadline);
          resolve();
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.off('SIGTERM', onEarly);
    process.off('SIGINT', onEarly);
    if (early) onSignal(early);
  });
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('gv')
    .description('GrapeVineFS: replicated zones served over NFSv3 from user space')
    .version(version(), '-V, --version', 'print the version')
    .showHelpAfterError('(run gv --help for usage)')
    .exitOverride();
  program
    .command('daemon')
    .description('serve the configured zones over NFSv3 (MOUNT v3, portmap v2)')
    .option('-c, --config <file>', 'zones.toml to load')
    .option('--demo [dir]', `quick start without a config: one zone "demo" under dir (default ${DEFAULT_DEMO_DIR})`)
    .option('--nfs-port <n>', 'NFS port (0 = any free port)', portArg)
    .option('--mount-port <n>', 'MOUNT port (0 = any free port)', portArg)
    .option('--state-dir <dir>', 'state directory (overrides node.state_dir)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(new Option('--portmap <mode>', 'portmapper: auto, on (serve port 111 or fail), off').choices(['auto', 'on', 'off']))
    .action(async (flags: DaemonFlags) => {
      await runDaemon(flags);
    });

  const CONFIG_HELP = 'config file (default: $GV_CONFIG, else /etc/grapevine/gv.toml)';
  const JSON_HELP = 'machine output: one JSON document on stdout';
  interface Common {
    config?: string;
    json?: boolean;
  }
  /** Open the node's config and catalog, run, always close. */
  const withContext = async (o: Common, fn: (ctx: CliContext, out: Output) => Promise<void>): Promise<void> => {
    const ctx = openContext(o.config);
    try {
      await fn(ctx, new Output(o.json === true));
    } finally {
      ctx.close();
    }
  };

  program
    .command('init')
    .description('create this node: identity (id, Ed25519 keys) in the state dir and a config file')
    .requiredOption('--name <name>', "this node's name")
    .option('--state-dir <dir>', 'state directory (default /var/lib/grapevine)')
    .option('-c, --config <file>', 'config file to write (default: $GV_CONFIG, else /etc/grapevine/gv.toml)')
    .option('--pool <pool>', 'ZFS pool new zones are created in (default: zones are directories)')
    .option('--cluster <name>', 'cluster name (default "grapevine"; a join token carries its own)')
    .option('--join <keyfile>', "join a cluster with a copy of another node's cluster.key (instead of a new key)")
    .option('--join-token <token>', 'join a cluster with the token gv init printed on the first node')
    .option('--json', JSON_HELP)
    .action(async (o: InitFlags & Common) => {
      await init(new Output(o.json === true), o);
    });

  const node = program.command('node').description('the nodes of the cluster');
  node
    .command('list')
    .description('nodes heard by echolocation: name, id, address, last seen, RTT, state, zone versions')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (o: Common) => withContext(o, (ctx, out) => nodeList(ctx, out)));

  program
    .command('status')
    .description('this node, its zones (quota, used) and whether the daemon runs')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (o: Common) => withContext(o, (ctx, out) => status(ctx, out)));

  program
    .command('conflicts [zone]')
    .description('conflict copies kept beside the winning version (name.gv-conflict-YYYYMMDD-HHMMSS-<node>.ext)')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (name: string | undefined, o: Common) => withContext(o, (ctx, out) => conflicts(ctx, out, name)));

  const zone = program.command('zone').description('replication zones: create, list, show, set-quota, sync, destroy');
  zone
    .command('create <name>')
    .description('add a zone to the catalog and, when this node is a member, create its dataset or directory')
    .requiredOption('--quota <size>', 'quota, binary units as in ZFS (512G, 1.5T, 100M)')
    .option('--nodes <a,b,c>', 'member nodes (default: this node)')
    .option('--dataset <pool/path>', 'ZFS dataset for this node (default <pool>/<dataset_root>/<name> when [zfs] pool is set)')
    .option('--path <dir>', 'directory for this node instead of a dataset (default <state_dir>/zones/<name>)')
    .addOption(new Option('--consistency <mode>', 'pull-first: writes wait while a reachable member has a newer version (default); available: never wait').choices(['pull-first', 'available']))
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (name: string, o: CreateFlags & Common) => withContext(o, (ctx, out) => zoneCreate(ctx, out, name, o)));
  zone
    .command('list')
    .description('every zone: quota, used, members, backing, export path')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (o: Common) => withContext(o, (ctx, out) => zoneList(ctx, out)));
  zone
    .command('show <name>')
    .description('one zone: quota, used, members, backing, export path (warns when the quota exceeds free space)')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (name: string, o: Common) => withContext(o, (ctx, out) => zoneShow(ctx, out, name)));
  zone
    .command('set-quota <name> <size>')
    .description('change the quota (refused below what the zone uses)')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (name: string, size: string, o: Common) => withContext(o, (ctx, out) => zoneSetQuota(ctx, out, name, size)));
  zone
    .command('sync <name>')
    .description("replication state of a zone; with --wait, block until this node has every member's advertised version")
    .option('--wait', 'wait until in sync (progress bar on a terminal, plain lines otherwise)')
    .option('--timeout <seconds>', 'with --wait: give up (exit 1) after this long')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (name: string, o: SyncFlags & Common) => withContext(o, (ctx, out) => zoneSync(ctx, out, name, o)));
  zone
    .command('destroy <name>')
    .description('remove a zone; refused while it holds data unless --force (which deletes the data)')
    .option('--force', 'also destroy the dataset or directory with the data in it')
    .option('-c, --config <file>', CONFIG_HELP)
    .option('--json', JSON_HELP)
    .action(async (name: string, o: Common & { force?: boolean }) => withContext(o, (ctx, out) => zoneDestroy(ctx, out, name, o.force === true)));
  return program;
}

const USAGE_CODES = new Set(['USAGE', 'CONFIG']);

/** With --json, failures are a JSON document on stdout too (the message also goes to stderr). */
function reportError(argv: string[], code: string, message: string): void {
  process.stderr.write(`gv: ${message}\n`);
  if (argv.includes('--json')) process.stdout.write(JSON.stringify({ ok: false, error: { code, message } }) + '\n');
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (or the help/version text).
      if (err.exitCode !== 0 && argv.includes('--json')) {
        process.stdout.write(JSON.stringify({ ok: false, error: { code: 'USAGE', message: err.message } }) + '\n');
      }
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (err instanceof GvError) {
      reportError(argv, err.code, err.message);
      return USAGE_CODES.has(err.code) ? EXIT_USAGE : 1;
    }
    reportError(argv, 'INTERNAL', err instanceof Error ? err.message : String(err));
    return 1;
  }
}

const invoked = process.argv[1] ? fs.realpathSync(process.argv[1]) : '';
if (invoked === fileURLToPath(import.meta.url)) {
  main(process.argv).then((code) => process.exit(code));
}
