import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAEMON_MAIN, startTestDaemon, type TestDaemon } from './harness/daemon.js';
import { runProcess, type RunResult } from './harness/run.js';
import { RpcClient } from './harness/rpc-client.js';
import { expectOk, mountMnt, mountZone, MNT3_OK, NFS3ERR, NFS3_OK, type Nfs3Client } from './harness/nfs3-client.js';

/**
 * Live changes: zones created, re-quoted and destroyed with `gv zone ...` while the daemon runs,
 * without a restart and without dropping other clients; the directory backend's quota under many
 * parallel writers.
 */
let d: TestDaemon;
const clients: Nfs3Client[] = [];

function gv(args: string[]): Promise<RunResult> {
  return runProcess(process.execPath, [DAEMON_MAIN, ...args, '--config', d.configPath]);
}

async function mnt(zone: string): Promise<number> {
  const m = await RpcClient.connect(d.mountPort);
  try {
    return (await mountMnt(m, `/${zone}`)).status;
  } finally {
    m.close();
  }
}

async function mount(zone: string): Promise<{ nfs: Nfs3Client; root: Buffer }> {
  const r = await mountZone(d.nfsPort, d.mountPort, zone);
  clients.push(r.nfs);
  return r;
}

beforeAll(async () => {
  d = await startTestDaemon({ zones: ['steady'], quota: '1G' });
}, 200_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await d?.stop();
});

describe('live reload', () => {
  it('a zone created while the daemon runs is mountable at once; other clients keep their connection', async () => {
    const steady = await mount('steady');
    const f = expectOk(await steady.nfs.create(steady.root, 'keep.txt'), 'create');
    expectOk(await steady.nfs.write(f.fh!, 0, Buffer.from('still here')), 'write');
    expect(await mnt('live')).not.toBe(MNT3_OK);
    const r = await gv(['zone', 'create', 'live', '--quota', '8M', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).daemon).toMatchObject({ running: true, reloaded: true, opened: ['live'] });
    expect(await mnt('live')).toBe(MNT3_OK);
    const live = await mount('live');
    const st = expectOk(await live.nfs.fsstat(live.root), 'fsstat');
    expect(st.tbytes).toBe(8n << 20n);
    // the connection opened before the reload still works, with the same handles
    const back = expectOk(await steady.nfs.read(f.fh!, 0, 100), 'read');
    expect(back.data.toString()).toBe('still here');
    const status = JSON.parse((await gv(['status', '--json'])).stdout);
    expect(status.daemon).toMatchObject({ running: true, pid: d.pid(), nfsPort: d.nfsPort });
    expect(status.daemon.zones.map((z: { name: string }) => z.name).sort()).toEqual(['live', 'steady']);
  });

  it('set-quota applies to the running zone (FSSTAT and writes)', async () => {
    const live = await mount('live');
    const f = expectOk(await live.nfs.create(live.root, 'grow.bin'), 'create');
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    let off = 0;
    let status = NFS3_OK;
    for (let i = 0; i < 400 && status === NFS3_OK; i++) {
      status = (await live.nfs.write(f.fh!, off, chunk)).status;
      if (status === NFS3_OK) off += chunk.length;
    }
    expect(status).toBe(NFS3ERR.DQUOT);
    expect(off).toBeGreaterThan(7 << 20);
    expect(off).toBeLessThanOrEqual(8 << 20);
    const r = await gv(['zone', 'set-quota', 'live', '16M']);
    expect(r.code).toBe(0);
    expect(expectOk(await live.nfs.fsstat(live.root), 'fsstat').tbytes).toBe(16n << 20n);
    expectOk(await live.nfs.write(f.fh!, off, chunk), 'write after raising the quota');
  });

  it('SIGHUP picks up a zone added to the config file', async () => {
    fs.mkdirSync(path.join(d.dir, 'zones', 'hup'), { recursive: true });
    fs.appendFileSync(d.configPath, `\n[zones.hup]\npath = ${JSON.stringify(path.join(d.dir, 'zones', 'hup'))}\nquota = "1M"\n`);
    process.kill(d.pid()!, 'SIGHUP');
    let ok = false;
    for (let i = 0; i < 100 && !ok; i++) {
      ok = (await mnt('hup')) === MNT3_OK;
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ok).toBe(true);
  });

  it('destroy closes the zone: its handles answer STALE, MOUNT refuses it', async () => {
    const live = await mount('live');
    const r = await gv(['zone', 'destroy', 'live', '--force', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).daemon).toMatchObject({ reloaded: true, closed: ['live'] });
    expect((await live.nfs.getattr(live.root)).status).toBe(NFS3ERR.STALE);
    expect(await mnt('live')).not.toBe(MNT3_OK);
  });
});

