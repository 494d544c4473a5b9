//! Signed checkpoints of the ledger's head, so that the chain proves
//! something to someone outside: a checkpoint says "the chain had `seq`
//! entries and entry `seq` hashed to `hash`", signed with the deployment's
//! Ed25519 key (`DOMICILE_LEDGER_SIGNING_KEY`, else a key file created on
//! first use beside an embedded catalog). A rewrite of the chain, even a
//! consistent re-hash of all of it, changes the hash at a checkpoint's
//! length, and a cut of its tail leaves a checkpoint beyond its end: both
//! are found by [`Engine::verify_ledger_with`].
//!
//! Checkpoints are stored in the catalog and may be published outside it
//! (appended as JSON lines to a file, or POSTed to a URL), since whoever can
//! write the catalog can delete the stored ones. The statement signed, and
//! how to check it, are in docs/evidence.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use domicile_catalog::CheckpointRow;
use domicile_catalog::ledger::{ChainVerifier, GENESIS};
use domicile_catalog::{LedgerEntry, Millis};
use ring::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::secrets::ledger_key_path;
use crate::verify::LedgerReport;

/// The first line of every checkpoint statement: what the signature is of.
pub const STATEMENT_DOMAIN: &str = "domicile-ledger-checkpoint-v1";

/// The catalog setting that records which key signs this catalog's
/// checkpoints: a process with another key refuses to sign.
const KEY_SETTING: &str = "ledger_key_id";

/// Ledger entries read per page while verifying.
const PAGE: u32 = 1_000;

/// The Ed25519 key that signs checkpoints and evidence bundles.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The public half only.
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key whose 32-byte seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Result<SigningKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| Error::Secrets(format!("the ledger signing key is not usable: {e}")))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(SigningKey { pair, key_id })
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// The key's fingerprint: hex SHA-256 of its public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The signature of `message`, hex (64 bytes).
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.pair.sign(message).as_ref())
    }

    /// A signed checkpoint of the head (`seq`, `hash`) at `at`.
    pub fn checkpoint(&self, seq: i64, hash: &str, at: Millis) -> CheckpointRow {
        let signature = self.sign_hex(statement(seq, hash, at, &self.key_id).as_bytes());
        CheckpointRow {
            seq,
            hash: hash.to_string(),
            at,
            key_id: self.key_id.clone(),
            public_key: self.public_hex(),
            signature,
        }
    }
}

/// A public key's fingerprint: hex SHA-256 of its 32 bytes.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, public_key))
}

/// What a checkpoint's signature is of: five lines, each ended by `\n`:
/// the domain, the seq (decimal), the hash (lowercase hex), the time
/// (milliseconds since the Unix epoch, decimal) and the key id.
pub fn statement(seq: i64, hash: &str, at: Millis, key_id: &str) -> String {
    format!("{STATEMENT_DOMAIN}\n{seq}\n{hash}\n{at}\n{key_id}\n")
}

/// Decodes lowercase hex of exactly `len` bytes; anything else (upper
/// case, another length) is refused, so that one value has one spelling.
pub fn strict_hex(what: &str, text: &str, len: usize) -> std::result::Result<Vec<u8>, String> {
    let bytes = hex::decode(text).map_err(|e| format!("{what} is not hex: {e}"))?;
    if bytes.len() != len || hex::encode(&bytes) != text {
        return Err(format!("{what} must be {} lowercase hex digits", len * 2));
    }
    Ok(bytes)
}

/// Checks one checkpoint on its own: its key id is its public key's
/// fingerprint, that key is `trusted` (a key id) when one is given, its
/// fields are well formed and its signature verifies.
pub fn check_checkpoint(
    c: &CheckpointRow,
    trusted: Option<&str>,
) -> std::result::Result<(), String> {
    let at = |why: String| format!("checkpoint at seq {}: {why}", c.seq);
    if c.seq < 0 {
        return Err(at("a negative seq".into()));
    }
    strict_hex("its hash", &c.hash, 32).map_err(at)?;
    let public = strict_hex("its public key", &c.public_key, 32).map_err(at)?;
    let sig = strict_hex("its signature", &c.signature, 64).map_err(at)?;
    if key_id(&public) != c.key_id {
        return Err(at(format!(
            "its key id {} is not its public key's fingerprint {}",
            c.key_id,
            key_id(&public)
        )));
    }
    if let Some(trusted) = trusted
        && trusted != c.key_id
    {
        return Err(at(format!(
            "signed by key {}, not by the trusted key {trusted}",
            c.key_id
        )));
    }
    UnparsedPublicKey::new(&signature::ED25519, &public)
        .verify(statement(c.seq, &c.hash, c.at, &c.key_id).as_bytes(), &sig)
        .map_err(|_| at("its signature does not verify".into()))
}

