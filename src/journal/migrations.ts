/**
 * Numbered schema migrations. Migration N (1-based) is `MIGRATIONS[N - 1]`; the database records
 * the last applied number in `PRAGMA user_version`. Append only: never edit a migration that has
 * shipped, add a new one instead. Every table is STRICT.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: persistent file ids (zone, st_ino) → parent chain, generation, birth time.
  `
  CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) STRICT;
  INSERT INTO counters (name, value) VALUES ('generation', 0);

  -- One row per object we handed out. fileid is st_ino stored as a signed 64-bit integer.
  -- (parent, name) is the primary link used to rebuild the path; the root has parent = fileid
  -- and an empty name. btime is the birth time in ns (0 when the filesystem does not report it).
  -- type is the file type code (see vfs/local-attr.ts), a fallback replacement signal.
  CREATE TABLE nodes (
    zone_id    INTEGER NOT NULL,
    fileid     INTEGER NOT NULL,
    parent     INTEGER NOT NULL,
    name       BLOB    NOT NULL,
    generation INTEGER NOT NULL,
    btime      INTEGER NOT NULL,
    type       INTEGER NOT NULL,
    PRIMARY KEY (zone_id, fileid)
  ) STRICT, WITHOUT ROWID;

  -- Extra hard links of a node (the primary one lives in nodes), so removing the primary name
  -- of a multiply-linked file can promote another known name instead of going stale.
  CREATE TABLE node_links (
    zone_id INTEGER NOT NULL,
    parent  INTEGER NOT NULL,
    name    BLOB    NOT NULL,
    fileid  INTEGER NOT NULL,
    PRIMARY KEY (zone_id, parent, name)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX node_links_fileid ON node_links (zone_id, fileid);
  `,
  // 2: zone ids (formerly created ad hoc by config/zone-ids.ts, hence IF NOT EXISTS) and the
  // cluster catalog: zones, their member nodes, known nodes, and this node's backing of each zone.
  `
  CREATE TABLE IF NOT EXISTS gv_zone_ids (name TEXT PRIMARY KEY, zone_id INTEGER NOT NULL UNIQUE) STRICT;

  -- Catalog version: bumped by every catalog change (the next issues replicate the catalog).
  INSERT INTO counters (name, value) VALUES ('catalog_version', 0);

  -- A replication zone. version = catalog version of its last change.
  CREATE TABLE catalog_zones (
    name        TEXT    PRIMARY KEY,
    quota_bytes INTEGER NOT NULL CHECK (quota_bytes > 0),
    created_ms  INTEGER NOT NULL,
    version     INTEGER NOT NULL
  ) STRICT;

  CREATE TABLE catalog_zone_members (
    zone TEXT NOT NULL REFERENCES catalog_zones (name) ON DELETE CASCADE,
    node TEXT NOT NULL,
    PRIMARY KEY (zone, node)
  ) STRICT, WITHOUT ROWID;

  -- Nodes known to the cluster (this node registers itself at gv init).
  CREATE TABLE catalog_nodes (
    name     TEXT PRIMARY KEY,
    node_id  TEXT,
    added_ms INTEGER NOT NULL
  ) STRICT;

  -- How THIS node stores a zone it is a member of (local, never replicated): a ZFS dataset or a
  -- directory.
  CREATE TABLE zone_backing (
    zone    TEXT NOT NULL PRIMARY KEY REFERENCES catalog_zones (name) ON DELETE CASCADE,
    kind    TEXT NOT NULL CHECK (kind IN ('zfs', 'dir')),
    dataset TEXT,
    path    TEXT,
    CHECK ((kind = 'zfs' AND dataset IS NOT NULL) OR (kind = 'dir' AND path IS NOT NULL))
  ) STRICT;
  `,
  // 3: per-zone versions, the change journal and the file index (block hashes, version vectors).
  `
  -- Current version of each zone this node holds; bumped with every journal row, in one transaction.
  CREATE TABLE zone_versions (
    zone    TEXT    PRIMARY KEY,
    version INTEGER NOT NULL CHECK (version >= 0)
  ) STRICT;

  -- Append-only change log. path/to_path are relative to the zone root (no leading slash).
  -- hashes: concatenated 32-byte SHA-256 digests of each 1 MiB block (files), else NULL.
  -- vector: the file's version vector after the change (replication/vector.ts encoding).
  CREATE TABLE zone_changes (
    zone     TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('create', 'write', 'truncate', 'setattr', 'mkdir', 'remove',
                                               'rmdir', 'rename', 'link', 'symlink', 'mknod')),
    fileid   INTEGER NOT NULL,
    path     BLOB    NOT NULL,
    to_path  BLOB,
    type     TEXT    NOT NULL,
    size     INTEGER,
    mtime_ns INTEGER,
    mode     INTEGER,
    hashes   BLOB,
    target   BLOB,
    origin   TEXT    NOT NULL,
    vector   BLOB    NOT NULL,
    at_ms    INTEGER NOT NULL,
    PRIMARY KEY (zone, version)
  ) STRICT, WITHOUT ROWID;

  -- What the journal knows of every object of a zone (the root excluded): the state after its last
  -- journaled change. ino is st_ino (equal to fileid for local zones).
  CREATE TABLE file_index (
    zone     TEXT    NOT NULL,
    fileid   INTEGER NOT NULL,
    path     BLOB    NOT NULL,
    type     TEXT    NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino      INTEGER NOT NULL,
    mode     INTEGER NOT NULL,
    vector   BLOB    NOT NULL,
    hashes   BLOB,
    PRIMARY KEY (zone, fileid)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX file_index_path ON file_index (zone, path);

  -- Node id used as journal origin when the state directory has no identity (gv init not run).
  CREATE TABLE local_node (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id  TEXT    NOT NULL
  ) STRICT;
  `,
  // 4: replication. Tombstones (the last vector of a path whose object went away), the origin of
  // each index entry (conflict tie-break), how far each peer's journal has been applied, the
  // catalog's last-writer-wins metadata and deleted zones, and each node's pinned certificate.
  `
  ALTER TABLE file_index ADD COLUMN origin TEXT NOT NULL DEFAULT '';

  -- One row per path whose object was removed or renamed away: its vector at that moment.
  -- Removed again when an object appears at the path (its vector then starts from this one).
  CREATE TABLE tombstones (
    zone   TEXT    NOT NULL,
    path   BLOB    NOT NULL,
    type   TEXT    NOT NULL,
    vector BLOB    NOT NULL,
    origin TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL,
    PRIMARY KEY (zone, path)
  ) STRICT, WITHOUT ROWID;

  -- The highest version of peer's journal of zone that this node has applied (or skipped).
  CREATE TABLE peer_cursors (
    zone       TEXT    NOT NULL,
    peer       TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 0),
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (zone, peer)
  ) STRICT, WITHOUT ROWID;

  -- Catalog entries merge last-writer-wins on (updated_ms, updated_by).
  ALTER TABLE catalog_zones ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE catalog_zones ADD COLUMN updated_by TEXT NOT NULL DEFAULT '';
  ALTER TABLE catalog_zones ADD COLUMN consistency TEXT NOT NULL DEFAULT 'pull-first';
  CREATE TABLE catalog_zone_tombstones (
    name       TEXT    PRIMARY KEY,
    deleted_ms INTEGER NOT NULL,
    deleted_by TEXT    NOT NULL
  ) STRICT;

  -- SHA-256 fingerprint (hex) of the node's peer-protocol certificate, pinned at first contact.
  ALTER TABLE catalog_nodes ADD COLUMN fingerprint TEXT;
  CREATE INDEX catalog_nodes_id ON catalog_nodes (node_id);
  `,
];
