//! The harness of the `domicile serve` end-to-end tests: a deployment in a
//! temporary folder, the real binary serving it on free ports, plain HTTP
//! for the admin API, and the real S3 clients (aws cli, boto3, rclone) with
//! the test credential. Each test binary uses what it needs of it.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_domicile");
pub const EXAMPLE: &str = include_str!("../../../../examples/domicile.toml");
pub const V1: &str = include_str!("../../../../examples/demo-v1.toml");
pub const V2: &str = include_str!("../../../../examples/demo-v2.toml");

pub const ACCESS_KEY: &str = "AKDOMICILETEST";
pub const SECRET_KEY: &str = "s3cr3t-for-tests-only";
pub const ADMIN: &str = "admin-token-for-tests";
pub const AUDITOR: &str = "auditor-token-for-tests";
pub const BUCKET: &str = "user-data";

// ---------------------------------------------------------------------------
// A deployment and its server
// ---------------------------------------------------------------------------

pub struct Deployment {
    pub dir: tempfile::TempDir,
}

impl Deployment {
    pub fn new(config: &str) -> Self {
        let d = Deployment {
            dir: tempfile::tempdir().unwrap(),
        };
        d.write_config(config);
        d
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.path().join("domicile.toml"), config).unwrap();
    }

    /// Every file of the catalog (database, WAL, shared memory, token key).
    pub fn catalog_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(self.path().join("data")).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
        all
    }
}

pub struct Server {
    pub child: Child,
    pub rest: String,
    pub s3: String,
    pub stderr: PathBuf,
}

impl Server {
    pub fn start(d: &Deployment, max_object_size: Option<u64>) -> Server {
        Server::start_with(d, max_object_size, &[])
    }

    pub fn start_with(
        d: &Deployment,
        max_object_size: Option<u64>,
        env: &[(&str, &str)],
    ) -> Server {
        Server::start_args(d, max_object_size, env, &[])
    }

    /// Starts `serve` with extra environment and extra arguments after the
    /// listen addresses.
    pub fn start_args(
        d: &Deployment,
        max_object_size: Option<u64>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        Server::start_on(
            d,
            ("127.0.0.1:0", "127.0.0.1:0"),
            max_object_size,
            env,
            args,
        )
    }

    /// Starts `serve` on the given REST and S3 addresses.
    pub fn start_on(
        d: &Deployment,
        (listen, s3_listen): (&str, &str),
        max_object_size: Option<u64>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Server {
        let stderr = d.path().join(format!(
            "serve-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut c = Command::new(BIN);
        c.current_dir(d.path())
            .args(["serve", "--listen", listen, "--s3-listen", s3_listen])
            .args(args)
            .env_remove("DOMICILE_TOKEN_KEY")
            .env_remove("DOMICILE_CONFIG")
            .env_remove("DOMICILE_MAX_OBJECT_SIZE")
            .env("DOMICILE_LOG", "debug")
            .env("DOMICILE_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("DOMICILE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("DOMICILE_ADMIN_TOKEN", ADMIN)
            .env("DOMICILE_AUDITOR_TOKEN", AUDITOR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(n) = max_object_size {
            c.env("DOMICILE_MAX_OBJECT_SIZE", n.to_string());
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut addr = |prefix: &str| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| {
                    panic!(
                        "serve printed {line:?}, expected {prefix}…; stderr:\n{}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    )
                })
                .to_string()
        };
        let rest = addr("rest listening on ");
        let s3 = addr("s3 listening on ");
        Server {
            child,
            rest,
            s3,
            stderr,
        }
    }

    /// SIGTERM; the server must stop by itself, cleanly, and soon. Returns
    /// its log.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(&self.stderr).unwrap();
        assert!(status.success(), "serve exited with {status:?}:\n{log}");
        assert!(!log.contains("panicked"), "serve panicked:\n{log}");
        log
    }
}

impl Server {
    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// HTTP for the admin API
// ---------------------------------------------------------------------------

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(at) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..at]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[at + 2..at + 2 + size]);
        body = &body[at + 2 + size + 2..];
    }
}

pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
    let body = body.map(|b| ("application/json", b.to_string()));
    http_raw(
        method,
        url,
        token,
        body.as_ref().map(|(t, b)| (*t, b.as_str())),
    )
}

