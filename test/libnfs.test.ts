/**
 * A real NFSv3 client (libnfs 4.0: Debian's nfs-cp / nfs-ls / nfs-cat, and test/c/nfsprobe.c on
 * the libnfs high-level API) against the daemon, with every result checked on the host side too.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startTestDaemon, type TestDaemon } from './harness/daemon.js';
import { expectOk, mountZone, STABLE, statName } from './harness/nfs3-client.js';

const ZONE = 'tier-1';
const QUOTA_BYTES = 1 << 30; // quota = "1G"
const LIBNFS_HEADER = '/usr/include/nfsc/libnfs.h';

/** Make sure the libnfs tools and headers exist, installing the Debian packages if allowed. */
function libnfsMissing(): string | null {
  const have = () => fs.existsSync(LIBNFS_HEADER) && fs.existsSync('/usr/bin/nfs-cp') && fs.existsSync('/usr/bin/nfs-ls') && fs.existsSync('/usr/bin/nfs-cat');
  if (!have() && process.getuid?.() === 0) {
    spawnSync('apt-get', ['install', '-y', 'libnfs-utils', 'libnfs-dev'], { stdio: 'ignore', timeout: 300_000 });
  }
  if (!have()) return `libnfs-dev / libnfs-utils not installed (${LIBNFS_HEADER}, nfs-cp) and could not be installed`;
  if (spawnSync('cc', ['--version'], { stdio: 'ignore' }).status !== 0) return 'no C compiler (cc)';
  return null;
}

const missing = libnfsMissing();
if (missing) console.warn(`skipping libnfs tests: ${missing}`);

let d: TestDaemon;
let work: string;
let probeBin: string;
let hostZone: string;

function sha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

function run(cmd: string, args: string[], input?: string, timeoutMs = 120_000): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(cmd, args, { input, timeout: timeoutMs, maxBuffer: 256 << 20 });
  return { status: r.status, stdout: r.stdout ?? Buffer.alloc(0), stderr: (r.stderr ?? Buffer.alloc(0)).toString() + (r.error ? String(r.error) : '') };
}

/** Like run(), without blocking the event loop, so several clients run at once. */
function runAsync(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 100_000) stderr += b.toString();
    });
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ status: code, stderr });
    });
  });
}

/** Run nfsprobe with one command per line; returns the result line of each command, and `E` lines. */
function probe(lines: string[], urlExtra = ''): { results: string[]; entries: string[] } {
  const r = run(probeBin, [d.url(ZONE) + urlExtra], lines.join('\n') + '\n');
  const out = r.stdout.toString().split('\n').filter((l) => l.length > 0);
  expect(out[0], `nfsprobe did not mount: ${out.join('\n')} ${r.stderr}`).toBe('OK mount');
  expect(out[out.length - 1], `nfsprobe did not finish (status ${r.status}): ${r.stderr}`).toBe('OK done');
  const body = out.slice(1, -1);
  const results = body.filter((l) => !l.startsWith('E '));
  const entries = body.filter((l) => l.startsWith('E '));
  const commands = lines.filter((l) => l.trim() && !l.startsWith('#'));
  expect(results.length, `one result per command:\n${results.join('\n')}`).toBe(commands.length);
  return { results, entries };
}

/** key=value fields of an OK line. */
function fields(line: string): Record<string, string> {
  const o: Record<string, string> = {};
  for (const part of line.split(' ').slice(2)) {
    const i = part.indexOf('=');
    if (i > 0) o[part.slice(0, i)] = part.slice(i + 1);
  }
  return o;
}

function host(...p: string[]): string {
  return path.join(hostZone, ...p);
}

