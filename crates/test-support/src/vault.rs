//! A faithful fake of the Transit secrets engine of HashiCorp Vault and OpenBao, for the
//! tests of `vault://` custodians (no Vault is installable here). It serves what domicile
//! calls, as Vault answers it:
//!
//! - `GET /v1/MOUNT/keys/KEY`: `data.derived`, `data.keys` (version → creation time, only
//!   versions at or above `min_decryption_version`), `latest_version`,
//!   `min_decryption_version`; 404 for a missing key.
//! - `POST …/datakey/plaintext/KEY`, `…/encrypt/KEY` (which creates a missing key, as
//!   Vault's does), `…/decrypt/KEY`, `…/rewrap/KEY`: AES-256-GCM with a 96-bit nonce
//!   prepended, `vault:vN:` prefix, and for derived keys a key per context
//!   (HKDF-SHA256 of the version's key with the context as info), so a wrong context fails
//!   authentication; a missing context on a derived key is a 400.
//! - `POST …/keys/KEY` (create, `derived`), `…/keys/KEY/rotate`, `…/keys/KEY/config`
//!   (`min_decryption_version`): decrypting an older version then fails with Vault's
//!   "too old" 400.
//! - `X-Vault-Token` must be the server's token, else 403 "permission denied"; a path can
//!   be denied to it ([`FakeVault::deny`]), as a policy would.
//!
//! Each server runs on 127.0.0.1:0 in a thread of its own and stops on drop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

struct Key {
    derived: bool,
    /// Version n is `versions[n - 1]`: (key, creation time in seconds).
    versions: Vec<([u8; 32], i64)>,
    min_decryption_version: usize,
}

#[derive(Default)]
struct Vault {
    keys: BTreeMap<String, Key>,
    /// Operations (`decrypt`, `datakey/plaintext`, `keys`…) the token may not call.
    denied: BTreeSet<String>,
    clock: i64,
}

#[derive(Clone)]
struct Shared {
    token: String,
    mount: String,
    vault: Arc<Mutex<Vault>>,
}

/// A fake Transit server; stopped on drop.
pub struct FakeVault {
    /// `127.0.0.1:PORT`.
    pub address: String,
    pub token: String,
    pub mount: String,
    shared: Arc<Mutex<Vault>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FakeVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeVault")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl FakeVault {
    /// A server with Transit mounted at `transit` and a random token.
    pub fn start() -> FakeVault {
        let mut t = [0u8; 12];
        SystemRandom::new().fill(&mut t).unwrap();
        let token = format!("hvs.{}", hex_of(&t));
        let shared = Shared {
            token: token.clone(),
            mount: "transit".into(),
            vault: Arc::new(Mutex::new(Vault {
                clock: 1_700_000_000,
                ..Vault::default()
            })),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/v1/{*path}", axum::routing::any(handle))
            .with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        FakeVault {
            address,
            token,
            mount: shared.mount.clone(),
            shared: shared.vault,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The keyring URL of key `name`.
    pub fn url(&self, name: &str) -> String {
        format!("vault://{}/{}/{name}", self.address, self.mount)
    }

    /// Creates key `name` (AES-256-GCM), derived or not.
    pub fn create_key(&self, name: &str, derived: bool) {
        let mut v = self.shared.lock().unwrap();
        let created = v.tick();
        v.keys.insert(
            name.into(),
            Key {
                derived,
                versions: vec![(random_key(), created)],
                min_decryption_version: 1,
            },
        );
    }

    /// Deletes key `name`, as `DELETE /v1/MOUNT/keys/NAME` with deletion allowed.
    pub fn delete_key(&self, name: &str) {
        self.shared.lock().unwrap().keys.remove(name);
    }

    /// Adds a version to key `name`.
    pub fn rotate(&self, name: &str) {
        let mut v = self.shared.lock().unwrap();
        let created = v.tick();
        if let Some(k) = v.keys.get_mut(name) {
            k.versions.push((random_key(), created));
        }
    }

    /// Sets key `name`'s `min_decryption_version`.
    pub fn set_min_decryption_version(&self, name: &str, version: usize) {
        if let Some(k) = self.shared.lock().unwrap().keys.get_mut(name) {
            k.min_decryption_version = version;
        }
    }

    /// Denies operation `op` (`decrypt`, `datakey/plaintext`, `keys`…) to the token, as a
    /// policy without that path would.
    pub fn deny(&self, op: &str) {
        self.shared.lock().unwrap().denied.insert(op.into());
    }

    pub fn allow(&self, op: &str) {
        self.shared.lock().unwrap().denied.remove(op);
    }
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Vault {
    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    SystemRandom::new().fill(&mut k).unwrap();
    k
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({ "errors": [msg] }))).into_response()
}

fn ok(data: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response()
}

/// The key of `version`, derived for `context` if the key is derived.
/// A refusal: its status and Vault's message.
type Fail = (StatusCode, &'static str);

fn fail(f: Fail) -> Response {
    error(f.0, f.1)
}

fn version_key(key: &Key, version: usize, context: Option<&[u8]>) -> Result<LessSafeKey, Fail> {
    let (raw, _) = key.versions[version - 1];
    let bytes = match (key.derived, context) {
        (false, _) => raw,
        (true, None) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key",
            ));
        }
        (true, Some(ctx)) => {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(&raw);
            let info = [ctx];
            let okm = prk.expand(&info, hkdf::HKDF_SHA256).unwrap();
            let mut out = [0u8; 32];
            okm.fill(&mut out).unwrap();
            out
        }
    };
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &bytes).unwrap(),
    ))
}

