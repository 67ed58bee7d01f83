/**
 * Pull before write: the paths of remote rows fetched but not applied yet are pending; a write
 * to one of them waits (bounded) until the pull landed. Nothing is pending before a page is
 * fetched — the NFS side only asks, so the hot path is one map lookup.
 */
import type { PullGate } from './source.js';

export class PendingPaths implements PullGate {
  /** zone → path (latin1) → count of pulls holding it. */
  private readonly pending = new Map<string, Map<string, number>>();
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(private readonly waits: (zone: string) => boolean) {}

  /** Mark paths pending; answers the release. */
  add(zone: string, paths: readonly Buffer[]): () => void {
    let m = this.pending.get(zone);
    if (!m) this.pending.set(zone, (m = new Map()));
    const keys = paths.map((p) => p.toString('latin1'));
    for (const k of keys) m.set(k, (m.get(k) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      for (const k of keys) {
        const n = (m!.get(k) ?? 1) - 1;
        if (n > 0) m!.set(k, n);
        else {
          m!.delete(k);
          const wk = `${zone}\0${k}`;
          const ws = this.waiters.get(wk);
          if (ws) {
            this.waiters.delete(wk);
            for (const w of ws) w();
          }
        }
      }
      if (m!.size === 0) this.pending.delete(zone);
    };
  }

  /** True when nothing of `zone` is pending (the NFS side then skips computing paths). */
  idle(zone: string): boolean {
    return !this.pending.has(zone);
  }

  count(zone: string): number {
    return this.pending.get(zone)?.size ?? 0;
  }

  isPending(zone: string, path: Buffer): boolean {
    return this.pending.get(zone)?.has(path.toString('latin1')) ?? false;
  }

  wait(zone: string, path: Buffer, maxWaitMs: number): Promise<boolean> | null {
    const m = this.pending.get(zone);
    if (!m) return null;
    const k = path.toString('latin1');
    if (!m.has(k) || !this.waits(zone)) return null;
    return new Promise<boolean>((resolve) => {
      const wk = `${zone}\0${k}`;
      let ws = this.waiters.get(wk);
      if (!ws) this.waiters.set(wk, (ws = new Set()));
      const done = (): void => {
        clearTimeout(t);
        resolve(true);
      };
      const t = setTimeout(() => {
        ws!.delete(done);
        resolve(false);
      }, Math.max(0, maxWaitMs));
      ws.add(done);
    });
  }
}
