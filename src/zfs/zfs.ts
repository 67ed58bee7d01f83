/**
 * A small typed wrapper over the `zfs` and `zpool` CLIs, enough to keep zones in datasets with a
 * quota. Works with OpenZFS 2.x and with zfs-fuse 0.7 (the test rig), whose CLI lacks `zfs list -p`,
 * `zpool list -p`, JSON output and `zfs version`: exact numbers therefore always come from
 * `zfs get -Hp -o property,value`. Every name is validated before a command runs; every command runs
 * through a ZfsRunner (execFile, no shell, bounded time and output) and failures become GvError.
 */
import { GvError } from '../errors.js';
import { mapZfsFailure } from './error-map.js';
import { validateDatasetName, validateMountpoint, validatePropertyName } from './names.js';
import {
  parseExactBytes,
  parseHumanSize,
  parseLegacyPoolVersion,
  parseOpenZfsVersion,
  parsePropertyValues,
  parseTabular,
  type ZfsVersion,
} from './parse.js';
import { createExecFileRunner, type RunResult, type ZfsCommand, type ZfsRunner } from './runner.js';

export type { ZfsVersion, ZfsFlavor } from './parse.js';

export interface ZfsOptions {
  /** How commands run; default: execFile of the zfs/zpool binaries. */
  runner?: ZfsRunner;
  /** Per-command limit (default 30 s); the child is SIGKILLed after it. */
  timeoutMs?: number;
  /** Per-command stdout/stderr limit (default 4 MiB). */
  maxOutputBytes?: number;
  /** destroy(): attempts while ZFS answers "busy" (default 5). */
  destroyAttempts?: number;
  /** destroy(): pause before retry n is n × this (default 200 ms). */
  retryDelayMs?: number;
  /** Replaceable sleep (tests). */
  sleep?: (ms: number) => Promise<void>;
}

export interface PoolInfo {
  name: string;
  size: bigint;
  free: bigint;
  /** ONLINE, DEGRADED, FAULTED, ... as printed. */
  health: string;
  /** false when the tool only prints rounded human units (zfs-fuse: `1016M`). */
  exact: boolean;
}

export interface DatasetUsage {
  used: bigint;
  available: bigint;
  /** null when no quota is set (zfs-fuse prints 0, OpenZFS 0 or none). */
  quota: bigint | null;
  referenced: bigint;
}

export interface CreateOptions {
  /** Quota in bytes (> 0). */
  quota?: bigint;
  /** Absolute path, 'none' or 'legacy'; default: inherited from the parent. */
  mountpoint?: string;
  /** Also create missing parent datasets (`zfs create -p`). */
  parents?: boolean;
}

export interface DestroyOptions {
  /** Also destroy children (`zfs destroy -r`). */
  recursive?: boolean;
}

export interface ZfsDetection {
  available: boolean;
  /** Why not, in one line (null when available). */
  reason: string | null;
  version: ZfsVersion | null;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024;
const DEFAULT_DESTROY_ATTEMPTS = 5;
const DEFAULT_RETRY_DELAY_MS = 200;
/** `-o quota=N` must fit ZFS's uint64. */
const MAX_U64 = (1n << 64n) - 1n;

function reasonOf(err: unknown): string | undefined {
  return err instanceof GvError ? (err.data.reason as string | undefined) : undefined;
}

function checkQuota(bytes: bigint, what: string): void {
  if (typeof bytes !== 'bigint' || bytes <= 0n || bytes > MAX_U64) {
    throw new GvError('EINVAL', `${what}: quota must be a bigint byte count > 0 (use null to remove it)`, { quota: String(bytes) });
  }
}

export class Zfs {
  private readonly runner: ZfsRunner;
  private readonly timeoutMs: number;
  private readonly maxOutputBytes: number;
  private readonly destroyAttempts: number;
  private readonly retryDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private versionCache: Promise<ZfsVersion> | null = null;

