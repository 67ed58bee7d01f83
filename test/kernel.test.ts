/**
 * The real Linux kernel NFSv3 client against our daemon: one qemu boot runs
 * test/harness/kernel/fs-suite.sh inside the mounted zone, then every check below reads the
 * script's markers and verifies the same result on the host, in the zone directory itself.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from './harness/daemon.js';
import {
  ensureKernelHarness,
  GUEST_EXIT,
  kernelHarnessSkipReason,
  KERNEL_HARNESS_DIR,
  runGuest,
  type GuestRunResult,
} from './harness/kernel-guest.js';

const ZONE = 'tier-1';
const HOST_FILE_BYTES = 16 << 20;
const HOST_MANY = 5000;
const BIG_BYTES = 100 << 20;

const skipReason = kernelHarnessSkipReason();
if (skipReason) console.warn(`[kernel.test] SKIPPED: ${skipReason}`);
const kit = it.skipIf(skipReason !== null);

const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');
/** md5 of a name list as the guest prints it: `ls | sort | md5sum` (C locale order, one per line). */
const listingMd5 = (names: string[]) => md5([...names].sort().join('\n') + '\n');

describe('Linux kernel NFSv3 client (qemu guest)', () => {
  let daemon: TestDaemon | undefined;
  let zone = '';
  let hostFileMd5 = '';
  let run: GuestRunResult | undefined;

  beforeAll(async () => {
    if (skipReason) return;
    ensureKernelHarness(); // kernel + initramfs (downloads once, then cached)
    daemon = await startTestDaemon({ zones: [ZONE], quota: '2G' });
    zone = daemon.zonePath(ZONE);
    // made on the host while the daemon serves the zone
    const hostFile = randomBytes(HOST_FILE_BYTES);
    writeFileSync(join(zone, 'host-file.bin'), hostFile);
    hostFileMd5 = md5(hostFile);
    mkdirSync(join(zone, 'hostmany'));
    for (let i = 0; i < HOST_MANY; i++) writeFileSync(join(zone, 'hostmany', `h-${i}`), '');

    run = await runGuest({
      nfsPort: daemon.nfsPort,
      mountPort: daemon.mountPort,
      export: `/${ZONE}`,
      script: readFileSync(join(KERNEL_HARNESS_DIR, 'fs-suite.sh'), 'utf8'),
      files: { 'host-file.md5': `${hostFileMd5}\n`, 'many.count': `${HOST_MANY}\n` },
      timeoutMs: 150_000,
    });
    const p = run.phases;
    const span = (a: string, b: string) => (p[a] !== undefined && p[b] !== undefined ? `${(p[b]! - p[a]!).toFixed(2)}s` : '-');
    console.log(
      `[kernel.test] guest ${run.status} (exit ${run.exitCode}); boot to init ${p.init ?? '-'}s, ` +
        `mount ${span('mount_begin', 'mounted')}, script ${span('script_begin', 'script_end')}, ` +
        `umount ${span('script_end', 'umounted')}\n` +
        run.output.split('\n').filter((l) => l.startsWith('GVSTEP') || l.startsWith('GVFAIL')).join('\n'),
    );
    if (run.status !== 'passed' && daemon) {
      console.log(`[kernel.test] daemon stderr (tail):\n${daemon.stderr().slice(-4000)}\nstdout (tail):\n${daemon.stdout().slice(-4000)}`);
    }
  }, 300_000);

  afterAll(async () => {
    await daemon?.stop();
  }, 30_000);

  /** Asserts the guest printed "GVSTEP <name> OK"; otherwise fails with the guest's reason. */
  function expectStep(name: string): void {
    if (!run) throw new Error('the guest did not run');
    if (run.output.split('\n').some((l) => l.startsWith(`GVSTEP ${name} OK`))) return;
    const failure = run.output.split('\n').find((l) => l.startsWith(`GVFAIL ${name}:`));
    throw new Error(
      `guest step "${name}" did not pass (guest ${run.status}, exit ${run.exitCode}); ` +
        `${failure ?? 'no GVFAIL line'}\n--- guest output (tail) ---\n${run.output.split('\n').slice(-30).join('\n')}`,
    );
  }
  /** Value printed by the guest as "<KEY> <value>". */
  function guestValue(key: string): string | undefined {
    const line = run?.output.split('\n').find((l) => l.startsWith(`${key} `));
    return line?.slice(key.length + 1).trim();
  }
  const at = (...p: string[]) => join(zone, ...p);

  kit('mounts, runs the whole script, syncs and unmounts cleanly', () => {
    expect(run?.status, run?.output.slice(-3000)).toBe('passed');
    expect(run?.exitCode).toBe(0);
    expect(run?.phases.mounted).toBeDefined();
    expect(run?.phases.umounted).toBeDefined();
    expectStep('sync');
    expect(run?.output).toContain('GVDONE failed=0');
  });

  kit('create, write, read, append, truncate', () => {
    expectStep('basic-io');
    expect(readFileSync(at('basic.txt'), 'utf8')).toBe('hello!');
    expect(readFileSync(at('basic2.txt'))).toEqual(Buffer.concat([Buffer.alloc(3), Buffer.from('overwrite')]));
  });

  kit('mkdir -p a/b/c/d', () => {
    expectStep('mkdir-p');
    expect(statSync(at('a', 'b', 'c', 'd')).isDirectory()).toBe(true);
    expect(readFileSync(at('a', 'b', 'c', 'd', 'leaf.txt'), 'utf8')).toBe('leaf\n');
  });

  kit('rename of a file across directories (also over an existing file)', () => {
    expectStep('rename-file');
    expect(existsSync(at('src', 'file.txt'))).toBe(false);
    expect(readFileSync(at('dst', 'renamed.txt'), 'utf8')).toBe('moved\n');
    expect(existsSync(at('src', 'over.txt'))).toBe(false);
    expect(readFileSync(at('dst', 'victim.txt'), 'utf8')).toBe('new\n');
  });

  kit('rename of a directory across directories', () => {
    expectStep('rename-dir');
    expect(existsSync(at('src', 'tree'))).toBe(false);
    expect(readFileSync(at('dst', 'tree2', 'sub', 'x.txt'), 'utf8')).toBe('deep\n');
    expect(readdirSync(at('src'))).toEqual([]);
  });

  kit('rm -rf of a tree', () => {
    expectStep('rm-rf');
    expect(existsSync(at('doomed'))).toBe(false);
  });

  kit('hard links: link count 2, same inode, shared content', () => {
    expectStep('hardlink');
    const a = lstatSync(at('h1.txt'));
    const b = lstatSync(at('h2.txt'));
    expect(a.nlink).toBe(2);
    expect(a.ino).toBe(b.ino);
    expect(readFileSync(at('h2.txt'), 'utf8')).toBe('shared\nmore\n');
  });

  kit('symlinks: readlink, including a dangling one', () => {
    expectStep('symlink');
    expect(readlinkSync(at('sl'))).toBe('dst/renamed.txt');
    expect(lstatSync(at('dangling')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(at('dangling'))).toBe('does-not-exist');
  });

  kit('chmod: the mode reaches the host', () => {
    expectStep('chmod');
    expect(statSync(at('mode.txt')).mode & 0o7777).toBe(0o600);
    expect(statSync(at('modedir')).mode & 0o7777).toBe(0o750);
  });

  kit('5,000 files created in the guest are all listed, once each', () => {
    expectStep('many-files');
    const names = readdirSync(at('many'));
    const expected = Array.from({ length: 5000 }, (_, i) => `file-${i + 1}`);
    expect([...names].sort()).toEqual([...expected].sort());
    // the guest's own sorted listing is byte-identical to the expected one
    expect(guestValue('MANY_MD5')).toBe(listingMd5(expected));
  });

  kit('5,000 files created on the host are all listed in the guest, once each', () => {
    expectStep('host-many');
    expect(guestValue('HOSTMANY_MD5')).toBe(listingMd5(readdirSync(at('hostmany'))));
  });

  kit('100 MB written in the guest has the same md5 on the host', () => {
    expectStep('big-write');
    expect(statSync(at('big.bin')).size).toBe(BIG_BYTES);
    const guestSum = guestValue('BIG_MD5');
    expect(guestSum).toMatch(/^[0-9a-f]{32}$/);
    expect(md5(readFileSync(at('big.bin')))).toBe(guestSum);
  });

  kit('a file made on the host reads back in the guest with the same md5', () => {
    expectStep('host-file');
    expect(hostFileMd5).toMatch(/^[0-9a-f]{32}$/);
  });

  kit('an export that does not exist fails the mount (harness reports mount-failed)', async () => {
    if (!daemon) throw new Error('no daemon');
    const r = await runGuest({
      nfsPort: daemon.nfsPort,
      mountPort: daemon.mountPort,
      export: '/no-such-zone',
      script: 'echo SCRIPT-RAN',
      timeoutMs: 90_000,
      quietFailure: true,
    });
    expect(r.status).toBe('mount-failed');
    expect(r.exitCode).toBe(GUEST_EXIT.MOUNT_FAILED);
    expect(r.output).not.toContain('SCRIPT-RAN');
    expect(r.output).toContain('/no-such-zone');
  }, 120_000);
});

describe('kernel harness itself', () => {
  kit('kills qemu on timeout and says so', async () => {
    const r = await runGuest({
      nfsPort: 9,
      export: '/',
      noMount: true,
      script: 'echo BEFORE-SLEEP; sleep 600; echo AFTER-SLEEP',
      timeoutMs: 15_000,
      quietFailure: true,
    });
    expect(r.status).toBe('timeout');
    expect(r.exitCode).toBe(GUEST_EXIT.TIMEOUT);
    expect(r.output).toContain('BEFORE-SLEEP');
    expect(r.output).not.toContain('AFTER-SLEEP');
    expect(r.qemuPid).toBeGreaterThan(0);
    expect(() => process.kill(r.qemuPid!, 0)).toThrow();
  }, 60_000);
});
