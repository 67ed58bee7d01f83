import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { DIRECT_ALIGN, DirectWriter, resetDirectIo } from '../src/util/direct-io.js';
import { createZfsTestPool, zfsFuseUnavailableReason, type ZfsTestPool } from './harness/zfs-pool.js';

const MiB = 1024 * 1024;
/** Filesystems known to take O_DIRECT (statfs magic numbers): ext2/3/4, XFS, Btrfs. */
const DIRECT_FS = new Set([0xef53, 0x58465342, 0x9123683e]);

describe('DirectWriter (O_DIRECT block writes)', () => {
  let dir: string;
  beforeEach(() => {
    resetDirectIo();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-dio-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes full and short blocks that read back exactly once the file is cut to size', async () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    const w = await DirectWriter.open(file, dir, MiB);
    if (DIRECT_FS.has(fs.statfsSync(dir).type)) expect(w).not.toBeNull();
    if (!w) return;
    const a = randomBytes(MiB);
    // A short last block, not a multiple of the alignment: written padded.
    const b = randomBytes(5000);
    // The source buffers are plain (unaligned) allocations, and a view at an odd offset.
    const odd = Buffer.concat([Buffer.alloc(3), b]).subarray(3);
    expect(await w.write(a, MiB, 0)).toBe(true);
    expect(await w.write(odd, b.length, MiB)).toBe(true);
    await w.close();
    expect(fs.statSync(file).size).toBe(MiB + Math.ceil(5000 / DIRECT_ALIGN) * DIRECT_ALIGN);
    fs.truncateSync(file, MiB + b.length);
    expect(fs.readFileSync(file).equals(Buffer.concat([a, b]))).toBe(true);
    // The probe file is gone.
    expect(fs.readdirSync(dir)).toEqual(['f']);
  });

  it('refuses (writes nothing) a misaligned offset or a block larger than its buffers', async () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    const w = await DirectWriter.open(file, dir, 64 * 1024);
    if (!w) return;
    expect(await w.write(randomBytes(4096), 4096, 512)).toBe(false);
    expect(await w.write(randomBytes(128 * 1024), 128 * 1024, 0)).toBe(false);
    await w.close();
    expect(fs.statSync(file).size).toBe(0);
  });

  it('a filesystem that refuses O_DIRECT answers null, and stays refused', async () => {
    // /dev/shm is tmpfs: older kernels refuse O_DIRECT there; newer ones take it. Either way the
    // answer is consistent and, when a writer comes back, it writes correctly.
    const shm = '/dev/shm';
    if (!fs.existsSync(shm)) return;
    const d = fs.mkdtempSync(path.join(shm, 'gv-dio-'));
    try {
      const file = path.join(d, 'f');
      fs.writeFileSync(file, '');
      const first = await DirectWriter.open(file, d, MiB);
      const data = randomBytes(MiB);
      const wrote = first ? await first.write(data, MiB, 0) : false;
      await first?.close();
      const second = await DirectWriter.open(file, d, MiB);
      await second?.close();
      if (!wrote) {
        expect(second).toBeNull();
      } else {
        expect(fs.readFileSync(file).equals(data)).toBe(true);
      }
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  it('a filesystem that refuses O_DIRECT at open is remembered: no writer for any file on it', async () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    const O_DIRECT = (fs.constants as Record<string, number | undefined>)['O_DIRECT'];
    if (O_DIRECT === undefined) return;
    const einval = Object.assign(new Error('EINVAL: invalid argument, open'), { code: 'EINVAL' });
    const real = fsp.open;
    const spy = vi.spyOn(fsp, 'open').mockImplementation(((p: string, flags: number, mode?: number) =>
      (typeof flags === 'number' && (flags & O_DIRECT) !== 0 ? Promise.reject(einval) : real(p, flags, mode))) as typeof fsp.open);
    try {
      expect(await DirectWriter.open(file, dir, MiB)).toBeNull();
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
    // Remembered: not even tried again on this filesystem.
    const again = vi.spyOn(fsp, 'open');
    try {
      expect(await DirectWriter.open(file, dir, MiB)).toBeNull();
      expect(again).not.toHaveBeenCalled();
    } finally {
      again.mockRestore();
    }
  });

  it('no aligned offset found (the probe refuses every one): the write answers false, writes nothing, and later files skip O_DIRECT', async () => {
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, '');
    const w = await DirectWriter.open(file, dir, MiB);
    if (!w) return;
    const einval = Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' });
    const spy = vi.spyOn(fs, 'writeSync').mockImplementation(() => {
      throw einval;
    });
    try {
      expect(await w.write(randomBytes(MiB), MiB, 0)).toBe(false);
      // The probe tried every 16-byte step of the 4 KiB slack.
      expect(spy).toHaveBeenCalledTimes(DIRECT_ALIGN / 16);
    } finally {
      spy.mockRestore();
      await w.close();
    }
    expect(fs.statSync(file).size).toBe(0);
    expect(fs.readdirSync(dir)).toEqual(['f']); // the probe file is gone
    expect(await DirectWriter.open(file, dir, MiB)).toBeNull();
  });
});

const zfsReason = await zfsFuseUnavailableReason();

describe.skipIf(zfsReason !== null)('DirectWriter on a real ZFS dataset (zfs-fuse)', () => {
  let pool: ZfsTestPool | undefined;
  let mnt: string;
  beforeAll(async () => {
    resetDirectIo();
    pool = await createZfsTestPool({ sizeBytes: 256 * 1024 * 1024 });
    await pool.zfs.create(pool.dataset('dio'), {});
    mnt = path.join(pool.mountRoot, pool.pool, 'dio');
  }, 200_000);
  afterAll(async () => {
    await pool?.teardown();
  }, 120_000);

  it('full and short blocks read back exactly, whether the filesystem takes O_DIRECT or not', async () => {
    const file = path.join(mnt, 'f');
    fs.writeFileSync(file, '');
    const fh = await fsp.open(file, 'r+');
    const w = await DirectWriter.open(file, mnt, MiB);
    const a = randomBytes(MiB);
    const b = randomBytes(12345);
    try {
      // As fetch.ts does: through the writer when it takes the block, else through the plain descriptor.
      for (const [data, off] of [[a, 0], [b, MiB]] as const) {
        if (!(w && (await w.write(data, data.length, off)))) await fh.write(data, 0, data.length, off);
      }
      await fh.truncate(MiB + b.length);
      await fh.sync();
    } finally {
      await w?.close();
      await fh.close();
    }
    expect(fs.readFileSync(file).equals(Buffer.concat([a, b]))).toBe(true);
    expect(fs.readdirSync(mnt)).toEqual(['f']);
  });
});
