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

    /// The key that seals subject ids for the catalog: derived from the
    /// token key, so only a holder of the deployment's secrets opens them.
    fn id_key(&self) -> domicile_store::DataKey {
        domicile_store::DataKey::from_bytes(blake3::derive_key(
            "domicile subject-id seal v1",
            &self.key,
        ))
    }

    /// The subject id sealed for the catalog, bound to its token.
    pub fn seal_id(&self, token: &str, id: &SubjectId) -> Option<Vec<u8>> {
        domicile_store::crypto::seal_value(&self.id_key(), token.as_bytes(), id.as_str().as_bytes())
            .ok()
    }

    /// The subject id of a token, if its sealed form opens.
    pub fn open_id(&self, token: &str, sealed: &[u8]) -> Option<String> {
        let bytes =
            domicile_store::crypto::open_value(&self.id_key(), token.as_bytes(), sealed).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// A value stored in catalog settings to detect a wrong token key.
    pub fn fingerprint(&self) -> String {
        self.hash("domicile-key-check-v1", &[])
    }
}
