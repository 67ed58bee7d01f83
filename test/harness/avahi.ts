/**
 * Test harness: a real avahi-daemon as an independent mDNS observer inside one host of a
 * NetnsLab (test/harness/netns.ts), and `avahi-browse` run next to it.
 *
 *   const reason = avahiSkipReason();                 // null, or why avahi tests must skip
 *   const obs = await startAvahiObserver(lab, 'O');   // private D-Bus + avahi-daemon in host O
 *   const rows = await obs.browse('_grapevine._tcp', 5000);   // parsed `avahi-browse -rpt` lines
 *   await obs.stop();
 *
 * Isolation from the machine's own avahi (if any):
 * - D-Bus: a private system bus (dbus-daemon with the stock system.conf, whose avahi policy lets
 *   root own org.freedesktop.Avahi) on a unix socket in a temp directory; avahi-daemon and
 *   avahi-browse find it through DBUS_SYSTEM_BUS_ADDRESS.
 * - avahi-daemon writes a fixed /run/avahi-daemon/{pid,socket}: it runs in a private mount
 *   namespace where a temp directory is bound over /run, so several observers (or a host avahi)
 *   do not collide.
 * - Its config: IPv4 only, eth0 only, publishing off (it only listens and asks), no wide-area.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NetnsLab } from './netns.js';

const AVAHI_DAEMON = ['/usr/sbin/avahi-daemon', '/sbin/avahi-daemon'].find((p) => fs.existsSync(p)) ?? '/usr/sbin/avahi-daemon';
const AVAHI_BROWSE = ['/usr/bin/avahi-browse', '/bin/avahi-browse'].find((p) => fs.existsSync(p)) ?? '/usr/bin/avahi-browse';
const DBUS_DAEMON = ['/usr/bin/dbus-daemon', '/bin/dbus-daemon'].find((p) => fs.existsSync(p)) ?? '/usr/bin/dbus-daemon';
const DBUS_SYSTEM_CONF = '/usr/share/dbus-1/system.conf';
const UNSHARE = ['/usr/bin/unshare', '/bin/unshare'].find((p) => fs.existsSync(p)) ?? 'unshare';
const POLICY_RC_D = '/usr/sbin/policy-rc.d';
const INSTALL_TIMEOUT_MS = 300_000;
const STARTUP_TIMEOUT_MS = 15_000;

const log = (msg: string): void => {
  process.stderr.write(`[avahi] ${msg}\n`);
};

function haveTools(): string[] {
  return [AVAHI_DAEMON, AVAHI_BROWSE, DBUS_DAEMON, DBUS_SYSTEM_CONF].filter((p) => !fs.existsSync(p));
}

/**
 * Why avahi tests cannot run, or null. Installs avahi-daemon, avahi-utils and dbus with apt-get
 * when missing and running as root (a policy-rc.d keeps the packages from starting services).
 */
export function avahiSkipReason(): string | null {
  let missing = haveTools();
  if (missing.length === 0) return null;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return `avahi not installed (${missing.join(', ')}) and not root to install it`;
  log(`installing avahi-daemon avahi-utils dbus (missing ${missing.join(', ')})`);
  let madePolicy = false;
  if (!fs.existsSync(POLICY_RC_D)) {
    fs.writeFileSync(POLICY_RC_D, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    madePolicy = true;
  }
  try {
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'avahi-daemon', 'avahi-utils', 'dbus'], {
      encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.error || r.status !== 0) return `apt-get install avahi-daemon avahi-utils dbus failed: ${r.error?.message ?? r.stderr.trim().slice(-500)}`;
  } finally {
    if (madePolicy) fs.rmSync(POLICY_RC_D, { force: true });
  }
  missing = haveTools();
  return missing.length ? `avahi still missing after apt-get: ${missing.join(', ')}` : null;
}

/** One resolved line of `avahi-browse -rpt` ("=;eth0;IPv4;name;type;domain;host;address;port;txt"). */
export interface AvahiService {
  interface: string;
  protocol: string;
  name: string;
  type: string;
  domain: string;
  host: string;
  address: string;
  port: number;
  /** TXT strings, unquoted. */
  txt: string[];
}

export interface AvahiObserver {
  /** Host (lab name) the observer runs in. */
  host: string;
  /** avahi-daemon's output so far (for failure messages). */
  log(): string;
  /**
   * Run `avahi-browse -rpt <type>` (type '-a' browses everything) in the observer's host, for at
   * most `ms`. Returns the resolved rows and the raw output.
   */
  browse(type: string, ms: number): Promise<{ services: AvahiService[]; raw: string }>;
  stop(): Promise<void>;
}

/** avahi-browse -p unescapes nothing: names carry \DDD decimal escapes for odd bytes. */
function unescapeAvahi(s: string): string {
  return s.replace(/\\(\d{3})/g, (_m, d: string) => String.fromCharCode(Number(d)));
}

