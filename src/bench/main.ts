#!/usr/bin/env node
/**
 * `npm run bench`: GrapeVineFS vs nfs-ganesha vs the local disk, in one run, through the libnfs
 * user-space client over loopback; then the replication bench (src/bench/replication.ts: two gvd in
 * network namespaces, propagation latency, initial sync beside rsync, bytes for a 1-byte edit).
 * Prints tables (or --json); asserts nothing. See bench/README.md.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { GvError } from '../errors.js';
import { formatProfiles, summarizeProfiles, type ProfileSummary } from './cpuProfile.js';
import { startGanesha } from './ganesha.js';
import { startGvDaemon } from './gvDaemon.js';
import { CleanupRegistry, runCommand } from './processes.js';
import { buildRows, formatTable, toJson, type BenchReport } from './report.js';
import {
  defaultReplicationOptions, formatReplicationTable, REPL_ROW_IDS, runReplicationBench, type ReplicationReport, type ReplRowId,
} from './replication.js';
import { runSuite, SMALL_FILES_COOLDOWN_MS, type SuiteParams, type SystemResult } from './suite.js';
import { localTarget, nfsTarget, SYSTEM_IDS, SYSTEM_LABELS, type BenchTarget, type SystemId } from './target.js';
import { buildHelpers } from './tools.js';

export interface BenchOptions {
  json: boolean;
  quick: boolean;
  only: SystemId[];
  /** run the replication bench (two gvd in network namespaces; `--only replication`) */
  replication: boolean;
  /** replication rows to measure (default all) */
  replRows?: ReplRowId[];
  runs: number;
  sizeMib: number;
  files: number;
  fileSize: number;
  baseDir: string;
  gvUrl?: string;
  cpuProf?: string;
  install: boolean;
  keep: boolean;
  logLevel: string;
}

function positiveInt(name: string, allowZero = false) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) throw new InvalidArgumentError(`${name} must be a whole number${allowZero ? '' : ' > 0'}`);
    return n;
  };
}

function replRowList(v: string): ReplRowId[] {
  const ids = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const id of ids) {
    if (!(REPL_ROW_IDS as readonly string[]).includes(id)) throw new InvalidArgumentError(`unknown replication row '${id}' (${REPL_ROW_IDS.join(', ')})`);
  }
  return ids as ReplRowId[];
}

function systemList(v: string): (SystemId | 'replication')[] {
  const ids = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const id of ids) {
    if (id !== 'replication' && !(SYSTEM_IDS as readonly string[]).includes(id)) throw new InvalidArgumentError(`unknown system '${id}' (gv, ganesha, local, replication)`);
  }
  return ids as (SystemId | 'replication')[];
}

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const program = new Command('bench')
    .description('GrapeVineFS vs nfs-ganesha vs local disk (libnfs client, loopback)')
    .option('--json', 'print the results as JSON instead of the table', false)
    .option('--quick', 'smaller sizes: 128 MiB big file, 300 small files', false)
    .option('--only <systems>', 'comma list of gv, ganesha, local, replication (default: all)', systemList)
    .option('--repl-rows <rows>', `replication rows to measure, comma list of ${REPL_ROW_IDS.join(', ')} (default: all)`, replRowList)
    .option('--runs <n>', 'repetitions per measurement (best and median are reported; initial sync rows too)', positiveInt('--runs'), 3)
    .option('--size-mib <n>', 'big file size in MiB (0 skips the big-file tests)', positiveInt('--size-mib', true))
    .option('--files <n>', 'small files per run (0 skips the small-file tests)', positiveInt('--files', true))
    .option('--file-size <bytes>', 'bytes per small file', positiveInt('--file-size', true), 4096)
    .option('--base-dir <dir>', 'where the zone, the ganesha export and the local copies go (one filesystem)', os.tmpdir())
    .option('--gv-url <url>', 'bench an already running GrapeVineFS export instead of starting the daemon')
    .option('--cpu-prof [dir]', 'run the daemon under node --cpu-prof and print the top functions by self time')
    .option('--no-install', 'do not apt-get install nfs-ganesha when it is missing')
    .option('--keep', 'keep the temporary directories (logs, configs)', false)
    .option('--log-level <level>', 'daemon log level (info or lower: the ready line is logged at info)', 'info')
    .exitOverride()
    .configureOutput({ writeErr: () => {} }); // the message is logged once by main()
  try {
    program.parse(argv as string[], { from: 'user' });
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') process.exit(0);
    throw new GvError('USAGE', e.message);
  }
  const o = program.opts<{
    json: boolean; quick: boolean; only?: (SystemId | 'replication')[]; replRows?: ReplRowId[]; runs: number; sizeMib?: number; files?: number;
    fileSize: number; baseDir: string; gvUrl?: string; cpuProf?: string | boolean; install: boolean; keep: boolean; logLevel: string;
  }>();
  return {
    json: o.json,
    quick: o.quick,
    only: o.only?.length ? o.only.filter((x): x is SystemId => x !== 'replication') : [...SYSTEM_IDS],
    replication: o.only?.length ? o.only.includes('replication') : true,
    ...(o.replRows?.length ? { replRows: o.replRows } : {}),
    runs: o.runs,
    sizeMib: o.sizeMib ?? (o.quick ? 128 : 1024),
    files: o.files ?? (o.quick ? 300 : 2000),
    fileSize: o.fileSize,
    baseDir: path.resolve(o.baseDir),
    gvUrl: o.gvUrl,
    cpuProf: o.cpuProf === undefined || o.cpuProf === false ? undefined : o.cpuProf === true ? '' : path.resolve(o.cpuProf),
    install: o.install,
    keep: o.keep,
    logLevel: o.logLevel,
  };
}

