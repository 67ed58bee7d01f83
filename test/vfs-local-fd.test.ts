/**
 * LocalFile.closeSoon: small files that still have a name are closed at once (no threadpool
 * round trip); a removed file (its last close frees the blocks) or a large one is closed on the
 * threadpool; a descriptor is never closed twice.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalFile } from '../src/vfs/local-fd.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-localfd-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

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

  it('closes a removed file on the threadpool (still open right after the call, closed later)', async () => {
    const f = openFile('gone', 4096);
    fs.unlinkSync(path.join(dir, 'gone'));
    f.closeSoon();
    expect(isOpen(f.fd)).toBe(true);
    await settle();
    expect(isOpen(f.fd)).toBe(false);
  });

  it('closes a file over 1 MiB on the threadpool', async () => {
    const f = openFile('large', (1 << 20) + 1);
    f.closeSoon();
    expect(isOpen(f.fd)).toBe(true);
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
