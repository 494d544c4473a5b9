//! The ledger's hash chain: how an entry is hashed and how a chain is verified.
//!
//! Each entry's hash covers every stored field of the entry and the hash of
//! the entry before it, so changing, removing, inserting or reordering any
//! entry breaks the chain from that point on. The encoding is versioned by a
//! domain-separation prefix and length-prefixes every field, so no two
//! different entries can encode alike. Only a truncation of the newest
//! entries cannot be seen from the chain alone: that needs a head recorded
//! elsewhere (see [`ChainVerifier::head`]).
//!
//! Every entry names its actor: who caused it (a credential's or a token's
//! name, `cli:USER`, `worker:ID`), never a secret. Entries with an actor are
//! hashed under `domicile-ledger-v2`, which covers it; entries written before
//! actors were recorded have none and keep their `domicile-ledger-v1` hash. The
//! catalog refuses to append an entry without an actor, so a v1 entry can only
//! be one written before that.

use std::fmt;

use crate::model::LedgerEntry;

/// The `prev_hash` of the first entry: 64 hex zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain-separation prefixes of the entry encodings; a new encoding gets a
/// new prefix. v1 has no actor; v2 adds it, last.
const DOMAIN_V1: &[u8] = b"domicile-ledger-v1";
const DOMAIN_V2: &[u8] = b"domicile-ledger-v2";

/// The fields of one entry that its hash covers, besides the hash of the
/// entry before it.
#[derive(Debug, Clone, Copy)]
pub struct HashedFields<'a> {
    pub seq: i64,
    pub at: i64,
    pub kind: &'a str,
    pub subject: Option<&'a str>,
    pub body: &'a str,
    /// Empty only on entries written before actors were recorded (v1).
    pub actor: &'a str,
}

