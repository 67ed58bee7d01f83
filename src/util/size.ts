import { GvError } from '../errors.js';

const UNITS: Record<string, number> = { '': 0, B: 0, K: 1, M: 2, G: 3, T: 4, P: 5, E: 6 };

/**
 * Parse a size the way ZFS writes them: binary units (K = 2^10, M = 2^20, ...), an optional
 * fraction (1.5T), an optional trailing B/iB, case-insensitive. A plain number is bytes.
 * Throws GvError('CONFIG') with the reason; the caller adds the file and key.
 */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw new GvError('CONFIG', `bad size ${input}: must be a whole number of bytes >= 0`);
    return input;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgtpe]?)(?:i?b)?\s*$/i.exec(input);
  if (!m) throw new GvError('CONFIG', `bad size "${input}": expected a number with an optional unit K, M, G, T, P or E (e.g. 512G, 1.5T)`);
  const unit = m[2]!.toUpperCase();
  const n = Number(m[1]) * 2 ** (10 * UNITS[unit]!);
  const bytes = Math.floor(n);
  if (!Number.isSafeInteger(bytes)) throw new GvError('CONFIG', `bad size "${input}": too large`);
  return bytes;
}

/** Format bytes with the largest binary unit that keeps one decimal (for logs). */
export function formatSize(bytes: number): string {
  const names = ['', 'K', 'M', 'G', 'T', 'P', 'E'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < names.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? String(bytes) : `${Number.isInteger(v) ? v : v.toFixed(1)}${names[i]}`;
}
