/**
 * A GrapeVineFS cluster in network namespaces: one host (namespace) per node, one `gvd` each,
 * every node's config, state and zones under one temporary directory. The first node makes the
 * cluster (`gv init --cluster`), the others join with its token, so all share the cluster key.
 * Each daemon serves NFS on its host's address (ports 2049/20048 inside its namespace) and runs
 * ELP with fast timers. Used by the replication bench and by test/harness/cluster.ts.
 *
 * Zones are created with `gv zone create NAME --nodes ...` on each member before the daemons
 * start (default directory `<state_dir>/zones/<name>`), unless `zoneCreate: 'first'` asks for the
 * first member only (catalog replication makes the others follow).
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { GvError } from '../errors.js';
import { createNetnsLab, NETNS_SUBNET, type NetnsLab } from './netns.js';
import { runCommand, stopChild, waitForExit } from './processes.js';
import { repoRoot } from './tools.js';

export const CLUSTER_NFS_PORT = 2049;
export const CLUSTER_MOUNT_PORT = 20048;
const READY_TIMEOUT_MS = 30_000;
const MAX_KEPT_OUTPUT = 256 * 1024;

export interface ClusterZone {
  name: string;
  /** Default '1G'. */
  quota?: string;
  /** Member nodes (default: every host). */
  nodes?: string[];
}

export interface GvClusterOptions {
  /** Node names; each is also its host (namespace) name. 1-12 of [a-z0-9_-]. */
  hosts: string[];
  /** Zones to create (default one zone `tier-1` on every host). */
  zones?: (string | ClusterZone)[];
  /** 'each' (default): `gv zone create` on every member; 'first': on the first member only. */
  zoneCreate?: 'each' | 'first';
  /** TOML appended to a node's config. */
  configExtra?: (host: string) => string;
  /** Extra environment of the daemons and CLI runs. */
  env?: Record<string, string>;
  /** Where the temporary directory goes (default the OS temp dir). */
  baseDir?: string;
  /** Namespace prefix (default "gvc"). */
  prefix?: string;
  clusterName?: string;
  /** ELP announce interval (default 200 ms) and silence before "unreachable" (default 800 ms). */
  elpIntervalMs?: number;
  unreachableMs?: number;
  logLevel?: string;
  /** NFS root squashing (default "none": the bench and tests write as root). */
  squash?: 'none' | 'root' | 'all';
  /** Hosts whose daemon starts at once (default all). */
  startHosts?: string[];
  /** The CLI entry point (default dist/cli/main.js of this checkout). */
  mainJs?: string;
  /** Keep the temporary directory (configs, state, daemon logs) at stop(). */
  keepDir?: boolean;
}

export interface ClusterNode {
  name: string;
  ip: string;
  /** This node's directory (config, state, log). */
  dir: string;
  stateDir: string;
  config: string;
  logFile: string;
  zonePath(zone: string): string;
  running(): boolean;
  pid(): number | undefined;
  /** Output (stdout and stderr) of the current daemon process so far (last 256 KiB). */
  output(): string;
  /** The last `n` log lines at warn level or above (JSON `msg` and `err`), for error messages. */
  problems(n?: number): string[];
}

export interface GvResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface GvCluster {
  lab: NetnsLab;
  dir: string;
  clusterName: string;
  nodes: Record<string, ClusterNode>;
  node(host: string): ClusterNode;
  /** Start host's daemon and wait (bounded) for its ready line. */
  start(host: string): Promise<void>;
  /** SIGTERM host's daemon (SIGKILL after 10 s). */
  stopNode(host: string): Promise<void>;
  kill9(host: string): Promise<void>;
  restart(host: string): Promise<void>;
  /** Run the CLI inside host's namespace against its config (bounded). */
  gv(host: string, args: string[], timeoutMs?: number): Promise<GvResult>;
  /** `gv ARGS --json`, parsed; throws on a non-zero exit. */
  gvJson<T = Record<string, unknown>>(host: string, args: string[], timeoutMs?: number): Promise<T>;
  /** Stop every daemon, delete the namespaces and the temporary directory. Never throws. */
  stop(): Promise<void>;
}

interface Proc {
  child: ChildProcess;
  out: string;
  log: WriteStream;
}

/** Temporary directories of clusters not stopped yet: removed on process exit as a last resort. */
const liveDirs = new Set<string>();
process.once('exit', () => {
  for (const d of liveDirs) fs.rmSync(d, { recursive: true, force: true, maxRetries: 2 });
});

const zoneSpec = (z: string | ClusterZone): ClusterZone => (typeof z === 'string' ? { name: z } : z);

/** Why a cluster cannot be made here (the CLI not built), or null. Network checks: netnsSkipReason(). */
export function clusterBuildProblem(mainJs = path.join(repoRoot, 'dist', 'cli', 'main.js')): string | null {
  return fs.existsSync(mainJs) ? null : `${mainJs} is missing: build the CLI first (npm run build)`;
}

