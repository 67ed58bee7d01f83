import { createCipheriv, createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeJoinToken, encodeJoinToken } from '../src/elp/cluster-key.js';
import { decodeBody, decodePacket, encodeMessage, openChunk, verifyMac, HEADER_BYTES, MAC_BYTES, type ElpMessage } from '../src/elp/packet.js';
import { GvError } from '../src/errors.js';

const KEY = Buffer.alloc(32, 7);
const MSG: ElpMessage = {
  nodeId: '00112233445566778899aabbccddeeff',
  nodeName: 'a',
  addresses: ['10.0.0.1:2049'],
  catalogVersion: 7n,
  zones: new Map([['tier-1', 5n]]),
  echoes: [{ nodeId: 'ff'.repeat(16), seq: 258n, holdMs: 3 }],
};
const OPTS = { key: KEY, clusterName: 'home', seq: 1000n, timestampMs: 1_700_000_000_000, nonce: () => Buffer.alloc(16, 0xab) };

// Field by field, written by hand from the layout in src/elp/packet.ts.
const GOLDEN_HEADER = [
  '02', // format
  'f6781b20cd7f3a51', // SHA-256("grapevine-cluster\0home")[0..8]
  '00112233445566778899aabbccddeeff', // node id
  '0000018bcfe56800', // 1 700 000 000 000 ms
  'ab'.repeat(16), // nonce
  '00000000000003e8', // seq 1000
  '00', '01', // part 0 of 1
  '0047', // body: 71 bytes
].join('');
const GOLDEN_BODY = [
  '01', '61', // name "a"
  '01', '0d', Buffer.from('10.0.0.1:2049').toString('hex'), // one address
  '0000000000000007', // catalog version
  '0001', '06', Buffer.from('tier-1').toString('hex'), '0000000000000005', // one zone
  '01', 'ff'.repeat(16), '0000000000000102', '00000003', // one echo
].join('');
// The body as it travels: AES-256-CTR, key HMAC-SHA256(cluster key, "grapevine-elp-body"), IV = nonce.
const GOLDEN_SEALED =
  '23fa991ae8c3fe130760b08f7194ce2955b06e239ab1d91b2f427016eace0047c3f5785961e7cf899c3858316fb6f3d063e677c28678f7d4da5684fe56a2a97958ecff98438849';
const GOLDEN_MAC = 'f01ea5a0f62496d07a82e7c6cc0bd6046677a36eb7cc2f848a96f6eb2ed43da9';

