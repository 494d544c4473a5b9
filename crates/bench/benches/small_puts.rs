//! Small durable PUTs against what the disk allows: 4 KiB S3 PUTs through
//! `domicile serve`, Garage and `s3s-fs`, beside a probe of the disk's own
//! durable small-file rate, all in one run, alternating rounds.
//!
//! ```sh
//! cargo build --release -p domicile-cli
//! cargo bench -p domicile-bench --bench small_puts -- [ROUNDS] [OPS]
//! ```
//!
//! - **disk limit**: N plain writers (threads), each creating a new 4 KiB
//!   file, writing it, and fsyncing the file and then its folder (one folder
//!   per writer, as one per subject), in the folder the servers' data goes
//!   to (the system's temporary folder). What an object store that makes
//!   each new object durable on its own can at best reach on this disk.
//! - **domicile**: the one-region deployment of [`domicile_bench::serve`]
//!   (encrypted, SQLite catalog, every blob and commit on disk before the
//!   PUT is answered).
//! - **Garage 2.5** with `metadata_fsync = true`, `data_fsync = true` and
//!   `db_engine = "sqlite"`: durable as domicile is. Its binary is
//!   `$GARAGE`, or `~/.cache/domicile/garage-2.5.0/bin/garage`, built once
//!   (never linked in) with `cargo install garage --version 2.5.0 --locked
//!   --no-default-features --features bundled-libs,sqlite --root
//!   ~/.cache/domicile/garage-2.5.0`; without it the run says so and goes on.
//! - **s3s-fs** 0.14 (`$S3S_FS`, on the `PATH`, or
//!   `~/.cache/domicile/s3s-fs-0.14.1/bin/s3s-fs`): does not fsync what it
//!   stores, so it is no durability peer; kept as the earlier baseline.
//!
//! The client is `object_store`'s S3 client (reqwest, `TCP_NODELAY` on),
//! 8 and then 64 PUTs in flight, `OPS` objects (3,000 by default) over 64
//! subjects' key prefixes per round; every round starts each server on a
//! fresh folder and warms it up with 128 tiny PUTs (domicile creates each
//! subject's placement there). Medians of the rates; latency percentiles
//! over all rounds.
//!
//! `DOMICILE_BENCH_BASE=PATH` adds another `domicile` binary (an earlier
//! build) as one more contender, in the same alternating rounds: before
//! and after a change, measured in one run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use domicile_bench::serve::{
    BUCKET, KEY_ID, SECRET, SUBJECTS, Server, deployment, s3_client, s3_client_with, serve,
    serve_binary,
};
use domicile_bench::{loadavg, median, percentile_ms};
use futures::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const SIZE: usize = 4 << 10;
const IN_FLIGHT: [usize; 2] = [8, 64];
const GARAGE_KEY: &str = "GK0123456789abcdef01234567";
const GARAGE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const GARAGE_BUILD: &str = "cargo install garage --version 2.5.0 --locked --no-default-features \
     --features bundled-libs,sqlite --root ~/.cache/domicile/garage-2.5.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Disk,
    Domicile,
    Base,
    Garage,
    S3sFs,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Disk => "disk limit (file + folder fsync)",
            Contender::Domicile => "domicile (encrypted, durable)",
            Contender::Base => "domicile, base build",
            Contender::Garage => "Garage 2.5 (metadata + data fsync)",
            Contender::S3sFs => "s3s-fs (no fsync)",
        }
    }
}

struct Measured {
    ops: f64,
    lat: Vec<Duration>,
}

