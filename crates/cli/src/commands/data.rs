//! `put`, `get`, `ls` and `rm`: one subject's objects, by stored name.
//!
//! The command line names objects as the engine stores them. An object the
//! S3 API wrote through bucket `b` is stored as `b/{name}` (its key after
//! the bucket's subject pattern), so `get alice user-data/photo.jpg` reads
//! the S3 object `users/alice/photo.jpg` of bucket `user-data`, and a name
//! put here under `user-data/` shows in that bucket. Names in no bucket's
//! namespace are the command line's own: no bucket lists or serves them.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result};
use domicile_core::Config;
use domicile_core::ids::{Category, ObjectKey};
use domicile_engine::{Engine, ObjectMeta};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::subject;
use crate::BadInput;
use crate::output::{self, Format, Table, emit};

pub(super) async fn put(
    engine: &Engine,
    format: Format,
    id: String,
    key: String,
    file: PathBuf,
    category: Option<String>,
) -> Result<u8> {
    let id = subject(&id)?;
    let key = ObjectKey::from_str(&key)?;
    let category = match category {
        Some(c) => Category::from_str(&c)?,
        None => default_category(engine.file_config(), &key)?,
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

pub(super) async fn get(
    engine: &Engine,
    id: String,
    key: String,
    output: Option<PathBuf>,
) -> Result<u8> {
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

pub(super) async fn ls(engine: &Engine, format: Format, id: String, all: bool) -> Result<u8> {
    let id = subject(&id)?;
    let mut objects = engine.list(&id).await?;
    if !all {
        objects.retain(|o| !domicile_engine::multipart::is_staged(&o.name));
    }
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

pub(super) async fn rm(engine: &Engine, id: String, key: String) -> Result<u8> {
    let id = subject(&id)?;
    let key = ObjectKey::from_str(&key)?;
    if !engine.delete(&id, &key).await? {
        return Err(BadInput(format!("no object {key} for this subject")).into());
    }
    Ok(0)
}

/// With no `--category`, the bucket whose namespace the name is in decides
/// (`user-data/payments/x` is bucket `user-data`'s `payments/x`); a name in
/// no bucket's namespace gets the first bucket's mapping.
fn default_category(config: &Config, key: &ObjectKey) -> Result<Category> {
    if let Some((bucket, name)) = config
        .buckets
        .iter()
        .find_map(|b| Some((b, b.name_in_bucket(key.as_str())?)))
    {
        return Ok(bucket.category_of(name));
    }
    let Some(bucket) = config.buckets.first() else {
        return Err(
            BadInput("no [[bucket]] maps keys to categories: pass --category".into()).into(),
        );
    };
    Ok(bucket.category_of(key.as_str()))
}
