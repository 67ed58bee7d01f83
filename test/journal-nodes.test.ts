import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GvDatabase } from '../src/journal/db.js';
import { NodeStore } from '../src/journal/nodes.js';

let dir: string;
let db: GvDatabase;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-nodes-'));
  db = GvDatabase.open(path.join(dir, 'state'));
});
afterEach(() => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const changes = (): number => Number(db.sqlite.prepare('SELECT total_changes()').pluck().get());
const obs = (fileid: bigint, parent: bigint, name: string, extra: Partial<{ btime: bigint; type: number; nlink: number }> = {}) => ({
  fileid, parent, name: Buffer.from(name), btime: extra.btime ?? 0n, type: extra.type ?? 1, nlink: extra.nlink ?? 1,
});

describe('GvDatabase', () => {
  it('creates gv.sqlite in WAL mode with all migrations applied', () => {
    expect(fs.existsSync(path.join(dir, 'state', 'gv.sqlite'))).toBe(true);
    expect(db.sqlite.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.sqlite.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    expect(db.version).toBeGreaterThanOrEqual(1);
    const tables = db.sqlite.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    expect(tables).toEqual(expect.arrayContaining(['nodes', 'node_links', 'counters']));
  });

  it('applies only the migrations above user_version on reopen', () => {
    db.close();
    const extra = ['CREATE TABLE later (x INTEGER NOT NULL) STRICT'];
    const base = GvDatabase.open(path.join(dir, 'state'));
    const v = base.version;
    base.close();
    // Re-running migration 1 would fail (tables exist); adding one more must apply just that one.
    db = GvDatabase.open(path.join(dir, 'state'), {
      migrations: [...Array.from({ length: v }, () => 'SELECT raise(ABORT, "must not run")'), ...extra],
    });
    expect(db.version).toBe(v + 1);
    expect(() => db.sqlite.prepare("INSERT INTO later VALUES ('text')").run()).toThrow(); // STRICT
  });

  it('refuses a database newer than the program', () => {
    db.close();
    expect(() => GvDatabase.open(path.join(dir, 'state'), { migrations: [] })).toThrow(/newer/);
    db = GvDatabase.open(path.join(dir, 'state'));
  });

  it('tables are STRICT', () => {
    expect(() => db.sqlite.prepare(
      "INSERT INTO nodes (zone_id, fileid, parent, name, generation, btime, type) VALUES (1, 'x', 1, x'00', 1, 0, 1)",
    ).run()).toThrow();
  });

  it('allocates distinct, increasing generations that survive reopen', () => {
    const seen = new Set<number>();
    let last = 0;
    for (let i = 0; i < 3000; i++) {
      const g = db.allocGeneration();
      expect(g).toBeGreaterThan(last);
      last = g;
      seen.add(g);
    }
    db.close();
    db = GvDatabase.open(path.join(dir, 'state'));
    const after = db.allocGeneration();
    expect(after).toBeGreaterThan(last);
    expect(seen.has(after)).toBe(false);
  });

  it('wraps the generation sequence without ever producing 0', () => {
    db.sqlite.prepare("UPDATE counters SET value = 4294967295 - 10 WHERE name = 'generation'").run();
    db.close();
    db = GvDatabase.open(path.join(dir, 'state'));
    const g = db.allocGeneration();
    expect(g).toBeGreaterThan(0);
    expect(g).toBeLessThanOrEqual(1024);
  });
});

describe('NodeStore', () => {
  it('records an observed object once and skips identical rewrites', () => {
    const s = new NodeStore(db, 1);
    const r1 = s.observe(obs(10n, 2n, 'a'));
    const before = changes();
    const r2 = s.observe(obs(10n, 2n, 'a'));
    expect(changes()).toBe(before);
    expect(r2.generation).toBe(r1.generation);
    expect(s.count()).toBe(1);
  });

  it('knows() a cached primary link with its birth time, and nothing else', () => {
    const s = new NodeStore(db, 1);
    const o = obs(10n, 2n, 'a', { btime: 777n });
    s.observe(o);
    expect(s.knows(10n, 2n, Buffer.from('a'), 777n)).toBe(true);
    expect(s.knows(10n, 2n, Buffer.from('b'), o.btime)).toBe(false); // another name
    expect(s.knows(10n, 3n, Buffer.from('a'), o.btime)).toBe(false); // another directory
    expect(s.knows(10n, 2n, Buffer.from('a'), o.btime + 1n)).toBe(false); // another object, same inode
    expect(s.knows(11n, 2n, Buffer.from('a'), o.btime)).toBe(false); // not recorded
    s.observe(obs(12n, 2n, 'z'));
    expect(s.knows(12n, 2n, Buffer.from('z'), 0n)).toBe(false); // no birth time: observe() decides
    s.clearCache();
    expect(s.knows(10n, 2n, Buffer.from('a'), o.btime)).toBe(false); // only what is in memory
  });

  it('persists rows (large inode numbers, binary names) across a reopen', () => {
    const s = new NodeStore(db, 7);
    const big = (1n << 64n) - 5n;
    const name = Buffer.from([0xff, 0x00, 0x80, 0x41]);
    const r = s.observe({ fileid: big, parent: 2n, name, btime: 123_456_789_012_345_678n, type: 2, nlink: 1 });
    db.close();
    db = GvDatabase.open(path.join(dir, 'state'));
    const s2 = new NodeStore(db, 7);
    const back = s2.get(big)!;
    expect(back.fileid).toBe(big);
    expect(back.parent).toBe(2n);
    expect(back.name.equals(name)).toBe(true);
    expect(back.generation).toBe(r.generation);
    expect(back.btime).toBe(123_456_789_012_345_678n);
    expect(back.type).toBe(2);
    expect(new NodeStore(db, 8).get(big)).toBeUndefined(); // zones are separate
  });

  it('keeps the generation on a move and follows it', () => {
    const s = new NodeStore(db, 1);
    const r = s.observe(obs(10n, 2n, 'a'));
    const moved = s.observe(obs(10n, 3n, 'b'));
    expect(moved.generation).toBe(r.generation);
    expect(moved.parent).toBe(3n);
    expect(moved.name.toString()).toBe('b');
    s.move(10n, 3n, Buffer.from('b'), 4n, Buffer.from('c'));
    s.clearCache();
    expect(s.get(10n)!.parent).toBe(4n);
    expect(s.get(10n)!.name.toString()).toBe('c');
  });

  it('gives a new generation when the inode number now names another object', () => {
    const s = new NodeStore(db, 1);
    const r = s.observe(obs(10n, 2n, 'a', { btime: 100n }));
    expect(s.observe(obs(10n, 2n, 'a', { btime: 100n })).generation).toBe(r.generation);
    const byBtime = s.observe(obs(10n, 2n, 'a', { btime: 200n }));
    expect(byBtime.generation).not.toBe(r.generation);
    const byType = s.observe(obs(10n, 2n, 'a', { btime: 0n, type: 2 }));
    expect(byType.generation).not.toBe(byBtime.generation);
    const fresh = s.fresh(obs(10n, 2n, 'a', { type: 2 }));
    expect(fresh.generation).not.toBe(byType.generation);
  });

  it('tracks hard links and promotes one when the primary name goes', () => {
    const s = new NodeStore(db, 1);
    const r = s.observe(obs(10n, 2n, 'a', { nlink: 2 }));
    s.observe(obs(10n, 3n, 'b', { nlink: 2 })); // second link seen by readdir
    expect(s.get(10n)!.name.toString()).toBe('a');
    expect(s.linksOf(10n).map((l) => l.name.toString())).toEqual(['b']);
    s.unlinked(10n, 2n, Buffer.from('a'), 1);
    const now = s.get(10n)!;
    expect(now.generation).toBe(r.generation);
    expect([now.parent, now.name.toString()]).toEqual([3n, 'b']);
    expect(s.linksOf(10n)).toEqual([]);
    s.unlinked(10n, 3n, Buffer.from('b'), 0);
    expect(s.get(10n)).toBeUndefined();
    s.clearCache();
    expect(s.get(10n)).toBeUndefined();
    expect(s.count()).toBe(0);
  });

  it('evicts from memory but keeps rows in SQLite', () => {
    const s = new NodeStore(db, 1, { cacheSize: 16 });
    const gens = new Map<bigint, number>();
    s.batch(() => {
      for (let i = 100n; i < 200n; i++) gens.set(i, s.observe(obs(i, 2n, `f${i}`)).generation);
    });
    for (const [id, g] of gens) expect(s.get(id)!.generation).toBe(g);
    expect(s.count()).toBe(100);
  });
});
