/**
 * The daemon's Prometheus metrics (prom-client, one Registry per daemon, never the global one).
 *
 * Hot-path updates (one RPC call, one READ/WRITE) add to plain numbers in slots resolved once and
 * cached: a call costs a few array/map look-ups and additions. prom-client's own label children
 * hash their labels on every update (about 1.5 µs per call here, a third of a GETATTR's handling),
 * so the call counters and byte counters are handed to prom-client when Prometheus scrapes, and
 * the latency histogram is a small metric of its own in prom-client's format. Everything that
 * already has a counter elsewhere (RpcServer.stats, connection counts, zone quota/usage) is read
 * when Prometheus scrapes, never pushed.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { ZoneMeter } from '../vfs/metered.js';
import type { ProgramNames } from './names.js';

/** Seconds; from 50 µs (GETATTR from cache) to 10 s (a stuck COMMIT). */
export const LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Quota and usage of one zone, as reported on scrape. */
export interface ZoneUsage {
  zone: string;
  /** null when the zone has no quota. */
  quotaBytes: bigint | number | null;
  usedBytes: bigint | number;
}

/** What the metrics read from an RPC listener (RpcServer fits). */
export interface RpcListenerSource {
  readonly stats: {
    readonly garbage: number; readonly droppedConnections: number; readonly calls: number;
    /** Busy polls after replies (src/rpc/busy-poll.ts), those that found a call, and time spent polling. */
    readonly polls: number; readonly pollHits: number; readonly pollUs: number;
  };
  readonly connectionCount: number;
}

export interface GvMetricsOptions {
  /** Process metrics (CPU, memory, fds, event-loop lag) from prom-client; default true. */
  processMetrics?: boolean;
}

/** One series of a LatencyHistogram. */
interface Series {
  readonly labels: Readonly<Record<string, string>>;
  /** Observations per bucket (not cumulative); above the last bound only in `count`. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

/**
 * A histogram kept in plain numbers (an observation is a bucket search and three additions),
 * exposed to the registry exactly as prom-client's Histogram is: `_bucket` series with `le`
 * (cumulative, then `+Inf`), `_sum` and `_count`.
 */
class LatencyHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly all: Series[] = [];

  constructor(readonly name: string, readonly help: string, private readonly bounds: readonly number[]) {}

  series(labels: Record<string, string>): Series {
    const s: Series = { labels, counts: new Float64Array(this.bounds.length), sum: 0, count: 0 };
    this.all.push(s);
    return s;
  }

