//! A model test of the policy fence: an apply of a new policy version is
//! interleaved with one write at every step of the write path (before each
//! catalog call the writing engine makes, from its opening to its last
//! commit), and no interleaving may commit a copy into a region the version
//! active at the commit forbids.
//!
//! The writing engine sits on a catalog that does, before its k-th call,
//! what another process would: apply the new version. Every k from the
//! first call to one past the last of an undisturbed write is tried, on a
//! fresh deployment each.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domicile_catalog::raw::{RawRow, RawTable, RawValue};
use domicile_catalog::{
    Catalog, CommitOutcome, Fence, GarbageRetry, GarbageRow, JobCounts, JobRow, JobState, JobStore,
    JobWaiting, LedgerAppend, LedgerEntry, Millis, MoveMark, ObjectRow, PlacementRow,
    PlacementSummary, PolicyApplied, PolicyVersionRow, ResidencyRow, Result, SubjectRow, UnitMove,
    UnitOutcome, UnitReceipt, UnitRow, UnitState,
};
use domicile_core::Config;
use domicile_engine::{Engine, EngineOptions, Secrets};
use domicile_test_support::engine::{jur, put, sid};

/// v1: everything in China. v2: India's data may not sit in China.
const V1: &str =
    "[[rule]]\nname = \"everything-in-cn\"\nallow = [\"cn\"]\ncustodian = \"op-kms\"\n";
const V2: &str = "[[rule]]\nname = \"default\"\ncustodian = \"op-kms\"\n\n[[rule]]\nname = \"india-not-in-china\"\nhomes = [\"IN\"]\ndeny = [\"CN\"]\n";

fn config_text(rules: &str) -> String {
    let mut text = String::from(
        "[operator]\nname = \"Test\"\nheadquarters = \"CN\"\n\n[catalog]\nurl = \"sqlite://data/catalog.db\"\n",
    );
    for (id, j) in [("cn", "CN"), ("sg", "SG")] {
        text += &format!(
            "\n[[region]]\nid = \"{id}\"\njurisdiction = \"{j}\"\nprovider = \"self\"\nprovider_headquarters = \"{j}\"\nstore = \"file://data/regions/{id}\"\nstorage_price_gb_month = 0.02\negress_price_gb = 0.05\n"
        );
    }
    text += "\n[[custodian]]\nid = \"op-kms\"\njurisdiction = \"CN\"\nheadquarters = \"CN\"\nkeyring = \"file://data/keys/op-kms\"\n\n";
    text += rules;
    text
}

/// A catalog that applies a policy version (as another process would)
/// before the engine's `at`-th call, and notes which calls commit.
#[derive(Debug)]
struct Interleaving {
    inner: Arc<dyn Catalog>,
    at: usize,
    calls: AtomicUsize,
    apply: Mutex<Option<PolicyVersionRow>>,
    applied_before: Mutex<Option<usize>>,
    commits: Mutex<Vec<usize>>,
}

impl Interleaving {
    async fn step(&self, name: &str) {
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        let row = if i == self.at {
            self.apply.lock().unwrap().take()
        } else {
            None
        };
        if let Some(row) = row {
            let ledger = LedgerAppend {
                kind: "policy".into(),
                subject: None,
                body: serde_json::json!({}),
                at: row.applied_at,
                actor: row.actor.clone(),
            };
            assert!(self.inner.apply_policy(&row, ledger).await.unwrap().created);
            *self.applied_before.lock().unwrap() = Some(i);
        }
        if name.starts_with("commit") {
            self.commits.lock().unwrap().push(i);
        }
    }
}

#[async_trait]
impl Catalog for Interleaving {
    async fn durable(&self) -> Result<()> {
        self.inner.durable().await
    }

    async fn schema_version(&self) -> Result<i64> {
        self.step("schema_version").await;
        self.inner.schema_version().await
    }

    async fn add_subject(&self, subject: &SubjectRow, ledger: LedgerAppend) -> Result<()> {
        self.step("add_subject").await;
        self.inner.add_subject(subject, ledger).await
    }

    async fn add_subjects(&self, subjects: &[SubjectRow], at: Millis, actor: &str) -> Result<u64> {
        self.step("add_subjects").await;
        self.inner.add_subjects(subjects, at, actor).await
    }

