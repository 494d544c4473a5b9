//! Migration throughput: `domicile`'s online move of a data set between two
//! local regions, while a client writes, against `rclone copy --checksum`
//! (also timed with a `sync -f` after it, the durability the move has) and
//! `cp -r` of the same stored files, each into a fresh folder. Two floors
//! are timed beside them: a bare parallel copy (one file per object, no
//! checksum, catalog or deletion) and every byte appended to one file, each
//! made durable as the move is: about what a durable mover could reach here
//! (the disk's speed moves from round to round, so a floor is not a bound).
//!
//! Each round moves the data twice. First to the other region with a grace
//! period longer than the copies take, timed to its last commit: every
//! object then sits verified and durable in its new region, which serves it,
//! and the old copies are still there, as after a copy tool. (Then the grace
//! runs out and the old copies are purged, untimed.) Then back, with no
//! grace, timed to its end: moved and purged, the old copies deleted as the
//! move runs.
//!
//! `cargo bench -p domicile-bench --bench migrate -- [OBJECTS] [ROUNDS]`
//! (defaults 20000 objects of 1 KiB–1 MiB, log-uniform, about 3 GiB; 3
//! rounds). Needs `rclone` on the PATH. The page cache is warm for every
//! contender: its source is read once, untimed, before it runs. Each move first
//! waits a minute for earlier deletions to settle (see `settle_deletions`).
//! Knobs for experiments: `DOMICILE_BENCH_WORKERS` (8), `DOMICILE_BENCH_BATCH`
//! (units per worker turn, the engine's default), `DOMICILE_BENCH_GRACE_MS`
//! (the first move's grace, 20000), `DOMICILE_BENCH_REKEY` (every move
//! changes custodian, so it re-keys: each object decrypted and written
//! again under a fresh key instead of copied).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use domicile_bench::{loadavg, median, percentile_ms};
use domicile_core::Config;
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::{Engine, MigrateOptions, ObjectMeta};
use futures::StreamExt;

const SUBJECTS: usize = 2_000;
const WORKERS: usize = 8;

/// A config with regions `a` (CN) and `b` (SG) where every subject's data
/// must sit in `target`, under custodian `kms`, or, with
/// `DOMICILE_BENCH_REKEY` set, under `kms-a` in `a` and `kms-b` in `b`:
/// then every move changes custodian, and re-keys its unit.
fn config(dir: &Path, target: &str) -> String {
    let custodian = if std::env::var_os("DOMICILE_BENCH_REKEY").is_some() {
        format!("kms-{target}")
    } else {
        "kms".to_string()
    };
    format!(
        r#"
[operator]
name = "bench"
headquarters = "CN"

[catalog]
url = "sqlite://data/catalog.db"

[[region]]
id = "a"
jurisdiction = "CN"
provider = "self"
provider_headquarters = "CN"
store = "file://{dir}/regions/a"

[[region]]
id = "b"
jurisdiction = "SG"
provider = "self"
provider_headquarters = "SG"
store = "file://{dir}/regions/b"

[[custodian]]
id = "kms"
jurisdiction = "CN"
headquarters = "CN"
keyring = "file://data/keys/kms"

[[custodian]]
id = "kms-a"
jurisdiction = "CN"
headquarters = "CN"
keyring = "file://data/keys/kms-a"

[[custodian]]
id = "kms-b"
jurisdiction = "SG"
headquarters = "SG"
keyring = "file://data/keys/kms-b"

[[rule]]
name = "all-in-{target}"
allow = ["{target}"]
custodian = "{custodian}"
"#,
        dir = dir.display()
    )
}

async fn open(dir: &Path, target: &str) -> Result<Engine> {
    let path = dir.join("domicile.toml");
    std::fs::write(&path, config(dir, target))?;
    let engine = Engine::open(Config::load(&path)?).await?;
    // As `migrate apply` does: the file's rules become the active version.
    engine.apply_file_policy().await?;
    Ok(engine)
}

/// Log-uniform size in [1 KiB, 1 MiB].
fn size(i: u64) -> usize {
    let h = blake3::hash(&i.to_le_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    let u = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    (1024.0 * 1024f64.powf(u)) as usize
}

fn body(i: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut h = blake3::Hasher::new();
    h.update(&i.to_le_bytes());
    h.finalize_xof().fill(&mut out);
    out
}

/// Every file under a folder, with its size.
fn walk(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len()));
            }
        }
    }
    out
}

