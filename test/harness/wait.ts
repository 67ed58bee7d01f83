import type { ChangeRow } from '../../src/journal/changes.js';

/** Poll `fn` until it returns something truthy, at most `ms` milliseconds, every `stepMs`. */
export async function waitFor<T>(
  what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, ms = 5000, stepMs = 20,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Journal rows as `kind path[ -> toPath]` lines, for readable assertions. */
export const changeSummary = (rs: ChangeRow[]): string[] =>
  rs.map((r) => `${r.kind} ${r.path.toString()}${r.toPath ? ` -> ${r.toPath.toString()}` : ''}`);
