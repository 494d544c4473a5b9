//! The S3 data path: PUT and GET of 4 KiB and 1 MiB objects through
//! `domicile serve` (encryption on, one copy, local region) against `s3s-fs`
//! on the same disk, with the same client and concurrency, alternating
//! rounds on fresh folders.
//!
//! ```sh
//! cargo build --release -p domicile-cli
//! cargo install s3s-fs --version 0.14.1 --features binary --locked   # once
//! cargo bench -p domicile-bench --bench s3 -- [ROUNDS]
//! ```
//!
//! The domicile binary is looked for beside this benchmark's target folder;
//! `s3s-fs` on the PATH or in `$S3S_FS`. Both servers run as their own
//! processes; the client is `object_store`'s S3 client with 8 requests in
//! flight.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use domicile_bench::serve::{KEY_ID, SECRET, SUBJECTS, Server, deployment, s3_client, serve};
use domicile_bench::{loadavg, median, percentile_ms, rounds_arg};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const CONCURRENCY: usize = 8;

fn s3s_fs_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return Ok(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("s3s-fs")).find(|f| f.is_file()))
        .context("s3s-fs is not installed (cargo install s3s-fs --version 0.14.1 --features binary --locked)")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `domicile serve` on a fresh one-region deployment with
/// registered subjects.
fn start_domicile(dir: &Path) -> Result<Server> {
    serve(&deployment(dir, None)?)
}

fn start_s3s_fs(dir: &Path) -> Result<Server> {
    let root = dir.join("s3s-fs");
    std::fs::create_dir_all(root.join("bench"))?;
    let port = free_port()?;
    let child = Command::new(s3s_fs_binary()?)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY_ID, "--secret-key", SECRET])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("s3s-fs did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Server { child, endpoint })
}

struct Measured {
    put_ops: f64,
    get_ops: f64,
    put_lat: Vec<Duration>,
    get_lat: Vec<Duration>,
}

async fn measure(store: Arc<dyn ObjectStore>, size: usize, ops: usize) -> Result<Measured> {
    let body: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
    let body = bytes::Bytes::from(body);
    let keys: Vec<ObjPath> = (0..ops)
        .map(|i| ObjPath::from(format!("users/s{}/obj-{i}", i % SUBJECTS)))
        .collect();
    let t = Instant::now();
    let put_lat: Vec<Duration> = futures::stream::iter(keys.iter().map(|k| {
        let store = store.clone();
        let body = body.clone();
        async move {
            let t = Instant::now();
            store.put(k, PutPayload::from(body)).await?;
            Ok::<_, anyhow::Error>(t.elapsed())
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let put = t.elapsed();
    let t = Instant::now();
    let get_lat: Vec<Duration> = futures::stream::iter(keys.iter().map(|k| {
        let store = store.clone();
        async move {
            let t = Instant::now();
            let got = store.get(k).await?.bytes().await?;
            anyhow::ensure!(got.len() == size, "short read");
            Ok::<_, anyhow::Error>(t.elapsed())
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let get = t.elapsed();
    Ok(Measured {
        put_ops: ops as f64 / put.as_secs_f64(),
        get_ops: ops as f64 / get.as_secs_f64(),
        put_lat,
        get_lat,
    })
}

fn main() -> Result<()> {
    let rounds = rounds_arg()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "| object | server | PUT ops/s | PUT p50 ms | PUT p99 ms | GET ops/s | GET p50 ms | GET p99 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (size, ops, label) in [(4usize << 10, 3000usize, "4 KiB"), (1 << 20, 400, "1 MiB")] {
        // [domicile, s3s-fs] × rounds
        let mut runs: [Vec<Measured>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, runs) in runs.iter_mut().enumerate() {
                let dir = tempfile::Builder::new()
                    .prefix("domicile-s3-bench-")
                    .tempdir()?;
                let server = if i == 0 {
                    start_domicile(dir.path())?
                } else {
                    start_s3s_fs(dir.path())?
                };
                let store = s3_client(&server.endpoint)?;
                runs.push(rt.block_on(measure(store, size, ops))?);
                drop(server);
            }
        }
        let mut summary = Vec::new();
        for (i, name) in ["domicile (encrypted)", "s3s-fs"].iter().enumerate() {
            let r = &runs[i];
            let put_ops = median(r.iter().map(|m| m.put_ops).collect());
            let get_ops = median(r.iter().map(|m| m.get_ops).collect());
            let put_lat: Vec<Duration> = r.iter().flat_map(|m| m.put_lat.clone()).collect();
            let get_lat: Vec<Duration> = r.iter().flat_map(|m| m.get_lat.clone()).collect();
            let row = (
                put_ops,
                percentile_ms(&put_lat, 0.5),
                percentile_ms(&put_lat, 0.99),
                get_ops,
                percentile_ms(&get_lat, 0.5),
                percentile_ms(&get_lat, 0.99),
            );
            println!(
                "| {label} | {name} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} |",
                row.0, row.1, row.2, row.3, row.4, row.5
            );
            summary.push(row);
        }
        let (d, b) = (summary[0], summary[1]);
        println!(
            "| {label} | domicile ÷ s3s-fs | {:.2}× | | {:.2}× | {:.2}× | | {:.2}× |",
            d.0 / b.0,
            d.2 / b.2,
            d.3 / b.3,
            d.5 / b.5
        );
    }
    println!(
        "\nthroughput: target ≥ 0.9×; p99 latency: target ≤ 1.5×. load {}",
        loadavg()
    );
    Ok(())
}
