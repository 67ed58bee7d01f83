/**
 * Prometheus metrics: a daemon (in this process) with the /metrics listener on a free port,
 * driven through NFS and MOUNT by our own client; the scrape must count exactly what was done.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { startDaemon, type Daemon } from '../src/daemon/start.js';
import { GvError } from '../src/errors.js';
import { metricsConfigFromRaw } from '../src/metrics/config.js';
import { NFS_NAMES } from '../src/metrics/names.js';
import { GvMetrics, LATENCY_BUCKETS } from '../src/metrics/registry.js';
import { metered, type ZoneMeter } from '../src/vfs/metered.js';
import type { CallContext } from '../src/vfs/types.js';
import { expectOk, mountZone, Nfs3Client, NFS3ERR, STABLE, statName } from './harness/nfs3-client.js';

const ZONE = 'm';
const QUOTA = 1 << 20;
const dirs: string[] = [];
const daemons: Daemon[] = [];

function makeConfig(): Config {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-metrics-'));
  dirs.push(dir);
  const text = [
    '[node]', 'name = "metrics-test"', `state_dir = ${JSON.stringify(path.join(dir, 'state'))}`,
    '[nfs]', 'listen = "127.0.0.1"', 'port = 0', 'mount_port = 0', 'portmap = "off"',
    `[zones.${ZONE}]`, `path = ${JSON.stringify(path.join(dir, 'zone'))}`, `quota = "${QUOTA}"`, 'allow = ["127.0.0.1/32"]',
    '',
  ].join('\n');
  fs.mkdirSync(path.join(dir, 'state'));
  fs.mkdirSync(path.join(dir, 'zone'));
  return parseConfigText(text, path.join(dir, 'gv.toml'));
}

async function start(config: Config, metricsPort: number): Promise<Daemon> {
  const d = await startDaemon(config, { metricsPort, logLevel: 'silent', portmap: 'off' });
  daemons.push(d);
  return d;
}

/** Value of one sample of the exposition text (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const kv of (m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) have.set(kv[1]!, kv[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v) && have.size === Object.keys(labels).length) return Number(m[3]);
  }
  return undefined;
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return res.text();
}

/** Send raw bytes on a fresh connection and collect what comes back until the peer closes. */
function rawExchange(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let out = '';
    const t = setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 5000);
    s.on('connect', () => s.write(bytes));
    s.on('data', (c) => (out += c.toString('latin1')));
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

