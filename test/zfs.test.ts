import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GvError, toGvError } from '../src/errors.js';
import { mapZfsFailure } from '../src/zfs/error-map.js';
import { validateDatasetName, validateMountpoint, validatePoolName } from '../src/zfs/names.js';
import { parseExactBytes, parseHumanSize, parsePropertyValues } from '../src/zfs/parse.js';
import { createExecFileRunner, findBinary, type ExecFileFn, type RunResult, type ZfsRunner } from '../src/zfs/runner.js';
import { Zfs } from '../src/zfs/zfs.js';
import { createZfsTestPool, zfsFuseUnavailableReason, type ZfsTestPool } from './harness/zfs-pool.js';

const MiB = 1n << 20n;

// ---- output captured from zfs-fuse 0.7.0 (Debian 12), pool on a 1 GiB sparse file ----------------
const CAPTURED = {
  zpoolList: 'h7x\t1016M\t1015M\tONLINE\n',
  getUsage: 'quota\t67108864\nused\t114688\navailable\t66994176\nreferenced\t114688\n',
  getUnsetQuota: 'quota\t0\n',
  getMount: 'mountpoint\t/tmp/h7-explore/mnt/h7x/a\n',
  exists: "cannot create 'h7x/a': dataset already exists\n",
  noPool: "cannot create 'nope/a': no such pool 'nope'\n",
  noParent: "cannot create 'h7x/x/y': parent does not exist\n",
  noDataset: "cannot open 'h7x/nope': dataset does not exist\n",
  destroyBusy: "cannot destroy 'h7x/m': dataset is busy\n",
  umountBusy:
    'umount: /tmp/h7-explore/mnt/h7x/m: target is busy.\n' +
    "cannot unmount '/tmp/h7-explore/mnt/h7x/m': umount failed: umount child process failed\n",
  notMounted: "cannot unmount 'h7x/m': not currently mounted\n",
  alreadyMounted: "cannot mount 'h7x/m': filesystem already mounted\n",
  hasChildren: "cannot destroy 'h7x/x': filesystem has children\nuse '-r' to destroy the following datasets:\nh7x/x/y\n",
  outOfSpace: "cannot create 'h7x/q': out of space\n",
  badNumber: "cannot create 'h7x/q': bad numeric value '-5'\n",
  quotaBelowUsed: "cannot set property for 'h7x/a': size is less than current used or reserved space\n",
  // as an unprivileged user (socket is root-only)
  permission: 'connect: Permission denied\ninternal error: failed to initialize ZFS library\n',
  daemonDown:
    'connect: No such file or directory\nPlease make sure that the zfs-fuse daemon is running.\n' +
    'internal error: failed to initialize ZFS library\n',
  versionUnknown: "unrecognized command 'version'\nusage: zfs command args ...\nwhere 'command' is one of the following:\n",
  upgradeV: 'This system is currently running ZFS pool version 23.\n\nThe following versions are supported:\n\nVER  DESCRIPTION\n',
};

// ---- a scripted runner: argv → result; records every call; unknown argv fails the test -----------
interface Call {
  command: string;
  args: string[];
}
function scripted(script: Record<string, RunResult | RunResult[]>): { runner: ZfsRunner; calls: Call[] } {
  const calls: Call[] = [];
  const runner: ZfsRunner = async (command, args) => {
    calls.push({ command, args: [...args] });
    const key = [command, ...args].join(' ');
    const entry = script[key];
    if (entry === undefined) throw new Error(`unscripted command: ${key}`);
    if (Array.isArray(entry)) {
      const next = entry.shift();
      if (!next) throw new Error(`script for ${key} exhausted`);
      return next;
    }
    return entry;
  };
  return { runner, calls };
}
const ok = (stdout = ''): RunResult => ({ exitCode: 0, stdout, stderr: '' });
const fail = (stderr: string, exitCode = 1): RunResult => ({ exitCode, stdout: '', stderr });
const ZFS_FUSE_VERSION = {
  'zfs version': fail(CAPTURED.versionUnknown, 2),
  'zpool upgrade -v': ok(CAPTURED.upgradeV),
};
const noSleep = async (): Promise<void> => {};

