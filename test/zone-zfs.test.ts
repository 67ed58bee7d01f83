import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_MAIN, startTestDaemon, type TestDaemon } from './harness/daemon.js';
import { runProcess } from './harness/run.js';
import { expectOk, mountZone, NFS3ERR, NFS3_OK, type Nfs3Client } from './harness/nfs3-client.js';
import { createZfsTestPool, zfsFuseUnavailableReason, type ZfsTestPool } from './harness/zfs-pool.js';

/** Zones on a real ZFS pool (zfs-fuse on a file vdev): quota by ZFS, served by the daemon. */
const reason = await zfsFuseUnavailableReason();
if (reason) console.warn(`zone-zfs tests skipped: ${reason}`);

let pool: ZfsTestPool;
let d: TestDaemon;
const clients: Nfs3Client[] = [];

const run = (cmd: string, args: string[]) => runProcess(cmd, args, { timeoutMs: 60_000 });
const gv = (args: string[]) => run(process.execPath, [DAEMON_MAIN, ...args, '--config', d.configPath]);
const zfsGet = async (prop: string, ds: string) => (await run('zfs', ['get', '-Hp', '-o', 'value', prop, ds])).stdout.trim();

describe.skipIf(reason !== null)('zones on ZFS', () => {
  const ZONE = 'zz';
  let dataset: string;

  beforeAll(async () => {
    pool = await createZfsTestPool({ sizeBytes: 512 * 1024 * 1024 });
    dataset = `${pool.pool}/gv-zones/${ZONE}`;
    d = await startTestDaemon({ zones: [], extraConfig: `[zfs]\npool = ${JSON.stringify(pool.pool)}\n` });
  }, 200_000);

  afterAll(async () => {
    for (const c of clients) c.close();
    await d?.stop();
    await pool?.teardown();
  }, 120_000);

  it('gv zone create makes the dataset with its quota, and the running daemon serves it', async () => {
    const r = await gv(['zone', 'create', ZONE, '--quota', '32M', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.zone).toMatchObject({ backing: { kind: 'zfs', dataset }, quota: '32M', exportPath: `/${ZONE}` });
    expect(j.daemon).toMatchObject({ reloaded: true, opened: [ZONE] });
    expect(await zfsGet('quota', dataset)).toBe(String(32 << 20));
    const again = await gv(['zone', 'create', 'other', '--quota', '1G', '--dataset', dataset]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(new RegExp(`^gv: dataset ${dataset} already exists; choose another with --dataset`));
    const big = await gv(['zone', 'create', 'huge', '--quota', '4T', '--json']);
    expect(big.code).toBe(0);
    expect(JSON.parse(big.stdout).warnings[0]).toMatch(/quota 4T is larger than the .* this node has free/);
    expect((await gv(['zone', 'destroy', 'huge'])).code).toBe(0);
    expect((await run('zfs', ['list', `${pool.pool}/gv-zones/huge`])).code).not.toBe(0);
  });

  it('writes through NFS until NFS3ERR_DQUOT; earlier files intact; set-quota raises it; destroy needs --force', async () => {
    const m = await mountZone(d.nfsPort, d.mountPort, ZONE);
    clients.push(m.nfs);
    const st = expectOk(await m.nfs.fsstat(m.root), 'fsstat');
    expect(st.tbytes).toBeLessThanOrEqual(32n << 20n);
    expect(st.tbytes).toBeGreaterThan(30n << 20n);
    const chunk = (i: number) => Buffer.alloc(128 * 1024, i & 0xff);
    const files: { fh: Buffer; hash: string; size: number }[] = [];
    let status = NFS3_OK;
    for (let f = 0; f < 100 && status === NFS3_OK; f++) {
      const fh = expectOk(await m.nfs.create(m.root, `f${f}`), 'create').fh!;
      const h = createHash('sha256');
      let size = 0;
      for (let i = 0; i < 8; i++) {
        status = (await m.nfs.write(fh, size, chunk(f + i), 2)).status;
        if (status !== NFS3_OK) break;
        h.update(chunk(f + i));
        size += 128 * 1024;
      }
      if (status === NFS3_OK) files.push({ fh, hash: h.digest('hex'), size });
    }
    expect(status).toBe(NFS3ERR.DQUOT);
    expect(files.length).toBeGreaterThan(20); // ~32M / 1M per file
    for (const f of files) {
      const h = createHash('sha256');
      for (let off = 0; off < f.size; off += 128 * 1024) h.update(expectOk(await m.nfs.read(f.fh, off, 128 * 1024), 'read').data);
      expect(h.digest('hex')).toBe(f.hash);
    }
    const low = await gv(['zone', 'set-quota', ZONE, '1M']);
    expect(low.code).toBe(1);
    expect(low.stderr).toMatch(/already uses .* more than 1M/);
    const up = await gv(['zone', 'set-quota', ZONE, '64M']);
    expect(up.code).toBe(0);
    expect(await zfsGet('quota', dataset)).toBe(String(64 << 20));
    const more = expectOk(await m.nfs.create(m.root, 'after-raise'), 'create');
    expectOk(await m.nfs.write(more.fh!, 0, chunk(1), 2), 'write after set-quota');
    const show = JSON.parse((await gv(['zone', 'show', ZONE, '--json'])).stdout);
    expect(show.zone.usedBytes).toBeGreaterThan(30 << 20);
    const refused = await gv(['zone', 'destroy', ZONE]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/holds data .*pass --force/);
    expect(await zfsGet('quota', dataset)).toBe(String(64 << 20));
    const gone = await gv(['zone', 'destroy', ZONE, '--force', '--json']);
    expect(gone.stderr).toMatch(/warning: destroyed zfs:/);
    expect(gone.code).toBe(0);
    expect((await run('zfs', ['list', dataset])).code).not.toBe(0);
    expect((await m.nfs.getattr(m.root)).status).toBe(NFS3ERR.STALE);
  }, 180_000);
});
