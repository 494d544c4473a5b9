//! The `aws-kms://KEY_ID_OR_ALIAS?region=R[&endpoint=URL]` backend: the AWS KMS JSON API
//! (`TrentService.GenerateDataKey`, `Decrypt`, `Encrypt`, `ReEncrypt`, `DescribeKey`).
//!
//! Requests are signed with SigV4 by `object_store`'s [`AwsAuthorizer`], the signer the
//! dependency tree already has for `s3://` regions (no AWS SDK).
//!
//! Every wrapped key is bound by the KMS encryption context to the custodian id, the
//! subject token and the category: KMS refuses to decrypt it under any other. Once the key
//! identity is resolved ([`Kms::identity`], the key ARN from `DescribeKey`), every call
//! names the key by that ARN, and every answer's `KeyId` must be it: an alias re-pointed
//! while a process runs never moves its writes to another key, and a new process refuses
//! the other key when it compares the ARN with the catalog's.
//!
//! Wrapped key format: `K` (1 byte) || the KMS `CiphertextBlob`.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use serde_json::{Value, json};

use super::KeyContext;
use super::http::{self, Reply};
use crate::crypto::DataKey;
use crate::error::{Error, Result};
use crate::region::S3Credentials;

/// First byte of a KMS-wrapped key.
pub(super) const WRAP_TAG: u8 = b'K';

/// Where an `aws-kms://` keyring's key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsLocation {
    /// A key id, key ARN, alias name (`alias/…`) or alias ARN.
    pub key: String,
    pub region: String,
    /// The service's URL; `https://kms.REGION.amazonaws.com` when absent.
    pub endpoint: Option<String>,
}

impl KmsLocation {
    /// Parses what follows `aws-kms://`.
    pub fn parse(rest: &str) -> std::result::Result<Self, String> {
        let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
        if key.is_empty() {
            return Err("an aws-kms:// URL names a key id, key ARN or alias (alias/NAME)".into());
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{key:?} is not a KMS key id or alias"));
        }
        let (mut region, mut endpoint) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if v.is_empty() {
                return Err(format!("query parameter {k:?} needs a value"));
            }
            match k {
                "region" => region = Some(v.to_owned()),
                "endpoint" => {
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        return Err(format!("endpoint {v:?} must be an http:// or https:// URL"));
                    }
                    endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}; aws-kms:// URLs take region= and endpoint="
                    ));
                }
            }
        }
        let region = region.ok_or("an aws-kms:// URL needs ?region=REGION")?;
        Ok(KmsLocation {
            key: key.to_owned(),
            region,
            endpoint,
        })
    }
}

pub(super) struct Kms {
    custodian: String,
    location: KmsLocation,
    endpoint: String,
    credential: AwsCredential,
    client: reqwest::Client,
    /// The key ARN, once `DescribeKey` resolved it.
    arn: OnceLock<String>,
}