async function rejection(p: Promise<unknown>): Promise<GvError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(GvError);
    return e as GvError;
  }
  throw new Error('expected a rejection');
}

describe('zfs parsing (captured zfs-fuse output)', () => {
  it('parses zfs get -Hp -o property,value', () => {
    const v = parsePropertyValues(CAPTURED.getUsage, ['quota', 'used', 'available', 'referenced']);
    expect(v).toEqual({ quota: '67108864', used: '114688', available: '66994176', referenced: '114688' });
    expect(() => parsePropertyValues('quota\t1\n', ['quota', 'used'])).toThrow(/did not print property used/);
    expect(() => parsePropertyValues('garbage\n', ['quota'])).toThrow(GvError);
  });

  it('reads exact bytes; 0/none/- as unset where asked', () => {
    expect(parseExactBytes('67108864', 'quota')).toBe(67108864n);
    expect(parseExactBytes('0', 'quota', true)).toBeNull();
    expect(parseExactBytes('0', 'used')).toBe(0n);
    expect(parseExactBytes('none', 'quota')).toBeNull();
    expect(parseExactBytes('18446744073709551615', 'x')).toBe(18446744073709551615n);
    expect(() => parseExactBytes('64M', 'quota')).toThrow(/expected a byte count/);
  });

  it('reads the rounded human sizes of zpool list', () => {
    expect(parseHumanSize('1016M')).toBe(1016n * MiB);
    expect(parseHumanSize('99.9M')).toBe((999n * MiB) / 10n);
    expect(parseHumanSize('1.50G')).toBe(1536n * MiB);
    expect(parseHumanSize('556K')).toBe(556n * 1024n);
    expect(parseHumanSize('512')).toBe(512n);
    expect(() => parseHumanSize('12Q')).toThrow(GvError);
  });
});

describe('zfs names are validated before anything runs', () => {
  it('accepts ZFS names and rejects the rest', () => {
    for (const good of ['tank', 'tank/gv-zones/tier-1', 'tank/a_b.c:d', 'Pool9/x']) expect(() => validateDatasetName(good)).not.toThrow();
    const bad = ['', '-o', '-tank/x', 'tank/-x/../y', 'tank/../x', 'tank//x', 'tank/x/', '/tank', 'tank/a b', 'tank/x@snap',
      'tank/x#bm', 'tank/x\ty', 'tank/x\ny', '9tank/x', 'mirror/x', 'c0t0/x', 'tank/' + 'x'.repeat(260), 'tank/ü'];
    for (const name of bad) {
      let err: unknown = null;
      try {
        validateDatasetName(name);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(name)).toBeInstanceOf(GvError);
      expect((err as GvError).code).toBe('EINVAL');
    }
    expect(() => validatePoolName('raidz')).toThrow(/reserved/);
    expect(() => validateMountpoint('relative/path')).toThrow(/absolute/);
    expect(() => validateMountpoint('/x\ny')).toThrow(GvError);
    expect(() => validateMountpoint('none')).not.toThrow();
  });

  it('runs no command for a bad name, property, quota or mountpoint', async () => {
    const { runner, calls } = scripted({});
    const zfs = new Zfs({ runner });
    expect((await rejection(zfs.create('-oquota=1 tank/x'))).code).toBe('EINVAL');
    expect((await rejection(zfs.create('tank/x', { quota: 0n }))).code).toBe('EINVAL');
    expect((await rejection(zfs.create('tank/x', { quota: -5n }))).code).toBe('EINVAL');
    expect((await rejection(zfs.create('tank/x', { mountpoint: 'rel' }))).code).toBe('EINVAL');
    expect((await rejection(zfs.create('tank'))).code).toBe('EINVAL');
    expect((await rejection(zfs.get('tank/x', ['quota,used']))).code).toBe('EINVAL');
    expect((await rejection(zfs.get('tank/x', ['-H']))).code).toBe('EINVAL');
    expect((await rejection(zfs.get('tank/x', []))).code).toBe('EINVAL');
    expect((await rejection(zfs.setQuota('tank/x', 0n))).code).toBe('EINVAL');
    expect((await rejection(zfs.destroy('tank'))).code).toBe('EINVAL');
    expect((await rejection(zfs.destroy('tank/x@s'))).code).toBe('EINVAL');
    expect((await rejection(zfs.datasetExists('tank/../etc'))).code).toBe('EINVAL');
    expect((await rejection(zfs.mount('-a'))).code).toBe('EINVAL');
    expect(calls).toEqual([]);
  });
});

