/**
 * LocalFile.closeSoon: small files that still have a name are closed at once (no threadpool
 * round trip); a removed file (its last close frees the blocks) or a large one is closed on the
 * threadpool; a descriptor is never closed twice.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LocalFile } from '../src/vfs/local-fd.js';
import { FdCache } from '../src/vfs/local-fdcache.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-localfd-'));
});
afterEach(() => {
  vi.restoreAllMocks();
  fs.rmSync(dir, { recursive: true, force: true });
});

const isOpen = (fd: number): boolean => {
  try {
    fs.fstatSync(fd);
    return true;
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('EBADF');
    return false;
  }
};

function openFile(name: string, size: number): LocalFile {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(size, 7));
  return LocalFile.open(Buffer.from(p), fs.constants.O_RDWR);
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 20));
}

describe('LocalFile.closeSoon', () => {
  it('closes a small file that still has a name before returning', () => {
    const f = openFile('small', 4096);
    expect(isOpen(f.fd)).toBe(true);
    f.closeSoon();
    expect(isOpen(f.fd)).toBe(false);
  });

  it.each([
    ['a removed file (its last close frees the blocks)', 'gone', 4096, true],
    ['a file over 1 MiB', 'large', (1 << 20) + 1, false],
  ] as const)('closes %s on the threadpool', async (_what, name, size, remove) => {
    const f = openFile(name, size);
    if (remove) fs.unlinkSync(path.join(dir, name));
    const sync = vi.spyOn(fs, 'closeSync');
    const async = vi.spyOn(fs, 'close');
    f.closeSoon();
    expect(sync).not.toHaveBeenCalled();
    expect(async).toHaveBeenCalledWith(f.fd, expect.any(Function));
    await settle();
    expect(isOpen(f.fd)).toBe(false);
  });

  it('never closes a descriptor twice (its number may belong to another file by then)', async () => {
    const f = openFile('once', 10);
    f.closeSoon();
    // The number is free again: the next open may get it.
    const g = openFile('other', 10);
    f.closeSoon();
    await f.close();
    expect(isOpen(g.fd)).toBe(true);
    g.closeSoon();
  });
});

describe('FdCache', () => {
  const opener = (name: string) => async () => ({ fh: openFile(name, 100), writable: true });

  it('a descriptor it has just opened is never closed by its own trim before the lease is handed out', async () => {
    const cache = new FdCache({ max: 1 });
    const held = await cache.acquire(1n, false, opener('one'));
    // The cache is full of a descriptor in use: opening a second one trims, and the only slot
    // it may retire is the new one, which this acquire is about to hand out.
    const second = await cache.acquire(2n, false, opener('two'));
    expect(isOpen(second.fh.fd)).toBe(true);
    expect(fs.fstatSync(second.fh.fd).size).toBe(100);
    second.release();
    held.release();
    await cache.closeAll();
  });

  it('a slot retired while leased is closed when its last lease goes', async () => {
    const cache = new FdCache({ max: 1 });
    const a = await cache.acquire(1n, false, opener('a'));
    const b = await cache.acquire(2n, false, opener('b')); // over max, both in use: both kept
    a.release();
    cache.invalidate(2n); // retired while b still uses it
    expect(isOpen(b.fh.fd)).toBe(true);
    b.release();
    expect(isOpen(b.fh.fd)).toBe(false); // small file with a name: closed at once
    await cache.closeAll();
  });
});
