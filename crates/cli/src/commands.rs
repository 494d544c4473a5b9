//! One handler per command.

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use domicile_core::Config;
use domicile_core::diff::policy_diff;
use domicile_core::exposure::ASSUMPTION;
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_core::plan::Move;
use domicile_engine::{Engine, ObjectMeta};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::cli::{Cli, Command, LedgerCmd, PolicyCmd, ReportKind, SubjectCmd};
use crate::config_file::load;
use crate::output::{self, Format, Table, emit};
use crate::progress::Progress;
use crate::render::{exposure_table, join, move_json, plan_json, print_plan};
use crate::{BadInput, EXIT_VIOLATION};

pub async fn run(cli: Cli) -> Result<u8> {
    let format = cli.format;
    match cli.command {
        Command::Demo { dir, subjects } => crate::demo::run(dir, subjects).await,
        Command::Init { dir } => crate::init::run(&dir),
        Command::Policy(cmd) => policy(&cli.config, format, cmd),
        Command::Serve {
            listen,
            s3_listen,
            max_object_size,
            collect_every,
        } => {
            let options = crate::serve::options(max_object_size, collect_every)?;
            crate::serve::run(&cli.config, &listen, &s3_listen, options).await
        }
        Command::Catalog(cmd) => crate::catalog::run(&cli.config, format, cmd).await,
        command => {
            let config = load(&cli.config)?;
            let engine = Engine::open(config).await?;
            with_engine(&engine, format, command).await
        }
    }
}

fn jurisdiction(s: &str) -> Result<Jurisdiction> {
    Ok(Jurisdiction::from_str(s)?)
}

fn subject(s: &str) -> Result<SubjectId> {
    Ok(SubjectId::from_str(s)?)
}

