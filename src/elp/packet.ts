/**
 * Echolocation packet (ELP) codec: pure functions, no sockets, no clocks.
 *
 * One announcement (an {@link ElpMessage}) is encoded into a body, split into chunks so that no
 * datagram exceeds `maxPacketBytes`, and every chunk travels in its own packet, authenticated on
 * its own. Packet layout (big-endian):
 *
 *   off  size  field
 *     0     1  format version (2)
 *     1     8  cluster hash: SHA-256("grapevine-cluster\0" + name), first 8 bytes
 *     9    16  node id
 *    25     8  timestamp, ms since the epoch
 *    33    16  nonce (random)
 *    49     8  sequence number of the announcement (same in every part)
 *    57     1  part index (0-based)
 *    58     1  part count (1-255)
 *    59     2  chunk length L
 *    61     L  chunk of the body, encrypted: AES-256-CTR with key HMAC-SHA256(cluster key,
 *              "grapevine-elp-body") and the packet's nonce as IV (node names, addresses and zone
 *              names stay private to the cluster)
 *  61+L    32  HMAC-SHA256(cluster key, bytes 0 .. 61+L) (encrypt, then MAC)
 *
 * Body: u8 name length, name; u8 address count, each (u8 length, "host:port"); u64 catalog
 * version; u16 zone count, each (u8 length, zone name, u64 version); u8 echo count, each (16-byte
 * node id, u64 sequence heard, u32 ms held before this announcement). Strings are UTF-8.
 */
import { createCipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { GvError } from '../errors.js';

export const ELP_FORMAT = 2;
export const HEADER_BYTES = 61;
export const MAC_BYTES = 32;
export const NONCE_BYTES = 16;
export const NODE_ID_BYTES = 16;
export const MAX_PARTS = 255;
/** Default datagram size: well below a 1500-byte MTU once wrapped in a DNS message. */
export const DEFAULT_MAX_PACKET = 1100;
const MIN_PACKET = HEADER_BYTES + MAC_BYTES + 16;

/** What one node announces. */
export interface ElpMessage {
  /** 32 hex digits. */
  nodeId: string;
  nodeName: string;
  /** Peer-protocol addresses, "host:port". */
  addresses: string[];
  catalogVersion: bigint;
  /** Zone name → this node's version of it. */
  zones: Map<string, bigint>;
  /** Announcements of other nodes heard, echoed back so they can measure the round trip. */
  echoes: ElpEcho[];
}

export interface ElpEcho {
  nodeId: string;
  seq: bigint;
  /** Milliseconds between hearing `seq` and sending this announcement. */
  holdMs: number;
}

export interface PacketHeader {
  format: number;
  clusterHash: Buffer;
  nodeId: string;
  timestampMs: number;
  nonce: Buffer;
  seq: bigint;
  part: number;
  parts: number;
}

export interface DecodedPacket extends PacketHeader {
  chunk: Buffer;
  /** Bytes covered by the MAC. */
  signed: Buffer;
  mac: Buffer;
}

export interface EncodeOptions {
  key: Buffer;
  clusterName: string;
  seq: bigint;
  timestampMs: number;
  /** Fresh nonce per packet (tests pass a fixed source for golden bytes). */
  nonce: () => Buffer;
  maxPacketBytes?: number;
}

function malformed(why: string): GvError {
  return new GvError('PROTOCOL', `malformed ELP packet: ${why}`);
}

export function clusterHash(clusterName: string): Buffer {
  return createHash('sha256').update('grapevine-cluster\0').update(clusterName, 'utf8').digest().subarray(0, 8);
}

function nodeIdBytes(id: string): Buffer {
  if (!/^[0-9a-f]{32}$/.test(id)) throw new GvError('EINVAL', `node id must be 32 lower-case hex digits, not "${id}"`);
  return Buffer.from(id, 'hex');
}

/** Growable byte writer for the body. */
class BodyWriter {
  private parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v);
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }
  bytes(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  str8(s: string, what: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 255) throw new GvError('EINVAL', `${what} longer than 255 bytes: ${s.slice(0, 40)}...`);
    return this.u8(b.length).bytes(b);
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

class BodyReader {
  private off = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): void {
    if (this.off + n > this.b.length) throw malformed('body truncated');
  }
  u8(): number {
    this.need(1);
    return this.b[this.off++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.b.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.b.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  str8(): string {
    return this.bytes(this.u8()).toString('utf8');
  }
  end(): void {
    if (this.off !== this.b.length) throw malformed(`${this.b.length - this.off} trailing body bytes`);
  }
}

const U64_MAX = (1n << 64n) - 1n;

function checkU64(v: bigint, what: string): bigint {
  if (v < 0n || v > U64_MAX) throw new GvError('EINVAL', `${what} out of range: ${v}`);
  return v;
}

export function encodeBody(m: ElpMessage): Buffer {
  const w = new BodyWriter();
  w.str8(m.nodeName, 'node name');
  if (m.addresses.length > 255) throw new GvError('EINVAL', 'more than 255 addresses');
  w.u8(m.addresses.length);
  for (const a of m.addresses) w.str8(a, 'address');
  w.u64(checkU64(m.catalogVersion, 'catalog version'));
  if (m.zones.size > 0xffff) throw new GvError('EINVAL', 'more than 65535 zones');
  w.u16(m.zones.size);
  for (const [zone, v] of m.zones) w.str8(zone, 'zone name').u64(checkU64(v, `version of zone ${zone}`));
  const echoes = m.echoes.slice(0, 255);
  w.u8(echoes.length);
  for (const e of echoes) {
    w.bytes(nodeIdBytes(e.nodeId)).u64(checkU64(e.seq, 'echoed sequence')).u32(Math.max(0, Math.min(0xffffffff, Math.round(e.holdMs))));
  }
  return w.done();
}

/** Decode a reassembled body; `nodeId` comes from the (authenticated) packet headers. */
export function decodeBody(nodeId: string, body: Buffer): ElpMessage {
  const r = new BodyReader(body);
  const nodeName = r.str8();
  const addresses: string[] = [];
  for (let n = r.u8(); n > 0; n--) addresses.push(r.str8());
  const catalogVersion = r.u64();
  const zones = new Map<string, bigint>();
  for (let n = r.u16(); n > 0; n--) {
    const zone = r.str8();
    zones.set(zone, r.u64());
  }
  const echoes: ElpEcho[] = [];
  for (let n = r.u8(); n > 0; n--) {
    const id = r.bytes(NODE_ID_BYTES).toString('hex');
    const seq = r.u64();
    echoes.push({ nodeId: id, seq, holdMs: r.u32() });
  }
  r.end();
  return { nodeId, nodeName, addresses, catalogVersion, zones, echoes };
}

/** Encode `m` into one or more authenticated packets. */
export function encodeMessage(m: ElpMessage, o: EncodeOptions): Buffer[] {
  const max = o.maxPacketBytes ?? DEFAULT_MAX_PACKET;
  if (max < MIN_PACKET || max > 65_000) throw new GvError('EINVAL', `maxPacketBytes must be ${MIN_PACKET}..65000`);
  const body = encodeBody(m);
  const room = max - HEADER_BYTES - MAC_BYTES;
  const parts = Math.max(1, Math.ceil(body.length / room));
  if (parts > MAX_PARTS) throw new GvError('EINVAL', `announcement too large (${body.length} bytes, more than ${MAX_PARTS} packets)`);
  const id = nodeIdBytes(m.nodeId);
  const hash = clusterHash(o.clusterName);
  const out: Buffer[] = [];
  for (let i = 0; i < parts; i++) {
    const chunk = body.subarray(i * room, Math.min(body.length, (i + 1) * room));
    const nonce = o.nonce();
    if (nonce.length !== NONCE_BYTES) throw new GvError('EINVAL', `nonce must be ${NONCE_BYTES} bytes`);
    const p = Buffer.alloc(HEADER_BYTES + chunk.length + MAC_BYTES);
    p[0] = ELP_FORMAT;
    hash.copy(p, 1);
    id.copy(p, 9);
    p.writeBigUInt64BE(BigInt(Math.trunc(o.timestampMs)), 25);
    nonce.copy(p, 33);
    p.writeBigUInt64BE(checkU64(o.seq, 'sequence'), 49);
    p[57] = i;
    p[58] = parts;
    p.writeUInt16BE(chunk.length, 59);
    sealChunk(o.key, nonce, chunk).copy(p, HEADER_BYTES);
    macOf(o.key, p.subarray(0, HEADER_BYTES + chunk.length)).copy(p, HEADER_BYTES + chunk.length);
    out.push(p);
  }
  return out;
}

const bodyKeys = new WeakMap<Buffer, Buffer>();

/** The body encryption key of a cluster key. */
function bodyKey(key: Buffer): Buffer {
  let k = bodyKeys.get(key);
  if (!k) {
    k = createHmac('sha256', key).update('grapevine-elp-body').digest();
    bodyKeys.set(key, k);
  }
  return k;
}

/** AES-256-CTR of a chunk under the cluster's body key, IV = the packet nonce (its own inverse). */
export function sealChunk(key: Buffer, nonce: Buffer, chunk: Buffer): Buffer {
  const c = createCipheriv('aes-256-ctr', bodyKey(key), nonce);
  return Buffer.concat([c.update(chunk), c.final()]);
}

/** The plaintext chunk of a packet whose MAC verified. */
export function openChunk(d: DecodedPacket, key: Buffer): Buffer {
  return sealChunk(key, d.nonce, d.chunk);
}

export function macOf(key: Buffer, signed: Buffer): Buffer {
  return createHmac('sha256', key).update(signed).digest();
}

/** Parse the structure of one packet (nothing verified yet); throws GvError('PROTOCOL'). */
export function decodePacket(p: Buffer): DecodedPacket {
  if (p.length < HEADER_BYTES + MAC_BYTES) throw malformed(`${p.length} bytes is too short`);
  if (p[0] !== ELP_FORMAT) throw malformed(`unknown format ${p[0]}`);
  const len = p.readUInt16BE(59);
  if (p.length !== HEADER_BYTES + len + MAC_BYTES) throw malformed(`length ${p.length} does not match chunk length ${len}`);
  const part = p[57]!;
  const parts = p[58]!;
  if (parts === 0 || part >= parts) throw malformed(`part ${part} of ${parts}`);
  const ts = p.readBigUInt64BE(25);
  if (ts > BigInt(Number.MAX_SAFE_INTEGER)) throw malformed('timestamp out of range');
  return {
    format: p[0]!,
    clusterHash: p.subarray(1, 9),
    nodeId: p.subarray(9, 25).toString('hex'),
    timestampMs: Number(ts),
    nonce: p.subarray(33, 49),
    seq: p.readBigUInt64BE(49),
    part,
    parts,
    chunk: p.subarray(HEADER_BYTES, HEADER_BYTES + len),
    signed: p.subarray(0, HEADER_BYTES + len),
    mac: p.subarray(HEADER_BYTES + len),
  };
}

/** Constant-time MAC check of a decoded packet. */
export function verifyMac(d: DecodedPacket, key: Buffer): boolean {
  const want = macOf(key, d.signed);
  return want.length === d.mac.length && timingSafeEqual(want, d.mac);
}
