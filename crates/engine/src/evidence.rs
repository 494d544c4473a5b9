//! The evidence bundle: one file that proves, to someone with nothing but
//! the file (and, to know whose it is, the signing key's fingerprint),
//! what the policy was, what verification found, where the data was and
//! who could reach it, and what the ledger recorded, all signed with the
//! deployment's ledger key.
//!
//! The format (docs/evidence.md has it byte by byte): a JSON document
//! `{"format","manifest","members","signature"}` written compactly with
//! its keys in that order, then `\n`. `members` maps each member's name to
//! its text. `manifest` is the text of a JSON object that lists every
//! member with its length and SHA-256, the scope (the whole ledger, or one
//! subject's entries), the public key and its fingerprint; `signature` is
//! the Ed25519 signature, hex, of `domicile-evidence-manifest-v1\n`
//! followed by the manifest's bytes. The ledger member holds a run of the
//! hash chain that ends at a signed checkpoint (for one subject: from the
//! subject's first entry; for the whole ledger: from the first), so each
//! exported entry can be checked to be in the checkpointed chain.
//!
//! [`verify`] checks it all, and that the file is byte for byte the one
//! written, so no byte of it can change unnoticed.

use std::collections::{BTreeMap, BTreeSet};

use domicile_catalog::ledger::GENESIS;
use domicile_catalog::{CheckpointRow, LedgerEntry};
use domicile_core::ids::SubjectId;
use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointedChain, SigningKey, key_id, strict_hex};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// The bundle's format, in the document and in its manifest.
pub const FORMAT: &str = "domicile-evidence-v1";

/// What precedes the manifest's bytes in what is signed.
pub const SIGNATURE_DOMAIN: &str = "domicile-evidence-manifest-v1\n";

/// The members every bundle has.
pub const POLICY: &str = "policy.json";
pub const VERIFY: &str = "verify.json";
pub const RESIDENCY: &str = "residency.json";
pub const EXPOSURE: &str = "exposure.json";
pub const LEDGER: &str = "ledger.jsonl";
pub const CHECKPOINTS: &str = "checkpoints.jsonl";
pub const MEMBERS: [&str; 6] = [CHECKPOINTS, EXPOSURE, LEDGER, POLICY, RESIDENCY, VERIFY];

/// The scope of a bundle's ledger entries.
pub const SCOPE_LEDGER: &str = "ledger";
pub const SCOPE_SUBJECT: &str = "subject";

/// The document, as written: its fields in this order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    format: String,
    manifest: String,
    members: BTreeMap<String, String>,
    signature: String,
}

/// The signed manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// When the bundle was written: milliseconds since the Unix epoch.
    pub created_at: i64,
    /// `ledger` (every entry, the chain from its first) or `subject`.
    pub scope: String,
    /// The subject's token, for scope `subject`.
    pub subject: Option<String>,
    /// For scope `subject`: the seqs of the subject's entries, ascending.
    pub entries: Vec<i64>,
    /// The signing key's fingerprint (hex SHA-256 of `public_key`).
    pub key_id: String,
    /// The Ed25519 public key, hex.
    pub public_key: String,
    /// Every member, by name.
    pub members: Vec<MemberDigest>,
}

/// One member's name, length in bytes and hex SHA-256 of its UTF-8 bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberDigest {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// One line of `ledger.jsonl`: a ledger entry with every stored field.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine {
    seq: i64,
    at: i64,
    kind: String,
    subject: Option<String>,
    body: String,
    actor: String,
    prev_hash: String,
    hash: String,
}

