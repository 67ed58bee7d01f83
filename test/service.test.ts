/**
 * Service definitions: the systemd unit passes `systemd-analyze verify` once installed, the rc.d
 * script is valid sh that rc.subr can drive, and scripts/install-service.sh lays out the files.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureBuilt, REPO_ROOT } from './harness/daemon.js';

const INSTALLER = path.join(REPO_ROOT, 'scripts', 'install-service.sh');
const UNIT = path.join(REPO_ROOT, 'systemd', 'gvd.service');
const RCD = path.join(REPO_ROOT, 'rc.d', 'gvd');
const tmpDirs: string[] = [];

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-service-'));
  tmpDirs.push(d);
  return d;
}

afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

function install(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', [INSTALLER, '--no-build', '--no-deps', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Key=value lines of one section of a unit file (repeated keys collected). */
function unitSection(text: string, section: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      cur = m[1]!;
      continue;
    }
    if (cur !== section) continue;
    const eq = line.indexOf('=');
    const k = line.slice(0, eq);
    out.set(k, [...(out.get(k) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

describe('systemd unit', () => {
  it('declares restart, reload, stop and the hardening that still allows ports 111/2049 and ZFS', () => {
    const svc = unitSection(fs.readFileSync(UNIT, 'utf8'), 'Service');
    expect(svc.get('Type')?.[0]).toMatch(/^(exec|simple|notify)$/);
    expect(svc.get('Restart')).toEqual(['on-failure']);
    expect(svc.get('ExecReload')?.[0]).toBe('/bin/kill -HUP $MAINPID');
    expect(svc.get('ExecStart')?.[0]).toBe('/opt/grapevine/bin/gv daemon --config /etc/grapevine/gv.toml');
    expect(svc.get('KillSignal')).toEqual(['SIGTERM']);
    const caps = svc.get('CapabilityBoundingSet')![0]!.split(/\s+/);
    expect(caps).toContain('CAP_NET_BIND_SERVICE');
    expect(caps).toContain('CAP_SYS_ADMIN');
    expect(svc.get('DeviceAllow')).toContain('/dev/zfs rw');
    expect(svc.get('ProtectSystem')).toEqual(['strict']);
    expect(svc.get('StateDirectory')).toEqual(['grapevine']);
    // Settings that would break node (JIT) or NFS semantics (set-id bits) stay off.
    expect(svc.has('MemoryDenyWriteExecute')).toBe(false);
    expect(svc.has('RestrictSUIDSGID')).toBe(false);
    expect(svc.has('PrivateNetwork')).toBe(false);
  });

  it('installed with a prefix, passes systemd-analyze verify', (ctx) => {
    const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (analyze.status !== 0) {
      ctx.skip(`systemd-analyze not available (${analyze.error?.message ?? analyze.stderr.trim()})`);
      return;
    }
    ensureBuilt();
    const d = tmp();
    const prefix = path.join(d, 'grapevine');
    const r = install(['--systemd', '--prefix', prefix, '--bindir', path.join(d, 'bin'), '--unitdir', path.join(d, 'units'), '--confdir', path.join(d, 'etc')]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const unit = path.join(d, 'units', 'gvd.service');
    const text = fs.readFileSync(unit, 'utf8');
    expect(unitSection(text, 'Service').get('ExecStart')).toEqual([`${prefix}/bin/gv daemon --config ${path.join(d, 'etc')}/gv.toml`]);
    const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 60_000 });
    expect(`${v.stdout}${v.stderr}`.trim()).toBe('');
    expect(v.status).toBe(0);
    // The launcher really starts gv (dependencies: the repository's, linked in).
    fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(prefix, 'app', 'node_modules'));
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const ver = spawnSync(path.join(d, 'bin', 'gv'), ['--version'], { encoding: 'utf8', timeout: 30_000 });
    expect(ver.stderr).toBe('');
    expect(ver.stdout.trim()).toBe(pkg.version);
  });

  it('a unit with a missing ExecStart binary fails verification (the check is real)', (ctx) => {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) {
      ctx.skip('systemd-analyze not available');
      return;
    }
    const d = tmp();
    const unit = path.join(d, 'gvd.service');
    fs.writeFileSync(unit, fs.readFileSync(UNIT, 'utf8').replace('/opt/grapevine/bin/gv', path.join(d, 'missing', 'gv')));
    const v = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 60_000 });
    expect(v.status).not.toBe(0);
    expect(v.stderr).toMatch(/not executable|No such file/);
  });
});