impl Kms {
    pub(super) fn open(
        custodian: &str,
        location: KmsLocation,
        credentials: Option<&S3Credentials>,
    ) -> Result<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let credential = match credentials {
            Some(c) => AwsCredential {
                key_id: c.access_key_id.clone(),
                secret_key: c.secret_access_key.clone(),
                token: None,
            },
            None => match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
                (Some(key_id), Some(secret_key)) => AwsCredential {
                    key_id,
                    secret_key,
                    token: env("AWS_SESSION_TOKEN"),
                },
                _ => {
                    let name = custodian.to_ascii_uppercase().replace('-', "_");
                    return Err(Error::KeyManagerRefused {
                        custodian: custodian.to_owned(),
                        reason: format!(
                            "no AWS credential: set DOMICILE_CUSTODIAN_{name}_ACCESS_KEY_ID and \
                             DOMICILE_CUSTODIAN_{name}_SECRET_ACCESS_KEY, or AWS_ACCESS_KEY_ID and \
                             AWS_SECRET_ACCESS_KEY"
                        ),
                    });
                }
            },
        };
        let endpoint = location
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", location.region));
        Ok(Kms {
            custodian: custodian.to_owned(),
            client: http::client(custodian)?,
            location,
            endpoint,
            credential,
            arn: OnceLock::new(),
        })
    }

    /// The key as calls name it: its ARN once known, else as configured.
    fn key_id(&self) -> &str {
        self.arn.get().map_or(&self.location.key, String::as_str)
    }

    /// The key's ARN from `DescribeKey`. A key that is not enabled is refused here too:
    /// not every KMS-compatible service enforces a disabled key on every operation.
    pub(super) async fn identity(&self) -> Result<String> {
        let reply = self
            .call("DescribeKey", json!({ "KeyId": self.location.key }))
            .await?;
        let meta = &reply["KeyMetadata"];
        let arn = self.string(meta, "Arn")?;
        if meta["KeyState"].as_str().is_some_and(|s| s != "Enabled")
            || meta["Enabled"].as_bool() == Some(false)
        {
            return Err(self.refused(format!(
                "KMS key {arn} is {}",
                meta["KeyState"].as_str().unwrap_or("not enabled")
            )));
        }
        match self.arn.get() {
            Some(known) if *known != arn => Err(self.refused(format!(
                "{} now names KMS key {arn}, not {known}",
                self.location.key
            ))),
            _ => {
                let _ = self.arn.set(arn.clone());
                Ok(arn)
            }
        }
    }

    pub(super) async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>)> {
        let reply = self
            .call(
                "GenerateDataKey",
                json!({
                    "KeyId": self.key_id(),
                    "KeySpec": "AES_256",
                    "EncryptionContext": self.context(context),
                }),
            )
            .await?;
        self.check_key(&reply)?;
        let key = DataKey::from_slice(&self.bytes(&reply, "Plaintext")?)?;
        Ok((key, self.wrapped(&reply)?))
    }

    pub(super) async fn wrap(&self, dek: &DataKey, context: &KeyContext<'_>) -> Result<Vec<u8>> {
        let reply = self
            .call(
                "Encrypt",
                json!({
                    "KeyId": self.key_id(),
                    "Plaintext": B64.encode(dek.as_bytes()),
                    "EncryptionContext": self.context(context),
                }),
            )
            .await?;
        self.check_key(&reply)?;
        self.wrapped(&reply)
    }

    pub(super) async fn unwrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey> {
        let reply = self
            .call(
                "Decrypt",
                json!({
                    "KeyId": self.key_id(),
                    "CiphertextBlob": B64.encode(self.blob(wrapped)?),
                    "EncryptionContext": self.context(context),
                }),
            )
            .await?;
        self.check_key(&reply)?;
        DataKey::from_slice(&self.bytes(&reply, "Plaintext")?)
    }

    /// Re-encrypts a wrapped key under the key's current version (`ReEncrypt` to the same
    /// key, same context), without the data key leaving KMS.
    pub(super) async fn rewrap(&self, wrapped: &[u8], context: &KeyContext<'_>) -> Result<Vec<u8>> {
        let context = self.context(context);
        let reply = self
            .call(
                "ReEncrypt",
                json!({
                    "CiphertextBlob": B64.encode(self.blob(wrapped)?),
                    "SourceKeyId": self.key_id(),
                    "SourceEncryptionContext": context,
                    "DestinationKeyId": self.key_id(),
                    "DestinationEncryptionContext": context,
                }),
            )
            .await?;
        self.check_key(&reply)?;
        self.wrapped(&reply)
    }

    /// The encryption context: custodian, subject token and category, each its own entry
    /// (KMS authenticates the whole map with the ciphertext).
    fn context(&self, context: &KeyContext<'_>) -> Value {
        json!({
            "domicile:custodian": self.custodian,
            "domicile:subject": context.token,
            "domicile:category": context.category,
        })
    }

    /// Every answer names the key that did the work: it must be the resolved one.
    fn check_key(&self, reply: &Value) -> Result<()> {
        match (self.arn.get(), reply["KeyId"].as_str()) {
            (Some(arn), Some(used)) if used != arn => Err(self.refused(format!(
                "KMS answered with key {used}, not the custodian's key {arn}"
            ))),
            _ => Ok(()),
        }
    }

    fn blob<'w>(&self, wrapped: &'w [u8]) -> Result<&'w [u8]> {
        match wrapped.split_first() {
            Some((&WRAP_TAG, blob)) if !blob.is_empty() => Ok(blob),
            _ => Err(Error::crypto(format!(
                "this wrapped key was not made by the KMS of custodian {:?}",
                self.custodian
            ))),
        }
    }

    fn wrapped(&self, reply: &Value) -> Result<Vec<u8>> {
        let blob = self.bytes(reply, "CiphertextBlob")?;
        let mut out = Vec::with_capacity(1 + blob.len());
        out.push(WRAP_TAG);
        out.extend_from_slice(&blob);
        Ok(out)
    }

    fn string(&self, v: &Value, field: &str) -> Result<String> {
        v[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.refused(format!("KMS answer without {field}")))
    }

    fn bytes(&self, v: &Value, field: &str) -> Result<Vec<u8>> {
        B64.decode(self.string(v, field)?)
            .map_err(|_| self.refused(format!("KMS answer with a malformed {field}")))
    }

    fn refused(&self, reason: String) -> Error {
        Error::KeyManagerRefused {
            custodian: self.custodian.clone(),
            reason,
        }
    }

    /// One signed call of the KMS JSON API.
    async fn call(&self, action: &str, body: Value) -> Result<Value> {
        let body = serde_json::to_vec(&body).map_err(|e| self.refused(e.to_string()))?;
        let mut request = ::http::Request::builder()
            .method("POST")
            .uri(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{action}"))
            .body(object_store::client::HttpRequestBody::from(body.clone()))
            .map_err(|e| self.refused(format!("bad KMS endpoint {}: {e}", self.endpoint)))?;
        AwsAuthorizer::new(&self.credential, "kms", &self.location.region)
            .try_authorize(&mut request, None)
            .map_err(|e| self.refused(format!("cannot sign the KMS request: {e}")))?;
        let send = self
            .client
            .post(format!("{}/", self.endpoint))
            .headers(request.headers().clone())
            .body(body);
        let what = format!("KMS at {} ({action})", self.endpoint);
        let reply = http::send(&self.custodian, &what, send).await?;
        if reply.status == 200 {
            return serde_json::from_slice(&reply.body)
                .map_err(|e| self.refused(format!("{what}: malformed answer: {e}")));
        }
        Err(self.failure(&what, &reply))
    }

    /// A KMS error: `__type` (possibly namespaced, `…#DisabledException`) and `message`.
    fn failure(&self, what: &str, reply: &Reply) -> Error {
        let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let kind = v["__type"]
            .as_str()
            .map(|t| t.rsplit('#').next().unwrap_or(t))
            .unwrap_or("");
        let message = v["message"]
            .as_str()
            .or(v["Message"].as_str())
            .unwrap_or("");
        let reason = format!("{what}: HTTP {} {kind} {message}", reply.status)
            .trim_end()
            .to_owned();
        let transient = matches!(
            kind,
            "KMSInternalException"
                | "DependencyTimeoutException"
                | "ThrottlingException"
                | "LimitExceededException"
                | "KeyUnavailableException"
        );
        if reply.is_transient() || transient {
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
    fn kms_urls_need_a_key_and_a_region() {
        assert_eq!(
            KmsLocation::parse("alias/in-kms?region=ap-south-1&endpoint=http://127.0.0.1:5000/"),
            Ok(KmsLocation {
                key: "alias/in-kms".into(),
                region: "ap-south-1".into(),
                endpoint: Some("http://127.0.0.1:5000".into()),
            })
        );
        assert!(
            KmsLocation::parse("arn:aws:kms:ap-south-1:1:key/abc?region=ap-south-1")
                .is_ok_and(|l| l.key == "arn:aws:kms:ap-south-1:1:key/abc")
        );
        for bad in [
            "",
            "?region=x",
            "alias/k",
            "alias/k?region=",
            "alias/k?region=x&endpoint=ftp://h",
            "alias/k?region=x&colour=blue",
        ] {
            assert!(KmsLocation::parse(bad).is_err(), "{bad}");
        }
    }
}
