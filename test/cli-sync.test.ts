import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProgressPrinter } from '../src/cli/progress.js';
import { controlSocketPath, type ControlRequest } from '../src/control/protocol.js';
import { startControlServer, type ControlHandlers, type ControlServer } from '../src/control/server.js';
import { GvDatabase } from '../src/journal/db.js';
import type { MemberSyncStatus, ZoneSyncStatus } from '../src/replication/source.js';
import { DAEMON_MAIN, ensureBuilt } from './harness/daemon.js';
import { runProcess } from './harness/run.js';

/**
 * gv zone sync / gv conflicts / gv status against a fake gvd: a real control socket (the
 * daemon's own server code) in the state dir answering with scripted replication states.
 */
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-cli-sync-'));
const CONFIG = path.join(tmp, 'gv.toml');
const STATE = path.join(tmp, 'state');

function gv(args: string[]) {
  return runProcess(process.execPath, [DAEMON_MAIN, ...args], { cwd: tmp, env: { ...process.env, GV_CONFIG: CONFIG }, timeoutMs: 60_000 });
}

let server: ControlServer | null = null;
const requests: ControlRequest[] = [];

async function fakeDaemon(extra: Partial<ControlHandlers>): Promise<void> {
  server = await startControlServer(controlSocketPath(STATE), {
    status: async () => ({ pid: 1, nfsPort: 2049, mountPort: 20048, portmapPort: null, listen: '127.0.0.1', startedAt: 'now', zones: [{ name: 'tier-1', version: '10' }], elp: null }),
    reload: async () => ({ errors: [] }),
    nodes: async () => ({ enabled: false }),
    ...extra,
  });
}

afterEach(async () => {
  await server?.close();
  server = null;
  requests.length = 0;
});

beforeAll(async () => {
  ensureBuilt();
  const r = await gv(['init', '--name', 'a', '--state-dir', STATE, '--config', CONFIG]);
  expect(r.code).toBe(0);
  fs.writeFileSync(CONFIG, fs.readFileSync(CONFIG, 'utf8').replace('nodes = []', 'nodes = ["b", "c"]'));
  const c = await gv(['zone', 'create', 'tier-1', '--quota', '1G', '--nodes', 'a,b,c', '--consistency', 'available']);
  expect(c.stderr).toBe('');
  expect(c.code).toBe(0);
}, 200_000);

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const MiB = 1 << 20;

function member(name: string, behind: number, bytes: number, state: MemberSyncStatus['state'] = 'reachable'): MemberSyncStatus {
  return {
    peerId: `id-${name}`, peerName: name, state, advertised: String(10 + behind), applied: '10', behind: String(behind),
    bytesToFetch: bytes, rateBytesPerSec: behind ? 2 * MiB : 0, bytesFetched: 0, pulling: behind > 0, lastError: null,
  };
}

function zone(behindB: number, bytesB: number): ZoneSyncStatus {
  const inSync = behindB === 0;
  return {
    zone: 'tier-1', version: inSync ? '14' : '10', consistency: 'available', pendingPaths: 0, inSync,
    members: [member('b', behindB, bytesB), member('c', 0, 0, 'unreachable')],
  };
}

/** A replication handler that walks through `script`, then stays on its last state. */
function scripted(script: ZoneSyncStatus[]): ControlHandlers['replication'] {
  let i = 0;
  return async (req) => {
    requests.push(req);
    return [script[Math.min(i++, script.length - 1)]];
  };
}

