/**
 * Fuzzing the RPC front end.
 *
 * 1. In process: decodeCall, RecordDecoder and the NFS / MOUNT / portmap programs behind
 *    RpcServer.dispatch get mutated and random input; the only exception type allowed out of the
 *    codecs is GvError, and no handler may fail with anything but a mapped status.
 * 2. Over TCP: more than 100,000 mutated and random records go to a real daemon (child process)
 *    on several connections with bounded calls in flight; afterwards it must still answer NULL,
 *    MNT, GETATTR and LOOKUP correctly, be alive, and its RSS must not have run away.
 *
 * Deterministic: the PRNG seed is GV_FUZZ_SEED (default below) and is printed, so a failure
 * reproduces with `GV_FUZZ_SEED=<seed> npx vitest run test/fuzz.test.ts`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import { createMountProgram } from '../src/mount/program.js';
import { encodeHandle } from '../src/nfs/handle.js';
import { NO_SQUASH } from '../src/nfs/context.js';
import { createNfsProgram } from '../src/nfs/program.js';
import { createPortmapProgram } from '../src/portmap/program.js';
import { decodeCall } from '../src/rpc/message.js';
import { RecordDecoder } from '../src/rpc/record.js';
import { RpcServer } from '../src/rpc/server.js';
import { parseCidr } from '../src/util/cidr.js';
import type { Attr, ZoneFs } from '../src/vfs/types.js';
import { startTestDaemon, type TestDaemon } from './harness/daemon.js';
import { FuzzConn, type ReplyTally } from './harness/fuzz-conn.js';
import {
  callMessage, frame, MOUNT_PROG, mutate, NFS_PROG, Prng, rssOf, seedCalls, type SeedCall,
} from './harness/fuzz-records.js';
import { mountMnt, Nfs3Client } from './harness/nfs3-client.js';
import { RpcClient } from './harness/rpc-client.js';

const SEED = Number(process.env.GV_FUZZ_SEED ?? 0x6776f5a1) >>> 0;

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack ?? ''}` : String(e);
}

// ------------------------------------------------------------------ in process

const ATTR: Attr = {
  type: 'dir', mode: 0o755, nlink: 2, uid: 0, gid: 0, size: 4096n, used: 4096n,
  rdev: { major: 0, minor: 0 }, fsid: 7n, fileid: 1n,
  atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 },
};

/** A zone that accepts any id and answers with plausible values, or ENOENT for the rest. */
function fakeZone(): ZoneFs {
  const wcc = { before: { size: 1n, mtime: ATTR.mtime, ctime: ATTR.ctime }, after: ATTR };
  const created = { id: 9n, attr: { ...ATTR, type: 'file' as const, fileid: 9n }, dir: wcc };
  const impl: Partial<ZoneFs> = {
    name: 'tier-1', zoneId: 7, rootId: 1n,
    generation: async () => 3,
    // The synchronous forms the daemon's backend has, so fuzzing reaches the paths it runs.
    generationNow: () => 3,
    getattrNow: (_c, id) => ({ ...ATTR, fileid: id }),
    lookupNow: () => ({ id: 9n, attr: created.attr, dirAttr: ATTR }),
    accessNow: (_c, _id, mask) => ({ granted: mask & 0x3f, attr: ATTR }),
    getattr: async (_c, id) => ({ ...ATTR, fileid: id }),
    setattr: async () => wcc,
    lookup: async () => ({ id: 9n, attr: created.attr, dirAttr: ATTR }),
    access: async (_c, _id, mask) => ({ granted: mask & 0x3f, attr: ATTR }),
    readlink: async () => ({ target: Buffer.from('target'), attr: ATTR }),
    read: async (_c, _id, _o, count) => ({ data: Buffer.alloc(Math.min(count, 8192), 1), eof: true, attr: ATTR }),
    write: async (_c, _id, _o, data, stable) => ({ count: data.length, committed: stable, file: wcc }),
    create: async () => created,
    mkdir: async () => created,
    symlink: async () => created,
    mknod: async () => created,
    remove: async () => wcc,
    rmdir: async () => wcc,
    rename: async () => ({ from: wcc, to: wcc }),
    link: async () => ({ attr: ATTR, dir: wcc }),
    readdir: async (_c, _d, opts) => ({
      entries: Array.from({ length: Math.min(opts.maxEntries, 5) }, (_, i) => ({
        id: BigInt(10 + i), name: Buffer.from(`e${i}`), cookie: BigInt(i + 1), attr: opts.withAttrs ? ATTR : undefined,
      })),
      eof: true, verifier: Buffer.alloc(8, 1), dirAttr: ATTR,
    }),
    fsstat: async () => ({ stat: { totalBytes: 1n << 30n, freeBytes: 1n << 29n, availBytes: 1n << 29n, totalFiles: 1000n, freeFiles: 900n, availFiles: 900n }, attr: ATTR }),
    pathconf: async () => ({ conf: { linkMax: 32000, nameMax: 255, noTrunc: true, chownRestricted: true, caseInsensitive: false, casePreserving: true }, attr: ATTR }),
    commit: async () => wcc,
    close: async () => {},
  };
  return new Proxy(impl as ZoneFs, {
    get(t, k) {
      const v = (t as unknown as Record<string | symbol, unknown>)[k];
      // Optional synchronous forms not listed above stay absent (a function here would be taken
      // for one).
      if (v === undefined && typeof k === 'string' && k !== 'then' && !k.endsWith('Now')) return async () => { throw new GvError('ENOENT'); };
      return v;
    },
  });
}

