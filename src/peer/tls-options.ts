/** TLS settings both ends share: TLS 1.3 only, our own certificate, verification done by us. */
import type { SecureContextOptions } from 'node:tls';

export function tlsBase(keyPem: string, certPem: string): SecureContextOptions & { rejectUnauthorized: boolean } {
  return {
    key: keyPem,
    cert: certPem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    rejectUnauthorized: false,
  };
}
