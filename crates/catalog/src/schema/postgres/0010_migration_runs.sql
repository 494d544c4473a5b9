-- Measured migration runs, for the plan's duration estimate: what the
-- workers of one process (owner) moved of a job between their start and
-- their stop, in units and bytes of the units committed meanwhile.
CREATE TABLE migration_runs (
    job         BIGINT  NOT NULL,
    owner       TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL,
    units       BIGINT  NOT NULL,
    bytes       BIGINT  NOT NULL,
    PRIMARY KEY (job, owner, started_at)
);