describe('gv zone sync --wait', () => {
  it('prints plain progress lines without a terminal and exits 0 once in sync', async () => {
    await fakeDaemon({ replication: scripted([zone(4, 4 * MiB), zone(3, 3 * MiB), zone(2, 2 * MiB), zone(1, MiB), zone(0, 0)]) });
    const r = await gv(['zone', 'sync', 'tier-1', '--wait', '--timeout', '30']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('\r');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('tier-1: 4 versions behind, 4MiB to fetch, 2MiB/s');
    expect(lines.at(-1)).toBe('tier-1: in sync at version 14');
    expect(lines.length).toBeLessThanOrEqual(5);
    for (const l of lines.slice(1, -1)) expect(l).toMatch(/^tier-1: [123] versions? behind, [123]MiB to fetch, 2MiB\/s$/);
    expect(new Set(lines).size).toBe(lines.length);
    expect(requests.length).toBeGreaterThanOrEqual(5);
    expect(requests.every((q) => q.op === 'replication' && q.zone === 'tier-1')).toBe(true);
  });

  it.skipIf(!fs.existsSync('/usr/bin/script'))('on a terminal draws a bar redrawn in place, ending on a new line', async () => {
    await fakeDaemon({ replication: scripted([zone(4, 4 * MiB), zone(2, 2 * MiB), zone(2, 2 * MiB), zone(0, 0)]) });
    // script(1) gives the command a pseudo-terminal as stdout.
    const cmd = `${process.execPath} ${DAEMON_MAIN} zone sync tier-1 --wait --timeout 30`;
    const r = await runProcess('/usr/bin/script', ['-qfec', cmd, '/dev/null'], { cwd: tmp, env: { ...process.env, GV_CONFIG: CONFIG }, timeoutMs: 60_000 });
    expect(r.code).toBe(0);
    const frames = r.stdout.split('\r').filter((f) => f.startsWith('tier-1'));
    expect(frames[0]).toBe('tier-1 [------------------------]   0%  4 behind  4MiB to fetch  2MiB/s\x1b[K');
    expect(frames.at(-1)).toBe('tier-1 [########################] 100%  in sync at version 14\x1b[K');
    expect(r.stdout.endsWith('\x1b[K\r\n')).toBe(true); // the terminal turns the final \n into \r\n
    expect(frames.length).toBeGreaterThanOrEqual(3);
  });

  it('--json prints only the final status', async () => {
    await fakeDaemon({ replication: scripted([zone(2, 100), zone(0, 0)]) });
    const r = await gv(['zone', 'sync', 'tier-1', '--wait', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ ok: true, zone: 'tier-1', inSync: true, status: { zone: 'tier-1', version: '14', inSync: true } });
    expect(j.status.members.map((m: MemberSyncStatus) => [m.peerName, m.behind])).toEqual([['b', '0'], ['c', '0']]);
  });

  it('gives up after --timeout with exit 1 and says how far behind it is', async () => {
    await fakeDaemon({ replication: scripted([zone(7, 5 * MiB)]) });
    const r = await gv(['zone', 'sync', 'tier-1', '--wait', '--timeout', '0.6']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gv: zone tier-1 is not in sync after \d+\.\d s \(--timeout\): 7 versions behind, 5MiB to fetch, 2MiB\/s\n$/);
    expect(r.stdout).toBe('tier-1: 7 versions behind, 5MiB to fetch, 2MiB/s\n');
    const j = await gv(['zone', 'sync', 'tier-1', '--wait', '--timeout', '0.3', '--json']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, error: { code: 'EAGAIN', message: expect.stringMatching(/not in sync/) } });
  });

  it('without --wait prints the state once; in both cases per member', async () => {
    await fakeDaemon({ replication: scripted([zone(3, 1536)]) });
    const r = await gv(['zone', 'sync', 'tier-1']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('tier-1: 3 versions behind, 1.5KiB to fetch, 2MiB/s\n  b: 3 behind, 1.5KiB to fetch, 2MiB/s\n  c: unreachable (applied 10)\n');
  });

  it('fails clearly when the daemon is down or runs without replication', async () => {
    const down = await gv(['zone', 'sync', 'tier-1', '--wait']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^gv: cannot sync zone tier-1: gvd is not running \(no control socket\); start it/);
    await fakeDaemon({});
    const off = await gv(['zone', 'sync', 'tier-1', '--wait', '--timeout', '5']);
    expect(off.code).toBe(1);
    expect(off.stderr).toMatch(/cannot sync zone tier-1: replication is not running in gvd/);
  });

  it('bad values and unknown flags are usage errors (exit 2); unknown zones exit 1', async () => {
    for (const [args, code, re] of [
      [['zone', 'sync', 'tier-1', '--wait', '--timeout', 'soon'], 2, /--timeout: "soon" is not a number of seconds/],
      [['zone', 'sync', 'tier-1', '--wait', '--timeout', '0'], 2, /--timeout: "0" is not a number/],
      [['zone', 'sync', 'tier-1', '--timeout', '5'], 2, /--timeout needs --wait/],
      [['zone', 'sync', 'tier-1', '--wiat'], 2, /unknown option '--wiat'/],
      [['zone', 'sync', 'nope', '--wait'], 1, /no zone "nope"/],
      [['zone', 'create', 'x', '--quota', '1G', '--consistency', 'eventual'], 2, /--consistency <mode>' argument 'eventual' is invalid/],
    ] as [string[], number, RegExp][]) {
      const r = await gv(args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(re);
    }
  });
});

describe('gv status and gv zone show with replication', () => {
  it('show per member behind, bytes to fetch and rate; nothing of it when the daemon is down', async () => {
    const show0 = await gv(['zone', 'show', 'tier-1', '--json']);
    expect(JSON.parse(show0.stdout).zone).not.toHaveProperty('replication');
    expect(JSON.parse(show0.stdout).zone.consistency).toBe('available');
    await fakeDaemon({ replication: scripted([zone(3, 3 * MiB)]) });
    const st = await gv(['status', '--json']);
    expect(st.code).toBe(0);
    const z = JSON.parse(st.stdout).zones.find((x: { name: string }) => x.name === 'tier-1');
    expect(z.replication).toMatchObject({ inSync: false, members: [{ name: 'b', behind: '3', bytesToFetch: 3 * MiB, rateBytesPerSec: 2 * MiB }, { name: 'c', state: 'unreachable' }] });
    const human = await gv(['status']);
    expect(human.stdout).toMatch(/SYNC/);
    expect(human.stdout).toMatch(/^tier-1 .*b: 3 behind 3MiB @ 2MiB\/s; c: unreachable$/m);
    const show = await gv(['zone', 'show', 'tier-1']);
    expect(show.stdout).toMatch(/^sync:\s+3 versions behind, 3MiB to fetch, 2MiB\/s$/m);
    expect(show.stdout).toMatch(/^ {2}b: 3 behind, 3MiB to fetch, 2MiB\/s$/m);
    expect(show.stdout).toMatch(/^consistency: available$/m);
  });
});

describe('gv conflicts', () => {
  beforeAll(() => {
    const db = GvDatabase.open(STATE);
    const ins = db.sqlite.prepare(
      `INSERT INTO file_index (zone, fileid, path, type, size, mtime_ns, ino, mode, vector, hashes, origin)
       VALUES (?, ?, ?, 'file', ?, 0, ?, 33188, x'', NULL, 'o')`,
    );
    const rows: [string, string, number][] = [
      ['tier-1', 'docs/report.gv-conflict-20260101-120304-abcdef1.txt', 42],
      ['tier-1', 'docs/report.txt', 40],
      ['tier-1', 'Makefile.gv-conflict-20251231-235959-0123456', 7],
      ['tier-1', 'not.gv-conflict-2026-x.txt', 1],
      ['other', 'a.gv-conflict-20260202-010101-fffffff.md', 3],
    ];
    rows.forEach(([z, p, size], i) => ins.run(z, i + 100, Buffer.from(p), size, i + 100));
    db.close();
  });

  it('reads the file index when the daemon is not running', async () => {
    const r = await gv(['conflicts', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.source).toBe('database');
    expect(j.conflicts).toEqual([
      { zone: 'other', path: 'a.gv-conflict-20260202-010101-fffffff.md', original: 'a.md', at: '2026-02-02T01:01:01Z', node: 'fffffff', size: 3 },
      { zone: 'tier-1', path: 'Makefile.gv-conflict-20251231-235959-0123456', original: 'Makefile', at: '2025-12-31T23:59:59Z', node: '0123456', size: 7 },
      { zone: 'tier-1', path: 'docs/report.gv-conflict-20260101-120304-abcdef1.txt', original: 'docs/report.txt', at: '2026-01-01T12:03:04Z', node: 'abcdef1', size: 42 },
    ]);
    const one = await gv(['conflicts', 'tier-1']);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^ZONE\s+PATH\s+ORIGINAL/);
    expect(one.stdout).toMatch(/^tier-1\s+docs\/report\.gv-conflict-20260101-120304-abcdef1\.txt\s+docs\/report\.txt\s+2026-01-01 12:03:04\s+abcdef1\s+42 B$/m);
    expect(one.stdout).not.toMatch(/^other/m);
    expect(one.stdout).toMatch(/gvd is not running/);
    const none = await gv(['conflicts', 'nope']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no zone "nope"/);
  });

  it('asks the daemon when it runs, and falls back when replication is off', async () => {
    const seen: ControlRequest[] = [];
    await fakeDaemon({
      conflicts: async (req) => {
        seen.push(req);
        return [{ zone: 'tier-1', path: 'x.gv-conflict-20260303-030303-1234567.bin', size: 9 }];
      },
    });
    const r = await gv(['conflicts', 'tier-1', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      source: 'daemon', conflicts: [{ zone: 'tier-1', path: 'x.gv-conflict-20260303-030303-1234567.bin', original: 'x.bin', node: '1234567', size: 9, at: '2026-03-03T03:03:03Z' }],
    });
    expect(seen).toEqual([{ op: 'conflicts', zone: 'tier-1' }]);
    await server!.close();
    await fakeDaemon({});
    const off = await gv(['conflicts', '--json']);
    expect(off.code).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ source: 'database', reason: 'replication is not running in gvd' });
    expect(JSON.parse(off.stdout).conflicts).toHaveLength(3);
  });
});

describe('progress printer', () => {
  const status = (behind: number, bytes: number) => zone(behind, bytes);
  it('on a terminal redraws one line in place at most every 100 ms', () => {
    let now = 0;
    let text = '';
    const p = new ProgressPrinter({ write: (t: string) => (text += t) }, true, () => now);
    p.update(status(4, 4 * MiB));
    now = 50;
    p.update(status(3, 3 * MiB)); // too soon: not drawn
    now = 120;
    p.update(status(2, 2 * MiB));
    p.finish(status(0, 0));
    const frames = text.split('\r').slice(1);
    expect(frames).toEqual([
      'tier-1 [------------------------]   0%  4 behind  4MiB to fetch  2MiB/s\x1b[K',
      'tier-1 [############------------]  50%  2 behind  2MiB to fetch  2MiB/s\x1b[K',
      'tier-1 [########################] 100%  in sync at version 14\x1b[K\n',
    ]);
  });

  it('without a terminal prints a changed line at most once a second', () => {
    let now = 0;
    const lines: string[] = [];
    const p = new ProgressPrinter({ write: (t: string) => lines.push(t) }, false, () => now);
    p.update(status(4, 4 * MiB));
    now = 500;
    p.update(status(3, 3 * MiB));
    now = 1000;
    p.update(status(3, 3 * MiB));
    now = 1600;
    p.update(status(3, 3 * MiB)); // unchanged since the last printed: not repeated
    p.finish(status(3, 3 * MiB));
    expect(lines).toEqual(['tier-1: 4 versions behind, 4MiB to fetch, 2MiB/s\n', 'tier-1: 3 versions behind, 3MiB to fetch, 2MiB/s\n']);
  });
});