describe('directory quota under parallel writers', () => {
  const QUOTA = 8 << 20;
  const CHUNK = 64 * 1024;
  const WRITERS = 20;

  it('20 writers never exceed the quota by more than one write, and earlier data stays intact', async () => {
    expect((await gv(['zone', 'create', 'par', '--quota', '8M'])).code).toBe(0);
    const conns = await Promise.all(Array.from({ length: WRITERS }, () => mount('par')));
    const written: number[] = new Array(WRITERS).fill(0);
    const hashes: string[] = [];
    const fhs: Buffer[] = [];
    for (let w = 0; w < WRITERS; w++) {
      fhs.push(expectOk(await conns[w]!.nfs.create(conns[w]!.root, `w${w}`), 'create').fh!);
    }
    const pattern = (w: number, i: number) => Buffer.alloc(CHUNK, (w * 31 + i) & 0xff);
    await Promise.all(conns.map(async (c, w) => {
      const h = createHash('sha256');
      for (let i = 0; i < 1000; i++) {
        const res = await c.nfs.write(fhs[w]!, written[w]!, pattern(w, i), 0);
        if (res.status === NFS3ERR.DQUOT) break;
        expect(res.status).toBe(NFS3_OK);
        h.update(pattern(w, i));
        written[w]! += CHUNK;
      }
      hashes[w] = h.digest('hex');
    }));
    const total = written.reduce((a, b) => a + b, 0);
    expect(total).toBeLessThanOrEqual(QUOTA);
    expect(total).toBeGreaterThan(QUOTA - WRITERS * CHUNK - CHUNK);
    // allocated on disk: at most one in-flight write's worth over the quota
    let blocks = 0;
    const dir = path.join(d.stateDir, 'zones', 'par');
    for (const n of fs.readdirSync(dir)) blocks += fs.statSync(path.join(dir, n)).blocks * 512;
    expect(blocks).toBeLessThanOrEqual(QUOTA + CHUNK);
    // every file reads back exactly what was acknowledged
    for (let w = 0; w < WRITERS; w++) {
      const h = createHash('sha256');
      for (let off = 0; off < written[w]!; off += CHUNK) {
        const r = expectOk(await conns[w]!.nfs.read(fhs[w]!, off, CHUNK), 'read');
        h.update(r.data);
      }
      expect(h.digest('hex')).toBe(hashes[w]);
      expect(expectOk(await conns[w]!.nfs.getattr(fhs[w]!), 'getattr').size).toBe(BigInt(written[w]!));
    }
    const st = expectOk(await conns[0]!.nfs.fsstat(conns[0]!.root), 'fsstat');
    expect(st.tbytes).toBe(BigInt(QUOTA));
    expect(st.abytes).toBeLessThan(BigInt(WRITERS * CHUNK));
  });

  it('growing a file by SETATTR or CREATE size past the quota is refused', async () => {
    const c = await mount('par');
    const f = expectOk(await c.nfs.create(c.root, 'sparse'), 'create');
    expect((await c.nfs.setattr(f.fh!, { size: 64n << 20n })).status).toBe(NFS3ERR.DQUOT);
    expect((await c.nfs.create(c.root, 'big', { mode: 'unchecked', attrs: { mode: 0o644, size: 64n << 20n } })).status).toBe(NFS3ERR.DQUOT);
  });
});
