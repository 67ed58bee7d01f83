import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../src/catalog/catalog.js';
import { createIdentity, readIdentity } from '../src/catalog/identity.js';
import { desiredZones } from '../src/catalog/served-zones.js';
import { parseConfigText } from '../src/config/load.js';
import { assignZoneIds, sqliteZoneIds } from '../src/config/zone-ids.js';
import { GvError } from '../src/errors.js';
import { GvDatabase } from '../src/journal/db.js';
import { MIGRATIONS } from '../src/journal/migrations.js';
import { Zfs } from '../src/zfs/zfs.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-catalog-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const freshDb = () => GvDatabase.open(path.join(tmp, `db${n++}`));
const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return (e as GvError).code;
  }
  return 'no error';
};

describe('catalog', () => {
  it('creates, lists, changes and removes zones; every change bumps the version', () => {
    const db = freshDb();
    const c = new Catalog(db, { nodeId: 'id-a' });
    expect(c.version()).toBe(0);
    const z = c.create({ name: 'tier-1', quotaBytes: 512 * 2 ** 30, members: ['c', 'a', 'b'], backing: { kind: 'dir', path: '/srv/t1' } }, 1000);
    expect(z).toEqual({
      name: 'tier-1', quotaBytes: 512 * 2 ** 30, members: ['a', 'b', 'c'], createdMs: 1000, version: 1,
      updatedMs: 1000, updatedBy: 'id-a', consistency: 'pull-first', backing: { kind: 'dir', path: '/srv/t1' },
    });
    c.create({ name: 'remote', quotaBytes: 1024, members: ['b'], backing: null });
    expect(c.version()).toBe(2);
    expect(c.list().map((x) => [x.name, x.backing])).toEqual([['remote', null], ['tier-1', { kind: 'dir', path: '/srv/t1' }]]);
    expect(c.setQuota('tier-1', 2 ** 40).version).toBe(3);
    expect(c.get('tier-1')!.quotaBytes).toBe(2 ** 40);
    c.setBacking('remote', { kind: 'zfs', dataset: 'tank/gv-zones/remote' });
    expect(c.version()).toBe(3); // local backing is not a catalog change
    expect(c.get('remote')!.backing).toEqual({ kind: 'zfs', dataset: 'tank/gv-zones/remote' });
    c.remove('tier-1');
    expect(c.version()).toBe(4);
    expect(c.get('tier-1')).toBeUndefined();
    // members and backing rows went with it
    expect(db.sqlite.prepare("SELECT count(*) FROM catalog_zone_members WHERE zone = 'tier-1'").pluck().get()).toBe(0);
    expect(db.sqlite.prepare("SELECT count(*) FROM zone_backing WHERE zone = 'tier-1'").pluck().get()).toBe(0);
    db.close();
  });

  it('refuses a taken name, unknown zones, bad quotas and empty member lists', () => {
    const db = freshDb();
    const c = new Catalog(db);
    c.create({ name: 'a', quotaBytes: 1, members: ['x'], backing: null });
    expect(code(() => c.create({ name: 'a', quotaBytes: 1, members: ['x'], backing: null }))).toBe('EEXIST');
    expect(code(() => c.setQuota('nope', 5))).toBe('ENOENT');
    expect(code(() => c.remove('nope'))).toBe('ENOENT');
    expect(code(() => c.setQuota('a', 0))).toBe('EINVAL');
    expect(code(() => c.create({ name: 'b', quotaBytes: 1, members: [], backing: null }))).toBe('EINVAL');
    expect(c.version()).toBe(1); // failed changes leave no trace
    db.close();
  });

  it('survives reopening (SQLite), with nodes recorded once', () => {
    const dir = path.join(tmp, 'persist');
    let db = GvDatabase.open(dir);
    new Catalog(db).create({ name: 'z', quotaBytes: 100, members: ['a'], backing: { kind: 'dir', path: '/d' } });
    new Catalog(db).addNode('a', 'id-a');
    new Catalog(db).addNode('a', 'other');
    db.close();
    db = GvDatabase.open(dir);
    const c = new Catalog(db);
    expect(c.get('z')!.backing).toEqual({ kind: 'dir', path: '/d' });
    expect(c.nodes()).toEqual(['a']);
    expect(db.version).toBe(MIGRATIONS.length);
    db.close();
  });

  it('migration 2 keeps a gv_zone_ids table made by the old ad hoc code', () => {
    const file = path.join(tmp, 'old.sqlite');
    const raw = new Database(file);
    // What a database of the previous release looks like: migration 1 plus the ad hoc table.
    raw.exec(MIGRATIONS[0]!);
    raw.pragma('user_version = 1');
    raw.exec('CREATE TABLE IF NOT EXISTS gv_zone_ids (name TEXT PRIMARY KEY, zone_id INTEGER NOT NULL UNIQUE) STRICT');
    raw.prepare('INSERT INTO gv_zone_ids VALUES (?, ?)').run('old', 7);
    raw.close();
    fs.renameSync(file, path.join(tmp, 'gv.sqlite'));
    const db = GvDatabase.open(tmp);
    expect(db.version).toBe(MIGRATIONS.length);
    expect([...assignZoneIds(sqliteZoneIds(db.sqlite), ['new', 'old'])]).toEqual([['new', 1], ['old', 7]]);
    db.close();
  });
});

