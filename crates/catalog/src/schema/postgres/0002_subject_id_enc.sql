-- domicile catalog schema for PostgreSQL, version 2.
-- The subject id, sealed under a key derived from the deployment's token key,
-- so that a caller holding the secrets can name subjects in plans and reports.
-- NULL for subjects registered before version 2. Erasure deletes it with the row.
ALTER TABLE subjects ADD COLUMN id_enc BYTEA;
