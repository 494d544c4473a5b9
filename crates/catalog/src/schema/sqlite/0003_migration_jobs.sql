-- domicile catalog schema, version 3: migration jobs and their units.
-- A job carries a plan out; each unit moves one (subject, category).
-- Workers in any process claim units under leases; nothing relies on one
-- process's memory.

CREATE TABLE migration_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    state       TEXT    NOT NULL,          -- running | paused | cancelled | done
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    policy      TEXT    NOT NULL,          -- digest of the config the job carries out
    rate        INTEGER NOT NULL,          -- bytes per second across workers; 0 = unlimited
    grace_ms    INTEGER NOT NULL,          -- wait between commit and purge of old copies
    units       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL
);

CREATE TABLE migration_units (
    job            INTEGER NOT NULL REFERENCES migration_jobs (id),
    token          TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    priority       INTEGER NOT NULL,       -- 0 = copies in forbidden regions: first
    from_regions   TEXT    NOT NULL,       -- comma-separated
    to_regions     TEXT    NOT NULL,
    custodian_from TEXT    NOT NULL,
    custodian_to   TEXT    NOT NULL,
    objects        INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    state          TEXT    NOT NULL,       -- pending | committed | done | failed | cancelled
    attempts       INTEGER NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until    INTEGER NOT NULL DEFAULT 0,
    purge_after    INTEGER NOT NULL DEFAULT 0,
    moved_bytes    INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (job, token, category)
) WITHOUT ROWID;

CREATE INDEX migration_units_queue ON migration_units (job, state, priority, lease_until);
