import type { LocalFile } from './local-fd.js';

export interface OpenedFile {
  fh: LocalFile;
  writable: boolean;
}

/** Opens the file behind an id; asked for a writable handle when `write` is true. */
export type Opener = (write: boolean) => Promise<OpenedFile>;

interface Slot {
  id: bigint;
  pending?: Promise<OpenedFile>;
  file?: OpenedFile;
  refs: number;
  lastUsed: number;
  dead: boolean;
}

export interface FdLease {
  readonly fh: LocalFile;
  readonly writable: boolean;
  release(): void;
}

export interface FdCacheOptions {
  /** Most open handles kept (idle ones beyond this are closed, least recently used first). */
  max?: number;
  /** Close a handle unused for this long. */
  idleMs?: number;
}

/**
 * Open-file cache for READ/WRITE/COMMIT, keyed by fileid, LRU, reference counted so a handle is
 * never closed under an operation in flight. Handles are opened lazily (read-write preferred) and
 * closed when idle for `idleMs`.
 */
export class FdCache {
  private readonly slots = new Map<bigint, Slot>();
  private readonly max: number;
  private readonly idleMs: number;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  opened = 0;

  constructor(opts: FdCacheOptions = {}) {
    this.max = Math.max(1, opts.max ?? 128);
    this.idleMs = Math.max(10, opts.idleMs ?? 5_000);
  }

  get size(): number {
    return this.slots.size;
  }

  /** Whether a descriptor of `id` is cached (open, or being opened). */
  has(id: bigint): boolean {
    const slot = this.slots.get(id);
    return slot !== undefined && !slot.dead;
  }

  async acquire(id: bigint, write: boolean, open: Opener): Promise<FdLease> {
    if (this.closed) throw new Error('fd cache closed');
    // A slot is pinned (refs) from the moment this call picks it, not only once its lease is
    // made: otherwise a trim run meanwhile (this call's own, or another's while this one awaits
    // the open) could retire it and close the descriptor the lease is about to hand out.
    let slot = this.slots.get(id);
    if (slot && !slot.dead) {
      slot.refs++;
      let file: OpenedFile;
      try {
        file = slot.file ?? (await this.settle(slot));
      } catch (err) {
        this.unpin(slot);
        throw err;
      }
      if (!write || file.writable) return this.lease(slot, file);
      // Cached read-only; a writer needs a new handle (which may fail with EACCES/EROFS).
      this.unpin(slot);
      this.retire(slot);
    }
    slot = { id, refs: 1, lastUsed: Date.now(), dead: false };
    slot.pending = open(true);
    this.slots.set(id, slot);
    this.ensureTimer();
    let file: OpenedFile;
    try {
      file = await this.settle(slot);
    } catch (err) {
      slot.refs--;
      throw err;
    }
    this.opened++;
    this.trim();
    return this.lease(slot, file);
  }

  /** Drop a pin taken without a lease; a slot retired meanwhile is closed by its last user. */
  private unpin(slot: Slot): void {
    slot.refs--;
    if (slot.dead && slot.refs === 0 && slot.file) slot.file.fh.closeSoon();
  }

  /** Keep a handle the caller just opened (e.g. by CREATE) for the next READ/WRITE. */
  adopt(id: bigint, file: OpenedFile): void {
    if (this.closed) {
      file.fh.closeSoon();
      return;
    }
    const old = this.slots.get(id);
    if (old) this.retire(old);
    this.slots.set(id, { id, file, refs: 0, lastUsed: Date.now(), dead: false });
    this.ensureTimer();
    this.opened++;
    this.trim();
  }

  /** Forget the handle of `id` (file removed or replaced); closed once no operation uses it. */
  invalidate(id: bigint): void {
    const slot = this.slots.get(id);
    if (slot) this.retire(slot);
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const all = [...this.slots.values()];
    this.slots.clear();
    await Promise.all(all.map(async (s) => {
      s.dead = true;
      const f = s.file ?? (await s.pending?.catch(() => undefined));
      // Shutdown: make UNSTABLE writes not yet COMMITted durable before the handle goes.
      if (f?.writable) await f.fh.sync().catch(() => undefined);
      await f?.fh.close().catch(() => undefined);
    }));
  }

  private async settle(slot: Slot): Promise<OpenedFile> {
    try {
      const file = await slot.pending!;
      slot.file = file;
      slot.pending = undefined;
      // Invalidated while opening: the lease below still works and closes it on release.
      return file;
    } catch (err) {
      if (this.slots.get(slot.id) === slot) this.slots.delete(slot.id);
      slot.dead = true;
      throw err;
    }
  }

  /** A lease on `slot`, which the caller already pinned (counted itself in `refs`). */
  private lease(slot: Slot, file: OpenedFile): FdLease {
    slot.lastUsed = Date.now();
    if (!slot.dead && this.slots.get(slot.id) === slot) {
      // Move to the most recently used end.
      this.slots.delete(slot.id);
      this.slots.set(slot.id, slot);
    }
    let released = false;
    return {
      fh: file.fh,
      writable: file.writable,
      release: () => {
        if (released) return;
        released = true;
        slot.refs--;
        slot.lastUsed = Date.now();
        if (slot.dead && slot.refs === 0) file.fh.closeSoon();
      },
    };
  }

  private retire(slot: Slot): void {
    if (this.slots.get(slot.id) === slot) this.slots.delete(slot.id);
    if (slot.dead) return;
    slot.dead = true;
    // A slot still opening is closed by the release of the lease its opener gets.
    if (slot.refs === 0 && slot.file) slot.file.fh.closeSoon();
  }

  private trim(): void {
    if (this.slots.size <= this.max) return;
    for (const slot of this.slots.values()) {
      if (this.slots.size <= this.max) break;
      if (slot.refs === 0 && slot.file) this.retire(slot);
    }
  }

  private ensureTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), Math.max(5, Math.floor(this.idleMs / 2)));
    this.timer.unref();
  }

  private sweep(): void {
    const limit = Date.now() - this.idleMs;
    for (const slot of [...this.slots.values()]) {
      if (slot.refs === 0 && slot.file && slot.lastUsed < limit) this.retire(slot);
    }
    if (this.slots.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
