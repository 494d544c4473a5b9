//! The config's `[server]` section: how `domicile serve` meets the network
//! (TLS files and the limits of its listeners). Every key is optional; a
//! flag of `serve` overrides it, and what neither gives takes the server's
//! default.
//!
//! ```toml
//! [server]
//! tls_cert = "tls/fullchain.pem"   # relative to this file
//! tls_key = "tls/key.pem"
//! tls_check_every = 5              # seconds; 0 checks never
//! header_read_timeout = 10         # seconds
//! request_timeout = 60             # seconds
//! max_connections = 512            # per listener
//! max_in_flight = 128              # per API
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Builder;
/// A value with its span in the file (as in `raw`).
type S<T> = toml::Spanned<T>;

/// The `[server]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default)]
    pub tls_cert: Option<S<String>>,
    #[serde(default)]
    pub tls_key: Option<S<String>>,
    #[serde(default)]
    pub tls_check_every: Option<S<Seconds>>,
    #[serde(default)]
    pub header_read_timeout: Option<S<Seconds>>,
    #[serde(default)]
    pub request_timeout: Option<S<Seconds>>,
    #[serde(default)]
    pub max_connections: Option<S<i64>>,
    #[serde(default)]
    pub max_in_flight: Option<S<i64>>,
}

/// A number of seconds, written as an integer or a decimal.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Seconds {
    Whole(i64),
    Decimal(f64),
}

impl Seconds {
    fn value(self) -> f64 {
        match self {
            Seconds::Whole(n) => n as f64,
            Seconds::Decimal(x) => x,
        }
    }
}

/// The `[server]` section, validated: what the config says, `None` where
/// it is silent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerSettings {
    /// The PEM certificate chain (leaf first), resolved against the
    /// config's folder. Given together with `tls_key` or not at all.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, RSA or SEC1).
    pub tls_key: Option<PathBuf>,
    /// How often the TLS files are checked for a change; zero never.
    pub tls_check_every: Option<Duration>,
    pub header_read_timeout: Option<Duration>,
    pub request_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub max_in_flight: Option<usize>,
}

/// Longest accepted for any of the section's times: a day.
const MAX_SECONDS: f64 = 86_400.0;
/// Largest accepted for the connection and request caps.
const MAX_COUNT: i64 = 1_000_000;

impl Builder {
    pub(super) fn server(&mut self, raw: Option<&S<RawServer>>) -> ServerSettings {
        let Some(raw) = raw else {
            return ServerSettings::default();
        };
        let span = raw.span();
        let r = raw.get_ref();
        let path = |b: &mut Builder, v: &Option<S<String>>, what: &str| {
            let v = v.as_ref()?;
            if v.get_ref().trim().is_empty() {
                b.err(&v.span(), format!("{what} must not be empty"));
                return None;
            }
            Some(resolve(&b.base_dir, v.get_ref()))
        };
        let tls_cert = path(self, &r.tls_cert, "tls_cert");
        let tls_key = path(self, &r.tls_key, "tls_key");
        if r.tls_cert.is_some() != r.tls_key.is_some() {
            self.diags.push(self.map.at(
                &span,
                "[server] needs both tls_cert and tls_key for TLS, or neither",
            ));
        }
        let tls_check_every = self.seconds(&r.tls_check_every, "tls_check_every", true);
        let header_read_timeout =
            self.seconds(&r.header_read_timeout, "header_read_timeout", false);
        let request_timeout = self.seconds(&r.request_timeout, "request_timeout", false);
        let max_connections = self.count(&r.max_connections, "max_connections");
        let max_in_flight = self.count(&r.max_in_flight, "max_in_flight");
        ServerSettings {
            tls_cert,
            tls_key,
            tls_check_every,
            header_read_timeout,
            request_timeout,
            max_connections,
            max_in_flight,
        }
    }

    fn seconds(&mut self, v: &Option<S<Seconds>>, what: &str, zero: bool) -> Option<Duration> {
        let v = v.as_ref()?;
        let x = v.get_ref().value();
        let low_ok = if zero { x >= 0.0 } else { x > 0.0 };
        if !(x.is_finite() && low_ok && x <= MAX_SECONDS) {
            let low = if zero { "at least 0" } else { "more than 0" };
            self.err(
                &v.span(),
                format!("{what} must be {low} and at most {MAX_SECONDS} seconds"),
            );
            return None;
        }
        Some(Duration::from_secs_f64(x))
    }

