-- Every ledger entry names who caused it (a credential's or a token's name,
-- `cli:USER`, `worker:ID`), covered by its hash (ledger.rs, encoding v2).
-- Entries written before this have none ('') and keep their v1 hash.
ALTER TABLE ledger ADD COLUMN actor TEXT NOT NULL DEFAULT '';
