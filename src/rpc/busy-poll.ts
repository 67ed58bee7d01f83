/**
 * Busy polling of one connection after a reply.
 *
 * A client with one call in flight (libnfs, a shell walking a tree through the kernel client)
 * sends its next call a few microseconds after our reply reaches it. If the event loop has gone
 * to sleep in epoll by then, the call has to wake it, and on a virtual machine whose idle vCPUs
 * halt, waking a sleeping thread on another vCPU costs tens of microseconds — measured here: a
 * NULL call round trip is 85 µs to a sleeping Node server, 33 µs to one that polls, and ganesha's
 * thread hand-offs land at ~40 µs. So, right after answering, while nothing else is in flight,
 * the server reads the socket itself (non-blocking read(2)) for a short window: a call that
 * arrives in it is answered without any wake-up; when none does, back to the event loop.
 *
 * Bounds: one poll lasts at most `windowUs` after the last call it found, a run of calls answered
 * this way at most `sessionUs` (then the event loop runs timers and other connections), and a
 * connection whose polls keep finding nothing stops polling for a while (`BACKOFF_REPLIES`), so
 * a client that calls rarely costs a few microseconds of CPU per call, not a spinning core.
 */
import fs from 'node:fs';

/** What the poller feeds: the connection's record decoder and its state. */
export interface PollSink {
  /** Where the poll's next read should land. */
  readTarget(): Buffer;
  /**
   * `n` bytes were read into it (may answer calls, synchronously). Answers how many calls they
   * completed (a partial record: 0). Throws on a bad record.
   */
  filled(n: number): number;
  /** Whether polling may go on (nothing in flight anywhere, the connection usable). */
  mayPoll(): boolean;
  /** The records were bad: drop the connection. */
  fail(err: unknown): void;
}

export interface PollStats {
  polls: number;
  pollHits: number;
  pollUs: number;
}

/** Consecutive fruitless polls after which a connection stops polling for a while. */
const MISSES_BEFORE_BACKOFF = 8;
/** Replies sent without polling once a connection backed off. */
const BACKOFF_REPLIES = 64;

export class BusyPoller {
  private polling = false;
  private misses = 0;
  private skip = 0;
  private readonly windowNs: bigint;
  private readonly sessionNs: bigint;

  constructor(
    private readonly fd: number,
    windowUs: number,
    private readonly sink: PollSink,
    private readonly stats: PollStats,
    sessionUs = 2000,
  ) {
    this.windowNs = BigInt(Math.round(windowUs * 1000));
    this.sessionNs = BigInt(Math.round(sessionUs * 1000));
  }

  /** The descriptor of a net.Socket (undefined where the handle has none, e.g. on Windows). */
  static fdOf(sock: unknown): number | undefined {
    const fd = (sock as { _handle?: { fd?: unknown } | null })._handle?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : undefined;
  }

  /** A reply was just written: poll for the next call (re-entrant calls are ignored). */
  poll(): void {
    if (this.polling || !this.sink.mayPoll()) return;
    if (this.skip > 0) {
      this.skip--;
      return;
    }
    this.polling = true;
    const start = process.hrtime.bigint();
    const sessionEnd = start + this.sessionNs;
    let deadline = start + this.windowNs;
    let now = start;
    let hit = false;
    try {
      for (;;) {
        const target = this.sink.readTarget();
        let n: number;
        // An empty socket answers EAGAIN as an exception; without a stack trace it costs ~2.4 µs
        // instead of ~4.2 (the limit is back before any call is answered).
        const limit = Error.stackTraceLimit;
        Error.stackTraceLimit = 0;
        try {
          n = fs.readSync(this.fd, target, 0, target.length, null);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK' && code !== 'EINTR') break; // the event loop's read reports it
          n = -1;
        } finally {
          Error.stackTraceLimit = limit;
        }
        now = process.hrtime.bigint();
        if (n === 0) break; // end of stream: the event loop's read sees it too
        if (n > 0) {
          hit = true;
          let calls: number;
          try {
            calls = this.sink.filled(n);
          } catch (err) {
            this.sink.fail(err);
            break;
          }
          if (!this.sink.mayPoll()) break;
          now = process.hrtime.bigint();
          if (now >= sessionEnd) break;
          // Only a complete call opens a new window: a client trickling one record byte by byte
          // is waited for no longer than one window.
          if (calls > 0) deadline = now + this.windowNs;
          continue;
        }
        if (now >= deadline) break;
      }
    } finally {
      this.polling = false;
      this.stats.polls++;
      this.stats.pollUs += Number(now - start) / 1000;
    }
    if (hit) {
      this.stats.pollHits++;
      this.misses = 0;
    } else if (++this.misses >= MISSES_BEFORE_BACKOFF) {
      this.misses = 0;
      this.skip = BACKOFF_REPLIES;
    }
  }
}
