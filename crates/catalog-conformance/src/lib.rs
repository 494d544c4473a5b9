//! The conformance suite every [`Catalog`] backend must pass, kept out of
//! the catalog's library so that no production build carries it: the
//! catalog's tests run it on SQLite and on PostgreSQL, as a dev-dependency.
//!
//! [`run_all`] runs every check, each on a fresh, empty catalog made by the
//! caller's factory, and each check panics with a message naming what broke.
//! The checks are public so a backend may also run them one by one. Nothing
//! here knows which backend it talks to: only the catalog's public API is
//! used.
//!
//! Every check ends by verifying the whole ledger chain, so any method that
//! corrupts the chain fails the check that called it.
//!
//! - this file: [`run_all`], [`CHECKS`], and the rows and helpers every check
//!   builds on ([`job_row`], [`unit`], [`read_ledger`] and [`assert_chain`]
//!   are public for backend tests beside this suite).
//! - `subjects`: registering, re-homing, erasing; the settings table.
//! - `placements`: creating placements, the planner's scan, residency, a
//!   custodian's placements and their rewraps.
//! - `objects`: the object index: commits, deletes, listings, fences.
//! - `conditions`: conditional commits and deletes, under racing writers too.
//! - `moves`: moving a placement: marks under leases, commits, aborts.
//! - `garbage`: the garbage queue, write intents, and retries of rows a
//!   collection pass could not finish.
//! - `ledger`: one chain from genesis, under concurrent writers too; the
//!   head and its stored checkpoints.
//! - `jobs`: migration jobs, claims under leases, claim order.
//! - `turns`: a worker's turn: unit releases riding in its change, batches.
//! - `policy`: policy versions, and the fence of a stale version.
#![allow(clippy::unwrap_used)]

mod conditions;
mod garbage;
mod jobs;
mod ledger;
mod moves;
mod objects;
mod placements;
mod policy;
mod subjects;
mod turns;

use std::future::Future;
use std::sync::Arc;

use domicile_catalog::ledger::ChainVerifier;
use domicile_catalog::{
    Catalog, CommitOutcome, Fence, GarbageRow, JobRow, JobState, LedgerAppend, LedgerEntry,
    ObjectRow, PlacementRow, PlacementState, SubjectRow, UnitRow, UnitState,
};
use serde_json::json;

pub use conditions::{concurrent_conditional_commits, conditional_commits};
pub use garbage::{garbage, garbage_retries, write_intents};
pub use jobs::{claim_order, concurrent_claims, jobs};
pub use ledger::{concurrent_writers, ledger_chain, ledger_checkpoints};
pub use moves::moves;
pub use objects::{commit_object, delete_object, objects};
pub use placements::{
    ensure_placement, placements_page, placements_range_page, residency, rewrap_placements,
    scan_follows_changes,
};
pub use policy::{policy_fence, policy_versions};
pub use subjects::{empty_catalog, erase_subject, settings, subjects, subjects_page};
pub use turns::{batched_turns, rekeyed_moves, unit_release_with_the_change};

/// How many checks `run_all` runs (each on its own fresh catalog).
pub const CHECKS: usize = 31;

/// When the checks' commits and deletes say a replaced blob is due: a
/// grace period after the rows' times.
const REPLACED_DUE: i64 = 300_000;

/// Runs every check, each on a fresh, empty catalog from `fresh`.
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Catalog>>,
{
    empty_catalog(&*fresh().await).await;
    subjects(&*fresh().await).await;
    subjects_page(&*fresh().await).await;
    erase_subject(&*fresh().await).await;
    ensure_placement(&*fresh().await).await;
    commit_object(&*fresh().await).await;
    delete_object(&*fresh().await).await;
    moves(&*fresh().await).await;
    placements_page(&*fresh().await).await;
    placements_range_page(&*fresh().await).await;
    residency(&*fresh().await).await;
    rewrap_placements(&*fresh().await).await;
    objects(&*fresh().await).await;
    garbage(&*fresh().await).await;
    write_intents(&*fresh().await).await;
    garbage_retries(&*fresh().await).await;
    ledger_chain(&*fresh().await).await;
    ledger_checkpoints(&*fresh().await).await;
    settings(&*fresh().await).await;
    scan_follows_changes(&*fresh().await).await;
    jobs(&*fresh().await).await;
    claim_order(&*fresh().await).await;
    unit_release_with_the_change(&*fresh().await).await;
    batched_turns(&*fresh().await).await;
    rekeyed_moves(&*fresh().await).await;
    policy_versions(&*fresh().await).await;
    policy_fence(&*fresh().await).await;
    concurrent_claims(fresh().await).await;
    concurrent_writers(fresh().await).await;
    conditional_commits(&*fresh().await).await;
    concurrent_conditional_commits(fresh().await).await;
}

/// A running job's row, as `JobStore::create_job` takes it (the catalog
/// creates it in the planning state). For backend tests beside this suite.
pub fn job_row() -> JobRow {
    JobRow {
        id: 0,
        state: JobState::Running,
        created_at: 1,
        finished_at: None,
        policy: "digest".into(),
        rate: 0,
        grace_ms: 0,
        units: 0,
        bytes: 0,
    }
}

