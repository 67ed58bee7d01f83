/**
 * A token bucket on block bytes: `take(n)` resolves once n bytes fit under the rate (bursts up
 * to one second's worth). Without a rate it resolves at once.
 */
export class TokenBucket {
  private tokens: number;
  private last = Date.now();

  constructor(private readonly bytesPerSec: number | undefined) {
    this.tokens = bytesPerSec ?? 0;
  }

  async take(n: number): Promise<void> {
    const rate = this.bytesPerSec;
    if (!rate || rate <= 0) return;
    for (let i = 0; i < 10_000; i++) {
      const now = Date.now();
      this.tokens = Math.min(rate, this.tokens + ((now - this.last) / 1000) * rate);
      this.last = now;
      // A request larger than the burst goes once the bucket is full.
      if (this.tokens >= Math.min(n, rate)) {
        this.tokens -= n;
        return;
      }
      const wait = Math.ceil(((Math.min(n, rate) - this.tokens) / rate) * 1000);
      await new Promise((r) => setTimeout(r, Math.max(1, Math.min(wait, 1000))));
    }
  }
}

/** Bytes per second over a sliding window of the last `windowMs`. */
export class RateMeter {
  private readonly samples: [number, number][] = [];

  constructor(private readonly windowMs = 5000) {}

  add(bytes: number): void {
    this.samples.push([Date.now(), bytes]);
    this.trim();
  }

  rate(): number {
    this.trim();
    let sum = 0;
    for (const [, b] of this.samples) sum += b;
    return Math.round((sum * 1000) / this.windowMs);
  }

  private trim(): void {
    const cut = Date.now() - this.windowMs;
    while (this.samples.length > 0 && this.samples[0]![0] < cut) this.samples.shift();
    if (this.samples.length > 10_000) this.samples.splice(0, this.samples.length - 10_000);
  }
}
