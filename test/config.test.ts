import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfigText } from '../src/config/load.js';
import { assignZoneIds, jsonZoneIds, sqliteZoneIds } from '../src/config/zone-ids.js';
import { GvError } from '../src/errors.js';
import { isLoopback, matchesAny, parseCidr } from '../src/util/cidr.js';
import { parseSize } from '../src/util/size.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-config-'));
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

const GOOD = `
[node]
name = "a"
state_dir = "state"
[nfs]
listen = "127.0.0.1"
port = 2049
mount_port = 20048
portmap = "auto"
[zones.tier-1]
path = "/tmp/x/tier-1"
quota = "512G"
allow = ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
[zones.scratch]
path = "scratch"
`;

describe('config loading', () => {
  it('loads the documented example with defaults filled in', () => {
    fs.writeFileSync(FILE, GOOD);
    const c = loadConfigFile(FILE);
    expect(c.file).toBe(FILE);
    expect(c.node).toEqual({ name: 'a', stateDir: path.join(tmp, 'state'), logLevel: 'info' });
    expect(c.nfs).toEqual({
      listen: '127.0.0.1', port: 2049, mountPort: 20048, portmap: 'auto', maxRecordSize: null,
      requirePrivilegedPort: false, busyPollUs: 50, squash: 'none', anonUid: 65534, anonGid: 65534,
    });
    expect(c.zones.map((z) => [z.name, z.path, z.quotaBytes])).toEqual([
      ['tier-1', '/tmp/x/tier-1', 512 * 2 ** 30],
      ['scratch', path.join(tmp, 'scratch'), null],
    ]);
    expect(c.zones[0]!.allow.map((a) => a.text)).toEqual(['127.0.0.1/32', '10.0.0.0/8', 'fd00::/8']);
    expect(c.zones[1]!.allow.map((a) => a.text)).toEqual(['127.0.0.1/32']); // default
  });

  it('the shipped zones.example.toml is valid', () => {
    const c = loadConfigFile(path.join(__dirname, '..', 'zones.example.toml'));
    expect(c.zones.length).toBeGreaterThan(0);
  });

  it('reads nfs options', () => {
    const c = parseConfigText(
      `[nfs]\nsquash = "root"\nanon_uid = 1000\nanon_gid = 1001\nrequire_privileged_port = true\nmax_record_size = "2M"\nportmap = "off"\nlisten = "::1"\n`,
      FILE,
    );
    expect(c.nfs).toMatchObject({ squash: 'root', anonUid: 1000, anonGid: 1001, requirePrivilegedPort: true, maxRecordSize: 2 << 20, portmap: 'off', listen: '::1' });
  });

  it('a missing file names the file', () => {
    expect(() => loadConfigFile(path.join(tmp, 'nope.toml'))).toThrow(/nope\.toml: cannot read config file \(ENOENT\)/);
  });

  it('unknown keys are refused with their key path', () => {
    expect(configError('[nfs]\nprot = 1\n').message).toBe(`${FILE}: nfs.prot: unknown key (allowed here: listen, port, mount_port, portmap, max_record_size, require_privileged_port, busy_poll_us, squash, anon_uid, anon_gid)`);
    expect(configError('[zones.a]\npath = "/x"\nqouta = "1G"\n').message).toMatch(/zones\.a\.qouta: unknown key \(allowed here: path, quota, allow, dataset, consistency\)/);
    expect(configError('[nodes]\nname = "x"\n').message).toMatch(/: nodes: unknown key/);
  });

  it('bad sizes name the key and the reason', () => {
    const e = configError('[zones.tier-1]\npath = "/x"\nquota = "12Q"\n');
    expect(e.message).toBe(`${FILE}: zones.tier-1.quota: bad size "12Q": expected a number with an optional unit K, M, G, T, P or E (e.g. 512G, 1.5T)`);
    expect(e.data).toMatchObject({ key: 'zones.tier-1.quota', file: FILE });
    expect(configError('[zones.a]\npath = "/x"\nquota = -5\n').message).toMatch(/zones\.a\.quota: bad size -5/);
    expect(configError('[nfs]\nmax_record_size = "1K"\n').message).toMatch(/nfs\.max_record_size: out of range/);
  });

  it('a zone without path is refused', () => {
    expect(configError('[zones.tier-1]\nquota = "1G"\n').message).toBe(`${FILE}: zones.tier-1.path: missing path (required)`);
  });

  it('duplicate zones are reported as such, with both lines', () => {
    const e = configError('[zones.a]\npath = "/x"\n\n[zones.a]\npath = "/y"\n');
    expect(e.message).toBe(`${FILE}: zones.a: duplicate zone "a" (defined at line 1 and again at line 4); each zone needs a unique name`);
    expect(configError('[zones."b"]\npath = "/x"\n[zones.b]\npath = "/y"\n').message).toMatch(/duplicate zone "b"/);
    // a duplicate key inside one table still gets a clear TOML message with its line
    expect(configError('[zones.a]\npath = "/x"\npath = "/y"\n').message).toMatch(/line 3, column 1: invalid TOML: .*defined twice/);
    // two zones on one directory
    expect(configError('[zones.a]\npath = "/x"\n[zones.b]\npath = "/x/"\n').message).toBe(`${FILE}: zones.b.path: same directory as zone "a" (/x); two zones cannot share a directory`);
  });

  it('bad CIDRs in allow name the element', () => {
    expect(configError('[zones.a]\npath = "/x"\nallow = ["127.0.0.1/32", "10.0.0.300/8"]\n').message)
      .toBe(`${FILE}: zones.a.allow[1]: bad CIDR: "10.0.0.300/8" is not a valid IPv4 or IPv6 CIDR (bad address)`);
    expect(configError('[zones.a]\npath = "/x"\nallow = ["10.0.0.0/33"]\n').message).toMatch(/zones\.a\.allow\[0\]: bad CIDR: .*prefix must be 0-32/);
    expect(configError('[zones.a]\npath = "/x"\nallow = ["10.0.0.1/8"]\n').message).toMatch(/host bits set/);
    expect(configError('[zones.a]\npath = "/x"\nallow = ["fe80::1::2/64"]\n').message).toMatch(/zones\.a\.allow\[0\]: bad CIDR/);
  });

  it('bad zone names are refused', () => {
    expect(configError('[zones."bad name"]\npath = "/x"\n').message)
      .toBe(`${FILE}: zones."bad name": bad zone name "bad name" (allowed: letters, digits, '_', '.', '-', 1-64 characters, starting with a letter or digit)`);
    expect(configError('[zones."-x"]\npath = "/x"\n').message).toMatch(/bad zone name "-x"/);
    expect(configError(`[zones.${'a'.repeat(65)}]\npath = "/x"\n`).message).toMatch(/bad zone name/);
    expect(() => parseConfigText(`[zones.${'a'.repeat(64)}]\npath = "/x"\n`, FILE)).not.toThrow();
  });

  it('ports out of range are refused', () => {
    expect(configError('[nfs]\nport = 70000\n').message).toBe(`${FILE}: nfs.port: port out of range (0-65535)`);
    expect(configError('[nfs]\nmount_port = -1\n').message).toBe(`${FILE}: nfs.mount_port: port out of range (0-65535)`);
    expect(configError('[nfs]\nport = "2049"\n').message).toMatch(/nfs\.port: .*expected number/);
  });

  it('busy_poll_us: 0 to 1000 microseconds, whole numbers only; 50 when absent', () => {
    expect(parseConfigText('[nfs]\nbusy_poll_us = 0\n', FILE).nfs.busyPollUs).toBe(0);
    expect(parseConfigText('[nfs]\nbusy_poll_us = 200\n', FILE).nfs.busyPollUs).toBe(200);
    expect(parseConfigText('[nfs]\n', FILE).nfs.busyPollUs).toBe(50);
    expect(configError('[nfs]\nbusy_poll_us = 5000\n').message).toBe(`${FILE}: nfs.busy_poll_us: must be 0 (off) to 1000`);
    expect(configError('[nfs]\nbusy_poll_us = -1\n').message).toBe(`${FILE}: nfs.busy_poll_us: must be 0 (off) to 1000`);
    expect(configError('[nfs]\nbusy_poll_us = 2.5\n').message).toBe(`${FILE}: nfs.busy_poll_us: must be a whole number`);
  });

  it('bad enums, listen address and TOML syntax are refused', () => {
    expect(configError('[nfs]\nportmap = "yes"\n').message).toMatch(/nfs\.portmap: .*"auto"\|"on"\|"off"/);
    expect(configError('[nfs]\nlisten = "localhost"\n').message).toBe(`${FILE}: nfs.listen: "localhost" is not an IPv4 or IPv6 address`);
    expect(configError('[nfs\nport = 1\n').message).toMatch(new RegExp(`^${FILE.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: line 1, column \\d+: invalid TOML`));
  });
});

