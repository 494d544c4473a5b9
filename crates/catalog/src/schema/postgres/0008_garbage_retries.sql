-- Garbage collection off the request path: a row whose deletion fails is
-- tried again later (`next_try`, growing with `attempts`), so it never
-- blocks the rows behind it; a pass takes due rows by `next_try`.
ALTER TABLE garbage ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE garbage ADD COLUMN next_try BIGINT NOT NULL DEFAULT 0;
UPDATE garbage SET next_try = queued_at;
CREATE INDEX garbage_by_next_try ON garbage (next_try, id);
