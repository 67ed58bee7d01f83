import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SyncHelper, syncFileSystem } from '../src/replication/staging.js';

const linux = process.platform === 'linux';

describe('syncFileSystem and its helper shell', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-sync-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it.runIf(linux)('answers each request with its own exit status, in order, with odd directory names', async () => {
    const h = new SyncHelper();
    try {
      const odd = path.join(dir, ` sp ace "q" $(x) \\ 'a'\t`);
      fs.mkdirSync(odd);
      const missing = path.join(dir, 'missing');
      // Several at once: the answers must not be mixed up.
      const got = await Promise.all([h.sync(dir), h.sync(missing), h.sync(odd), h.sync(missing), h.sync(dir)]);
      expect(got[0]).toBe(0);
      expect(got[2]).toBe(0);
      expect(got[4]).toBe(0);
      expect(got[1]).not.toBe(0);
      expect(got[1]).not.toBeNull();
      expect(got[3]).toBe(got[1]);
    } finally {
      h.close();
    }
  });

  it.runIf(linux)('requests waiting when the shell goes away get null, and a closed helper starts a new shell', async () => {
    const h = new SyncHelper();
    const pending = h.sync(dir);
    h.close();
    expect(await pending).toBeNull();
    // Usable again afterwards (a fresh shell).
    expect(await h.sync(dir)).toBe(0);
    h.close();
  });

  it.runIf(linux)('syncFileSystem: true for a directory, false for a missing one, and a failure does not turn it off', async () => {
    expect(await syncFileSystem(dir)).toBe(true);
    expect(await syncFileSystem(path.join(dir, 'nope'))).toBe(false);
    expect(await syncFileSystem(dir)).toBe(true);
    // A name with a newline cannot go through the shell: spawned directly.
    const nl = path.join(dir, 'a\nb');
    fs.mkdirSync(nl);
    expect(await syncFileSystem(nl)).toBe(true);
  });

  it.runIf(linux)('a request that hangs past the time limit stops the shell: it and the ones behind it answer null', async () => {
    // Each request takes 2 s here (the sleep outlives the shell by that much at most); the limit is 150 ms.
    const h = new SyncHelper({ timeoutMs: 150, script: 'while IFS= read -r d; do sleep 2; echo 0; done' });
    try {
      const got = await Promise.all([h.sync(dir), h.sync(dir)]);
      // Answered '0' only if the limit did not stop the shell.
      expect(got).toEqual([null, null]);
    } finally {
      h.close();
    }
  });
});
