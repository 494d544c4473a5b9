-- domicile catalog schema, version 1.
-- No column holds personal data in clear: subjects are tokens (keyed hashes),
-- object names are a keyed hash (lookup) plus ciphertext (name_enc).
-- Timestamps are INTEGER milliseconds since the Unix epoch.
-- Tables keyed by token are WITHOUT ROWID: clustered on their primary key, so
-- the planner's scan in token order reads pages sequentially.

CREATE TABLE subjects (
    token      TEXT    NOT NULL PRIMARY KEY,
    home       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per (subject, category). `state` is the JSON of PlacementState.
-- Deleting the row deletes `wrapped_key`, which shreds the data.
--
-- `home` and `regions` (comma-separated, in order) repeat what `subjects` and
-- `placement_regions` hold, so the planner streams one table without joins;
-- the catalog keeps them in step in the same transactions.
CREATE TABLE placements (
    token       TEXT    NOT NULL REFERENCES subjects (token),
    category    TEXT    NOT NULL,
    home        TEXT    NOT NULL,
    regions     TEXT    NOT NULL,
    epoch       INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    custodian   TEXT    NOT NULL,
    wrapped_key BLOB    NOT NULL,
    objects     INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    since       INTEGER NOT NULL,
    PRIMARY KEY (token, category)
) WITHOUT ROWID;

-- The ordered regions of a placement, one row each, so that residency can
-- be aggregated in SQL.
CREATE TABLE placement_regions (
    token    TEXT    NOT NULL,
    category TEXT    NOT NULL,
    ordinal  INTEGER NOT NULL,
    region   TEXT    NOT NULL,
    PRIMARY KEY (token, category, ordinal),
    UNIQUE (token, category, region),
    FOREIGN KEY (token, category) REFERENCES placements (token, category)
) WITHOUT ROWID;

CREATE INDEX placement_regions_by_region ON placement_regions (region);

-- The object index. A blob belongs to one row only: the garbage collector
-- deletes a replaced blob, so two rows must never share one.
CREATE TABLE objects (
    token       TEXT    NOT NULL,
    lookup      TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    name_enc    BLOB    NOT NULL,
    meta_enc    BLOB    NOT NULL,
    version     INTEGER NOT NULL,
    size        INTEGER NOT NULL,
    stored_size INTEGER NOT NULL,
    checksum    TEXT    NOT NULL,
    blob_id     TEXT    NOT NULL,
    modified_at INTEGER NOT NULL,
    PRIMARY KEY (token, lookup),
    FOREIGN KEY (token, category) REFERENCES placements (token, category)
) WITHOUT ROWID;

CREATE UNIQUE INDEX objects_by_blob ON objects (token, blob_id);
CREATE INDEX objects_by_category ON objects (token, category);

-- Blobs to delete from `regions` (JSON array of region ids).
CREATE TABLE garbage (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    token     TEXT    NOT NULL,
    category  TEXT    NOT NULL,
    blob_id   TEXT    NOT NULL,
    regions   TEXT    NOT NULL,
    queued_at INTEGER NOT NULL
);

-- The hash-chained ledger; see ledger.rs for the hash.
CREATE TABLE ledger (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    subject   TEXT,
    body      TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE INDEX ledger_by_subject ON ledger (subject, seq);

CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
