import { randomBytes } from 'node:crypto';
import { accept_stat, type RpcCall } from '../rpc/message.js';
import type { ConnInfo, ProcResult, RpcProgram } from '../rpc/server.js';
import { NFS_PROGRAM, NFS_V3 } from './constants.js';
import { callContext, type SquashOptions } from './context.js';
import { PROCEDURES, type ProcEnv } from './procedures.js';
import type { ZoneRegistry } from './resolve.js';
import type { BufferPool } from '../util/buffer-pool.js';

export type { ZoneRegistry } from './resolve.js';
export type { SquashOptions } from './context.js';

export interface NfsProgramDeps {
  zones: ZoneRegistry;
  squash: SquashOptions;
  log?: (obj: object, msg: string) => void;
  /** Shared with the RpcServer: pooled buffers for large READ payloads. */
  pool?: BufferPool;
}

/** NFS version 3 (program 100003) over the ZoneFs seam. */
export function createNfsProgram(deps: NfsProgramDeps): RpcProgram & { writeVerifier: Buffer } {
  const writeVerifier = randomBytes(8);
  const env: ProcEnv = { zones: deps.zones, writeVerifier, log: deps.log ?? (() => {}), pool: deps.pool };
  return {
    prog: NFS_PROGRAM,
    low: NFS_V3,
    high: NFS_V3,
    writeVerifier,
    async handle(call: RpcCall, conn: ConnInfo): Promise<ProcResult> {
      const proc = PROCEDURES[call.proc];
      if (!proc) return { stat: accept_stat.PROC_UNAVAIL };
      return proc(call.args, callContext(call, conn, deps.squash), env);
    },
  };
}