    async fn get_subjects(&self, tokens: &[String]) -> Result<Vec<Option<SubjectRow>>> {
        self.step("get_subjects").await;
        self.inner.get_subjects(tokens).await
    }

    async fn set_home(&self, token: &str, home: &str, ledger: LedgerAppend) -> Result<()> {
        self.step("set_home").await;
        self.inner.set_home(token, home, ledger).await
    }

    async fn erase_subject(&self, token: &str, ledger: LedgerAppend) -> Result<Vec<GarbageRow>> {
        self.step("erase_subject").await;
        self.inner.erase_subject(token, ledger).await
    }

    async fn count_subjects(&self) -> Result<i64> {
        self.step("count_subjects").await;
        self.inner.count_subjects().await
    }

    async fn subjects_page(
        &self,
        after: Option<&str>,
        limit: u32,
        home: Option<&str>,
        region: Option<&str>,
    ) -> Result<Vec<SubjectRow>> {
        self.step("subjects_page").await;
        self.inner.subjects_page(after, limit, home, region).await
    }

    async fn get_placements(&self, keys: &[(String, String)]) -> Result<Vec<Option<PlacementRow>>> {
        self.step("get_placements").await;
        self.inner.get_placements(keys).await
    }

    async fn placements_of(&self, token: &str) -> Result<Vec<PlacementRow>> {
        self.step("placements_of").await;
        self.inner.placements_of(token).await
    }

    async fn ensure_placement(
        &self,
        row: &PlacementRow,
        policy: i64,
        ledger: LedgerAppend,
    ) -> Result<PlacementRow> {
        self.step("ensure_placement").await;
        self.inner.ensure_placement(row, policy, ledger).await
    }

    async fn commit_move(
        &self,
        fence: &Fence,
        regions: &[String],
        custodian: &str,
        wrapped_key: &[u8],
        ledger: LedgerAppend,
    ) -> Result<PlacementRow> {
        self.step("commit_move").await;
        self.inner
            .commit_move(fence, regions, custodian, wrapped_key, ledger)
            .await
    }