/// Reads every file under `dir` (untimed), so that each contender starts
/// with its source in the page cache. The move writes its copies with
/// direct I/O, past the page cache: without this, whatever reads a moved
/// region next would read it from the disk.
fn warm(dir: &Path) -> Result<()> {
    let files = walk(dir);
    let chunk = files.len().div_ceil(BARE_THREADS).max(1);
    std::thread::scope(|s| {
        let readers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    for (f, _) in part {
                        let mut file = std::fs::File::open(f)?;
                        std::io::copy(&mut file, &mut std::io::sink())?;
                    }
                    Ok::<_, std::io::Error>(())
                })
            })
            .collect();
        for r in readers {
            r.join()
                .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
        }
        Ok(())
    })
}

/// Files and bytes under a folder.
fn tree(dir: &Path) -> (u64, u64) {
    let files = walk(dir);
    (files.len() as u64, files.iter().map(|(_, n)| n).sum())
}

/// Threads of the bare copy: the most that helped on two cores.
const BARE_THREADS: usize = 4;

/// The floor of any mover that writes one file per object: a plain copy on
/// `BARE_THREADS` threads (read a file, write a temporary file, rename it),
/// then syncfs for the durability the move has. No checksum, no catalog,
/// no deletion of the source.
fn bare_copy(src: &Path, dst: &Path) -> Result<Duration> {
    let t = Instant::now();
    let files = walk(src);
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|(f, _)| f.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        std::fs::create_dir_all(dst.join(d.strip_prefix(src)?))?;
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..BARE_THREADS)
            .map(|k| {
                let files = &files;
                s.spawn(move || -> Result<()> {
                    for (f, _) in files.iter().skip(k).step_by(BARE_THREADS) {
                        let to = dst.join(f.strip_prefix(src)?);
                        let tmp = to.with_extension("part");
                        std::fs::write(&tmp, std::fs::read(f)?)?;
                        std::fs::rename(&tmp, &to)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("copy thread panicked"))?
        })
    })?;
    run_tool(Command::new("sync").arg("-f").arg(dst))?;
    Ok(t.elapsed())
}

/// The disk's own pace for these bytes: every file appended to one file
/// (`std::io::copy`, which copies inside the kernel where it can), then
/// fsync. One file creation in all.
fn sequential_copy(src: &Path, dst: &Path) -> Result<Duration> {
    let t = Instant::now();
    let mut out = std::fs::File::create(dst)?;
    for (f, _) in walk(src) {
        std::io::copy(&mut std::fs::File::open(f)?, &mut out)?;
    }
    out.sync_all()?;
    Ok(t.elapsed())
}

fn run_tool(cmd: &mut Command) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed())
}

struct Outcome {
    /// From the start (planning included) to the end of the job.
    secs: f64,
    /// From the start to the last unit's commit.
    committed: f64,
    acked: u64,
    refused: u64,
}

/// The first move's grace period: longer than its copies take, so that no
/// purge runs before its last commit.
fn copy_phase_grace() -> Duration {
    std::env::var("DOMICILE_BENCH_GRACE_MS")
        .ok()
        .and_then(|w| w.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(20))
}

