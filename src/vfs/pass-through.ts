/**
 * A ZoneFs that forwards every call to the one it wraps. The wrappers (journaled, gated) extend it
 * and override only the calls they act on.
 */
import type {
  Attr, CallContext, CreateHow, Created, DirPage, FileId, FileType, FsStat, PathConf, ReaddirOptions, SetAttrs,
  StableHow, Time, Wcc, ZoneFs,
} from './types.js';

export class PassThroughZoneFs implements ZoneFs {
  readonly name: string;
  readonly zoneId: number;
  readonly rootId: FileId;

  // The synchronous forms exist exactly when the wrapped backend has them (see ZoneFs).
  readonly generationNow?: (id: FileId) => number;
  readonly getattrNow?: (ctx: CallContext, id: FileId) => Attr;
  readonly lookupNow?: (ctx: CallContext, dir: FileId, name: Buffer) => { id: FileId; attr: Attr; dirAttr?: Attr };
  readonly accessNow?: (ctx: CallContext, id: FileId, mask: number) => { granted: number; attr: Attr };

  constructor(readonly inner: ZoneFs) {
    this.name = inner.name;
    this.zoneId = inner.zoneId;
    this.rootId = inner.rootId;
    if (inner.generationNow) this.generationNow = (id) => inner.generationNow!(id);
    if (inner.getattrNow) this.getattrNow = (ctx, id) => inner.getattrNow!(ctx, id);
    if (inner.lookupNow) this.lookupNow = (ctx, dir, name) => inner.lookupNow!(ctx, dir, name);
    if (inner.accessNow) this.accessNow = (ctx, id, mask) => inner.accessNow!(ctx, id, mask);
  }

  getattr(ctx: CallContext, id: FileId): Promise<Attr> {
    return this.inner.getattr(ctx, id);
  }

  generation(id: FileId): Promise<number> {
    return this.inner.generation(id);
  }

  setattr(ctx: CallContext, id: FileId, attrs: SetAttrs, guardCtime?: Time): Promise<Wcc> {
    return this.inner.setattr(ctx, id, attrs, guardCtime);
  }

  lookup(ctx: CallContext, dir: FileId, name: Buffer): Promise<{ id: FileId; attr: Attr; dirAttr?: Attr }> {
    return this.inner.lookup(ctx, dir, name);
  }

  access(ctx: CallContext, id: FileId, mask: number): Promise<{ granted: number; attr: Attr }> {
    return this.inner.access(ctx, id, mask);
  }

  readlink(ctx: CallContext, id: FileId): Promise<{ target: Buffer; attr?: Attr }> {
    return this.inner.readlink(ctx, id);
  }

  read(ctx: CallContext, id: FileId, offset: number, count: number, into?: Buffer): Promise<{ data: Buffer; eof: boolean; attr?: Attr }> {
    return this.inner.read(ctx, id, offset, count, into);
  }

  write(ctx: CallContext, id: FileId, offset: number, data: Buffer, stable: StableHow): Promise<{ count: number; committed: StableHow; file: Wcc }> {
    return this.inner.write(ctx, id, offset, data, stable);
  }

  create(ctx: CallContext, dir: FileId, name: Buffer, how: CreateHow): Promise<Created> {
    return this.inner.create(ctx, dir, name, how);
  }

  mkdir(ctx: CallContext, dir: FileId, name: Buffer, attrs: SetAttrs): Promise<Created> {
    return this.inner.mkdir(ctx, dir, name, attrs);
  }

  symlink(ctx: CallContext, dir: FileId, name: Buffer, target: Buffer, attrs: SetAttrs): Promise<Created> {
    return this.inner.symlink(ctx, dir, name, target, attrs);
  }

  mknod(
    ctx: CallContext, dir: FileId, name: Buffer, type: FileType, attrs: SetAttrs, rdev?: { major: number; minor: number },
  ): Promise<Created> {
    return this.inner.mknod(ctx, dir, name, type, attrs, rdev);
  }

  remove(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    return this.inner.remove(ctx, dir, name);
  }

  rmdir(ctx: CallContext, dir: FileId, name: Buffer): Promise<Wcc> {
    return this.inner.rmdir(ctx, dir, name);
  }

  rename(ctx: CallContext, fromDir: FileId, fromName: Buffer, toDir: FileId, toName: Buffer): Promise<{ from: Wcc; to: Wcc }> {
    return this.inner.rename(ctx, fromDir, fromName, toDir, toName);
  }

  link(ctx: CallContext, id: FileId, dir: FileId, name: Buffer): Promise<{ attr?: Attr; dir: Wcc }> {
    return this.inner.link(ctx, id, dir, name);
  }

  readdir(ctx: CallContext, dir: FileId, opts: ReaddirOptions): Promise<DirPage> {
    return this.inner.readdir(ctx, dir, opts);
  }

  fsstat(ctx: CallContext, id: FileId): Promise<{ stat: FsStat; attr?: Attr }> {
    return this.inner.fsstat(ctx, id);
  }

  pathconf(ctx: CallContext, id: FileId): Promise<{ conf: PathConf; attr?: Attr }> {
    return this.inner.pathconf(ctx, id);
  }

  commit(ctx: CallContext, id: FileId, offset: number, count: number): Promise<Wcc> {
    return this.inner.commit(ctx, id, offset, count);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
