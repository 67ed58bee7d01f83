/**
 * The seam between the replication engine and the peer protocol (design.md: the wire protocol
 * never imports the engine). A node serves its zones to the cluster as a `ReplicaSource`; the
 * transport (src/peer) carries these calls over an authenticated channel and hands the engine a
 * `ReplicaSource` for each remote peer. Tests connect two engines with the local objects directly.
 *
 * Limits every implementation enforces (and the transport checks on input):
 *  - journal(): at most MAX_JOURNAL_PAGE rows per call;
 *  - entries(): at most MAX_ENTRIES paths per call, inline data only for files ≤ inlineMax
 *    (≤ MAX_INLINE) and at most MAX_INLINE_TOTAL inline bytes per answer (later files then come
 *    without `data` and are fetched by blocks);
 *  - block(): at most BLOCK_SIZE bytes per call;
 *  - list(): at most MAX_LIST entries per page, inline data as for entries().
 * Errors are GvErrors: ENOENT (no such zone on that node, or the path is gone), EINVAL (bad
 * argument or over a limit), EACCES (the peer may not read the zone), EIO.
 */
import type { ChangeRow } from '../journal/changes.js';
import type { FileType } from '../vfs/types.js';
import type { VersionVector } from './vector.js';

/** Files are hashed and transferred in blocks of this size (the journal's block size). */
export const BLOCK_SIZE = 1024 * 1024;
export const MAX_JOURNAL_PAGE = 1000;
export const MAX_ENTRIES = 256;
export const MAX_INLINE = 64 * 1024;
export const MAX_INLINE_TOTAL = 4 * 1024 * 1024;
/** Entries per list() page. */
export const MAX_LIST = 256;

/** The current state of one object of a zone on the node asked (its file_index row). */
export interface RemoteEntry {
  /** Relative to the zone root, no leading slash. */
  path: Buffer;
  type: FileType;
  size: bigint;
  mtimeNs: bigint;
  /** Permission bits and type bits, as lstat reports them. */
  mode: number;
  vector: VersionVector;
  /** Node id that made this version. */
  origin: string;
  /** Concatenated SHA-256 of each BLOCK_SIZE block (regular files), else null. */
  hashes: Buffer | null;
  /** Symlink target. */
  target: Buffer | null;
  /** Another path of the same object (a hard link), when it has more than one name. */
  linkOf?: Buffer | null;
  /** The whole content, for regular files no larger than the inlineMax asked for. */
  data?: Buffer;
  /** Owner and group as lstat reports them on the node asked (absent from older sources). */
  uid?: number;
  gid?: number;
}

/** One page of a zone's index below a directory (a snapshot of the tree, page by page). */
export interface ListPage {
  /** Entries in path (byte) order, a directory before its contents; inline data as entries() gives it. */
  entries: RemoteEntry[];
  /** The zone's version on the node asked when the page was read. */
  version: bigint;
  /** True when nothing follows this page. */
  done: boolean;
  /** Where the next page starts (pass as `after`): the last path this page covered (entries may skip rows). */
  next: Buffer | null;
}

export interface JournalPage {
  /** Change rows after `since`, oldest first, at most `limit`. */
  rows: ChangeRow[];
  /** The zone's current version on the node asked. */
  version: bigint;
}

/** A zone as the catalog records it; merged last-writer-wins on (updatedMs, updatedBy). */
export interface CatalogZoneRecord {
  name: string;
  quotaBytes: number;
  members: string[];
  createdMs: number;
  updatedMs: number;
  /** Node id of the writer. */
  updatedBy: string;
  consistency: Consistency;
}

export interface CatalogTombstone {
  name: string;
  deletedMs: number;
  deletedBy: string;
}

export interface CatalogNodeRecord {
  name: string;
  nodeId: string | null;
  /** SHA-256 of its peer certificate (hex), once pinned. */
  fingerprint: string | null;
  addedMs: number;
}

export interface CatalogSnapshot {
  /** The catalog version on the node asked (its local counter; only comparable with itself). */
  version: number;
  zones: CatalogZoneRecord[];
  deleted: CatalogTombstone[];
  nodes: CatalogNodeRecord[];
}

export type Consistency = 'pull-first' | 'available';

