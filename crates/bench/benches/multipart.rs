//! Completing a multipart upload: the parts of a 1 GiB object (8 MiB each)
//! are staged through the engine, then the object is made of them twice,
//! side by side in each round on a fresh folder:
//!
//! - *reassembled*: what completion did before, every part read back,
//!   decrypted and streamed through one new write (encrypted again);
//! - *manifest*: what it does now (`Engine::complete_upload`), one commit
//!   of a manifest of the parts, no byte read or written again.
//!
//! `cargo bench -p domicile-bench --bench multipart -- [ROUNDS] [MIB]`
//! (defaults 3 and 1024).

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use domicile_bench::{loadavg, median, rounds_arg, write_configs};
use domicile_core::Config;
use domicile_core::ids::{Category, ObjectKey, SubjectId};
use domicile_core::jurisdiction::Jurisdiction;
use domicile_engine::multipart::part_name;
use domicile_engine::{Engine, EngineOptions, Manifest, ManifestPart, ObjectMeta, Secrets};
use futures::{StreamExt, TryStreamExt};

const PART: usize = 8 << 20;
const UPLOAD: &str = "0123456789abcdef0123456789abcdef";

struct Round {
    parts: Duration,
    reassembled: Duration,
    manifest: Duration,
}

async fn round(mib: usize) -> Result<Round> {
    let dir = tempfile::Builder::new()
        .prefix("domicile-multipart-")
        .tempdir()?;
    let (v1, _) = write_configs(dir.path())?;
    let options = EngineOptions {
        max_object_size: 1 << 40,
        ..EngineOptions::default()
    };
    let engine = Arc::new(Engine::open_with(Config::load(&v1)?, Secrets::empty(), options).await?);
    let id = SubjectId::from_str("bench-mpu")?;
    engine
        .add_subjects(&[(id.clone(), Jurisdiction::from_str("CN")?)])
        .await?;
    let cat = Category::from_str("media")?;
    let dir_name = format!("b/.domicile-mpu/{UPLOAD}/");
    let body: Vec<u8> = (0..PART).map(|i| (i * 31 % 251) as u8).collect();
    let count = (mib << 20).div_ceil(PART);

    let t = Instant::now();
    let mut listed = Vec::with_capacity(count);
    for n in 1..=count as u32 {
        let name = ObjectKey::from_str(&part_name(&dir_name, n))?;
        engine
            .put(&id, &cat, &name, &ObjectMeta::default(), body.as_slice())
            .await?;
        let info = engine.head(&id, &name).await?;
        listed.push(ManifestPart {
            n,
            size: info.size,
            version: info.version,
        });
    }
    engine.begin_upload(&id, &cat, UPLOAD).await?;
    let parts = t.elapsed();

    // Before: every part read back and written again as one object.
    let t = Instant::now();
    let names: Vec<ObjectKey> = listed
        .iter()
        .map(|p| ObjectKey::from_str(&part_name(&dir_name, p.n)))
        .collect::<Result<_, _>>()?;
    let (e, idr) = (engine.clone(), id.clone());
    let stream = futures::stream::iter(names)
        .then(move |name| {
            let (e, idr) = (e.clone(), idr.clone());
            async move {
                let (_, s) = e
                    .get(&idr, &name, None)
                    .await
                    .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(s.map(|r| r.map_err(std::io::Error::other)))
            }
        })
        .try_flatten()
        .boxed();
    let reader = tokio_util::io::StreamReader::new(stream);
    let old = engine
        .put(
            &id,
            &cat,
            &ObjectKey::from_str("b/reassembled.bin")?,
            &ObjectMeta::default(),
            reader,
        )
        .await?;
    let reassembled = t.elapsed();

    // Now: a manifest of the parts.
    let t = Instant::now();
    let new = engine
        .complete_upload(
            &id,
            &cat,
            &ObjectKey::from_str("b/manifest.bin")?,
            &ObjectMeta::default(),
            Manifest {
                upload: UPLOAD.into(),
                dir: dir_name.clone(),
                parts: listed,
            },
        )
        .await?;
    let manifest = t.elapsed();
    anyhow::ensure!(old.size == new.size, "{} != {}", old.size, new.size);
    Ok(Round {
        parts,
        reassembled,
        manifest,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds = rounds_arg()?;
    let mib: usize = std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1024);
    println!(
        "multipart completion of {mib} MiB in {} parts of 8 MiB, {rounds} rounds, load {}",
        (mib << 20).div_ceil(PART),
        loadavg()
    );
    let mut all = Vec::new();
    for r in 0..rounds {
        let x = round(mib).await?;
        println!(
            "round {r}: parts staged {:.2} s, reassembled {:.3} s, manifest {:.4} s",
            x.parts.as_secs_f64(),
            x.reassembled.as_secs_f64(),
            x.manifest.as_secs_f64()
        );
        all.push(x);
    }
    let med = |f: fn(&Round) -> Duration| {
        median(all.iter().map(|r| f(r).as_secs_f64()).collect::<Vec<_>>())
    };
    println!(
        "median: parts staged {:.2} s, reassembled (before) {:.3} s, manifest (now) {:.4} s",
        med(|r| r.parts),
        med(|r| r.reassembled),
        med(|r| r.manifest)
    );
    Ok(())
}
