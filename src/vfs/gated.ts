/**
 * `gated(zone, opts)`: pull before write. A ZoneFs that, before each mutation an NFS client asks
 * for, asks the replication engine's PullGate whether a pull is pending for the path(s) the call
 * changes. Nothing pending (the common case): the call goes straight to `zone`, with no await and
 * nothing allocated beyond the path look-up. A pull pending: the call waits for it (at most
 * `maxWaitMs`), then proceeds, or answers JUKEBOX (NFS3ERR_JUKEBOX: the client retries later).
 *
 * Reads and COMMIT never wait. Calls made by the daemon itself or applied from a peer
 * (ctx.origin 'local' / 'peer') never wait either: the engine applying a pull must not wait for
 * itself. A zone whose consistency is 'available' never waits.
 */
import { GvError } from '../errors.js';
import { PassThroughZoneFs } from './pass-through.js';
import type { Consistency, PullGate } from '../replication/source.js';
import type {
  Attr, CallContext, Created, CreateHow, FileId, FileType, SetAttrs,
  StableHow, Time, Wcc, ZoneFs,
} from './types.js';

export interface GateOptions {
  gate: PullGate;
  /** Zone-relative path of an id (no leading slash; empty for the root), undefined when unknown. */
  pathOf: (id: FileId) => Buffer | undefined;
  /** Longest an NFS mutation waits for a pending pull before JUKEBOX. */
  maxWaitMs: number;
  /** The zone's current consistency (read on every mutation, so a reload applies at once). */
  consistency: () => Consistency;
}

/** Extra time granted to a gate that does not settle its promise within maxWaitMs. */
const GATE_GRACE_MS = 1000;

export type GatedZoneFs = ZoneFs & { readonly inner: ZoneFs };

export function gated(zone: ZoneFs, opts: GateOptions): GatedZoneFs {
  return new Gated(zone, opts);
}

/**
 * `dir`'s path joined with `name` (the root's path is empty). At the root this is `name` itself, a
 * view of the request: the gate may look it up but must copy it to keep it.
 */
function childPath(dir: Buffer, name: Buffer): Buffer {
  if (dir.length === 0) return name;
  const out = Buffer.allocUnsafe(dir.length + 1 + name.length);
  dir.copy(out, 0);
  out[dir.length] = 0x2f;
  name.copy(out, dir.length + 1);
  return out;
}

const jukebox = (): GvError => new GvError('JUKEBOX', 'a newer version is being pulled from a peer; retry');

/** Await a gate's answer, bounded even if the gate never settles it. */
function bounded(p: Promise<boolean>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms + GATE_GRACE_MS);
    timer.unref();
  });
  // A gate that fails is treated like one that timed out: the client retries.
  return Promise.race([p.catch(() => false), limit]).finally(() => clearTimeout(timer));
}

class Gated extends PassThroughZoneFs {
  private readonly gate: PullGate;
  private readonly pathOf: (id: FileId) => Buffer | undefined;
  private readonly maxWaitMs: number;
  private readonly consistency: () => Consistency;

  constructor(inner: ZoneFs, opts: GateOptions) {
    super(inner);
    this.gate = opts.gate;
    this.pathOf = opts.pathOf;
    this.maxWaitMs = opts.maxWaitMs;
    this.consistency = opts.consistency;
  }

  /** False when this call cannot wait at all (not a client's, or the zone does not pull first). */
  private gates(ctx: CallContext): boolean {
    if (ctx.origin !== 'nfs') return false;
    // Nothing pending (the usual case) is one map look-up; the zone's consistency (which may
    // cost a catalog query) is asked only when something is.
    const idle = this.gate.idle;
    if (idle !== undefined && idle.call(this.gate, this.name)) return false;
    return this.consistency() === 'pull-first';
  }

  /** The gate's answer for the object `id`: null when nothing is pending. */
  private waitId(id: FileId): Promise<boolean> | null {
    const p = this.pathOf(id);
    return p === undefined ? null : this.gate.wait(this.name, p, this.maxWaitMs);
  }

  /** The gate's answer for the name `name` in directory `dir`. */
  private waitName(dir: FileId, name: Buffer): Promise<boolean> | null {
    const d = this.pathOf(dir);
    return d === undefined ? null : this.gate.wait(this.name, childPath(d, name), this.maxWaitMs);
  }

