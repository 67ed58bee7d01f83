#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { loadConfigFile } from '../config/load.js';
import type { LogLevel, PortmapMode } from '../config/types.js';
import { startDaemon, type Daemon, type DaemonOverrides } from '../daemon/start.js';
import { GvError } from '../errors.js';
import { DEFAULT_DEMO_DIR, demoConfig, demoPorts, mountInstructions, prepareDemoDir } from './demo.js';

/** Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. */
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
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
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
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (or the help/version text).
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (err instanceof GvError && (err.code === 'USAGE' || err.code === 'CONFIG')) {
      process.stderr.write(`gv: ${err.message}\n`);
      return EXIT_USAGE;
    }
    process.stderr.write(`gv: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

const invoked = process.argv[1] ? fs.realpathSync(process.argv[1]) : '';
if (invoked === fileURLToPath(import.meta.url)) {
  main(process.argv).then((code) => process.exit(code));
}
