/**
 * The node's peer certificate: a self-signed X.509 v3 certificate for its Ed25519 identity key,
 * built here with a small DER encoder. It names no node and no zone (subject = issuer =
 * CN=grapevine-node). It is a pure function of the key: serial = first 16 bytes of SHA-256 of the
 * public key, fixed validity, Ed25519 signatures are deterministic. So `peer.crt` is a cache: lost
 * or rebuilt, the certificate and its fingerprint (SHA-256 of the DER) are the same.
 */
import {
  X509Certificate, createHash, createPrivateKey, createPublicKey, sign, type KeyObject,
} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GvError, toGvError } from '../errors.js';
import { PRIVATE_KEY_FILE } from '../catalog/identity.js';
import {
  bitString, boolean, explicit, integer, octetString, oid, sequence, set, time, utf8String,
} from './der.js';

export const CERT_FILE = 'peer.crt';
export const CERT_SUBJECT_CN = 'grapevine-node';

const OID_ED25519 = '1.3.101.112';
const OID_CN = '2.5.4.3';
const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';
const NOT_BEFORE = new Date(Date.UTC(2020, 0, 1));
/** RFC 5280 4.1.2.5: no well-defined expiration. */
const NOT_AFTER = new Date(Date.UTC(9999, 11, 31, 23, 59, 59));

export interface PeerCertificate {
  der: Buffer;
  pem: string;
  /** SHA-256 of the DER, lowercase hex. */
  fingerprint: string;
}

export function fingerprintOf(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** The DER of the self-signed certificate of `key` (an Ed25519 private key). */
export function buildCertificateDer(key: KeyObject | string): Buffer {
  const priv = typeof key === 'string' ? createPrivateKey(key) : key;
  if (priv.asymmetricKeyType !== 'ed25519') throw new GvError('EINVAL', `peer certificates need an Ed25519 key, not ${priv.asymmetricKeyType}`);
  const spki = createPublicKey(priv).export({ type: 'spki', format: 'der' });
  const serial = createHash('sha256').update(spki).digest().subarray(0, 16);
  serial[0]! &= 0x7f;
  if (serial[0] === 0) serial[0] = 1; // positive, and exactly 16 bytes
  const algorithm = sequence(oid(OID_ED25519));
  const name = sequence(set(sequence(oid(OID_CN), utf8String(CERT_SUBJECT_CN))));
  const extensions = explicit(3, sequence(
    sequence(oid(OID_BASIC_CONSTRAINTS), boolean(true), octetString(sequence())),
    // digitalSignature only (bit 0): 1 byte, 7 unused bits.
    sequence(oid(OID_KEY_USAGE), boolean(true), octetString(bitString(Buffer.from([0x80]), 7))),
  ));
  const tbs = sequence(
    explicit(0, integer(2)),
    integer(serial),
    algorithm,
    name,
    sequence(time(NOT_BEFORE), time(NOT_AFTER)),
    name,
    spki,
    extensions,
  );
  const signature = sign(null, tbs, priv);
  return sequence(tbs, algorithm, bitString(signature));
}

export function toPem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`;
}

export function certificateOf(key: KeyObject | string): PeerCertificate {
  const der = buildCertificateDer(key);
  return { der, pem: toPem(der), fingerprint: fingerprintOf(der) };
}

/**
 * `peer.crt` of `stateDir` for the key `node.key` there: read when present and matching the key,
 * else (re)built and written (0644). CONFIG when the key is missing or unreadable.
 */
export function loadOrCreateCertificate(stateDir: string): PeerCertificate & { keyPem: string } {
  const keyFile = path.join(stateDir, PRIVATE_KEY_FILE);
  let keyPem: string;
  try {
    keyPem = fs.readFileSync(keyFile, 'utf8');
  } catch (err) {
    throw new GvError('CONFIG', `${keyFile}: cannot read the node key (${toGvError(err).code}); run gv init`, { file: keyFile });
  }
  const key = createPrivateKey(keyPem);
  const file = path.join(stateDir, CERT_FILE);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const have = readCertificate(file);
  if (have && have.x.publicKey.export({ type: 'spki', format: 'der' }).equals(spki) && have.x.verify(have.x.publicKey)) {
    return { der: have.x.raw, pem: have.pem, fingerprint: fingerprintOf(have.x.raw), keyPem };
  }
  const cert = certificateOf(key);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, cert.pem, { mode: 0o644 });
  fs.renameSync(tmp, file);
  return { ...cert, keyPem };
}

/** The certificate in `file`, or null when it is missing or does not parse (then rebuilt). */
function readCertificate(file: string): { pem: string; x: X509Certificate } | null {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw toGvError(err);
  }
  try {
    return { pem, x: new X509Certificate(pem) };
  } catch {
    return null;
  }
}
