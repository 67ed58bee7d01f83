import path from 'node:path';

/**
 * The daemon's control socket: a unix stream socket `<state_dir>/gvd.sock` (mode 0600), one JSON
 * object per line each way. Requests: `{"op":"status"}`, `{"op":"reload"}`, `{"op":"nodes"}`
 * (echolocation: this node and the peers it hears, see src/elp/service.ts ElpSnapshot). Replies:
 * `{"ok":true,"result":{...}}` or `{"ok":false,"error":{"code":"...","message":"..."}}`.
 */
export const CONTROL_SOCKET = 'gvd.sock';
/** Longest line either side accepts. */
export const MAX_LINE = 1024 * 1024;

export type ControlOp = 'status' | 'reload' | 'nodes';

export interface ControlRequest {
  op: ControlOp;
}

export type ControlReply =
  | { ok: true; result: unknown }
  | { ok: false; error: { code: string; message: string } };

export function controlSocketPath(stateDir: string): string {
  return path.join(stateDir, CONTROL_SOCKET);
}