describe.skipIf(missing !== null)('libnfs clients against the daemon', () => {
  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-libnfs-'));
    probeBin = path.join(work, 'nfsprobe');
    const cc = run('cc', ['-O2', '-o', probeBin, path.join(REPO_ROOT, 'test', 'c', 'nfsprobe.c'), '-lnfs']);
    if (cc.status !== 0) throw new Error(`building nfsprobe failed:\n${cc.stderr}`);
    d = await startTestDaemon({ zones: [ZONE], quota: '1G' });
    hostZone = d.zonePath(ZONE);
  });

  afterAll(async () => {
    await d?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('nfs-cp copies files in and out intact (0 B to 20 MiB)', () => {
    for (const size of [0, 1, 4095, 4096, (1 << 20) + 1, 20 << 20]) {
      const data = crypto.randomBytes(size);
      const local = path.join(work, `in-${size}`);
      fs.writeFileSync(local, data);
      const name = `copy-${size}.bin`;
      const up = run('nfs-cp', [local, d.url(ZONE, name)]);
      expect(up.status, `nfs-cp in (${size} B): ${up.stderr}`).toBe(0);
      const onHost = fs.readFileSync(host(name));
      expect(onHost.length, `size on the host after copying ${size} B in`).toBe(size);
      expect(sha(onHost)).toBe(sha(data));
      const back = path.join(work, `out-${size}`);
      const down = run('nfs-cp', [d.url(ZONE, name), back]);
      expect(down.status, `nfs-cp out (${size} B): ${down.stderr}`).toBe(0);
      const got = fs.readFileSync(back);
      expect(got.length).toBe(size);
      expect(sha(got)).toBe(sha(data));
    }
  });

  it('several nfs-cp clients at once, in and out', async () => {
    const files = Array.from({ length: 4 }, (_, i) => {
      const data = crypto.randomBytes((5 << 20) + i * 1000);
      const local = path.join(work, `par-${i}`);
      fs.writeFileSync(local, data);
      return { data, local, name: `parallel-${i}.bin`, back: path.join(work, `par-back-${i}`) };
    });
    const ups = await Promise.all(files.map((f) => runAsync('nfs-cp', [f.local, d.url(ZONE, f.name)])));
    ups.forEach((r, i) => expect(r.status, `upload ${i}: ${r.stderr}`).toBe(0));
    for (const f of files) expect(sha(fs.readFileSync(host(f.name)))).toBe(sha(f.data));
    const downs = await Promise.all(files.map((f) => runAsync('nfs-cp', [d.url(ZONE, f.name), f.back])));
    downs.forEach((r, i) => expect(r.status, `download ${i}: ${r.stderr}`).toBe(0));
    for (const f of files) expect(sha(fs.readFileSync(f.back))).toBe(sha(f.data));
  });

  it('nfs-cp reads a file written on the host side', () => {
    const data = crypto.randomBytes(3 * 65536 + 123);
    fs.writeFileSync(host('host-made.bin'), data);
    const out = path.join(work, 'host-made.out');
    const r = run('nfs-cp', [d.url(ZONE, 'host-made.bin'), out]);
    expect(r.status, r.stderr).toBe(0);
    expect(sha(fs.readFileSync(out))).toBe(sha(data));
  });

  it('nfs-cat prints file contents', () => {
    fs.writeFileSync(host('hello.txt'), 'hello from the zone\nsecond line\n');
    const r = run('nfs-cat', [d.url(ZONE, 'hello.txt')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('hello from the zone\nsecond line\n');
    const big = crypto.randomBytes((1 << 20) + 1);
    fs.writeFileSync(host('cat-big.bin'), big);
    const rb = run('nfs-cat', [d.url(ZONE, 'cat-big.bin')]);
    expect(rb.status, rb.stderr).toBe(0);
    expect(sha(rb.stdout)).toBe(sha(big));
  });

  /** Parse `nfs-ls` lines ("mode nlink uid gid size name") into rows keyed by name. */
  function parseLs(out: string): Map<string, { mode: string; nlink: number; uid: number; gid: number; size: number }> {
    const rows = new Map<string, { mode: string; nlink: number; uid: number; gid: number; size: number }>();
    for (const line of out.split('\n').filter(Boolean)) {
      const m = /^([-dlpscb][-rwxsStT]{9})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.+)$/.exec(line);
      expect(m, `unparsable nfs-ls line: ${line}`).not.toBeNull();
      rows.set(m![6]!, { mode: m![1]!, nlink: +m![2]!, uid: +m![3]!, gid: +m![4]!, size: +m![5]! });
    }
    return rows;
  }

  /** Host-side tree for the listing tests: a file with two names, a directory, a symlink. */
  function makeListingTree(dir: string, prefix: string): void {
    fs.mkdirSync(dir, { recursive: true });
    const data = path.join(dir, `${prefix}data.bin`);
    fs.writeFileSync(data, Buffer.alloc(12345, 1));
    fs.chmodSync(data, 0o640);
    fs.chownSync(data, 1000, 1001);
    fs.mkdirSync(path.join(dir, `${prefix}sub`), { mode: 0o750 });
    fs.chmodSync(path.join(dir, `${prefix}sub`), 0o750);
    fs.writeFileSync(path.join(dir, `${prefix}sub`, 'deep.txt'), 'deep');
    fs.symlinkSync(`${prefix}data.bin`, path.join(dir, `${prefix}link`));
    fs.linkSync(data, path.join(dir, `${prefix}hard`));
  }

  function checkListing(rows: ReturnType<typeof parseLs>, prefix: string): void {
    const mine = [...rows.keys()].filter((n) => n.startsWith(prefix)).sort();
    expect(mine).toEqual([`${prefix}data.bin`, `${prefix}hard`, `${prefix}link`, `${prefix}sub`]);
    expect(rows.get(`${prefix}data.bin`)).toEqual({ mode: '-rw-r-----', nlink: 2, uid: 1000, gid: 1001, size: 12345 });
    expect(rows.get(`${prefix}hard`)).toEqual(rows.get(`${prefix}data.bin`));
    expect(rows.get(`${prefix}sub`)!.mode).toBe('drwxr-x---');
    expect(rows.get(`${prefix}link`)!.mode[0]).toBe('l');
    expect(rows.get(`${prefix}link`)!.size).toBe(`${prefix}data.bin`.length);
  }

  it('nfs-ls of the zone shows type, mode, owner, size and names; -R recurses; -s shows the quota', () => {
    makeListingTree(hostZone, 'ls-');
    const r = run('nfs-ls', [d.url(ZONE)]);
    expect(r.status, r.stderr).toBe(0);
    const rows = parseLs(r.stdout.toString());
    checkListing(rows, 'ls-');
    expect(rows.has('.') || rows.has('..')).toBe(false);
    const rec = run('nfs-ls', ['-R', d.url(ZONE)]);
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout.toString()).toMatch(/\s4 ls-sub\/deep\.txt\n/);
    const s = run('nfs-ls', ['-s', d.url(ZONE)]);
    expect(s.status, s.stderr).toBe(0);
    const m = /(\d+) of\s+(\d+) bytes free/.exec(s.stdout.toString());
    expect(m, s.stdout.toString()).not.toBeNull();
    expect(Number(m![2])).toBe(QUOTA_BYTES);
    expect(Number(m![1])).toBeLessThanOrEqual(QUOTA_BYTES);
  });

  it('nfs-ls of a directory inside the zone (MOUNT of /tier-1/listing)', () => {
    // libnfs mounts the URL's directory itself, as `mount server:/tier-1/listing` would.
    makeListingTree(host('listing'), '');
    const r = run('nfs-ls', [d.url(ZONE, 'listing')]);
    expect(r.status, `MNT of a subdirectory of the zone: ${r.stderr}`).toBe(0);
    checkListing(parseLs(r.stdout.toString()), '');
  });

  it('nfsprobe: mkdir, rmdir, rename, link, symlink, readlink, unlink', () => {
    const { results } = probe([
      'mkdir ns 755',
      'mkdir ns/a 700',
      'mkdir ns 755',
      'open ns/a/file rwc',
      'pwrite 0 some content',
      'close',
      'link ns/a/file ns/hard',
      'symlink a/file ns/sym',
      'readlink ns/sym',
      'lstat ns/sym',
      'stat ns/sym',
      'rename ns/hard ns/renamed',
      'rename ns/a ns/b',
      'rmdir ns/b',
      'unlink ns/b/file',
      'rmdir ns/b',
      'unlink ns/nothing',
      'rmdir ns/renamed',
    ]);
    expect(results).toEqual([
      'OK mkdir',
      'OK mkdir',
      expect.stringMatching(/^ERR mkdir EEXIST /),
      'OK open',
      'OK pwrite n=12',
      'OK close',
      'OK link',
      'OK symlink',
      'OK readlink target=a/file',
      expect.stringMatching(/^OK lstat mode=120777 size=6 /),
      expect.stringMatching(/^OK stat /),
      'OK rename',
      'OK rename',
      expect.stringMatching(/^ERR rmdir ENOTEMPTY /),
      'OK unlink',
      'OK rmdir',
      expect.stringMatching(/^ERR unlink ENOENT /),
      expect.stringMatching(/^ERR rmdir ENOTDIR /),
    ]);
    expect(fs.statSync(host('ns')).mode & 0o777).toBe(0o755);
    expect(fs.existsSync(host('ns', 'a'))).toBe(false);
    expect(fs.existsSync(host('ns', 'b'))).toBe(false);
    expect(fs.readFileSync(host('ns', 'renamed'), 'utf8')).toBe('some content');
    expect(fs.statSync(host('ns', 'renamed')).nlink).toBe(1);
    expect(fs.readlinkSync(host('ns', 'sym'))).toBe('a/file');
    expect(fs.readdirSync(host('ns')).sort()).toEqual(['renamed', 'sym']);
  });

  it('nfsprobe: chmod, chown, truncate, utimes, stat agree with the host', () => {
    fs.writeFileSync(host('attrs.txt'), '0123456789');
    const { results } = probe([
      'chmod attrs.txt 604',
      'chown attrs.txt 1234 4321',
      'truncate attrs.txt 4',
      'stat attrs.txt',
      'truncate attrs.txt 100000',
      'utimes attrs.txt 1100000000 1200000000',
      'stat attrs.txt',
      'stat no-such-file',
    ]);
    expect(results.slice(0, 3)).toEqual(['OK chmod', 'OK chown', 'OK truncate']);
    expect(fields(results[3]!).size).toBe('4');
    expect(results.slice(4, 6)).toEqual(['OK truncate', 'OK utimes']);
    const s1 = fields(results[6]!);
    expect(s1).toMatchObject({ mode: '100604', size: '100000', uid: '1234', gid: '4321', atime: '1100000000', mtime: '1200000000', nlink: '1' });
    expect(results[7]).toMatch(/^ERR stat ENOENT /);
    const h = fs.statSync(host('attrs.txt'));
    expect(h.mode & 0o7777).toBe(0o604);
    expect([h.uid, h.gid]).toEqual([1234, 4321]);
    expect(h.size).toBe(100000);
    expect(Math.floor(h.mtimeMs / 1000)).toBe(1_200_000_000);
    expect(fs.readFileSync(host('attrs.txt')).subarray(0, 5).toString()).toBe('0123\0');
  });

  it('nfsprobe: statvfs reports the quota, info the 1 MiB transfer size', () => {
    const { results } = probe(['statvfs .', 'info']);
    const v = fields(results[0]!);
    expect(results[0]).toMatch(/^OK statvfs /);
    expect(Number(v.blocks) * Number(v.frsize)).toBe(QUOTA_BYTES);
    expect(Number(v.bavail)).toBeLessThanOrEqual(Number(v.blocks));
    expect(Number(v.bfree)).toBeLessThanOrEqual(Number(v.blocks));
    expect(fields(results[1]!)).toEqual({ readmax: String(1 << 20), writemax: String(1 << 20) });
  });

  it('nfsprobe: access as root and as uid 1000 on a 0700 root-owned file', () => {
    fs.writeFileSync(host('private.txt'), 'private');
    fs.chownSync(host('private.txt'), 0, 0);
    fs.chmodSync(host('private.txt'), 0o700);
    fs.writeFileSync(host('readable.txt'), 'readable');
    fs.chmodSync(host('readable.txt'), 0o644);
    const asRoot = probe(['access private.txt rw', 'access readable.txt rw']).results;
    expect(asRoot).toEqual(['OK access', 'OK access']);
    const asUser = probe([
      'access private.txt r',
      'access private.txt w',
      'access readable.txt r',
      'access readable.txt w',
      'open private.txt r',
      'open readable.txt w',
    ], '&uid=1000&gid=1000').results;
    expect(asUser[0]).toMatch(/^ERR access EACCES /);
    expect(asUser[1]).toMatch(/^ERR access EACCES /);
    expect(asUser[2]).toBe('OK access');
    expect(asUser[3]).toMatch(/^ERR access EACCES /);
    expect(asUser[4]).toMatch(/^ERR open EACCES /);
    expect(asUser[5]).toMatch(/^ERR open EACCES /);
    expect(fs.readFileSync(host('readable.txt'), 'utf8')).toBe('readable');
  });

  it('nfsprobe: create with O_EXCL', () => {
    fs.writeFileSync(host('exists.txt'), 'x');
    const { results } = probe(['creat_excl exists.txt 644', 'creat_excl fresh.txt 640', 'creat_excl fresh.txt 640']);
    expect(results[0]).toMatch(/^ERR creat_excl EEXIST /);
    expect(results[1]).toBe('OK creat_excl');
    expect(results[2]).toMatch(/^ERR creat_excl EEXIST /);
    expect(fs.statSync(host('fresh.txt')).isFile()).toBe(true);
    expect(fs.statSync(host('fresh.txt')).size).toBe(0);
    expect(fs.readFileSync(host('exists.txt'), 'utf8')).toBe('x');
  });

  it('nfsprobe: pwrite/pread/lseek across 1 MiB boundaries, fsync (COMMIT), ftruncate', () => {
    const M = 1 << 20;
    const { results } = probe([
      'open rw.bin rwc',
      `fill 0 ${3 * M + 17} 7`,
      `pwrite ${M - 4} BOUNDARY`,
      'fsync',
      `pread ${M - 6} 12`,
      'lseek 0 end',
      'write TAIL',
      'lseek -4 end',
      'read 100',
      'fstat',
      `ftruncate ${2 * M}`,
      'fstat',
      'close',
    ]);
    expect(results).toEqual([
      'OK open',
      `OK fill n=${3 * M + 17}`,
      'OK pwrite n=8',
      'OK fsync',
      'OK pread n=12 data=%07%07BOUNDARY%07%07',
      `OK lseek pos=${3 * M + 17}`,
      'OK write n=4',
      `OK lseek pos=${3 * M + 17}`,
      'OK read n=4 data=TAIL',
      expect.stringMatching(new RegExp(`^OK fstat mode=100644 size=${3 * M + 21} `)),
      'OK ftruncate',
      expect.stringMatching(new RegExp(`^OK fstat mode=100644 size=${2 * M} `)),
      'OK close',
    ]);
    const h = fs.readFileSync(host('rw.bin'));
    expect(h.length).toBe(2 * M);
    expect(h.subarray(M - 4, M + 4).toString()).toBe('BOUNDARY');
    expect(h[0]).toBe(7);
    expect(h[2 * M - 1]).toBe(7);
  });

  it('nfsprobe: data is on the host after fsync, before close', () => {
    const { results } = probe(['open synced.txt rwc', 'pwrite 0 durable bytes', 'fsync']);
    expect(results).toEqual(['OK open', 'OK pwrite n=13', 'OK fsync']);
    expect(fs.readFileSync(host('synced.txt'), 'utf8')).toBe('durable bytes');
  });

  it('nfsprobe: opendir/readdir of a 2,000-entry directory', () => {
    const N = 2000;
    const { results, entries } = probe(['mkdir big 755', `mkfiles big ${N}`, 'ls big']);
    expect(results[0]).toBe('OK mkdir');
    expect(results[1]).toBe(`OK mkfiles n=${N}`);
    const names = entries.map((l) => l.split(' ')[1]!).filter((n) => n !== '.' && n !== '..');
    expect(names.length).toBe(N);
    expect(new Set(names).size).toBe(N);
    const expected = Array.from({ length: N }, (_, i) => `f${String(i).padStart(6, '0')}`);
    expect([...names].sort()).toEqual(expected);
    expect(fs.readdirSync(host('big')).sort()).toEqual(expected);
    expect(results[2]).toMatch(/^OK ls count=\d+$/);
    for (const l of entries) {
      if (l.startsWith('E . ') || l.startsWith('E .. ')) continue;
      expect(l).toMatch(/ type=1 mode=100644 size=0 /);
    }
    // Fresh inodes for every entry.
    const inos = entries.filter((l) => !/^E \.\.? /.test(l)).map((l) => fields('x ' + l).ino);
    expect(new Set(inos).size).toBe(N);
  });
});