/// Verifies a chain fed in order against checkpoints: the chain links as
/// [`ChainVerifier`] checks, each checkpoint is well signed, the entry at
/// each checkpoint's seq has its hash, and (at [`finish`](Self::finish))
/// no checkpoint lies beyond the chain's end.
#[derive(Debug)]
pub struct CheckpointedChain {
    chain: ChainVerifier,
    /// Checkpoints not yet reached, by seq descending (next one last).
    pending: Vec<CheckpointRow>,
    checked: u64,
    last_checked: Option<i64>,
}

impl CheckpointedChain {
    /// Starts after the entry (`seq`, `hash`) (0 and [`GENESIS`] for a
    /// whole chain). Each checkpoint is checked on its own first (see
    /// [`check_checkpoint`]); one before `seq` is refused.
    pub fn new(
        seq: i64,
        hash: String,
        mut checkpoints: Vec<CheckpointRow>,
        trusted: Option<&str>,
    ) -> std::result::Result<CheckpointedChain, String> {
        for c in &checkpoints {
            check_checkpoint(c, trusted)?;
            if c.seq < seq {
                return Err(format!(
                    "checkpoint at seq {} lies before the entries checked, which start after seq {seq}",
                    c.seq
                ));
            }
        }
        checkpoints.sort_by_key(|c| std::cmp::Reverse(c.seq));
        let mut v = CheckpointedChain {
            chain: ChainVerifier::from_checkpoint(seq, hash),
            pending: checkpoints,
            checked: 0,
            last_checked: None,
        };
        v.reached()?;
        Ok(v)
    }

    /// Checks the checkpoints at the current head.
    fn reached(&mut self) -> std::result::Result<(), String> {
        let (seq, hash) = self.chain.head();
        while let Some(c) = self.pending.last() {
            if c.seq != seq {
                break;
            }
            if c.hash != hash {
                return Err(format!(
                    "the ledger was rewritten: entry {seq} hashes to {hash}, but the checkpoint signed at {} says {}",
                    c.at, c.hash
                ));
            }
            self.checked += 1;
            self.last_checked = Some(seq);
            self.pending.pop();
        }
        Ok(())
    }

    /// Takes the next entry of the chain.
    pub fn push(&mut self, e: &LedgerEntry) -> std::result::Result<(), String> {
        self.chain.push(e).map_err(|b| b.to_string())?;
        self.reached()
    }

    /// After the last entry: fails if a checkpoint lies beyond the end.
    pub fn finish(&self) -> std::result::Result<(), String> {
        match self.pending.first() {
            None => Ok(()),
            Some(c) => {
                let (seq, _) = self.chain.head();
                Err(format!(
                    "the ledger was cut: it ends at seq {seq}, but a checkpoint signed at {} covers {} entries",
                    c.at, c.seq
                ))
            }
        }
    }

    /// The last verified entry's seq and hash.
    pub fn head(&self) -> (i64, String) {
        self.chain.head()
    }

    /// How many entries were verified.
    pub fn count(&self) -> u64 {
        self.chain.count()
    }

    /// How many checkpoints matched the chain.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The seq of the newest checkpoint that matched.
    pub fn last_checked(&self) -> Option<i64> {
        self.last_checked
    }
}

/// Where `serve` and `ledger checkpoint --publish` publish checkpoints,
/// outside the catalog.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    /// A file each checkpoint is appended to, as one JSON line.
    pub file: Option<PathBuf>,
    /// A URL each checkpoint is POSTed to, as JSON.
    pub url: Option<String>,
}

