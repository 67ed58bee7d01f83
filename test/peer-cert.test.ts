import { X509Certificate, createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createIdentity } from '../src/catalog/identity.js';
import { CERT_FILE, certificateOf, loadOrCreateCertificate } from '../src/peer/certificate.js';
import { integer, oid, time } from '../src/peer/der.js';
import { runProcess } from './harness/run.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gv-peer-cert-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('DER encoder', () => {
  it('encodes integers, OIDs and times as X.690 says', () => {
    expect(integer(2).toString('hex')).toBe('020102');
    expect(integer(Buffer.from([0x80])).toString('hex')).toBe('02020080');
    expect(integer(Buffer.from([0, 0, 0x7f])).toString('hex')).toBe('02017f');
    expect(oid('1.3.101.112').toString('hex')).toBe('06032b6570');
    expect(oid('2.5.29.19').toString('hex')).toBe('0603551d13');
    expect(time(new Date(Date.UTC(2020, 0, 1))).toString('latin1')).toBe('\x17\x0d200101000000Z');
    expect(time(new Date(Date.UTC(9999, 11, 31, 23, 59, 59))).toString('latin1')).toBe('\x18\x0f99991231235959Z');
  });
});

describe('peer certificate', () => {
  it('is a self-signed X.509 v3 Ed25519 certificate naming neither node nor zone', async () => {
    const id = createIdentity(path.join(tmp, 'a'), 'secret-node-name');
    const c = loadOrCreateCertificate(path.join(tmp, 'a'));
    const x = new X509Certificate(fs.readFileSync(path.join(tmp, 'a', CERT_FILE)));
    expect(x.subject).toBe('CN=grapevine-node');
    expect(x.issuer).toBe('CN=grapevine-node');
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.publicKey.asymmetricKeyType).toBe('ed25519');
    expect(x.publicKey.export({ type: 'spki', format: 'pem' })).toBe(id.publicKey);
    expect(x.ca).toBe(false);
    expect(new Date(x.validTo).getUTCFullYear()).toBe(9999);
    expect(c.fingerprint).toBe(createHash('sha256').update(x.raw).digest('hex'));
    expect(c.fingerprint).toBe(x.fingerprint256.replace(/:/g, '').toLowerCase());
    const der = x.raw.toString('latin1');
    expect(der).not.toContain('secret-node-name');
    expect(der).not.toContain(id.id);
    expect(der).not.toContain(Buffer.from(id.id, 'hex').toString('latin1'));
    if (fs.existsSync('/usr/bin/openssl')) {
      const r = await runProcess('/usr/bin/openssl', ['x509', '-noout', '-text', '-in', path.join(tmp, 'a', CERT_FILE)], { timeoutMs: 10_000 });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Version: 3 \(0x2\)/);
      expect(r.stdout).toMatch(/Signature Algorithm: ED25519/);
      expect(r.stdout).toMatch(/Subject: CN ?= ?grapevine-node/);
      expect(r.stdout).toMatch(/CA:FALSE/);
      expect(r.stdout).toMatch(/Digital Signature/);
      const v = await runProcess('/usr/bin/openssl', ['verify', '-CAfile', path.join(tmp, 'a', CERT_FILE), '-check_ss_sig', '-x509_strict', path.join(tmp, 'a', CERT_FILE)], { timeoutMs: 10_000 });
      // A leaf that is not a CA cannot anchor itself in strict mode; the signature check is what matters.
      expect(v.stdout + v.stderr).not.toMatch(/signature failure/i);
    }
  });

  it('keeps its fingerprint across restarts, and rebuilds the same certificate when the file is lost', () => {
    const dir = path.join(tmp, 'b');
    createIdentity(dir, 'b');
    const first = loadOrCreateCertificate(dir);
    const mtime = fs.statSync(path.join(dir, CERT_FILE)).mtimeMs;
    const again = loadOrCreateCertificate(dir);
    expect(again.fingerprint).toBe(first.fingerprint);
    expect(fs.statSync(path.join(dir, CERT_FILE)).mtimeMs).toBe(mtime);
    fs.rmSync(path.join(dir, CERT_FILE));
    expect(loadOrCreateCertificate(dir).fingerprint).toBe(first.fingerprint);
    fs.writeFileSync(path.join(dir, CERT_FILE), 'garbage');
    expect(loadOrCreateCertificate(dir).fingerprint).toBe(first.fingerprint);
    expect(new X509Certificate(fs.readFileSync(path.join(dir, CERT_FILE))).raw.equals(first.der)).toBe(true);
  });

  it('differs between keys, and a certificate for another key is replaced', () => {
    const k1 = generateKeyPairSync('ed25519').privateKey;
    const k2 = generateKeyPairSync('ed25519').privateKey;
    expect(certificateOf(k1).fingerprint).not.toBe(certificateOf(k2).fingerprint);
    const dir = path.join(tmp, 'c');
    createIdentity(dir, 'c');
    fs.writeFileSync(path.join(dir, CERT_FILE), certificateOf(k1).pem);
    const c = loadOrCreateCertificate(dir);
    expect(c.fingerprint).not.toBe(certificateOf(k1).fingerprint);
    expect(new X509Certificate(c.pem).checkPrivateKey(createPrivateKey(fs.readFileSync(path.join(dir, 'node.key'), 'utf8')))).toBe(true);
  });

  it('refuses a key that is not Ed25519', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    expect(() => certificateOf(ec)).toThrow(/Ed25519/);
  });
});
