//! `domicile demo`: the India/China story, end to end, on embedded regions
//! in a fresh folder.
//!
//! A phone maker headquartered in China keeps every user's data in China
//! (policy v1). India's rules change (policy v2): no Indian data in China,
//! Indian payment data stays in India, Indian keys with an Indian custodian.
//! The demo loads synthetic users, reports where their data is and who can
//! reach it, plans the move and shows what it costs and what it changes
//! about each government's reach, then carries it out online while a client
//! keeps writing, and proves the result (verify, ledger verify).
//!
//! Reach comes from presets (see `domicile_core::presets`): China reaches
//! the China-headquartered operator's copies everywhere, the US what its
//! providers hold, every government its territory. After the move, China's
//! reach over Indian users is ciphertext only, as are those of the US and
//! Singapore: their keys are at the Indian custodian. The exposure tables
//! cite the grounds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result};
use domicile_core::Config;
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::{Engine, ObjectMeta};
use futures::StreamExt;

use crate::BadInput;
use crate::output::{Table, bytes, money};
use crate::progress::Progress;
use crate::render::print_exposure_change;

pub const V1: &str = include_str!("../../../examples/demo-v1.toml");
pub const V2: &str = include_str!("../../../examples/demo-v2.toml");

/// Deterministic synthetic bytes for object `n` of `len` bytes.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// Cheap deterministic sizes.
fn size_of(seed: u64, min: usize, max: usize) -> usize {
    let h = blake3::hash(&seed.to_be_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    min + (u64::from_le_bytes(b) as usize) % (max - min + 1)
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

pub async fn run(dir: Option<PathBuf>, subjects: u32) -> Result<u8> {
    if subjects == 0 {
        return Err(BadInput("--subjects must be at least 1".into()).into());
    }
    let dir = match dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(&d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return Err(BadInput(format!(
                    "{} is not empty: the demo builds a fresh deployment",
                    d.display()
                ))
                .into());
            }
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
            d
        }
        None => tempfile::Builder::new()
            .prefix("domicile-demo-")
            .tempdir()?
            .keep(),
    };
    let v1_path = dir.join("domicile.toml");
    let v2_path = dir.join("policy-v2.toml");
    std::fs::write(&v1_path, V1)?;
    std::fs::write(&v2_path, V2)?;
    let started = std::time::Instant::now();

    println!("domicile demo in {}", dir.display());
    println!(
        "An operator headquartered in CN runs 5 regions (cn-north, aws-ap-southeast-1 [SG, US provider],"
    );
    println!(
        "aws-us-east-1 [US], in-mumbai [IN], tw-taipei [TW]) and two key custodians (operator-kms in CN, in-kms in IN)."
    );
    println!(
        "Reach: every government its territory; CN every copy of its CN-headquartered operator (cn-national-intelligence);"
    );
    println!(
        "the US what US-headquartered providers hold (us-cloud-act); see `domicile reach explain --authority CN`."
    );

    let v1 = Config::load(&v1_path)?;
    let v2 = Config::load(&v2_path)?;
    let engine = Engine::open(v1).await?;

    // Subjects: half Indian, the rest Chinese and Taiwanese.
    let homes = ["IN", "IN", "IN", "IN", "IN", "CN", "CN", "CN", "TW", "TW"];
    let people: Vec<(SubjectId, Jurisdiction)> = (0..subjects)
        .map(|i| {
            let id = SubjectId::from_str(&format!("user-{i:06}"))?;
            let home = Jurisdiction::from_str(homes[i as usize % homes.len()])?;
            Ok((id, home))
        })
        .collect::<Result<_>>()?;
    for batch in people.chunks(domicile_engine::subjects::IMPORT_BATCH) {
        engine.add_subjects(batch).await?;
    }

    // Objects: a profile each, media for most, payment data for some.
    let profile = Category::from_str("profile")?;
    let media = Category::from_str("media")?;
    let payment = Category::from_str("payment")?;
    let mut work = Vec::new();
    for (n, (id, _)) in people.iter().enumerate() {
        let n = n as u64;
        work.push((
            id.clone(),
            profile.clone(),
            "profile.json",
            size_of(n * 3, 512, 4096),
            n * 3,
        ));
        if n % 4 != 3 {
            work.push((
                id.clone(),
                media.clone(),
                "media/photo-1.jpg",
                size_of(n * 3 + 1, 16 << 10, 256 << 10),
                n * 3 + 1,
            ));
        }
        if n.is_multiple_of(3) {
            work.push((
                id.clone(),
                payment.clone(),
                "payments/card.json",
                size_of(n * 3 + 2, 256, 2048),
                n * 3 + 2,
            ));
        }
    }
    let mut progress = Progress::new("load", work.len() as u64);
    let engine_ref = &engine;
    let mut results = futures::stream::iter(work.into_iter().map(
        |(id, cat, name, len, seed)| async move {
            let key = ObjectKey::from_str(name)?;
            let body = content(seed, len);
            engine_ref
                .put(&id, &cat, &key, &ObjectMeta::default(), body.as_slice())
                .await
                .map_err(anyhow::Error::from)
        },
    ))
    .buffer_unordered(8);
    while let Some(r) = results.next().await {
        r?;
        progress.inc(1);
    }
    drop(results);
    progress.finish();

    section("Policy v1: everything in China (report residency)");
    print_residency(&engine).await?;

    let present = engine.present().await?;
    section("Who could compel it now (report exposure)");
    print_exposure_change(&present.exposure_before, &present.exposure_before);
    println!("(before = after here: nothing has changed yet)");
    section("What it costs now (report cost)");
    let mut t = Table::new(&["region", "bytes", "monthly"]);
    for c in &present.cost_before {
        t.row(vec![
            c.region.to_string(),
            bytes(c.bytes),
            money(c.monthly_cost),
        ]);
    }
    print!("{}", t.render());

    section("Policy v2: India's rules (policy diff domicile.toml policy-v2.toml)");
    for ch in domicile_core::diff::policy_diff(&engine.config(), &v2) {
        let homes: Vec<&str> = ch.homes.iter().map(|h| h.code()).collect();
        if homes.len() > 8 {
            continue;
        }
        let cat = if ch.category == domicile_core::config::OTHER_CATEGORY {
            "other categories".to_string()
        } else {
            ch.category.clone()
        };
        println!(
            "  {} {}: [{}] -> [{}], custodian {} -> {}",
            homes.join(","),
            cat,
            ch.before.allowed.join(", "),
            ch.after.allowed.join(", "),
            ch.before.custodian.unwrap_or_default(),
            ch.after.custodian.unwrap_or_default()
        );
    }

    section("The plan (plan --policy policy-v2.toml)");
    let mut by_route: BTreeMap<(String, String, String), (u64, u64, u64)> = BTreeMap::new();
    let summary = engine
        .plan(&v2, |m| {
            let from: Vec<&str> = m.from.iter().map(|r| r.as_str()).collect();
            let to: Vec<&str> = m.to.iter().map(|r| r.as_str()).collect();
            let e = by_route
                .entry((m.category.clone(), from.join(","), to.join(",")))
                .or_default();
            e.0 += 1;
            e.1 += m.objects;
            e.2 += m.bytes;
        })
        .await?;
    let mut t = Table::new(&["category", "from", "to", "units", "objects", "bytes"]);
    for ((cat, from, to), (u, o, b)) in &by_route {
        t.row(vec![
            cat.clone(),
            from.clone(),
            to.clone(),
            u.to_string(),
            o.to_string(),
            bytes(*b),
        ]);
    }
    print!("{}", t.render());
    let tot = &summary.totals;
    println!(
        "\n{} subjects, {} objects, {} move; one-time egress {}; monthly storage {} -> {}.",
        tot.subjects,
        tot.objects,
        bytes(tot.bytes),
        money(tot.egress_cost),
        money(tot.monthly_cost_before),
        money(tot.monthly_cost_after)
    );
    section("What the move changes about each government's reach");
    print_exposure_change(&summary.exposure_before, &summary.exposure_after);

    section("Carrying it out (migrate apply), while a client keeps writing");
    // The operator adopts policy v2: it becomes the desired state.
    std::fs::write(&v1_path, V2)?;
    drop(engine);
    let engine = Engine::open(Config::load(&v1_path)?).await?;
    // As `migrate apply` does: the edited file's policy becomes the
    // fleet's next version (ledgered), then its job starts.
    let applied = engine.apply_file_policy().await?;
    if let Some(a) = applied {
        println!("policy version {} applied", a.version);
    }
    let opts = domicile_engine::MigrateOptions {
        grace: std::time::Duration::from_millis(200),
        ..domicile_engine::MigrateOptions::default()
    };
    let job = engine.start_migration(&opts).await?;
    println!(
        "job {}: {} units, {} to copy",
        job.job,
        job.units,
        bytes(job.bytes_total as u64)
    );
    let writes = DemoWriter::default();
    let (status, ()) = futures::join!(
        crate::migrate::run(&engine, &opts),
        writes.run(&engine, &people)
    );
    let status = status?;
    print!("{}", crate::migrate::status_table(&status).render());
    let (acked, refused) = writes.check(&engine).await?;
    println!(
        "{acked} writes acknowledged during the move, every one read back with its own bytes; {refused} refused while their data sat in a region the new policy forbids."
    );
    let (rekeyed, custodian_changes) = rekeyed_moves(&engine).await?;
    println!(
        "{rekeyed} of {custodian_changes} units that changed custodian were re-keyed: every object written again under a fresh key that only the new custodian ever held (ledger: move entries with \"rekeyed\": true)."
    );

    section("After the move (report residency)");
    print_residency(&engine).await?;
    let after = engine.present().await?;
    section("Who could compel it now");
    print_exposure_change(&present.exposure_before, &after.exposure_before);
    println!(
        "monthly storage: {} -> {}",
        money(present.totals.monthly_cost_before),
        money(after.totals.monthly_cost_before)
    );

    section("Proofs");
    let ledger = engine.verify_ledger().await?;
    println!(
        "ledger verify: {} entries, chain {}",
        ledger.entries,
        if ledger.ok { "intact" } else { "BROKEN" }
    );
    let v = engine.verify(true).await?;
    println!(
        "verify: {} blobs in {} regions checked against the catalog and the policy: {}",
        v.blobs_scanned,
        v.regions,
        if v.problems.is_empty() {
            "ok".to_string()
        } else {
            format!("{} problem(s)", v.problems.len())
        }
    );
    let violations = engine.violations().await?;
    println!(
        "report violations: {}",
        if violations.is_empty() {
            "none".to_string()
        } else {
            format!("{}", violations.len())
        }
    );

    println!(
        "\nDone in {:.1} s. Explore it: cd {} && domicile report residency",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(
        if ledger.ok && v.problems.is_empty() && violations.is_empty() && status.failed == 0 {
            0
        } else {
            crate::EXIT_VIOLATION
        },
    )
}

/// The ledger's moves that changed custodian, and how many of them were
/// re-keyed.
async fn rekeyed_moves(engine: &Engine) -> Result<(u64, u64)> {
    let (mut rekeyed, mut changed, mut after) = (0u64, 0u64, 0i64);
    loop {
        let page = engine.ledger_page(after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok((rekeyed, changed));
        };
        after = last.seq;
        for e in page.iter().filter(|e| e.kind == "move") {
            let body: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
            if body["custodian_from"] != body["custodian_to"] {
                changed += 1;
                if body["rekeyed"] == true {
                    rekeyed += 1;
                }
            }
        }
    }
}

/// Residency by home and region: subjects (the most in any one category),
/// objects and bytes.
async fn print_residency(engine: &Engine) -> Result<()> {
    let mut agg: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for r in engine.residency().await? {
        let e = agg.entry((r.home, r.region)).or_default();
        e.0 = e.0.max(r.subjects);
        e.1 += r.objects;
        e.2 += r.bytes;
    }
    let mut t = Table::new(&["home", "region", "subjects", "objects", "bytes"]);
    for ((home, region), (s, o, b)) in &agg {
        t.row(vec![
            home.clone(),
            region.clone(),
            s.to_string(),
            o.to_string(),
            bytes(*b as u64),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// A client that keeps writing while the demo migrates, and remembers what
/// was acknowledged.
#[derive(Debug, Default)]
struct DemoWriter {
    acked: std::sync::Mutex<Vec<(SubjectId, Vec<u8>)>>,
    refused: std::sync::atomic::AtomicU64,
}

impl DemoWriter {
    async fn run(&self, engine: &Engine, people: &[(SubjectId, Jurisdiction)]) {
        let Ok(key) = ObjectKey::from_str("notes/while-moving.txt") else {
            return;
        };
        let Ok(cat) = Category::from_str("profile") else {
            return;
        };
        for (i, (id, _)) in people.iter().enumerate().step_by(7).take(150) {
            let body = format!("note {i} written during the migration").into_bytes();
            match engine
                .put(id, &cat, &key, &ObjectMeta::default(), body.as_slice())
                .await
            {
                Ok(_) => {
                    if let Ok(mut a) = self.acked.lock() {
                        a.push((id.clone(), body));
                    }
                }
                Err(_) => {
                    self.refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// Reads every acknowledged write back.
    async fn check(&self, engine: &Engine) -> Result<(usize, u64)> {
        let key = ObjectKey::from_str("notes/while-moving.txt")?;
        let acked = self.acked.lock().map(|a| a.clone()).unwrap_or_default();
        for (id, body) in &acked {
            let (_, mut stream) = engine.get(id, &key, None).await?;
            let mut got = Vec::new();
            while let Some(chunk) = stream.next().await {
                got.extend_from_slice(&chunk?);
            }
            anyhow::ensure!(&got == body, "an acknowledged write did not read back");
        }
        Ok((
            acked.len(),
            self.refused.load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}
