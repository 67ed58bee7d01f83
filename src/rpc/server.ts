import net from 'node:net';
import { GvError } from '../errors.js';
import {
  accept_stat, acceptedError, auth_stat, authError, AUTH_NONE, AUTH_SYS,
  decodeCall, progMismatch, rpcMismatch, type RpcCall,
} from './message.js';
import type { BufferPool } from '../util/buffer-pool.js';
import { BusyPoller } from './busy-poll.js';
import { RecordDecoder, recordMark } from './record.js';

export interface ConnInfo {
  remoteAddress: string;
  remotePort: number;
}

/**
 * What a procedure handler returns: the result bytes after `accept_stat SUCCESS`, or an error.
 * `release` (for pooled payloads) runs once the socket no longer needs the chunks.
 */
export type ProcResult =
  | Buffer
  | Buffer[]
  | { chunks: Buffer[]; release: () => void }
  | { stat: accept_stat.PROC_UNAVAIL | accept_stat.GARBAGE_ARGS | accept_stat.SYSTEM_ERR };

/** Reply chunks for the socket, and what to release after they are written. */
export interface Reply {
  chunks: Buffer[];
  release?: () => void;
}

export interface RpcProgram {
  readonly prog: number;
  readonly low: number;
  readonly high: number;
  /** Called for a well-formed call to a supported version. Throwing GvError('PROTOCOL') → GARBAGE_ARGS. */
  handle(call: RpcCall, conn: ConnInfo): ProcResult | Promise<ProcResult>;
}

export interface RpcServerOptions {
  maxRecordSize?: number;
  maxConnections?: number;
  /** Calls in flight per connection before the server stops reading from it. */
  maxInFlight?: number;
  /** Bytes of call records being processed across all connections before reading pauses. */
  maxInFlightBytes?: number;
  /** Pool for large records and payloads (shared with the programs that fill replies). */
  pool?: BufferPool;
  /** Refuse calls from source ports >= 1024 (AUTH_TOOWEAK). */
  requirePrivilegedPort?: boolean;
  idleTimeoutMs?: number;
  /**
   * Busy polling: after a reply, when no call is in flight on any connection, keep reading that
   * connection for up to this many microseconds before going back to the event loop (0: off).
   * See `BusyPoller`.
   */
  busyPollUs?: number;
  onError?: (err: unknown, where: string) => void;
}

export interface RpcStats {
  calls: number;
  garbage: number;
  droppedConnections: number;
  /** Busy polls run, polls that found a call, and microseconds spent polling. */
  polls: number;
  pollHits: number;
  pollUs: number;
}

/** ONC RPC over TCP: record marking, dispatch by program/version, replies matched by xid. */
export class RpcServer {
  private readonly programs = new Map<number, RpcProgram>();
  private readonly sockets = new Set<net.Socket>();
  private readonly servers: net.Server[] = [];
  private inFlightTotal = 0;
  private inFlightBytes = 0;
  /** Busy polling: the connection the last call came from, and when calls last changed connection. */
  private lastCallConn: object | null = null;
  private connSwitchNs = 0n;
  /** Connections paused because the global byte budget was exhausted. */
  private readonly starved = new Set<() => void>();
  private drainWaiters: (() => void)[] = [];
  /** close() was called: no new connections, no new calls on open ones. */
  private closing = false;
  readonly stats: RpcStats = { calls: 0, garbage: 0, droppedConnections: 0, polls: 0, pollHits: 0, pollUs: 0 };
  private readonly opts: Required<Omit<RpcServerOptions, 'onError' | 'pool'>> & Pick<RpcServerOptions, 'onError' | 'pool'>;

