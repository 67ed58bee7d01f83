import { rm } from 'node:fs/promises';
import path from 'node:path';
import { GvError } from '../errors.js';
import { runCommand, shuttingDown } from './processes.js';
import { summarizeRates, type RateSummary } from './stats.js';
import type { BenchTarget, SystemId } from './target.js';
import type { Helpers } from './tools.js';

export type MetricId =
  | 'writeCopy' | 'writeNfsio' | 'readCopy' | 'readNfsio'
  | 'create' | 'stat' | 'list' | 'read' | 'unlink';

export const BIG_METRICS: readonly MetricId[] = ['writeCopy', 'writeNfsio', 'readCopy', 'readNfsio'];
export const SMALL_PHASES = ['create', 'stat', 'list', 'read', 'unlink'] as const;

export interface SuiteParams {
  runs: number;
  bigBytes: number;
  smallCount: number;
  smallSize: number;
  /** local (tmpfs) scratch: the copy tool's source and read-back files */
  scratchDir: string;
  /** local source file holding nfsio's write pattern, `bigBytes` long */
  sourceFile: string;
  /**
   * Shared by the systems of one bench run: when the last small-file run deleted its files, and
   * how long the next system waits after that before its first small-file run (see smallFiles).
   */
  cooldown?: { lastDeletionAt?: number; ms: number };
}

export interface SystemResult {
  system: SystemId;
  location: string;
  copyTool: string;
  /** server's FSINFO rtmax/wtmax as libnfs negotiated them */
  readmax?: number;
  writemax?: number;
  metrics: Partial<Record<MetricId, RateSummary>>;
  /** what failed, keyed by metric (or 'start', 'integrity', 'info') */
  errors: Record<string, string>;
  skipped?: string;
}

interface Ctx {
  target: BenchTarget;
  helpers: Helpers;
  params: SuiteParams;
  log: (line: string) => void;
  result: SystemResult;
}

const MIB = 1024 * 1024;

function bigTimeoutMs(bytes: number): number {
  return Math.max(120_000, Math.ceil(bytes / MIB) * 500); // fails below ~2 MiB/s
}

function parseJsonLine(stdout: string, what: string): Record<string, unknown> {
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new GvError('PROTOCOL', `${what}: unexpected output '${line.slice(0, 200)}'`);
  }
}

async function client(ctx: Ctx, argv: string[], timeoutMs: number): Promise<{ json: Record<string, unknown>; seconds: number }> {
  const r = await runCommand([...ctx.target.wrap, ...argv], { timeoutMs });
  return { json: parseJsonLine(r.stdout, path.basename(argv[0] ?? '')), seconds: r.seconds };
}

async function nfsio(ctx: Ctx, op: string, ref: string, extra: string[] = []): Promise<Record<string, unknown>> {
  return (await client(ctx, [ctx.helpers.nfsio, op, ref, ...extra], bigTimeoutMs(ctx.params.bigBytes))).json;
}

/** Run `runs` measurements of one metric; on the first failure record the error and stop. */
async function measure(ctx: Ctx, metric: MetricId, once: () => Promise<number>): Promise<void> {
  const values: number[] = [];
  for (let i = 0; i < ctx.params.runs; i++) {
    try {
      values.push(await once());
    } catch (err) {
      if (shuttingDown()) throw err;
      ctx.result.errors[metric] = (err as Error).message;
      ctx.log(`${ctx.target.system}: ${metric} run ${i + 1} FAILED: ${(err as Error).message}`);
      break;
    }
  }
  if (values.length) {
    ctx.result.metrics[metric] = summarizeRates(values);
    ctx.log(`${ctx.target.system}: ${metric} ${values.map((v) => v.toFixed(0)).join(', ')}`);
  }
}

async function verify(ctx: Ctx, ref: string, after: string): Promise<void> {
  try {
    await nfsio(ctx, 'verify', ref, [String(ctx.params.bigBytes)]);
  } catch (err) {
    if (shuttingDown()) throw err;
    const msg = `read-back after ${after}: ${(err as Error).message}`;
    ctx.result.errors.integrity = ctx.result.errors.integrity ? `${ctx.result.errors.integrity}; ${msg}` : msg;
    ctx.log(`${ctx.target.system}: INTEGRITY ${msg}`);
  }
}

async function bigFile(ctx: Ctx): Promise<void> {
  const { target, params } = ctx;
  const ref = target.fileRef('gvbench-big.bin');
  const readback = path.join(params.scratchDir, `readback-${target.system}.bin`);
  const mib = params.bigBytes / MIB;
  const timeoutMs = bigTimeoutMs(params.bigBytes);
  try {
    await measure(ctx, 'writeCopy', async () => {
      await nfsio(ctx, 'rm', ref);
      const r = await runCommand([...target.wrap, ...target.copyInArgv(params.sourceFile, ref)], { timeoutMs });
      return mib / r.seconds;
    });
    if (ctx.result.metrics.writeCopy) await verify(ctx, ref, target.copyTool);
    await measure(ctx, 'readCopy', async () => {
      await rm(readback, { force: true });
      const r = await runCommand([...target.wrap, ...target.copyOutArgv(ref, readback)], { timeoutMs });
      return mib / r.seconds;
    });
    await rm(readback, { force: true });
    await measure(ctx, 'writeNfsio', async () => {
      await nfsio(ctx, 'rm', ref);
      const j = await nfsio(ctx, 'write', ref, [String(params.bigBytes)]);
      return Number(j.mibps);
    });
    if (ctx.result.metrics.writeNfsio) await verify(ctx, ref, 'nfsio write');
    await measure(ctx, 'readNfsio', async () => {
      const j = await nfsio(ctx, 'read', ref);
      if (Number(j.bytes) !== params.bigBytes) {
        throw new GvError('EIO', `nfsio read got ${String(j.bytes)} bytes, expected ${params.bigBytes}`);
      }
      return Number(j.mibps);
    });
  } finally {
    await rm(readback, { force: true });
    if (!shuttingDown()) {
      await nfsio(ctx, 'rm', ref).catch((err: Error) => ctx.log(`${target.system}: removing big file: ${err.message}`));
    }
  }
}

