/**
 * How ELP packets travel: a `Beacon` sends a datagram to every node it can reach (multicast group,
 * static peers) and reports what it hears. The daemon uses the multicast implementation
 * (multicast.ts); tests use the in-memory hub below, which can also cut links.
 */

export interface BeaconFrom {
  address: string;
  port: number;
}

export type ReceiveListener = (buf: Buffer, from: BeaconFrom) => void;

export interface Beacon {
  start(): Promise<void>;
  /** Send one packet to everyone reachable. Failures (network down) reject; callers log them. */
  send(buf: Buffer): Promise<void>;
  /** Listen to packets; returns the function that stops listening. */
  onReceive(cb: ReceiveListener): () => void;
  close(): Promise<void>;
}

/** Fan-out for listeners, shared by the implementations. */
export class Listeners {
  private readonly list = new Set<ReceiveListener>();
  add(cb: ReceiveListener): () => void {
    this.list.add(cb);
    return () => this.list.delete(cb);
  }
  emit(buf: Buffer, from: BeaconFrom): void {
    for (const cb of this.list) cb(buf, from);
  }
}

/** In-memory "network" for tests: every beacon hears every other one unless the link is cut. */
export class MemoryBeaconHub {
  private readonly members = new Map<string, { listeners: Listeners; open: boolean }>();
  private readonly cut = new Set<string>();
  /** Every datagram sent, in order (tests inspect or replay them). */
  readonly sent: { from: string; buf: Buffer }[] = [];

  /** A beacon whose packets appear to come from `address`. */
  join(address: string): Beacon {
    const me = { listeners: new Listeners(), open: false };
    this.members.set(address, me);
    return {
      start: async () => {
        me.open = true;
      },
      send: async (buf) => {
        if (!me.open) throw new Error('beacon not started');
        this.sent.push({ from: address, buf: Buffer.from(buf) });
        this.deliver(address, buf);
      },
      onReceive: (cb) => me.listeners.add(cb),
      close: async () => {
        me.open = false;
      },
    };
  }

  /** Inject a datagram as if sent by `from` (forged or replayed packets). */
  inject(from: string, buf: Buffer): void {
    this.deliver(from, buf);
  }

  /** Cut (false) or restore (true) the link between two addresses, both directions. */
  link(a: string, b: string, up: boolean): void {
    for (const k of [`${a}|${b}`, `${b}|${a}`]) {
      if (up) this.cut.delete(k);
      else this.cut.add(k);
    }
  }

  private deliver(from: string, buf: Buffer): void {
    for (const [addr, m] of this.members) {
      if (!m.open || this.cut.has(`${from}|${addr}`)) continue;
      const copy = Buffer.from(buf);
      // Asynchronous like a network, but ordered.
      queueMicrotask(() => m.listeners.emit(copy, { address: from, port: 0 }));
    }
  }
}
