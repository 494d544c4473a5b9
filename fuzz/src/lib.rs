//! What the fuzz targets share: a deployment served in process (an engine
//! on a temporary SQLite catalog with folder regions, the S3 and REST
//! routers over it, one runtime), requests read from the fuzz input as
//! HTTP-like text, and a SigV4 signer so that fuzzed requests can pass
//! authentication and reach the handlers.
//!
//! Speed without weakening what the request targets reach: every input
//! still goes through the real routers, s3s's SigV4 check, the engine, the
//! SQLite catalog and the folder regions, with the product's options. The
//! harness only chooses where and for how long a deployment lives:
//!
//! - in a memory file system (`/dev/shm`) when there is one, so the
//!   catalog's and the regions' fsyncs (the product's own, unchanged) cost
//!   nothing; the temporary folder otherwise;
//! - for [`RESET_EVERY`] inputs, after which it is dropped and a fresh one
//!   built, so the state inputs leave behind (objects, subjects, uploads,
//!   the ledger) stays bounded and executions do not slow down as a run
//!   goes on. Folders of crashed fuzzing processes are removed when the
//!   next one starts.
//!
//! The request format (one to four requests, separated by a line `%%`):
//!
//! ```text
//! METHOD TARGET [anything]
//! name: value
//! ...
//!
//! body bytes
//! ```
//!
//! Pseudo-headers drive the harness and are never sent: `x-fuzz-auth`
//! (`sigv4`, `sigv4-unsigned`, `presign`, or absent for none), and
//! `x-fuzz-expires` (a presigned URL's lifetime). `{upload}` in a target is
//! replaced by the upload id an earlier request of the same input got.
//! `Content-Length` is always the body's length, as hyper frames a body.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Uri};
use domicile_core::config::Config;
use domicile_engine::{Engine, EngineOptions, Secrets};
use domicile_server::{Metrics, ServerOptions};
use ring::{digest, hmac};
use tower::ServiceExt;

pub use domicile_fuzz_seeds::{
    ACCESS_KEY, ADMIN_TOKEN, AUDITOR_TOKEN, BLOB_ID, EXAMPLE_CONFIG, KEY, LOOKUP, SECRET_KEY, TOKEN,
};

/// Subjects registered at start, with their homes.
pub const SUBJECTS: &[(&str, &str)] = &[("alice", "CN"), ("bob", "IN"), ("u1", "SG")];

/// Objects written at start, so that reads, copies and listings have data.
pub const OBJECTS: &[(&str, &str, &str, &[u8])] = &[
    ("alice", "profile", "a.txt", b"hello"),
    ("alice", "payment", "payments/card.json", b"{\"card\":1}"),
    ("bob", "profile", "notes/1", b""),
    ("u1", "profile", "photo.jpg", &[0u8; 70_000]),
];

/// The runtime every target runs on, created once.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// How many inputs one deployment serves before it is replaced by a fresh
/// one built from [`SUBJECTS`] and [`OBJECTS`], by the API it serves.
/// Inputs add subjects, objects, uploads, ledger entries and policy
/// versions; without a reset each execution grows slower than the last (a
/// listing reads every object of its subject, the ledger's check reads the
/// whole chain), and what an input does depends on ever more history. A
/// rebuild (a fresh catalog and regions, about a hundred catalog writes)
/// costs 15 to 70 ms: S3 inputs pile objects up quickly and run slower, so
/// their deployment is replaced more often than the admin API's.
pub const RESET_EVERY: [(Api, u64); 2] = [(Api::S3, 500), (Api::Rest, 5_000)];

/// The deployment served in process: an engine on a SQLite catalog and
/// folder regions in a fresh folder, and the S3 and REST routers over it.
pub struct Deployment {
    pub engine: Arc<Engine>,
    pub s3: Router,
    pub rest: Router,
    _dir: tempfile::TempDir,
}

/// Which router a target feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// The S3 API (`s3::router`); requests may ask to be signed.
    S3,
    /// The admin API (`rest::router`); requests carry their own tokens.
    Rest,
}

/// The deployment of this process and how many inputs it has served.
struct Current {
    deployment: Option<Deployment>,
    served: u64,
}

static CURRENT: Mutex<Current> = Mutex::new(Current {
    deployment: None,
    served: 0,
});