async fn with_engine(engine: &Engine, format: Format, command: Command) -> Result<u8> {
    match command {
        Command::Subject(cmd) => subject_cmd(engine, format, cmd).await,
        Command::Put {
            subject: id,
            key,
            file,
            category,
        } => {
            let id = subject(&id)?;
            let key = ObjectKey::from_str(&key)?;
            let category = match category {
                Some(c) => Category::from_str(&c)?,
                None => default_category(engine.config(), &id, &key)?,
            };
            let f = tokio::fs::File::open(&file)
                .await
                .map_err(|e| BadInput(format!("cannot open {}: {e}", file.display())))?;
            // Refused before the engine creates a placement (and ledgers it)
            // for a body that cannot be read: bad input changes nothing.
            if let Ok(m) = f.metadata().await {
                if m.is_dir() {
                    return Err(BadInput(format!("{} is a directory", file.display())).into());
                }
                let max = engine.options().max_object_size;
                if m.is_file() && m.len() > max {
                    return Err(BadInput(format!(
                        "{} is {} bytes, over the object size limit of {max}",
                        file.display(),
                        m.len()
                    ))
                    .into());
                }
            }
            let r = engine
                .put(&id, &category, &key, &ObjectMeta::default(), f)
                .await?;
            let t = {
                let mut t = Table::new(&["key", "category", "version", "size", "regions"]);
                t.row(vec![
                    key.to_string(),
                    category.to_string(),
                    r.version.to_string(),
                    r.size.to_string(),
                    r.regions.join(","),
                ]);
                t
            };
            emit(
                format,
                &json!({"subject": id, "key": key, "category": category, "version": r.version, "size": r.size, "checksum": r.checksum, "regions": r.regions}),
                &t,
            )?;
            Ok(0)
        }
        Command::Get {
            subject: id,
            key,
            output,
        } => {
            let id = subject(&id)?;
            let key = ObjectKey::from_str(&key)?;
            let (_, mut stream) = engine.get(&id, &key, None).await?;
            use futures::StreamExt;
            match output {
                Some(path) => {
                    let mut f = tokio::fs::File::create(&path)
                        .await
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    while let Some(chunk) = stream.next().await {
                        f.write_all(&chunk?).await?;
                    }
                    f.flush().await?;
                }
                None => {
                    let mut out = tokio::io::stdout();
                    while let Some(chunk) = stream.next().await {
                        out.write_all(&chunk?).await?;
                    }
                    out.flush().await?;
                }
            }
            Ok(0)
        }
        Command::Ls { subject: id } => {
            let id = subject(&id)?;
            let objects = engine.list(&id).await?;
            let mut t = Table::new(&["key", "category", "size", "version", "modified"]);
            for o in &objects {
                t.row(vec![
                    o.name.clone(),
                    o.category.clone(),
                    o.size.to_string(),
                    o.version.to_string(),
                    output::time(o.modified_at),
                ]);
            }
            emit(format, &json!({"subject": id, "objects": objects}), &t)?;
            Ok(0)
        }
        Command::Rm { subject: id, key } => {
            let id = subject(&id)?;
            let key = ObjectKey::from_str(&key)?;
            if !engine.delete(&id, &key).await? {
                return Err(BadInput(format!("no object {key} for this subject")).into());
            }
            Ok(0)
        }
        Command::Migrate(cmd) => crate::migrate::command(engine, format, cmd).await,
        Command::Plan { policy, limit } => plan(engine, format, policy.as_deref(), limit).await,
        Command::Report { kind } => report(engine, format, kind).await,
        Command::Demand {
            authority,
            subject: id,
        } => {
            let a = jurisdiction(&authority)?;
            let id = subject(&id)?;
            let d = engine.demand(a, &id).await?;
            let mut t = Table::new(&["category", "region", "objects", "bytes", "level"]);
            for c in &d.copies {
                t.row(vec![
                    c.category.clone(),
                    c.region.clone(),
                    c.objects.to_string(),
                    c.bytes.to_string(),
                    c.level.as_str().into(),
                ]);
            }
            emit(format, &d, &t)?;
            if format == Format::Table {
                println!(
                    "\n{} could compel: {} (recorded as ledger entry {}).\n{}",
                    d.authority,
                    d.level.as_str(),
                    d.ledger_seq,
                    ASSUMPTION
                );
            }
            Ok(0)
        }
        Command::Ledger(LedgerCmd::Verify) => {
            let r = engine.verify_ledger().await?;
            let mut t = Table::new(&["entries", "head", "hash", "result"]);
            t.row(vec![
                r.entries.to_string(),
                r.head_seq.to_string(),
                r.head_hash.clone(),
                r.error.clone().unwrap_or_else(|| "ok".into()),
            ]);
            emit(format, &r, &t)?;
            Ok(if r.ok { 0 } else { EXIT_VIOLATION })
        }
        Command::Ledger(LedgerCmd::Show { subject: id, limit }) => {
            let entries = match id {
                Some(id) => {
                    let id = subject(&id)?;
                    engine.subject_ledger(&id).await?
                }
                None => {
                    let mut all = Vec::new();
                    let mut after = 0;
                    loop {
                        let page = engine.ledger_page(after, 1000).await?;
                        let Some(last) = page.last() else { break };
                        after = last.seq;
                        all.extend(page);
                        if let Some(l) = limit
                            && all.len() > l * 4
                        {
                            all.drain(..all.len() - l);
                        }
                    }
                    all
                }
            };
            let skip = limit.map(|l| entries.len().saturating_sub(l)).unwrap_or(0);
            let entries = &entries[skip..];
            let mut t = Table::new(&["seq", "at", "kind", "subject", "body"]);
            for e in entries {
                t.row(vec![
                    e.seq.to_string(),
                    output::time(e.at),
                    e.kind.clone(),
                    e.subject.clone().unwrap_or_default(),
                    e.body.clone(),
                ]);
            }
            let json: Vec<_> = entries
                .iter()
                .map(|e| json!({"seq": e.seq, "at": e.at, "kind": e.kind, "subject": e.subject,
                                "body": serde_json::from_str::<serde_json::Value>(&e.body).unwrap_or(json!(e.body)),
                                "prev_hash": e.prev_hash, "hash": e.hash}))
                .collect();
            emit(format, &json!({"entries": json}), &t)?;
            Ok(0)
        }
        Command::Verify { quick } => {
            let r = engine.verify(!quick).await?;
            let mut t = Table::new(&["kind", "region", "subject", "category", "blob", "detail"]);
            for p in &r.problems {
                t.row(vec![
                    p.kind.clone(),
                    p.region.clone(),
                    p.subject.clone(),
                    p.category.clone(),
                    p.blob.clone(),
                    p.detail.clone(),
                ]);
            }
            emit(format, &r, &t)?;
            if format == Format::Table {
                println!(
                    "\n{} regions, {} blobs scanned, {} indexed objects, {} copies checked, {} checksums verified: {}",
                    r.regions,
                    r.blobs_scanned,
                    r.objects_indexed,
                    r.copies_checked,
                    r.checksums_verified,
                    if r.problems.is_empty() {
                        "ok".to_string()
                    } else {
                        format!("{} problem(s)", r.problems.len())
                    }
                );
            }
            Ok(if r.problems.is_empty() {
                0
            } else {
                EXIT_VIOLATION
            })
        }
        Command::Demo { .. }
        | Command::Init { .. }
        | Command::Policy(_)
        | Command::Serve { .. }
        | Command::Catalog(_) => Ok(0),
    }
}

