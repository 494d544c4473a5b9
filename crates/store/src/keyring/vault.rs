//! The `vault://HOST:PORT/MOUNT/KEY` (`vaults://` for TLS) backend: the Transit secrets
//! engine of HashiCorp Vault and OpenBao (`datakey/plaintext`, `decrypt`, `encrypt`,
//! `rewrap`, and `keys` to read the key), with the token `X-Vault-Token`.
//!
//! Binding: the Transit key must be created with `derived=true`, and every call passes a
//! `context` naming the custodian, the subject token and the category. Transit then
//! derives a key per context (HKDF-SHA256), so a wrapped key opens only with its own
//! context. Key derivation is supported by every Vault and OpenBao version with Transit,
//! for datakey, encrypt, decrypt and rewrap alike, unlike `associated_data`, which newer
//! versions accept on encrypt and decrypt only. A key without derivation is refused.
//!
//! Identity: the address, mount and key name, and the creation time of the key's version 1
//! from `GET /v1/MOUNT/keys/KEY`, so that a key deleted and created again under the same
//! name is another key. Raising `min_decryption_version` above 1 hides version 1 from that
//! endpoint: the custodian is then refused, as its version-1 wrapped keys no longer open.
//! `encrypt` creates a missing key on the fly, so after each `encrypt` the key's identity is
//! read again and a wrapped key made by a key created meanwhile is refused.
//!
//! Wrapped key format: `V` (1 byte) || the Transit ciphertext (`vault:vN:…`, ASCII).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::sync::OnceLock;

use super::KeyContext;
use super::http::{self, Reply};
use crate::crypto::DataKey;
use crate::error::{Error, Result};

/// First byte of a Transit-wrapped key.
pub(super) const WRAP_TAG: u8 = b'V';

/// Where a `vault://` keyring's key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultLocation {
    /// `http` or `https` (from `vaults://`).
    pub scheme: &'static str,
    /// `HOST:PORT`.
    pub address: String,
    /// Where the Transit engine is mounted, without slashes around (`transit`, `team/transit`).
    pub mount: String,
    pub key: String,
}

impl VaultLocation {
    /// Parses what follows `vault://` (`tls` for `vaults://`).
    pub fn parse(rest: &str, tls: bool) -> std::result::Result<Self, String> {
        let usage = "expected vault://HOST:PORT/MOUNT/KEY";
        let (address, path) = rest
            .split_once('/')
            .ok_or_else(|| format!("{usage}: no mount and key"))?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("{usage}: {address:?} has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("{usage}: {address:?} is not HOST:PORT"));
        }
        let path = path.trim_end_matches('/');
        let (mount, key) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("{usage}: {path:?} names no mount"))?;
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !mount.split('/').all(segment_ok) || !segment_ok(key) {
            return Err(format!(
                "{usage}: mount {mount:?} and key {key:?} must be letters, digits, '-', '_' or '.'"
            ));
        }
        Ok(VaultLocation {
            scheme: if tls { "https" } else { "http" },
            address: address.to_owned(),
            mount: mount.to_owned(),
            key: key.to_owned(),
        })
    }

    fn url(&self, op: &str) -> String {
        format!(
            "{}://{}/v1/{}/{op}/{}",
            self.scheme, self.address, self.mount, self.key
        )
    }
}

pub(super) struct Vault {
    custodian: String,
    location: VaultLocation,
    token: String,
    client: reqwest::Client,
    /// The identity read first, which every later read must repeat.
    identity: OnceLock<String>,
}

