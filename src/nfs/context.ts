import type { RpcCall } from '../rpc/message.js';
import type { ConnInfo } from '../rpc/server.js';
import type { CallContext } from '../vfs/types.js';

export interface SquashOptions {
  /** 'root': uid 0 becomes the anonymous user; 'all': every caller does. */
  mode: 'none' | 'root' | 'all';
  anonUid: number;
  anonGid: number;
}

export const NO_SQUASH: SquashOptions = { mode: 'none', anonUid: 65534, anonGid: 65534 };

/** The caller's identity from AUTH_SYS (AUTH_NONE callers are anonymous), after squashing. */
export function callContext(call: RpcCall, conn: ConnInfo, squash: SquashOptions): CallContext {
  const a = call.authSys;
  let uid = a ? a.uid : squash.anonUid;
  let gid = a ? a.gid : squash.anonGid;
  let gids = a ? a.gids : [];
  if (squash.mode === 'all' || (squash.mode === 'root' && uid === 0)) {
    uid = squash.anonUid;
    gid = squash.anonGid;
    gids = [];
  }
  return { uid, gid, gids, client: conn.remoteAddress, origin: 'nfs', inline: call.alone === true };
}
