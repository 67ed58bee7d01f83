/**
 * Names the daemon keeps for itself. `.grapevine` at the root of every zone holds replication's
 * staging area (temporary files of transfers under way, renamed into place when complete, so
 * they share the zone's filesystem). NFS never shows it, the journal never records it, and
 * clients cannot create, rename or remove anything by that name at the root.
 */
export const STAGING_DIR = '.grapevine';
export const STAGING_DIR_BUF = Buffer.from(STAGING_DIR);

/** True for a zone-relative path inside (or naming) the staging area. */
export function isReservedPath(rel: Buffer): boolean {
  if (rel.length < STAGING_DIR_BUF.length) return false;
  if (rel.compare(STAGING_DIR_BUF, 0, STAGING_DIR_BUF.length, 0, STAGING_DIR_BUF.length) !== 0) return false;
  return rel.length === STAGING_DIR_BUF.length || rel[STAGING_DIR_BUF.length] === 0x2f;
}