describe.skipIf(missing !== null)('zone quota seen by libnfs', () => {
  let q: TestDaemon;
  let qwork: string;

  beforeAll(async () => {
    qwork = fs.mkdtempSync(path.join(os.tmpdir(), 'gvfs-libnfs-quota-'));
    q = await startTestDaemon({ zones: [ZONE], quota: '4M' });
  });

  afterAll(async () => {
    await q?.stop();
    if (qwork) fs.rmSync(qwork, { recursive: true, force: true });
  });

  it('a copy larger than the quota fails; space comes back after removing files', async () => {
    const big = path.join(qwork, 'big');
    fs.writeFileSync(big, crypto.randomBytes(8 << 20));
    const r = run('nfs-cp', [big, q.url(ZONE, 'too-big.bin')]);
    expect(r.status, 'nfs-cp of 8 MiB into a 4 MiB zone succeeded').not.toBe(0);
    // The same through the API: the failure reaches the application (libnfs 4.0 reports a failed
    // multi-request pwrite as EFAULT "E", so the status itself is checked with our client below).
    const f = run(probeBinFor(qwork), [q.url(ZONE)], `open over.bin rwc\nfill 0 ${8 << 20} 1\nclose\n`);
    const lines = f.stdout.toString().split('\n');
    expect(lines[1]).toBe('OK open');
    expect(lines[2]).toMatch(/^ERR fill /);
    const { nfs, root } = await mountZone(q.nfsPort, q.mountPort, ZONE);
    try {
      const c = await nfs.create(root, 'rpc-over.bin', { mode: 'guarded' });
      const fh = c.ok?.fh ?? expectOk(await nfs.lookup(root, 'rpc-over.bin')).fh;
      const statuses: string[] = [];
      for (let i = 0; i < 8; i++) {
        const w = await nfs.write(fh, i << 20, Buffer.alloc(1 << 20, 2), STABLE.FILE_SYNC);
        statuses.push(statName(w.status));
        if (w.status !== 0) break;
      }
      expect(statuses[statuses.length - 1], `WRITE statuses past the quota: ${statuses.join(', ')}`).toBe('NFS3ERR_DQUOT');
      expect(statName((await nfs.remove(root, 'rpc-over.bin')).status)).toBe('NFS3_OK');
    } finally {
      nfs.close();
    }
    const partial = fs.existsSync(path.join(q.zonePath(ZONE), 'too-big.bin')) ? fs.statSync(path.join(q.zonePath(ZONE), 'too-big.bin')).size : 0;
    expect(partial).toBeLessThanOrEqual(4 << 20);
    const s = run('nfs-ls', ['-s', q.url(ZONE)]);
    expect(s.stdout.toString()).toMatch(new RegExp(`of\\s+${4 << 20} bytes free`));
    // Remove the partial file through NFS; a 2 MiB file then fits.
    const rm = run(probeBinFor(qwork), [q.url(ZONE)], 'unlink too-big.bin\nunlink over.bin\n');
    expect(rm.stdout.toString()).toMatch(/(OK unlink|ERR unlink ENOENT .*)\nOK unlink\n/);
    const small = path.join(qwork, 'small');
    const data = crypto.randomBytes(2 << 20);
    fs.writeFileSync(small, data);
    const ok = run('nfs-cp', [small, q.url(ZONE, 'fits.bin')]);
    expect(ok.status, `2 MiB copy after freeing space: ${ok.stderr}`).toBe(0);
    expect(sha(fs.readFileSync(path.join(q.zonePath(ZONE), 'fits.bin')))).toBe(sha(data));
  });
});

/** Build nfsprobe into `dir` (the quota suite runs without the main suite's build). */
function probeBinFor(dir: string): string {
  const bin = path.join(dir, 'nfsprobe');
  if (!fs.existsSync(bin)) {
    const cc = run('cc', ['-O2', '-o', bin, path.join(REPO_ROOT, 'test', 'c', 'nfsprobe.c'), '-lnfs']);
    if (cc.status !== 0) throw new Error(`building nfsprobe failed:\n${cc.stderr}`);
  }
  return bin;
}
