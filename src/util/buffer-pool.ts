/**
 * A small pool of equal-sized large buffers. Every 1 MiB WRITE record and READ payload used to be
 * a fresh allocation; V8 counts those as external memory and answered the pressure with a full
 * mark-compact every ~30 ms, about 60% of the daemon's busy time during a sequential write. Reusing
 * a few buffers removes that. `take` returns null when the size is too large or the pool is at its
 * limit (callers then allocate as before), so the pool bounds memory instead of adding to it.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private outstanding = 0;

  constructor(
    readonly bufferSize: number,
    private readonly maxBuffers: number,
  ) {}

  take(size: number): Buffer | null {
    if (size > this.bufferSize) return null;
    const b = this.free.pop();
    if (b) {
      this.outstanding++;
      return b;
    }
    if (this.outstanding >= this.maxBuffers) return null;
    this.outstanding++;
    return Buffer.allocUnsafeSlow(this.bufferSize);
  }

  give(b: Buffer): void {
    this.outstanding--;
    if (b.length === this.bufferSize && this.free.length < this.maxBuffers) this.free.push(b);
  }

  get inUse(): number {
    return this.outstanding;
  }
}
