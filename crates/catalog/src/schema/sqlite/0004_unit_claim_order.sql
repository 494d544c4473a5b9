-- Claims used to sort all of a job's claimable units on every call (the old
-- queue index ended in lease_until): quadratic over a job of many units.
-- Two indexes now serve the two scans of a claim in order, so a claim reads
-- only the units it takes plus the few it must skip (held or waiting):
-- due purges, oldest first, then pending units by priority.
DROP INDEX migration_units_queue;
CREATE INDEX migration_units_purges ON migration_units (job, state, purge_after, token, category);
CREATE INDEX migration_units_pending ON migration_units (job, state, priority, token, category);
