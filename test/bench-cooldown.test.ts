import { describe, expect, it } from 'vitest';
import { cooldownWait } from '../src/bench/suite.js';

describe('bench: small-file cool-down between systems', () => {
  it('waits only after an earlier system deleted files, for what is left of the window', () => {
    expect(cooldownWait(undefined, 1000)).toBe(0);
    expect(cooldownWait({ ms: 65_000 }, 1000)).toBe(0); // nothing deleted yet: the first system starts at once
    expect(cooldownWait({ ms: 65_000, lastDeletionAt: 10_000 }, 10_000)).toBe(65_000);
    expect(cooldownWait({ ms: 65_000, lastDeletionAt: 10_000 }, 50_000)).toBe(25_000);
    expect(cooldownWait({ ms: 65_000, lastDeletionAt: 10_000 }, 75_000)).toBe(0);
    expect(cooldownWait({ ms: 65_000, lastDeletionAt: 10_000 }, 900_000)).toBe(0);
    // A clock that went backwards never makes it wait longer than the window.
    expect(cooldownWait({ ms: 65_000, lastDeletionAt: 10_000 }, 0)).toBe(65_000);
  });
});