describe('fuzz: codecs and programs in process', () => {
  const rng = new Prng(SEED);
  const root = encodeHandle(7, 1n, 3);
  const file = encodeHandle(7, 9n, 3);
  const seeds = seedCalls({ root, file, exportPath: '/tier-1' }, rng);

  it(`decodeCall only ever throws GvError PROTOCOL (seed ${SEED})`, () => {
    const bad: string[] = [];
    let calls = 0;
    let garbage = 0;
    for (let i = 0; i < 150_000; i++) {
      const input = rng.chance(0.1) ? rng.bytes(rng.int(200)) : mutate(callMessage(rng.pick(seeds), rng.u32(), rng), rng);
      try {
        const c = decodeCall(input);
        if (!('notCall' in c)) {
          calls++;
          // walk the arguments the way a handler would, with generous limits
          for (let k = 0; k < 64 && c.args.remaining >= 4; k++) c.args.opaque(c.args.remaining);
        }
      } catch (e) {
        if (e instanceof GvError && e.code === 'PROTOCOL') garbage++;
        else if (bad.length < 5) bad.push(`input ${input.toString('hex').slice(0, 200)}: ${describeError(e)}`);
      }
    }
    expect(bad).toEqual([]);
    expect(calls).toBeGreaterThan(10_000);
    expect(garbage).toBeGreaterThan(1_000);
  });

  it('RecordDecoder on random streams only ever throws GvError PROTOCOL', () => {
    const bad: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const dec = new RecordDecoder(1 << 16, () => {});
      const stream = rng.chance(0.5)
        ? rng.bytes(rng.int(512))
        : Buffer.concat(Array.from({ length: 1 + rng.int(8) }, () => frame(callMessage(rng.pick(seeds), i, rng), rng).bytes));
      try {
        let off = 0;
        for (let k = 0; k < 64 && off < stream.length; k++) {
          const n = 1 + rng.int(stream.length - off);
          dec.push(stream.subarray(off, off + n));
          off += n;
        }
      } catch (e) {
        if (!(e instanceof GvError && e.code === 'PROTOCOL') && bad.length < 5) bad.push(describeError(e));
      }
    }
    expect(bad).toEqual([]);
  });

  it('NFS, MOUNT and portmap programs answer every mutated call without an unexpected error', async () => {
    const rpcErrors: string[] = [];
    const unexpected: string[] = [];
    const server = new RpcServer({ onError: (e, where) => rpcErrors.push(`${where}: ${describeError(e)}`) });
    const zone = fakeZone();
    const log = (o: object, msg: string) => {
      if (/unexpected/i.test(msg) && unexpected.length < 20) unexpected.push(`${msg} ${JSON.stringify(o)}`);
    };
    server.register(createNfsProgram({ zones: { byId: (id) => (id === 7 ? zone : undefined), list: () => [zone] }, squash: NO_SQUASH, log }));
    server.register(createMountProgram({ exports: () => [{ zone, allow: [parseCidr('127.0.0.1/32')] }], log }));
    server.register(createPortmapProgram({ log }));
    const conn = { remoteAddress: '127.0.0.1', remotePort: 700 };
    const kinds: Record<string, number> = {};
    for (let i = 0; i < 40_000; i++) {
      const s: SeedCall = rng.pick(seeds);
      const msg = callMessage(s, i, rng);
      const input = rng.chance(0.15) ? msg : mutate(msg, rng);
      let reply: Buffer[] | null;
      try {
        const r = await server.dispatch(input, conn);
        reply = r ? r.chunks : null;
        r?.release?.();
      } catch (e) {
        rpcErrors.push(`dispatch threw: ${describeError(e)}`);
        continue;
      }
      if (!reply) {
        kinds.dropped = (kinds.dropped ?? 0) + 1;
        continue;
      }
      const head = Buffer.concat(reply);
      const k = head.readUInt32BE(8) === 1 ? `denied/${head.readUInt32BE(12)}` : `accepted/${head.readUInt32BE(20)}`;
      kinds[k] = (kinds[k] ?? 0) + 1;
    }
    console.log(`in-process dispatch of 40000 calls (seed ${SEED}):`, JSON.stringify(kinds));
    expect(rpcErrors.slice(0, 5)).toEqual([]);
    expect(unexpected.slice(0, 5)).toEqual([]);
    expect(kinds['accepted/5'] ?? 0).toBe(0); // SYSTEM_ERR
    expect(kinds['accepted/0'] ?? 0).toBeGreaterThan(5_000);
    expect(kinds['accepted/4'] ?? 0).toBeGreaterThan(100); // GARBAGE_ARGS
  });
});