/** What one node offers the others. */
export interface ReplicaSource {
  journal(zone: string, since: bigint, limit: number): Promise<JournalPage>;
  /** Current entries of `paths` (null where nothing is there). */
  entries(zone: string, paths: readonly Buffer[], inlineMax: number): Promise<(RemoteEntry | null)[]>;
  /** Bytes [offset, offset + length) of the regular file at `path` (short at end of file). */
  block(zone: string, path: Buffer, offset: bigint, length: number): Promise<Buffer>;
  /** Optional: the caller is done with a buffer block() answered (it may be reused at once). */
  recycle?(block: Buffer): void;
  catalog(): Promise<CatalogSnapshot>;
  /**
   * Index entries below `dir` ('' = the whole zone; `dir` itself is not included), recursively,
   * after path `after` (null = from the start), at most `limit` (≤ MAX_LIST), small files inline.
   */
  list(zone: string, dir: Buffer, after: Buffer | null, limit: number, inlineMax: number): Promise<ListPage>;
}

/** Who is calling (the transport fills it from the authenticated channel). */
export interface PeerCaller {
  nodeId: string;
  nodeName: string;
}

/** The local side, served to callers; the transport passes who asked. */
export interface LocalReplicaSource {
  journal(caller: PeerCaller, zone: string, since: bigint, limit: number): Promise<JournalPage>;
  entries(caller: PeerCaller, zone: string, paths: readonly Buffer[], inlineMax: number): Promise<(RemoteEntry | null)[]>;
  block(caller: PeerCaller, zone: string, path: Buffer, offset: bigint, length: number): Promise<Buffer>;
  catalog(caller: PeerCaller): Promise<CatalogSnapshot>;
  list(caller: PeerCaller, zone: string, dir: Buffer, after: Buffer | null, limit: number, inlineMax: number): Promise<ListPage>;
}

/** Gives the engine a source for a peer (by node id), or null when no address is known. */
export interface PeerConnector {
  source(peerId: string): ReplicaSource | null;
  /** Bytes received from / sent to a peer over the channel so far. */
  traffic(peerId: string): { bytesIn: number; bytesOut: number };
}

/** What ELP tells the engine (ElpService implements it). */
export interface PeerDirectory {
  peers(): {
    id: string; name: string; state: 'reachable' | 'unreachable'; addresses: string[]; rttMs: number | null;
    catalogVersion: string; zones: Record<string, string>;
  }[];
  /** A peer's announced zone or catalog versions moved. */
  onNews(cb: (peerId: string) => void): () => void;
  onPeerChange(cb: (c: { id: string; name: string; state: 'reachable' | 'unreachable'; isNew: boolean }) => void): () => void;
}

/**
 * Pull before write: the NFS side asks before a mutation whether a pull is pending for the path.
 * `wait` returns null at once when nothing is pending (the hot path), else a promise that
 * resolves true when the pull landed, or false when `maxWaitMs` passed first (answer JUKEBOX).
 */
export interface PullGate {
  wait(zone: string, path: Buffer, maxWaitMs: number): Promise<boolean> | null;
  /**
   * Optional fast path: true when no path of `zone` is pending, so the NFS side skips computing
   * paths altogether (one map look-up per mutation instead of a path walk and a join).
   */
  idle?(zone: string): boolean;
}

/** Per-member replication state of a zone (control socket, gv status, gv zone sync). */
export interface MemberSyncStatus {
  peerId: string;
  peerName: string;
  state: 'reachable' | 'unreachable' | 'unknown';
  /** The member's zone version as it last announced it. */
  advertised: string;
  /** Its version this node has applied up to. */
  applied: string;
  /** advertised - applied (0 when not behind). */
  behind: string;
  /** Bytes still to fetch for the changes known so far. */
  bytesToFetch: number;
  /** Recent transfer rate from this member, bytes per second. */
  rateBytesPerSec: number;
  /** Block bytes fetched from this member since start. */
  bytesFetched: number;
  pulling: boolean;
  lastError: string | null;
}

export interface ZoneSyncStatus {
  zone: string;
  version: string;
  consistency: Consistency;
  members: MemberSyncStatus[];
  /** Paths with a pull pending (writes to them wait). */
  pendingPaths: number;
  /** True when every reachable member's advertised version has been applied. */
  inSync: boolean;
}
