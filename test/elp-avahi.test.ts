/**
 * A third-party mDNS stack sees a GrapeVine node: a daemon with `[elp] mdns = true` runs in
 * network namespace N, a private avahi-daemon in namespace O on the same segment, and
 * `avahi-browse -rpt _grapevine._tcp` there must list the node by name, with its address, peer-protocol port
 * and TXT record (id, cluster, catalog, zone versions); a catalog change shows in the resolved TXT;
 * a stopped daemon's goodbye (TTL 0) makes avahi drop it. Skipped, with the reason printed, when
 * namespaces cannot be made or avahi cannot be installed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_MAIN, ensureBuilt } from './harness/daemon.js';
import { avahiSkipReason, startAvahiObserver, type AvahiObserver, type AvahiService } from './harness/avahi.js';
import { createNetnsLab, netnsSkipReason, type NetnsLab } from './harness/netns.js';

const SKIP = netnsSkipReason() ?? avahiSkipReason();
if (SKIP) console.warn(`avahi tests skipped: ${SKIP}`);

const NODE = 'gvnode1';

let lab: NetnsLab;
let tmp: string;
let observer: AvahiObserver | null = null;
let daemon: ChildProcess | null = null;
let daemonOut = '';
let nodeId = '';
let config = '';

function gvJson(args: string[]): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [DAEMON_MAIN, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => c.kill('SIGKILL'), 30_000);
    c.once('close', (code) => {
      clearTimeout(t);
      if (code !== 0) reject(new Error(`gv ${args.join(' ')} exited ${code}: ${out}`));
      else resolve(JSON.parse(out) as Record<string, any>);
    });
  });
}

/** Point gv init's config at the namespace address, mdns mode, a quick announcement interval. */
function adaptConfig(file: string, ip: string): void {
  let text = fs.readFileSync(file, 'utf8');
  const sub = (re: RegExp, to: string) => {
    if (!re.test(text)) throw new Error(`${file}: no match for ${re}`);
    text = text.replace(re, to);
  };
  sub(/^listen = "127\.0\.0\.1"$/m, `listen = "${ip}"`);
  sub(/^portmap = "auto"$/m, 'portmap = "off"');
  text += `\n[elp]\nmdns = true\ninterface = "${ip}"\ninterval_ms = 500\n`;
  fs.writeFileSync(file, text);
}

async function startDaemon(host: string): Promise<void> {
  const child = lab.spawn(host, process.execPath, [DAEMON_MAIN, 'daemon', '--config', config, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemon = child;
  daemonOut = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`daemon not ready in 20 s\n${daemonOut}`)), 20_000);
    const onData = (d: Buffer) => {
      if (daemonOut.length < 1_000_000) daemonOut += d.toString();
      if (/"msg":"gvd ready"/.test(daemonOut)) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code, sig) => {
      clearTimeout(t);
      reject(new Error(`daemon exited (${code ?? sig})\n${daemonOut}`));
    });
  });
}

async function stopDaemon(): Promise<void> {
  const c = daemon;
  daemon = null;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** Browse until a resolved row for our node shows up (each avahi-browse run ≤ 4 s; ≤ 20 s total). */
async function browseUntilSeen(type: string): Promise<{ rows: AvahiService[]; raw: string }> {
  let last = { services: [] as AvahiService[], raw: '' };
  for (let i = 0; i < 5; i++) {
    last = await observer!.browse(type, 4000);
    const rows = last.services.filter((s) => s.name === NODE && s.type === '_grapevine._tcp');
    if (rows.length) return { rows, raw: last.raw };
  }
  return { rows: [], raw: last.raw };
}

describe.skipIf(SKIP !== null)('avahi sees a GrapeVine node in mDNS mode', () => {
  beforeAll(async () => {
    ensureBuilt();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-avahi-'));
    lab = await createNetnsLab(['N', 'O']);
    config = path.join(tmp, 'gv.toml');
    const stateDir = path.join(tmp, 'state');
    const init = await gvJson(['init', '--name', NODE, '--cluster', 'gvavahi', '--state-dir', stateDir, '--config', config]);
    nodeId = String(init.node.id);
    adaptConfig(config, lab.hosts.N!.ip);
    expect((await gvJson(['zone', 'create', 'tier-1', '--quota', '1G', '--nodes', NODE, '--config', config])).ok).toBe(true);
    observer = await startAvahiObserver(lab, 'O');
    await startDaemon('N');
  }, 120_000);

  afterAll(async () => {
    await stopDaemon();
    await observer?.stop();
    await lab?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  it('avahi-browse -rpt _grapevine._tcp lists the node with name, address, port and TXT data', async () => {
    const { rows, raw } = await browseUntilSeen('_grapevine._tcp');
    expect(rows.length, `avahi-browse output:\n${raw}\navahi-daemon log:\n${observer!.log()}\ndaemon log:\n${daemonOut.slice(-3000)}`).toBeGreaterThan(0);
    const r = rows[0]!;
    expect(r).toMatchObject({ interface: 'eth0', protocol: 'IPv4', name: NODE, type: '_grapevine._tcp', domain: 'local', address: lab.hosts.N!.ip, port: 7386 });
    expect(r.host).toMatch(new RegExp(`^${NODE}\\b.*\\.local$`));
    const txt = Object.fromEntries(r.txt.map((t) => [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)]));
    expect(txt.cluster).toBe('gvavahi');
    expect(nodeId).not.toBe('');
    expect(txt.id).toBe(nodeId);
    expect(txt.catalog).toMatch(/^\d+$/);
    expect(txt['zone.tier-1']).toMatch(/^\d+$/);
  }, 60_000);

  it('avahi-browse -a (every type) lists _grapevine._tcp too', async () => {
    const { rows, raw } = await browseUntilSeen('-a');
    expect(rows.length, `avahi-browse -a output:\n${raw}`).toBeGreaterThan(0);
    expect(rows[0]).toMatchObject({ address: lab.hosts.N!.ip, port: 7386 });
  }, 60_000);
  it('a catalog change reaches avahi: the resolved TXT shows the new catalog version', async () => {
    const before = (await browseUntilSeen('_grapevine._tcp')).rows[0]!.txt.find((t) => t.startsWith('catalog='));
    expect(before).toBeDefined();
    expect((await gvJson(['zone', 'create', 'tier-2', '--quota', '1G', '--nodes', NODE, '--config', config])).ok).toBe(true);
    let last: { rows: AvahiService[]; raw: string } = { rows: [], raw: '' };
    for (let i = 0; i < 10; i++) {
      last = await browseUntilSeen('_grapevine._tcp');
      const cat = last.rows[0]?.txt.find((t) => t.startsWith('catalog='));
      if (cat && cat !== before) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const after = last.rows[0]?.txt.find((t) => t.startsWith('catalog='));
    expect(after, `before ${before}; avahi-browse:\n${last.raw}`).not.toBe(before);
  }, 90_000);
  it('stopping the daemon says goodbye: avahi drops the node within seconds, not after the 120 s TTL', async () => {
    expect((await browseUntilSeen('_grapevine._tcp')).rows.length).toBeGreaterThan(0);
    await stopDaemon();
    let last = { services: [] as AvahiService[], raw: '' };
    for (let i = 0; i < 5; i++) {
      last = await observer!.browse('_grapevine._tcp', 4000);
      if (!last.services.some((s) => s.name === NODE)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(last.services.filter((s) => s.name === NODE), `avahi-browse after stop:\n${last.raw}`).toEqual([]);
  }, 60_000);
});