    async fn begin_moves(
        &self,
        marks: &[MoveMark],
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<bool>> {
        self.step("begin_moves").await;
        self.inner.begin_moves(marks, lease_until, now).await
    }

    async fn commit_unit_moves(
        &self,
        moves: &[UnitMove],
    ) -> Result<Vec<Result<(PlacementRow, bool)>>> {
        self.step("commit_unit_moves").await;
        self.inner.commit_unit_moves(moves).await
    }

    async fn abort_move(&self, token: &str, category: &str, epoch: i64) -> Result<()> {
        self.step("abort_move").await;
        self.inner.abort_move(token, category, epoch).await
    }

    async fn placements_page(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>> {
        self.step("placements_page").await;
        self.inner.placements_page(after, limit).await
    }

    async fn placements_range_page(
        &self,
        range: domicile_catalog::TokenRange<'_>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementSummary>> {
        self.step("placements_range_page").await;
        self.inner.placements_range_page(range, after, limit).await
    }

    async fn custodian_placements_page(
        &self,
        custodian: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PlacementRow>> {
        self.step("custodian_placements_page").await;
        self.inner
            .custodian_placements_page(custodian, after, limit)
            .await
    }

    async fn rewrap_placements(&self, rewraps: &[domicile_catalog::Rewrap]) -> Result<Vec<bool>> {
        self.step("rewrap_placements").await;
        self.inner.rewrap_placements(rewraps).await
    }

    async fn subject_seals(&self, tokens: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        self.step("subject_seals").await;
        self.inner.subject_seals(tokens).await
    }

    async fn residency(&self) -> Result<Vec<ResidencyRow>> {
        self.step("residency").await;
        self.inner.residency().await
    }

    async fn commit_object_if(
        &self,
        fence: &Fence,
        row: &ObjectRow,
        replaced_due: i64,
        expect: &domicile_catalog::Expect,
    ) -> Result<CommitOutcome> {
        self.step("commit_object").await;
        self.inner
            .commit_object_if(fence, row, replaced_due, expect)
            .await
    }

    async fn delete_object_if(
        &self,
        fence: &Fence,
        lookup: &str,
        due: i64,
        expect: &domicile_catalog::Expect,
    ) -> Result<Option<CommitOutcome>> {
        self.step("delete_object").await;
        self.inner
            .delete_object_if(fence, lookup, due, expect)
            .await
    }

    async fn get_object(&self, token: &str, lookup: &str) -> Result<Option<ObjectRow>> {
        self.step("get_object").await;
        self.inner.get_object(token, lookup).await
    }

    async fn objects_of(&self, token: &str, category: Option<&str>) -> Result<Vec<ObjectRow>> {
        self.step("objects_of").await;
        self.inner.objects_of(token, category).await
    }

    async fn objects_page(
        &self,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<ObjectRow>> {
        self.step("objects_page").await;
        self.inner.objects_page(after, limit).await
    }

    async fn due_garbage(&self, limit: u32, now: Millis) -> Result<Vec<GarbageRow>> {
        self.step("due_garbage").await;
        self.inner.due_garbage(limit, now).await
    }

    async fn queue_garbage(&self, row: &GarbageRow) -> Result<i64> {
        self.step("queue_garbage").await;
        self.inner.queue_garbage(row).await
    }

    async fn retry_garbage(&self, retries: &[GarbageRetry]) -> Result<()> {
        self.step("retry_garbage").await;
        self.inner.retry_garbage(retries).await
    }

    async fn finish_garbage(&self, id: i64, ledger: Option<LedgerAppend>) -> Result<()> {
        self.step("finish_garbage").await;
        self.inner.finish_garbage(id, ledger).await
    }

    async fn append_ledger(&self, entry: LedgerAppend) -> Result<i64> {
        self.step("append_ledger").await;
        self.inner.append_ledger(entry).await
    }

    async fn ledger_page(&self, after: i64, limit: u32) -> Result<Vec<LedgerEntry>> {
        self.step("ledger_page").await;
        self.inner.ledger_page(after, limit).await
    }

    async fn ledger_of(&self, token: &str) -> Result<Vec<LedgerEntry>> {
        self.step("ledger_of").await;
        self.inner.ledger_of(token).await
    }

    async fn ledger_head(&self) -> Result<(i64, String)> {
        self.step("ledger_head").await;
        self.inner.ledger_head().await
    }

    async fn add_checkpoint(&self, row: &domicile_catalog::CheckpointRow) -> Result<bool> {
        self.step("add_checkpoint").await;
        self.inner.add_checkpoint(row).await
    }

    async fn checkpoints(&self) -> Result<Vec<domicile_catalog::CheckpointRow>> {
        self.step("checkpoints").await;
        self.inner.checkpoints().await
    }

    async fn apply_policy(
        &self,
        row: &PolicyVersionRow,
        ledger: LedgerAppend,
    ) -> Result<PolicyApplied> {
        self.step("apply_policy").await;
        self.inner.apply_policy(row, ledger).await
    }

    async fn policy_version(&self) -> Result<i64> {
        self.step("policy_version").await;
        self.inner.policy_version().await
    }

    async fn policy(&self, version: Option<i64>) -> Result<Option<PolicyVersionRow>> {
        self.step("policy").await;
        self.inner.policy(version).await
    }

    async fn policy_history(&self) -> Result<Vec<PolicyVersionRow>> {
        self.step("policy_history").await;
        self.inner.policy_history().await
    }

    async fn setting(&self, key: &str) -> Result<Option<String>> {
        self.step("setting").await;
        self.inner.setting(key).await
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.step("set_setting").await;
        self.inner.set_setting(key, value).await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        self.step("init_setting").await;
        self.inner.init_setting(key, value).await
    }

    async fn raw_count(&self, table: RawTable) -> Result<i64> {
        self.step("raw_count").await;
        self.inner.raw_count(table).await
    }

    async fn raw_page(
        &self,
        table: RawTable,
        after: Option<&[RawValue]>,
        limit: u32,
    ) -> Result<Vec<RawRow>> {
        self.step("raw_page").await;
        self.inner.raw_page(table, after, limit).await
    }

    async fn raw_insert(&self, table: RawTable, rows: &[RawRow]) -> Result<()> {
        self.step("raw_insert").await;
        self.inner.raw_insert(table, rows).await
    }

    async fn raw_finish(&self) -> Result<()> {
        self.step("raw_finish").await;
        self.inner.raw_finish().await
    }
}

#[async_trait]
impl JobStore for Interleaving {
    async fn record_run(&self, run: &domicile_catalog::RunRow) -> Result<()> {
        self.step("record_run").await;
        self.inner.record_run(run).await
    }

    async fn runs(&self, limit: u32) -> Result<Vec<domicile_catalog::RunRow>> {
        self.step("runs").await;
        self.inner.runs(limit).await
    }

    async fn create_job(&self, job: &JobRow) -> Result<i64> {
        self.step("create_job").await;
        self.inner.create_job(job).await
    }

    async fn add_units(&self, job: i64, units: &[UnitRow]) -> Result<()> {
        self.step("add_units").await;
        self.inner.add_units(job, units).await
    }

    async fn discard_units(&self, job: i64) -> Result<u64> {
        self.step("discard_units").await;
        self.inner.discard_units(job).await
    }

    async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        self.step("job").await;
        self.inner.job(id).await
    }

    async fn open_job(&self) -> Result<Option<JobRow>> {
        self.step("open_job").await;
        self.inner.open_job().await
    }

    async fn jobs(&self, limit: u32) -> Result<Vec<JobRow>> {
        self.step("jobs").await;
        self.inner.jobs(limit).await
    }

    async fn set_job_state(&self, id: i64, state: JobState, now: Millis) -> Result<()> {
        self.step("set_job_state").await;
        self.inner.set_job_state(id, state, now).await
    }

    async fn claim_units(
        &self,
        job: i64,
        owner: &str,
        limit: u32,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Vec<UnitRow>> {
        self.step("claim_units").await;
        self.inner
            .claim_units(job, owner, limit, lease_until, now)
            .await
    }

    async fn claim_unit(
        &self,
        job: i64,
        pair: (&str, &str),
        owner: &str,
        max_bytes: i64,
        lease_until: Millis,
        now: Millis,
    ) -> Result<Option<UnitRow>> {
        self.step("claim_unit").await;
        self.inner
            .claim_unit(job, pair, owner, max_bytes, lease_until, now)
            .await
    }

    async fn renew_leases(
        &self,
        job: i64,
        owner: &str,
        units: &[(String, String)],
        lease_until: Millis,
    ) -> Result<u64> {
        self.step("renew_leases").await;
        self.inner
            .renew_leases(job, owner, units, lease_until)
            .await
    }

    async fn finish_unit(
        &self,
        job: i64,
        token: &str,
        category: &str,
        owner: &str,
        outcome: &UnitOutcome,
        now: Millis,
    ) -> Result<bool> {
        self.step("finish_unit").await;
        self.inner
            .finish_unit(job, token, category, owner, outcome, now)
            .await
    }

    async fn finish_units_with_receipts(&self, done: &[UnitReceipt]) -> Result<Vec<bool>> {
        self.step("finish_units_with_receipts").await;
        self.inner.finish_units_with_receipts(done).await
    }

    async fn cancel_pending(&self, job: i64, now: Millis) -> Result<u64> {
        self.step("cancel_pending").await;
        self.inner.cancel_pending(job, now).await
    }

    async fn job_counts(&self, job: i64, now: Millis) -> Result<JobCounts> {
        self.step("job_counts").await;
        self.inner.job_counts(job, now).await
    }

    async fn job_waiting(&self, job: i64) -> Result<JobWaiting> {
        self.step("job_waiting").await;
        self.inner.job_waiting(job).await
    }

    async fn units_in(&self, job: i64, state: UnitState, limit: u32) -> Result<Vec<UnitRow>> {
        self.step("units_in").await;
        self.inner.units_in(job, state, limit).await
    }
}

struct Case {
    _dir: tempfile::TempDir,
    v1: Config,
    v2: Config,
}

impl Case {
    /// A deployment under version 1 (v1 applied), with a subject of India
    /// that has data in cn and one that has none yet.
    async fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let parse =
            |rules: &str| Config::parse("test.toml", &config_text(rules), dir.path()).unwrap();
        let (v1, v2) = (parse(V1), parse(V2));
        let setup = Engine::open_with(v1.clone(), Secrets::empty(), EngineOptions::default())
            .await
            .unwrap();
        setup.apply_policy(&v1).await.unwrap();
        setup
            .add_subjects(&[(sid("seeded"), jur("IN")), (sid("fresh"), jur("IN"))])
            .await
            .unwrap();
        put(&setup, "seeded", "profile", "profile/old", b"old")
            .await
            .unwrap();
        Case { _dir: dir, v1, v2 }
    }

    /// The writing engine, on v1, over a catalog that applies v2 before its
    /// `at`-th call.
    async fn writer(&self, at: usize) -> (Engine, Arc<Interleaving>) {
        let inner = domicile_catalog::open(&self.v1.catalog_url).await.unwrap();
        let catalog = Arc::new(Interleaving {
            inner,
            at,
            calls: AtomicUsize::new(0),
            apply: Mutex::new(Some(PolicyVersionRow {
                version: 0,
                applied_at: 1,
                actor: "another process".into(),
                digest: self.v2.plan_digest(),
                text: self.v2.source.text().to_string(),
            })),
            applied_before: Mutex::new(None),
            commits: Mutex::new(Vec::new()),
        });
        let options = EngineOptions {
            move_wait: std::time::Duration::from_millis(200),
            ..EngineOptions::default()
        };
        let engine =
            Engine::test_open_on(self.v1.clone(), catalog.clone(), Secrets::empty(), options)
                .await
                .unwrap();
        (engine, catalog)
    }
}

/// What one interleaving may end with: the write committed where the
/// version active at its commit allows, or refused without a commit.
fn check(
    at: usize,
    subject: &str,
    done: &domicile_engine::Result<domicile_engine::PutReceipt>,
    catalog: &Interleaving,
) {
    let applied = *catalog.applied_before.lock().unwrap();
    let last_commit = catalog.commits.lock().unwrap().last().copied();
    match done {
        Ok(receipt) => {
            let commit = last_commit.expect("a write that succeeded committed");
            let under_v2 = applied.is_some_and(|a| a <= commit);
            if under_v2 {
                assert!(
                    !receipt.regions.contains(&"cn".to_string()),
                    "apply before call {at}: {subject}'s write committed into cn at call {commit} under v2"
                );
            }
        }
        Err(e) => assert!(
            matches!(
                e,
                domicile_engine::Error::Forbidden(_)
                    | domicile_engine::Error::Busy { .. }
                    | domicile_engine::Error::PolicyChanged { .. }
            ),
            "apply before call {at}: {subject}'s write failed otherwise: {e}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_interleaving_of_an_apply_with_a_write_commits_into_a_forbidden_region() {
    // An undisturbed write: how many catalog calls it makes.
    let case = Case::new().await;
    let (engine, catalog) = case.writer(usize::MAX).await;
    put(&engine, "fresh", "profile", "profile/new", b"new")
        .await
        .unwrap();
    put(&engine, "seeded", "profile", "profile/more", b"more")
        .await
        .unwrap();
    let calls = catalog.calls.load(Ordering::SeqCst);
    assert!(calls > 5, "{calls} catalog calls");

    let mut refused = 0;
    let mut moved = 0;
    for at in 0..=calls {
        let case = Case::new().await;
        let (engine, catalog) = case.writer(at).await;
        for (subject, name) in [("fresh", "profile/new"), ("seeded", "profile/more")] {
            let done = put(&engine, subject, "profile", name, b"late").await;
            check(at, subject, &done, &catalog);
            match &done {
                Ok(r) if !r.regions.contains(&"cn".to_string()) => moved += 1,
                Ok(_) => {}
                Err(_) => refused += 1,
            }
        }
    }
    // Both outcomes were met: some writes were carried to sg, some refused
    // (the seeded subject's data must move first, and no job runs here).
    assert!(moved > 0, "no interleaving carried a write to sg");
    assert!(refused > 0, "no interleaving refused a write");
}
