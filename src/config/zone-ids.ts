import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { GvError } from '../errors.js';
import { migrate } from '../journal/db.js';
import { MIGRATIONS } from '../journal/migrations.js';

/**
 * Zone ids: the small integer inside every file handle. An id is given to a zone name once and
 * kept forever in the state dir, so handles survive restarts and adding or removing zones never
 * renumbers the others. Ids of removed zones stay reserved (re-adding the zone gets its old id).
 */
export interface ZoneIdTable {
  load(): Map<string, number>;
  /** Persist new assignments atomically. */
  save(added: Map<string, number>): void;
}

export const MAX_ZONE_ID = 0xffffffff;

/** Give every name an id: known names keep theirs, new names get the smallest unused id >= 1. */
export function assignZoneIds(table: ZoneIdTable, names: readonly string[]): Map<string, number> {
  const known = table.load();
  const used = new Set(known.values());
  const added = new Map<string, number>();
  const out = new Map<string, number>();
  let next = 1;
  for (const name of names) {
    let id = known.get(name);
    if (id === undefined) {
      while (used.has(next)) next++;
      if (next > MAX_ZONE_ID) throw new GvError('CONFIG', 'no zone ids left');
      id = next;
      used.add(id);
      added.set(name, id);
    }
    out.set(name, id);
  }
  if (added.size > 0) table.save(added);
  return out;
}

/**
 * Zone ids in the STRICT gv_zone_ids table of the daemon's SQLite database (created by migration
 * 2; a database not migrated yet is migrated here).
 */
export function sqliteZoneIds(db: Database.Database): ZoneIdTable {
  migrate(db, MIGRATIONS);
  const select = db.prepare<[], { name: string; zone_id: number }>('SELECT name, zone_id FROM gv_zone_ids');
  const insert = db.prepare<[string, number]>('INSERT INTO gv_zone_ids (name, zone_id) VALUES (?, ?)');
  return {
    load: () => new Map(select.all().map((r) => [r.name, r.zone_id])),
    save: (added) => {
      db.transaction(() => {
        for (const [name, id] of added) insert.run(name, id);
      })();
    },
  };
}

/** Zone ids in `<stateDir>/zone-ids.json` (written to a temp file, fsynced, then renamed). */
export function jsonZoneIds(stateDir: string): ZoneIdTable {
  const file = path.join(stateDir, 'zone-ids.json');
  const load = (): Map<string, number> => {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw err;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      throw new GvError('CONFIG', `${file}: corrupt zone id table (not JSON); restore it from a backup`);
    }
    const out = new Map<string, number>();
    for (const [k, v] of Object.entries((obj as { zones?: Record<string, unknown> }).zones ?? {})) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_ZONE_ID) {
        throw new GvError('CONFIG', `${file}: zone "${k}" has an invalid id ${JSON.stringify(v)}`);
      }
      out.set(k, v);
    }
    return out;
  };
  return {
    load,
    save: (added) => {
      const all = load();
      for (const [k, v] of added) all.set(k, v);
      fs.mkdirSync(stateDir, { recursive: true });
      const tmp = `${file}.${process.pid}.tmp`;
      const fd = fs.openSync(tmp, 'w', 0o644);
      try {
        fs.writeSync(fd, JSON.stringify({ zones: Object.fromEntries(all) }, null, 2) + '\n');
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
    },
  };
}