afterAll(async () => {
  for (const d of daemons) await d.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('metrics endpoint', () => {
  let d: Daemon;
  let nfs: Nfs3Client;
  let root: Buffer;
  let fh: Buffer;
  const written = 3 * 100_000;
  const readBytes = 65_536 + written;

  beforeAll(async () => {
    d = await start(makeConfig(), 0);
    expect(d.metricsPort).toBeGreaterThan(0);
    ({ nfs, root } = await mountZone(d.nfsPort, d.mountPort, ZONE));
    fh = expectOk(await nfs.create(root, 'a', { mode: 'guarded', attrs: { mode: 0o644 } }), 'CREATE').fh!;
    for (let i = 0; i < 3; i++) {
      expect(expectOk(await nfs.write(fh, i * 100_000, Buffer.alloc(100_000, i + 1), STABLE.FILE_SYNC)).count).toBe(100_000);
    }
    const over = await nfs.write(fh, written, Buffer.alloc(QUOTA, 9), STABLE.FILE_SYNC);
    expect(statName(over.status)).toBe('NFS3ERR_DQUOT');
    expect(expectOk(await nfs.read(fh, 0, 65_536)).count).toBe(65_536);
    expect(expectOk(await nfs.read(fh, 0, written)).count).toBe(written);
    expect((await nfs.lookup(root, 'missing')).status).toBe(NFS3ERR.NOENT);
    // A record too short to hold an RPC header (garbage), then a record mark past the size limit
    // (the server drops that connection).
    const tiny = Buffer.from([0x80, 0, 0, 4, 1, 2, 3, 4]);
    await rawExchange(d.nfsPort, Buffer.concat([tiny, Buffer.from([0xff, 0xff, 0xff, 0xff])]));
  });

  afterAll(() => nfs?.close());

  it('counts calls by program, procedure and status, with latency histograms', async () => {
    const text = await scrape(d.metricsPort!);
    const calls = (program: string, procedure: string, status: string) => sample(text, 'gv_rpc_calls_total', { program, procedure, status });
    expect(calls('mount', 'MNT', 'MNT3_OK')).toBe(1);
    expect(calls('nfs', 'CREATE', 'NFS3_OK')).toBe(1);
    expect(calls('nfs', 'WRITE', 'NFS3_OK')).toBe(3);
    expect(calls('nfs', 'WRITE', 'NFS3ERR_DQUOT')).toBe(1);
    expect(calls('nfs', 'READ', 'NFS3_OK')).toBe(2);
    expect(calls('nfs', 'LOOKUP', 'NFS3ERR_NOENT')).toBe(1);
    expect(sample(text, 'gv_rpc_call_duration_seconds_count', { program: 'nfs', procedure: 'WRITE' })).toBe(4);
    expect(sample(text, 'gv_rpc_call_duration_seconds_bucket', { program: 'nfs', procedure: 'WRITE', le: '+Inf' })).toBe(4);
    expect(sample(text, 'gv_rpc_call_duration_seconds_sum', { program: 'nfs', procedure: 'WRITE' })).toBeGreaterThan(0);
  });

  it('counts bytes and errors per zone, and reports quota and usage', async () => {
    const text = await scrape(d.metricsPort!);
    expect(sample(text, 'gv_zone_written_bytes_total', { zone: ZONE })).toBe(written);
    expect(sample(text, 'gv_zone_read_bytes_total', { zone: ZONE })).toBe(readBytes);
    expect(sample(text, 'gv_zone_errors_total', { zone: ZONE, op: 'write', code: 'EDQUOT' })).toBe(1);
    expect(sample(text, 'gv_zone_errors_total', { zone: ZONE, op: 'lookup', code: 'ENOENT' })).toBe(1);
    expect(sample(text, 'gv_zone_quota_bytes', { zone: ZONE })).toBe(QUOTA);
    const used = sample(text, 'gv_zone_used_bytes', { zone: ZONE })!;
    expect(used).toBeGreaterThanOrEqual(written);
    expect(used).toBeLessThanOrEqual(QUOTA);
  });

  it('reports RPC garbage, dropped and open connections, and process metrics', async () => {
    const text = await scrape(d.metricsPort!);
    expect(sample(text, 'gv_rpc_garbage_total', { listener: 'nfs' })).toBe(1);
    expect(sample(text, 'gv_rpc_dropped_connections_total', { listener: 'nfs' })).toBe(1);
    expect(sample(text, 'gv_rpc_open_connections', { listener: 'nfs' })).toBe(1);
    expect(sample(text, 'gv_rpc_garbage_total', { listener: 'mount' })).toBe(0);
    // busy polling is on by default: replies with nothing else in flight were followed by a poll
    expect(sample(text, 'gv_rpc_busy_polls_total', { listener: 'nfs' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'gv_rpc_busy_poll_hits_total', { listener: 'nfs' })).toBeDefined();
    expect(sample(text, 'gv_rpc_busy_poll_seconds_total', { listener: 'nfs' })).toBeGreaterThan(0);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('answers 404 elsewhere, 405 for other methods, HEAD without a body, 400 to garbage', async () => {
    const base = `http://127.0.0.1:${d.metricsPort}`;
    for (const p of ['/', '/metricsx', '/metrics/', '/METRICS', '/favicon.ico']) {
      const r = await fetch(base + p);
      expect(r.status, p).toBe(404);
      await r.text();
    }
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.text();
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect(await rawExchange(d.metricsPort!, Buffer.from('BLAH\x00\x01 / HTTP/9\r\n\r\n'))).toMatch(/^HTTP\/1\.1 400/);
    expect(await rawExchange(d.metricsPort!, Buffer.from(`GET /metrics HTTP/1.1\r\nHost: x\r\nX: ${'a'.repeat(64 * 1024)}\r\n\r\n`))).toMatch(/^HTTP\/1\.1 431/);
    // Still serving after all that, and query strings are ignored.
    const again = await fetch(`${base}/metrics?x=1`);
    expect(again.status).toBe(200);
    expect(sample(await again.text(), 'gv_zone_written_bytes_total', { zone: ZONE })).toBe(written);
  });

  it('a busy metrics port does not stop the daemon; enabled = false serves none', async () => {
    const busy = await start(makeConfig(), d.metricsPort!);
    expect(busy.metricsPort).toBeNull();
    const c = await Nfs3Client.connect(busy.nfsPort);
    await c.null();
    c.close();
    const config = makeConfig();
    const off = await start({ ...config, metrics: { enabled: false, listen: '127.0.0.1', port: 0 } }, 0);
    expect(off.metricsPort).toBeNull();
  });
});

describe('GvMetrics hot-path tallies', () => {
  it('exposes calls, bytes and the latency histogram as prom-client would (cumulative buckets, +Inf, sum, count)', async () => {
    const m = new GvMetrics({ processMetrics: false });
    const z = m.zoneMeter('tier-1');
    expect(sample(await m.metrics(), 'gv_zone_read_bytes_total', { zone: 'tier-1' })).toBe(0); // visible before any READ
    for (const s of [0.00003, 0.0002, 0.0002, 20]) m.rpcCall(NFS_NAMES, 1, 'NFS3_OK', s);
    m.rpcCall(NFS_NAMES, 99, 'PROC_UNAVAIL', 0.001);
    z.read(4096);
    m.zoneMeter('tier-1').read(1); // a reopened zone counts on
    z.written(123);
    const text = await m.metrics();
    const g = { program: 'nfs', procedure: 'GETATTR' };
    expect(sample(text, 'gv_rpc_calls_total', { ...g, status: 'NFS3_OK' })).toBe(4);
    expect(sample(text, 'gv_rpc_calls_total', { program: 'nfs', procedure: 'other', status: 'PROC_UNAVAIL' })).toBe(1);
    expect(sample(text, 'gv_rpc_call_duration_seconds_bucket', { ...g, le: '0.00005' })).toBe(1);
    expect(sample(text, 'gv_rpc_call_duration_seconds_bucket', { ...g, le: '0.00025' })).toBe(3);
    expect(sample(text, 'gv_rpc_call_duration_seconds_bucket', { ...g, le: String(LATENCY_BUCKETS.at(-1)) })).toBe(3);
    expect(sample(text, 'gv_rpc_call_duration_seconds_bucket', { ...g, le: '+Inf' })).toBe(4);
    expect(sample(text, 'gv_rpc_call_duration_seconds_count', g)).toBe(4);
    expect(sample(text, 'gv_rpc_call_duration_seconds_sum', g)).toBeCloseTo(20.00043, 9);
    expect(text).toContain('# TYPE gv_rpc_call_duration_seconds histogram');
    expect(sample(text, 'gv_zone_read_bytes_total', { zone: 'tier-1' })).toBe(4097);
    expect(sample(text, 'gv_zone_written_bytes_total', { zone: 'tier-1' })).toBe(123);
  });
});

describe('metered ZoneFs', () => {
  it('passes READ buffers and errors through untouched while counting them', async () => {
    const config = makeConfig();
    const d = await start({ ...config, metrics: { enabled: false, listen: '127.0.0.1', port: 0 } }, 0);
    const zone = d.zones[0]!;
    const ctx: CallContext = { uid: 0, gid: 0, gids: [0], client: '127.0.0.1', origin: 'local' };
    const counts = { read: 0, written: 0, errors: [] as string[] };
    const meter: ZoneMeter = {
      read: (n) => (counts.read += n),
      written: (n) => (counts.written += n),
      error: (op, code) => counts.errors.push(`${op} ${code}`),
    };
    const m = metered(zone, meter);
    expect(m.inner).toBe(zone);
    expect([m.name, m.zoneId, m.rootId]).toEqual([zone.name, zone.zoneId, zone.rootId]);
    const created = await m.create(ctx, m.rootId, Buffer.from('f'), { mode: 'unchecked', attrs: { mode: 0o644 } });
    const data = Buffer.alloc(10_000, 7);
    expect((await m.write(ctx, created.id, 0, data, 'file_sync')).count).toBe(10_000);
    const into = Buffer.alloc(1 << 20);
    const r = await m.read(ctx, created.id, 0, 10_000, into);
    expect(r.data.buffer).toBe(into.buffer);
    expect(r.data.equals(data)).toBe(true);
    expect(counts.read).toBe(10_000);
    expect(counts.written).toBe(10_000);
    const err = await m.read(ctx, 987_654_321n, 0, 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GvError);
    expect(counts.errors).toEqual([`read ${(err as GvError).code}`]);
    const exists = await m.create(ctx, m.rootId, Buffer.from('f'), { mode: 'guarded', attrs: {} }).catch((e: unknown) => e);
    expect((exists as GvError).code).toBe('EEXIST');
    expect(counts.errors[1]).toBe('create EEXIST');
  });
});

describe('[metrics] settings', () => {
  it('defaults to loopback port 9586, enabled', () => {
    expect(metricsConfigFromRaw(undefined, 'gv.toml')).toEqual({ enabled: true, listen: '127.0.0.1', port: 9586 });
    expect(metricsConfigFromRaw({ port: 0, listen: '::1', enabled: false }, 'gv.toml')).toEqual({ enabled: false, listen: '::1', port: 0 });
  });

  it('refuses a listen value that is not an address, naming file and key', () => {
    expect(() => metricsConfigFromRaw({ listen: 'localhost' }, '/etc/gv.toml')).toThrow('/etc/gv.toml: metrics.listen: "localhost" is not an IPv4 or IPv6 address');
  });
});