describe('sizes', () => {
  it('parses ZFS-style binary units', () => {
    expect(parseSize('512G')).toBe(512 * 2 ** 30);
    expect(parseSize('4T')).toBe(4 * 2 ** 40);
    expect(parseSize('1.5T')).toBe(1.5 * 2 ** 40);
    expect(parseSize('100M')).toBe(100 * 2 ** 20);
    expect(parseSize('1024')).toBe(1024);
    expect(parseSize(1024)).toBe(1024);
    expect(parseSize('8k')).toBe(8192);
    expect(parseSize('2GiB')).toBe(2 * 2 ** 30);
    expect(() => parseSize('1.5')).not.toThrow();
    expect(() => parseSize('G')).toThrow(GvError);
    expect(() => parseSize('16E')).toThrow(/too large/);
    expect(() => parseSize(1.5)).toThrow(/whole number/);
  });
});

describe('CIDR matching', () => {
  it('matches IPv4, IPv6 and IPv4-mapped addresses', () => {
    const list = [parseCidr('10.1.0.0/16'), parseCidr('2001:db8::/32'), parseCidr('192.168.1.7')];
    expect(matchesAny('10.1.200.3', list)).toBe(true);
    expect(matchesAny('10.2.0.1', list)).toBe(false);
    expect(matchesAny('::ffff:10.1.0.9', list)).toBe(true);
    expect(matchesAny('2001:db8:ffff::1', list)).toBe(true);
    expect(matchesAny('2001:db9::1', list)).toBe(false);
    expect(matchesAny('192.168.1.7', list)).toBe(true);
    expect(matchesAny('192.168.1.8', list)).toBe(false);
    expect(matchesAny('garbage', list)).toBe(false);
    expect(matchesAny('1.2.3.4', [parseCidr('0.0.0.0/0')])).toBe(true);
    expect(matchesAny('::1', [parseCidr('0.0.0.0/0')])).toBe(false);
    expect(matchesAny('fe80::1%eth0', [parseCidr('fe80::/10')])).toBe(true);
    expect(matchesAny('10.0.0.130', [parseCidr('10.0.0.128/25')])).toBe(true);
    expect(matchesAny('10.0.0.127', [parseCidr('10.0.0.128/25')])).toBe(false);
    expect(isLoopback('127.9.9.9')).toBe(true);
    expect(isLoopback('::1')).toBe(true);
    expect(isLoopback('::ffff:127.0.0.1')).toBe(true);
    expect(isLoopback('10.0.0.1')).toBe(false);
  });
});

describe('zone ids', () => {
  it('are stable across restarts and never renumbered (json table)', () => {
    const dir = path.join(tmp, 'ids-json');
    const t = jsonZoneIds(dir);
    expect([...assignZoneIds(t, ['a', 'b'])]).toEqual([['a', 1], ['b', 2]]);
    // new zone added before the others in the file; removed zone keeps its id reserved
    expect([...assignZoneIds(jsonZoneIds(dir), ['c', 'b'])]).toEqual([['c', 3], ['b', 2]]);
    expect([...assignZoneIds(jsonZoneIds(dir), ['a', 'd'])]).toEqual([['a', 1], ['d', 4]]);
  });

  it('are stable across restarts (SQLite table)', () => {
    const file = path.join(tmp, 'ids.sqlite');
    let db = new Database(file);
    expect([...assignZoneIds(sqliteZoneIds(db), ['x', 'y'])]).toEqual([['x', 1], ['y', 2]]);
    db.close();
    db = new Database(file);
    expect([...assignZoneIds(sqliteZoneIds(db), ['z', 'y'])]).toEqual([['z', 3], ['y', 2]]);
    db.close();
  });
});
