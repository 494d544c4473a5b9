//! Rows the catalog stores and returns. Every field that could identify a
//! person is a token, a keyed hash or ciphertext: the catalog never sees a
//! subject id or an object name in clear.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A registered subject, known only by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    /// Keyed hash of the subject id (hex).
    pub token: String,
    /// Home jurisdiction, ISO 3166-1 alpha-2.
    pub home: String,
    pub created_at: Millis,
    /// The subject id sealed under a key only the deployment's secrets
    /// open; `None` if it was not recorded.
    pub id_enc: Option<Vec<u8>>,
}

/// Whether a placement accepts writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlacementState {
    /// Writes commit against the current epoch.
    Active,
    /// A move to `to` is under way: no write may commit until it ends.
    Moving {
        to: Vec<String>,
        lease_until: Millis,
    },
}

/// Where the copies of one (subject, category) are, and under which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRow {
    pub token: String,
    pub category: String,
    /// Ordered region ids holding copies.
    pub regions: Vec<String>,
    /// Grows by one with each change of `regions` or `custodian`.
    pub epoch: i64,
    pub state: PlacementState,
    /// Custodian whose key wraps `wrapped_key`.
    pub custodian: String,
    /// The data key, wrapped by the custodian. Deleting it shreds the data.
    pub wrapped_key: Vec<u8>,
    /// Number of live objects and their stored bytes, kept in step with the index.
    pub objects: i64,
    pub bytes: i64,
    /// When the placement last changed.
    pub since: Millis,
}

/// One (subject, category) placement joined with its subject's home, as the
/// planner streams them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementSummary {
    pub token: String,
    pub home: String,
    pub category: String,
    pub regions: Vec<String>,
    pub custodian: String,
    pub epoch: i64,
    pub objects: i64,
    pub bytes: i64,
}

/// A range of subject tokens, `from` included and `until` excluded, as
/// the catalog orders tokens; an absent end is open. The ranges of a scan
/// in parallel: ranges that meet end to end cover every token once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenRange<'a> {
    pub from: Option<&'a str>,
    pub until: Option<&'a str>,
}

/// One object's index row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    pub token: String,
    pub category: String,
    /// Keyed hash of the object name, for lookup.
    pub lookup: String,
    /// The object name, encrypted under the subject's data key, for listing.
    pub name_enc: Vec<u8>,
    /// Content type and user metadata, encrypted like the name.
    pub meta_enc: Vec<u8>,
    /// Grows by one each time the name is overwritten.
    pub version: i64,
    /// Plaintext size.
    pub size: i64,
    /// Stored (ciphertext) size of each copy.
    pub stored_size: i64,
    /// BLAKE3 of the stored bytes, hex.
    pub checksum: String,
    pub blob_id: String,
    pub modified_at: Millis,
}

/// One index row as `verify` streams it: the object's blob, and the
/// placement of its (subject, category) if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub token: String,
    pub category: String,
    pub blob_id: String,
    /// Stored (ciphertext) size of each copy.
    pub stored_size: i64,
    /// BLAKE3 of the stored bytes, hex.
    pub checksum: String,
    /// The placement's home and ordered regions; `None` when the object
    /// has no placement.
    pub placement: Option<(String, Vec<String>)>,
}

/// A stored blob that no index row points at any more, waiting for deletion
/// from the listed regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarbageRow {
    pub id: i64,
    pub token: String,
    pub category: String,
    pub blob_id: String,
    pub regions: Vec<String>,
    /// When it is due for deletion: for a replaced or deleted blob, the
    /// end of the grace period that lets reads in flight finish; for a
    /// blob nobody can read (a write that never committed), when it was
    /// queued; for a write's intent (queued before its blob is written,
    /// removed by the commit), the time after which its writer is taken to
    /// have died.
    pub queued_at: Millis,
    /// Deletions that failed so far. The catalog's: a queued row starts at 0.
    pub attempts: i64,
    /// When a collection pass takes the row next: `queued_at` when queued,
    /// later after a deletion failed or its region was backed off from.
    /// The catalog's: a queued row starts at `queued_at`.
    pub next_try: Millis,
}

impl GarbageRow {
    /// A row to queue: the blob `blob_id` of (token, category), to delete
    /// from `regions`, due at `due`.
    pub fn new(
        token: &str,
        category: &str,
        blob_id: &str,
        regions: &[String],
        due: Millis,
    ) -> Self {
        GarbageRow {
            id: 0,
            token: token.to_string(),
            category: category.to_string(),
            blob_id: blob_id.to_string(),
            regions: regions.to_vec(),
            queued_at: due,
            attempts: 0,
            next_try: due,
        }
    }
}

