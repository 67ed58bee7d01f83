/**
 * A minimal DER (X.690) encoder: just the types an X.509 certificate for an Ed25519 key needs.
 * Every function returns the complete TLV as one Buffer.
 */

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return Buffer.from([0x80 | out.length, ...out]);
}

/** One TLV with `tag` around the concatenated `parts`. */
export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

export const sequence = (...parts: Buffer[]): Buffer => tlv(0x30, ...parts);
export const set = (...parts: Buffer[]): Buffer => tlv(0x31, ...parts);

/** [n] EXPLICIT (constructed, context-specific). */
export const explicit = (n: number, ...parts: Buffer[]): Buffer => tlv(0xa0 | n, ...parts);

/** INTEGER from unsigned big-endian bytes (a leading 0 is added when the high bit is set). */
export function integer(unsigned: Buffer | number): Buffer {
  let b = typeof unsigned === 'number' ? Buffer.from([unsigned]) : unsigned;
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && (b[i + 1]! & 0x80) === 0) i++;
  b = b.subarray(i);
  if (b.length === 0) b = Buffer.from([0]);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((s) => Number(s));
  const out: number[] = [arcs[0]! * 40 + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const bytes: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) bytes.unshift(0x80 | (v & 0x7f));
    out.push(...bytes);
  }
  return tlv(0x06, Buffer.from(out));
}

export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const boolean = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));

/** BIT STRING of whole bytes (0 unused bits) or with `unused` trailing bits. */
export const bitString = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.from([unused]), b);

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050. Whole seconds, UTC. */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = pad(d.getUTCMonth() + 1, 2) + pad(d.getUTCDate(), 2) + pad(d.getUTCHours(), 2) +
    pad(d.getUTCMinutes(), 2) + pad(d.getUTCSeconds(), 2) + 'Z';
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(pad(y % 100, 2) + rest, 'ascii'));
  return tlv(0x18, Buffer.from(pad(y, 4) + rest, 'ascii'));
}
