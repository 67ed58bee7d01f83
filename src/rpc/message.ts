import { GvError } from '../errors.js';
import { XdrReader } from '../xdr/reader.js';
import { XdrWriter } from '../xdr/writer.js';

/** RFC 5531 constants, with the RFC's names. */
export const CALL = 0;
export const REPLY = 1;
export const MSG_ACCEPTED = 0;
export const MSG_DENIED = 1;

export const enum accept_stat {
  SUCCESS = 0,
  PROG_UNAVAIL = 1,
  PROG_MISMATCH = 2,
  PROC_UNAVAIL = 3,
  GARBAGE_ARGS = 4,
  SYSTEM_ERR = 5,
}

export const enum reject_stat {
  RPC_MISMATCH = 0,
  AUTH_ERROR = 1,
}

export const enum auth_stat {
  AUTH_OK = 0,
  AUTH_BADCRED = 1,
  AUTH_REJECTEDCRED = 2,
  AUTH_BADVERF = 3,
  AUTH_REJECTEDVERF = 4,
  AUTH_TOOWEAK = 5,
}

export const AUTH_NONE = 0;
export const AUTH_SYS = 1;

export interface AuthSys {
  stamp: number;
  machinename: string;
  uid: number;
  gid: number;
  gids: number[];
}

export interface RpcCall {
  xid: number;
  rpcvers: number;
  prog: number;
  vers: number;
  proc: number;
  credFlavor: number;
  /** Present when the credential is AUTH_SYS and well formed. */
  authSys: AuthSys | null;
  /** The call arguments, positioned after the header. */
  args: XdrReader;
  /**
   * Set by RpcServer: no other call was in flight on the server when this one started, so
   * nothing waits for the event loop while this call runs (see CallContext.inline).
   */
  alone?: boolean;
}

const MAX_AUTH_BODY = 400; // RFC 5531: opaque_auth body is at most 400 bytes

/**
 * Decode a call header. Throws GvError('PROTOCOL') when the header itself is malformed (the
 * caller then has no xid to reply to if even that is missing, and drops the record), or returns a
 * call whose `authSys` is null for AUTH_SYS credentials that do not parse (→ AUTH_BADCRED).
 */
export function decodeCall(record: Buffer): RpcCall | { xid: number; notCall: true } {
  const r = new XdrReader(record);
  const xid = r.u32();
  const mtype = r.u32();
  if (mtype !== CALL) return { xid, notCall: true };
  const rpcvers = r.u32();
  const prog = r.u32();
  const vers = r.u32();
  const proc = r.u32();
  const credFlavor = r.u32();
  const credBody = r.opaque(MAX_AUTH_BODY);
  r.u32(); // verifier flavor
  r.opaque(MAX_AUTH_BODY);
  let authSys: AuthSys | null = null;
  if (credFlavor === AUTH_SYS) authSys = parseAuthSys(credBody);
  return { xid, rpcvers, prog, vers, proc, credFlavor, authSys, args: r };
}

export function parseAuthSys(body: Buffer): AuthSys | null {
  try {
    const r = new XdrReader(body);
    const stamp = r.u32();
    const machinename = r.string(255);
    const uid = r.u32();
    const gid = r.u32();
    const gids = r.array(16, (x) => x.u32());
    if (r.remaining !== 0) return null;
    return { stamp, machinename, uid, gid, gids };
  } catch (e) {
    if (e instanceof GvError) return null;
    throw e;
  }
}

/** Reply header for an accepted call with AUTH_NONE verifier; the caller appends results. */
export function acceptedHeader(w: XdrWriter, xid: number, stat: accept_stat): XdrWriter {
  w.u32(xid).u32(REPLY).u32(MSG_ACCEPTED).u32(AUTH_NONE).u32(0).u32(stat);
  return w;
}

export function progMismatch(xid: number, low: number, high: number): Buffer {
  const w = new XdrWriter(32);
  acceptedHeader(w, xid, accept_stat.PROG_MISMATCH).u32(low).u32(high);
  return w.bytes();
}

export function acceptedError(xid: number, stat: accept_stat): Buffer {
  return acceptedHeader(new XdrWriter(32), xid, stat).bytes();
}

export function rpcMismatch(xid: number): Buffer {
  const w = new XdrWriter(32);
  w.u32(xid).u32(REPLY).u32(MSG_DENIED).u32(reject_stat.RPC_MISMATCH).u32(2).u32(2);
  return w.bytes();
}

export function authError(xid: number, why: auth_stat): Buffer {
  const w = new XdrWriter(32);
  w.u32(xid).u32(REPLY).u32(MSG_DENIED).u32(reject_stat.AUTH_ERROR).u32(why);
  return w.bytes();
}

/** Encode a call (used by our own client and tests). */
export function encodeCall(
  xid: number,
  prog: number,
  vers: number,
  proc: number,
  args: Uint8Array,
  auth?: { uid: number; gid: number; gids?: number[]; machinename?: string },
): Buffer {
  const w = new XdrWriter(64 + args.length);
  w.u32(xid).u32(CALL).u32(2).u32(prog).u32(vers).u32(proc);
  if (auth) {
    const a = new XdrWriter(64);
    a.u32(0).string(auth.machinename ?? 'gv').u32(auth.uid).u32(auth.gid);
    const gids = auth.gids ?? [];
    a.u32(gids.length);
    for (const g of gids) a.u32(g);
    w.u32(AUTH_SYS).opaque(a.bytes());
  } else {
    w.u32(AUTH_NONE).u32(0);
  }
  w.u32(AUTH_NONE).u32(0);
  w.fixed(args);
  return w.bytes();
}