/**
 * How long a system waits, after the previous system's small-file runs deleted their files, before
 * its own first run. On an ext4 without a journal (this VM's root filesystem) a new inode skips
 * every inode of its group freed in about the last minute (`recently_deleted()`, kernel inode
 * allocator); measured here with a C loop: open(O_CREAT) 11 µs median in a quiet group, 81 µs right
 * after deleting 2,000 files there, 10 µs again 65 s later. The systems' directories share a
 * parent, so without the wait each system's first create phase paid for the one run before it
 * (ganesha first: nothing; GrapeVineFS: ganesha's 6,000 deletions). Later runs of a system follow
 * its own deletions, alike for every system.
 */
export const SMALL_FILES_COOLDOWN_MS = 65_000;

/** Milliseconds still to wait at `now` (0: none; nothing deleted yet, or long enough ago). */
export function cooldownWait(c: SuiteParams['cooldown'], now: number): number {
  if (!c || c.lastDeletionAt === undefined) return 0;
  return Math.max(0, Math.min(c.ms, c.lastDeletionAt + c.ms - now));
}

async function coolDown(ctx: Ctx): Promise<void> {
  const c = ctx.params.cooldown;
  const wait = cooldownWait(c, Date.now());
  if (!c || wait <= 0) return;
  ctx.log(`${ctx.target.system}: waiting ${(wait / 1000).toFixed(0)} s before the small-file runs (files deleted by the previous system's runs slow inode allocation for a minute on ext4 without a journal)`);
  await new Promise<void>((r) => setTimeout(r, wait));
}

async function smallFiles(ctx: Ctx): Promise<void> {
  const { params } = ctx;
  const per: Record<string, number[]> = {};
  const timeoutMs = Math.max(120_000, params.smallCount * 300);
  await coolDown(ctx);
  if (shuttingDown()) return;
  try {
    await smallFileRuns(ctx, per, timeoutMs);
  } finally {
    if (params.cooldown) params.cooldown.lastDeletionAt = Date.now();
  }
  for (const phase of SMALL_PHASES) {
    const v = per[phase];
    if (v?.length) ctx.result.metrics[phase] = summarizeRates(v);
  }
}

async function smallFileRuns(ctx: Ctx, per: Record<string, number[]>, timeoutMs: number): Promise<void> {
  const { params } = ctx;
  for (let i = 0; i < params.runs; i++) {
    try {
      const { json } = await client(
        ctx, [ctx.helpers.smallfiles, ctx.target.rootRef, String(params.smallCount), String(params.smallSize)], timeoutMs,
      );
      for (const phase of SMALL_PHASES) (per[phase] ??= []).push(Number(json[phase]));
      ctx.log(`${ctx.target.system}: small files run ${i + 1}: ${SMALL_PHASES.map((p) => `${p} ${Number(json[p]).toFixed(0)}`).join(', ')} /s`);
    } catch (err) {
      if (shuttingDown()) throw err;
      // smallfiles names the phase and file that failed
      const msg = (err as Error).message;
      const phase = SMALL_PHASES.find((p) => msg.includes(`smallfiles: ${p} `)) ?? 'smallfiles';
      ctx.result.errors[phase] = msg;
      ctx.log(`${ctx.target.system}: small files run ${i + 1} FAILED: ${msg}`);
      break;
    }
  }
}

/** Everything measured on one target. Failures are recorded in the result, not thrown. */
export async function runSuite(
  target: BenchTarget, helpers: Helpers, params: SuiteParams, log: (line: string) => void,
): Promise<SystemResult> {
  const result: SystemResult = { system: target.system, location: target.location, copyTool: target.copyTool, metrics: {}, errors: {} };
  const ctx: Ctx = { target, helpers, params, log, result };
  if (target.system !== 'local') {
    try {
      const j = await client(ctx, [helpers.nfsio, 'info', target.fileRef('probe')], 60_000);
      result.readmax = Number(j.json.readmax);
      result.writemax = Number(j.json.writemax);
      log(`${target.system}: mounted ${target.location}; rtmax ${result.readmax}, wtmax ${result.writemax}`);
    } catch (err) {
      if (shuttingDown()) throw err;
      result.errors.info = (err as Error).message;
      log(`${target.system}: mount/FSINFO FAILED: ${(err as Error).message}`);
      return result; // nothing else can work without a mount
    }
  }
  if (params.bigBytes > 0) await bigFile(ctx);
  if (params.smallCount > 0) await smallFiles(ctx);
  return result;
}
