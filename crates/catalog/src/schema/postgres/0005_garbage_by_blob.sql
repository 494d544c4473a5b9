-- Every commit removes its write's intent (the garbage row of its blob):
-- found by blob id, not by scanning every queued row.
CREATE INDEX garbage_by_blob ON garbage (blob_id);
