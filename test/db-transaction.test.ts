import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GvDatabase } from '../src/journal/db.js';

let dir: string;
let db: GvDatabase;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-dbtx-'));
  db = GvDatabase.open(dir);
  db.sqlite.exec('CREATE TABLE t (v INTEGER NOT NULL UNIQUE)');
});

afterEach(() => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const values = (): number[] => (db.prepare('SELECT v FROM t ORDER BY v').pluck(true).all() as number[]);
const insert = (v: number): void => {
  db.prepare('INSERT INTO t (v) VALUES (?)').run(v);
};

describe('GvDatabase.transaction', () => {
  it('commits what the function did and answers its result', () => {
    expect(db.transaction(() => {
      insert(1);
      insert(2);
      return 'done';
    })).toBe('done');
    expect(db.sqlite.inTransaction).toBe(false);
    expect(values()).toEqual([1, 2]);
  });

  it('a throw rolls everything back and is passed on', () => {
    insert(1);
    expect(() => db.transaction(() => {
      insert(2);
      throw new Error('boom');
    })).toThrow('boom');
    expect(db.sqlite.inTransaction).toBe(false);
    expect(values()).toEqual([1]);
  });

  it('an SQLite error inside (a constraint) rolls back the earlier statements too', () => {
    expect(() => db.transaction(() => {
      insert(5);
      insert(5);
    })).toThrow(/UNIQUE/);
    expect(values()).toEqual([]);
  });

  it('nested calls are savepoints: an inner throw undoes only the inner part', () => {
    db.transaction(() => {
      insert(1);
      expect(() => db.transaction(() => {
        insert(2);
        db.transaction(() => insert(3));
        throw new Error('inner');
      })).toThrow('inner');
      expect(db.sqlite.inTransaction).toBe(true);
      db.transaction(() => insert(4));
    });
    expect(values()).toEqual([1, 4]);
  });

  it('an outer throw undoes inner savepoints that were released', () => {
    expect(() => db.transaction(() => {
      db.transaction(() => insert(1));
      throw new Error('outer');
    })).toThrow('outer');
    expect(values()).toEqual([]);
  });

  it('refuses a function that returns a promise, and keeps nothing it did', () => {
    expect(() => db.transaction(() => {
      insert(7);
      return Promise.resolve(1);
    })).toThrow(/promise/);
    expect(db.sqlite.inTransaction).toBe(false);
    expect(values()).toEqual([]);
  });

  it('works again after each kind of failure (statements stay usable)', () => {
    for (let i = 0; i < 3; i++) {
      expect(() => db.transaction(() => {
        insert(10 + i);
        throw new Error('x');
      })).toThrow('x');
      db.transaction(() => insert(20 + i));
    }
    expect(values()).toEqual([20, 21, 22]);
  });
});
