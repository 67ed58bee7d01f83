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
];
