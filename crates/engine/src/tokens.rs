//! Subject tokens and object lookup hashes: keyed BLAKE3, so the catalog can
//! find a subject's rows without ever holding the id or a name in clear.

use domicile_core::ids::{ObjectKey, SubjectId};

/// Turns ids and names into keyed hashes.
#[derive(Clone)]
pub struct Tokenizer {
    key: [u8; 32],
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer(..)")
    }
}

impl Tokenizer {
    pub fn new(key: [u8; 32]) -> Self {
        Tokenizer { key }
    }

    fn hash(&self, domain: &str, parts: &[&[u8]]) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(domain.as_bytes());
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        hex::encode(&h.finalize().as_bytes()[..16])
    }

    /// The subject's token: 32 hex digits.
    pub fn subject(&self, id: &SubjectId) -> String {
        self.hash("domicile-subject-v1", &[id.as_str().as_bytes()])
    }

    /// The lookup hash of an object name within a subject.
    pub fn lookup(&self, token: &str, name: &ObjectKey) -> String {
        self.hash(
            "domicile-object-v1",
            &[token.as_bytes(), name.as_str().as_bytes()],
        )
    }

    /// A value stored in catalog settings to detect a wrong token key.
    pub fn fingerprint(&self) -> String {
        self.hash("domicile-key-check-v1", &[])
    }
}
