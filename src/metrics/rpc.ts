/**
 * `instrumentProgram(program, metrics)`: the same RPC program, with every call counted by
 * procedure and reply status and timed. Wrapping at the RpcProgram seam covers NFS and MOUNT (TCP
 * and UDP) alike without touching the procedure code.
 */
import { GvError } from '../errors.js';
import { accept_stat, type RpcCall } from '../rpc/message.js';
import type { ConnInfo, ProcResult, RpcProgram } from '../rpc/server.js';
import { namesFor, type ProgramNames } from './names.js';
import type { GvMetrics } from './registry.js';

const ACCEPT_NAMES: Partial<Record<accept_stat, string>> = {
  [accept_stat.PROC_UNAVAIL]: 'PROC_UNAVAIL',
  [accept_stat.GARBAGE_ARGS]: 'GARBAGE_ARGS',
  [accept_stat.SYSTEM_ERR]: 'SYSTEM_ERR',
};

/** The status label of a handler's result. */
export function resultStatus(names: ProgramNames, proc: number, result: ProcResult): string {
  if (Buffer.isBuffer(result)) return names.statusOf(proc, result) ?? 'ok';
  if (Array.isArray(result)) return names.statusOf(proc, result[0]) ?? 'ok';
  if ('chunks' in result) return names.statusOf(proc, result.chunks[0]) ?? 'ok';
  return ACCEPT_NAMES[result.stat] ?? 'error';
}

export function instrumentProgram<P extends RpcProgram>(program: P, metrics: GvMetrics, names: ProgramNames = namesFor(program.prog)): RpcProgram {
  const finish = (call: RpcCall, t0: bigint, status: string) => {
    metrics.rpcCall(names, call.proc, status, Number(process.hrtime.bigint() - t0) / 1e9);
  };
  const failed = (call: RpcCall, t0: bigint, err: unknown): never => {
    // RpcServer turns GvError('PROTOCOL') into GARBAGE_ARGS and anything else into SYSTEM_ERR.
    finish(call, t0, err instanceof GvError && err.code === 'PROTOCOL' ? 'GARBAGE_ARGS' : 'SYSTEM_ERR');
    throw err;
  };
  return {
    prog: program.prog,
    low: program.low,
    high: program.high,
    handle(call: RpcCall, conn: ConnInfo): ProcResult | Promise<ProcResult> {
      const t0 = process.hrtime.bigint();
      let r: ProcResult | Promise<ProcResult>;
      try {
        r = program.handle(call, conn);
      } catch (err) {
        return failed(call, t0, err);
      }
      if (r instanceof Promise) {
        return r.then(
          (res) => {
            finish(call, t0, resultStatus(names, call.proc, res));
            return res;
          },
          (err: unknown) => failed(call, t0, err),
        );
      }
      finish(call, t0, resultStatus(names, call.proc, r));
      return r;
    },
  };
}
