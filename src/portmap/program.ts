import { accept_stat, type RpcCall } from '../rpc/message.js';
import type { ConnInfo, ProcResult, RpcProgram } from '../rpc/server.js';
import { isLoopback } from '../util/cidr.js';
import type { XdrReader } from '../xdr/reader.js';
import { XdrWriter } from '../xdr/writer.js';
import { PMAP_PROG, PMAP_VERS, pmapproc, type mapping } from './constants.js';
import { PortmapTable } from './table.js';

export interface PortmapDeps {
  table?: PortmapTable;
  log?: (obj: object, msg: string) => void;
}

export type PortmapProgram = RpcProgram & { readonly table: PortmapTable };

export function readMapping(r: XdrReader): mapping {
  return { prog: r.u32(), vers: r.u32(), prot: r.u32(), port: r.u32() };
}

export function writeMapping(w: XdrWriter, m: mapping): XdrWriter {
  return w.u32(m.prog).u32(m.vers).u32(m.prot).u32(m.port);
}

function bool(v: boolean): Buffer {
  return new XdrWriter(4).bool(v).bytes();
}

/**
 * Portmapper program 100000 version 2: NULL, SET, UNSET, GETPORT, DUMP. SET and UNSET are taken
 * only from loopback clients. CALLIT (indirect calls, an amplification vector) is refused.
 */
export function createPortmapProgram(deps: PortmapDeps = {}): PortmapProgram {
  const table = deps.table ?? new PortmapTable();
  return {
    prog: PMAP_PROG,
    low: PMAP_VERS,
    high: PMAP_VERS,
    table,
    handle(call: RpcCall, conn: ConnInfo): ProcResult {
      switch (call.proc) {
        case pmapproc.NULL:
          return Buffer.alloc(0);
        case pmapproc.SET: {
          const m = readMapping(call.args);
          if (!isLoopback(conn.remoteAddress)) {
            deps.log?.({ client: conn.remoteAddress, ...m }, 'portmap SET refused: not from loopback');
            return bool(false);
          }
          const ok = table.set(m);
          deps.log?.({ client: conn.remoteAddress, ...m, ok }, 'portmap SET');
          return bool(ok);
        }
        case pmapproc.UNSET: {
          const m = readMapping(call.args);
          if (!isLoopback(conn.remoteAddress)) {
            deps.log?.({ client: conn.remoteAddress, ...m }, 'portmap UNSET refused: not from loopback');
            return bool(false);
          }
          return bool(table.unset(m.prog, m.vers));
        }
        case pmapproc.GETPORT: {
          const m = readMapping(call.args);
          return new XdrWriter(4).u32(table.getport(m.prog, m.vers, m.prot)).bytes();
        }
        case pmapproc.DUMP: {
          const w = new XdrWriter(256);
          for (const m of table.list()) writeMapping(w.bool(true), m);
          w.bool(false);
          return w.bytes();
        }
        default:
          return { stat: accept_stat.PROC_UNAVAIL };
      }
    },
  };
}
