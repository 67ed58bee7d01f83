import { GvError } from '../errors.js';
import type { FileId, ZoneFs } from '../vfs/types.js';
import { decodeHandle, encodeHandle } from './handle.js';

export interface ZoneRegistry {
  byId(zoneId: number): ZoneFs | undefined;
  list(): ZoneFs[];
  /** Whether a client address may use a zone (the export's allow list). Absent: everyone may. */
  allows?(zoneId: number, address: string): boolean;
}

export interface Resolved {
  zone: ZoneFs;
  id: FileId;
}

/** Handle → (zone, FileId): BADHANDLE for bytes we never issued, STALE for a gone file or zone. */
export async function resolveHandle(zones: ZoneRegistry, fh: Buffer, client: string): Promise<Resolved> {
  const h = decodeHandle(fh);
  if (!h) throw new GvError('BADHANDLE', 'malformed file handle');
  const zone = allowedZone(zones, h.zoneId, client);
  const gen = await zone.generation(h.fileid);
  if (gen !== h.generation) throw new GvError('ESTALE', 'generation mismatch');
  return { zone, id: h.fileid };
}

/**
 * `resolveHandle` without a promise, for a zone that knows generations synchronously
 * (ZoneFs.generationNow); undefined when it does not (the caller then takes the asynchronous
 * path). The same checks, and the same errors, thrown.
 */
export function resolveHandleNow(zones: ZoneRegistry, fh: Buffer, client: string): Resolved | undefined {
  const h = decodeHandle(fh);
  if (!h) throw new GvError('BADHANDLE', 'malformed file handle');
  const zone = allowedZone(zones, h.zoneId, client);
  if (zone.generationNow === undefined) return undefined;
  if (zone.generationNow(h.fileid) !== h.generation) throw new GvError('ESTALE', 'generation mismatch');
  return { zone, id: h.fileid };
}

function allowedZone(zones: ZoneRegistry, zoneId: number, client: string): ZoneFs {
  const zone = zones.byId(zoneId);
  if (!zone) throw new GvError('ESTALE', `no zone ${zoneId}`);
  // A handle must not outlive the MOUNT allow-list check: enforce it on every call.
  if (zones.allows && !zones.allows(zoneId, client)) {
    throw new GvError('EACCES', `client ${client} is not allowed to use zone ${zone.name}`);
  }
  return zone;
}

export async function handleFor(zone: ZoneFs, id: FileId): Promise<Buffer> {
  return encodeHandle(zone.zoneId, id, await zone.generation(id));
}

/** `handleFor` without a promise; undefined when the zone has no generationNow. */
export function handleForNow(zone: ZoneFs, id: FileId): Buffer | undefined {
  return zone.generationNow === undefined ? undefined : encodeHandle(zone.zoneId, id, zone.generationNow(id));
}