describe('ELP packet codec', () => {
  it('encodes the golden bytes: body encrypted, MAC = HMAC-SHA256(key, header + encrypted body)', () => {
    const [p, ...rest] = encodeMessage(MSG, OPTS);
    expect(rest).toHaveLength(0);
    expect(p!.toString('hex')).toBe(GOLDEN_HEADER + GOLDEN_SEALED + GOLDEN_MAC);
    const bodyKey = createHmac('sha256', KEY).update('grapevine-elp-body').digest();
    const c = createCipheriv('aes-256-ctr', bodyKey, Buffer.alloc(16, 0xab));
    expect(Buffer.concat([c.update(Buffer.from(GOLDEN_BODY, 'hex')), c.final()]).toString('hex')).toBe(GOLDEN_SEALED);
    // Nothing of the announcement is readable without the key: no node name, address or zone name.
    for (const clear of ['10.0.0.1', 'tier-1']) expect(p!.includes(Buffer.from(clear))).toBe(false);
    expect(createHash('sha256').update('grapevine-cluster\0home').digest('hex').slice(0, 16)).toBe('f6781b20cd7f3a51');
    const signed = p!.subarray(0, p!.length - MAC_BYTES);
    expect(createHmac('sha256', KEY).update(signed).digest('hex')).toBe(GOLDEN_MAC);
  });

  it('decodes and verifies the golden packet; any flipped bit or another key fails the MAC', () => {
    const p = Buffer.from(GOLDEN_HEADER + GOLDEN_SEALED + GOLDEN_MAC, 'hex');
    const d = decodePacket(p);
    expect(d).toMatchObject({ format: 2, nodeId: MSG.nodeId, timestampMs: 1_700_000_000_000, seq: 1000n, part: 0, parts: 1 });
    expect(verifyMac(d, KEY)).toBe(true);
    expect(openChunk(d, KEY).toString('hex')).toBe(GOLDEN_BODY);
    expect(decodeBody(d.nodeId, openChunk(d, KEY))).toEqual(MSG);
    expect(verifyMac(d, Buffer.alloc(32, 8))).toBe(false);
    for (let bit = 0; bit < p.length * 8; bit += 13) {
      const q = Buffer.from(p);
      q[bit >> 3]! ^= 1 << (bit & 7);
      let ok = false;
      try {
        ok = verifyMac(decodePacket(q), KEY);
      } catch (err) {
        expect((err as GvError).code).toBe('PROTOCOL');
      }
      expect(ok, `bit ${bit}`).toBe(false);
    }
  });

  it('rejects malformed packets with PROTOCOL errors, never throwing anything else', () => {
    const p = Buffer.from(GOLDEN_HEADER + GOLDEN_SEALED + GOLDEN_MAC, 'hex');
    const cases = [Buffer.alloc(0), p.subarray(0, 60), p.subarray(0, p.length - 1), Buffer.concat([p, Buffer.from([0])])];
    const wrongFormat = Buffer.from(p);
    wrongFormat[0] = 1;
    const badPart = Buffer.from(p);
    badPart[57] = 1; // part 1 of 1
    const zeroParts = Buffer.from(p);
    zeroParts[58] = 0;
    for (const c of [...cases, wrongFormat, badPart, zeroParts]) {
      expect(() => decodePacket(c)).toThrow(GvError);
    }
    expect(() => decodeBody(MSG.nodeId, Buffer.from(GOLDEN_BODY + '00', 'hex'))).toThrow(/trailing/);
    expect(() => decodeBody(MSG.nodeId, Buffer.from(GOLDEN_BODY.slice(0, 20), 'hex'))).toThrow(/truncated/);
  });

  it('splits a large announcement into parts under the datagram limit, each authenticated', () => {
    const zones = new Map<string, bigint>();
    for (let i = 0; i < 300; i++) zones.set(`zone-with-a-long-name-${i}`, BigInt(i) * 1_000_000_007n);
    const big = { ...MSG, zones };
    let n = 0;
    const parts = encodeMessage(big, { ...OPTS, nonce: () => Buffer.alloc(16, n++) });
    expect(parts.length).toBeGreaterThan(5);
    const chunks: Buffer[] = [];
    parts.forEach((p, i) => {
      expect(p.length).toBeLessThanOrEqual(1100);
      const d = decodePacket(p);
      expect(verifyMac(d, KEY)).toBe(true);
      expect([d.part, d.parts, d.seq]).toEqual([i, parts.length, 1000n]);
      expect(d.nonce.equals(Buffer.alloc(16, i))).toBe(true);
      chunks.push(openChunk(d, KEY));
    });
    expect(decodeBody(MSG.nodeId, Buffer.concat(chunks)).zones).toEqual(zones);
    expect(parts.every((p) => p.length > HEADER_BYTES + MAC_BYTES)).toBe(true);
  });

  it('refuses values it cannot encode', () => {
    expect(() => encodeMessage({ ...MSG, nodeId: 'xyz' }, OPTS)).toThrow(/node id/);
    expect(() => encodeMessage({ ...MSG, nodeName: 'n'.repeat(256) }, OPTS)).toThrow(/255 bytes/);
    expect(() => encodeMessage({ ...MSG, catalogVersion: -1n }, OPTS)).toThrow(/out of range/);
  });
});

describe('join token', () => {
  it('carries the cluster name and key; damaged tokens are usage errors', () => {
    const t = encodeJoinToken('home', KEY);
    expect(t).toMatch(/^gvjoin1\.[A-Za-z0-9_-]+$/);
    expect(decodeJoinToken(t)).toEqual({ clusterName: 'home', key: KEY });
    expect(decodeJoinToken(`  ${t}\n`).clusterName).toBe('home');
    for (const bad of ['', 'home', t.slice(0, -2), t.replace('gvjoin1.', 'gvjoin2.'), `${t}!`]) {
      expect(() => decodeJoinToken(bad)).toThrow(GvError);
    }
  });
});