describe('zfs error mapping (captured stderr)', () => {
  const cases: Array<[string, string, string, string, string]> = [
    // [stderr key, expected code, reason, message, argv]
    ['exists', 'EEXIST', 'exists', 'zfs create h7x/a: dataset already exists', 'create h7x/a'],
    ['noPool', 'ENOENT', 'no-such-pool', "zfs create nope/a: no such pool 'nope'", 'create nope/a'],
    ['noParent', 'ENOENT', 'parent-missing', 'zfs create h7x/x/y: parent does not exist', 'create h7x/x/y'],
    ['noDataset', 'ENOENT', 'no-such-dataset', 'zfs get h7x/nope: dataset does not exist', 'get h7x/nope'],
    ['destroyBusy', 'EBUSY', 'busy', 'zfs destroy h7x/m: dataset is busy', 'destroy h7x/m'],
    ['umountBusy', 'EBUSY', 'busy', 'zfs unmount h7x/m: umount failed: umount child process failed', 'unmount h7x/m'],
    ['notMounted', 'EINVAL', 'not-mounted', 'zfs unmount h7x/m: not currently mounted', 'unmount h7x/m'],
    ['alreadyMounted', 'EBUSY', 'already-mounted', 'zfs mount h7x/m: filesystem already mounted', 'mount h7x/m'],
    ['hasChildren', 'ENOTEMPTY', 'has-children', 'zfs destroy h7x/x: filesystem has children', 'destroy h7x/x'],
    ['outOfSpace', 'ENOSPC', 'no-space', 'zfs create h7x/q: out of space', 'create h7x/q'],
    ['badNumber', 'EINVAL', 'invalid', "zfs create h7x/q: bad numeric value '-5'", 'create h7x/q'],
    ['quotaBelowUsed', 'EINVAL', 'invalid', 'zfs set h7x/a: size is less than current used or reserved space', 'set h7x/a'],
    ['permission', 'EACCES', 'permission', 'zfs list: connect: Permission denied', 'list'],
    ['daemonDown', 'ENOTSUP', 'daemon-unreachable', 'zfs list: ZFS daemon or kernel module not reachable (connect: No such file or directory)', 'list'],
  ];
  for (const [key, code, reason, message, argv] of cases) {
    it(`${key} → ${code}`, () => {
      const stderr = CAPTURED[key as keyof typeof CAPTURED];
      const err = mapZfsFailure('zfs', argv.split(' '), fail(stderr));
      expect(err.code).toBe(code);
      expect(err.data.reason).toBe(reason);
      expect(err.message).toBe(message);
      expect(err.message).not.toContain('\n');
      expect(err.data.stderr).toBe(stderr);
    });
  }

  it('unknown failures are EIO with stderr, exit code and argv in data', () => {
    const err = mapZfsFailure('zpool', ['scrub', 'tank'], fail('something odd happened\nsecond line\n', 3));
    expect(err.code).toBe('EIO');
    expect(err.message).toBe('zpool scrub tank: something odd happened');
    expect(err.data).toMatchObject({ command: 'zpool', args: ['scrub', 'tank'], exitCode: 3, stderr: 'something odd happened\nsecond line\n' });
  });

  it('runner failures: missing binary → ENOTSUP, timeout/output/signal → EIO', () => {
    const base = { exitCode: null, stdout: '', stderr: '' };
    expect(mapZfsFailure('zfs', ['list'], { ...base, failure: 'not-found', detail: 'zfs not found' }).code).toBe('ENOTSUP');
    const t = mapZfsFailure('zfs', ['list'], { ...base, failure: 'timeout', detail: 'no exit within 5 ms' });
    expect([t.code, t.data.reason, t.message]).toEqual(['EIO', 'timeout', 'zfs list: timed out (no exit within 5 ms)']);
    expect(mapZfsFailure('zfs', ['list'], { ...base, failure: 'output-limit' }).data.reason).toBe('output-limit');
    expect(mapZfsFailure('zfs', ['list'], { ...base, failure: 'signal', detail: 'killed by SIGTERM' }).code).toBe('EIO');
  });
});

