import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GvError } from '../src/errors.js';
import type { ChangeRow } from '../src/journal/changes.js';
import { GvDatabase } from '../src/journal/db.js';
import {
  decodeCatalog, decodeEntries, decodeError, decodeJournalPage, decodeJournalRequest, decodeListPage, decodeListRequest,
  encodeEntries, encodeError, encodeJournalPage, encodeJournalRequest, encodeListPage, encodeListRequest,
} from '../src/peer/codec.js';
import { FrameDecoder, FrameType, MAX_FRAME, Op, frameHead } from '../src/peer/frame.js';
import { decodeHello, encodeHello } from '../src/peer/hello.js';
import { SqlitePinStore } from '../src/peer/pins.js';
import { MAX_INLINE, type RemoteEntry } from '../src/replication/source.js';
import { vectorOf } from '../src/replication/vector.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-peer-codec-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    return e instanceof GvError ? e.code : `not a GvError: ${String(e)}`;
  }
  return 'no error';
};

describe('frames', () => {
  it('has the documented layout (golden bytes)', () => {
    const head = frameHead(FrameType.REQUEST, Op.BLOCK, 0x01020304, Buffer.from('hd'), 5);
    expect(head.toString('hex')).toBe('00000013' + '02' + '03' + '0000' + '01020304' + '00000002' + '6864');
  });

  it('decodes frames split at every byte, header and payload intact', () => {
    const payload = randomBytes(3000);
    const wire = Buffer.concat([
      frameHead(FrameType.RESPONSE, Op.BLOCK, 7, Buffer.from('abc'), payload.length), payload,
      frameHead(FrameType.PING, Op.NONE, 8, Buffer.alloc(0), 0),
    ]);
    for (const step of [1, 3, 4, 5, 17, 1000, wire.length]) {
      const d = new FrameDecoder();
      const frames = [];
      for (let i = 0; i < wire.length; i += step) frames.push(...d.push(wire.subarray(i, i + step)));
      expect(frames.map((f) => [f.type, f.op, f.id, f.header.toString(), f.payload.length])).toEqual([
        [FrameType.RESPONSE, Op.BLOCK, 7, 'abc', 3000], [FrameType.PING, Op.NONE, 8, '', 0],
      ]);
      expect(frames[0]!.payload.equals(payload)).toBe(true);
      expect(d.held).toBe(0);
    }
  });

  it('refuses oversized, short and malformed frames', () => {
    const len = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    expect(code(() => new FrameDecoder().push(len(MAX_FRAME + 1)))).toBe('PROTOCOL');
    expect(code(() => new FrameDecoder(4096).push(len(4097)))).toBe('PROTOCOL');
    expect(code(() => new FrameDecoder().push(len(3)))).toBe('PROTOCOL');
    const bad = frameHead(FrameType.REQUEST, Op.BLOCK, 1, Buffer.alloc(0), 0);
    bad[4] = 99;
    expect(code(() => new FrameDecoder().push(bad))).toBe('PROTOCOL');
    const badOp = frameHead(FrameType.REQUEST, Op.BLOCK, 1, Buffer.alloc(0), 0);
    badOp[5] = 42;
    expect(code(() => new FrameDecoder().push(badOp))).toBe('PROTOCOL');
    const hlen = frameHead(FrameType.REQUEST, Op.BLOCK, 1, Buffer.alloc(0), 0);
    hlen.writeUInt32BE(100, 12);
    expect(code(() => new FrameDecoder().push(hlen))).toBe('PROTOCOL');
    expect(code(() => frameHead(FrameType.RESPONSE, Op.BLOCK, 1, Buffer.alloc(0), MAX_FRAME))).toBe('EFBIG');
  });
});