impl Publish {
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.url.is_none()
    }

    /// Publishes one checkpoint everywhere this names.
    pub async fn publish(&self, c: &CheckpointRow) -> Result<()> {
        let line = serde_json::to_string(c)
            .map_err(|e| Error::Internal(format!("a checkpoint does not encode: {e}")))?;
        if let Some(path) = &self.file {
            append_line(path, &line)?;
        }
        if let Some(url) = &self.url {
            post(url, line).await?;
        }
        Ok(())
    }
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)
}

async fn post(url: &str, body: String) -> Result<()> {
    // reqwest's rustls has no provider of its own (ring-only tree).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let failed =
        |why: String| Error::Internal(format!("cannot publish the checkpoint to {url}: {why}"));
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let reply = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !reply.status().is_success() {
        return Err(failed(format!("it answered {}", reply.status())));
    }
    Ok(())
}

/// Reads checkpoints published as JSON lines (blank lines skipped).
pub fn read_checkpoints(path: &Path) -> Result<Vec<CheckpointRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| {
                Error::Invalid(format!(
                    "{}:{}: not a checkpoint: {e}",
                    path.display(),
                    n + 1
                ))
            })
        })
        .collect()
}

impl Engine {
    /// The key that signs this deployment's checkpoints (see
    /// [`crate::Secrets::ledger_signing_key`]); created on first use when
    /// `create` is set, else `None` if there is none.
    pub fn ledger_key(&self, create: bool) -> Result<Option<SigningKey>> {
        let path = ledger_key_path(&self.file.catalog_url, &self.file.base_dir);
        match self.secrets.ledger_signing_key(&path, create)? {
            Some(seed) => SigningKey::from_seed(&seed).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn ledger_key_or_err(&self, create: bool) -> Result<SigningKey> {
        self.ledger_key(create)?.ok_or_else(|| {
            Error::Secrets(format!(
                "there is no ledger signing key to check checkpoints with: set {} or restore {}",
                crate::secrets::LEDGER_KEY_VAR,
                ledger_key_path(&self.file.catalog_url, &self.file.base_dir).display()
            ))
        })
    }

    /// Signs the ledger's head and stores the checkpoint (creating the key
    /// on first use). A head already checkpointed by this key keeps its
    /// first checkpoint, which is returned. Refused if this catalog's
    /// checkpoints are signed by another key.
    pub async fn checkpoint_ledger(&self) -> Result<CheckpointRow> {
        let key = self.ledger_key_or_err(true)?;
        let recorded = self.catalog.init_setting(KEY_SETTING, key.key_id()).await?;
        if recorded != key.key_id() {
            return Err(Error::Secrets(format!(
                "this catalog's checkpoints are signed by key {recorded}, but this process holds key {}: \
                 set {} to that key",
                key.key_id(),
                crate::secrets::LEDGER_KEY_VAR
            )));
        }
        let (seq, hash) = self.catalog.ledger_head().await?;
        self.check_since_last_checkpoint(key.key_id(), seq, &hash)
            .await?;
        let c = key.checkpoint(seq, &hash, crate::clock::now_millis());
        if !self.catalog.add_checkpoint(&c).await? {
            let stored = self
                .catalog
                .checkpoints()
                .await?
                .into_iter()
                .find(|s| s.seq == seq && s.key_id == c.key_id);
            return stored.ok_or_else(|| Error::Internal("a stored checkpoint vanished".into()));
        }
        Ok(c)
    }

    /// Before a head is signed: the chain from this key's newest stored
    /// checkpoint up to the head (`seq`, `hash`) must link to it, so that
    /// a ledger rewritten or cut after a checkpoint is never signed anew.
    /// Reads only the entries since that checkpoint.
    async fn check_since_last_checkpoint(&self, key_id: &str, seq: i64, hash: &str) -> Result<()> {
        let last = self
            .catalog
            .checkpoints()
            .await?
            .into_iter()
            .filter(|c| c.key_id == key_id)
            .max_by_key(|c| c.seq);
        let Some(last) = last else { return Ok(()) };
        let refuse = |why: String| {
            Error::Invalid(format!(
                "{why}; the ledger is not signed again (run ledger verify)"
            ))
        };
        if last.seq > seq {
            return Err(refuse(format!(
                "the ledger was cut: it ends at seq {seq}, but a checkpoint covers {} entries",
                last.seq
            )));
        }
        let mut v = ChainVerifier::from_checkpoint(last.seq, last.hash.clone());
        let mut after = last.seq;
        while after < seq {
            let page = self.catalog.ledger_page(after, PAGE).await?;
            let Some(end) = page.last() else { break };
            after = end.seq;
            for e in page.iter().filter(|e| e.seq <= seq) {
                v.push(e).map_err(|b| {
                    refuse(format!(
                        "the ledger does not follow from its checkpoint at seq {}: {b}",
                        last.seq
                    ))
                })?;
            }
        }
        if v.head() != (seq, hash.to_string()) {
            return Err(refuse(format!(
                "the ledger was rewritten: its head is seq {seq} hash {hash}, \
                 which does not follow from the checkpoint at seq {} ({})",
                last.seq, last.hash
            )));
        }
        Ok(())
    }

    /// Every stored checkpoint, by seq.
    pub async fn ledger_checkpoints(&self) -> Result<Vec<CheckpointRow>> {
        Ok(self.catalog.checkpoints().await?)
    }

    /// Re-computes the ledger's hash chain from the first entry, and checks
    /// it against every stored checkpoint and every one of `extra` (those
    /// published outside the catalog): each must be signed by this
    /// deployment's key, and the chain must have its hash at its length.
    pub async fn verify_ledger_with(&self, extra: &[CheckpointRow]) -> Result<LedgerReport> {
        let mut checkpoints = self.catalog.checkpoints().await?;
        checkpoints.extend_from_slice(extra);
        let trusted = if checkpoints.is_empty() {
            None
        } else {
            Some(self.ledger_key_or_err(false)?.key_id().to_string())
        };
        let failed = |v: Option<&CheckpointedChain>, error: String| {
            let (head_seq, head_hash) = v.map(|v| v.head()).unwrap_or((0, GENESIS.to_string()));
            LedgerReport {
                entries: v.map(|v| v.count()).unwrap_or(0),
                head_seq,
                head_hash,
                checkpoints: v.map(|v| v.checked()).unwrap_or(0),
                ok: false,
                error: Some(error),
            }
        };
        let mut v = match CheckpointedChain::new(0, GENESIS.into(), checkpoints, trusted.as_deref())
        {
            Ok(v) => v,
            Err(why) => return Ok(failed(None, why)),
        };
        let mut after = 0;
        loop {
            let page = self.catalog.ledger_page(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                if let Err(why) = v.push(e) {
                    return Ok(failed(Some(&v), why));
                }
            }
        }
        if let Err(why) = v.finish() {
            return Ok(failed(Some(&v), why));
        }
        let (head_seq, head_hash) = v.head();
        Ok(LedgerReport {
            entries: v.count(),
            head_seq,
            head_hash,
            checkpoints: v.checked(),
            ok: true,
            error: None,
        })
    }

    /// Signs and publishes a checkpoint every `every`, while the ledger
    /// grows (an unchanged head is not signed again); runs until dropped.
    /// A failure is logged and tried again at the next tick.
    pub async fn checkpoint_every(self: Arc<Self>, every: Duration, publish: Publish) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<(i64, String)> = None;
        loop {
            tick.tick().await;
            let head = match self.catalog.ledger_head().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!("ledger checkpoint: cannot read the ledger's head: {e}");
                    continue;
                }
            };
            if last.as_ref() == Some(&head) {
                continue;
            }
            let published = async {
                let c = self.checkpoint_ledger().await?;
                publish.publish(&c).await?;
                Ok::<_, Error>(c)
            };
            match published.await {
                Ok(c) => {
                    tracing::info!(seq = c.seq, hash = %c.hash, "ledger checkpoint signed");
                    last = Some((c.seq, c.hash));
                }
                Err(e) => tracing::warn!("ledger checkpoint: {e}"),
            }
        }
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
                    kind: "demand".into(),
                    subject: None,
                    body: format!("{{\"n\":{seq}}}"),
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

