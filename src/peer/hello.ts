/**
 * The HELLO exchange that proves cluster membership inside one TLS session. Each side sends
 * HMAC-SHA256(clusterKey, label ‖ EKM ‖ SHA-256(its own certificate)), where EKM are 32 bytes
 * exported from this TLS session (RFC 5705/8446 exporter): a proof cannot be replayed into another
 * session, nor paired with another certificate.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { GvError } from '../errors.js';
import { XdrReader } from '../xdr/reader.js';
import { XdrWriter } from '../xdr/writer.js';

export const PROTOCOL_VERSION = 1;
export const EKM_LABEL = 'EXPORTER-grapevine-peer';
export const CLIENT_LABEL = 'gv-peer-1 client';
export const SERVER_LABEL = 'gv-peer-1 server';
/** Before HELLO: how long and how many bytes a peer gets. */
export const HELLO_TIMEOUT_MS = 5000;
export const HELLO_MAX_BYTES = 4096;

const NODE_ID_RE = /^[0-9a-f]{32}$/;
const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface Hello {
  version: number;
  nodeId: string;
  nodeName: string;
  proof: Buffer;
}

export function sessionSecret(socket: TLSSocket): Buffer {
  return socket.exportKeyingMaterial(32, EKM_LABEL, Buffer.alloc(0));
}

/** `fingerprint`: the raw 32-byte SHA-256 of the certificate of the side that proves. */
export function proofOf(clusterKey: Buffer, label: string, ekm: Buffer, fingerprint: Buffer): Buffer {
  return createHmac('sha256', clusterKey).update(label).update(ekm).update(fingerprint).digest();
}

export function proofMatches(expected: Buffer, got: Buffer): boolean {
  return got.length === expected.length && timingSafeEqual(expected, got);
}

export function encodeHello(h: Hello): Buffer {
  return new XdrWriter(128).u32(h.version).string(h.nodeId).string(h.nodeName).opaque(h.proof).bytes();
}

export function decodeHello(b: Buffer): Hello {
  const r = new XdrReader(b);
  const version = r.u32();
  const nodeId = r.string(64);
  const nodeName = r.string(64);
  const proof = Buffer.from(r.opaque(32));
  if (r.remaining !== 0) throw new GvError('PROTOCOL', 'trailing bytes in HELLO');
  if (version !== PROTOCOL_VERSION) throw new GvError('PROTOCOL', `peer protocol version ${version}, this node speaks ${PROTOCOL_VERSION}`);
  if (!NODE_ID_RE.test(nodeId)) throw new GvError('PROTOCOL', 'malformed node id in HELLO');
  if (!NODE_NAME_RE.test(nodeName)) throw new GvError('PROTOCOL', 'malformed node name in HELLO');
  if (proof.length !== 32) throw new GvError('PROTOCOL', 'malformed proof in HELLO');
  return { version, nodeId, nodeName, proof };
}