  observe(s: Series, v: number): void {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        s.counts[i]!++;
        break;
      }
    }
    s.sum += v;
    s.count++;
  }

  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { value: number; labels: Record<string, string | number>; metricName: string }[] }> {
    const values: { value: number; labels: Record<string, string | number>; metricName: string }[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.all) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({ value: acc, labels: { le: this.bounds[i]!, ...s.labels }, metricName: bucket });
      }
      values.push({ value: s.count, labels: { le: '+Inf', ...s.labels }, metricName: bucket });
      values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: { ...s.labels }, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  reset(): void {
    for (const s of this.all) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/** A counter's value for one label set, handed to prom-client on scrape. */
interface Tally {
  readonly labels: Record<string, string>;
  n: number;
}

/** One RPC program's cached slots. */
interface ProgramChildren {
  latency: Series[];
  /** Per procedure: status → calls tally. */
  calls: Map<string, Tally>[];
}

export class GvMetrics {
  readonly registry = new Registry();
  /** gv_rpc_calls_total, per program, procedure and status. */
  private readonly callTallies: Tally[] = [];
  private readonly latency: LatencyHistogram;
  /** gv_zone_read_bytes_total / gv_zone_written_bytes_total, per zone. */
  private readonly readTallies: Tally[] = [];
  private readonly writtenTallies: Tally[] = [];
  private readonly zoneErrors: Counter<'zone' | 'op' | 'code'>;
  private readonly programs = new Map<string, ProgramChildren>();
  private readonly listeners = new Map<string, RpcListenerSource>();
  private zoneUsage: () => Iterable<ZoneUsage> | Promise<Iterable<ZoneUsage>> = () => [];

  constructor(opts: GvMetricsOptions = {}) {
    const registers = [this.registry];
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    // Tallies kept in plain numbers: copied on scrape (reset + inc keeps the type a counter).
    const fromTallies = (tallies: Tally[]) =>
      function (this: Counter) {
        this.reset();
        for (const t of tallies) this.inc(t.labels, t.n);
      };
    new Counter({
      name: 'gv_rpc_calls_total',
      help: 'RPC calls answered, by program, procedure and reply status (nfsstat3/mountstat3, or the RPC accept_stat)',
      labelNames: ['program', 'procedure', 'status'],
      registers,
      collect: fromTallies(this.callTallies),
    });
    this.latency = new LatencyHistogram(
      'gv_rpc_call_duration_seconds', 'Time from a decoded call to its reply being ready, by program and procedure', LATENCY_BUCKETS,
    );
    this.registry.registerMetric(this.latency as unknown as Metric);
    new Counter({
      name: 'gv_zone_read_bytes_total', help: 'Bytes returned by READ, per zone', labelNames: ['zone'], registers,
      collect: fromTallies(this.readTallies),
    });
    new Counter({
      name: 'gv_zone_written_bytes_total', help: 'Bytes written by WRITE, per zone', labelNames: ['zone'], registers,
      collect: fromTallies(this.writtenTallies),
    });
    this.zoneErrors = new Counter({
      name: 'gv_zone_errors_total',
      help: 'Failed zone operations, by zone, operation and error code (POSIX name)',
      labelNames: ['zone', 'op', 'code'],
      registers,
    });

    const listeners = this.listeners;
    // Counters kept by RpcServer itself: copied on scrape (reset + inc keeps the type a counter).
    const fromListeners = (pick: (s: RpcListenerSource) => number) =>
      function (this: Counter<'listener'> | Gauge<'listener'>) {
        this.reset();
        for (const [listener, src] of listeners) {
          if (this instanceof Gauge) this.set({ listener }, pick(src));
          else this.inc({ listener }, pick(src));
        }
      };
    new Counter({
      name: 'gv_rpc_garbage_total',
      help: 'RPC records that could not be decoded (dropped) or whose arguments were garbage',
      labelNames: ['listener'],
      registers,
      collect: fromListeners((s) => s.stats.garbage),
    });
    new Counter({
      name: 'gv_rpc_dropped_connections_total',
      help: 'Connections closed by the server because of a protocol violation (bad record marking, oversized record)',
      labelNames: ['listener'],
      registers,
      collect: fromListeners((s) => s.stats.droppedConnections),
    });
    new Counter({
      name: 'gv_rpc_busy_polls_total',
      help: 'Reads of a connection right after a reply, with nothing in flight ([nfs] busy_poll_us)',
      labelNames: ['listener'],
      registers,
      collect: fromListeners((s) => s.stats.polls),
    });
    new Counter({
      name: 'gv_rpc_busy_poll_hits_total',
      help: 'Busy polls that read something (the next call, or part of it) without waking the event loop',
      labelNames: ['listener'],
      registers,
      collect: fromListeners((s) => s.stats.pollHits),
    });
    new Counter({
      name: 'gv_rpc_busy_poll_seconds_total',
      help: 'CPU time spent in busy polls (including the calls they answered)',
      labelNames: ['listener'],
      registers,
      collect: fromListeners((s) => s.stats.pollUs / 1e6),
    });
    new Gauge({
      name: 'gv_rpc_open_connections',
      help: 'TCP connections currently open',
      labelNames: ['listener'],
      registers,
      collect: fromListeners((s) => s.connectionCount),
    });
    const usage = () => this.zoneUsage();
    new Gauge({
      name: 'gv_zone_quota_bytes',
      help: 'Zone quota in bytes (zones without a quota are not listed)',
      labelNames: ['zone'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) if (u.quotaBytes !== null) this.set({ zone: u.zone }, Number(u.quotaBytes));
      },
    });
    new Gauge({
      name: 'gv_zone_used_bytes',
      help: 'Bytes used by the zone (allocated blocks), as counted for its quota',
      labelNames: ['zone'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) this.set({ zone: u.zone }, Number(u.usedBytes));
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition format, as served on GET /metrics. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** Report RpcServer counters and connections under `listener` (e.g. "nfs", "mount"). */
  addRpcListener(listener: string, src: RpcListenerSource): void {
    this.listeners.set(listener, src);
  }

  /** Where zone quota/usage gauges come from; called on every scrape. */
  setZoneUsage(fn: () => Iterable<ZoneUsage> | Promise<Iterable<ZoneUsage>>): void {
    this.zoneUsage = fn;
  }

  /** Count one answered call and its duration. */
  rpcCall(names: ProgramNames, proc: number, status: string, seconds: number): void {
    const p = this.childrenOf(names);
    // Procedures outside the program's table (answered PROC_UNAVAIL) share one 'other' slot, so a
    // client cannot create label values at will.
    const i = proc >= 0 && proc < names.procedures.length ? proc : names.procedures.length;
    let lat = p.latency[i];
    let byStatus = p.calls[i];
    if (lat === undefined || byStatus === undefined) {
      lat = p.latency[i] = this.latency.series({ program: names.program, procedure: names.procedures[i] ?? 'other' });
      byStatus = p.calls[i] = new Map();
    }
    let c = byStatus.get(status);
    if (c === undefined) {
      c = { labels: { program: names.program, procedure: names.procedures[i] ?? 'other', status }, n: 0 };
      this.callTallies.push(c);
      // Bounded: statuses come from fixed tables ('unknown' for anything else).
      byStatus.set(status, c);
    }
    c.n++;
    this.latency.observe(lat, seconds);
  }

  private journalChanges?: Counter<'zone' | 'kind'>;

  /**
   * The change journal (src/journal): `gv_journal_changes_total{zone,kind}` (entries committed) and
   * `gv_zone_version{zone}` (each held zone's version, read from `versions` at scrape time).
   */
  journalMeter(versions: { current(): Map<string, bigint> }): (zone: string, kind: string) => void {
    if (!this.journalChanges) {
      const registers = [this.registry];
      this.journalChanges = new Counter({
        name: 'gv_journal_changes_total', help: 'Change journal entries committed, per zone and kind', labelNames: ['zone', 'kind'], registers,
      });
      new Gauge({
        name: 'gv_zone_version', help: 'Current version of each zone this node holds', labelNames: ['zone'], registers,
        collect() {
          this.reset();
          for (const [zone, v] of versions.current()) this.set({ zone }, Number(v));
        },
      });
    }
    const changes = this.journalChanges;
    return (zone, kind) => changes.inc({ zone, kind });
  }

  /** Counters for one zone, for the `metered` ZoneFs wrapper. */
  zoneMeter(zone: string): ZoneMeter {
    // One tally per zone (a zone reopened by a reload keeps counting where it was); both series
    // are visible (at 0) before the first READ/WRITE.
    const tally = (all: Tally[]): Tally => {
      let t = all.find((x) => x.labels.zone === zone);
      if (!t) all.push((t = { labels: { zone }, n: 0 }));
      return t;
    };
    const read = tally(this.readTallies);
    const written = tally(this.writtenTallies);
    const errors = this.zoneErrors;
    return {
      read: (n) => {
        read.n += n;
      },
      written: (n) => {
        written.n += n;
      },
      error: (op, code) => errors.inc({ zone, op, code }),
    };
  }

  private childrenOf(names: ProgramNames): ProgramChildren {
    let p = this.programs.get(names.program);
    if (!p) {
      p = { latency: [], calls: [] };
      this.programs.set(names.program, p);
    }
    return p;
  }
}
