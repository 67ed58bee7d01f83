import type { FileId } from '../vfs/types.js';

/**
 * NFSv3 file handle layout (17 bytes, well under the 64-byte limit):
 *   u8  format version (1)
 *   u32 zone id
 *   u64 fileid
 *   u32 generation
 * The handle ↔ FileId mapping lives here and nowhere else. Handles are stable across restarts
 * because fileid and generation are persisted by the backend.
 */
export const HANDLE_VERSION = 1;
export const HANDLE_LENGTH = 17;
export const NFS3_FHSIZE = 64;

export interface DecodedHandle {
  zoneId: number;
  fileid: FileId;
  generation: number;
}

export function encodeHandle(zoneId: number, fileid: FileId, generation: number): Buffer {
  const b = Buffer.allocUnsafe(HANDLE_LENGTH);
  b.writeUInt8(HANDLE_VERSION, 0);
  b.writeUInt32BE(zoneId >>> 0, 1);
  b.writeBigUInt64BE(fileid, 5);
  b.writeUInt32BE(generation >>> 0, 13);
  return b;
}

/** Returns null for anything that is not a handle we issued (→ NFS3ERR_BADHANDLE). */
export function decodeHandle(b: Buffer): DecodedHandle | null {
  if (b.length !== HANDLE_LENGTH || b[0] !== HANDLE_VERSION) return null;
  const fileid = b.readBigUInt64BE(5);
  if (fileid === 0n) return null;
  return { zoneId: b.readUInt32BE(1), fileid, generation: b.readUInt32BE(13) };
}