/// Runs `f` on this process's deployment, first building it, or replacing
/// it once it has served as many inputs as [`RESET_EVERY`] allows `api`.
pub fn with_deployment<R>(api: Api, f: impl FnOnce(&Deployment) -> R) -> R {
    let limit = RESET_EVERY
        .iter()
        .find(|(a, _)| *a == api)
        .map_or(u64::MAX, |(_, n)| *n);
    // A panic while the lock was held (the oracle's) ends the process.
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if current.served >= limit {
        // Dropped on the runtime: the catalog's pool closes its
        // connections there.
        let old = current.deployment.take();
        runtime().block_on(async move { drop(old) });
        current.served = 0;
    }
    current.served += 1;
    let deployment = current
        .deployment
        .get_or_insert_with(|| runtime().block_on(open_deployment()));
    f(deployment)
}

/// Where deployments live: a memory file system (`/dev/shm`) when there is
/// one, so that the catalog's and the regions' fsyncs cost nothing and
/// nothing wears a disk; the temporary folder otherwise. The catalog, the
/// regions and their fsyncs are the product's own either way.
fn deployment_root() -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && tempfile::Builder::new()
            .prefix("domicile-fuzz-probe-")
            .tempfile_in(shm)
            .is_ok();
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Removes the deployments of fuzzing processes that are gone: a crash
/// aborts the process, so its folder outlives it (in memory, for
/// `/dev/shm`). Folders are named after their process's id.
fn remove_orphans(root: &Path) {
    // Without /proc, no process can be told gone.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("domicile-fuzz-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn open_deployment() -> Deployment {
    let root = deployment_root();
    remove_orphans(&root);
    let dir = tempfile::Builder::new()
        .prefix(&format!("domicile-fuzz-{}-", std::process::id()))
        .tempdir_in(root)
        .unwrap();
    let secrets = dir.path().join("secrets.env");
    std::fs::write(
        &secrets,
        format!(
            "DOMICILE_S3_ACCESS_KEY_ID={ACCESS_KEY}\nDOMICILE_S3_SECRET_ACCESS_KEY={SECRET_KEY}\n\
             DOMICILE_ADMIN_TOKEN={ADMIN_TOKEN}\nDOMICILE_AUDITOR_TOKEN={AUDITOR_TOKEN}\n\
             DOMICILE_TOKEN_KEY={}\n",
            "ab".repeat(32)
        ),
    )
    .unwrap();
    let file = dir.path().join("domicile.toml");
    std::fs::write(&file, EXAMPLE_CONFIG).unwrap();
    let config = Config::load(&file).unwrap();
    let secrets = Secrets::load(Some(&secrets)).unwrap();
    let options = ServerOptions {
        max_object_size: 1 << 20,
        request_timeout: Duration::from_secs(20),
        body_idle_timeout: Duration::from_secs(5),
        collect_every: Duration::ZERO,
        follow_every: Duration::ZERO,
        ..ServerOptions::default()
    };
    let engine = Engine::open_with(
        config,
        secrets,
        EngineOptions {
            max_object_size: options.max_object_size,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let engine = Arc::new(engine);
    for (id, home) in SUBJECTS {
        engine
            .add_subject(&id.parse().unwrap(), home.parse().unwrap())
            .await
            .unwrap();
    }
    for (subject, category, name, body) in OBJECTS {
        engine
            .put(
                &subject.parse().unwrap(),
                &category.parse().unwrap(),
                &name.parse().unwrap(),
                &Default::default(),
                *body,
            )
            .await
            .unwrap();
    }
    let metrics = Arc::new(Metrics::new());
    let s3 = domicile_server::s3::router(engine.clone(), metrics.clone(), &options).unwrap();
    let rest = domicile_server::rest::router(engine.clone(), metrics, &options);
    Deployment {
        engine,
        s3,
        rest,
        _dir: dir,
    }
}

/// One request read from the fuzz input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    fn pseudo(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
    }
}

/// The requests of one fuzz input (at most four).
pub fn parse_requests(data: &[u8]) -> Vec<RawRequest> {
    split(data, b"\n%%\n")
        .into_iter()
        .take(4)
        .filter_map(parse_request)
        .collect()
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..at]);
        rest = &rest[at + sep.len()..];
    }
    out.push(rest);
    out
}

fn parse_request(data: &[u8]) -> Option<RawRequest> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => match data.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => (&data[..at], &data[at + 4..]),
            None => (data, &[][..]),
        },
    };
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    let mut parts = first.splitn(3, |b| *b == b' ');
    let method = parts.next()?.to_vec();
    let target = parts.next().unwrap_or(b"/").to_vec();
    let headers = lines
        .filter_map(|l| {
            let at = l.iter().position(|b| *b == b':')?;
            let value = &l[at + 1..];
            let value = value.strip_prefix(b" ").unwrap_or(value);
            Some((l[..at].to_vec(), value.to_vec()))
        })
        .collect();
    Some(RawRequest {
        method,
        target,
        headers,
        body: body.to_vec(),
    })
}