export async function startGvCluster(opts: GvClusterOptions): Promise<GvCluster> {
  const mainJs = opts.mainJs ?? path.join(repoRoot, 'dist', 'cli', 'main.js');
  const problem = clusterBuildProblem(mainJs);
  if (problem) throw new GvError('CONFIG', problem);
  const names = opts.hosts;
  if (!names.length) throw new GvError('EINVAL', 'a cluster needs at least one host');
  if (new Set(names).size !== names.length) throw new GvError('EINVAL', `duplicate host names: ${names.join(',')}`);
  const clusterName = opts.clusterName ?? 'gvlab';
  const env = { ...process.env, ...opts.env };
  const dir = fs.mkdtempSync(path.join(opts.baseDir ?? os.tmpdir(), 'gvcluster-'));
  if (!opts.keepDir) liveDirs.add(dir);
  const procs = new Map<string, Proc>();
  let lab: NetnsLab | null = null;

  const stopAll = async (): Promise<void> => {
    await Promise.all([...procs.keys()].map((h) => stopNode(h).catch(() => undefined)));
    await lab?.cleanup().catch(() => undefined);
    if (opts.keepDir) return;
    try {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
      liveDirs.delete(dir);
    } catch {
      /* left for the exit hook */
    }
  };

  const nodes: Record<string, ClusterNode> = {};
  const node = (h: string): ClusterNode => {
    const n = nodes[h];
    if (!n) throw new GvError('EINVAL', `unknown host ${h} (hosts: ${names.join(', ')})`);
    return n;
  };

  const gv = async (h: string, args: string[], timeoutMs = 30_000): Promise<GvResult> => {
    const n = node(h);
    const argv = [...lab!.wrap(h), process.execPath, mainJs, ...args];
    if (!args.includes('--config') && !['init'].includes(args[0] ?? '')) argv.push('--config', n.config);
    const r = await runCommand(argv, { timeoutMs, env, cwd: n.dir, check: false });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  };
  const gvJson = async <T>(h: string, args: string[], timeoutMs?: number): Promise<T> => {
    const r = await gv(h, [...args, '--json'], timeoutMs);
    if (r.code !== 0) throw new GvError('EIO', `gv ${args.join(' ')} on ${h} exited ${r.code}: ${r.stderr.trim()}${r.stdout.trim()}`);
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      throw new GvError('EIO', `gv ${args.join(' ')} on ${h}: not JSON: ${r.stdout.slice(0, 300)}`);
    }
  };

  const start = async (h: string): Promise<void> => {
    const n = node(h);
    if (procs.has(h)) throw new GvError('EBUSY', `${h}: daemon already running`);
    const log = createWriteStream(n.logFile, { flags: 'a' });
    log.on('error', () => undefined);
    // GV_BENCH_CPU_PROF=<dir>: each daemon writes a V8 CPU profile there when it exits (profiling).
    const prof = process.env.GV_BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.join(process.env.GV_BENCH_CPU_PROF, h)] : [];
    // Extra node flags for the daemons (diagnostics: --trace-gc, --max-semi-space-size=…).
    const nodeArgs = process.env.GV_BENCH_NODE_ARGS ? process.env.GV_BENCH_NODE_ARGS.split(' ').filter(Boolean) : [];
    const child = lab!.spawn(h, process.execPath, [...nodeArgs, ...prof, mainJs, 'daemon', '--config', n.config, '--log-level', opts.logLevel ?? 'info'], {
      stdio: ['ignore', 'pipe', 'pipe'], env, cwd: n.dir,
    });
    const p: Proc = { child, out: '', log };
    procs.set(h, p);
    const onData = (d: Buffer): void => {
      if (!log.writableEnded) log.write(d);
      p.out += d.toString();
      if (p.out.length > MAX_KEPT_OUTPUT) p.out = p.out.slice(-MAX_KEPT_OUTPUT / 2);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', () => {
      if (procs.get(h) === p) procs.delete(h);
      log.end();
    });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        cleanupListeners();
        child.kill('SIGKILL');
        reject(new GvError('EIO', `${h}: daemon not ready in ${READY_TIMEOUT_MS} ms; output:\n${p.out.slice(-4000)}`));
      }, READY_TIMEOUT_MS);
      const check = (): void => {
        if (/"msg":"gvd ready"/.test(p.out)) {
          cleanupListeners();
          resolve();
        }
      };
      const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
        cleanupListeners();
        reject(new GvError('EIO', `${h}: daemon exited (${code ?? sig}) before ready; output:\n${p.out.slice(-4000)}`));
      };
      const cleanupListeners = (): void => {
        clearTimeout(t);
        child.stdout!.off('data', check);
        child.off('exit', onExit);
      };
      child.stdout!.on('data', check);
      child.once('exit', onExit);
      check();
    });
  };

  const stopNode = async (h: string): Promise<void> => {
    const p = procs.get(h);
    if (!p) return;
    await stopChild(p.child, 'SIGTERM', 10_000);
    procs.delete(h);
  };

  const kill9 = async (h: string): Promise<void> => {
    const p = procs.get(h);
    if (!p) throw new GvError('ENOENT', `${h}: no daemon running`);
    p.child.kill('SIGKILL');
    if (!(await waitForExit(p.child, 10_000))) throw new GvError('EIO', `${h}: daemon did not die on SIGKILL`);
    procs.delete(h);
  };

  try {
    lab = await createNetnsLab(names, { prefix: opts.prefix ?? 'gvc' });
    for (const h of names) {
      const ndir = path.join(dir, h);
      fs.mkdirSync(ndir, { recursive: true });
      const stateDir = path.join(ndir, 'state');
      nodes[h] = {
        name: h,
        ip: lab.hosts[h]!.ip,
        dir: ndir,
        stateDir,
        config: path.join(ndir, 'gv.toml'),
        logFile: path.join(ndir, 'gvd.log'),
        zonePath: (zone) => path.join(stateDir, 'zones', zone),
        running: () => procs.has(h),
        pid: () => procs.get(h)?.child.pid,
        output: () => procs.get(h)?.out ?? '',
        problems: (count = 3) => problemLines(fs.existsSync(path.join(ndir, 'gvd.log')) ? tail(path.join(ndir, 'gvd.log')) : '', count),
      };
    }
    // The first node makes the cluster key, the others join with its token.
    const first = node(names[0]!);
    const init = await gvJson<{ joinToken: string }>(names[0]!, ['init', '--name', first.name, '--cluster', clusterName, '--state-dir', first.stateDir, '--config', first.config]);
    for (const h of names.slice(1)) {
      const n = node(h);
      await gvJson(h, ['init', '--name', h, '--join-token', init.joinToken, '--state-dir', n.stateDir, '--config', n.config]);
    }
    for (const h of names) adaptConfig(node(h), names, opts);
    const zones = (opts.zones ?? ['tier-1']).map(zoneSpec);
    for (const z of zones) {
      const members = z.nodes ?? names;
      for (const m of members) if (!nodes[m]) throw new GvError('EINVAL', `zone ${z.name}: member ${m} is not a host`);
      const creators = opts.zoneCreate === 'first' ? members.slice(0, 1) : members;
      for (const h of creators) {
        await gvJson(h, ['zone', 'create', z.name, '--quota', z.quota ?? '1G', '--nodes', members.join(',')]);
      }
    }
    await Promise.all((opts.startHosts ?? names).map((h) => start(h)));
  } catch (err) {
    const outputs = [...procs.entries()].map(([h, p]) => `--- ${h}\n${p.out.slice(-2000)}`).join('\n');
    await stopAll();
    if (outputs && err instanceof GvError) err.data.outputs = outputs;
    throw err;
  }

  return {
    lab,
    dir,
    clusterName,
    nodes,
    node,
    start,
    stopNode,
    kill9,
    restart: async (h) => {
      await stopNode(h);
      await start(h);
    },
    gv,
    gvJson,
    stop: stopAll,
  };
}