/// A request whose body is `(content type, text)`.
pub fn http_raw(method: &str, url: &str, token: Option<&str>, body: Option<(&str, &str)>) -> Reply {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let payload = body.map(|(_, b)| b.to_string()).unwrap_or_default();
    if let Some((content_type, _)) = body {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A request through curl, for HTTPS with `ca` as the only trusted
/// authority; `Err` holds curl's message when no answer came (a refused
/// certificate, a closed connection).
pub fn curl(
    method: &str,
    url: &str,
    ca: &Path,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Reply, String> {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "60", "-X", method, "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}", url])
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE");
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = run(c, "curl");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    Ok(Reply {
        status: status.trim().parse().unwrap(),
        body: body.to_string(),
    })
}

pub fn add_subject(srv: &Server, id: &str, home: &str) {
    let r = http(
        "POST",
        &format!("{}/v1/subjects", srv.rest),
        Some(ADMIN),
        Some(&json!({"subject": id, "home": home})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A client command with the test credential and nothing from the caller's
/// AWS setup (profiles, CA bundle, config files).
pub fn client(program: &str, home: &Path) -> Command {
    let mut c = Command::new(program);
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", home.join("aws-config-none"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("aws-credentials-none"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null());
    c
}

pub fn run(mut c: Command, what: &str) -> Output {
    c.output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run it ({e}); the S3 clients (aws cli, boto3, rclone) must be installed"
        )
    })
}

pub fn aws(srv: &Server, home: &Path, args: &[&str]) -> Output {
    let mut c = client("aws", home);
    c.args(["--endpoint-url", &srv.s3]).args(args);
    run(c, &format!("aws {}", args.join(" ")))
}

pub fn aws_ok(srv: &Server, home: &Path, args: &[&str]) -> String {
    let out = aws(srv, home, args);
    assert!(
        out.status.success(),
        "aws {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn aws_json(srv: &Server, home: &Path, args: &[&str]) -> Value {
    let text = aws_ok(srv, home, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("aws output is not JSON ({e}): {text}"))
}

pub fn python(srv: &Server, home: &Path, script: &str, extra_env: &[(&str, &str)]) -> String {
    let file = home.join("client.py");
    std::fs::write(&file, script).unwrap();
    let mut c = client("python3", home);
    c.arg(&file).env("ENDPOINT", &srv.s3);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = run(c, "python3 (boto3)");
    assert!(
        out.status.success(),
        "boto3 script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A boto3 script started in the background with its stdin and stdout
/// piped, for a client driven step by step (a read held open while the
/// test changes the object), with `ENDPOINT` and `extra_env` as `python`
/// gives them.
pub fn python_spawn(
    srv: &Server,
    home: &Path,
    name: &str,
    script: &str,
    extra_env: &[(&str, &str)],
) -> Child {
    let file = home.join(name);
    std::fs::write(&file, script).unwrap();
    let mut c = client("python3", home);
    c.arg(&file).env("ENDPOINT", &srv.s3);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.spawn().unwrap_or_else(|e| {
        panic!("python3 (boto3): cannot run it ({e}); the S3 clients must be installed")
    })
}

pub fn rclone(srv: &Server, home: &Path, args: &[&str]) -> Output {
    let mut c = client("rclone", home);
    c.env("RCLONE_CONFIG", home.join("rclone.conf"))
        .env("RCLONE_CONFIG_D_TYPE", "s3")
        .env("RCLONE_CONFIG_D_PROVIDER", "Other")
        .env("RCLONE_CONFIG_D_ENDPOINT", &srv.s3)
        .env("RCLONE_CONFIG_D_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_D_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_D_REGION", "us-east-1")
        .args(args);
    let out = run(c, &format!("rclone {}", args.join(" ")));
    assert!(
        out.status.success(),
        "rclone {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Deterministic bytes (splitmix64).
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn key_list(v: &Value) -> Vec<String> {
    v["Contents"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| o["Key"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn prefix_list(v: &Value) -> Vec<String> {
    v["CommonPrefixes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| o["Prefix"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Invariant 4: none of `needles` in the catalog's files or the log.
pub fn assert_no_personal_data(d: &Deployment, log: &str, needles: &[&str]) {
    assert!(
        log.contains("DEBUG"),
        "the server did not log at debug level: the check would prove nothing"
    );
    let catalog = d.catalog_bytes();
    for n in needles {
        assert!(!log.contains(n), "{n:?} appears in the server's log");
        assert!(
            !catalog.windows(n.len()).any(|w| w == n.as_bytes()),
            "{n:?} appears in the catalog's files"
        );
    }
}

// ---------------------------------------------------------------------------
// Other credentials, and the server's memory
// ---------------------------------------------------------------------------

/// [`client`] signing with another credential (access key id, secret).
pub fn client_as(program: &str, home: &Path, (key, secret): (&str, &str)) -> Command {
    let mut c = client(program, home);
    c.env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret);
    c
}

/// [`aws`] signing with another credential.
pub fn aws_as(srv: &Server, home: &Path, credential: (&str, &str), args: &[&str]) -> Output {
    let mut c = client_as("aws", home, credential);
    c.args(["--endpoint-url", &srv.s3]).args(args);
    run(c, &format!("aws {}", args.join(" ")))
}

/// [`python`] signing with another credential.
pub fn python_as(srv: &Server, home: &Path, credential: (&str, &str), script: &str) -> String {
    python(
        srv,
        home,
        script,
        &[
            ("AWS_ACCESS_KEY_ID", credential.0),
            ("AWS_SECRET_ACCESS_KEY", credential.1),
        ],
    )
}

/// A counter's value in a `/metrics` text (0 when absent).
pub fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// The server process's resident memory now and at its peak, in bytes
/// (`VmRSS`, `VmHWM` of /proc/PID/status).
pub fn memory(srv: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).unwrap();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    };
    (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
}