fn encrypt(key: &Key, context: Option<&[u8]>, plaintext: &[u8]) -> Result<String, Fail> {
    let version = key.versions.len();
    let k = version_key(key, version, context)?;
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).unwrap();
    let mut buf = plaintext.to_vec();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(format!("vault:v{version}:{}", B64.encode(out)))
}

fn decrypt(key: &Key, context: Option<&[u8]>, ciphertext: &str) -> Result<Vec<u8>, Fail> {
    let bad = |m: &'static str| (StatusCode::BAD_REQUEST, m);
    let rest = ciphertext
        .strip_prefix("vault:v")
        .ok_or_else(|| bad("invalid ciphertext: no prefix"))?;
    let (version, body) = rest
        .split_once(':')
        .ok_or_else(|| bad("invalid ciphertext: wrong number of fields"))?;
    let version: usize = version
        .parse()
        .map_err(|_| bad("invalid ciphertext: version number could not be decoded"))?;
    if version < key.min_decryption_version {
        return Err(bad(
            "ciphertext or signature version is disallowed by policy (too old)",
        ));
    }
    if version == 0 || version > key.versions.len() {
        return Err(bad("invalid ciphertext: version is too new"));
    }
    let raw = B64
        .decode(body)
        .map_err(|_| bad("invalid ciphertext: could not decode base64"))?;
    if raw.len() < NONCE_LEN + 16 {
        return Err(bad("invalid ciphertext: too short"));
    }
    let k = version_key(key, version, context)?;
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let mut buf = sealed.to_vec();
    let plain = k
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).unwrap(),
            Aad::empty(),
            &mut buf,
        )
        .map_err(|_| bad("cipher: message authentication failed"))?;
    Ok(plain.to_vec())
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.get("x-vault-token").and_then(|t| t.to_str().ok()) != Some(s.token.as_str()) {
        return error(StatusCode::FORBIDDEN, "permission denied");
    }
    let Some(rest) = path.strip_prefix(&format!("{}/", s.mount)) else {
        return error(StatusCode::NOT_FOUND, "no handler for route");
    };
    let (op, name) = match rest.rsplit_once('/') {
        Some((op, name)) => (op.to_string(), name.to_string()),
        None => return error(StatusCode::NOT_FOUND, "no handler for route"),
    };
    let mut v = s.vault.lock().unwrap();
    if v.denied.contains(&op) {
        return error(
            StatusCode::FORBIDDEN,
            "1 error occurred:\n\t* permission denied\n\n",
        );
    }
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return error(StatusCode::BAD_REQUEST, "failed to parse JSON input"),
        }
    };
    let context = match req["context"].as_str().map(|c| B64.decode(c)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "failed to base64-decode context"),
    };
    let context = context.as_deref();
    match (method.as_str(), op.as_str()) {
        ("GET", "keys") => match v.keys.get(&name) {
            None => error(StatusCode::NOT_FOUND, ""),
            Some(k) => {
                let keys: serde_json::Map<String, Value> = k
                    .versions
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i + 1 >= k.min_decryption_version)
                    .map(|(i, (_, t))| ((i + 1).to_string(), json!(t)))
                    .collect();
                ok(json!({
                    "name": name,
                    "type": "aes256-gcm96",
                    "derived": k.derived,
                    "keys": keys,
                    "latest_version": k.versions.len(),
                    "min_decryption_version": k.min_decryption_version,
                    "supports_encryption": true,
                    "supports_decryption": true,
                    "supports_derivation": true,
                }))
            }
        },
        ("POST", "keys") => {
            let created = v.tick();
            v.keys.entry(name).or_insert(Key {
                derived: req["derived"].as_bool().unwrap_or(false),
                versions: vec![(random_key(), created)],
                min_decryption_version: 1,
            });
            (StatusCode::NO_CONTENT, "").into_response()
        }
        ("POST", "datakey/plaintext") => {
            let Some(k) = v.keys.get(&name) else {
                return error(StatusCode::BAD_REQUEST, "encryption key not found");
            };
            let bits = req["bits"].as_u64().unwrap_or(256);
            let mut dk = vec![0u8; (bits / 8) as usize];
            SystemRandom::new().fill(&mut dk).unwrap();
            match encrypt(k, context, &dk) {
                Ok(ct) => ok(json!({
                    "plaintext": B64.encode(&dk),
                    "ciphertext": ct,
                    "key_version": k.versions.len(),
                })),
                Err(e) => fail(e),
            }
        }
        ("POST", "encrypt") => {
            let Some(pt) = req["plaintext"].as_str().and_then(|p| B64.decode(p).ok()) else {
                return error(StatusCode::BAD_REQUEST, "failed to base64-decode plaintext");
            };
            // Vault's encrypt upserts: a missing key is created (derived if a context came).
            if !v.keys.contains_key(&name) {
                let created = v.tick();
                v.keys.insert(
                    name.clone(),
                    Key {
                        derived: context.is_some(),
                        versions: vec![(random_key(), created)],
                        min_decryption_version: 1,
                    },
                );
            }
            let k = &v.keys[&name];
            match encrypt(k, context, &pt) {
                Ok(ct) => ok(json!({ "ciphertext": ct, "key_version": k.versions.len() })),
                Err(e) => fail(e),
            }
        }
        ("POST", "decrypt") => {
            let Some(k) = v.keys.get(&name) else {
                return error(StatusCode::BAD_REQUEST, "encryption key not found");
            };
            match decrypt(k, context, req["ciphertext"].as_str().unwrap_or_default()) {
                Ok(pt) => ok(json!({ "plaintext": B64.encode(pt) })),
                Err(e) => fail(e),
            }
        }
        ("POST", "rewrap") => {
            let Some(k) = v.keys.get(&name) else {
                return error(StatusCode::BAD_REQUEST, "encryption key not found");
            };
            match decrypt(k, context, req["ciphertext"].as_str().unwrap_or_default())
                .and_then(|pt| encrypt(k, context, &pt))
            {
                Ok(ct) => ok(json!({ "ciphertext": ct, "key_version": k.versions.len() })),
                Err(e) => fail(e),
            }
        }
        _ => {
            // keys/NAME/rotate and keys/NAME/config arrive as op "keys/NAME".
            let Some(key_name) = op.strip_prefix("keys/") else {
                return error(StatusCode::NOT_FOUND, "no handler for route");
            };
            let created = v.tick();
            let Some(k) = v.keys.get_mut(key_name) else {
                return error(StatusCode::NOT_FOUND, "");
            };
            match (method.as_str(), name.as_str()) {
                ("POST", "rotate") => {
                    k.versions.push((random_key(), created));
                    (StatusCode::NO_CONTENT, "").into_response()
                }
                ("POST", "config") => {
                    if let Some(m) = req["min_decryption_version"].as_u64() {
                        k.min_decryption_version = m as usize;
                    }
                    (StatusCode::NO_CONTENT, "").into_response()
                }
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation"),
            }
        }
    }
}