/// How a request authenticates itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Header { hashed: bool },
    Presign { expires: u64 },
}

/// Builds the request hyper would hand the router, or `None` for bytes
/// hyper itself refuses (a method, target or header it cannot parse).
/// S3 requests are signed as their pseudo-headers ask.
pub fn build(raw: &RawRequest, upload: Option<&str>, sign: bool) -> Option<Request<Body>> {
    let method = Method::from_bytes(&raw.method).ok()?;
    let mut target = raw.target.clone();
    if let Some(id) = upload {
        target = replace(&target, b"{upload}", id.as_bytes());
    }
    let auth = if !sign {
        Auth::None
    } else {
        match raw.pseudo("x-fuzz-auth").as_deref() {
            Some("sigv4") => Auth::Header { hashed: true },
            Some("sigv4-unsigned") => Auth::Header { hashed: false },
            Some("presign") => Auth::Presign {
                expires: raw
                    .pseudo("x-fuzz-expires")
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(600),
            },
            _ => Auth::None,
        }
    };
    let now = amz_date(SystemTime::now());
    if let Auth::Presign { expires } = auth {
        let sep = if target.contains(&b'?') { "&" } else { "?" };
        let extra = format!(
            "{sep}X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ACCESS_KEY}%2F{}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={now}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host",
            &now[..8]
        );
        target.extend_from_slice(extra.as_bytes());
    }
    let uri = Uri::try_from(target).ok()?;
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (n, v) in &raw.headers {
        if n.starts_with(b"x-fuzz-") || n.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let name = HeaderName::from_bytes(n).ok()?;
        let value = HeaderValue::from_bytes(v).ok()?;
        if auth != Auth::None
            && matches!(
                name.as_str(),
                "host" | "x-amz-date" | "x-amz-content-sha256" | "authorization"
            )
        {
            continue;
        }
        headers.push((name, value));
    }
    let chunked = headers
        .iter()
        .any(|(n, _)| n == axum::http::header::TRANSFER_ENCODING);
    if !chunked {
        headers.push((
            axum::http::header::CONTENT_LENGTH,
            HeaderValue::from(raw.body.len()),
        ));
    }
    if auth != Auth::None && !headers.iter().any(|(n, _)| n == axum::http::header::HOST) {
        headers.push((
            axum::http::header::HOST,
            HeaderValue::from_static("localhost"),
        ));
    }
    match auth {
        Auth::None => {}
        Auth::Header { hashed } => {
            let payload = if hashed {
                hex::encode(digest::digest(&digest::SHA256, &raw.body))
            } else {
                "UNSIGNED-PAYLOAD".to_string()
            };
            headers.push((
                HeaderName::from_static("x-amz-content-sha256"),
                HeaderValue::from_str(&payload).ok()?,
            ));
            headers.push((
                HeaderName::from_static("x-amz-date"),
                HeaderValue::from_str(&now).ok()?,
            ));
            let signed: Vec<(String, String)> = signed_headers(&headers, false);
            let canonical = canonical_request(&method, &uri, &signed, &payload, false);
            let signature = signature(&canonical, &now);
            let names: Vec<&str> = names(&signed);
            let value = format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}/us-east-1/s3/aws4_request, SignedHeaders={}, Signature={signature}",
                &now[..8],
                names.join(";")
            );
            headers.push((
                axum::http::header::AUTHORIZATION,
                HeaderValue::from_str(&value).ok()?,
            ));
        }
        Auth::Presign { .. } => {
            let signed = signed_headers(&headers, true);
            let canonical = canonical_request(&method, &uri, &signed, "UNSIGNED-PAYLOAD", true);
            let signature = signature(&canonical, &now);
            let mut target = uri.to_string().into_bytes();
            target.extend_from_slice(format!("&X-Amz-Signature={signature}").as_bytes());
            let uri = Uri::try_from(target).ok()?;
            return finish(method, uri, headers, raw);
        }
    }
    finish(method, uri, headers, raw)
}

