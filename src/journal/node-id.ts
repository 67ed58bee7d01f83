import { randomBytes } from 'node:crypto';
import { readIdentity } from '../catalog/identity.js';
import type { GvDatabase } from './db.js';

/**
 * The id this node writes as the origin of its journal entries: its identity (gv init) when the
 * state directory has one, else a random id made once and kept in the database.
 */
export function journalNodeId(db: GvDatabase, stateDir: string | null): string {
  const identity = stateDir ? readIdentity(stateDir) : null;
  if (identity) return identity.id;
  const get = db.prepare('SELECT id FROM local_node WHERE one = 1').pluck(true);
  const have = get.get() as string | undefined;
  if (have) return have;
  db.prepare('INSERT INTO local_node (one, id) VALUES (1, ?) ON CONFLICT (one) DO NOTHING').run(randomBytes(16).toString('hex'));
  return get.get() as string;
}
