import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_MAIN, ensureBuilt } from './harness/daemon.js';
import { runProcess } from './harness/run.js';

/** `gv` commands as a user runs them: spawned, with a temp config and state dir. */
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-cli-zone-'));
const CONFIG = path.join(tmp, 'gv.toml');
const STATE = path.join(tmp, 'state');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function gv(args: string[], env: Record<string, string> = { GV_CONFIG: CONFIG }): Promise<Run> {
  return runProcess(process.execPath, [DAEMON_MAIN, ...args], { cwd: tmp, env: { ...process.env, GV_CONFIG: '', ...env } });
}

/** A --json run: exactly one JSON document on stdout. */
async function gvJson(args: string[]): Promise<Run & { json: Record<string, any> }> {
  const r = await gv([...args, '--json']);
  return { ...r, json: JSON.parse(r.stdout) as Record<string, any> };
}

beforeAll(async () => {
  ensureBuilt();
  const r = await gv(['init', '--name', 'a', '--state-dir', STATE, '--config', CONFIG, '--json'], {});
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  // Known peers b and c; this node never has ZFS here (no pool configured).
  fs.writeFileSync(CONFIG, fs.readFileSync(CONFIG, 'utf8').replace('nodes = []', 'nodes = ["b", "c"]'));
}, 200_000);

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('gv init', () => {
  it('made an identity (0600 key), a config naming the state dir, and refuses to overwrite', async () => {
    const ident = JSON.parse(fs.readFileSync(path.join(STATE, 'node.json'), 'utf8'));
    expect(ident).toMatchObject({ name: 'a', id: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(fs.statSync(path.join(STATE, 'node.key')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(CONFIG, 'utf8')).toContain(`state_dir = ${JSON.stringify(STATE)}`);
    const again = await gv(['init', '--name', 'a', '--state-dir', STATE, '--config', CONFIG]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists; gv init never overwrites a config/);
    const otherConfig = path.join(tmp, 'second.toml');
    const sameState = await gv(['init', '--name', 'a', '--state-dir', STATE, '--config', otherConfig]);
    expect(sameState.code).toBe(1);
    expect(sameState.stderr).toMatch(/already has a node identity/);
    expect(fs.existsSync(otherConfig)).toBe(false);
  });

  it('--json gives the node, config and state dir; bad names are usage errors', async () => {
    const dir = path.join(tmp, 'init2');
    const r = await gvJson(['init', '--name', 'n2', '--state-dir', dir, '--config', path.join(dir, 'gv.toml'), '--pool', 'tank']);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ ok: true, node: { name: 'n2', id: expect.any(String), publicKey: expect.stringMatching(/PUBLIC KEY/) }, stateDir: dir });
    expect(fs.readFileSync(path.join(dir, 'gv.toml'), 'utf8')).toMatch(/^pool = "tank"$/m);
    const bad = await gv(['init', '--name', 'b@d', '--state-dir', dir, '--config', path.join(dir, 'x.toml')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/invalid node name "b@d"/);
    const badPool = await gv(['init', '--name', 'ok', '--pool', 'mirror', '--config', path.join(dir, 'y.toml')]);
    expect(badPool.code).toBe(2);
    expect(badPool.stderr).toMatch(/--pool: invalid pool name/);
    const noName = await gv(['init']);
    expect(noName.code).toBe(2);
    expect(noName.stderr).toMatch(/required option '--name <name>'/);
  });
});

describe('gv zone create / list / show', () => {
  it('creates a directory zone in the catalog and prints it with --json', async () => {
    const r = await gvJson(['zone', 'create', 'tier-1', '--quota', '1.5T', '--nodes', 'a,b,c']);
    expect(r.code).toBe(0);
    expect(r.json.ok).toBe(true);
    expect(r.json.zone).toMatchObject({
      name: 'tier-1', source: 'catalog', quotaBytes: 1.5 * 2 ** 40, quota: '1.5T', members: ['a', 'b', 'c'],
      // version 1 was gv init registering node a (nodes replicate with the catalog too)
      backing: { kind: 'dir', path: path.join(STATE, 'zones', 'tier-1') }, exportPath: '/tier-1', version: 2,
      consistency: 'pull-first', updatedBy: JSON.parse(fs.readFileSync(path.join(STATE, 'node.json'), 'utf8')).id,
    });
    expect(r.json.daemon).toMatchObject({ running: false, reloaded: false });
    expect(fs.statSync(path.join(STATE, 'zones', 'tier-1')).isDirectory()).toBe(true);
    // 1.5T is more than this test machine's free space: a warning, in stderr and in the JSON.
    const free = fs.statfsSync(STATE);
    if (free.bavail * free.bsize < 1.5 * 2 ** 40) {
      expect(r.json.warnings[0]).toMatch(/quota 1.5T is larger than the .* this node has free/);
      expect(r.stderr).toMatch(/^gv: warning: zone tier-1: quota 1.5T is larger/m);
    }
  });

  it('a zone this node is not a member of is only a catalog entry', async () => {
    const r = await gvJson(['zone', 'create', 'far', '--quota', '100M', '--nodes', 'b,c']);
    expect(r.code).toBe(0);
    expect(r.json.zone).toMatchObject({ name: 'far', members: ['b', 'c'], backing: null, usedBytes: null });
    expect(fs.existsSync(path.join(STATE, 'zones', 'far'))).toBe(false);
    const withPath = await gv(['zone', 'create', 'far2', '--quota', '1G', '--nodes', 'b', '--path', path.join(tmp, 'p')]);
    expect(withPath.code).toBe(2);
    expect(withPath.stderr).toMatch(/this node \(a\) is not in --nodes/);
  });

  it('every bad input is a one-line error with the right exit status', async () => {
    const cases: [string[], number, RegExp][] = [
      [['zone', 'create', 'x', '--quota', '12Q'], 2, /^gv: --quota: bad size "12Q": expected a number with an optional unit K, M, G, T, P or E \(e.g. 512G, 1.5T\)\n$/],
      [['zone', 'create', 'x', '--quota', '0'], 2, /--quota: must be larger than 0/],
      [['zone', 'create', 'x', '--quota', '1G', '--nodes', 'a,zz'], 2, /^gv: --nodes: unknown node "zz" \(known: a, b, c\); add it to \[cluster\] nodes in .*gv\.toml\n$/],
      [['zone', 'create', 'x', '--quota', '1G', '--nodes', 'a,a'], 2, /a node is listed twice/],
      [['zone', 'create', 'b@d', '--quota', '1G'], 2, /^gv: invalid zone name "b@d" \(allowed: letters, digits/],
      [['zone', 'create', 'tier-1', '--quota', '1G'], 1, /^gv: zone "tier-1" already exists; choose another name/],
      [['zone', 'create', 'x', '--quota', '1G', '--dataset', 'tank/x', '--path', '/tmp/x'], 2, /--dataset and --path cannot be used together/],
      [['zone', 'create', 'x', '--quota', '1G', '--dataset', 'tank'], 2, /--dataset: "tank" is a pool/],
      [['zone', 'create', 'x', '--quota', '1G', '--dataset', 'tank/a@b'], 2, /--dataset: invalid dataset name/],
      [['zone', 'create', 'x'], 2, /required option '--quota <size>' not specified/],
      [['zone', 'create', 'x', '--quota', '1G', '--bogus'], 2, /unknown option '--bogus'/],
      [['zone', 'show', 'nope'], 1, /^gv: no zone "nope" \(gv zone list shows the zones\)\n$/],
      [['zone', 'set-quota', 'nope', '1G'], 1, /no zone "nope"/],
      [['zone', 'set-quota', 'tier-1', 'lots'], 2, /quota: bad size "lots"/],
      [['zone', 'destroy', 'nope'], 1, /no zone "nope"/],
      [['zone', 'list', 'extra'], 2, /too many arguments/],
      [['status', '--verbose'], 2, /unknown option '--verbose'/],
    ];
    for (const [args, code, msg] of cases) {
      const r = await gv(args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
    }
    // --json failures: the same line on stderr and one JSON document on stdout
    const j = await gvJson(['zone', 'create', 'x', '--quota', '12Q']);
    expect(j.code).toBe(2);
    expect(j.json).toEqual({ ok: false, error: { code: 'USAGE', message: expect.stringMatching(/bad size "12Q"/) } });
    const j2 = await gvJson(['zone', 'create', 'tier-1', '--quota', '1G']);
    expect(j2.code).toBe(1);
    expect(j2.json.error.code).toBe('EEXIST');
    // nothing was added by the failures
    const list = await gvJson(['zone', 'list']);
    expect(list.json.zones.map((z: { name: string }) => z.name)).toEqual(['far', 'tier-1']);
  });

  it('list and show give quota, used, members, backing and export path', async () => {
    const list = await gv(['zone', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME\s+QUOTA\s+USED\s+MEMBERS\s+SOURCE\s+BACKING\s+EXPORT$/);
    expect(list.stdout).toMatch(/^tier-1\s+1\.5T\s+\S+\s+a,b,c\s+catalog\s+dir:\S+\s+\/tier-1$/m);
    expect(list.stdout).toMatch(/^far\s+100M\s+-\s+b,c\s+catalog\s+-\s+\/far$/m);
    const show = await gvJson(['zone', 'show', 'tier-1']);
    expect(show.code).toBe(0);
    expect(show.json.zone).toMatchObject({ name: 'tier-1', quota: '1.5T', usedBytes: expect.any(Number), localPath: path.join(STATE, 'zones', 'tier-1') });
    const human = await gv(['zone', 'show', 'tier-1']);
    expect(human.stdout).toMatch(/^export:\s+\/tier-1$/m);
    expect(human.stdout).toMatch(/^members:\s+a, b, c$/m);
  });

  it('--path stores the zone in a given directory; an existing directory that is too full is refused', async () => {
    const dir = path.join(tmp, 'own-dir');
    const r = await gvJson(['zone', 'create', 'own', '--quota', '100M', '--path', dir]);
    expect(r.code).toBe(0);
    expect(r.json.zone.backing).toEqual({ kind: 'dir', path: dir });
    const full = path.join(tmp, 'full');
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'big'), Buffer.alloc(256 * 1024, 1));
    const f = await gv(['zone', 'create', 'full', '--quota', '64K', '--path', full]);
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/already holds .* more than the quota 64K; choose a larger quota or another --path/);
    expect(fs.readFileSync(path.join(full, 'big')).length).toBe(256 * 1024); // never touched
  });
});

describe('gv zone set-quota / destroy', () => {
  it('changes the quota; refuses one below what the zone uses', async () => {
    const dir = path.join(STATE, 'zones', 'tier-1');
    fs.writeFileSync(path.join(dir, 'data'), Buffer.alloc(300 * 1024, 7));
    const r = await gvJson(['zone', 'set-quota', 'tier-1', '1T']);
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ previousQuotaBytes: 1.5 * 2 ** 40, zone: { quota: '1T', quotaBytes: 2 ** 40, version: expect.any(Number) } });
    const low = await gv(['zone', 'set-quota', 'tier-1', '100K']);
    expect(low.code).toBe(1);
    expect(low.stderr).toMatch(/^gv: zone tier-1 already uses \S+, more than 100K; remove data first or choose a quota of at least \S+\n$/);
    expect((await gvJson(['zone', 'show', 'tier-1'])).json.zone.quota).toBe('1T');
  });

  it('destroy refuses while data is there, --force removes it; an empty zone goes without --force', async () => {
    const dir = path.join(STATE, 'zones', 'tier-1');
    const r = await gv(['zone', 'destroy', 'tier-1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gv: zone tier-1 holds data \(\S+ in dir:.*\); move it away first, or pass --force to destroy the zone with its data\n$/);
    expect(fs.existsSync(path.join(dir, 'data'))).toBe(true);
    const f = await gvJson(['zone', 'destroy', 'tier-1', '--force']);
    expect(f.code).toBe(0);
    expect(f.json).toMatchObject({ ok: true, destroyed: 'tier-1', dataRemoved: true });
    expect(f.json.warnings[0]).toMatch(/destroyed dir:.* with the data it held/);
    expect(fs.existsSync(dir)).toBe(false);
    const e = await gvJson(['zone', 'destroy', 'own']);
    expect(e.code).toBe(0);
    expect(e.json.dataRemoved).toBe(false);
    const far = await gvJson(['zone', 'destroy', 'far']);
    expect(far.code).toBe(0);
    expect((await gvJson(['zone', 'list'])).json.zones).toEqual([]);
  });

  it('zones declared in the config file are listed but changed only there', async () => {
    const cfg = path.join(tmp, 'declared.toml');
    fs.writeFileSync(cfg, fs.readFileSync(CONFIG, 'utf8') + `\n[zones.decl]\npath = ${JSON.stringify(path.join(tmp, 'decl'))}\nquota = "2G"\n`);
    fs.mkdirSync(path.join(tmp, 'decl'));
    const list = await gvJson(['zone', 'list', '--config', cfg]);
    expect(list.json.zones).toEqual([expect.objectContaining({ name: 'decl', source: 'config', quota: '2G', members: ['a'] })]);
    const sq = await gv(['zone', 'set-quota', 'decl', '3G', '--config', cfg]);
    expect(sq.code).toBe(1);
    expect(sq.stderr).toMatch(/zone "decl" is declared in .*declared\.toml, not in the catalog; change its quota there and reload/);
    const cr = await gv(['zone', 'create', 'decl', '--quota', '1G', '--config', cfg]);
    expect(cr.code).toBe(1);
    expect(cr.stderr).toMatch(/zone "decl" already exists \(declared in/);
  });
});

describe('gv status and config discovery', () => {
  it('status shows the node, its zones and that no daemon runs', async () => {
    await gv(['zone', 'create', 'st', '--quota', '100M']);
    const r = await gvJson(['status']);
    expect(r.code).toBe(0);
    const ident = JSON.parse(fs.readFileSync(path.join(STATE, 'node.json'), 'utf8'));
    expect(r.json).toMatchObject({
      node: { name: 'a', id: ident.id }, stateDir: STATE, daemon: { running: false },
      zones: [expect.objectContaining({ name: 'st', quota: '100M', served: null })],
    });
    const h = await gv(['status']);
    expect(h.stdout).toMatch(/^daemon:\s+not running/m);
    expect(h.stdout).toMatch(/^st\s+100M\s/m);
  });

  it('--config beats GV_CONFIG; without either the default path is named in the error', async () => {
    const viaFlag = await gv(['zone', 'list', '--config', CONFIG, '--json'], { GV_CONFIG: path.join(tmp, 'missing.toml') });
    expect(viaFlag.code).toBe(0);
    const viaEnv = await gv(['zone', 'list', '--json'], { GV_CONFIG: path.join(tmp, 'missing.toml') });
    expect(viaEnv.code).toBe(2);
    expect(viaEnv.stderr).toMatch(/^gv: no config file at .*missing\.toml; run gv init/);
    if (!fs.existsSync('/etc/grapevine/gv.toml')) {
      const none = await gv(['status'], {});
      expect(none.code).toBe(2);
      expect(none.stderr).toMatch(/^gv: no config file at \/etc\/grapevine\/gv\.toml; run gv init --name NAME, or pass --config FILE \(or set GV_CONFIG\)\n$/);
    }
  });
});