describe('Zfs with a scripted runner', () => {
  it('detects zfs-fuse 0.7 and lists pools from human units', async () => {
    const { runner, calls } = scripted({
      'zpool list -H -o name': ok('h7x\n'),
      ...ZFS_FUSE_VERSION,
      'zpool list -H -o name,size,free,health': ok(CAPTURED.zpoolList),
    });
    const zfs = new Zfs({ runner });
    expect(await zfs.detect()).toEqual({
      available: true, reason: null, version: { flavor: 'zfs-fuse', version: '0.7', poolVersion: 23, parsable: false },
    });
    expect(await zfs.listPools()).toEqual([{ name: 'h7x', size: 1016n * MiB, free: 1015n * MiB, health: 'ONLINE', exact: false }]);
    // the version probe ran once (cached)
    expect(calls.filter((c) => c.args[0] === 'version')).toHaveLength(1);
  });

  it('uses exact -p numbers on OpenZFS', async () => {
    const { runner } = scripted({
      'zfs version': ok('zfs-2.1.11-1\nzfs-kmod-2.1.11-1\n'),
      'zpool list -H -p -o name,size,free,health': ok('tank\t1073741824\t1072693248\tONLINE\n'),
    });
    const zfs = new Zfs({ runner });
    expect(await zfs.version()).toEqual({ flavor: 'openzfs', version: '2.1.11', poolVersion: null, parsable: true });
    expect(await zfs.listPools()).toEqual([{ name: 'tank', size: 1073741824n, free: 1072693248n, health: 'ONLINE', exact: true }]);
  });

  it('reports why zfs is unavailable', async () => {
    const down = new Zfs({ runner: scripted({ 'zpool list -H -o name': fail(CAPTURED.daemonDown) }).runner });
    const d = await down.detect();
    expect(d.available).toBe(false);
    expect(d.reason).toMatch(/not reachable/);
    expect(await down.available()).toBe(false);
    const missing = new Zfs({ runner: createExecFileRunner({ paths: { zfs: '/nonexistent/zfs', zpool: '/nonexistent/zpool' } }) });
    expect(await missing.available()).toBe(false);
    expect((await rejection(missing.version())).code).toBe('ENOTSUP');
    expect((await rejection(missing.create('tank/x'))).message).toMatch(/zfs is not installed/);
  });

  it('create / get / setQuota / usage / mountpoint build the right argv', async () => {
    const { runner, calls } = scripted({
      'zfs create -p -o quota=67108864 -o mountpoint=/srv/z tank/gv/z': ok(),
      'zfs get -H -p -o property,value quota tank/gv/z': ok('quota\t67108864\n'),
      'zfs set quota=134217728 tank/gv/z': ok(),
      'zfs set quota=none tank/gv/z': ok(),
      'zfs get -H -p -o property,value used,available,quota,referenced tank/gv/z': [ok(CAPTURED.getUsage), ok('used\t1\navailable\t2\nquota\t0\nreferenced\t1\n')],
      'zfs get -H -p -o property,value mountpoint tank/gv/z': [ok(CAPTURED.getMount), ok('mountpoint\tnone\n')],
      'zfs list -H -o name tank/gv/z': ok('tank/gv/z\n'),
      'zfs list -H -o name tank/nope': fail(CAPTURED.noDataset),
      'zfs list -H -o name nope/x': fail(CAPTURED.noDataset),
    });
    const zfs = new Zfs({ runner });
    await zfs.create('tank/gv/z', { quota: 64n * MiB, mountpoint: '/srv/z', parents: true });
    expect(await zfs.get('tank/gv/z', ['quota'])).toEqual({ quota: '67108864' });
    await zfs.setQuota('tank/gv/z', 128n * MiB);
    await zfs.setQuota('tank/gv/z', null);
    expect(await zfs.usage('tank/gv/z')).toEqual({ used: 114688n, available: 66994176n, quota: 67108864n, referenced: 114688n });
    expect((await zfs.usage('tank/gv/z')).quota).toBeNull();
    expect(await zfs.mountpoint('tank/gv/z')).toBe('/tmp/h7-explore/mnt/h7x/a');
    expect(await zfs.mountpoint('tank/gv/z')).toBeNull();
    expect(await zfs.datasetExists('tank/gv/z')).toBe(true);
    expect(await zfs.datasetExists('tank/nope')).toBe(false);
    expect(await zfs.datasetExists('nope/x')).toBe(false);
    expect(calls.every((c) => c.command === 'zfs')).toBe(true);
  });

  it('create maps EEXIST / ENOENT', async () => {
    const { runner } = scripted({
      'zfs create h7x/a': fail(CAPTURED.exists),
      'zfs create nope/a': fail(CAPTURED.noPool),
    });
    const zfs = new Zfs({ runner });
    expect((await rejection(zfs.create('h7x/a'))).code).toBe('EEXIST');
    expect((await rejection(zfs.create('nope/a'))).code).toBe('ENOENT');
  });

  it('mount/unmount are idempotent, other failures surface', async () => {
    const { runner } = scripted({
      'zfs mount h7x/m': [fail(CAPTURED.alreadyMounted), ok()],
      'zfs unmount h7x/m': [fail(CAPTURED.notMounted), fail(CAPTURED.umountBusy)],
    });
    const zfs = new Zfs({ runner });
    await zfs.mount('h7x/m');
    await zfs.mount('h7x/m');
    await zfs.unmount('h7x/m');
    expect((await rejection(zfs.unmount('h7x/m'))).code).toBe('EBUSY');
  });

  it('destroy: busy once → unmount → retry succeeds', async () => {
    const { runner, calls } = scripted({
      'zfs destroy h7x/m': [fail(CAPTURED.destroyBusy), ok()],
      'zfs unmount h7x/m': fail(CAPTURED.notMounted),
    });
    const slept: number[] = [];
    const zfs = new Zfs({ runner, sleep: async (ms) => void slept.push(ms) });
    await zfs.destroy('h7x/m');
    expect(calls.map((c) => c.args.join(' '))).toEqual(['destroy h7x/m', 'unmount h7x/m', 'destroy h7x/m']);
    expect(slept).toHaveLength(1);
  });

  it('destroy -r unmounts children deepest first; a vanished dataset after busy counts as done', async () => {
    const { runner, calls } = scripted({
      'zfs destroy -r h7x/x': [fail(CAPTURED.destroyBusy), fail(CAPTURED.noDataset)],
      'zfs list -H -r -o name h7x/x': ok('h7x/x\nh7x/x/y\nh7x/x/y/z\n'),
      'zfs unmount h7x/x/y/z': ok(),
      'zfs unmount h7x/x/y': ok(),
      'zfs unmount h7x/x': ok(),
    });
    await new Zfs({ runner, sleep: noSleep }).destroy('h7x/x', { recursive: true });
    expect(calls.map((c) => c.args.join(' '))).toEqual([
      'destroy -r h7x/x', 'list -H -r -o name h7x/x', 'unmount h7x/x/y/z', 'unmount h7x/x/y', 'unmount h7x/x', 'destroy -r h7x/x',
    ]);
  });

  it('destroy gives up with EBUSY after the bounded attempts; other errors at once', async () => {
    const busy = scripted({
      'zfs destroy h7x/m': [fail(CAPTURED.destroyBusy), fail(CAPTURED.destroyBusy), fail(CAPTURED.destroyBusy)],
      'zfs unmount h7x/m': [fail(CAPTURED.umountBusy), fail(CAPTURED.umountBusy)],
    });
    const e = await rejection(new Zfs({ runner: busy.runner, sleep: noSleep, destroyAttempts: 3 }).destroy('h7x/m'));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toMatch(/still busy after 3 attempts/);
    expect(busy.calls.filter((c) => c.args[0] === 'destroy')).toHaveLength(3);

    const kids = scripted({ 'zfs destroy h7x/x': fail(CAPTURED.hasChildren) });
    expect((await rejection(new Zfs({ runner: kids.runner, sleep: noSleep }).destroy('h7x/x'))).code).toBe('ENOTEMPTY');
    expect(kids.calls).toHaveLength(1);
    const gone = scripted({ 'zfs destroy h7x/nope': fail(CAPTURED.noDataset) });
    expect((await rejection(new Zfs({ runner: gone.runner }).destroy('h7x/nope'))).code).toBe('ENOENT');
  });
});