fn cached_binary(env: &str, name: &str, cache: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    }) {
        return Some(p);
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home)
        .join(".cache/domicile")
        .join(cache)
        .join("bin")
        .join(name);
    p.is_file().then_some(p)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for_port(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not start listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn start_garage(bin: &Path, dir: &Path) -> Result<Server> {
    let (s3, rpc) = (free_port()?, free_port()?);
    let conf = dir.join("garage.toml");
    std::fs::write(
        &conf,
        format!(
            r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
metadata_fsync = true
data_fsync = true
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{GARAGE_SECRET}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
"#,
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
        ),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .args(["server", "--single-node", "--default-bucket"])
        .env("GARAGE_DEFAULT_ACCESS_KEY", GARAGE_KEY)
        .env("GARAGE_DEFAULT_SECRET_KEY", GARAGE_SECRET)
        .env("GARAGE_DEFAULT_BUCKET", BUCKET)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
        endpoint: format!("http://127.0.0.1:{s3}"),
    };
    wait_for_port(s3, "garage")?;
    Ok(server)
}

fn start_s3s_fs(bin: &Path, dir: &Path) -> Result<Server> {
    let root = dir.join("s3s-fs");
    std::fs::create_dir_all(root.join(BUCKET))?;
    let port = free_port()?;
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", KEY_ID, "--secret-key", SECRET])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    wait_for_port(port, "s3s-fs")?;
    Ok(server)
}

fn body(size: usize) -> bytes::Bytes {
    bytes::Bytes::from((0..size).map(|i| (i * 131 % 251) as u8).collect::<Vec<_>>())
}

async fn puts(
    store: &Arc<dyn ObjectStore>,
    size: usize,
    ops: usize,
    in_flight: usize,
    tag: &str,
) -> Result<Measured> {
    let body = body(size);
    let t = Instant::now();
    let lat: Vec<Duration> = futures::stream::iter((0..ops).map(|i| {
        let store = store.clone();
        let body = body.clone();
        async move {
            let key = ObjPath::from(format!("users/s{}/{tag}-{i}", i % SUBJECTS));
            let t = Instant::now();
            store.put(&key, PutPayload::from(body)).await?;
            Ok::<_, anyhow::Error>(t.elapsed())
        }
    }))
    .buffer_unordered(in_flight)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    Ok(Measured {
        ops: ops as f64 / t.elapsed().as_secs_f64(),
        lat,
    })
}

/// The first PUTs, retried while the server finishes starting (Garage
/// creates its bucket after it listens).
async fn warm_up(store: &Arc<dyn ObjectStore>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store
            .put(&ObjPath::from("users/s0/ready"), PutPayload::from(body(16)))
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    puts(store, 16, SUBJECTS * 2, 8, "warm").await.map(drop)
}

/// The disk's durable small-file rate: `writers` threads, each creating
/// `ops / writers` new files of `size` bytes in its own folder under `dir`,
/// each file fsynced, then its folder.
fn disk_probe(dir: &Path, size: usize, ops: usize, writers: usize) -> Result<Measured> {
    let body = body(size);
    let per = ops.div_ceil(writers);
    let folders: Vec<PathBuf> = (0..writers)
        .map(|w| {
            let d = dir.join(format!("w{w}"));
            std::fs::create_dir_all(&d).map(|()| d)
        })
        .collect::<std::io::Result<_>>()?;
    // Folder creation itself is not measured: make it durable first.
    std::fs::File::open(dir)?.sync_all()?;
    let t = Instant::now();
    let lat = std::thread::scope(|s| {
        let handles: Vec<_> = folders
            .iter()
            .map(|folder| {
                let body = &body;
                s.spawn(move || -> std::io::Result<Vec<Duration>> {
                    let folder_handle = std::fs::File::open(folder)?;
                    let mut lat = Vec::with_capacity(per);
                    for i in 0..per {
                        let t = Instant::now();
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(folder.join(format!("obj-{i}")))?;
                        f.write_all(body)?;
                        f.sync_all()?;
                        folder_handle.sync_all()?;
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe writer panicked"))
            .collect::<std::io::Result<Vec<_>>>()
    })?;
    let elapsed = t.elapsed();
    Ok(Measured {
        ops: (per * writers) as f64 / elapsed.as_secs_f64(),
        lat: lat.into_iter().flatten().collect(),
    })
}

/// One round of one contender on a fresh folder.
fn run(
    rt: &tokio::runtime::Runtime,
    who: Contender,
    bins: &Bins,
    ops: usize,
    in_flight: usize,
) -> Result<Measured> {
    let dir = tempfile::Builder::new()
        .prefix("domicile-small-puts-")
        .tempdir()?;
    let (server, store) = match who {
        Contender::Disk => return disk_probe(dir.path(), SIZE, ops, in_flight),
        Contender::Domicile => {
            let server = serve(&deployment(dir.path(), None)?)?;
            let store = s3_client(&server.endpoint)?;
            (server, store)
        }
        Contender::Base => {
            let bin = bins.base.as_deref().context("base build")?;
            let server = serve_binary(bin, &deployment(dir.path(), None)?)?;
            let store = s3_client(&server.endpoint)?;
            (server, store)
        }
        Contender::Garage => {
            let server = start_garage(bins.garage.as_deref().context("garage")?, dir.path())?;
            let store = s3_client_with(&server.endpoint, "garage", GARAGE_KEY, GARAGE_SECRET)?;
            (server, store)
        }
        Contender::S3sFs => {
            let server = start_s3s_fs(bins.s3s_fs.as_deref().context("s3s-fs")?, dir.path())?;
            let store = s3_client(&server.endpoint)?;
            (server, store)
        }
    };
    rt.block_on(warm_up(&store))?;
    let m = rt.block_on(puts(&store, SIZE, ops, in_flight, "obj"))?;
    drop(server);
    Ok(m)
}

struct Bins {
    base: Option<PathBuf>,
    garage: Option<PathBuf>,
    s3s_fs: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rounds: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let ops: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(3000);
    let bins = Bins {
        base: std::env::var_os("DOMICILE_BENCH_BASE").map(PathBuf::from),
        garage: cached_binary("GARAGE", "garage", "garage-2.5.0"),
        s3s_fs: cached_binary("S3S_FS", "s3s-fs", "s3s-fs-0.14.1"),
    };
    let mut contenders = vec![Contender::Disk, Contender::Domicile];
    if bins.base.is_some() {
        contenders.push(Contender::Base);
    }
    match &bins.garage {
        Some(_) => contenders.push(Contender::Garage),
        None => eprintln!(
            "\n*** Garage 2.5 is not built: skipping it. Build it once with:\n***   {GARAGE_BUILD}\n"
        ),
    }
    match &bins.s3s_fs {
        Some(_) => contenders.push(Contender::S3sFs),
        None => eprintln!(
            "\n*** s3s-fs is not installed: skipping it (cargo install s3s-fs --version 0.14.1 \
             --features binary --locked --root ~/.cache/domicile/s3s-fs-0.14.1)\n"
        ),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let load_before = loadavg();
    println!("| in flight | contender | PUT/s | of disk limit | p50 ms | p99 ms |");
    println!("|---:|---|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for in_flight in IN_FLIGHT {
        let mut runs: Vec<Vec<Measured>> = contenders.iter().map(|_| Vec::new()).collect();
        for r in 0..rounds {
            for k in 0..contenders.len() {
                let i = (k + r) % contenders.len();
                runs[i].push(run(&rt, contenders[i], &bins, ops, in_flight)?);
            }
        }
        let rate: Vec<f64> = runs
            .iter()
            .map(|r| median(r.iter().map(|m| m.ops).collect()))
            .collect();
        let p99: Vec<f64> = runs
            .iter()
            .map(|r| {
                let lat: Vec<Duration> = r.iter().flat_map(|m| m.lat.clone()).collect();
                percentile_ms(&lat, 0.99)
            })
            .collect();
        for (i, who) in contenders.iter().enumerate() {
            let lat: Vec<Duration> = runs[i].iter().flat_map(|m| m.lat.clone()).collect();
            println!(
                "| {in_flight} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
                who.name(),
                rate[i],
                rate[i] / rate[0],
                percentile_ms(&lat, 0.5),
                p99[i],
            );
        }
        let of = |c: Contender| contenders.iter().position(|x| *x == c);
        let mut line = format!(
            "{in_flight} in flight: domicile = {:.2} of the disk limit",
            rate[1] / rate[0]
        );
        if let Some(g) = of(Contender::Garage) {
            line += &format!(
                ", {:.2}× Garage (p99 {:.2}× Garage's)",
                rate[1] / rate[g],
                p99[1] / p99[g]
            );
        }
        if let Some(s) = of(Contender::S3sFs) {
            line += &format!(", {:.2}× s3s-fs", rate[1] / rate[s]);
        }
        if let Some(b) = of(Contender::Base) {
            line += &format!(
                "; base build = {:.2} of the disk limit, this build {:.2}× the base (p99 {:.2}×)",
                rate[b] / rate[0],
                rate[1] / rate[b],
                p99[1] / p99[b]
            );
        }
        ratios.push(line);
    }
    println!();
    for line in ratios {
        println!("{line}");
    }
    println!(
        "\n{rounds} rounds of {ops} PUTs of 4 KiB, alternating; medians. \
         target at 64 in flight: ≥ 0.5 of the disk limit, ≥ 1.5× Garage, p99 ≤ Garage's. \
         load {load_before} before, {} after",
        loadavg()
    );
    Ok(())
}