/** The last 256 KiB of a file. */
function tail(file: string): string {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, MAX_KEPT_OUTPUT);
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, size - len);
    return b.toString();
  } finally {
    fs.closeSync(fd);
  }
}

/** pino lines at warn (40) or above: "msg: err.message". */
export function problemLines(out: string, count: number): string[] {
  const found: string[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as { level?: number; msg?: string; err?: { message?: string } };
      if ((j.level ?? 0) >= 40) found.push(`${j.msg ?? ''}${j.err?.message ? `: ${j.err.message}` : ''}`.slice(0, 300));
    } catch {
      /* not a log line */
    }
  }
  return found.slice(-count);
}

/** gv init wrote a config for 127.0.0.1; serve on the host's address, fast ELP, known members. */
function adaptConfig(n: ClusterNode, names: string[], opts: GvClusterOptions): void {
  let text = fs.readFileSync(n.config, 'utf8');
  const sub = (re: RegExp, to: string): void => {
    if (!re.test(text)) throw new GvError('CONFIG', `${n.config}: gv init's config has no match for ${re}`);
    text = text.replace(re, to);
  };
  sub(/^listen = "127\.0\.0\.1"$/m, `listen = "${n.ip}"`);
  sub(/^port = 2049$/m, `port = ${CLUSTER_NFS_PORT}`);
  sub(/^mount_port = 20048$/m, `mount_port = ${CLUSTER_MOUNT_PORT}`);
  sub(/^portmap = "auto"$/m, `portmap = "off"\nsquash = "${opts.squash ?? 'none'}"`);
  sub(/^nodes = \[\]/m, `nodes = ${JSON.stringify(names.filter((m) => m !== n.name))}`);
  sub(/^# zone_allow = .*$/m, `zone_allow = ["${NETNS_SUBNET}.0/24", "127.0.0.1/32"]`);
  text += `\n[elp]\ninterface = "${n.ip}"\ninterval_ms = ${opts.elpIntervalMs ?? 200}\nunreachable_after_ms = ${opts.unreachableMs ?? 800}\n`;
  const extra = opts.configExtra?.(n.name);
  if (extra) text += `\n${extra}\n`;
  fs.writeFileSync(n.config, text);
}