describe('node identity', () => {
  it('is written once, private key 0600, and read back', () => {
    const dir = path.join(tmp, 'ident');
    const id = createIdentity(dir, 'a');
    expect(id.id).toMatch(/^[0-9a-f]{32}$/);
    expect(id.publicKey).toMatch(/BEGIN PUBLIC KEY/);
    expect(fs.statSync(path.join(dir, 'node.key')).mode & 0o777).toBe(0o600);
    expect(readIdentity(dir)).toEqual(id);
    expect(() => createIdentity(dir, 'b')).toThrow(/already has a node identity/);
    expect(readIdentity(path.join(tmp, 'none'))).toBeNull();
  });
});

describe('zones to serve (config + catalog)', () => {
  const cfg = (extra: string) => parseConfigText(`[node]\nname = "a"\nstate_dir = "/s"\n${extra}`, '/etc/gv.toml');
  const zfs = new Zfs({ runner: async () => ({ exitCode: 1, stdout: '', stderr: 'no zfs here', signal: null, failure: null }) as never });

  it('merges declared zones with catalog zones this node is a member of and stores', async () => {
    const db = freshDb();
    const c = new Catalog(db);
    c.create({ name: 'mine', quotaBytes: 1000, members: ['a', 'b'], backing: { kind: 'dir', path: '/z/mine' } });
    c.create({ name: 'theirs', quotaBytes: 1000, members: ['b'], backing: null });
    const d = await desiredZones(cfg('[zones.decl]\npath = "/z/decl"\nquota = "1M"\n[cluster]\nzone_allow = ["10.0.0.0/8"]\n'), c, zfs, true);
    expect(d.errors).toEqual([]);
    expect(d.zones.map((z) => [z.name, z.path, z.quotaBytes, z.source, z.allow.map((x) => x.text)])).toEqual([
      ['decl', '/z/decl', 1 << 20, 'config', ['127.0.0.1/32']],
      ['mine', '/z/mine', 1000, 'catalog', ['10.0.0.0/8']],
    ]);
    db.close();
  });

  it('a name in both must be identical; otherwise an error (start) or a skipped zone (reload)', async () => {
    const db = freshDb();
    const c = new Catalog(db);
    c.create({ name: 'x', quotaBytes: 1 << 20, members: ['a'], backing: { kind: 'dir', path: '/z/x' } });
    const same = await desiredZones(cfg('[zones.x]\npath = "/z/x"\nquota = "1M"\n'), c, zfs, true);
    expect(same.zones.map((z) => z.source)).toEqual(['config']);
    const other = cfg('[zones.x]\npath = "/z/other"\nquota = "1M"\n');
    await expect(desiredZones(other, c, zfs, true)).rejects.toThrow(/declared in \/etc\/gv.toml and in the catalog/);
    const lenient = await desiredZones(other, c, zfs, false);
    expect(lenient.errors[0]).toMatch(/zone x is declared/);
    expect(lenient.zones.map((z) => z.path)).toEqual(['/z/other']);
    db.close();
  });

  it('a catalog dataset zone without usable ZFS is reported, not served', async () => {
    const db = freshDb();
    const c = new Catalog(db);
    c.create({ name: 'ds', quotaBytes: 1 << 20, members: ['a'], backing: { kind: 'zfs', dataset: 'tank/gv-zones/ds' } });
    const d = await desiredZones(cfg(''), c, zfs, false);
    expect(d.zones).toEqual([]);
    expect(d.errors).toHaveLength(1);
    expect(d.errors[0]).toMatch(/^zone ds: /);
    db.close();
  });
});

describe('config: [zfs], [cluster], dataset zones', () => {
  const parse = (t: string) => parseConfigText(t, '/etc/gv.toml');
  const err = (t: string) => {
    try {
      parse(t);
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };
  it('reads pool, dataset_root, cluster nodes and dataset zones', () => {
    const c = parse('[node]\nname = "a"\n[zfs]\npool = "tank"\n[cluster]\nnodes = ["b", "c"]\n[zones.d]\ndataset = "tank/gv-zones/d"\n');
    expect(c.zfs).toEqual({ pool: 'tank', datasetRoot: 'gv-zones' });
    expect(c.cluster.nodes).toEqual(['b', 'c']);
    expect(c.zones[0]).toMatchObject({ name: 'd', dataset: 'tank/gv-zones/d', quotaBytes: null });
  });
  it('names the key and the reason for every mistake', () => {
    expect(err('[zones.d]\npath = "/x"\ndataset = "tank/d"\n')).toBe('/etc/gv.toml: zones.d.dataset: a zone has either path (a directory) or dataset (a ZFS dataset), not both');
    expect(err('[zones.d]\ndataset = "tank"\n')).toMatch(/zones\.d\.dataset: "tank" is a pool/);
    expect(err('[zones.d]\ndataset = "tank/a@b"\n')).toMatch(/zones\.d\.dataset: invalid dataset name/);
    expect(err('[zones.d]\ndataset = "tank/d"\nquota = "1G"\n')).toMatch(/zones\.d\.quota: not used with dataset/);
    expect(err('[zfs]\npool = "mirror"\n')).toMatch(/zfs\.pool: invalid pool name "mirror"/);
    expect(err('[zfs]\npol = "tank"\n')).toMatch(/zfs\.pol: unknown key \(allowed here: pool, dataset_root\)/);
    expect(err('[node]\nname = "a"\n[cluster]\nnodes = ["a"]\n')).toMatch(/cluster\.nodes\[0\]: node "a" is listed twice/);
    expect(err('[cluster]\nnodes = ["b@d"]\n')).toMatch(/cluster\.nodes\[0\]: bad node name/);
    expect(err('[cluster]\nzone_allow = ["300.1.1.1/8"]\n')).toMatch(/cluster\.zone_allow\[0\]: bad CIDR/);
  });
});
