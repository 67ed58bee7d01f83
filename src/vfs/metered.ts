/**
 * `metered(zone, meter)`: a ZoneFs that forwards every call to `zone` and counts bytes read and
 * written and failures by operation and error code. It adds no copies: READ's buffer and WRITE's
 * data pass through untouched; the cost on the hot path is one extra promise reaction and one
 * counter addition. This module knows nothing of Prometheus: the meter is three callbacks.
 */
import { GvError, toGvError } from '../errors.js';
import type {
  Attr, CallContext, Created, CreateHow, DirPage, FileId, FileType, FsStat, PathConf, ReaddirOptions, SetAttrs,
  StableHow, Time, Wcc, ZoneFs,
} from './types.js';

export interface ZoneMeter {
  /** Bytes a READ returned. */
  read(bytes: number): void;
  /** Bytes a WRITE wrote. */
  written(bytes: number): void;
  /** A failed operation: its name (e.g. "write") and the error code (e.g. "EDQUOT"). */
  error(op: string, code: string): void;
}

function codeOf(err: unknown): string {
  return err instanceof GvError ? err.code : toGvError(err).code;
}

/** Wrap `zone`; `inner` gives the wrapped backend back (for backend-specific state such as usage). */
export function metered(zone: ZoneFs, meter: ZoneMeter): ZoneFs & { readonly inner: ZoneFs } {
  return new MeteredZoneFs(zone, meter);
}

class MeteredZoneFs implements ZoneFs {
  readonly name: string;
  readonly zoneId: number;
  readonly rootId: FileId;

  // The synchronous forms exist exactly when the wrapped zone has them (see ZoneFs); failures are
  // counted as for the asynchronous forms.
  readonly generationNow?: (id: FileId) => number;
  readonly getattrNow?: (ctx: CallContext, id: FileId) => Attr;
  readonly lookupNow?: (ctx: CallContext, dir: FileId, name: Buffer) => { id: FileId; attr: Attr; dirAttr?: Attr };
  readonly accessNow?: (ctx: CallContext, id: FileId, mask: number) => { granted: number; attr: Attr };

  constructor(
    readonly inner: ZoneFs,
    private readonly meter: ZoneMeter,
  ) {
    this.name = inner.name;
    this.zoneId = inner.zoneId;
    this.rootId = inner.rootId;
    // Handle validation, not a client operation: not counted (as generation()).
    if (inner.generationNow) this.generationNow = (id) => inner.generationNow!(id);
    if (inner.getattrNow) this.getattrNow = this.counted('getattr', inner.getattrNow.bind(inner));
    if (inner.lookupNow) this.lookupNow = this.counted('lookup', inner.lookupNow.bind(inner));
    if (inner.accessNow) this.accessNow = this.counted('access', inner.accessNow.bind(inner));
  }

  /** `f` with its throws counted under `op` (and passed on unchanged). */
  private counted<A extends unknown[], R>(op: string, f: (...args: A) => R): (...args: A) => R {
    return (...args: A): R => {
      try {
        return f(...args);
      } catch (err) {
        this.meter.error(op, codeOf(err));
        throw err;
      }
    };
  }

  /** Count a rejection under `op` and pass it on unchanged. */
  private guard<T>(op: string, p: Promise<T>): Promise<T> {
    return p.catch((err: unknown) => {
      this.meter.error(op, codeOf(err));
      throw err;
    });
  }

  read(ctx: CallContext, id: FileId, offset: number, count: number, into?: Buffer): Promise<{ data: Buffer; eof: boolean; attr?: Attr }> {
    // `into` (a pooled buffer the caller reads into) is passed through: zero-copy READ stays so.
    return this.inner.read(ctx, id, offset, count, into).then(
      (r) => {
        this.meter.read(r.data.length);
        return r;
      },
      (err: unknown) => {
        this.meter.error('read', codeOf(err));
        throw err;
      },
    );
  }

  write(ctx: CallContext, id: FileId, offset: number, data: Buffer, stable: StableHow): Promise<{ count: number; committed: StableHow; file: Wcc }> {
    return this.inner.write(ctx, id, offset, data, stable).then(
      (r) => {
        this.meter.written(r.count);
        return r;
      },
      (err: unknown) => {
        this.meter.error('write', codeOf(err));
        throw err;
      },
    );
  }

  getattr(ctx: CallContext, id: FileId): Promise<Attr> {
    return this.guard('getattr', this.inner.getattr(ctx, id));
  }

