//! Who may call the network APIs: the config's `[[credential]]` entries (S3
//! credentials scoped to buckets, read or read-write) and `[[token]]`
//! entries (REST bearer tokens with a role). The config names them and
//! says what they may do; their secrets come from the secrets (the engine's
//! `secrets`), never from this file.

use std::fmt;
use std::ops::Range;

use serde::Deserialize;

use super::Builder;
/// A value with its span in the file (as in `raw`).
type S<T> = toml::Spanned<T>;
use crate::bucket::Bucket;

/// The name the deployment-wide S3 credential (`DOMICILE_S3_*`) goes by.
pub const DEFAULT_CREDENTIAL: &str = "default";
/// The names of the REST tokens given by `DOMICILE_ADMIN_TOKEN` and
/// `DOMICILE_AUDITOR_TOKEN`.
pub const ADMIN_TOKEN: &str = "admin";
pub const AUDITOR_TOKEN: &str = "auditor";

/// One `[[credential]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub name: S<String>,
    pub access_key_id: S<String>,
    pub buckets: S<Vec<S<String>>>,
    pub access: S<String>,
}

/// One `[[token]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: S<String>,
    pub role: S<String>,
}

/// What an S3 credential may do in its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// List, read and copy from; never write.
    Read,
    /// Everything the S3 API serves.
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::ReadWrite => "read-write",
        }
    }
}

/// The buckets an S3 credential reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketScope {
    /// `"*"`: every configured bucket.
    All,
    /// These configured buckets only.
    Only(Vec<String>),
}

impl BucketScope {
    pub fn contains(&self, bucket: &str) -> bool {
        match self {
            BucketScope::All => true,
            BucketScope::Only(names) => names.iter().any(|n| n == bucket),
        }
    }
}

/// A declared S3 credential (its secret is in the secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialConfig {
    pub name: String,
    pub access_key_id: String,
    pub buckets: BucketScope,
    pub access: Access,
    /// Where it is declared, for start-up messages.
    pub span: Range<usize>,
}

/// The role of a REST token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Subjects and migrations, and the reports.
    Operator,
    /// Reports, the ledger's verification and the policy; never a subject
    /// id in clear.
    Auditor,
    /// Demands, and the reports.
    Legal,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Auditor, Role::Legal];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Legal => "legal",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A declared REST token (its secret is in the secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    pub span: Range<usize>,
}

/// Names of credentials and tokens: they end up in secret names, metric
/// labels and the ledger, so they are short and plain.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        Some("must be 1 to 64 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        Some("may hold only a-z, 0-9, '_' and '-'")
    } else {
        None
    }
}

impl Builder {
    fn access_name(&mut self, s: &S<String>, what: &str, reserved: &[&str]) -> Option<String> {
        let name = s.get_ref();
        if let Some(p) = name_problem(name) {
            self.err(&s.span(), format!("{what} name {name:?} {p}"));
            return None;
        }
        if reserved.contains(&name.as_str()) {
            self.err(
                &s.span(),
                format!(
                    "{what} name {name:?} is reserved for the one given by the environment ({})",
                    reserved.join(", ")
                ),
            );
            return None;
        }
        Some(name.clone())
    }

    /// The `[[credential]]` entries, checked against the configured buckets.
    pub(super) fn credentials(
        &mut self,
        raw: &[S<RawCredential>],
        buckets: &[Bucket],
    ) -> Vec<CredentialConfig> {
        let mut out: Vec<CredentialConfig> = Vec::new();
        for entry in raw {
            let c = entry.get_ref();
            let name = self.access_name(&c.name, "credential", &[DEFAULT_CREDENTIAL]);
            let key = c.access_key_id.get_ref();
            let key_ok = !key.is_empty()
                && key.len() <= 128
                && key.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
            if !key_ok {
                self.err(
                    &c.access_key_id.span(),
                    "access_key_id must be 1 to 128 printable characters, without spaces or '/'",
                );
            }
            let access = match c.access.get_ref().as_str() {
                "read" => Some(Access::Read),
                "read-write" => Some(Access::ReadWrite),
                other => {
                    self.err(
                        &c.access.span(),
                        format!("access {other:?}: expected \"read\" or \"read-write\""),
                    );
                    None
                }
            };
            let scope = self.bucket_scope(&c.buckets, buckets);
            let (Some(name), Some(access), Some(scope), true) = (name, access, scope, key_ok)
            else {
                continue;
            };
            if out.iter().any(|o| o.name == name) {
                self.err(
                    &c.name.span(),
                    format!("credential {name} is declared twice"),
                );
                continue;
            }
            if let Some(o) = out.iter().find(|o| &o.access_key_id == key) {
                self.err(
                    &c.access_key_id.span(),
                    format!("access_key_id {key:?} is already credential {}'s", o.name),
                );
                continue;
            }
            out.push(CredentialConfig {
                name,
                access_key_id: key.clone(),
                buckets: scope,
                access,
                span: entry.span(),
            });
        }
        out
    }

