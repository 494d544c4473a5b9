-- Measured migration runs, for the plan's duration estimate: what the
-- workers of one process (owner) moved of a job between their start and
-- their stop, in units and bytes of the units committed meanwhile.
CREATE TABLE migration_runs (
    job         INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    units       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    PRIMARY KEY (job, owner, started_at)
);