/// With no `--category`, the first bucket's mapping of the key decides.
fn default_category(config: &Config, id: &SubjectId, key: &ObjectKey) -> Result<Category> {
    let Some(bucket) = config.buckets.first() else {
        return Err(
            BadInput("no [[bucket]] maps keys to categories: pass --category".into()).into(),
        );
    };
    let full = bucket.key_of(id, key);
    Ok(bucket
        .map_key(&full)
        .map(|m| m.category)
        .unwrap_or_else(|_| bucket.category.clone()))
}

async fn subject_cmd(engine: &Engine, format: Format, cmd: SubjectCmd) -> Result<u8> {
    match cmd {
        SubjectCmd::Add { id, home } => {
            let id = subject(&id)?;
            let home = jurisdiction(&home)?;
            engine.add_subject(&id, home).await?;
            if format != Format::Table {
                emit(
                    format,
                    &json!({"subject": id, "home": home}),
                    &Table::new(&["subject", "home"]),
                )?;
            }
            Ok(0)
        }
        SubjectCmd::Import { file } => {
            let rows = read_subject_csv(&file)?;
            let mut progress = Progress::new("import", rows.len() as u64);
            let mut added = 0;
            for batch in rows.chunks(domicile_engine::subjects::IMPORT_BATCH) {
                added += engine.add_subjects(batch).await?;
                progress.inc(batch.len() as u64);
            }
            progress.finish();
            let mut t = Table::new(&["rows", "added", "already registered"]);
            t.row(vec![
                rows.len().to_string(),
                added.to_string(),
                (rows.len() as u64 - added).to_string(),
            ]);
            emit(format, &json!({"rows": rows.len(), "added": added}), &t)?;
            Ok(0)
        }
        SubjectCmd::Show { id } => {
            let v = engine.show_subject(&subject(&id)?).await?;
            let mut t = Table::new(&[
                "category",
                "regions",
                "epoch",
                "objects",
                "bytes",
                "custodian",
                "since",
            ]);
            for c in &v.categories {
                t.row(vec![
                    c.category.clone(),
                    c.regions.join(","),
                    c.epoch.to_string(),
                    c.objects.to_string(),
                    c.bytes.to_string(),
                    c.custodian.clone(),
                    output::time(c.since),
                ]);
            }
            emit(format, &v, &t)?;
            if format == Format::Table {
                println!("\nhome: {}", v.home);
                let reach: Vec<String> = v
                    .exposure
                    .iter()
                    .filter(|e| e.level != domicile_core::exposure::Level::None)
                    .map(|e| format!("{} ({})", e.authority, e.level.as_str()))
                    .collect();
                println!(
                    "could be compelled by: {}",
                    if reach.is_empty() {
                        "nobody".into()
                    } else {
                        reach.join(", ")
                    }
                );
                println!("{ASSUMPTION}");
            }
            Ok(0)
        }
        SubjectCmd::Rehome { id, home } => {
            let id = subject(&id)?;
            let home = jurisdiction(&home)?;
            let old = engine.rehome(&id, home).await?;
            if format == Format::Table {
                println!(
                    "rehomed from {old} to {home}; its data follows at the next `migrate apply`"
                );
            } else {
                emit(
                    format,
                    &json!({"subject": id, "from": old, "to": home}),
                    &Table::new(&["subject"]),
                )?;
            }
            Ok(0)
        }
        SubjectCmd::Erase { id } => {
            let r = engine.erase_subject(&subject(&id)?).await?;
            let mut t = Table::new(&["placements", "objects", "copies deleted"]);
            t.row(vec![
                r.placements.to_string(),
                r.objects.to_string(),
                r.copies_deleted.to_string(),
            ]);
            emit(format, &r, &t)?;
            Ok(0)
        }
    }
}

