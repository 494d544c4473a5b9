//! Catalog rows for the backend tests: one subject `tok-1` homed in IN
//! with a `profile` placement in sg-1 and us-1, one object, a few ledger
//! entries and a setting. Both backends' tests fill and compare the same.

use domicile_catalog::ledger::{ChainVerifier, LedgerBreak};
use domicile_catalog::{
    Catalog, CommitOutcome, Fence, LedgerAppend, ObjectRow, PlacementRow, PlacementState,
    SubjectRow,
};
use serde_json::json;

pub fn entry(kind: &str, subject: Option<&str>, at: i64) -> LedgerAppend {
    LedgerAppend {
        kind: kind.into(),
        subject: subject.map(str::to_string),
        body: json!({ "what": kind }),
        at,
        actor: "cli:test".into(),
    }
}

pub fn subject(token: &str) -> SubjectRow {
    SubjectRow {
        token: token.into(),
        home: "IN".into(),
        created_at: 1,
        id_enc: Some(b"sealed-id".to_vec()),
    }
}

pub fn placement(token: &str, category: &str) -> PlacementRow {
    PlacementRow {
        token: token.into(),
        category: category.into(),
        regions: vec!["sg-1".into(), "us-1".into()],
        epoch: 1,
        state: PlacementState::Active,
        custodian: "in-kms".into(),
        wrapped_key: vec![1, 2, 3],
        objects: 0,
        bytes: 0,
        since: 2,
    }
}

pub fn object(token: &str, category: &str, lookup: &str, blob: &str) -> ObjectRow {
    ObjectRow {
        token: token.into(),
        category: category.into(),
        lookup: lookup.into(),
        name_enc: vec![9; 16],
        meta_enc: vec![],
        version: 0,
        size: 10,
        stored_size: 42,
        checksum: "c".into(),
        blob_id: blob.into(),
        modified_at: 3,
    }
}

pub fn fence(token: &str, category: &str, epoch: i64) -> Fence {
    Fence {
        token: token.into(),
        category: category.into(),
        epoch,
        policy: 0,
    }
}

/// Fills a catalog with a subject, a placement, an object and a few entries.
pub async fn populate(cat: &dyn Catalog) {
    cat.add_subject(&subject("tok-1"), entry("subject", Some("tok-1"), 1))
        .await
        .unwrap();
    cat.ensure_placement(
        &placement("tok-1", "profile"),
        0,
        entry("placement", Some("tok-1"), 2),
    )
    .await
    .unwrap();
    assert_eq!(
        cat.commit_object(
            &fence("tok-1", "profile", 1),
            &object("tok-1", "profile", "lk", "blob-1"),
            0
        )
        .await
        .unwrap(),
        CommitOutcome::Committed {
            version: 1,
            replaced: None
        }
    );
    for i in 0..5 {
        cat.append_ledger(entry("demand", Some("tok-1"), 10 + i))
            .await
            .unwrap();
    }
    cat.set_setting("k", "v").await.unwrap();
}

/// Verifies the whole ledger; returns the first break, if any.
pub async fn verify(cat: &dyn Catalog) -> Result<u64, LedgerBreak> {
    let mut v = ChainVerifier::new();
    for e in cat.ledger_page(0, u32::MAX).await.unwrap() {
        v.push(&e)?;
    }
    Ok(v.count())
}