    fn count(&mut self, v: &Option<S<i64>>, what: &str) -> Option<usize> {
        let v = v.as_ref()?;
        match usize::try_from(*v.get_ref()) {
            Ok(n) if (1..=MAX_COUNT).contains(v.get_ref()) => Some(n),
            _ => {
                self.err(
                    &v.span(),
                    format!("{what} must be between 1 and {MAX_COUNT}"),
                );
                None
            }
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;

    const BASE: &str = r#"
[operator]
name = "Op"
headquarters = "DE"

[[region]]
id = "eu"
jurisdiction = "DE"
provider = "P"
provider_headquarters = "DE"
store = "memory://"

[[custodian]]
id = "k"
jurisdiction = "DE"
headquarters = "DE"
keyring = "memory://"

[[rule]]
name = "all"
homes = ["*"]
allow = ["*"]
custodian = "k"
"#;

    fn text(server: &str) -> String {
        format!("{BASE}\n{server}")
    }

    fn parse(server: &str) -> Result<Config, Vec<String>> {
        Config::parse("t.toml", &text(server), Path::new("/etc/dom"))
            .map_err(|e| e.diagnostics.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn a_relative_catalog_root_certificate_is_read_from_the_config_folder() {
        let with = |url: &str| {
            Config::parse(
                "t.toml",
                &format!("{BASE}\n[catalog]\nurl = \"{url}\"\n"),
                Path::new("/etc/dom"),
            )
            .unwrap()
            .catalog_url
        };
        assert_eq!(
            with("postgres://u@db/c?sslmode=verify-full&sslrootcert=tls/ca.pem"),
            "postgres://u@db/c?sslmode=verify-full&sslrootcert=/etc/dom/tls/ca.pem"
        );
        assert_eq!(
            with("postgres://u@db/c?sslrootcert=/abs/ca.pem&sslmode=verify-full"),
            "postgres://u@db/c?sslrootcert=/abs/ca.pem&sslmode=verify-full"
        );
        assert_eq!(with("postgres://u@db/c"), "postgres://u@db/c");
    }

    #[test]
    fn absent_section_says_nothing() {
        assert_eq!(parse("").unwrap().server, ServerSettings::default());
    }

    #[test]
    fn paths_resolve_against_the_config_folder_and_numbers_read_either_way() {
        let c = parse(
            "[server]\ntls_cert = \"tls/c.pem\"\ntls_key = \"/k.pem\"\ntls_check_every = 0.5\n\
             header_read_timeout = 7\nrequest_timeout = 30\nmax_connections = 64\nmax_in_flight = 8\n",
        )
        .unwrap();
        let s = c.server;
        assert_eq!(s.tls_cert, Some(PathBuf::from("/etc/dom/tls/c.pem")));
        assert_eq!(s.tls_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(s.tls_check_every, Some(Duration::from_millis(500)));
        assert_eq!(s.header_read_timeout, Some(Duration::from_secs(7)));
        assert_eq!(s.request_timeout, Some(Duration::from_secs(30)));
        assert_eq!(s.max_connections, Some(64));
        assert_eq!(s.max_in_flight, Some(8));
    }

    #[test]
    fn bad_values_are_reported_with_their_position() {
        let server = "[server]\ntls_cert = \"c.pem\"\nheader_read_timeout = 0\nmax_in_flight = -1\ntls_check_every = -2\n";
        let errs = parse(server).unwrap_err();
        let all = errs.join("\n");
        let line = text(server)
            .lines()
            .position(|l| l.starts_with("header_read_timeout"))
            .unwrap()
            + 1;
        assert!(all.contains("both tls_cert and tls_key"), "{all}");
        assert!(
            all.contains(&format!(
                "t.toml:{line}:23: header_read_timeout must be more than 0"
            )),
            "{all}"
        );
        assert!(all.contains("max_in_flight must be between 1 and"), "{all}");
        assert!(
            all.contains("tls_check_every must be at least 0 and at most"),
            "{all}"
        );
        let unknown = parse("[server]\nlisten = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(
            unknown.join("\n").contains("unknown field `listen`"),
            "{unknown:?}"
        );
    }
}