/// Reads `subject,home` rows; a header row is allowed. Every row is checked
/// before anything is written, so a bad file changes nothing.
fn read_subject_csv(path: &Path) -> Result<Vec<(SubjectId, Jurisdiction)>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
    let mut out = Vec::new();
    let mut seen: std::collections::HashMap<SubjectId, (Jurisdiction, usize)> =
        std::collections::HashMap::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| BadInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
        if i == 0 && rec.get(0) == Some("subject") {
            continue;
        }
        if rec.len() != 2 {
            return Err(BadInput(format!(
                "{}:{}: expected 2 columns (subject,home), found {}",
                path.display(),
                i + 1,
                rec.len()
            ))
            .into());
        }
        let id = SubjectId::from_str(&rec[0])
            .map_err(|e| BadInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
        let home = Jurisdiction::from_str(&rec[1])
            .map_err(|e| BadInput(format!("{}:{}: {e}", path.display(), i + 1)))?;
        match seen.get(&id) {
            Some((h, _)) if *h == home => continue,
            Some((_, line)) => {
                return Err(BadInput(format!(
                    "{}:{}: repeats the subject of line {line} with another home",
                    path.display(),
                    i + 1
                ))
                .into());
            }
            None => {
                seen.insert(id.clone(), (home, i + 1));
            }
        }
        out.push((id, home));
    }
    Ok(out)
}

fn policy(config_path: &Path, format: Format, cmd: PolicyCmd) -> Result<u8> {
    match cmd {
        PolicyCmd::Check => {
            let c = load(config_path)?;
            let mut t = Table::new(&["config", "regions", "custodians", "rules", "result"]);
            t.row(vec![
                c.file.clone(),
                c.topology.regions.len().to_string(),
                c.topology.custodians.len().to_string(),
                c.policy.rules.len().to_string(),
                "ok".into(),
            ]);
            emit(format, &json!({"config": c.file, "ok": true}), &t)?;
            Ok(0)
        }
        PolicyCmd::Explain { home, category } => {
            let c = load(config_path)?;
            let home = jurisdiction(&home)?;
            let category = Category::from_str(&category)?;
            let req = c.policy.requirement(&c.topology, home, category.as_str());
            if let Some(problem) = domicile_core::config::requirement_problem(&req, &c) {
                return Err(
                    BadInput(format!("no placement for {home}/{category}: {problem}")).into(),
                );
            }
            let verdicts = c.policy.explain(&c.topology, home, category.as_str());
            let allowed: Vec<String> = req
                .allowed
                .iter()
                .map(|&i| c.topology.regions[i].id.to_string())
                .collect();
            let mut t = Table::new(&["region", "jurisdiction", "allowed", "why"]);
            for v in &verdicts {
                let j = c
                    .topology
                    .region(&v.region)
                    .map(|r| r.jurisdiction.to_string())
                    .unwrap_or_default();
                t.row(vec![
                    v.region.clone(),
                    j,
                    if v.allowed { "yes".into() } else { "no".into() },
                    v.why.clone(),
                ]);
            }
            let json = json!({"home": home, "category": category, "allowed": allowed, "copies": req.copies,
                              "custodian": req.custodian, "rules": req.rules,
                              "distinct_jurisdictions": req.distinct_jurisdictions, "require_in": req.require_in,
                              "regions": verdicts});
            emit(format, &json, &t)?;
            if format == Format::Table {
                println!(
                    "\ncopies: {}{}; custodian: {}; matching rules: {}",
                    req.copies,
                    if req.distinct_jurisdictions {
                        " (distinct jurisdictions)"
                    } else {
                        ""
                    },
                    req.custodian.map(|c| c.to_string()).unwrap_or_default(),
                    req.rules.join(", ")
                );
            }
            Ok(0)
        }
        PolicyCmd::Diff { old, new } => {
            let a = load(&old)?;
            let b = load(&new)?;
            let changes = policy_diff(&a, &b);
            let mut t = Table::new(&[
                "category",
                "homes",
                "allowed before",
                "allowed after",
                "copies",
                "custodian",
            ]);
            for ch in &changes {
                let homes: Vec<&str> = ch.homes.iter().map(|h| h.code()).collect();
                let homes = if homes.len() > 8 {
                    format!("{} homes", homes.len())
                } else {
                    homes.join(",")
                };
                let cat = if ch.category == domicile_core::config::OTHER_CATEGORY {
                    "(other)".to_string()
                } else {
                    ch.category.clone()
                };
                t.row(vec![
                    cat,
                    homes,
                    ch.before.allowed.join(","),
                    ch.after.allowed.join(","),
                    format!("{}→{}", ch.before.copies, ch.after.copies),
                    format!(
                        "{}→{}",
                        ch.before.custodian.clone().unwrap_or_default(),
                        ch.after.custodian.clone().unwrap_or_default()
                    ),
                ]);
            }
            emit(format, &json!({"changes": changes}), &t)?;
            Ok(0)
        }
    }
}

