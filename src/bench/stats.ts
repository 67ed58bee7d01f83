/** Summary of repeated measurements of a "higher is better" rate (MiB/s, ops/s). */
export interface RateSummary {
  /** every run, in the order measured */
  values: number[];
  best: number;
  median: number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function summarizeRates(values: readonly number[]): RateSummary {
  return {
    values: [...values],
    best: values.length ? Math.max(...values) : Number.NaN,
    median: median(values),
  };
}

/** a / b, or null when either side is missing or b is 0 */
export function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return null;
  return a / b;
}
