//! Ids parsed from test literals, and the engine called as its tests call
//! it.

use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::{Engine, Error, ObjectMeta, PutReceipt};

pub fn sid(s: &str) -> SubjectId {
    s.parse().unwrap()
}

pub fn cat(s: &str) -> Category {
    s.parse().unwrap()
}

pub fn key(s: &str) -> ObjectKey {
    s.parse().unwrap()
}

pub fn jur(s: &str) -> Jurisdiction {
    s.parse().unwrap()
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A write with default metadata.
pub async fn put(
    engine: &Engine,
    subject: &str,
    category: &str,
    name: &str,
    body: &[u8],
) -> Result<PutReceipt, Error> {
    engine
        .put(
            &sid(subject),
            &cat(category),
            &key(name),
            &ObjectMeta::default(),
            body,
        )
        .await
}

/// The subject's token, as its blobs' paths and the catalog name it.
pub fn token(engine: &Engine, subject: &str) -> String {
    engine.tokens().subject(&sid(subject))
}