  constructor(opts: RpcServerOptions = {}) {
    this.opts = {
      maxRecordSize: opts.maxRecordSize ?? (1 << 20) + 4096,
      maxConnections: opts.maxConnections ?? 512,
      maxInFlight: opts.maxInFlight ?? 64,
      maxInFlightBytes: opts.maxInFlightBytes ?? 256 << 20,
      requirePrivilegedPort: opts.requirePrivilegedPort ?? false,
      idleTimeoutMs: opts.idleTimeoutMs ?? 15 * 60_000,
      busyPollUs: Math.max(0, Math.min(1000, Math.floor(opts.busyPollUs ?? 0))),
      onError: opts.onError,
      pool: opts.pool,
    };
  }

  /**
   * Whether `conn` has been the only connection sending calls for the last millisecond. Polling one
   * connection holds up the others (their calls wait in the kernel), so with several clients
   * active the event loop serves whoever calls instead.
   */
  private onlyCaller(conn: object): boolean {
    return this.lastCallConn === conn && process.hrtime.bigint() - this.connSwitchNs > 1_000_000n;
  }

  register(p: RpcProgram): void {
    this.programs.set(p.prog, p);
  }

  /** Listen on host:port; resolves with the bound port (0 picks a free one). */
  listen(port: number, host: string): Promise<number> {
    // Paused on connect: accept() moves the connection to a socket that reads into our buffers.
    const srv = net.createServer({ noDelay: true, allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s));
    this.servers.push(srv);
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.off('error', reject);
        resolve((srv.address() as net.AddressInfo).port);
      });
    });
  }

  /**
   * Stop accepting (the listeners close synchronously, before the first await), stop reading new
   * calls from open connections, wait (bounded) for the calls in flight to be answered, then
   * close every connection.
   */
  async close(timeoutMs = 5000): Promise<void> {
    this.closing = true;
    for (const s of this.servers) s.close();
    for (const s of this.sockets) s.pause();
    if (this.inFlightTotal > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.drainWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  private accept(accepted: net.Socket): void {
    if (this.closing || this.sockets.size >= this.opts.maxConnections) {
      accepted.destroy();
      return;
    }
    // The decoder is made before the socket (a user-buffer socket asks it for a buffer at once);
    // what it does with a record is set below, once the connection's state exists.
    let onRecord: (record: Buffer, release?: () => void) => void = () => {};
    const decoder = new RecordDecoder(this.opts.maxRecordSize, (record, release) => onRecord(record, release), 1024, this.opts.pool);
    // Calls answered synchronously while the decoder works through a read must not poll from
    // inside it (the poll would read into the buffer it is still parsing): the poll they ask for
    // runs once the decoder is done with that read.
    let decoding = false;
    let pollWanted = false;
    let poller: BusyPoller | undefined;
    /** Records received on this connection (a poll tells complete calls from partial reads). */
    let records = 0;
    /** Feed the decoder (`decoder.filled` or `filledScratch`); answers the records it completed. */
    const decode = (feed: () => void): number => {
      const before = records;
      decoding = true;
      try {
        feed();
      } finally {
        decoding = false;
      }
      return records - before;
    };
    const pollSoon = () => {
      if (poller === undefined) return;
      if (decoding) {
        pollWanted = true;
        return;
      }
      poller.poll();
      pollWanted = false;
    };
    /** Bad record marking: close the connection. */
    const drop = (err: unknown) => {
      this.stats.droppedConnections++;
      this.opts.onError?.(err, 'record');
      sock.destroy();
    };
    const sock = adoptWithUserBuffer(accepted, () => decoder.readTarget(), (n) => {
      // Closing: calls not yet received are not started (the client retries them elsewhere).
      if (this.closing) return;
      try {
        decode(() => decoder.filled(n));
      } catch (err) {
        drop(err);
        return;
      }
      if (pollWanted) pollSoon();
    });
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(this.opts.idleTimeoutMs, () => sock.destroy());
    const conn: ConnInfo = {
      remoteAddress: normaliseAddress(sock.remoteAddress ?? ''),
      remotePort: sock.remotePort ?? 0,
    };
    let inFlight = 0;
    let paused = false;
    // The client half-closed: answer what is in flight, then close our side.
    let ended = false;
    sock.on('end', () => {
      ended = true;
      if (inFlight === 0) sock.end();
    });
    const resumeIfIdle = () => {
      if (!paused || sock.destroyed || this.closing) return;
      if (inFlight >= this.opts.maxInFlight || sock.writableLength >= 8 << 20) return;
      if (this.inFlightBytes >= this.opts.maxInFlightBytes && inFlight > 0) {
        this.starved.add(resumeIfIdle);
        return;
      }
      paused = false;
      this.starved.delete(resumeIfIdle);
      sock.resume();
    };
    sock.on('drain', resumeIfIdle);
    sock.on('close', () => this.starved.delete(resumeIfIdle));
    // Polls read into the decoder's scratch buffer, and only while the socket's own next read is
    // to land there too: when the socket reads a large record in place, its buffer is that
    // record's at the offset reached, and a poll moving the record on would make it stale. (The
    // socket's buffer can only be changed by the buffer generator after each of its reads:
    // handle.useUserBuffer pushes a new stream listener per call, a leak.)
    const fd = this.opts.busyPollUs > 0 && sock !== accepted ? BusyPoller.fdOf(sock) : undefined;
    poller = fd === undefined ? undefined : new BusyPoller(fd, this.opts.busyPollUs, {
      readTarget: () => decoder.scratchTarget(),
      filled: (n) => decode(() => decoder.filledScratch(n)),
      mayPoll: () => this.inFlightTotal === 0 && !paused && !ended && !sock.destroyed && !this.closing
        && this.onlyCaller(conn)
        && sock.writableLength === 0 && !decoder.readingInPlace,
      fail: drop,
    }, this.stats);
    onRecord = (record, releaseRecord) => {
      records++;
      if (this.lastCallConn !== conn && poller !== undefined) {
        this.lastCallConn = conn;
        this.connSwitchNs = process.hrtime.bigint();
      }
      const size = record.length;
      inFlight++;
      this.inFlightTotal++;
      this.inFlightBytes += size;
      if (!paused && (inFlight >= this.opts.maxInFlight || this.inFlightBytes >= this.opts.maxInFlightBytes)) {
        paused = true;
        sock.pause();
        if (this.inFlightBytes >= this.opts.maxInFlightBytes) this.starved.add(resumeIfIdle);
      }
      const done = () => {
        inFlight--;
        this.inFlightTotal--;
        this.inFlightBytes -= size;
        if (this.inFlightTotal === 0 && this.drainWaiters.length) {
          for (const w of this.drainWaiters.splice(0)) w();
        }
        if (ended && inFlight === 0) sock.end();
        else resumeIfIdle();
        if (this.starved.size && this.inFlightBytes < this.opts.maxInFlightBytes) {
          for (const wake of [...this.starved]) wake();
        }
      };
      const finish = (out: Outcome) => {
        // The call is complete: nothing refers to the request bytes any more.
        releaseRecord?.();
        if (out !== null && !sock.destroyed) writeOutcome(sock, out);
        else releaseOutcome(out);
        if (sock.writableLength >= 8 << 20 && !paused) {
          paused = true;
          sock.pause();
        }
        done();
        pollSoon();
      };
      let out: Outcome | Promise<Outcome>;
      try {
        out = this.answer(record, conn, this.inFlightTotal === 1);
      } catch (err) {
        out = Promise.reject(err);
      }
      if (!(out instanceof Promise)) {
        finish(out);
        return;
      }
      out.then(finish, (err: unknown) => {
        releaseRecord?.();
        this.opts.onError?.(err, 'dispatch');
        done();
      });
    };
    if (sock !== accepted) {
      sock.resume(); // reading already runs into our buffers; flowing lets 'end' through
    } else sock.on('data', (chunk: Buffer) => {
      // Closing: calls not yet received are not started (the client retries them elsewhere).
      if (this.closing) return;
      try {
        decoder.push(chunk);
      } catch (err) {
        drop(err);
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      this.sockets.delete(sock);
      decoder.dispose();
    });
  }

  /** Decode, authenticate and run one call; returns the reply chunks or null to drop it. */
  async dispatch(record: Buffer, conn: ConnInfo): Promise<Reply | null> {
    const out = this.answer(record, conn, false);
    return toReply(out instanceof Promise ? await out : out);
  }

  /**
   * `dispatch` without the promise when the program answers synchronously (NULL, errors), and
   * without a separate header buffer for a successful call: the TCP path encodes the record mark,
   * the reply header and a small result into one buffer.
   */
  private answer(record: Buffer, conn: ConnInfo, alone: boolean): Outcome | Promise<Outcome> {
    let call: RpcCall;
    try {
      const c = decodeCall(record);
      if ('notCall' in c) return null; // a REPLY sent to us: ignore
      call = c;
      call.alone = alone;
    } catch {
      this.stats.garbage++;
      return null; // header too short to carry an xid we can trust
    }
    this.stats.calls++;
    const xid = call.xid;
    if (call.rpcvers !== 2) return { chunks: [rpcMismatch(xid)] };
    if (call.credFlavor !== AUTH_NONE && call.credFlavor !== AUTH_SYS) return { chunks: [authError(xid, auth_stat.AUTH_REJECTEDCRED)] };
    if (call.credFlavor === AUTH_SYS && call.authSys === null) return { chunks: [authError(xid, auth_stat.AUTH_BADCRED)] };
    if (this.opts.requirePrivilegedPort && conn.remotePort >= 1024 && call.proc !== 0) {
      return { chunks: [authError(xid, auth_stat.AUTH_TOOWEAK)] };
    }
    const prog = this.programs.get(call.prog);
    if (!prog) return { chunks: [acceptedError(xid, accept_stat.PROG_UNAVAIL)] };
    if (call.vers < prog.low || call.vers > prog.high) return { chunks: [progMismatch(xid, prog.low, prog.high)] };
    let result: ProcResult | Promise<ProcResult>;
    try {
      result = prog.handle(call, conn);
    } catch (err) {
      return this.failed(xid, call, err);
    }
    if (result instanceof Promise) {
      return result.then((r) => succeeded(xid, r), (err: unknown) => this.failed(xid, call, err));
    }
    return succeeded(xid, result);
  }

  private failed(xid: number, call: RpcCall, err: unknown): Reply {
    if (err instanceof GvError && err.code === 'PROTOCOL') {
      this.stats.garbage++;
      return { chunks: [acceptedError(xid, accept_stat.GARBAGE_ARGS)] };
    }
    this.opts.onError?.(err, `prog ${call.prog} proc ${call.proc}`);
    return { chunks: [acceptedError(xid, accept_stat.SYSTEM_ERR)] };
  }
}

/** A successful call: its xid and the program's result, the reply header not yet encoded. */
interface Success {
  xid: number;
  result: Buffer | Buffer[] | { chunks: Buffer[]; release: () => void };
}

/** What a call comes to: a complete reply, a success whose header is still to be written, or nothing. */
type Outcome = Reply | Success | null;

function succeeded(xid: number, result: ProcResult): Reply | Success {
  if (!Buffer.isBuffer(result) && !Array.isArray(result) && 'stat' in result) return { chunks: [acceptedError(xid, result.stat)] };
  return { xid, result };
}

/** The accepted-reply header (RFC 5531: xid, REPLY, MSG_ACCEPTED, AUTH_NONE verifier, SUCCESS). */
const HEADER_SIZE = 24;

function writeSuccessHeader(out: Buffer, off: number, xid: number): void {
  out.writeUInt32BE(xid >>> 0, off);
  out.writeUInt32BE(1, off + 4); // REPLY
  out.writeUInt32BE(0, off + 8); // MSG_ACCEPTED
  out.writeUInt32BE(AUTH_NONE, off + 12);
  out.writeUInt32BE(0, off + 16); // verifier body length
  out.writeUInt32BE(accept_stat.SUCCESS, off + 20);
}

function toReply(o: Outcome): Reply | null {
  if (o === null || 'chunks' in o) return o;
  const head = Buffer.allocUnsafe(HEADER_SIZE);
  writeSuccessHeader(head, 0, o.xid);
  const r = o.result;
  if (Buffer.isBuffer(r)) return { chunks: [head, r] };
  if (Array.isArray(r)) return { chunks: [head, ...r] };
  return { chunks: [head, ...r.chunks], release: r.release };
}

/** Small replies go out as one buffer: record mark, header and result copied together. */
const SMALL_REPLY = 16384;

function writeOutcome(sock: net.Socket, o: Reply | Success): void {
  if ('chunks' in o) {
    writeReply(sock, o);
    return;
  }
  const r = o.result;
  if (Buffer.isBuffer(r) && r.length <= SMALL_REPLY) {
    const out = Buffer.allocUnsafe(4 + HEADER_SIZE + r.length);
    out.writeUInt32BE((0x80000000 | (HEADER_SIZE + r.length)) >>> 0, 0);
    writeSuccessHeader(out, 4, o.xid);
    r.copy(out, 4 + HEADER_SIZE);
    sock.write(out);
    return;
  }
  writeReply(sock, toReply(o)!);
}

function releaseOutcome(o: Outcome): void {
  if (o !== null && !('chunks' in o) && !Buffer.isBuffer(o.result) && !Array.isArray(o.result)) o.result.release();
  else if (o !== null && 'chunks' in o) o.release?.();
}

function writeReply(sock: net.Socket, reply: Reply): void {
  const chunks = reply.chunks;
  let total = 0;
  for (const c of chunks) total += c.length;
  if (total <= SMALL_REPLY) {
    // Small reply: one write of one buffer.
    const out = Buffer.allocUnsafe(4 + total);
    out.writeUInt32BE((0x80000000 | total) >>> 0, 0);
    let off = 4;
    for (const c of chunks) {
      c.copy(out, off);
      off += c.length;
    }
    sock.write(out);
    reply.release?.();
    return;
  }
  sock.cork();
  sock.write(recordMark(total));
  const last = chunks.length - 1;
  for (let i = 0; i <= last; i++) {
    const c = chunks[i]!;
    // The callback of the last write runs once every chunk was handed to the kernel (or failed).
    if (i === last && reply.release) sock.write(c, reply.release);
    else if (c.length) sock.write(c);
  }
  sock.uncork();
}

/**
 * Move an accepted connection to a socket that reads into buffers the record decoder hands out
 * (Node's `onread` option, which net.Server does not offer for the sockets it accepts): the
 * default stream path allocates a fresh 64 KiB buffer for every read, and on this kind of VM the
 * page faults on that new memory plus the copy into the record buffer cost more than the network
 * itself (a 1 MiB WRITE: 16 allocations, 16 reads, a 1 MiB memmove). Here the payload of a large
 * record is read straight into its pooled buffer. Falls back to the accepted socket unchanged
 * when its handle is not reachable (then the 'data' path is used).
 */
function adoptWithUserBuffer(accepted: net.Socket, next: () => Buffer, filled: (n: number) => void): net.Socket {
  const internal = accepted as unknown as { _handle?: { useUserBuffer?: unknown } | null };
  const handle = internal._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function') {
    accepted.resume();
    return accepted;
  }
  internal._handle = null;
  accepted.destroy(); // no handle left: only the server's connection count is updated
  const opts = {
    handle, allowHalfOpen: true, readable: true, writable: true,
    onread: { buffer: next, callback: (n: number) => { filled(n); return true; } },
  };
  return new net.Socket(opts as unknown as net.SocketConstructorOpts);
}

export function normaliseAddress(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}
