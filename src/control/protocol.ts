import path from 'node:path';

/**
 * The daemon's control socket: a unix stream socket `<state_dir>/gvd.sock` (mode 0600), one JSON
 * object per line each way. Requests: `{"op":"status"}`, `{"op":"reload"}`, `{"op":"nodes"}`
 * (echolocation: this node and the peers it hears, see src/elp/service.ts ElpSnapshot),
 * `{"op":"replication","zone":"tier-1"}` (ZoneSyncStatus[] of src/replication/source.ts; every
 * zone without `zone`), `{"op":"conflicts","zone":"tier-1"}` (ConflictCopy[]; every zone without
 * `zone`). Replies: `{"ok":true,"result":...}` or `{"ok":false,"error":{"code":"...","message":"..."}}`;
 * an op the daemon has no handler for (replication off) answers code ENOTSUP.
 */
export const CONTROL_SOCKET = 'gvd.sock';
/** Longest line either side accepts. */
export const MAX_LINE = 1024 * 1024;

export type ControlOp = 'status' | 'reload' | 'nodes' | 'replication' | 'conflicts';

/** Ops a daemon answers only when the feature behind them runs (replication). */
export const OPTIONAL_OPS: readonly ControlOp[] = ['replication', 'conflicts'];

export interface ControlRequest {
  op: ControlOp;
  /** replication, conflicts: one zone (all when absent). */
  zone?: string;
}

/** A conflict copy kept beside the winner: `name.gv-conflict-YYYYMMDD-HHMMSS-<7 hex>[.ext]`. */
export interface ConflictCopy {
  zone: string;
  /** The copy's path, relative to the zone root. */
  path: string;
  /** The path of the file it lost to (the copy's name without the conflict part). */
  original: string;
  /** When the conflict was resolved, from the name: ISO 8601 UTC. */
  at: string;
  /** The 7 hex digits of the losing version's node id, from the name. */
  node: string;
  size: number | null;
}

export type ControlReply =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: string; message: string } };

export function controlSocketPath(stateDir: string): string {
  return path.join(stateDir, CONTROL_SOCKET);
}