const log = (line: string): void => {
  process.stderr.write(`bench: ${line}\n`);
};

/** tmpfs for the copy tool's local side when there is one, so local I/O costs ~nothing */
async function scratchParent(fallback: string): Promise<string> {
  try {
    if ((await stat('/dev/shm')).isDirectory()) return '/dev/shm';
  } catch {
    /* none */
  }
  return fallback;
}

export async function runBench(opts: BenchOptions): Promise<number> {
  const cleanup = new CleanupRegistry();
  const uninstall = cleanup.installSignalHandlers(log);
  const notes: string[] = [];
  const systems: Partial<Record<SystemId, SystemResult>> = {};
  let profiles: ProfileSummary[] = [];
  let replication: ReplicationReport | null = null;
  const nfsSystems = opts.only.length > 0;
  const startedAt = new Date().toISOString();
  try {
    await mkdir(opts.baseDir, { recursive: true });
    const base = await mkdtemp(path.join(opts.baseDir, 'gvbench-'));
    const scratch = await mkdtemp(path.join(await scratchParent(base), 'gvbench-scratch-'));
    if (!opts.keep) {
      cleanup.add('base dir', () => rm(base, { recursive: true, force: true }));
      cleanup.add('scratch dir', () => rm(scratch, { recursive: true, force: true }));
    }
    log(`base dir ${base} (zone, ganesha export, local copies); scratch ${scratch}`);
    const bigBytes = opts.sizeMib * 1024 * 1024;
    const helpers = nfsSystems ? await buildHelpers(path.join(base, 'bin')) : null;
    const sourceFile = path.join(scratch, 'source.bin');
    if (helpers && bigBytes > 0) await runCommand([helpers.nfsio, 'write', sourceFile, String(bigBytes)], { timeoutMs: 300_000 });
    const params: SuiteParams = {
      runs: opts.runs, bigBytes, smallCount: opts.files, smallSize: opts.fileSize, scratchDir: scratch, sourceFile,
      cooldown: { ms: SMALL_FILES_COOLDOWN_MS },
    };
    // the whole run, bounded: ganesha's namespace dies after this even if we are killed
    const maxSeconds = 3600 + Math.ceil((bigBytes / 1048576) * opts.runs * 2) + opts.files * opts.runs;

    for (const system of ['ganesha', 'gv', 'local'] as const) {
      if (!opts.only.includes(system) || !helpers) continue;
      log(`--- ${SYSTEM_LABELS[system]} ---`);
      let target: BenchTarget;
      try {
        if (system === 'ganesha') {
          const g = await startGanesha({
            stateDir: path.join(base, 'ganesha-state'), exportDir: path.join(base, 'ganesha-export'), nfsCp: helpers.nfsCp,
            cleanup, log, allowInstall: opts.install, maxSeconds,
          });
          if (!g.ok) {
            log(`ganesha: skipped (${g.reason})`);
            systems.ganesha = { system, location: '-', copyTool: 'nfs-cp', metrics: {}, errors: {}, skipped: g.reason };
            continue;
          }
          target = g.target;
        } else if (system === 'gv') {
          if (opts.gvUrl) {
            target = nfsTarget('gv', opts.gvUrl, helpers.nfsCp, [], async () => {});
          } else {
            let cpuProfDir: string | undefined;
            if (opts.cpuProf !== undefined) {
              cpuProfDir = opts.cpuProf || path.join(base, 'cpu-prof');
              await mkdir(cpuProfDir, { recursive: true });
            }
            target = await startGvDaemon({
              workDir: path.join(base, 'gv'), zoneDir: path.join(base, 'gv-zone'), nfsCp: helpers.nfsCp,
              cleanup, log, cpuProfDir, logLevel: opts.logLevel, readyTimeoutMs: 30_000,
            });
            if (cpuProfDir) notes.push(`daemon profiled with --cpu-prof into ${cpuProfDir}`);
          }
        } else {
          const dir = path.join(base, 'local');
          await mkdir(dir, { recursive: true });
          target = localTarget(dir);
        }
      } catch (err) {
        const msg = (err as Error).message;
        log(`${system}: start FAILED: ${msg}`);
        systems[system] = { system, location: '-', copyTool: '-', metrics: {}, errors: { start: msg } };
        continue;
      }
      try {
        systems[system] = await runSuite(target, helpers, params, log);
      } finally {
        await target.stop();
      }
      if (system === 'gv' && opts.cpuProf !== undefined && !opts.gvUrl) {
        const dir = opts.cpuProf || path.join(base, 'cpu-prof');
        try {
          profiles = await summarizeProfiles(dir);
          if (!profiles.length) notes.push(`no .cpuprofile in ${dir}: the daemon must exit normally on SIGTERM for node to write it`);
        } catch (err) {
          notes.push(`cpu profile: ${(err as Error).message}`);
        }
      }
    }
    if (opts.replication) {
      log('--- replication ---');
      replication = await runReplicationBench({
        ...defaultReplicationOptions(opts.quick, { baseDir: path.join(base, 'replication'), cleanup, log, logLevel: opts.logLevel }),
        keep: opts.keep,
        runs: opts.runs,
        ...(opts.replRows ? { rows: new Set(opts.replRows) } : {}),
        ...(opts.sizeMib !== (opts.quick ? 128 : 1024) ? { bigBytes } : {}),
        ...(opts.files !== (opts.quick ? 300 : 2000) ? { smallCount: opts.files } : {}),
      });
    }
    if (opts.keep) notes.push(`kept ${base} and ${scratch}`);
    if (opts.keep && replication) replication.notes.push(`kept ${path.join(base, 'replication')} (cluster configs, state, daemon logs)`);

    const report: BenchReport = {
      startedAt,
      params: { runs: opts.runs, bigBytes, smallCount: opts.files, smallSize: opts.fileSize, baseDir: base },
      systems,
      rows: buildRows(systems),
      notes,
    };
    if (opts.json) {
      process.stdout.write(`${toJson({ ...report, ...(profiles.length ? { cpuProfiles: profiles } : {}), ...(replication ? { replication } : {}) } as BenchReport)}\n`);
    } else {
      if (nfsSystems) process.stdout.write(`${formatTable(report)}\n`);
      if (profiles.length) process.stdout.write(`\n${formatProfiles(profiles)}\n`);
      if (replication) process.stdout.write(`${nfsSystems ? '\n' : ''}${formatReplicationTable(replication)}\n`);
    }
    const failed = Object.values(systems).some((r) => r && !r.skipped && Object.keys(r.errors).length > 0) ||
      (replication !== null && !replication.skipped && Object.keys(replication.errors).length > 0);
    return failed ? 1 : 0;
  } finally {
    await cleanup.runAll(log);
    uninstall();
  }
}

async function main(): Promise<void> {
  let code: number;
  try {
    code = await runBench(parseBenchArgs(process.argv.slice(2)));
  } catch (err) {
    const e = err instanceof GvError ? err : new GvError('EIO', (err as Error).message ?? String(err));
    log(`${e.code}: ${e.message}`);
    code = e.code === 'USAGE' ? 2 : 1;
  }
  process.exitCode = code;
}

await main();