    fn run(
        entries: &[LedgerEntry],
        cps: Vec<CheckpointRow>,
        trusted: Option<&str>,
    ) -> std::result::Result<CheckpointedChain, String> {
        let mut v = CheckpointedChain::new(0, GENESIS.into(), cps, trusted)?;
        for e in entries {
            v.push(e)?;
        }
        v.finish()?;
        Ok(v)
    }

    #[test]
    fn statement_is_pinned() {
        assert_eq!(
            statement(3, "ab", 1700, "k"),
            "domicile-ledger-checkpoint-v1\n3\nab\n1700\nk\n"
        );
        // The fingerprint of a fixed seed's key, so a change of encoding
        // cannot pass unnoticed.
        let k = key(7);
        assert_eq!(k.key_id(), key_id(&hex::decode(k.public_hex()).unwrap()));
        assert_eq!(k.key_id().len(), 64);
        assert_ne!(key(7).key_id(), key(8).key_id());
    }

    #[test]
    fn signed_checkpoints_verify_and_any_change_is_refused() {
        let k = key(1);
        let c = k.checkpoint(5, &"a".repeat(64), 1234);
        check_checkpoint(&c, None).unwrap();
        check_checkpoint(&c, Some(k.key_id())).unwrap();
        let wrong_key = check_checkpoint(&c, Some(key(2).key_id())).unwrap_err();
        assert!(wrong_key.contains("not by the trusted key"), "{wrong_key}");
        let mut changed = vec![];
        let mut t = c.clone();
        t.seq = 4;
        changed.push(t);
        let mut t = c.clone();
        t.at = 1235;
        changed.push(t);
        let mut t = c.clone();
        t.hash = "b".repeat(64);
        changed.push(t);
        let mut t = c.clone();
        t.hash = "A".repeat(64);
        changed.push(t);
        // Another key's public key and fingerprint, the same signature.
        let other = key(2);
        let mut t = c.clone();
        t.public_key = other.public_hex();
        t.key_id = other.key_id().into();
        changed.push(t);
        let mut t = c.clone();
        t.key_id = other.key_id().into();
        changed.push(t);
        for i in 0..c.signature.len() {
            let mut t = c.clone();
            let mut sig = t.signature.into_bytes();
            sig[i] = if sig[i] == b'0' { b'1' } else { b'0' };
            t.signature = String::from_utf8(sig).unwrap();
            changed.push(t);
        }
        for t in changed {
            assert!(check_checkpoint(&t, None).is_err(), "{t:?}");
        }
    }