/// A pending unit of job 0 from r1 to r2 and r3, custodian kms-a to kms-b.
/// For backend tests beside this suite.
pub fn unit(token: &str, category: &str, priority: i64, bytes: i64) -> UnitRow {
    UnitRow {
        job: 0,
        token: token.into(),
        category: category.into(),
        priority,
        from: strings(&["r1"]),
        to: strings(&["r2", "r3"]),
        custodian_from: "kms-a".into(),
        custodian_to: "kms-b".into(),
        objects: 1,
        bytes,
        state: UnitState::Pending,
        attempts: 0,
        lease_owner: None,
        lease_until: 0,
        purge_after: 0,
        moved_bytes: 0,
        error: None,
        updated_at: 1,
    }
}

// ---------------------------------------------------------------------------
// Fixtures

fn subject(token: &str, home: &str) -> SubjectRow {
    SubjectRow {
        token: token.into(),
        home: home.into(),
        created_at: 1_000,
        id_enc: Some(format!("sealed:{token}").into_bytes()),
    }
}

fn entry(kind: &str, subject: Option<&str>, at: i64) -> LedgerAppend {
    LedgerAppend {
        kind: kind.into(),
        subject: subject.map(str::to_string),
        body: json!({ "kind": kind, "at": at }),
        at,
        actor: "cli:conformance".into(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn placement(token: &str, category: &str, regions: &[&str]) -> PlacementRow {
    PlacementRow {
        token: token.into(),
        category: category.into(),
        regions: strings(regions),
        epoch: 1,
        state: PlacementState::Active,
        custodian: "kms-a".into(),
        wrapped_key: format!("key-{token}-{category}").into_bytes(),
        objects: 0,
        bytes: 0,
        since: 2_000,
    }
}

fn object(token: &str, category: &str, lookup: &str, blob: &str, stored: i64) -> ObjectRow {
    ObjectRow {
        token: token.into(),
        category: category.into(),
        lookup: lookup.into(),
        name_enc: format!("enc({lookup})").into_bytes(),
        meta_enc: b"meta".to_vec(),
        version: 0,
        size: stored - 1,
        stored_size: stored,
        checksum: format!("sum-{blob}"),
        blob_id: blob.into(),
        modified_at: 5_000,
    }
}

fn fence(token: &str, category: &str, epoch: i64) -> Fence {
    Fence {
        token: token.into(),
        category: category.into(),
        epoch,
        policy: 0,
    }
}

/// Registers a subject with placements in the given categories.
async fn setup(cat: &dyn Catalog, token: &str, home: &str, placements: &[(&str, &[&str])]) {
    cat.add_subject(&subject(token, home), entry("subject", Some(token), 1_000))
        .await
        .unwrap();
    for (category, regions) in placements {
        cat.ensure_placement(
            &placement(token, category, regions),
            0,
            entry("placement", Some(token), 2_000),
        )
        .await
        .unwrap();
    }
}

/// Commits and expects success; returns (version, replaced).
async fn commit(cat: &dyn Catalog, epoch: i64, row: &ObjectRow) -> (i64, Option<String>) {
    let f = fence(&row.token, &row.category, epoch);
    match cat.commit_object(&f, row, REPLACED_DUE).await.unwrap() {
        CommitOutcome::Committed { version, replaced } => (version, replaced),
        other => panic!(
            "commit of {}/{} was fenced: {other:?}",
            row.token, row.lookup
        ),
    }
}

async fn get_placement(cat: &dyn Catalog, token: &str, category: &str) -> PlacementRow {
    cat.get_placement(token, category)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("placement {token}/{category} is missing"))
}

async fn all_garbage(cat: &dyn Catalog) -> Vec<GarbageRow> {
    cat.garbage(u32::MAX).await.unwrap()
}

/// The whole ledger, read in pages.
pub async fn read_ledger(cat: &dyn Catalog) -> Vec<LedgerEntry> {
    let mut out: Vec<LedgerEntry> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let page = cat.ledger_page(after, 7).await.unwrap();
        assert!(page.len() <= 7, "ledger_page returned more than its limit");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Reads the whole ledger and asserts that it is one unbroken chain.
pub async fn assert_chain(cat: &dyn Catalog) -> Vec<LedgerEntry> {
    let entries = read_ledger(cat).await;
    let mut v = ChainVerifier::new();
    for e in &entries {
        if let Err(b) = v.push(e) {
            panic!("ledger chain does not verify: {b}");
        }
    }
    assert_eq!(v.count(), entries.len() as u64);
    entries
}

async fn ledger_len(cat: &dyn Catalog) -> usize {
    read_ledger(cat).await.len()
}

fn fenced(current_epoch: Option<i64>, moving: bool) -> CommitOutcome {
    CommitOutcome::Fenced {
        current_epoch,
        moving,
    }
}
