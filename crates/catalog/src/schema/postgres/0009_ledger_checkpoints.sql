-- Signed checkpoints of the ledger's head (docs/evidence.md): the chain's
-- length (seq; 0 for an empty ledger) and the hash of its entry at that
-- length, when it was signed, and the Ed25519 signature over the
-- checkpoint statement by the key whose fingerprint is key_id (public_key,
-- hex). One checkpoint per head and key: signing the same head again
-- with the same key keeps the first.
CREATE TABLE ledger_checkpoints (
    seq BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (seq, key_id)
);
