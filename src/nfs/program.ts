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

const EMPTY = Buffer.alloc(0);

/** NFS version 3 (program 100003) over the ZoneFs seam. */
export function createNfsProgram(deps: NfsProgramDeps): RpcProgram & { writeVerifier: Buffer } {
  const writeVerifier = randomBytes(8);
  const env: ProcEnv = { zones: deps.zones, writeVerifier, log: deps.log ?? (() => {}), pool: deps.pool };
  return {
    prog: NFS_PROGRAM,
    low: NFS_V3,
    high: NFS_V3,
    writeVerifier,
    // Not async: a procedure's promise is handed on as is (one promise less per call), and an
    // argument decoding error thrown synchronously still reaches RpcServer as GARBAGE_ARGS.
    handle(call: RpcCall, conn: ConnInfo): ProcResult | Promise<ProcResult> {
      if (call.proc === 0) return EMPTY; // NULL: nothing to decode, nothing to wait for
      const proc = PROCEDURES[call.proc];
      if (!proc) return { stat: accept_stat.PROC_UNAVAIL };
      return proc(call.args, callContext(call, conn, deps.squash), env);
    },
  };
}