describe('rc.d script', () => {
  it('is valid sh with the rc.subr variables', () => {
    const n = spawnSync('sh', ['-n', RCD], { encoding: 'utf8' });
    expect(n.stderr).toBe('');
    expect(n.status).toBe(0);
    const text = fs.readFileSync(RCD, 'utf8');
    for (const re of [
      /^# PROVIDE: gvd$/m, /^# REQUIRE: .*NETWORKING/m, /^# KEYWORD: shutdown$/m, /^\. \/etc\/rc\.subr$/m,
      /^name="gvd"$/m, /^rcvar="gvd_enable"$/m, /^load_rc_config "\$name"$/m, /^: \$\{gvd_enable:="NO"\}$/m,
      /^: \$\{gvd_config:=/m, /^pidfile=/m, /^command="\/usr\/sbin\/daemon"$/m, /^extra_commands="reload"$/m,
      /^run_rc_command "\$1"$/m,
    ]) {
      expect(text, String(re)).toMatch(re);
    }
    expect(fs.statSync(RCD).mode & 0o111).not.toBe(0);
  });

  it('drives daemon(8) and reloads with SIGHUP under a stand-in rc.subr', () => {
    // rc.subr itself exists only on FreeBSD: a minimal stand-in records what the script asks for.
    const d = tmp();
    const subr = path.join(d, 'rc.subr');
    fs.writeFileSync(subr, [
      'load_rc_config() { gvd_enable=YES; gvd_config=/etc/gv-test.toml; gvd_flags="--log-level debug"; }',
      'kill() { echo "kill $*"; }',
      'run_rc_command() {',
      '  case "$1" in',
      '    start) echo "start: $command $command_args" ; echo "pidfile: $pidfile"; echo "required: $required_files" ;;',
      '    reload) $reload_cmd ;;',
      '  esac',
      '}',
      '',
    ].join('\n'));
    const script = path.join(d, 'gvd');
    fs.writeFileSync(script, fs.readFileSync(RCD, 'utf8').replace('. /etc/rc.subr', `. ${subr}`).replace(/\/var\/run\//g, `${d}/`));
    const start = spawnSync('sh', [script, 'start'], { encoding: 'utf8' });
    expect(start.stderr).toBe('');
    expect(start.stdout).toContain(
      `start: /usr/sbin/daemon -f -P ${d}/gvd.pid -p ${d}/gvd.child.pid -r -R 2 -o /var/log/gvd.log /opt/grapevine/bin/gv daemon --config /etc/gv-test.toml --log-level debug`,
    );
    expect(start.stdout).toContain('required: /etc/gv-test.toml');
    expect(spawnSync('sh', [script, 'reload'], { encoding: 'utf8' }).stdout).toContain('gvd is not running.');
    fs.writeFileSync(path.join(d, 'gvd.child.pid'), '4242\n');
    expect(spawnSync('sh', [script, 'reload'], { encoding: 'utf8' }).stdout.trim()).toBe('kill -HUP 4242');
  });
});

describe('install-service.sh', () => {
  it('stages a systemd install under DESTDIR with the prefix in every path', () => {
    ensureBuilt();
    const root = tmp();
    const r = install(['--systemd', '--prefix', '/opt/gv-test', '--destdir', root]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const app = path.join(root, 'opt/gv-test/app');
    for (const f of ['dist/cli/main.js', 'dist/daemon/start.js', 'dist/metrics/http.js', 'package.json', 'zones.example.toml']) {
      expect(fs.existsSync(path.join(app, f)), f).toBe(true);
    }
    const launcher = path.join(root, 'opt/gv-test/bin/gv');
    expect(fs.statSync(launcher).mode & 0o755).toBe(0o755);
    expect(fs.readFileSync(launcher, 'utf8')).toBe(`#!/bin/sh\nexec "${process.execPath}" "/opt/gv-test/app/dist/cli/main.js" "$@"\n`);
    expect(fs.readlinkSync(path.join(root, 'usr/local/bin/gv'))).toBe('/opt/gv-test/bin/gv');
    const unit = fs.readFileSync(path.join(root, 'etc/systemd/system/gvd.service'), 'utf8');
    expect(unit).toContain('ExecStart=/opt/gv-test/bin/gv daemon --config /etc/grapevine/gv.toml');
    expect(unit).not.toContain('/opt/grapevine');
    expect(fs.existsSync(path.join(root, 'etc/grapevine/gv.toml.example'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'etc/grapevine/gv.toml'))).toBe(false);
  });

  it('stages an rc.d install, keeping an existing config', () => {
    ensureBuilt();
    const root = tmp();
    fs.mkdirSync(path.join(root, 'usr/local/etc/grapevine'), { recursive: true });
    fs.writeFileSync(path.join(root, 'usr/local/etc/grapevine/gv.toml'), '# mine\n');
    const r = install(['--rcd', '--prefix', '/usr/local/grapevine', '--destdir', root]);
    expect(r.status).toBe(0);
    const rc = path.join(root, 'usr/local/etc/rc.d/gvd');
    expect(fs.statSync(rc).mode & 0o111).not.toBe(0);
    const text = fs.readFileSync(rc, 'utf8');
    expect(text).toContain(': ${gvd_gv:="/usr/local/grapevine/bin/gv"}');
    expect(spawnSync('sh', ['-n', rc]).status).toBe(0);
    expect(fs.readFileSync(path.join(root, 'usr/local/etc/grapevine/gv.toml'), 'utf8')).toBe('# mine\n');
  });

  it('refuses bad arguments with exit status 2 and a message', () => {
    const a = install(['--frobnicate']);
    expect(a.status).toBe(2);
    expect(a.stderr).toContain("unknown argument '--frobnicate'");
    const b = install(['--systemd', '--prefix', 'relative/dir', '--destdir', tmp()]);
    expect(b.status).toBe(2);
    expect(b.stderr).toContain('--prefix must be an absolute path');
  });
});
