import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfigText } from '../src/config/load.js';
import { GvError } from '../src/errors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-config-repl-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const FILE = path.join(tmp, 'zones.toml');

function configError(text: string): GvError {
  try {
    parseConfigText(text, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(GvError);
    expect((err as GvError).code).toBe('CONFIG');
    return err as GvError;
  }
  throw new Error('expected a CONFIG error');
}

const ZONES = '[zones.a]\npath = "/tmp/gv-a"\n[zones.b]\npath = "/tmp/gv-b"\nconsistency = "available"\n';

describe('[replication] config', () => {
  it('defaults when the table is absent (listen follows [nfs] listen)', () => {
    const c = parseConfigText('[nfs]\nlisten = "10.1.2.3"\n' + ZONES, FILE);
    expect(c.replication).toEqual({
      enabled: true, listen: '10.1.2.3', port: 7386, consistency: 'pull-first', pullWaitMs: 1000, concurrency: 4,
      maxBandwidthBytesPerSec: 0,
    });
    expect(c.zones.map((z) => [z.name, z.consistency])).toEqual([['a', 'pull-first'], ['b', 'available']]);
    expect(parseConfigText('', FILE).replication?.listen).toBe('127.0.0.1');
  });

  it('reads every key', () => {
    const c = parseConfigText(
      `[replication]\nenabled = false\nlisten = "::1"\nport = 0\nconsistency = "available"\npull_wait_ms = 250\nconcurrency = 16\nmax_bandwidth = "50M"\n${ZONES}`,
      FILE,
    );
    expect(c.replication).toEqual({
      enabled: false, listen: '::1', port: 0, consistency: 'available', pullWaitMs: 250, concurrency: 16,
      maxBandwidthBytesPerSec: 50 * 2 ** 20,
    });
    // Zones without their own consistency take the section's; a zone's own wins.
    const c2 = parseConfigText('[replication]\nconsistency = "available"\n[zones.a]\npath = "/tmp/gv-a"\n[zones.b]\npath = "/tmp/gv-b"\nconsistency = "pull-first"\n', FILE);
    expect(c2.zones.map((z) => z.consistency)).toEqual(['available', 'pull-first']);
  });

  it('max_bandwidth takes sizes with units, a "/s" suffix, plain numbers and 0', () => {
    const bw = (v: string) => parseConfigText(`[replication]\nmax_bandwidth = ${v}\n`, FILE).replication!.maxBandwidthBytesPerSec;
    expect(bw('"1.5G"')).toBe(1.5 * 2 ** 30);
    expect(bw('"512K/s"')).toBe(512 * 1024);
    expect(bw('1000000')).toBe(1_000_000);
    expect(bw('"0"')).toBe(0);
    expect(bw('0')).toBe(0);
  });

  it('bad values are refused naming file, key and reason', () => {
    expect(configError('[replication]\nport = 70000\n').message).toBe(`${FILE}: replication.port: port out of range (0-65535)`);
    expect(configError('[replication]\nport = "7386"\n').message).toMatch(new RegExp(`^${FILE}: replication\\.port: .*number`));
    expect(configError('[replication]\nconsistency = "eventual"\n').message).toBe(`${FILE}: replication.consistency: must be "pull-first" or "available"`);
    expect(configError('[zones.a]\npath = "/tmp/gv-a"\nconsistency = "strong"\n').message).toBe(`${FILE}: zones.a.consistency: must be "pull-first" or "available"`);
    expect(configError('[replication]\npull_wait_ms = -1\n').message).toBe(`${FILE}: replication.pull_wait_ms: at least 0`);
    expect(configError('[replication]\npull_wait_ms = 1.5\n').message).toBe(`${FILE}: replication.pull_wait_ms: must be a whole number`);
    expect(configError('[replication]\npull_wait_ms = 600000\n').message).toBe(`${FILE}: replication.pull_wait_ms: at most 60000`);
    expect(configError('[replication]\nconcurrency = 0\n').message).toBe(`${FILE}: replication.concurrency: at least 1`);
    expect(configError('[replication]\nconcurrency = 1000\n').message).toBe(`${FILE}: replication.concurrency: at most 256`);
    expect(configError('[replication]\nmax_bandwidth = "fast"\n').message).toMatch(
      new RegExp(`^${FILE}: replication\\.max_bandwidth: bad size "fast".*\\(bytes per second; 0 = unlimited\\)$`),
    );
    expect(configError('[replication]\nmax_bandwidth = -5\n').message).toMatch(new RegExp(`^${FILE}: replication\\.max_bandwidth: bad size -5`));
    expect(configError('[replication]\nlisten = "peer.example"\n').message).toBe(`${FILE}: replication.listen: "peer.example" is not an IPv4 or IPv6 address`);
    expect(configError('[replication]\nenabled = "yes"\n').message).toMatch(new RegExp(`^${FILE}: replication\\.enabled: .*boolean`));
  });

  it('an unknown key is refused and the allowed keys are listed', () => {
    expect(configError('[replication]\nbandwidth = "5M"\n').message).toBe(
      `${FILE}: replication.bandwidth: unknown key (allowed here: enabled, listen, port, consistency, pull_wait_ms, concurrency, max_bandwidth)`,
    );
    expect(configError('[zones.a]\npath = "/tmp/gv-a"\nconsistensy = "available"\n').message).toBe(
      `${FILE}: zones.a.consistensy: unknown key (allowed here: path, quota, allow, dataset, consistency)`,
    );
  });

  it('the shipped zones.example.toml documents the section', () => {
    const c = loadConfigFile(path.join(__dirname, '..', 'zones.example.toml'));
    expect(c.replication).toMatchObject({ enabled: true, port: 7386, consistency: 'pull-first', pullWaitMs: 1000, concurrency: 4, maxBandwidthBytesPerSec: 0 });
    expect(c.replication!.listen).toBe(c.nfs.listen);
    expect(c.zones.find((z) => z.name === 'tier-1')?.consistency).toBe('pull-first');
  });
});