describe('op codecs', () => {
  const id = 'aa'.repeat(16);
  const row = (i: number, hashBlocks = 1): ChangeRow => ({
    version: BigInt(i), atMs: i, kind: 'write', fileid: BigInt(i), path: Buffer.from(`f${i}`), toPath: null, type: 'file',
    size: 1n, mtimeNs: 1n, mode: 0o644, hashes: randomBytes(32 * hashBlocks), target: null, origin: id, vector: vectorOf([[id, i]]),
  });

  it('checks journal request limits', () => {
    expect(decodeJournalRequest(encodeJournalRequest('z', 5n, 10))).toEqual({ zone: 'z', since: 5n, limit: 10 });
    expect(code(() => encodeJournalRequest('z', 0n, 0))).toBe('EINVAL');
    expect(code(() => decodeJournalRequest(Buffer.concat([encodeJournalRequest('z', 0n, 1), Buffer.alloc(4)])))).toBe('PROTOCOL');
  });

  it('cuts a journal page that would not fit a frame, keeping a prefix', () => {
    // 1000 rows of files with 200 block hashes each: 6.4 MB of hashes, more than a frame.
    const rows = Array.from({ length: 1000 }, (_, i) => row(i + 1, 200));
    const h = encodeJournalPage({ rows, version: 1000n }, 1000);
    expect(h.length).toBeLessThanOrEqual(MAX_FRAME);
    const page = decodeJournalPage(h, 1000);
    expect(page.rows.length).toBeGreaterThan(500);
    expect(page.rows.length).toBeLessThan(1000);
    // Compare with hashes as hex (deep equality of 600 six-kilobyte Buffers is slow).
    const flat = (rs: ChangeRow[]) => rs.map((r) => ({ ...r, hashes: r.hashes?.toString('hex') }));
    expect(flat(page.rows)).toEqual(flat(rows.slice(0, page.rows.length)));
    expect(page.version).toBe(1000n);
  });

  it('drops inline data that would overflow a frame, and validates inline data', () => {
    const mk = (i: number, n: number): RemoteEntry => ({
      path: Buffer.from(`p${i}`), type: 'file', size: BigInt(n), mtimeNs: 0n, mode: 0o100644, vector: vectorOf([[id, 1]]), origin: id,
      hashes: randomBytes(32), target: null, linkOf: null, data: randomBytes(n),
    });
    const list = Array.from({ length: 70 }, (_, i) => mk(i, MAX_INLINE));
    const { header, payload } = encodeEntries(list, MAX_INLINE);
    const total = payload.reduce((s, p) => s + p.length, 0);
    expect(header.length + total).toBeLessThanOrEqual(MAX_FRAME);
    const out = decodeEntries(header, Buffer.concat(payload), list.map((e) => e.path), MAX_INLINE);
    const withData = out.filter((e) => e?.data).length;
    expect(withData).toBe(total / MAX_INLINE);
    expect(withData).toBeLessThan(70);
    expect(out[0]!.data!.equals(list[0]!.data!)).toBe(true);
    // Lying about what was asked: more inline bytes than inlineMax, or a different count.
    expect(code(() => decodeEntries(header, Buffer.concat(payload), list.map((e) => e.path), 10))).toBe('PROTOCOL');
    expect(code(() => decodeEntries(header, Buffer.concat(payload), [], MAX_INLINE))).toBe('PROTOCOL');
    expect(code(() => decodeEntries(header, Buffer.concat([...payload, Buffer.from('x')]), list.map((e) => e.path), MAX_INLINE))).toBe('PROTOCOL');
  });

  it('keeps error codes and maps unknown ones to EIO', () => {
    expect(decodeError(encodeError(new GvError('ENOENT', 'gone')), 'b').code).toBe('ENOENT');
    expect(decodeError(encodeError(new GvError('INTERNAL', 'x')), 'b').code).toBe('EIO');
    expect(decodeError(encodeError(new GvError('EACCES', 'y'.repeat(5000))), 'b').message.length).toBeLessThan(1100);
  });

  it('validates catalog snapshots and HELLO', () => {
    expect(code(() => decodeCatalog(Buffer.from('{"version":1,"zones":[{"name":3}],"deleted":[],"nodes":[]}')))).toBe('PROTOCOL');
    expect(code(() => decodeCatalog(Buffer.from('not json')))).toBe('PROTOCOL');
    expect(decodeCatalog(Buffer.from('{"version":1,"zones":[],"deleted":[],"nodes":[],"extra":1}'))).toEqual({ version: 1, zones: [], deleted: [], nodes: [] });
    const h = { version: 1, nodeId: id, nodeName: 'a', proof: randomBytes(32) };
    expect(decodeHello(encodeHello(h))).toEqual(h);
    expect(code(() => decodeHello(encodeHello({ ...h, nodeId: 'not-hex' })))).toBe('PROTOCOL');
    expect(code(() => decodeHello(encodeHello({ ...h, version: 2 })))).toBe('PROTOCOL');
    expect(code(() => decodeHello(encodeHello({ ...h, proof: randomBytes(16) })))).toBe('PROTOCOL');
  });
});