/// Hex BLAKE3 of one entry: its position, its fields and its predecessor's
/// hash; under v2 when it has an actor, v1 when it has none.
pub fn entry_hash(prev_hash: &str, e: HashedFields<'_>) -> String {
    let HashedFields {
        seq,
        at,
        kind,
        subject,
        body,
        actor,
    } = e;
    let mut h = blake3::Hasher::new();
    put_bytes(
        &mut h,
        if actor.is_empty() {
            DOMAIN_V1
        } else {
            DOMAIN_V2
        },
    );
    put_bytes(&mut h, prev_hash.as_bytes());
    h.update(&seq.to_le_bytes());
    h.update(&at.to_le_bytes());
    put_bytes(&mut h, kind.as_bytes());
    match subject {
        None => {
            h.update(&[0]);
        }
        Some(s) => {
            h.update(&[1]);
            put_bytes(&mut h, s.as_bytes());
        }
    }
    put_bytes(&mut h, body.as_bytes());
    if !actor.is_empty() {
        put_bytes(&mut h, actor.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

impl LedgerEntry {
    /// The fields of this entry that its hash covers.
    pub fn hashed(&self) -> HashedFields<'_> {
        HashedFields {
            seq: self.seq,
            at: self.at,
            kind: &self.kind,
            subject: self.subject.as_deref(),
            body: &self.body,
            actor: &self.actor,
        }
    }
}

/// Feeds one variable-length field: its length (u64, little-endian), then its bytes.
fn put_bytes(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The JSON text of a body as the ledger stores and hashes it: compact, with
/// the keys of every object sorted, whatever features serde_json was built with.
pub fn canonical_body(v: &serde_json::Value) -> String {
    sorted(v).to_string()
}

fn sorted(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                if let Some(inner) = map.get(k) {
                    out.insert(k.clone(), sorted(inner));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Where and why a chain stopped verifying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerBreak {
    /// The seq of the first entry that does not fit the chain.
    pub seq: i64,
    /// What did not fit.
    pub reason: String,
}

impl fmt::Display for LedgerBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ledger broken at seq {}: {}", self.seq, self.reason)
    }
}

impl std::error::Error for LedgerBreak {}

/// Verifies a chain fed in order, one entry at a time, in constant memory.
///
/// After a break the verifier is left as it was before the bad entry.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    last_seq: i64,
    last_hash: String,
    count: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting the first entry (seq 1, linked to [`GENESIS`]).
    pub fn new() -> Self {
        Self::from_checkpoint(0, GENESIS.to_string())
    }

    /// A verifier that resumes after an entry already verified: the next
    /// entry must be `seq + 1` and link to `hash`.
    pub fn from_checkpoint(seq: i64, hash: String) -> Self {
        Self {
            last_seq: seq,
            last_hash: hash,
            count: 0,
        }
    }

    /// Checks that `e` is the next entry of the chain, and advances past it.
    pub fn push(&mut self, e: &LedgerEntry) -> Result<(), LedgerBreak> {
        let expected = self.last_seq + 1;
        let broken = |reason: String| LedgerBreak { seq: e.seq, reason };
        if e.seq != expected {
            return Err(broken(format!("expected seq {expected}, found {}", e.seq)));
        }
        if e.prev_hash != self.last_hash {
            return Err(broken(format!(
                "prev_hash {} does not match the hash of entry {} ({})",
                e.prev_hash, self.last_seq, self.last_hash
            )));
        }
        let recomputed = entry_hash(&e.prev_hash, e.hashed());
        if recomputed != e.hash {
            return Err(broken(format!(
                "stored hash {} does not match the entry's contents (recomputed {recomputed})",
                e.hash
            )));
        }
        self.last_seq = e.seq;
        self.last_hash = recomputed;
        self.count += 1;
        Ok(())
    }

    /// The last verified entry's seq and hash (0 and [`GENESIS`] before any).
    pub fn head(&self) -> (i64, String) {
        (self.last_seq, self.last_hash.clone())
    }

    /// How many entries this verifier has accepted.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<LedgerEntry> {
        let mut prev = GENESIS.to_string();
        let mut out = Vec::new();
        for seq in 1..=n {
            let subject = (seq % 2 == 0).then(|| format!("tok{seq}"));
            let body = canonical_body(&serde_json::json!({"n": seq, "a": "x"}));
            let kind = "demand".to_string();
            let at = 1_000 + seq;
            // The first entry is one written before actors were recorded.
            let actor = if seq == 1 {
                String::new()
            } else {
                format!("cli:user{}", seq % 3)
            };
            let mut e = LedgerEntry {
                seq,
                at,
                kind,
                subject,
                body,
                actor,
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            let hash = entry_hash(&prev, e.hashed());
            e.hash = hash.clone();
            out.push(e);
            prev = hash;
        }
        out
    }

    fn verify(entries: &[LedgerEntry]) -> Result<ChainVerifier, LedgerBreak> {
        let mut v = ChainVerifier::new();
        for e in entries {
            v.push(e)?;
        }
        Ok(v)
    }

    /// Flips one bit of the byte at `i` of a string, keeping it valid UTF-8
    /// (all test strings are ASCII; flipping bit 0 keeps them ASCII).
    fn flip(s: &str, i: usize) -> String {
        let mut bytes = s.as_bytes().to_vec();
        bytes[i] ^= 1;
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn good_chain_verifies() {
        let entries = chain(6);
        let v = verify(&entries).unwrap();
        assert_eq!(v.count(), 6);
        assert_eq!(v.head(), (6, entries[5].hash.clone()));
        assert_eq!(entries[0].prev_hash, GENESIS);
        assert_eq!(GENESIS.len(), 64);
    }

    #[test]
    fn empty_chain_head_is_genesis() {
        let v = ChainVerifier::new();
        assert_eq!(v.head(), (0, GENESIS.to_string()));
        assert_eq!(v.count(), 0);
    }

    #[test]
    fn checkpoint_resumes_mid_chain() {
        let entries = chain(5);
        let mut v = ChainVerifier::from_checkpoint(2, entries[1].hash.clone());
        for e in &entries[2..] {
            v.push(e).unwrap();
        }
        assert_eq!(v.count(), 3);
        assert_eq!(v.head().0, 5);
    }

    #[test]
    fn every_byte_of_every_field_is_covered() {
        let entries = chain(5);
        let target = 3; // the fourth entry, which has a subject
        let e = &entries[target];
        let mut variants: Vec<(String, LedgerEntry)> = Vec::new();
        for i in 0..e.body.len() {
            let mut t = e.clone();
            t.body = flip(&e.body, i);
            variants.push((format!("body[{i}]"), t));
        }
        for i in 0..e.kind.len() {
            let mut t = e.clone();
            t.kind = flip(&e.kind, i);
            variants.push((format!("kind[{i}]"), t));
        }
        let subject = e.subject.clone().unwrap();
        for i in 0..subject.len() {
            let mut t = e.clone();
            t.subject = Some(flip(&subject, i));
            variants.push((format!("subject[{i}]"), t));
        }
        for i in 0..e.prev_hash.len() {
            let mut t = e.clone();
            t.prev_hash = flip(&e.prev_hash, i);
            variants.push((format!("prev_hash[{i}]"), t));
        }
        for i in 0..e.hash.len() {
            let mut t = e.clone();
            t.hash = flip(&e.hash, i);
            variants.push((format!("hash[{i}]"), t));
        }
        for bit in 0..64 {
            let mut t = e.clone();
            t.at ^= 1 << bit;
            variants.push((format!("at bit {bit}"), t));
        }
        for i in 0..e.actor.len() {
            let mut t = e.clone();
            t.actor = flip(&e.actor, i);
            variants.push((format!("actor[{i}]"), t));
        }
        let mut t = e.clone();
        t.subject = None;
        variants.push(("subject removed".into(), t));
        let mut t = e.clone();
        t.actor = String::new();
        variants.push(("actor removed".into(), t));
        assert!(variants.len() > 200);
        for (what, tampered) in variants {
            let mut copy = entries.clone();
            copy[target] = tampered;
            let err = verify(&copy).expect_err(&what);
            assert_eq!(err.seq, 4, "{what}: {err}");
        }
    }

    #[test]
    fn deletion_is_detected() {
        let mut entries = chain(5);
        entries.remove(2);
        let err = verify(&entries).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(err.reason.contains("expected seq 3"), "{err}");
    }

    #[test]
    fn deletion_with_renumbering_is_detected() {
        let mut entries = chain(5);
        entries.remove(2);
        for (i, e) in entries.iter_mut().enumerate() {
            e.seq = i as i64 + 1;
        }
        let err = verify(&entries).unwrap_err();
        assert_eq!(err.seq, 3);
    }

    #[test]
    fn reordering_is_detected() {
        let mut entries = chain(5);
        entries.swap(1, 3);
        assert_eq!(verify(&entries).unwrap_err().seq, 4);
        let mut entries = chain(5);
        entries.swap(1, 2);
        let (a, b) = (entries[1].seq, entries[2].seq);
        entries[1].seq = b;
        entries[2].seq = a;
        assert_eq!(verify(&entries).unwrap_err().seq, 2);
    }

    #[test]
    fn failed_push_leaves_verifier_unchanged() {
        let entries = chain(3);
        let mut v = ChainVerifier::new();
        v.push(&entries[0]).unwrap();
        let mut bad = entries[1].clone();
        bad.body.push(' ');
        assert!(v.push(&bad).is_err());
        assert_eq!(v.head(), (1, entries[0].hash.clone()));
        v.push(&entries[1]).unwrap();
        v.push(&entries[2]).unwrap();
        assert_eq!(v.count(), 3);
    }

    fn hash_of(
        seq: i64,
        at: i64,
        kind: &str,
        subject: Option<&str>,
        body: &str,
        actor: &str,
    ) -> String {
        let fields = HashedFields {
            seq,
            at,
            kind,
            subject,
            body,
            actor,
        };
        entry_hash(GENESIS, fields)
    }

    #[test]
    fn encoding_is_unambiguous() {
        // Moving a byte from one field into the next must change the hash.
        let a = hash_of(1, 5, "ab", Some("c"), "{}", "cli:x");
        let b = hash_of(1, 5, "a", Some("bc"), "{}", "cli:x");
        let c = hash_of(1, 5, "abc", None, "{}", "cli:x");
        let d = hash_of(1, 5, "abc", Some(""), "{}", "cli:x");
        assert_ne!(a, b);
        assert_ne!(c, d);
        assert_ne!(
            hash_of(1, 2, "k", None, "{}", "cli:x"),
            hash_of(2, 1, "k", None, "{}", "cli:x")
        );
        // The body's end and the actor's start cannot trade bytes, and an
        // actor-less (v1) entry never hashes like one with an actor.
        assert_ne!(
            hash_of(1, 5, "k", None, "{}a", "b"),
            hash_of(1, 5, "k", None, "{}", "ab")
        );
        assert_ne!(
            hash_of(1, 5, "k", None, "{}", ""),
            hash_of(1, 5, "k", None, "{}", "x")
        );
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn canonical_body_sorts_keys_at_every_depth() {
        let v = serde_json::json!({"z": 1, "a": {"y": [ {"b": 2, "a": 1} ], "x": null}});
        assert_eq!(
            canonical_body(&v),
            r#"{"a":{"x":null,"y":[{"a":1,"b":2}]},"z":1}"#
        );
    }
}