  constructor(options: ZfsOptions = {}) {
    this.runner = options.runner ?? createExecFileRunner();
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxOutputBytes = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
    this.destroyAttempts = Math.max(1, Math.min(options.destroyAttempts ?? DEFAULT_DESTROY_ATTEMPTS, 20));
    this.retryDelayMs = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
    this.sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Run and return the raw result (no throw on failure). */
  private exec(command: ZfsCommand, args: readonly string[]): Promise<RunResult> {
    return this.runner(command, args, { timeoutMs: this.timeoutMs, maxOutputBytes: this.maxOutputBytes });
  }

  /** Run; stdout on exit status 0, else the mapped GvError. */
  private async run(command: ZfsCommand, args: readonly string[]): Promise<string> {
    const r = await this.exec(command, args);
    if (r.exitCode === 0 && !r.failure) return r.stdout;
    throw mapZfsFailure(command, args, r);
  }

  /** Is a usable zfs there (installed, daemon/module reachable, allowed)? With the reason if not. */
  async detect(): Promise<ZfsDetection> {
    try {
      await this.run('zpool', ['list', '-H', '-o', 'name']);
      return { available: true, reason: null, version: await this.version() };
    } catch (e) {
      return { available: false, reason: e instanceof Error ? e.message : String(e), version: null };
    }
  }

  async available(): Promise<boolean> {
    return (await this.detect()).available;
  }

  /** Which ZFS this is: OpenZFS (`zfs version`) or zfs-fuse (legacy pool version 23). Cached. */
  version(): Promise<ZfsVersion> {
    if (!this.versionCache) {
      this.versionCache = this.probeVersion();
      this.versionCache.catch(() => {
        this.versionCache = null; // retry next time (daemon may come up)
      });
    }
    return this.versionCache;
  }

  private async probeVersion(): Promise<ZfsVersion> {
    const v = await this.exec('zfs', ['version']);
    if (v.exitCode === 0 && !v.failure) {
      const release = parseOpenZfsVersion(v.stdout);
      if (release) return { flavor: 'openzfs', version: release, poolVersion: null, parsable: true };
    }
    if (v.failure || !/unrecognized command/i.test(v.stderr)) {
      // not installed / daemon down / no permission: report that, not a guess
      const mapped = mapZfsFailure('zfs', ['version'], v);
      if (mapped.code !== 'EINVAL' && mapped.code !== 'EIO') throw mapped;
    }
    const up = await this.run('zpool', ['upgrade', '-v']);
    const poolVersion = parseLegacyPoolVersion(up);
    if (poolVersion !== null) {
      // A Linux userland without `zfs version` and with legacy pool versions is zfs-fuse;
      // 0.7.x is the release that supports pool version 23.
      return { flavor: 'zfs-fuse', version: poolVersion === 23 ? '0.7' : null, poolVersion, parsable: false };
    }
    return { flavor: 'unknown', version: null, poolVersion: null, parsable: /feature flags/i.test(up) };
  }

  /** Imported pools with size/free in bytes (exact where the tool can print exact numbers). */
  async listPools(): Promise<PoolInfo[]> {
    const { parsable } = await this.version();
    const args = parsable
      ? ['list', '-H', '-p', '-o', 'name,size,free,health']
      : ['list', '-H', '-o', 'name,size,free,health'];
    const out = await this.run('zpool', args);
    if (/^no pools available\s*$/.test(out.trim())) return [];
    return parseTabular(out, 4, 'zpool list').map(([name, size, free, health]) => ({
      name: name!,
      size: parsable ? parseExactBytes(size!, 'size') ?? 0n : parseHumanSize(size!),
      free: parsable ? parseExactBytes(free!, 'free') ?? 0n : parseHumanSize(free!),
      health: health!,
      exact: parsable,
    }));
  }

  async datasetExists(name: string): Promise<boolean> {
    validateDatasetName(name);
    try {
      const out = await this.run('zfs', ['list', '-H', '-o', 'name', name]);
      return out.split('\n').some((l) => l === name);
    } catch (e) {
      const r = reasonOf(e);
      if (r === 'no-such-dataset' || r === 'no-such-pool') return false;
      throw e;
    }
  }

  /** `zfs create [-p] [-o quota=N] [-o mountpoint=P] name`. EEXIST if it exists, ENOENT without pool/parent. */
  async create(name: string, opts: CreateOptions = {}): Promise<void> {
    validateDatasetName(name);
    if (!name.includes('/')) throw new GvError('EINVAL', `zfs create ${name}: a pool's root dataset is made by zpool create`, { name });
    const args = ['create'];
    if (opts.parents) args.push('-p');
    if (opts.quota !== undefined) {
      checkQuota(opts.quota, `zfs create ${name}`);
      args.push('-o', `quota=${opts.quota}`);
    }
    if (opts.mountpoint !== undefined) {
      validateMountpoint(opts.mountpoint);
      args.push('-o', `mountpoint=${opts.mountpoint}`);
    }
    args.push(name);
    await this.run('zfs', args);
  }

  /** Exact (`-p`) values of the given properties, as printed (`zfs get` prints 0 for an unset quota). */
  async get(name: string, props: readonly string[]): Promise<Record<string, string>> {
    validateDatasetName(name);
    if (props.length === 0) throw new GvError('EINVAL', `zfs get ${name}: no properties asked for`);
    for (const p of props) validatePropertyName(p);
    if (new Set(props).size !== props.length) throw new GvError('EINVAL', `zfs get ${name}: duplicate property`, { props: [...props] });
    const out = await this.run('zfs', ['get', '-H', '-p', '-o', 'property,value', props.join(','), name]);
    return parsePropertyValues(out, props);
  }

  /** Set (bytes > 0) or remove (null) the quota. `zfs set` takes one property per call on zfs-fuse. */
  async setQuota(name: string, bytes: bigint | null): Promise<void> {
    validateDatasetName(name);
    if (bytes !== null) checkQuota(bytes, `zfs set quota ${name}`);
    await this.run('zfs', ['set', `quota=${bytes === null ? 'none' : bytes}`, name]);
  }

  async usage(name: string): Promise<DatasetUsage> {
    const v = await this.get(name, ['used', 'available', 'quota', 'referenced']);
    const need = (p: string): bigint => {
      const n = parseExactBytes(v[p]!, p);
      if (n === null) throw new GvError('EIO', `zfs get ${p} ${name}: no value (${v[p]})`);
      return n;
    };
    return {
      used: need('used'),
      available: need('available'),
      quota: parseExactBytes(v.quota!, 'quota', true),
      referenced: need('referenced'),
    };
  }

  /** The mountpoint path, or null for `none`/`legacy`. Says nothing about whether it is mounted. */
  async mountpoint(name: string): Promise<string | null> {
    const { mountpoint } = await this.get(name, ['mountpoint']);
    return mountpoint === 'none' || mountpoint === 'legacy' || mountpoint === '-' ? null : mountpoint!;
  }

  async isMounted(name: string): Promise<boolean> {
    return (await this.get(name, ['mounted'])).mounted === 'yes';
  }

  /** Mount; a no-op when already mounted. */
  async mount(name: string): Promise<void> {
    validateDatasetName(name);
    try {
      await this.run('zfs', ['mount', name]);
    } catch (e) {
      if (reasonOf(e) !== 'already-mounted') throw e;
    }
  }

  /** Unmount; a no-op when not mounted. EBUSY while a process uses it. */
  async unmount(name: string): Promise<void> {
    validateDatasetName(name);
    try {
      await this.run('zfs', ['unmount', name]);
    } catch (e) {
      if (reasonOf(e) !== 'not-mounted') throw e;
    }
  }

  /**
   * `zfs destroy [-r] name`. A mounted dataset may fail "dataset is busy" once (zfs-fuse unmounts
   * it and then gives up): on EBUSY we unmount it (children first with `recursive`) and retry, a
   * bounded number of times. Still busy after that (a process has its cwd/open files inside) → EBUSY.
   */
  async destroy(name: string, opts: DestroyOptions = {}): Promise<void> {
    validateDatasetName(name);
    if (!name.includes('/')) throw new GvError('EINVAL', `zfs destroy ${name}: refusing to destroy a pool's root dataset`, { name });
    const args = opts.recursive ? ['destroy', '-r', name] : ['destroy', name];
    let last: unknown = null;
    for (let attempt = 1; attempt <= this.destroyAttempts; attempt++) {
      try {
        await this.run('zfs', args);
        return;
      } catch (e) {
        last = e;
        const r = reasonOf(e);
        // Gone after an earlier busy attempt: the earlier attempt finished the job.
        if (attempt > 1 && r === 'no-such-dataset') return;
        if (r !== 'busy') throw e;
      }
      if (attempt === this.destroyAttempts) break;
      await this.unmountForDestroy(name, opts.recursive === true);
      await this.sleep(this.retryDelayMs * attempt);
    }
    const err = last as GvError;
    throw new GvError('EBUSY', `${err.message} (still busy after ${this.destroyAttempts} attempts; a process may use it)`, err.data);
  }

  /** Best effort: unmount `name` (and with `recursive` its descendants, deepest first). */
  private async unmountForDestroy(name: string, recursive: boolean): Promise<void> {
    let names = [name];
    if (recursive) {
      try {
        const out = await this.run('zfs', ['list', '-H', '-r', '-o', 'name', name]);
        names = out.split('\n').filter((l) => l === name || l.startsWith(`${name}/`));
        names.sort((a, b) => b.split('/').length - a.split('/').length);
      } catch {
        /* fall back to the dataset itself */
      }
    }
    for (const n of names) {
      try {
        await this.unmount(n);
      } catch {
        /* the next destroy attempt reports what is wrong */
      }
    }
  }
}