/// Moves everything to `target` while a client writes, purging the old
/// copies `grace` after each unit's commit.
async fn migrate(dir: &Path, target: &str, ids: &[SubjectId], grace: Duration) -> Result<Outcome> {
    let engine = Arc::new(open(dir, target).await?);
    let workers = std::env::var("DOMICILE_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(WORKERS);
    let batch = std::env::var("DOMICILE_BENCH_BATCH")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(MigrateOptions::default().batch);
    let opts = MigrateOptions {
        workers,
        batch,
        grace,
        ..MigrateOptions::default()
    };
    let last_commit = std::sync::Mutex::new(Duration::ZERO);
    // The process's CPU time at the last commit: what the copies cost,
    // apart from the purges that follow.
    let commit_cpu = std::sync::Mutex::new((0u64, 0u64));
    let planned = std::sync::Mutex::new(Duration::ZERO);
    // Set when the client should stop writing: at the job's end, or with a
    // grace period at its last commit.
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_ticks();
    let t = Instant::now();
    // The client writes once the plan is applied (the job exists): before
    // that, a write to a region the new policy forbids is refused by
    // design, with no job to move it.
    let (applied, applied_rx) = tokio::sync::watch::channel(false);
    let mover = async {
        let status = match engine.start_migration(&opts).await {
            Ok(_) => {
                if let Ok(mut at) = planned.lock() {
                    *at = t.elapsed();
                }
                applied.send_replace(true);
                engine
                    .run_migration(&opts, &|tick| {
                        if tick.units == 0
                            && let Ok(mut at) = last_commit.lock()
                        {
                            *at = t.elapsed();
                            if let Ok(mut cpu) = commit_cpu.lock() {
                                *cpu = cpu_ticks();
                            }
                        }
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        stop.store(true, Ordering::SeqCst);
        applied.send_replace(true); // a failed start leaves nothing to write against
        status
    };
    // With a grace period the client stops at the move's last commit (what
    // it writes meanwhile would be the next move's work, not this one's):
    // from then on the job only waits to purge.
    if !grace.is_zero() {
        let (engine, stop, mut applied) = (engine.clone(), stop.clone(), applied_rx.clone());
        tokio::spawn(async move {
            let _ = applied.wait_for(|a| *a).await;
            // The job's status once, for its id; then what idle workers ask
            // (two index probes), not a status (a count over every unit)
            // fifty times a second.
            let job = match engine.migration_status(None).await {
                Ok(s) => s.job,
                Err(_) => return stop.store(true, Ordering::SeqCst),
            };
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Ok(w) = engine.migration_waiting(job).await
                    && !w.moves
                {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        });
    }
    // The client is its own task, as a server's requests are: the move's
    // workers share the task that runs the job.
    let client = {
        let (engine, stop, ids) = (engine.clone(), stop.clone(), ids.to_vec());
        let mut applied = applied_rx;
        tokio::spawn(async move {
            let _ = applied.wait_for(|a| *a).await;
            let cat = Category::from_str("notes").map_err(anyhow::Error::from)?;
            let key = ObjectKey::from_str("note").map_err(anyhow::Error::from)?;
            let mut latencies = Vec::new();
            let mut refused = std::collections::BTreeMap::<String, u64>::new();
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let id = &ids[(i * 7919) % ids.len()];
                let data = body(i as u64 + 1_000_000_000, 4096);
                let t = Instant::now();
                match engine
                    .put(id, &cat, &key, &ObjectMeta::default(), data.as_slice())
                    .await
                {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(e) => *refused.entry(e.to_string()).or_default() += 1,
                };
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>((latencies, refused))
        })
    };
    let status = mover.await;
    let (latencies, refusals) = client.await??;
    let refused = refusals.values().sum();
    let status = status?;
    let secs = t.elapsed().as_secs_f64();
    if status.state != "done" || status.failed > 0 {
        bail!(
            "migration ended {} with {} failed units",
            status.state,
            status.failed
        );
    }
    let committed = last_commit.lock().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let planned = planned.lock().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let (u, k) = cpu_ticks();
    let (cu, ck) = commit_cpu.lock().map(|c| *c).unwrap_or_default();
    eprintln!(
        "  grace {:.0} s: planned at {planned:.2} s, every unit committed at {committed:.2} s, purged at {secs:.2} s; cpu to the last commit user {:.2} s, system {:.2} s; in all user {:.2} s, system {:.2} s",
        grace.as_secs_f64(),
        cu.saturating_sub(cpu0.0) as f64 / 100.0,
        ck.saturating_sub(cpu0.1) as f64 / 100.0,
        (u - cpu0.0) as f64 / 100.0,
        (k - cpu0.1) as f64 / 100.0
    );
    if !latencies.is_empty() {
        eprintln!(
            "  client puts during the move: {} acknowledged (p50 {:.1} ms, p99 {:.1} ms), {refused} refused",
            latencies.len(),
            percentile_ms(&latencies, 0.5),
            percentile_ms(&latencies, 0.99)
        );
        for (why, n) in &refusals {
            eprintln!("    refused {n}×: {why}");
        }
    }
    Ok(Outcome {
        secs,
        committed,
        acked: latencies.len() as u64,
        refused,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let objects: u64 = args
        .first()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let rounds: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(3);
    if rounds == 0 || objects == 0 {
        bail!("OBJECTS and ROUNDS must be at least 1");
    }
    which("rclone")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let work = tempfile::Builder::new()
        .prefix("domicile-migrate-bench-")
        .tempdir()?;
    let dir = work.path().join("deploy");
    std::fs::create_dir_all(&dir)?;

    // The data set, written through the engine into region a.
    let ids: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| SubjectId::from_str(&format!("s{i:05}")))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    rt.block_on(async {
        let engine = open(&dir, "a").await?;
        let cn = Jurisdiction::from_str("CN")?;
        let batch: Vec<_> = ids.iter().map(|i| (i.clone(), cn)).collect();
        engine.add_subjects(&batch).await?;
        let media = Category::from_str("media")?;
        let e = &engine;
        let mut puts = futures::stream::iter((0..objects).map(|i| {
            let id = ids[i as usize % ids.len()].clone();
            let media = media.clone();
            async move {
                let key = ObjectKey::from_str(&format!("obj-{i}"))?;
                let data = body(i, size(i));
                e.put(&id, &media, &key, &ObjectMeta::default(), data.as_slice())
                    .await?;
                Ok::<_, anyhow::Error>(())
            }
        }))
        .buffer_unordered(8);
        while let Some(r) = puts.next().await {
            r?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let (files, bytes) = tree(&dir.join("regions/a"));
    eprintln!(
        "data set: {files} blobs, {:.2} GiB stored, written in {:.1} s",
        bytes as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64()
    );

    let grace = copy_phase_grace();
    let mut moved = Vec::new();
    let mut purged = Vec::new();
    let mut rclone = Vec::new();
    let mut rclone_synced = Vec::new();
    let mut baseline_copies = Vec::new();
    let mut cp = Vec::new();
    let mut bare = Vec::new();
    let mut sequential = Vec::new();
    let (mut acked, mut refused) = (0, 0);
    let home = dir.join("regions").join("a");
    for round in 0..rounds {
        settle_deletions();
        warm(&home)?;
        // Baselines copy the same stored files into fresh folders.
        let dst = work.path().join(format!("rclone-{round}"));
        rclone.push(run_tool(
            Command::new("rclone")
                .env_remove("AWS_CA_BUNDLE")
                .args(["copy", "--checksum", "--config", "/dev/null"])
                .arg(&home)
                .arg(&dst),
        )?);
        // What rclone's copy costs with the durability domicile's move has
        // (its copies are on disk before the commit): the same, then syncfs.
        let synced = run_tool(Command::new("sync").arg("-f").arg(&dst))?;
        rclone_synced.push(rclone[round] + synced);
        // Kept until the end: deleting it now would slow the next
        // contender's file creation (see `settle_deletions`).
        baseline_copies.push(dst);
        let dst = work.path().join(format!("cp-{round}"));
        cp.push(run_tool(Command::new("cp").arg("-r").arg(&home).arg(&dst))?);
        baseline_copies.push(dst);
        let dst = work.path().join(format!("bare-{round}"));
        bare.push(bare_copy(&home, &dst)?);
        baseline_copies.push(dst);
        let dst = work.path().join(format!("sequential-{round}"));
        sequential.push(sequential_copy(&home, &dst)?);
        baseline_copies.push(dst);
        // Then the moves: there, timed to the last commit, and back, timed
        // with its purges.
        warm(&home)?;
        let there = rt.block_on(migrate(&dir, "b", &ids, grace))?;
        if there.committed >= grace.as_secs_f64() {
            eprintln!(
                "  (the last commit came after the grace period: purges overlapped the copies; raise DOMICILE_BENCH_GRACE_MS)"
            );
        }
        check_moved(&dir, "a", "b", files)?;
        settle_deletions();
        warm(&dir.join("regions").join("b"))?;
        let back = rt.block_on(migrate(&dir, "a", &ids, Duration::ZERO))?;
        check_moved(&dir, "b", "a", files)?;
        for o in [&there, &back] {
            acked += o.acked;
            refused += o.refused;
        }
        moved.push(there.committed);
        purged.push(back.secs);
        eprintln!(
            "round {round}: domicile moved {:.2} s, moved and purged {:.2} s; rclone {:.2} s (then synced {:.2} s), cp {:.2} s, bare copy {:.2} s, sequential {:.2} s, load {}",
            there.committed,
            back.secs,
            rclone[round].as_secs_f64(),
            rclone_synced[round].as_secs_f64(),
            cp[round].as_secs_f64(),
            bare[round].as_secs_f64(),
            sequential[round].as_secs_f64(),
            loadavg()
        );
    }
    for dst in &baseline_copies {
        if dst.is_dir() {
            std::fs::remove_dir_all(dst)?;
        } else {
            std::fs::remove_file(dst)?;
        }
    }
    // Each round's ratios too: the disk's speed moves from round to round,
    // for every contender of the round alike.
    let per_round = |theirs: &[Duration], ours: &[f64]| -> (String, f64) {
        let ratios: Vec<f64> = theirs
            .iter()
            .zip(ours)
            .map(|(t, o)| t.as_secs_f64() / o)
            .collect();
        let list = ratios
            .iter()
            .map(|r| format!("{r:.2}×"))
            .collect::<Vec<_>>()
            .join(", ");
        (list, median(ratios))
    };
    let (rclone_moved, rclone_moved_ratio) = per_round(&rclone, &moved);
    let (rclone_purged, rclone_purged_ratio) = per_round(&rclone, &purged);
    let (cp_moved, cp_moved_ratio) = per_round(&cp, &moved);
    let (bare_moved, bare_moved_ratio) = per_round(&bare, &moved);
    let moved = median(moved);
    let purged = median(purged);
    let rclone = median_secs(&rclone);
    let rclone_synced = median_secs(&rclone_synced);
    let cp = median_secs(&cp);
    let bare = median_secs(&bare);
    let sequential = median_secs(&sequential);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    println!("| contender | median s | MiB/s | objects/s | speed vs domicile moved |");
    println!("|---|---:|---:|---:|---:|");
    let grace_s = grace.as_secs_f64();
    for (name, s) in [
        (
            format!(
                "domicile migrate, moved: to the last commit (8 workers, verified, durable; old copies purged {grace_s:.0} s later)"
            ),
            moved,
        ),
        (
            "domicile migrate, moved and purged (grace 0)".to_string(),
            purged,
        ),
        ("rclone copy --checksum".to_string(), rclone),
        (
            "rclone copy --checksum, then syncfs".to_string(),
            rclone_synced,
        ),
        ("cp -r".to_string(), cp),
        (
            "floor: bare copy, one file per object, then syncfs".to_string(),
            bare,
        ),
        (
            "floor: every byte into one file, then fsync".to_string(),
            sequential,
        ),
    ] {
        println!(
            "| {name} | {s:.2} | {:.0} | {:.0} | {:.2}× |",
            gib * 1024.0 / s,
            files as f64 / s,
            s / moved
        );
    }
    println!(
        "\n{files} blobs, {gib:.2} GiB; {rounds} rounds, each a move there and a move back; client writes during moves: {acked} acknowledged, {refused} refused (retryable); load {}",
        loadavg()
    );
    println!(
        "moved (to the last commit) vs rclone --checksum: {:.2}× (target ≥ 2×; {:.2}× against rclone with its copies made durable); vs cp -r: {:.2}× (target ≥ 0.7×)",
        rclone / moved,
        rclone_synced / moved,
        cp / moved
    );
    println!(
        "moved and purged (grace 0) vs rclone --checksum: {:.2}×; vs cp -r: {:.2}×",
        rclone / purged,
        cp / purged
    );
    println!(
        "the floors against rclone --checksum: a bare one-file-per-object copy {:.2}×, one sequential file {:.2}× (what a durable mover could reach here, within the disk's round-to-round noise); moved vs the bare copy: {:.2}×",
        rclone / bare,
        rclone / sequential,
        bare / moved
    );
    println!(
        "per round: moved vs rclone --checksum {rclone_moved} (median {rclone_moved_ratio:.2}×); moved and purged vs rclone {rclone_purged} (median {rclone_purged_ratio:.2}×); moved vs cp -r {cp_moved} (median {cp_moved_ratio:.2}×); moved vs the bare copy {bare_moved} (median {bare_moved_ratio:.2}×)"
    );
    Ok(())
}

/// The median of durations, in seconds.
fn median_secs(v: &[Duration]) -> f64 {
    median(v.iter().map(Duration::as_secs_f64).collect())
}

/// Fails unless every blob left region `from` for region `to`.
fn check_moved(dir: &Path, from: &str, to: &str, files: u64) -> Result<()> {
    let (moved, _) = tree(&dir.join("regions").join(to));
    let (left, _) = tree(&dir.join("regions").join(from));
    if left != 0 || moved < files {
        bail!("after the move to {to}: {left} files left behind, {moved} at the target");
    }
    Ok(())
}

/// Waits until files deleted so far no longer slow file creation down.
///
/// On ext4 without a journal (this machine's root filesystem) the inode
/// allocator skips inodes deleted in the last 60 s (300 s while their inode
/// table block is dirty), scanning past them one by one: creating thousands
/// of files right after deleting thousands is several times slower, for
/// every contender alike. Each move flushes and waits that window out
/// first (after the previous move's purge, or whatever ran before the
/// benchmark); the baselines' copies are only deleted at the end.
fn settle_deletions() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(61));
}

/// This process's user and system CPU time, in clock ticks (1/100 s).
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (
        f.get(11).copied().unwrap_or(0),
        f.get(12).copied().unwrap_or(0),
    )
}

fn which(tool: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|f| f.is_file())
        })
        .with_context(|| format!("{tool} is not installed (apt-get install {tool})"))
}