describe('SqlitePinStore', () => {
  it('pins on first contact, fills a catalog row named but without id, and refuses other certificates and stolen names', () => {
    const db = GvDatabase.open(path.join(tmp, 'pins'));
    try {
      const pins = new SqlitePinStore(db);
      const version = () => Number(db.prepare("SELECT value FROM counters WHERE name = 'catalog_version'").pluck(true).get());
      const rows = () => db.prepare('SELECT name, node_id, fingerprint FROM catalog_nodes ORDER BY name').all();
      const idB = 'bb'.repeat(16);
      const idC = 'cc'.repeat(16);
      db.prepare('INSERT INTO catalog_nodes (name, node_id, added_ms) VALUES (?, NULL, 1)').run('c');
      expect(pins.check(idB, 'b', 'f1')).toBe('new');
      pins.pin(idB, 'b', 'f1');
      expect(version()).toBe(1);
      expect(pins.check(idB, 'b', 'f1')).toBe('pinned');
      expect(pins.check(idB, 'b', 'f2')).toBe('mismatch');
      expect(code(() => pins.pin(idB, 'b', 'f2'))).toBe('EACCES');
      pins.pin(idB, 'b', 'f1');
      expect(version()).toBe(1);
      pins.pin(idC, 'c', 'f3');
      expect(code(() => pins.pin('dd'.repeat(16), 'b', 'f4'))).toBe('EACCES');
      expect(rows()).toEqual([{ name: 'b', node_id: idB, fingerprint: 'f1' }, { name: 'c', node_id: idC, fingerprint: 'f3' }]);
    } finally {
      db.close();
    }
  });
});

describe('list codec', () => {
  const e = (p: string, extra: Partial<RemoteEntry> = {}): RemoteEntry => ({
    path: Buffer.from(p), type: 'file', size: 3n, mtimeNs: -5n, mode: 0o100644, vector: vectorOf([['aa'.repeat(16), 2]]),
    origin: 'aa'.repeat(16), hashes: Buffer.alloc(32, 1), target: null, linkOf: null, ...extra,
  });

  it('round-trips a request (golden bytes) and a page with owners and inline data', () => {
    const q = encodeListRequest('z', Buffer.from('d'), Buffer.from('d/a'), 256, 4);
    expect(q.toString('hex')).toBe('00000001' + '7a000000' + '00000001' + '64000000' + '00000001' + '00000003' + '642f6100' + '00000100' + '00000004');
    expect(decodeListRequest(q)).toEqual({ zone: 'z', dir: Buffer.from('d'), after: Buffer.from('d/a'), limit: 256, inlineMax: 4 });
    expect(decodeListRequest(encodeListRequest('z', Buffer.alloc(0), null, 1, 0)).after).toBeNull();
    expect(code(() => encodeListRequest('z', Buffer.alloc(0), null, 257, 0))).toBe('EINVAL');
    const bad = Buffer.from(q);
    bad.writeUInt32BE(100_000, bad.length - 8);
    expect(code(() => decodeListRequest(bad))).toBe('EINVAL');

    const list = [e('d/a', { uid: 0, gid: 4_000_000_000, data: Buffer.from('abc') }), e('d/b', { type: 'dir', hashes: null, size: 0n, mode: 0o40755 })];
    const enc = encodeListPage({ entries: list, version: 77n, done: false, next: Buffer.from('d/b') }, 4);
    const got = decodeListPage(enc.header, Buffer.concat(enc.payload), 256, 4);
    expect(got).toEqual({ entries: list, version: 77n, done: false, next: Buffer.from('d/b') });
    // More entries than the limit asked for, or an unfinished page without a next path: refused.
    expect(code(() => decodeListPage(enc.header, Buffer.concat(enc.payload), 1, 4))).toBe('PROTOCOL');
    const noNext = encodeListPage({ entries: [], version: 1n, done: false, next: null }, 0);
    expect(code(() => decodeListPage(noNext.header, Buffer.alloc(0), 10, 0))).toBe('PROTOCOL');
  });
});
