/**
 * Runs a shell script inside a real Linux kernel (Debian cloud kernel under qemu, TCG) with an
 * NFSv3 export of THIS host mounted by the kernel's own NFS client.
 *
 * setup:   test/harness/kernel/setup.sh (kernel + busybox initramfs, cached)
 * guest:   test/harness/kernel/init.sh is the guest's PID 1
 * network: qemu user networking; the guest reaches the host's 127.0.0.1 as 10.0.2.2, so the
 *          server under test only has to listen on loopback.
 *
 * Exit codes: the script's own status (0..121), or one of GUEST_EXIT below.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, accessSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const GUEST_EXIT = {
  /** the script passed, but `umount` failed or hung */
  UMOUNT_FAILED: 122,
  /** mount(2) of the export failed; output holds the error and the tail of dmesg */
  MOUNT_FAILED: 123,
  /** the host killed qemu after timeoutMs */
  TIMEOUT: 124,
  /** boot, modules, network, or qemu itself failed: no exit marker came back */
  HARNESS_FAILED: 125,
} as const;

export type GuestStatus =
  | 'passed'
  | 'script-failed'
  | 'umount-failed'
  | 'mount-failed'
  | 'timeout'
  | 'harness-failed';

export interface GuestRunOptions {
  nfsPort: number;
  /** MOUNT program port; without it the guest kernel asks the portmapper on port 111 */
  mountPort?: number;
  /** exported path, e.g. "/tier-1" */
  export: string;
  /** busybox sh script; cwd is the mount point; $GV_FILES holds `files` */
  script: string;
  timeoutMs: number;
  /** extra files for the script: guest path relative to $GV_FILES → content */
  files?: Record<string, string | Buffer>;
  /** extra mount options appended to the defaults (e.g. "soft,timeo=30") */
  extraMountOptions?: string;
  /** run the script with `sh -e` */
  errexit?: boolean;
  /** do not mount; the script mounts by itself ($GV_SERVER, $GV_EXPORT, $GV_OPTS are set) */
  noMount?: boolean;
  memoryMb?: number;
  /** called with whole lines of script output as they arrive (default: none; with
   *  GV_KNFS_VERBOSE=1 in the environment they go to stderr) */
  onOutput?: (chunk: string) => void;
  /** keep the run directory (initrd, console.log) instead of deleting it */
  keepDir?: boolean;
  /** do not print the console log on failure (for tests that expect a failure) */
  quietFailure?: boolean;
}

export interface GuestRunResult {
  exitCode: number;
  status: GuestStatus;
  /** the script's stdout+stderr (plus harness messages), without the exit marker */
  output: string;
  /** the kernel console (ttyS0) */
  console: string;
  /** guest uptime in seconds at each phase: init, net, mount_begin, mounted, script_begin, ... */
  phases: Record<string, number>;
  mountOptions: string;
  /** qemu's pid (gone by the time runGuest returns) */
  qemuPid: number | undefined;
  /** set when keepDir was given */
  runDir?: string;
}

const HERE = dirname(fileURLToPath(import.meta.url));
export const KERNEL_HARNESS_DIR = join(HERE, 'kernel');

function onPath(cmd: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/**
 * Why the kernel harness cannot run here, or null when it can (possibly after setup.sh installs
 * qemu, which it does only as root).
 */
export function kernelHarnessSkipReason(): string | null {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return `kernel NFS harness needs linux/x64 (this is ${process.platform}/${process.arch})`;
  }
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!onPath('qemu-system-x86_64') && !root) {
    return 'qemu-system-x86_64 is not installed and we are not root (apt-get install qemu-system-x86 busybox-static cpio)';
  }
  return null;
}

let cachedCacheDir: string | undefined;

/** Runs setup.sh (fast when cached) and returns the cache directory with vmlinuz + base.cpio.gz. */
export function ensureKernelHarness(): string {
  if (cachedCacheDir) return cachedCacheDir;
  const r = spawnSync('bash', [join(KERNEL_HARNESS_DIR, 'setup.sh')], {
    encoding: 'utf8',
    timeout: 15 * 60_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0) {
    throw new Error(`kernel harness setup failed (status ${r.status}, signal ${r.signal}):\n${r.stderr}`);
  }
  const lines = r.stdout.trim().split('\n');
  const dir = lines[lines.length - 1] ?? '';
  if (!existsSync(join(dir, 'vmlinuz')) || !existsSync(join(dir, 'base.cpio.gz'))) {
    throw new Error(`kernel harness setup did not produce vmlinuz/base.cpio.gz in "${dir}":\n${r.stderr}`);
  }
  cachedCacheDir = dir;
  return dir;
}

// ---------------------------------------------------------------- cpio (newc) writer

interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
}