impl Vault {
    pub(super) fn open(
        custodian: &str,
        location: VaultLocation,
        token: Option<&str>,
    ) -> Result<Self> {
        let token = token
            .map(str::to_owned)
            .or_else(|| std::env::var("VAULT_TOKEN").ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                let name = custodian.to_ascii_uppercase().replace('-', "_");
                Error::KeyManagerRefused {
                    custodian: custodian.to_owned(),
                    reason: format!(
                        "no Vault token: set DOMICILE_CUSTODIAN_{name}_TOKEN (or VAULT_TOKEN)"
                    ),
                }
            })?;
        Ok(Vault {
            custodian: custodian.to_owned(),
            client: http::client(custodian)?,
            location,
            token,
            identity: OnceLock::new(),
        })
    }

    pub(super) async fn identity(&self) -> Result<String> {
        let reply = self.call("GET", "keys", None).await?;
        let data = &reply["data"];
        if data["derived"].as_bool() != Some(true) {
            return Err(self.refused(format!(
                "Transit key {} was not created with derived=true, so wrapped keys could not be bound to their subject and category",
                self.location.key
            )));
        }
        let v1 = match &data["keys"]["1"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .get("creation_time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        if v1.is_empty() {
            return Err(self.refused(format!(
                "Transit key {} shows no version 1 (min_decryption_version {}): keys wrapped under it no longer open",
                self.location.key, data["min_decryption_version"]
            )));
        }
        let l = &self.location;
        let id = format!(
            "vault:{}://{}/{}/{}@v1:{v1}",
            l.scheme, l.address, l.mount, l.key
        );
        match self.identity.get() {
            Some(known) if *known != id => Err(self.refused(format!(
                "Transit key {} is now {id}, not {known}: it was deleted and created again",
                l.key
            ))),
            _ => {
                let _ = self.identity.set(id.clone());
                Ok(id)
            }
        }
    }

    pub(super) async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>)> {
        let reply = self
            .call(
                "POST",
                "datakey/plaintext",
                Some(json!({ "context": self.context(context), "bits": 256 })),
            )
            .await?;
        let key = DataKey::from_slice(&self.bytes(&reply["data"], "plaintext")?)?;
        Ok((key, self.wrapped(&reply)?))
    }

    pub(super) async fn wrap(&self, dek: &DataKey, context: &KeyContext<'_>) -> Result<Vec<u8>> {
        let reply = self
            .call(
                "POST",
                "encrypt",
                Some(json!({
                    "plaintext": B64.encode(dek.as_bytes()),
                    "context": self.context(context),
                })),
            )
            .await?;
        let wrapped = self.wrapped(&reply)?;
        // encrypt creates a key that does not exist: make sure it was ours that wrapped.
        self.identity().await?;
        Ok(wrapped)
    }

    pub(super) async fn unwrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey> {
        let reply = self
            .call(
                "POST",
                "decrypt",
                Some(json!({
                    "ciphertext": self.ciphertext(wrapped)?,
                    "context": self.context(context),
                })),
            )
            .await?;
        DataKey::from_slice(&self.bytes(&reply["data"], "plaintext")?)
    }

    /// Re-encrypts a wrapped key under the key's latest version, without the data key
    /// leaving Vault.
    pub(super) async fn rewrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<Vec<u8>> {
        let reply = self
            .call(
                "POST",
                "rewrap",
                Some(json!({
                    "ciphertext": self.ciphertext(wrapped)?,
                    "context": self.context(context),
                })),
            )
            .await?;
        self.wrapped(&reply)
    }

    /// The derivation context: custodian, token and category, length-prefixed so that no two
    /// triples give the same bytes.
    fn context(&self, context: &KeyContext<'_>) -> String {
        let mut out = b"domicile-v1".to_vec();
        for part in [self.custodian.as_str(), context.token, context.category] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        B64.encode(out)
    }

    fn ciphertext<'w>(&self, wrapped: &'w [u8]) -> Result<&'w str> {
        match wrapped.split_first() {
            Some((&WRAP_TAG, rest)) => std::str::from_utf8(rest)
                .ok()
                .filter(|c| c.starts_with("vault:")),
            _ => None,
        }
        .ok_or_else(|| {
            Error::crypto(format!(
                "this wrapped key was not made by the Vault of custodian {:?}",
                self.custodian
            ))
        })
    }

    fn wrapped(&self, reply: &Value) -> Result<Vec<u8>> {
        let ciphertext = reply["data"]["ciphertext"]
            .as_str()
            .filter(|c| c.starts_with("vault:"))
            .ok_or_else(|| self.refused("Transit answer without a ciphertext".into()))?;
        let mut out = Vec::with_capacity(1 + ciphertext.len());
        out.push(WRAP_TAG);
        out.extend_from_slice(ciphertext.as_bytes());
        Ok(out)
    }

    fn bytes(&self, v: &Value, field: &str) -> Result<Vec<u8>> {
        v[field]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| self.refused(format!("Transit answer without a valid {field}")))
    }

    fn refused(&self, reason: String) -> Error {
        Error::KeyManagerRefused {
            custodian: self.custodian.clone(),
            reason,
        }
    }

    async fn call(&self, method: &str, op: &str, body: Option<Value>) -> Result<Value> {
        let url = self.location.url(op);
        let request = match body {
            None => self.client.get(&url),
            Some(body) => self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        }
        .header("X-Vault-Token", &self.token);
        let what = format!(
            "Vault at {}://{} ({method} {op})",
            self.location.scheme, self.location.address
        );
        let reply = http::send(&self.custodian, &what, request).await?;
        if reply.status == 200 {
            return serde_json::from_slice(&reply.body)
                .map_err(|e| self.refused(format!("{what}: malformed answer: {e}")));
        }
        Err(self.failure(&what, &reply))
    }

    /// A Vault error: `{"errors": [...]}`. 5xx (a sealed or standby Vault answers 503) and
    /// 429 pass; 4xx (permission denied, a missing key, a ciphertext that does not open)
    /// do not.
    fn failure(&self, what: &str, reply: &Reply) -> Error {
        let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let errors: Vec<&str> = v["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let reason = format!(
            "{what}: HTTP {} {}",
            reply.status,
            errors
                .join("; ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )
        .trim_end()
        .to_owned();
        if reply.is_transient() {
            Error::KeyManagerUnavailable {
                custodian: self.custodian.clone(),
                reason,
            }
        } else {
            self.refused(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_urls_name_address_mount_and_key() {
        assert_eq!(
            VaultLocation::parse("127.0.0.1:8200/transit/in-kms", false),
            Ok(VaultLocation {
                scheme: "http",
                address: "127.0.0.1:8200".into(),
                mount: "transit".into(),
                key: "in-kms".into(),
            })
        );
        let l = VaultLocation::parse("vault.example:8200/team/transit/k/", true);
        assert!(l.is_ok_and(|l| l.mount == "team/transit" && l.key == "k" && l.scheme == "https"));
        for bad in [
            "",
            "host:8200",
            "host:8200/transit",
            "host/transit/k",
            "host:port/transit/k",
            ":8200/transit/k",
            "host:8200/../k",
            "host:8200/transit/k?x=1",
        ] {
            assert!(VaultLocation::parse(bad, false).is_err(), "{bad}");
        }
    }
}