describe('execFile runner: no shell, bounded time and output', () => {
  it('passes an argument array and options without a shell', async () => {
    const seen: Array<{ file: string; args: readonly string[]; options: Record<string, unknown> }> = [];
    const fake: ExecFileFn = (file, args, options, cb) => {
      seen.push({ file, args, options: options as unknown as Record<string, unknown> });
      cb(null, 'out', '');
      return undefined;
    };
    const runner = createExecFileRunner({ execFile: fake, paths: { zfs: '/sbin/zfs' } });
    const r = await runner('zfs', ['create', '-o', 'quota=1', 'tank/a'], { timeoutMs: 1234, maxOutputBytes: 5678 });
    expect(r).toEqual({ exitCode: 0, stdout: 'out', stderr: '' });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.file).toBe('/sbin/zfs');
    expect(seen[0]!.args).toEqual(['create', '-o', 'quota=1', 'tank/a']);
    expect(seen[0]!.options).toMatchObject({ shell: false, timeout: 1234, maxBuffer: 5678, killSignal: 'SIGKILL' });
    expect((seen[0]!.options.env as Record<string, string>).LC_ALL).toBe('C');
  });

  it('shell metacharacters reach the program verbatim (real execFile)', async () => {
    const echo = findBinary('echo');
    expect(echo).not.toBeNull();
    const runner = createExecFileRunner({ paths: { zfs: echo! } });
    const args = ['$(id -u)', '`whoami`', ';', 'ls', '|', 'cat', "'q'", '*'];
    const r = await runner('zfs', args, { timeoutMs: 10_000, maxOutputBytes: 4096 });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe(`${args.join(' ')}\n`);
  });

  it('kills a command that runs too long or prints too much', async () => {
    const sleepBin = findBinary('sleep');
    const yesBin = findBinary('yes');
    const slow = createExecFileRunner({ paths: { zfs: sleepBin! } });
    const t = await slow('zfs', ['30'], { timeoutMs: 200, maxOutputBytes: 4096 });
    expect(t.failure).toBe('timeout');
    const loud = createExecFileRunner({ paths: { zpool: yesBin! } });
    const o = await loud('zpool', [], { timeoutMs: 10_000, maxOutputBytes: 64 * 1024 });
    expect(o.failure).toBe('output-limit');
    // through Zfs: whatever argv it builds, the stand-in binary sleeps 30 s
    const zfs = new Zfs({ runner: (c, _args, o) => slow(c, ['30'], o), timeoutMs: 200 });
    const e = await rejection(zfs.get('tank/x', ['quota']));
    expect([e.code, e.data.reason]).toEqual(['EIO', 'timeout']);
  });
});

