-- The policy is catalog state, versioned: every process acts on the newest
-- version, whatever its own config file says. Version N is the Nth policy
-- applied; `text` is the config text it was applied from (its rules and
-- reach are the policy), `digest` what decides placements and reach.
CREATE TABLE policy_versions (
    version    INTEGER NOT NULL PRIMARY KEY,
    applied_at INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    text       TEXT    NOT NULL
);

-- The active version (0: none yet), one row that an apply locks to change
-- and a commit reads to fence its write: a commit decided under an older
-- version is refused.
CREATE TABLE policy_head (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

INSERT INTO policy_head (id, version) VALUES (1, 0);