function parseTxt(field: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(field)) !== null) out.push(unescapeAvahi(m[1]!.replace(/\\(["\\])/g, '$1')));
  return out;
}

/** Parse `avahi-browse -p` output; only resolved ('=') lines. */
export function parseAvahiBrowse(text: string): AvahiService[] {
  const out: AvahiService[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('=;')) continue;
    const f = line.split(';');
    if (f.length < 10) continue;
    out.push({
      interface: f[1]!,
      protocol: f[2]!,
      name: unescapeAvahi(f[3]!),
      type: f[4]!,
      domain: f[5]!,
      host: unescapeAvahi(f[6]!),
      address: f[7]!,
      port: Number(f[8]),
      txt: parseTxt(f.slice(9).join(';')),
    });
  }
  return out;
}

function waitFor(child: ChildProcess, output: () => string, re: RegExp, what: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onData = () => {
      if (re.test(output())) done(null);
    };
    const onExit = (code: number | null, sig: string | null) => done(new Error(`${what} exited (${code ?? sig}) before ready:\n${output()}`));
    const t = setTimeout(() => done(new Error(`${what} not ready in ${ms} ms:\n${output()}`)), ms);
    const done = (err: Error | null) => {
      clearTimeout(t);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
    onData();
  });
}

async function stopChild(c: ChildProcess | null): Promise<void> {
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** Start a private D-Bus system bus and an avahi-daemon (listening only) inside lab host `host`. */
export async function startAvahiObserver(lab: NetnsLab, host: string): Promise<AvahiObserver> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gvt-avahi-'));
  const runDir = path.join(dir, 'run');
  fs.mkdirSync(runDir);
  const bus = `unix:path=${path.join(dir, 'bus')}`;
  const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus };
  fs.writeFileSync(
    path.join(dir, 'avahi-daemon.conf'),
    [
      '[server]',
      'host-name=gvobserver',
      'use-ipv4=yes',
      'use-ipv6=no',
      'allow-interfaces=eth0',
      'enable-dbus=yes',
      'ratelimit-interval-usec=1000000',
      'ratelimit-burst=1000',
      '[wide-area]',
      'enable-wide-area=no',
      '[publish]',
      'disable-publishing=yes',
      '',
    ].join('\n'),
  );
  let dbusOut = '';
  let avahiOut = '';
  let dbus: ChildProcess | null = null;
  let avahi: ChildProcess | null = null;
  const stop = async () => {
    await stopChild(avahi);
    await stopChild(dbus);
    avahi = dbus = null;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    dbus = lab.spawn(host, DBUS_DAEMON, [`--config-file=${DBUS_SYSTEM_CONF}`, `--address=${bus}`, '--nofork', '--nopidfile', '--print-address'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const d = dbus;
    d.stdout!.on('data', (b: Buffer) => (dbusOut += b.toString()));
    d.stderr!.on('data', (b: Buffer) => (dbusOut += b.toString()));
    await waitFor(d, () => dbusOut, /unix:path=/, 'dbus-daemon', STARTUP_TIMEOUT_MS);
    // A private mount namespace with our directory over /run: avahi's fixed pid file and socket
    // land there. exec keeps avahi-daemon the spawned process (nsenter and unshare do not fork).
    avahi = lab.spawn(
      host,
      UNSHARE,
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$1" /run && shift && exec "$@"', 'sh', runDir,
        AVAHI_DAEMON, '-f', path.join(dir, 'avahi-daemon.conf'), '--no-drop-root', '--no-chroot', '--no-rlimits', '--no-proc-title'],
      { stdio: ['ignore', 'pipe', 'pipe'], env },
    );
    const a = avahi;
    a.stdout!.on('data', (b: Buffer) => (avahiOut.length < 1_000_000 ? (avahiOut += b.toString()) : undefined));
    a.stderr!.on('data', (b: Buffer) => (avahiOut.length < 1_000_000 ? (avahiOut += b.toString()) : undefined));
    await waitFor(a, () => avahiOut, /Server startup complete/, 'avahi-daemon', STARTUP_TIMEOUT_MS);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    host,
    log: () => avahiOut,
    browse(type, ms) {
      const args = type === '-a' ? ['-a', '-r', '-p', '-t'] : ['-r', '-p', '-t', type];
      const c = lab.spawn(host, AVAHI_BROWSE, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
      let raw = '';
      c.stdout!.on('data', (b: Buffer) => (raw += b.toString()));
      c.stderr!.on('data', (b: Buffer) => (raw += b.toString()));
      return new Promise((resolve) => {
        const t = setTimeout(() => c.kill('SIGTERM'), ms);
        c.once('close', () => {
          clearTimeout(t);
          resolve({ services: parseAvahiBrowse(raw), raw });
        });
      });
    },
    stop,
  };
}