fn finish(
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    raw: &RawRequest,
) -> Option<Request<Body>> {
    let mut req = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    req.body(Body::from(raw.body.clone())).ok()
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn signed_headers(headers: &[(HeaderName, HeaderValue)], host_only: bool) -> Vec<(String, String)> {
    let mut signed: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            n == "host"
                || (!host_only
                    && (n.starts_with("x-amz-") || n == "content-type" || n == "content-md5"))
        })
        .map(|(n, v)| {
            let v = String::from_utf8_lossy(v.as_bytes());
            (
                n.as_str().to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    signed
}

fn names(signed: &[(String, String)]) -> Vec<&str> {
    let mut names: Vec<&str> = signed.iter().map(|(n, _)| n.as_str()).collect();
    names.dedup();
    names
}

/// The SigV4 canonical request over the raw path (s3s accepts a signature
/// over the raw path as well as over the decoded one).
fn canonical_request(
    method: &Method,
    uri: &Uri,
    signed: &[(String, String)],
    payload: &str,
    presigned: bool,
) -> String {
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(n)),
                uri_encode(&percent_decode(v)),
            )
        })
        .filter(|(n, _)| !(presigned && n == "X-Amz-Signature"))
        .collect();
    query.sort_by(|a, b| a.0.cmp(&b.0));
    let query: Vec<String> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut headers = String::new();
    let mut i = 0;
    while i < signed.len() {
        let name = &signed[i].0;
        let mut values = vec![signed[i].1.clone()];
        i += 1;
        while i < signed.len() && &signed[i].0 == name {
            values.push(signed[i].1.clone());
            i += 1;
        }
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{method}\n{}\n{}\n{headers}\n{}\n{payload}",
        uri.path(),
        query.join("&"),
        names(signed).join(";")
    )
}

fn signature(canonical: &str, now: &str) -> String {
    let scope = format!("{}/us-east-1/s3/aws4_request", &now[..8]);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{now}\n{scope}\n{}",
        hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    );
    let mac = |key: &[u8], data: &[u8]| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
            .as_ref()
            .to_vec()
    };
    let mut key = mac(format!("AWS4{SECRET_KEY}").as_bytes(), &now.as_bytes()[..8]);
    for part in ["us-east-1", "s3", "aws4_request"] {
        key = mac(&key, part.as_bytes());
    }
    hex::encode(mac(&key, to_sign.as_bytes()))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 3 <= b.len()
            && let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What one request got.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// Whether it answers a HEAD request (no body).
    pub head: bool,
}

/// Sends one request through a router and reads its whole answer.
pub async fn send(router: &Router, req: Request<Body>) -> Answer {
    let head = req.method() == Method::HEAD;
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), 4 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    Answer { status, body, head }
}

/// Runs every request of a fuzz input through the deployment's router for
/// `api` (S3 requests signed as they ask), as [`run_requests`] does.
pub fn fuzz_requests(api: Api, data: &[u8]) {
    with_deployment(api, |d| match api {
        Api::S3 => run_requests(&d.s3, data, true),
        Api::Rest => run_requests(&d.rest, data, false),
    });
}

/// Runs every request of a fuzz input through `router`, in order, and
/// fails on any 5xx answer but S3's `501 NotImplemented`, showing the
/// request and the answer.
pub fn run_requests(router: &Router, data: &[u8], sign: bool) {
    let requests = parse_requests(data);
    runtime().block_on(async {
        let mut upload: Option<String> = None;
        for raw in &requests {
            let Some(req) = build(raw, upload.as_deref(), sign) else {
                continue;
            };
            let shown = format!("{} {}", req.method(), req.uri());
            let answer = send(router, req).await;
            assert!(
                answer.status < 500 || not_implemented(&answer),
                "{shown} answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
            if let Some(id) = between(&answer.body, b"<UploadId>", b"</UploadId>") {
                upload = Some(id);
            }
        }
    });
}

/// S3's own refusal of a request the server does not implement (`501
/// NotImplemented`: a method or operation it does not know, a signing
/// algorithm other than SigV4's): an answer of the protocol, never a
/// failure of the server.
pub fn not_implemented(answer: &Answer) -> bool {
    // An answer to HEAD has no body to carry its S3 code.
    const CODE: &[u8] = b"<Code>NotImplemented</Code>";
    answer.status == 501 && (answer.head || answer.body.windows(CODE.len()).any(|w| w == CODE))
}

fn between(body: &[u8], open: &[u8], close: &[u8]) -> Option<String> {
    let start = body.windows(open.len()).position(|w| w == open)? + open.len();
    let len = body[start..]
        .windows(close.len())
        .position(|w| w == close)?;
    String::from_utf8(body[start..start + len].to_vec()).ok()
}
