import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import makeMdns from 'multicast-dns';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../src/config/load.js';
import { readClusterKey } from '../src/elp/cluster-key.js';
import { MulticastBeacon, SERVICE_TYPE } from '../src/elp/multicast.js';
import { GvError } from '../src/errors.js';
import { DAEMON_MAIN, ensureBuilt } from './harness/daemon.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-elp-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const FILE = '/etc/grapevine/gv.toml';
const base = '[node]\nname = "a"\nstate_dir = "/var/lib/grapevine"\n';
function configError(text: string): string {
  try {
    parseConfigText(base + text, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(GvError);
    expect((err as GvError).code).toBe('CONFIG');
    return (err as GvError).message;
  }
  throw new Error('config accepted');
}

describe('[cluster] name/key_file, [elp], [[peers]]', () => {
  it('defaults: no cluster, echolocation on the GrapeVine group every 2 s', () => {
    const c = parseConfigText(base, FILE);
    expect(c.cluster).toMatchObject({ name: null, keyFile: null });
    expect(c.elp).toEqual({ enabled: true, group: '239.255.71.86', port: 5386, interface: null, mdns: false, intervalMs: 2000, unreachableAfterMs: 6000 });
    expect(c.peers).toEqual([]);
  });

  it('reads every key; key_file is relative to the config; mdns switches group and port', () => {
    const c = parseConfigText(base + `
[cluster]
name = "home"
key_file = "keys/cluster.key"
[elp]
interface = "10.0.0.2"
interval_ms = 500
[[peers]]
address = "10.0.0.7:5386"
[[peers]]
address = "10.0.0.8"
`, FILE);
    expect(c.cluster).toMatchObject({ name: 'home', keyFile: '/etc/grapevine/keys/cluster.key' });
    expect(c.elp).toMatchObject({ interface: '10.0.0.2', intervalMs: 500, unreachableAfterMs: 1500 });
    expect(c.peers).toEqual([{ address: '10.0.0.7:5386', host: '10.0.0.7', port: 5386 }, { address: '10.0.0.8:5386', host: '10.0.0.8', port: 5386 }]);
    expect(parseConfigText(base + '[elp]\nmdns = true\n', FILE).elp).toMatchObject({ group: '224.0.0.251', port: 5353, mdns: true });
  });

  it('refuses bad values naming the file and key', () => {
    expect(configError('[cluster]\nname = "bad name"\n')).toMatch(/gv\.toml: cluster\.name: invalid cluster name/);
    expect(configError('[cluster]\nkey_file = "k"\n')).toMatch(/cluster\.name: missing name \(required with key_file\)/);
    expect(configError('[elp]\ngroup = "10.0.0.1"\n')).toMatch(/elp\.group: "10\.0\.0\.1" is not an IPv4 multicast address/);
    expect(configError('[elp]\ninterface = "eth0"\n')).toMatch(/elp\.interface: "eth0" is not an IPv4 address/);
    expect(configError('[elp]\ninterval_ms = 1000\nunreachable_after_ms = 1000\n')).toMatch(/elp\.unreachable_after_ms: must be longer than interval_ms/);
    expect(configError('[elp]\nport = 70000\n')).toMatch(/elp\.port: port out of range/);
    expect(configError('[elp]\ngrup = "239.1.1.1"\n')).toMatch(/elp\.grup: unknown key \(allowed here: enabled, group, port/);
    expect(configError('[[peers]]\naddress = "nowhere:x"\n')).toMatch(/peers\[0\]\.address: "nowhere:x" is not "address:port"/);
    expect(configError('[[peers]]\naddress = "10.0.0.7:5386"\n[[peers]]\naddress = "10.0.0.7"\n')).toMatch(/peers\[1\]\.address: peer 10\.0\.0\.7:5386 is listed twice/);
    expect(configError('[[peers]]\nadress = "10.0.0.7"\n')).toMatch(/peers\[0\]\.address: missing address \(required\)/);
    expect(configError('[[peers]]\naddress = "10.0.0.7"\nport = 1\n')).toMatch(/peers\[0\]\.port: unknown key \(allowed here: address\)/);
  });
});

function gv(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [DAEMON_MAIN, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('gv init: cluster key and joining', () => {
  it('creates a 0600 key and prints a join token; --join-token and --join copy the key; mistakes are refused', () => {
    ensureBuilt();
    const dir = (n: string) => path.join(tmp, n);
    const first = gv(['init', '--name', 'a', '--cluster', 'home', '--state-dir', dir('a'), '--config', path.join(dir('a'), 'gv.toml'), '--json']);
    expect(first.code, first.stderr).toBe(0);
    const j = JSON.parse(first.stdout) as { joinToken: string; cluster: { name: string; keyFile: string; joined: boolean } };
    expect(j.cluster).toEqual({ name: 'home', keyFile: path.join(dir('a'), 'cluster.key'), joined: false });
    const key = readClusterKey(j.cluster.keyFile);
    expect(key).toHaveLength(32);
    expect(fs.statSync(j.cluster.keyFile).mode & 0o777).toBe(0o600);
    const cfgA = parseConfigText(fs.readFileSync(path.join(dir('a'), 'gv.toml'), 'utf8'), path.join(dir('a'), 'gv.toml'));
    expect(cfgA.cluster).toMatchObject({ name: 'home', keyFile: j.cluster.keyFile });
    const human = gv(['init', '--name', 'h', '--state-dir', dir('h'), '--config', path.join(dir('h'), 'gv.toml')]);
    expect(human.stdout).toMatch(/^join other nodes \(the token is a secret\): gv init --name NAME --join-token gvjoin1\.\S+$/m);
    expect(human.stdout).toMatch(/^cluster: grapevine \(new key/m);

    const b = gv(['init', '--name', 'b', '--join-token', j.joinToken, '--state-dir', dir('b'), '--config', path.join(dir('b'), 'gv.toml'), '--json']);
    expect(b.code, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout).cluster).toMatchObject({ name: 'home', joined: true });
    expect(readClusterKey(path.join(dir('b'), 'cluster.key')).equals(key)).toBe(true);

    const c = gv(['init', '--name', 'c', '--join', j.cluster.keyFile, '--cluster', 'home', '--state-dir', dir('c'), '--config', path.join(dir('c'), 'gv.toml')]);
    expect(c.code, c.stderr).toBe(0);
    expect(readClusterKey(path.join(dir('c'), 'cluster.key')).equals(key)).toBe(true);

    const both = gv(['init', '--name', 'x', '--join', j.cluster.keyFile, '--join-token', j.joinToken, '--state-dir', dir('x'), '--config', path.join(dir('x'), 'gv.toml')]);
    expect([both.code, both.stderr]).toEqual([2, 'gv: --join and --join-token cannot be used together\n']);
    const badToken = gv(['init', '--name', 'x', '--join-token', 'gvjoin1.abc', '--state-dir', dir('x'), '--config', path.join(dir('x'), 'gv.toml')]);
    expect(badToken.code).toBe(2);
    expect(badToken.stderr).toMatch(/--join-token: not a join token/);
    const mismatch = gv(['init', '--name', 'x', '--join-token', j.joinToken, '--cluster', 'work', '--state-dir', dir('x'), '--config', path.join(dir('x'), 'gv.toml')]);
    expect(mismatch.stderr).toMatch(/--cluster work does not match the token's cluster "home"/);
    fs.writeFileSync(path.join(tmp, 'short.key'), 'short');
    const shortKey = gv(['init', '--name', 'x', '--join', path.join(tmp, 'short.key'), '--state-dir', dir('x'), '--config', path.join(dir('x'), 'gv.toml')]);
    expect(shortKey.stderr).toMatch(/not a cluster key \(5 bytes, expected 32\)/);
    // Nothing was written by the refused attempts.
    expect(fs.existsSync(dir('x'))).toBe(false);
  });

  it('the daemon refuses a key file others can read', () => {
    const f = path.join(tmp, 'loose.key');
    fs.writeFileSync(f, Buffer.alloc(32, 1), { mode: 0o644 });
    fs.chmodSync(f, 0o644);
    expect(() => readClusterKey(f)).toThrow(/readable by others \(mode 644\); chmod 600 it/);
  });
});

describe('mdns mode: DNS-SD records', () => {
  it('answers a _grapevine._tcp query with PTR, SRV, TXT and A records (loopback only)', async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const beacon = new MulticastBeacon({
      group: '224.0.0.251', port, interface: '127.0.0.1', peers: [],
      service: { instance: 'node-a', port: 2049, addresses: ['127.0.0.1'], txt: () => ['id=00ff', 'cluster=home', 'zone.tier-1=5'] },
    });
    await beacon.start();
    const q = makeMdns({ port, ip: '224.0.0.251', interface: '127.0.0.1', bind: '0.0.0.0' } as Parameters<typeof makeMdns>[0]);
    try {
      await new Promise<void>((r) => q.once('ready', () => r()));
      const answer = new Promise<import('dns-packet').Answer[]>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no answer in 3 s')), 3000);
        q.on('response', (res) => {
          const all = [...(res.answers ?? []), ...(res.additionals ?? [])];
          if (all.some((a) => a.type === 'SRV')) {
            clearTimeout(t);
            resolve(all);
          }
        });
      });
      q.query({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }] });
      const all = (await answer) as { type: string; name: string; data: unknown }[];
      expect(all.find((a) => a.type === 'PTR' && a.name === SERVICE_TYPE)?.data).toBe(`node-a.${SERVICE_TYPE}`);
      expect(all.find((a) => a.type === 'SRV')?.data).toMatchObject({ port: 2049, target: 'node-a.gv.local' });
      const txt = all.find((a) => a.type === 'TXT' && a.name === `node-a.${SERVICE_TYPE}`)!.data as Buffer[];
      expect(txt.map(String)).toEqual(['id=00ff', 'cluster=home', 'zone.tier-1=5']);
      expect(all.find((a) => a.type === 'A')?.data).toBe('127.0.0.1');
    } finally {
      await new Promise<void>((r) => q.destroy(() => r()));
      await beacon.close();
    }
  });
});
