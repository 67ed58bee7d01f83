/**
 * LocalSource: what a node serves its peers — journal pages, entries with checked inline data,
 * byte ranges — and what it refuses.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import { hashBuffer } from '../src/journal/hasher.js';
import { BLOCK_SIZE } from '../src/replication/source.js';
import { mkdir, ReplicaLab, symlink, writeFile, ZONE } from './harness/replica-cluster.js';

let lab: ReplicaLab | null = null;

afterEach(async () => {
  await lab?.close();
  lab = null;
});

const caller = { nodeId: 'ff'.repeat(16), nodeName: 'peer' };
const b = (s: string): Buffer => Buffer.from(s);

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof GvError ? err.code : `not a GvError: ${String(err)}`;
  }
}

describe('LocalSource', () => {
  it('journal pages, entries with inline data checked against the index, blocks, refusals', async () => {
    lab = new ReplicaLab();
    const a = await lab.add('a');
    await mkdir(a, 'd');
    await writeFile(a, 'd/small', 'small content', 0o640);
    const big = Buffer.alloc(BLOCK_SIZE + 10, 7);
    await writeFile(a, 'big', big);
    await symlink(a, 'ln', 'd/small');
    const src = a.source;

    const page = await src.journal(caller, ZONE, 0n, 2);
    expect(page.rows.map((r) => r.version)).toEqual([1n, 2n]);
    expect(page.version).toBe(a.att.journal.version());
    expect(await code(src.journal(caller, 'nope', 0n, 10))).toBe('ENOENT');

    const [small, bigE, ln, dir, none, bad] = await src.entries(caller, ZONE, [b('d/small'), b('big'), b('ln'), b('d'), b('missing'), b('../x')], 64 * 1024);
    expect(small!.data!.toString()).toBe('small content');
    expect(small!.hashes!.equals(hashBuffer(b('small content')))).toBe(true);
    expect(small!.mode).toBe(0o100640);
    expect(small!.origin).toBe(a.id);
    expect(bigE!.data).toBeUndefined(); // over inlineMax: fetched by blocks
    expect(ln!.target!.toString()).toBe('d/small');
    expect(dir!.type).toBe('dir');
    expect(none).toBeNull();
    expect(bad).toBeNull();

    // Changed on disk behind the index: the entry comes without data (never bytes that do not
    // match the hashes announced).
    fs.writeFileSync(path.join(a.zoneDir, 'd/small'), 'changed behind the index!');
    const [stale] = await src.entries(caller, ZONE, [b('d/small')], 64 * 1024);
    expect(stale!.data).toBeUndefined();

    const blk = await src.block(caller, ZONE, b('big'), 0n, BLOCK_SIZE);
    expect(blk.length).toBe(BLOCK_SIZE);
    const tail = await src.block(caller, ZONE, b('big'), BigInt(BLOCK_SIZE), BLOCK_SIZE);
    expect(tail.length).toBe(10);
    expect(await code(src.block(caller, ZONE, b('../etc/passwd'), 0n, 10))).toBe('EINVAL');
    expect(await code(src.block(caller, ZONE, b('/etc/passwd'), 0n, 10))).toBe('EINVAL');
    expect(await code(src.block(caller, ZONE, b('.grapevine/tmp/x'), 0n, 10))).toBe('EINVAL');
    expect(await code(src.block(caller, ZONE, b('ln'), 0n, 10))).toBe('ENOENT'); // a symlink is never followed
    expect(await code(src.block(caller, ZONE, b('big'), 0n, BLOCK_SIZE + 1))).toBe('EINVAL');
    expect(await code(src.block(caller, 'nope', b('big'), 0n, 10))).toBe('ENOENT');
    fs.symlinkSync('/etc', path.join(a.zoneDir, 'etc-link'));
    expect(await code(src.block(caller, ZONE, b('etc-link/passwd'), 0n, 10))).toBe('ENOENT');
  });
});