// ---- the real thing: zfs-fuse pool on a sparse file -------------------------------------------------
const skipReason = await zfsFuseUnavailableReason();
if (skipReason) console.warn(`[zfs.test] SKIPPING real zfs-fuse tests: ${skipReason}`);

describe.skipIf(skipReason !== null)(`Zfs on a real zfs-fuse pool${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  let tp: ZfsTestPool;
  let zfs: Zfs;
  beforeAll(async () => {
    tp = await createZfsTestPool();
    zfs = tp.zfs;
  });
  afterAll(async () => {
    await tp?.teardown();
  });

  it('detects zfs-fuse and lists the pool', async () => {
    const d = await zfs.detect();
    expect(d.available).toBe(true);
    expect(d.version).toEqual({ flavor: 'zfs-fuse', version: '0.7', poolVersion: 23, parsable: false });
    const pool = (await zfs.listPools()).find((p) => p.name === tp.pool);
    expect(pool).toBeDefined();
    expect(pool!.health).toBe('ONLINE');
    expect(pool!.size).toBeGreaterThan(400n * MiB);
    expect(pool!.size).toBeLessThanOrEqual(512n * MiB);
    expect(pool!.free).toBeLessThanOrEqual(pool!.size);
  });

  it('create with quota 64M, get, usage, mountpoint', async () => {
    const ds = tp.dataset('zones/tier-1');
    expect(await zfs.datasetExists(ds)).toBe(false);
    await zfs.create(ds, { quota: 64n * MiB, parents: true });
    expect(await zfs.datasetExists(ds)).toBe(true);
    expect(await zfs.get(ds, ['quota'])).toEqual({ quota: '67108864' });
    const u = await zfs.usage(ds);
    expect(u.quota).toBe(67108864n);
    expect(u.used).toBeGreaterThan(0n);
    expect(u.referenced).toBeGreaterThan(0n);
    expect(u.referenced).toBeLessThanOrEqual(u.used);
    expect(u.available).toBeLessThanOrEqual(67108864n - u.used);
    expect(u.available).toBeGreaterThan(60n * MiB);
    // the parent made by -p has no quota: zfs-fuse prints 0, usage() says null
    expect(await zfs.get(tp.dataset('zones'), ['quota'])).toEqual({ quota: '0' });
    expect((await zfs.usage(tp.dataset('zones'))).quota).toBeNull();
    const mp = await zfs.mountpoint(ds);
    expect(mp).toBe(path.join(tp.mountRoot, tp.pool, 'zones', 'tier-1'));
    expect(await zfs.isMounted(ds)).toBe(true);
    // statfs of the mount is quota-aware
    const sf = fs.statfsSync(mp!, { bigint: true });
    expect(sf.blocks * sf.bsize).toBeLessThanOrEqual(67108864n + MiB);
  });

  it('writing past the quota fails with EDQUOT; earlier files intact; setQuota lets writing go on', async () => {
    const ds = tp.dataset('zones/tier-1');
    const dir = (await zfs.mountpoint(ds))!;
    const hashes = new Map<string, string>();
    let written = 0n;
    let failure: unknown = null;
    for (let i = 0; i < 200 && failure === null; i++) {
      const buf = Buffer.alloc(1 << 20, i % 251);
      buf.writeUInt32BE(i, 0);
      const f = path.join(dir, `f${i}`);
      try {
        fs.writeFileSync(f, buf);
        hashes.set(f, createHash('sha256').update(buf).digest('hex'));
        written += BigInt(buf.length);
      } catch (e) {
        failure = e;
      }
    }
    expect(failure).not.toBeNull();
    expect((failure as NodeJS.ErrnoException).errno).toBe(-122);
    expect(toGvError(failure).code).toBe('EDQUOT');
    // quota enforcement is approximate, but it did bite near 64 MiB
    expect(written).toBeGreaterThan(48n * MiB);
    expect(written).toBeLessThanOrEqual(72n * MiB);
    for (const [f, h] of hashes) expect(createHash('sha256').update(fs.readFileSync(f)).digest('hex'), f).toBe(h);

    await zfs.setQuota(ds, 128n * MiB);
    expect(await zfs.get(ds, ['quota'])).toEqual({ quota: '134217728' });
    for (let i = 0; i < 16; i++) fs.writeFileSync(path.join(dir, `more${i}`), Buffer.alloc(1 << 20, 0x5a));
    expect(fs.statSync(path.join(dir, 'more15')).size).toBe(1 << 20);
    const u = await zfs.usage(ds);
    expect(u.quota).toBe(128n * MiB);
    expect(u.available).toBeLessThan(128n * MiB - 48n * MiB);

    await zfs.setQuota(ds, null);
    expect((await zfs.usage(ds)).quota).toBeNull();
    await zfs.setQuota(ds, 256n * MiB);
    expect((await zfs.usage(ds)).quota).toBe(256n * MiB);
  });

  it('errors: existing dataset, missing pool, missing parent, bad name', async () => {
    const counting: { n: number } = { n: 0 };
    const real = createExecFileRunner();
    const z = new Zfs({ runner: (c, a, o) => (counting.n++, real(c, a, o)) });
    const exists = await rejection(z.create(tp.dataset('zones/tier-1')));
    expect(exists.code).toBe('EEXIST');
    expect(exists.message).toBe(`zfs create ${tp.dataset('zones/tier-1')}: dataset already exists`);
    const noPool = await rejection(z.create('gvnosuchpool/x'));
    expect(noPool.code).toBe('ENOENT');
    expect(noPool.message).toMatch(/no such pool/);
    expect((await rejection(z.create(tp.dataset('no/parent')))).code).toBe('ENOENT');
    expect((await rejection(z.get(tp.dataset('absent'), ['quota']))).code).toBe('ENOENT');
    expect(await z.datasetExists(tp.dataset('absent'))).toBe(false);
    expect(await z.datasetExists('gvnosuchpool/x')).toBe(false);
    const before = counting.n;
    expect((await rejection(z.create(`${tp.pool}/bad name`))).code).toBe('EINVAL');
    expect((await rejection(z.create('-p'))).code).toBe('EINVAL');
    expect(counting.n).toBe(before);
    // below-used quota is refused by zfs itself
    expect((await rejection(z.setQuota(tp.dataset('zones/tier-1'), 1n * MiB))).code).toBe('EINVAL');
  });

  it('unmount/mount round trip', async () => {
    const ds = tp.dataset('zones/tier-1');
    await zfs.unmount(ds);
    expect(await zfs.isMounted(ds)).toBe(false);
    await zfs.unmount(ds); // no-op
    await zfs.mount(ds);
    await zfs.mount(ds); // no-op
    expect(await zfs.isMounted(ds)).toBe(true);
    expect(fs.statSync(path.join((await zfs.mountpoint(ds))!, 'f0')).size).toBe(1 << 20);
  });

  it('destroy while a process sits inside is EBUSY; afterwards it succeeds', async () => {
    const ds = tp.dataset('zones/held');
    await zfs.create(ds, { quota: 16n * MiB });
    const mp = (await zfs.mountpoint(ds))!;
    const holder = spawn('sleep', ['60'], { cwd: mp, stdio: 'ignore' });
    try {
      await new Promise((r) => holder.once('spawn', r));
      const quick = new Zfs({ destroyAttempts: 2, retryDelayMs: 50 });
      const e = await rejection(quick.destroy(ds));
      expect(e.code).toBe('EBUSY');
      expect(await zfs.datasetExists(ds)).toBe(true);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => (holder.exitCode !== null || holder.signalCode !== null ? r(null) : holder.once('exit', r)));
    }
    await zfs.destroy(ds);
    expect(await zfs.datasetExists(ds)).toBe(false);
  });

  it('destroy (mounted, busy retry) and destroy -r remove datasets', async () => {
    const ds = tp.dataset('zones/tier-1');
    const mp = (await zfs.mountpoint(ds))!;
    expect(await zfs.isMounted(ds)).toBe(true);
    expect((await rejection(zfs.destroy(tp.dataset('zones')))).code).toBe('ENOTEMPTY');
    await zfs.destroy(ds);
    expect(await zfs.datasetExists(ds)).toBe(false);
    expect(fs.existsSync(path.join(mp, 'f0'))).toBe(false);
    await zfs.create(tp.dataset('zones/a/b'), { parents: true });
    await zfs.create(tp.dataset('zones/a/c'));
    await zfs.destroy(tp.dataset('zones'), { recursive: true });
    for (const n of ['zones', 'zones/a', 'zones/a/b', 'zones/a/c']) expect(await zfs.datasetExists(tp.dataset(n))).toBe(false);
    expect((await rejection(zfs.destroy(tp.dataset('zones')))).code).toBe('ENOENT');
  });
});