impl From<&LedgerEntry> for EntryLine {
    fn from(e: &LedgerEntry) -> Self {
        EntryLine {
            seq: e.seq,
            at: e.at,
            kind: e.kind.clone(),
            subject: e.subject.clone(),
            body: e.body.clone(),
            actor: e.actor.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

impl From<EntryLine> for LedgerEntry {
    fn from(e: EntryLine) -> Self {
        LedgerEntry {
            seq: e.seq,
            at: e.at,
            kind: e.kind,
            subject: e.subject,
            body: e.body,
            actor: e.actor,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// What goes into a bundle.
#[derive(Debug, Clone)]
pub struct Contents {
    pub created_at: i64,
    /// The subject's token, for a subject's bundle.
    pub subject: Option<String>,
    /// A run of the chain: from the first entry (whole ledger) or from the
    /// subject's first entry, to a checkpointed entry.
    pub segment: Vec<LedgerEntry>,
    /// The checkpoints within the run (its last entry's among them).
    pub checkpoints: Vec<CheckpointRow>,
    /// The JSON documents: policy, verify, residency and exposure.
    pub documents: BTreeMap<String, String>,
}

/// What [`verify`] found in a good bundle.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub key_id: String,
    pub created_at: i64,
    pub scope: String,
    pub subject: Option<String>,
    /// The entries the bundle is about: the subject's, or all.
    pub entries: u64,
    /// The run of the chain checked: first and last seq (0, 0 if empty).
    pub chain_from: i64,
    pub chain_to: i64,
    /// The signed checkpoints that matched the chain.
    pub checkpoints: u64,
    pub members: Vec<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn json_lines<T: Serialize>(
    items: impl IntoIterator<Item = T>,
) -> std::result::Result<String, String> {
    let mut out = String::new();
    for item in items {
        out.push_str(&serde_json::to_string(&item).map_err(|e| e.to_string())?);
        out.push('\n');
    }
    Ok(out)
}

/// Writes a bundle, signed with `key`.
pub fn build(key: &SigningKey, c: Contents) -> std::result::Result<Vec<u8>, String> {
    let mut members = c.documents;
    members.insert(
        LEDGER.into(),
        json_lines(c.segment.iter().map(EntryLine::from))?,
    );
    members.insert(CHECKPOINTS.into(), json_lines(&c.checkpoints)?);
    let entries = match &c.subject {
        None => Vec::new(),
        Some(token) => c
            .segment
            .iter()
            .filter(|e| e.subject.as_deref() == Some(token.as_str()))
            .map(|e| e.seq)
            .collect(),
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: c.created_at,
        scope: if c.subject.is_some() {
            SCOPE_SUBJECT
        } else {
            SCOPE_LEDGER
        }
        .into(),
        subject: c.subject,
        entries,
        key_id: key.key_id().into(),
        public_key: key.public_hex(),
        members: members
            .iter()
            .map(|(name, text)| MemberDigest {
                name: name.clone(),
                bytes: text.len() as u64,
                sha256: sha256_hex(text.as_bytes()),
            })
            .collect(),
    };
    let manifest = serde_json::to_string(&manifest).map_err(|e| e.to_string())?;
    let signature = key.sign_hex(format!("{SIGNATURE_DOMAIN}{manifest}").as_bytes());
    let doc = Document {
        format: FORMAT.into(),
        manifest,
        members,
        signature,
    };
    let mut out = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    out.push(b'\n');
    Ok(out)
}

/// Splits a JSON-lines member into its lines: each ends with `\n`.
fn lines(name: &str, text: &str) -> std::result::Result<Vec<String>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err(format!("{name} does not end with a newline"));
    };
    Ok(body.split('\n').map(str::to_string).collect())
}

/// Checks a bundle with nothing but its bytes and, if given, the
/// fingerprint its key must have. Any failure says what did not hold.
pub fn verify(bytes: &[u8], expected_key: Option<&str>) -> std::result::Result<Verified, String> {
    let doc: Document = serde_json::from_slice(bytes)
        .map_err(|e| format!("not an evidence bundle (it does not parse): {e}"))?;
    if doc.format != FORMAT {
        return Err(format!(
            "unknown format {:?}, expected {FORMAT}",
            doc.format
        ));
    }
    let mut again = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;
    again.push(b'\n');
    if again != bytes {
        return Err(
            "the file is not byte for byte the bundle as written: it was altered or re-encoded"
                .into(),
        );
    }
    let manifest: Manifest = serde_json::from_str(&doc.manifest)
        .map_err(|e| format!("the manifest does not parse: {e}"))?;
    if manifest.format != FORMAT {
        return Err(format!("the manifest's format is {:?}", manifest.format));
    }
    let public = strict_hex("the public key", &manifest.public_key, 32)?;
    let fingerprint = key_id(&public);
    if fingerprint != manifest.key_id {
        return Err(format!(
            "the manifest's key id {} is not its public key's fingerprint {fingerprint}",
            manifest.key_id
        ));
    }
    if let Some(expected) = expected_key {
        let expected = expected.trim().to_ascii_lowercase();
        if expected != fingerprint {
            return Err(format!(
                "signed by key {fingerprint}, not by the expected key {expected}"
            ));
        }
    }
    let sig = strict_hex("the signature", &doc.signature, 64)?;
    UnparsedPublicKey::new(&signature::ED25519, &public)
        .verify(
            format!("{SIGNATURE_DOMAIN}{}", doc.manifest).as_bytes(),
            &sig,
        )
        .map_err(|_| "the manifest's signature does not verify".to_string())?;

    // Every member is listed, with its length and digest, and no other.
    let listed: Vec<&str> = manifest.members.iter().map(|m| m.name.as_str()).collect();
    let present: Vec<&str> = doc.members.keys().map(String::as_str).collect();
    if listed != present {
        return Err(format!(
            "the members {present:?} are not the ones the manifest lists {listed:?}"
        ));
    }
    for m in &manifest.members {
        let text = &doc.members[&m.name];
        if text.len() as u64 != m.bytes || sha256_hex(text.as_bytes()) != m.sha256 {
            return Err(format!("member {} does not match its digest", m.name));
        }
    }
    for required in MEMBERS {
        if !doc.members.contains_key(required) {
            return Err(format!("member {required} is missing"));
        }
    }
    for name in [POLICY, VERIFY, RESIDENCY, EXPOSURE] {
        serde_json::from_str::<serde_json::Value>(&doc.members[name])
            .map_err(|e| format!("member {name} is not JSON: {e}"))?;
    }

    // The chain run links, and matches the checkpoints signed by the key.
    let checkpoints = lines(CHECKPOINTS, &doc.members[CHECKPOINTS])?
        .iter()
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str::<CheckpointRow>(l)
                .map_err(|e| format!("{CHECKPOINTS} line {}: {e}", n + 1))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let segment = lines(LEDGER, &doc.members[LEDGER])?
        .iter()
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str::<EntryLine>(l)
                .map(LedgerEntry::from)
                .map_err(|e| format!("{LEDGER} line {}: {e}", n + 1))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let start = match (manifest.scope.as_str(), segment.first()) {
        (SCOPE_LEDGER, _) => (0, GENESIS.to_string()),
        (SCOPE_SUBJECT, Some(first)) => (first.seq - 1, first.prev_hash.clone()),
        (SCOPE_SUBJECT, None) => return Err("a subject's bundle with no ledger entries".into()),
        (other, _) => return Err(format!("unknown scope {other:?}")),
    };
    let mut chain = CheckpointedChain::new(start.0, start.1, checkpoints, Some(&fingerprint))?;
    for e in &segment {
        chain.push(e)?;
    }
    chain.finish()?;
    let (end, _) = chain.head();
    if chain.last_checked() != Some(end) {
        return Err(format!(
            "no signed checkpoint covers the ledger's entries up to seq {end}"
        ));
    }

    // The entries it is about.
    let entries = match manifest.scope.as_str() {
        SCOPE_SUBJECT => {
            let Some(token) = &manifest.subject else {
                return Err("a subject's bundle that names no subject".into());
            };
            let of_subject: BTreeSet<i64> = segment
                .iter()
                .filter(|e| e.subject.as_deref() == Some(token.as_str()))
                .map(|e| e.seq)
                .collect();
            let listed: BTreeSet<i64> = manifest.entries.iter().copied().collect();
            if listed.len() != manifest.entries.len() || listed != of_subject || listed.is_empty() {
                return Err(format!(
                    "the manifest lists entries {:?}, but the subject's entries in the chain are {:?}",
                    manifest.entries, of_subject
                ));
            }
            listed.len() as u64
        }
        _ => {
            if manifest.subject.is_some() || !manifest.entries.is_empty() {
                return Err("a whole ledger's bundle that names a subject or entries".into());
            }
            segment.len() as u64
        }
    };
    Ok(Verified {
        key_id: fingerprint,
        created_at: manifest.created_at,
        scope: manifest.scope,
        subject: manifest.subject,
        entries,
        chain_from: segment.first().map(|e| e.seq).unwrap_or(0),
        chain_to: end,
        checkpoints: chain.checked(),
        members: present.iter().map(|s| s.to_string()).collect(),
    })
}

impl Engine {
    /// Writes an evidence bundle: of the whole ledger, or of one subject's
    /// entries. The policy and verify members are made here; `documents`
    /// adds the others (the residency and exposure reports as the command
    /// line makes them). The ledger's run ends at a signed checkpoint: for
    /// a subject, the first one at or after its last entry; else (and for
    /// the whole ledger) one of the head, signed now. The bundle is checked
    /// as [`verify`] would before it is returned: a ledger that does not
    /// match its checkpoints gives no bundle.
    pub async fn export_evidence(
        &self,
        subject: Option<&SubjectId>,
        mut documents: BTreeMap<String, String>,
    ) -> Result<Vec<u8>> {
        let key = self.ledger_key_or_err(true)?;
        let json = |v: &serde_json::Value| {
            serde_json::to_string_pretty(v)
                .map_err(|e| Error::Internal(format!("a report does not encode: {e}")))
        };
        let policy = match self.catalog.policy(None).await? {
            Some(p) => serde_json::json!({"version": p.version, "applied_at": p.applied_at,
                "actor": p.actor, "digest": p.digest, "text": p.text}),
            None => serde_json::Value::Null,
        };
        documents.insert(POLICY.into(), json(&policy)?);
        let store = self.verify(true).await?;
        let ledger = self.verify_ledger().await?;
        if let Some(why) = &ledger.error {
            return Err(Error::Invalid(format!(
                "the ledger does not verify, so no bundle was written: {why}"
            )));
        }
        documents.insert(
            VERIFY.into(),
            json(&serde_json::json!({"store": store, "ledger": ledger}))?,
        );

        let token = subject.map(|id| self.tokens.subject(id));
        let mut checkpoints: Vec<CheckpointRow> = self
            .catalog
            .checkpoints()
            .await?
            .into_iter()
            .filter(|c| c.key_id == key.key_id())
            .collect();
        let (start, end) = match &token {
            None => {
                let head = self.checkpoint_ledger().await?;
                let end = head.seq;
                checkpoints.push(head);
                (1, end)
            }
            Some(token) => {
                let seqs: Vec<i64> = self
                    .catalog
                    .ledger_of(token)
                    .await?
                    .iter()
                    .map(|e| e.seq)
                    .collect();
                let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
                    return Err(Error::NotFound(
                        "the ledger holds no entry of this subject".into(),
                    ));
                };
                let covering = checkpoints
                    .iter()
                    .filter(|c| c.seq >= last)
                    .map(|c| c.seq)
                    .min();
                let end = match covering {
                    Some(seq) => seq,
                    None => {
                        let head = self.checkpoint_ledger().await?;
                        let end = head.seq;
                        checkpoints.push(head);
                        end
                    }
                };
                (first, end)
            }
        };
        let mut segment = Vec::new();
        let mut after = start - 1;
        while after < end {
            let page = self.catalog.ledger_page(after, 1_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            segment.extend(page.into_iter().filter(|e| e.seq <= end));
        }
        checkpoints.retain(|c| c.seq >= start - 1 && c.seq <= end);
        checkpoints.sort_by_key(|c| c.seq);
        checkpoints.dedup_by(|a, b| a.seq == b.seq);
        let bytes = build(
            &key,
            Contents {
                created_at: crate::clock::now_millis(),
                subject: token,
                segment,
                checkpoints,
                documents,
            },
        )
        .map_err(Error::Internal)?;
        verify(&bytes, Some(key.key_id())).map_err(|why| {
            Error::Invalid(format!(
                "the ledger does not verify against its signed checkpoints, so no bundle was written: {why}"
            ))
        })?;
        Ok(bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use domicile_catalog::ledger::entry_hash;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32]).unwrap()
    }

    fn chain(n: i64) -> Vec<LedgerEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut e = LedgerEntry {
                    seq,
                    at: 100 + seq,
                    kind: "subject".into(),
                    subject: Some(if seq % 3 == 0 { "tokA" } else { "tokB" }.into()),
                    body: format!("{{\"n\":{seq},\"s\":\"é\\\"x\"}}"),
                    actor: "cli:test".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = entry_hash(&prev, e.hashed());
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn documents() -> BTreeMap<String, String> {
        [POLICY, VERIFY, RESIDENCY, EXPOSURE]
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    format!("{{\"member\": \"{n}\",\n \"x\": [1, 2.5]}}"),
                )
            })
            .collect()
    }

    fn bundle(k: &SigningKey, subject: Option<&str>, entries: &[LedgerEntry]) -> Vec<u8> {
        let last = entries.last().unwrap();
        build(
            k,
            Contents {
                created_at: 77,
                subject: subject.map(str::to_string),
                segment: entries.to_vec(),
                checkpoints: vec![k.checkpoint(last.seq, &last.hash, 50)],
                documents: documents(),
            },
        )
        .unwrap()
    }

    #[test]
    fn a_bundle_verifies_and_says_what_it_holds() {
        let k = key(3);
        let whole = bundle(&k, None, &chain(7));
        let v = verify(&whole, Some(k.key_id())).unwrap();
        assert_eq!(
            (v.scope.as_str(), v.entries, v.chain_from, v.chain_to),
            ("ledger", 7, 1, 7)
        );
        assert_eq!(v.checkpoints, 1);
        assert_eq!(v.members, MEMBERS.to_vec());
        // Upper case fingerprints are the same key.
        verify(&whole, Some(&k.key_id().to_ascii_uppercase())).unwrap();

        // A subject's run: from its first entry (seq 3) to the checkpoint.
        let entries = chain(7);
        let sub = bundle(&k, Some("tokA"), &entries[2..]);
        let v = verify(&sub, None).unwrap();
        assert_eq!((v.entries, v.chain_from, v.chain_to), (2, 3, 7));
        assert_eq!(v.subject.as_deref(), Some("tokA"));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let k = key(3);
        let good = bundle(&k, Some("tokA"), &chain(5)[2..]);
        let mut undetected = Vec::new();
        for i in 0..good.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                if verify(&bad, None).is_ok() {
                    undetected.push((i, bit));
                }
            }
        }
        assert!(undetected.is_empty(), "undetected flips: {undetected:?}");
    }

    #[test]
    fn wrong_key_broken_chain_and_missing_cover_are_refused() {
        let k = key(3);
        let entries = chain(5);
        let good = bundle(&k, None, &entries);
        let e = verify(&good, Some(key(4).key_id())).unwrap_err();
        assert!(e.contains("not by the expected key"), "{e}");

        // Re-signed by another key, the checkpoint still by the first.
        let other = key(4);
        let last = entries.last().unwrap();
        let mixed = build(
            &other,
            Contents {
                created_at: 1,
                subject: None,
                segment: entries.clone(),
                checkpoints: vec![k.checkpoint(last.seq, &last.hash, 50)],
                documents: documents(),
            },
        )
        .unwrap();
        let e = verify(&mixed, None).unwrap_err();
        assert!(e.contains("not by the trusted key"), "{e}");

        // A rewritten entry, the whole run re-hashed, signed again: the
        // checkpoint (of the true chain) no longer matches.
        let mut rewritten = entries.clone();
        rewritten[1].kind = "erasure".into();
        let mut prev = GENESIS.to_string();
        for e in &mut rewritten {
            e.prev_hash = prev.clone();
            e.hash = entry_hash(&prev, e.hashed());
            prev = e.hash.clone();
        }
        let forged = build(
            &k,
            Contents {
                created_at: 1,
                subject: None,
                segment: rewritten,
                checkpoints: vec![k.checkpoint(last.seq, &last.hash, 50)],
                documents: documents(),
            },
        )
        .unwrap();
        let e = verify(&forged, None).unwrap_err();
        assert!(e.contains("rewritten"), "{e}");

        // Entries past the last checkpoint.
        let uncovered = build(
            &k,
            Contents {
                created_at: 1,
                subject: None,
                segment: entries.clone(),
                checkpoints: vec![k.checkpoint(3, &entries[2].hash, 50)],
                documents: documents(),
            },
        )
        .unwrap();
        let e = verify(&uncovered, None).unwrap_err();
        assert!(e.contains("no signed checkpoint covers"), "{e}");

        // A whole-ledger bundle must start at the first entry.
        let e = verify(&bundle(&k, None, &entries[1..]), None).unwrap_err();
        assert!(e.contains("expected seq 1"), "{e}");
    }

    #[test]
    fn a_re_encoded_bundle_is_refused() {
        let k = key(3);
        let good = bundle(&k, None, &chain(3));
        let v: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        let e = verify(&pretty, None).unwrap_err();
        assert!(e.contains("byte for byte"), "{e}");
        let mut no_newline = good.clone();
        no_newline.pop();
        assert!(verify(&no_newline, None).is_err());
    }
}