async fn plan(engine: &Engine, format: Format, policy: Option<&Path>, limit: usize) -> Result<u8> {
    let desired = match policy {
        Some(p) => load(p)?,
        None => engine.config().clone(),
    };
    let keep_all = format != Format::Table;
    let mut moves: Vec<Move> = Vec::new();
    let summary = engine
        .plan(&desired, |m| {
            if keep_all || moves.len() < limit {
                moves.push(m);
            }
        })
        .await?;
    // The caller holds the secrets (it opened the engine): name subjects.
    let tokens: Vec<String> = moves.iter().map(|m| m.token.clone()).collect();
    let names = engine.subject_names(&tokens).await?;
    for m in &mut moves {
        m.subject = names.get(&m.token).cloned();
    }
    match format {
        Format::Json => {
            let mv: Vec<_> = moves.iter().map(move_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&plan_json(&mv, &summary))?
            );
        }
        Format::Csv => {
            let mut t = Table::new(&[
                "subject",
                "category",
                "from",
                "to",
                "objects",
                "bytes",
                "custodian_from",
                "custodian_to",
                "egress_cost",
            ]);
            for m in &moves {
                t.row(vec![
                    m.subject.clone().unwrap_or_else(|| m.token.clone()),
                    m.category.clone(),
                    join(&m.from),
                    join(&m.to),
                    m.objects.to_string(),
                    m.bytes.to_string(),
                    m.custodian_from.clone(),
                    m.custodian_to.clone(),
                    format!("{:.6}", m.egress_cost),
                ]);
            }
            print!("{}", t.csv()?);
        }
        Format::Table => print_plan(&moves, &summary, limit),
    }
    Ok(0)
}

async fn report(engine: &Engine, format: Format, kind: ReportKind) -> Result<u8> {
    match kind {
        ReportKind::Residency => {
            let rows = engine.residency().await?;
            let mut t = Table::new(&[
                "home",
                "category",
                "region",
                "jurisdiction",
                "subjects",
                "objects",
                "bytes",
            ]);
            for r in &rows {
                t.row(vec![
                    r.home.clone(),
                    r.category.clone(),
                    r.region.clone(),
                    r.jurisdiction.clone(),
                    r.subjects.to_string(),
                    r.objects.to_string(),
                    r.bytes.to_string(),
                ]);
            }
            emit(format, &json!({"rows": rows}), &t)?;
        }
        ReportKind::Exposure => {
            let s = engine.present().await?;
            let t = exposure_table(&s.exposure_before);
            emit(
                format,
                &json!({"rows": s.exposure_before, "assumption": ASSUMPTION}),
                &t,
            )?;
            if format == Format::Table {
                println!("{ASSUMPTION}");
            }
        }
        ReportKind::Cost => {
            let s = engine.present().await?;
            let mut t = Table::new(&["region", "jurisdiction", "bytes", "monthly_cost"]);
            for r in &s.cost_before {
                t.row(vec![
                    r.region.to_string(),
                    r.jurisdiction.to_string(),
                    r.bytes.to_string(),
                    format!("{:.4}", r.monthly_cost),
                ]);
            }
            if format == Format::Table {
                t.row(vec![
                    "total".into(),
                    String::new(),
                    String::new(),
                    format!("{:.4}", s.totals.monthly_cost_before),
                ]);
            }
            emit(
                format,
                &json!({"rows": s.cost_before, "total_monthly_cost": s.totals.monthly_cost_before}),
                &t,
            )?;
        }
        ReportKind::Violations => {
            let v = engine.violations().await?;
            let mut t = Table::new(&["subject", "category", "region", "rule", "since"]);
            for x in &v {
                t.row(vec![
                    x.subject.clone(),
                    x.category.clone(),
                    x.region.clone(),
                    x.rule.clone(),
                    output::time(x.since),
                ]);
            }
            emit(format, &json!({"violations": v}), &t)?;
            if !v.is_empty() {
                return Ok(EXIT_VIOLATION);
            }
        }
    }
    Ok(0)
}