    #[test]
    fn rewrite_and_cut_after_a_checkpoint_are_found() {
        let k = key(1);
        let entries = chain(6);
        let at4 = k.checkpoint(4, &entries[3].hash, 10);
        let at0 = k.checkpoint(0, GENESIS, 5);
        let v = run(&entries, vec![at4.clone(), at0.clone()], Some(k.key_id())).unwrap();
        assert_eq!((v.checked(), v.last_checked(), v.count()), (2, Some(4), 6));

        // A consistent re-hash of the whole chain after one field changed.
        let mut rewritten = chain(6);
        rewritten[1].body = "{\"n\":99}".into();
        let mut prev = GENESIS.to_string();
        for e in &mut rewritten {
            e.prev_hash = prev.clone();
            e.hash = entry_hash(&prev, e.hashed());
            prev = e.hash.clone();
        }
        let mut plain = ChainVerifier::new();
        for e in &rewritten {
            plain.push(e).unwrap();
        }
        let err = run(&rewritten, vec![at4.clone()], None).unwrap_err();
        assert!(err.contains("rewritten"), "{err}");

        // The tail cut after the checkpoint.
        let err = run(&entries[..3], vec![at4.clone()], None).unwrap_err();
        assert!(err.contains("cut"), "{err}");
        // Cut to the checkpoint itself is still consistent with it.
        run(&entries[..4], vec![at4], None).unwrap();
        // An empty chain against a checkpoint of the empty chain.
        run(&[], vec![at0], None).unwrap();
    }
}
