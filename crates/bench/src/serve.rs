//! `domicile serve` as the S3 benchmarks run it: a one-region deployment
//! with registered subjects, the server as a child process on a free port,
//! and `object_store`'s S3 client pointed at it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

pub const KEY_ID: &str = "benchkey";
pub const SECRET: &str = "benchsecret-0123456789";
/// Subjects `s0`…`s{SUBJECTS-1}`, all registered with home CN.
pub const SUBJECTS: usize = 64;
pub const BUCKET: &str = "bench";

/// A server process, killed on drop.
#[derive(Debug)]
pub struct Server {
    pub child: Child,
    pub endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `domicile` binary beside this benchmark's target folder.
pub fn domicile_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("target folder")?;
    let bin = dir.join("domicile");
    if !bin.is_file() {
        bail!(
            "{} is missing: run `cargo build --release -p domicile-cli` first",
            bin.display()
        );
    }
    Ok(bin)
}

/// Writes a one-region deployment into `dir` (its catalog at `catalog_url`,
/// or the embedded default) and registers the subjects. Returns the config.
pub fn deployment(dir: &Path, catalog_url: Option<&str>) -> Result<PathBuf> {
    let catalog = catalog_url
        .map(|u| format!("[catalog]\nurl = \"{u}\"\n\n"))
        .unwrap_or_default();
    let config = dir.join("domicile.toml");
    std::fs::write(
        &config,
        format!(
            r#"[operator]
name = "bench"
headquarters = "CN"

{catalog}[[region]]
id = "local"
jurisdiction = "CN"
provider = "self"
provider_headquarters = "CN"
store = "file://data/regions/local"

[[custodian]]
id = "kms"
jurisdiction = "CN"
headquarters = "CN"
keyring = "file://data/keys/kms"

[[bucket]]
name = "{BUCKET}"
subject = "users/{{subject}}/"
category = "media"

[[rule]]
name = "all"
custodian = "kms"
"#
        ),
    )?;
    let csv: String = (0..SUBJECTS).map(|i| format!("s{i},CN\n")).collect();
    std::fs::write(dir.join("subjects.csv"), csv)?;
    let out = Command::new(domicile_binary()?)
        .arg("--config")
        .arg(&config)
        .args(["subject", "import"])
        .arg(dir.join("subjects.csv"))
        .output()?;
    if !out.status.success() {
        bail!("subject import: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(config)
}

/// Starts `domicile serve` on `config`, on free ports; returns once it
/// listens.
pub fn serve(config: &Path) -> Result<Server> {
    serve_binary(&domicile_binary()?, config)
}

/// [`serve`] with another `domicile` binary (an earlier build, to compare
/// with in the same run).
pub fn serve_binary(binary: &Path, config: &Path) -> Result<Server> {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--s3-listen",
            "127.0.0.1:0",
        ])
        .env("DOMICILE_S3_ACCESS_KEY_ID", KEY_ID)
        .env("DOMICILE_S3_SECRET_ACCESS_KEY", SECRET)
        .env("DOMICILE_ADMIN_TOKEN", "bench-admin-token")
        .env_remove("DOMICILE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut endpoint = None;
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("s3 listening on ") {
            endpoint = Some(rest.trim().to_string());
            break;
        }
    }
    // Keep the pipe drained so the server never blocks on stdout.
    std::thread::spawn(move || lines.for_each(drop));
    let endpoint = endpoint.context("domicile serve printed no S3 address")?;
    Ok(Server { child, endpoint })
}

/// `object_store`'s S3 client for the benchmark bucket at `endpoint`.
pub fn s3_client(endpoint: &str) -> Result<Arc<dyn ObjectStore>> {
    s3_client_with(endpoint, "us-east-1", KEY_ID, SECRET)
}

/// `object_store`'s S3 client for the benchmark bucket at `endpoint`,
/// signing for `region` with the given credentials. Its HTTP client
/// (reqwest) sets `TCP_NODELAY` on every connection.
pub fn s3_client_with(
    endpoint: &str,
    region: &str,
    key_id: &str,
    secret: &str,
) -> Result<Arc<dyn ObjectStore>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_region(region)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .build()?,
    ))
}