function newcHeader(ino: number, mode: number, nlink: number, size: number, nameSize: number): string {
  const f = (n: number) => n.toString(16).padStart(8, '0');
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return '070701' + [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, nameSize, 0].map(f).join('');
}

function pad4(len: number): Buffer {
  return Buffer.alloc((4 - (len % 4)) % 4);
}

/** An uncompressed newc archive, the format the kernel unpacks into its initramfs. */
export function encodeCpioNewc(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (name: string, mode: number, nlink: number, data: Buffer) => {
    const nameBuf = Buffer.from(name + '\0', 'utf8');
    const head = Buffer.concat([Buffer.from(newcHeader(ino++, mode, nlink, data.length, nameBuf.length), 'ascii'), nameBuf]);
    parts.push(head, pad4(head.length), data, pad4(data.length));
  };
  for (const e of entries) {
    const isDir = (e.mode & 0o170000) === 0o040000;
    push(e.name, e.mode, isDir ? 2 : 1, e.data ?? Buffer.alloc(0));
  }
  push('TRAILER!!!', 0, 1, Buffer.alloc(0));
  return Buffer.concat(parts);
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function runArchive(opts: GuestRunOptions, mountOptions: string): Buffer {
  const DIR = 0o040755;
  const FILE = 0o100644;
  const entries: CpioEntry[] = [{ name: 'gv', mode: DIR }];
  const params = [
    `GV_SERVER=10.0.2.2`,
    `GV_EXPORT=${shellQuote(opts.export)}`,
    `GV_MNT=/mnt/nfs`,
    `GV_OPTS=${shellQuote(mountOptions)}`,
    `GV_MOUNT=${opts.noMount ? 0 : 1}`,
    `GV_ERREXIT=${opts.errexit ? 1 : 0}`,
  ].join('\n');
  entries.push({ name: 'gv/params', mode: FILE, data: Buffer.from(params + '\n') });
  entries.push({ name: 'gv/script.sh', mode: FILE, data: Buffer.from(opts.script.endsWith('\n') ? opts.script : opts.script + '\n') });
  if (opts.files && Object.keys(opts.files).length > 0) {
    const dirs = new Set<string>(['gv/files']);
    const files: CpioEntry[] = [];
    for (const [rel, content] of Object.entries(opts.files)) {
      const clean = rel.replace(/^\/+/, '');
      if (!clean || clean.split('/').some((p) => p === '..' || p === '')) throw new Error(`bad guest file name "${rel}"`);
      const segs = clean.split('/');
      for (let i = 1; i < segs.length; i++) dirs.add('gv/files/' + segs.slice(0, i).join('/'));
      files.push({ name: `gv/files/${clean}`, mode: 0o100755, data: Buffer.isBuffer(content) ? content : Buffer.from(content) });
    }
    for (const d of [...dirs].sort()) entries.push({ name: d, mode: DIR });
    entries.push(...files);
  }
  return gzipSync(encodeCpioNewc(entries), { level: 1 });
}

// ---------------------------------------------------------------- the run

export function defaultMountOptions(opts: Pick<GuestRunOptions, 'nfsPort' | 'mountPort' | 'extraMountOptions'>): string {
  const o = ['vers=3', 'proto=tcp', `port=${opts.nfsPort}`];
  if (opts.mountPort !== undefined) o.push(`mountport=${opts.mountPort}`, 'mountvers=3');
  o.push('mountproto=tcp', 'nolock');
  if (opts.extraMountOptions) o.push(opts.extraMountOptions);
  return o.join(',');
}

function statusOf(code: number): GuestStatus {
  switch (code) {
    case 0:
      return 'passed';
    case GUEST_EXIT.UMOUNT_FAILED:
      return 'umount-failed';
    case GUEST_EXIT.MOUNT_FAILED:
      return 'mount-failed';
    case GUEST_EXIT.TIMEOUT:
      return 'timeout';
    case GUEST_EXIT.HARNESS_FAILED:
      return 'harness-failed';
    default:
      return 'script-failed';
  }
}

const EXIT_MARK = /@@GV_EXIT (\d+)@@\r?\n?/;

export async function runGuest(opts: GuestRunOptions): Promise<GuestRunResult> {
  const cache = ensureKernelHarness();
  if (!opts.onOutput && process.env.GV_KNFS_VERBOSE === '1') {
    opts = { ...opts, onOutput: (lines) => process.stderr.write(lines.replace(/^/gm, '[guest] ').replace(/\[guest\] $/, '')) };
  }
  const mountOptions = defaultMountOptions(opts);
  const runDir = mkdtempSync(join(tmpdir(), 'gv-knfs-run-'));
  const consolePath = join(runDir, 'console.log');
  const initrd = join(runDir, 'initrd.img');
  writeFileSync(initrd, Buffer.concat([readFileSync(join(cache, 'base.cpio.gz')), runArchive(opts, mountOptions)]));
  writeFileSync(consolePath, '');

  const accel = process.env.GV_KNFS_ACCEL === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', 'max'];
  const bios = existsSync('/usr/share/qemu/qboot.rom') ? ['-bios', '/usr/share/qemu/qboot.rom'] : [];
  const args = [
    ...accel,
    '-machine', 'q35',
    '-m', String(opts.memoryMb ?? 768),
    '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    ...bios,
    '-kernel', join(cache, 'vmlinuz'),
    '-initrd', initrd,
    '-append', 'console=ttyS0 panic=-1 loglevel=4 tsc=reliable no_timer_check mitigations=off',
    '-chardev', `file,id=con,path=${consolePath}`, '-serial', 'chardev:con',
    '-chardev', 'stdio,id=out,signal=off', '-serial', 'chardev:out',
    '-netdev', 'user,id=n0,ipv6=off', '-device', 'virtio-net-pci,netdev=n0',
  ];

  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  const killOnExit = () => {
    if (pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  process.once('exit', killOnExit);

  let out = '';
  let qemuErr = '';
  child.stdout.setEncoding('utf8');
  let partial = '';
  child.stdout.on('data', (chunk: string) => {
    out += chunk;
    if (!opts.onOutput) return;
    // hand out whole lines so the exit marker never reaches the caller
    partial += chunk;
    const nl = partial.lastIndexOf('\n');
    if (nl < 0) return;
    const lines = partial.slice(0, nl + 1).replace(new RegExp(EXIT_MARK.source, 'g'), '');
    partial = partial.slice(nl + 1);
    if (lines) opts.onOutput(lines);
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (qemuErr.length < 64_000) qemuErr += chunk;
  });

  let timedOut = false;
  let killTimer: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    if (pid === undefined) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    killTimer = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, 3000);
  }, opts.timeoutMs);

  const qemuExit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  clearTimeout(timer);
  if (opts.onOutput && partial && !EXIT_MARK.test(partial)) opts.onOutput(partial + '\n');
  if (killTimer) clearTimeout(killTimer);
  process.removeListener('exit', killOnExit);

  const consoleText = readFileSync(consolePath, 'utf8').replace(/\r/g, '');
  const phases: Record<string, number> = {};
  for (const m of consoleText.matchAll(/@@GV_PHASE (\S+) ([\d.]+)/g)) phases[m[1]!] = Number(m[2]);

  const mark = EXIT_MARK.exec(out);
  let exitCode: number;
  if (timedOut) exitCode = GUEST_EXIT.TIMEOUT;
  else if (mark) exitCode = Number(mark[1]);
  else exitCode = GUEST_EXIT.HARNESS_FAILED;
  let output = out.replace(EXIT_MARK, '');
  if (timedOut) output += `\n[gv-knfs] timeout after ${opts.timeoutMs} ms: qemu (pid ${pid}) killed\n`;
  if (!mark && !timedOut) {
    output += `\n[gv-knfs] no exit marker; qemu exit code ${qemuExit.code} signal ${qemuExit.signal}` +
      (qemuExit.spawnError ? ` spawn error ${qemuExit.spawnError.message}` : '') + `\n${qemuErr}`;
  }

  const status = statusOf(exitCode);
  if (status !== 'passed' && !opts.quietFailure) {
    const tail = consoleText.split('\n').slice(-60).join('\n');
    process.stderr.write(
      `[gv-knfs] guest ${status} (exit ${exitCode}); mount ${opts.export} -o ${mountOptions}\n` +
        `---- script output (tail) ----\n${output.split('\n').slice(-40).join('\n')}\n` +
        `---- kernel console (tail) ----\n${tail}\n` +
        (qemuErr ? `---- qemu stderr ----\n${qemuErr}\n` : ''),
    );
  }
  if (!opts.keepDir) rmSync(runDir, { recursive: true, force: true });
  return {
    exitCode,
    status,
    output,
    console: consoleText,
    phases,
    mountOptions,
    qemuPid: pid,
    ...(opts.keepDir ? { runDir } : {}),
  };
}