/// What a collection pass makes of a garbage row it could not finish: what
/// [`Catalog::retry_garbage`](crate::Catalog::retry_garbage) takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarbageRetry {
    pub id: i64,
    /// The regions its blob is still to be deleted from (those it was
    /// deleted from are dropped).
    pub regions: Vec<String>,
    /// When to take it next.
    pub next_try: Millis,
    /// Whether a deletion failed (the row's attempt count grows), or the
    /// row was only put off (a region it names is backed off from).
    pub failed: bool,
}

/// The fence a write commits against: the placement it wrote to, and the
/// policy version under which that placement was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub token: String,
    pub category: String,
    pub epoch: i64,
    /// The policy version the decision was made under (0: none was ever
    /// applied). A commit is refused while another version is active: a
    /// process that has not seen a new policy can never commit under the
    /// old one.
    pub policy: i64,
}

/// What a conditional commit or delete expects of the name's current
/// index row, checked in the commit's own transaction (the row locked):
/// two writers racing on one condition never both pass it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Expect {
    /// No condition.
    #[default]
    Any,
    /// The name holds no object (S3's `If-None-Match: *`).
    Absent,
    /// The name holds the object of this blob id: the one the caller read
    /// and checked, not replaced since.
    Blob(String),
}

/// An entry to append to the ledger. The catalog assigns `seq`, `at` is given
/// by the caller, and the hash chain is computed by the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerAppend {
    /// `placement`, `move`, `purge`, `erasure`, `demand`, `subject`, `shred`, `rehome`,
    /// `rotation`.
    pub kind: String,
    /// Token of the subject concerned, if any.
    pub subject: Option<String>,
    /// JSON body; never personal data in clear.
    pub body: serde_json::Value,
    pub at: Millis,
    /// Who caused it: a credential's or a token's name, `cli:USER`,
    /// `worker:ID`. Never a secret, never empty.
    pub actor: String,
}

/// A ledger entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub seq: i64,
    pub at: Millis,
    pub kind: String,
    pub subject: Option<String>,
    /// The body exactly as hashed (canonical JSON text).
    pub body: String,
    /// Who caused it; empty only on entries written before actors were
    /// recorded.
    pub actor: String,
    /// Hex BLAKE3 of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// Hex BLAKE3 over this entry's fields and `prev_hash`.
    pub hash: String,
}

/// One row of the residency aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidencyRow {
    pub home: String,
    pub category: String,
    pub region: String,
    pub subjects: i64,
    pub objects: i64,
    pub bytes: i64,
}

/// Index rows grouped by (token, category), one list per pair of `keys` in
/// that order (empty where none), each list in the order of `rows`: how
/// the backends answer [`crate::Catalog::objects_of_pairs`].
/// A signed checkpoint of the ledger's head: the chain had `seq` entries
/// and the hash of entry `seq` was `hash` (64 zeros for an empty chain) at
/// `at`, as the Ed25519 key `key_id` signed (see docs/evidence.md). The
/// catalog only keeps them: the engine signs and checks them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: String,
    pub at: Millis,
    /// The signing key's fingerprint: hex SHA-256 of its public key.
    pub key_id: String,
    /// The signing key's public key, hex (32 bytes).
    pub public_key: String,
    /// The signature over the checkpoint statement, hex (64 bytes).
    pub signature: String,
}

/// One version of the policy, as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersionRow {
    /// 1 for the first policy applied, then one more per apply.
    pub version: i64,
    pub applied_at: Millis,
    /// Who applied it (an operator's name, an API token's role…).
    pub actor: String,
    /// What decides placements and reach, as the core digests it.
    pub digest: String,
    /// The config text it was applied from.
    pub text: String,
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyApplied {
    /// The version active after the call.
    pub version: i64,
    /// False if the policy was already the active one: nothing changed.
    pub created: bool,
}

pub(crate) fn objects_by_pair(
    rows: Vec<ObjectRow>,
    keys: &[(String, String)],
) -> Vec<Vec<ObjectRow>> {
    let mut found: std::collections::HashMap<(String, String), Vec<ObjectRow>> =
        std::collections::HashMap::new();
    for o in rows {
        found
            .entry((o.token.clone(), o.category.clone()))
            .or_default()
            .push(o);
    }
    keys.iter()
        .map(|k| found.get(k).cloned().unwrap_or_default())
        .collect()
}