// ------------------------------------------------------------------ over TCP, real daemon

const TOTAL_RECORDS = 100_000;
const WORKERS = 4;
const BATCH = 64;
const FUZZ_DEADLINE_MS = 75_000;
const RSS_GROWTH_LIMIT = 256 << 20;
const HOSTILE_CONNS = 3000;

describe('fuzz: daemon over TCP', () => {
  let d: TestDaemon;
  let root: Buffer;
  let file: Buffer;

  beforeAll(async () => {
    d = await startTestDaemon({ logLevel: 'info' }); // 'gvd ready' is an info line
    fs.writeFileSync(path.join(d.zonePath(), 'seed.txt'), 'seed data\n');
    const m = await RpcClient.connect(d.mountPort);
    try {
      const res = await mountMnt(m, '/tier-1');
      expect(res.status).toBe(0);
      root = res.fh!;
    } finally {
      m.close();
    }
    const nfs = await Nfs3Client.connect(d.nfsPort);
    try {
      const lk = await nfs.lookup(root, 'seed.txt');
      expect(lk.status).toBe(0);
      file = lk.ok!.fh;
    } finally {
      nfs.close();
    }
  });

  afterAll(async () => {
    await d?.stop();
  });

  it(`survives ${TOTAL_RECORDS} mutated and random records (seed ${SEED})`, { timeout: 115_000 }, async () => {
    const pid = d.pid();
    expect(pid).toBeTypeOf('number');
    const readFile = (p: string) => fs.readFileSync(p, 'utf8');
    const tally: ReplyTally = {};
    const counters = { records: 0, desyncConns: 0, pingTimeouts: 0, closedByServer: 0, endTimeouts: 0, badReplies: 0 };
    const stuck: string[] = [];
    let rssBaseline: number | null = null;
    let rssPeak = 0;
    const start = Date.now();
    const deadline = start + FUZZ_DEADLINE_MS;
    const seeds = seedCalls({ root, file, exportPath: '/tier-1' }, new Prng(SEED));

    const worker = async (w: number): Promise<void> => {
      const rng = new Prng((SEED ^ Math.imul(w + 1, 0x9e3779b9)) >>> 0);
      const port = w % 2 === 0 ? d.nfsPort : d.mountPort;
      const quota = Math.ceil(TOTAL_RECORDS / WORKERS);
      let sent = 0;
      let conn: FuzzConn | null = null;
      for (let round = 0; sent < quota && Date.now() < deadline && round < 100_000; round++) {
        if (!conn || conn.isClosed) conn = await FuzzConn.connect(port, tally);
        // Most batches are well framed (and answered); one in six ends with a hostile frame
        // (corrupted record mark or random bytes) followed by a few records read out of step.
        const chunks: Buffer[] = [];
        const desync = rng.chance(Number(process.env.GV_FUZZ_HOSTILE_BATCHES ?? 1 / 6));
        const n = desync ? 1 + rng.int(BATCH) : BATCH;
        for (let i = 0; i < n && sent < quota; i++, sent++) {
          const msg = callMessage(rng.pick(seeds), rng.u32(), rng);
          chunks.push(frame(rng.chance(0.1) ? msg : mutate(msg, rng), rng).bytes);
        }
        if (desync) {
          chunks.push(frame(callMessage(rng.pick(seeds), rng.u32(), rng), rng, true).bytes);
          sent++;
          for (let k = rng.int(4); k > 0; k--, sent++) chunks.push(frame(callMessage(rng.pick(seeds), rng.u32(), rng), rng).bytes);
        }
        await conn.write(Buffer.concat(chunks));
        if (desync) {
          counters.desyncConns++;
          if ((await conn.end(5000)) === 'timeout') {
            counters.endTimeouts++;
            if (stuck.length < 3) stuck.push(Buffer.concat(chunks).toString('hex').slice(0, 4000));
          }
          counters.badReplies += conn.badReplies;
          conn = null;
        } else {
          const r = await conn.ping((0xf0000000 | (w << 24) | round) >>> 0, NFS_PROG, 3, 15_000);
          if (r === 'timeout') counters.pingTimeouts++;
          if (r === 'closed') counters.closedByServer++;
        }
        if (w === 0 && round % 50 === 0) {
          const rss = rssOf(pid!, readFile);
          if (rss !== null) {
            if (rssBaseline === null && sent > 5_000) rssBaseline = rss;
            rssPeak = Math.max(rssPeak, rss);
          }
        }
      }
      if (conn) {
        counters.badReplies += conn.badReplies;
        await conn.end(5000);
      }
      counters.records += sent;
    };
    await Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
    const elapsed = Date.now() - start;
    const rssEnd = rssOf(pid!, readFile);
    console.log(
      `fuzz over TCP (seed ${SEED}): ${counters.records} records in ${elapsed} ms;`,
      JSON.stringify(counters), 'replies', JSON.stringify(tally),
      `RSS baseline ${rssBaseline} peak ${rssPeak} end ${rssEnd}`,
    );

    if (stuck.length) console.log('connections the server did not close after FIN:\n' + stuck.join('\n'));
    expect(counters.records).toBeGreaterThanOrEqual(TOTAL_RECORDS);
    expect(counters.pingTimeouts).toBe(0);
    expect(counters.closedByServer).toBe(0); // well-framed records never cost the connection
    expect(counters.endTimeouts).toBe(0);
    expect(counters.badReplies).toBe(0);
    expect(tally.system_err ?? 0).toBe(0); // no handler failed with an unmapped error
    expect(tally.success ?? 0).toBeGreaterThan(10_000);
    expect(tally.garbage_args ?? 0).toBeGreaterThan(100);

    // still alive and answering correctly
    expect(() => process.kill(pid!, 0)).not.toThrow();
    expect(d.pid()).toBe(pid);
    fs.chmodSync(d.zonePath(), 0o755); // fuzzed SETATTRs may have changed the root's mode
    fs.writeFileSync(path.join(d.zonePath(), 'after-fuzz.txt'), 'ok');
    const m = await RpcClient.connect(d.mountPort);
    try {
      expect((await m.call(MOUNT_PROG, 3, 0, Buffer.alloc(0))).kind).toBe('success');
      const res = await mountMnt(m, '/tier-1');
      expect(res.status).toBe(0);
      expect(res.fh!.equals(root)).toBe(true);
    } finally {
      m.close();
    }
    const nfs = await Nfs3Client.connect(d.nfsPort);
    try {
      await nfs.null();
      const ga = await nfs.getattr(root);
      expect(ga.status).toBe(0);
      expect(ga.ok!.type).toBe(2);
      const lk = await nfs.lookup(root, 'after-fuzz.txt');
      expect(lk.status).toBe(0);
      const ga2 = await nfs.getattr(lk.ok!.fh);
      expect(ga2.ok!.size).toBe(2n);
    } finally {
      nfs.close();
    }

    // memory: bounded growth over the run
    expect(rssBaseline).not.toBeNull();
    expect(rssEnd).not.toBeNull();
    expect(rssEnd! - rssBaseline!).toBeLessThan(RSS_GROWTH_LIMIT);
    expect(d.stderr()).not.toMatch(/TypeError|RangeError|ReferenceError|FATAL|heap out of memory/);
  });

  it(`survives ${HOSTILE_CONNS} connections that each end in a hostile record mark (seed ${SEED})`, { timeout: 60_000 }, async () => {
    const pid = d.pid()!;
    const readFile = (p: string) => fs.readFileSync(p, 'utf8');
    const rng = new Prng((SEED ^ 0x5bd1e995) >>> 0);
    const seeds = seedCalls({ root, file, exportPath: '/tier-1' }, new Prng(SEED));
    const tally: ReplyTally = {};
    const counters = { conns: 0, endTimeouts: 0, badReplies: 0 };
    const rssBefore = rssOf(pid, readFile);
    let rssPeak = 0;
    const deadline = Date.now() + 40_000;
    const worker = async (w: number) => {
      for (let i = w; i < HOSTILE_CONNS && Date.now() < deadline; i += 8) {
        const c = await FuzzConn.connect(i % 2 ? d.nfsPort : d.mountPort, tally);
        const chunks: Buffer[] = [];
        for (let k = rng.int(4); k > 0; k--) chunks.push(frame(callMessage(rng.pick(seeds), rng.u32(), rng), rng).bytes);
        chunks.push(frame(callMessage(rng.pick(seeds), rng.u32(), rng), rng, true).bytes);
        await c.write(Buffer.concat(chunks));
        if ((await c.end(5000)) === 'timeout') counters.endTimeouts++;
        counters.badReplies += c.badReplies;
        counters.conns++;
        if (w === 0 && i % 200 === 0) rssPeak = Math.max(rssPeak, rssOf(pid, readFile) ?? 0);
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
    const rssAfter = rssOf(pid, readFile);
    console.log(`hostile connections: ${JSON.stringify(counters)} replies ${JSON.stringify(tally)} RSS before ${rssBefore} peak ${rssPeak} after ${rssAfter}`);
    expect(counters.conns).toBe(HOSTILE_CONNS);
    expect(counters.endTimeouts).toBe(0);
    expect(counters.badReplies).toBe(0);
    const nfs = await Nfs3Client.connect(d.nfsPort);
    try {
      expect((await nfs.getattr(root)).status).toBe(0);
    } finally {
      nfs.close();
    }
    expect(rssAfter! - rssBefore!).toBeLessThan(RSS_GROWTH_LIMIT);
  });
});