  generation(id: FileId): Promise<number> {
    // Handle validation, not a client operation: ESTALE here is routine and not counted.
    return this.inner.generation(id);
  }

  setattr(ctx: CallContext, id: FileId, attrs: SetAttrs, guardCtime?: Time): Promise<Wcc> {
    return this.guard('setattr', this.inner.setattr(ctx, id, attrs, guardCtime));
  }

  lookup(ctx: CallContext, dir: FileId, name: Buffer): Promise<{ id: FileId; attr: Attr; dirAttr?: Attr }> {
    return this.guard('lookup', this.inner.lookup(ctx, dir, name));
  }

  access(ctx: CallContext, id: FileId, mask: number): Promise<{ granted: number; attr: Attr }> {
    return this.guard('access', this.inner.access(ctx, id, mask));
  }

  readlink(ctx: CallContext, id: FileId): Promise<{ target: Buffer; attr?: Attr }> {
    return this.guard('readlink', this.inner.readlink(ctx, id));
  }

  create(ctx: CallContext, dir: FileId, name: Buffer, how: CreateHow): Promise<Created> {
    return this.guard('create', this.inner.create(ctx, dir, name, how));
  }

  mkdir(ctx: CallContext, dir: FileId, name: Buffer, attrs: SetAttrs): Promise<Created> {
    return this.guard('mkdir', this.inner.mkdir(ctx, dir, name, attrs));
  }

  symlink(ctx: CallContext, dir: FileId, name: Buffer, target: Buffer, attrs: SetAttrs): Promise<Created> {
    return this.guard('symlink', this.inner.symlink(ctx, dir, name, target, attrs));
  }

  mknod(
    ctx: CallContext, dir: FileId, name: Buffer, type: FileType, attrs: SetAttrs, rdev?: { major: number; minor: number },
  ): Promise<Created> {
    return this.guard('mknod', this.inner.mknod(ctx, dir, name, type, attrs, rdev));
  }

  remove(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    return this.guard('remove', this.inner.remove(ctx, dir, name));
  }

  rmdir(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    return this.guard('rmdir', this.inner.rmdir(ctx, dir, name));
  }

  rename(ctx: CallContext, fromDir: FileId, fromName: Buffer, toDir: FileId, toName: Buffer): Promise<{ from: Wcc; to: Wcc }> {
    return this.guard('rename', this.inner.rename(ctx, fromDir, fromName, toDir, toName));
  }

  link(ctx: CallContext, id: FileId, dir: FileId, name: Buffer): Promise<{ attr?: Attr; dir: Wcc }> {
    return this.guard('link', this.inner.link(ctx, id, dir, name));
  }

  readdir(ctx: CallContext, dir: FileId, opts: ReaddirOptions): Promise<DirPage> {
    return this.guard('readdir', this.inner.readdir(ctx, dir, opts));
  }

  fsstat(ctx: CallContext, id: FileId): Promise<{ stat: FsStat; attr?: Attr }> {
    return this.guard('fsstat', this.inner.fsstat(ctx, id));
  }

  pathconf(ctx: CallContext, id: FileId): Promise<{ conf: PathConf; attr?: Attr }> {
    return this.guard('pathconf', this.inner.pathconf(ctx, id));
  }

  commit(ctx: CallContext, id: FileId, offset: number, count: number): Promise<Wcc> {
    return this.guard('commit', this.inner.commit(ctx, id, offset, count));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The zone look-up the NFS program uses (structurally nfs/resolve.ts's ZoneRegistry). */
export interface ZoneSource {
  byId(zoneId: number): ZoneFs | undefined;
  list(): ZoneFs[];
  allows?(zoneId: number, address: string): boolean;
}

/**
 * The same zones, each seen through `metered`. Wrappers are made on first use and cached per zone
 * object, so zones opened or replaced later (reload) are metered too, and a look-up costs one
 * WeakMap hit.
 */
export function meteredZones<R extends ZoneSource>(zones: R, meterFor: (zone: ZoneFs) => ZoneMeter): R {
  const cache = new WeakMap<ZoneFs, ZoneFs>();
  const wrap = (z: ZoneFs): ZoneFs => {
    let m = cache.get(z);
    if (!m) {
      m = metered(z, meterFor(z));
      cache.set(z, m);
    }
    return m;
  };
  const view: ZoneSource = {
    byId: (id) => {
      const z = zones.byId(id);
      return z === undefined ? undefined : wrap(z);
    },
    list: () => zones.list().map(wrap),
  };
  if (zones.allows) view.allows = zones.allows.bind(zones);
  return { ...zones, ...view } as R;
}