  /** Wait for `a` (and `b`), then run `call`; JUKEBOX when a wait timed out. */
  private async after<T>(a: Promise<boolean> | null, b: Promise<boolean> | null, call: () => Promise<T>): Promise<T> {
    const ms = this.maxWaitMs;
    const [okA, okB] = await Promise.all([a === null ? true : bounded(a, ms), b === null ? true : bounded(b, ms)]);
    if (!okA || !okB) throw jukebox();
    return call();
  }

  // Reads, COMMIT and close are never gated (inherited pass-through).

  // ---------------------------------------------------------------- gated mutations

  override write(ctx: CallContext, id: FileId, offset: number, data: Buffer, stable: StableHow): Promise<{ count: number; committed: StableHow; file: Wcc }> {
    const w = this.gates(ctx) ? this.waitId(id) : null;
    if (w === null) return this.inner.write(ctx, id, offset, data, stable);
    return this.after(w, null, () => this.inner.write(ctx, id, offset, data, stable));
  }

  override setattr(ctx: CallContext, id: FileId, attrs: SetAttrs, guardCtime?: Time): Promise<Wcc> {
    const w = this.gates(ctx) ? this.waitId(id) : null;
    if (w === null) return this.inner.setattr(ctx, id, attrs, guardCtime);
    return this.after(w, null, () => this.inner.setattr(ctx, id, attrs, guardCtime));
  }

  override create(ctx: CallContext, dir: FileId, name: Buffer, how: CreateHow): Promise<Created> {
    const w = this.gates(ctx) ? this.waitName(dir, name) : null;
    if (w === null) return this.inner.create(ctx, dir, name, how);
    return this.after(w, null, () => this.inner.create(ctx, dir, name, how));
  }

  override mkdir(ctx: CallContext, dir: FileId, name: Buffer, attrs: SetAttrs): Promise<Created> {
    const w = this.gates(ctx) ? this.waitName(dir, name) : null;
    if (w === null) return this.inner.mkdir(ctx, dir, name, attrs);
    return this.after(w, null, () => this.inner.mkdir(ctx, dir, name, attrs));
  }

  override symlink(ctx: CallContext, dir: FileId, name: Buffer, target: Buffer, attrs: SetAttrs): Promise<Created> {
    const w = this.gates(ctx) ? this.waitName(dir, name) : null;
    if (w === null) return this.inner.symlink(ctx, dir, name, target, attrs);
    return this.after(w, null, () => this.inner.symlink(ctx, dir, name, target, attrs));
  }

  override mknod(
    ctx: CallContext, dir: FileId, name: Buffer, type: FileType, attrs: SetAttrs, rdev?: { major: number; minor: number },
  ): Promise<Created> {
    const w = this.gates(ctx) ? this.waitName(dir, name) : null;
    if (w === null) return this.inner.mknod(ctx, dir, name, type, attrs, rdev);
    return this.after(w, null, () => this.inner.mknod(ctx, dir, name, type, attrs, rdev));
  }

  override remove(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    const w = this.gates(ctx) ? this.waitName(dir, name) : null;
    if (w === null) return this.inner.remove(ctx, dir, name);
    return this.after(w, null, () => this.inner.remove(ctx, dir, name));
  }

  override rmdir(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    const w = this.gates(ctx) ? this.waitName(dir, name) : null;
    if (w === null) return this.inner.rmdir(ctx, dir, name);
    return this.after(w, null, () => this.inner.rmdir(ctx, dir, name));
  }

  override rename(ctx: CallContext, fromDir: FileId, fromName: Buffer, toDir: FileId, toName: Buffer): Promise<{ from: Wcc; to: Wcc }> {
    let a: Promise<boolean> | null = null;
    let b: Promise<boolean> | null = null;
    if (this.gates(ctx)) {
      a = this.waitName(fromDir, fromName);
      b = this.waitName(toDir, toName);
    }
    if (a === null && b === null) return this.inner.rename(ctx, fromDir, fromName, toDir, toName);
    return this.after(a, b, () => this.inner.rename(ctx, fromDir, fromName, toDir, toName));
  }

  override link(ctx: CallContext, id: FileId, dir: FileId, name: Buffer): Promise<{ attr?: Attr; dir: Wcc }> {
    let a: Promise<boolean> | null = null;
    let b: Promise<boolean> | null = null;
    if (this.gates(ctx)) {
      a = this.waitName(dir, name);
      b = this.waitId(id);
    }
    if (a === null && b === null) return this.inner.link(ctx, id, dir, name);
    return this.after(a, b, () => this.inner.link(ctx, id, dir, name));
  }
}