    fn bucket_scope(
        &mut self,
        list: &S<Vec<S<String>>>,
        buckets: &[Bucket],
    ) -> Option<BucketScope> {
        if list.get_ref().is_empty() {
            self.err(
                &list.span(),
                "buckets is empty: name configured buckets, or \"*\" for all",
            );
            return None;
        }
        let mut names: Vec<String> = Vec::new();
        let mut all = false;
        let mut ok = true;
        for b in list.get_ref() {
            let name = b.get_ref();
            if name == "*" {
                all = true;
            } else if buckets.iter().any(|c| &c.name == name) {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            } else {
                let known: Vec<&str> = buckets.iter().map(|c| c.name.as_str()).collect();
                self.err(
                    &b.span(),
                    format!(
                        "unknown bucket {name:?}: configured buckets are [{}], or \"*\" for all",
                        known.join(", ")
                    ),
                );
                ok = false;
            }
        }
        match (ok, all) {
            (false, _) => None,
            (true, true) => Some(BucketScope::All),
            (true, false) => Some(BucketScope::Only(names)),
        }
    }

    /// The `[[token]]` entries.
    pub(super) fn tokens(&mut self, raw: &[S<RawToken>]) -> Vec<TokenConfig> {
        let mut out: Vec<TokenConfig> = Vec::new();
        for entry in raw {
            let t = entry.get_ref();
            let name = self.access_name(&t.name, "token", &[ADMIN_TOKEN, AUDITOR_TOKEN]);
            let role = Role::parse(t.role.get_ref());
            if role.is_none() {
                self.err(
                    &t.role.span(),
                    format!(
                        "role {:?}: expected \"admin\", \"operator\", \"auditor\" or \"legal\"",
                        t.role.get_ref()
                    ),
                );
            }
            let (Some(name), Some(role)) = (name, role) else {
                continue;
            };
            if out.iter().any(|o| o.name == name) {
                self.err(&t.name.span(), format!("token {name} is declared twice"));
                continue;
            }
            out.push(TokenConfig {
                name,
                role,
                span: entry.span(),
            });
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = r#"
[operator]
name = "t"
headquarters = "DE"

[[region]]
id = "de-1"
jurisdiction = "DE"
provider = "self"
provider_headquarters = "DE"
store = "memory://"

[[custodian]]
id = "k"
jurisdiction = "DE"
headquarters = "DE"
keyring = "memory://"

[[bucket]]
name = "user-data"
subject = "users/{subject}/"
category = "profile"

[[bucket]]
name = "logs"
subject = "{subject}/"
category = "logs"

[[rule]]
name = "default"
homes = ["*"]
allow = ["*"]
custodian = "k"
"#;

    fn parse(extra: &str) -> Result<Config, crate::ConfigError> {
        Config::parse("t.toml", &format!("{BASE}{extra}"), Path::new("."))
    }

    #[test]
    fn credentials_and_tokens_are_read() {
        let c = parse(
            r#"
[[credential]]
name = "app-eu"
access_key_id = "AKEU"
buckets = ["user-data"]
access = "read-write"

[[credential]]
name = "reader"
access_key_id = "AKREAD"
buckets = ["*", "logs"]
access = "read"

[[token]]
name = "dpo"
role = "auditor"
"#,
        )
        .unwrap();
        assert_eq!(c.credentials.len(), 2);
        assert_eq!(
            c.credentials[0].buckets,
            BucketScope::Only(vec!["user-data".into()])
        );
        assert_eq!(c.credentials[0].access, Access::ReadWrite);
        assert_eq!(c.credentials[1].buckets, BucketScope::All);
        assert!(c.credentials[1].buckets.contains("logs"));
        assert!(!c.credentials[0].buckets.contains("logs"));
        assert_eq!(c.tokens[0].role, Role::Auditor);
    }

    #[test]
    fn every_problem_is_reported_at_its_place() {
        let e = parse(
            r#"
[[credential]]
name = "App EU"
access_key_id = ""
buckets = ["nope"]
access = "write"

[[credential]]
name = "default"
access_key_id = "AK1"
buckets = []
access = "read"

[[credential]]
name = "a"
access_key_id = "AK2"
buckets = ["logs"]
access = "read"

[[credential]]
name = "a"
access_key_id = "AK3"
buckets = ["logs"]
access = "read"

[[credential]]
name = "b"
access_key_id = "AK2"
buckets = ["logs"]
access = "read"

[[token]]
name = "boss"
role = "owner"

[[token]]
name = "admin"
role = "admin"
"#,
        )
        .unwrap_err();
        let text = e.to_string();
        for needle in [
            "credential name \"App EU\" may hold only",
            "access_key_id must be 1 to 128",
            "unknown bucket \"nope\": configured buckets are [user-data, logs]",
            "access \"write\": expected \"read\" or \"read-write\"",
            "\"default\" is reserved",
            "buckets is empty",
            "credential a is declared twice",
            "access_key_id \"AK2\" is already credential a's",
            "role \"owner\": expected",
            "token name \"admin\" is reserved",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert!(
            e.diagnostics.iter().all(|d| d.line > 30),
            "each at its own line: {text}"
        );
        assert_eq!(e.diagnostics.len(), 10, "{text}");
    }
}
