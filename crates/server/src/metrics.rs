//! A small registry of counters, rendered in the Prometheus text format.
//!
//! Labels are operation names, region ids, status codes, S3 error codes and
//! the names of credentials and tokens from the config: never a subject, a
//! key or a secret, so `/metrics` holds no personal data and nothing that
//! opens anything.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Every metric this registry knows: (name, help). All are counters.
const FAMILIES: &[(&str, &str)] = &[
    (
        "domicile_requests_total",
        "Requests served, by API, operation and HTTP status.",
    ),
    (
        "domicile_http_responses_total",
        "HTTP responses, by API and status, including requests refused before any operation ran (bad signatures, unknown routes).",
    ),
    (
        "domicile_request_errors_total",
        "Requests refused or failed, by API, operation and error code.",
    ),
    (
        "domicile_access_denied_total",
        "Requests refused for who made them, by API and caller: S3 AccessDenied by credential name, REST 401 and 403 by token name (empty for an unsigned S3 request or a REST request without a known token).",
    ),
    (
        "domicile_bytes_received_total",
        "Object bytes written, by operation and region (each copy counts in its region).",
    ),
    (
        "domicile_bytes_sent_total",
        "Object bytes read, by operation.",
    ),
    (
        "domicile_migration_bytes_moved_total",
        "Bytes copied by migrations this server ran.",
    ),
    (
        "domicile_migration_units_finished_total",
        "Migration units this server finished.",
    ),
];

/// Counters keyed by (metric, rendered labels).
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(&'static str, String), u64>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    fn add(&self, name: &'static str, pairs: &[(&str, &str)], n: u64) {
        if let Ok(mut s) = self.series.lock() {
            *s.entry((name, labels(pairs))).or_insert(0) += n;
        }
    }

    /// One request answered with `status`.
    pub fn request(&self, api: &str, op: &str, status: u16) {
        let status = status.to_string();
        self.add(
            "domicile_requests_total",
            &[("api", api), ("op", op), ("status", &status)],
            1,
        );
    }

    /// One HTTP response of an API.
    pub fn response(&self, api: &str, status: u16) {
        let status = status.to_string();
        self.add(
            "domicile_http_responses_total",
            &[("api", api), ("status", &status)],
            1,
        );
    }

    /// One request refused or failed with `code`.
    pub fn error(&self, api: &str, op: &str, code: &str) {
        self.add(
            "domicile_request_errors_total",
            &[("api", api), ("op", op), ("code", code)],
            1,
        );
    }

    /// One request refused for its caller: on the S3 API by credential
    /// name (`credential`), on the REST API by token name (`token`). The
    /// name is a configured one or empty, never what the request sent.
    pub fn access_denied(&self, api: &str, name: &str) {
        let who = if api == "s3" { "credential" } else { "token" };
        self.add(
            "domicile_access_denied_total",
            &[("api", api), (who, name)],
            1,
        );
    }

    /// Object bytes written to one region.
    pub fn bytes_in(&self, op: &str, region: &str, n: u64) {
        self.add(
            "domicile_bytes_received_total",
            &[("op", op), ("region", region)],
            n,
        );
    }

    /// Object bytes read.
    pub fn bytes_out(&self, op: &str, n: u64) {
        self.add("domicile_bytes_sent_total", &[("op", op)], n);
    }

    /// Progress of a migration run by this server.
    pub fn migration_tick(&self, bytes: u64, units: u64) {
        self.add("domicile_migration_bytes_moved_total", &[], bytes);
        self.add("domicile_migration_units_finished_total", &[], units);
    }

    /// The value of one series, for tests.
    pub fn get(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        let key = labels(pairs);
        self.series
            .lock()
            .ok()
            .and_then(|s| {
                s.iter()
                    .find(|((n, l), _)| *n == name && *l == key)
                    .map(|(_, v)| *v)
            })
            .unwrap_or(0)
    }

    /// Every counter in the Prometheus text format.
    pub fn render(&self) -> String {
        let series = match self.series.lock() {
            Ok(s) => s.clone(),
            Err(_) => BTreeMap::new(),
        };
        let mut out = String::new();
        for (name, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((n, l), v) in &series {
                if n != name {
                    continue;
                }
                if l.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
            }
        }
        out
    }
}

/// A gauge line, for values read at scrape time (migration progress).
pub fn gauge(out: &mut String, name: &str, help: &str, rows: &[(&[(&str, &str)], f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (pairs, v) in rows {
        if pairs.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{}}} {v}", labels(pairs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.request("s3", "PutObject", 200);
        m.request("s3", "PutObject", 200);
        m.bytes_in("PutObject", "in-west", 10);
        m.error("s3", "GetObject", "NoSuchKey");
        let text = m.render();
        assert!(
            text.contains("domicile_requests_total{api=\"s3\",op=\"PutObject\",status=\"200\"} 2")
        );
        assert!(
            text.contains("domicile_bytes_received_total{op=\"PutObject\",region=\"in-west\"} 10")
        );
        assert!(text.contains("# TYPE domicile_request_errors_total counter"));
        assert_eq!(
            m.get(
                "domicile_requests_total",
                &[("api", "s3"), ("op", "PutObject"), ("status", "200")]
            ),
            2
        );
    }

    #[test]
    fn access_refusals_are_counted_by_name() {
        let m = Metrics::new();
        m.access_denied("s3", "app-eu");
        m.access_denied("s3", "app-eu");
        m.access_denied("rest", "dpo");
        let text = m.render();
        assert!(
            text.contains("domicile_access_denied_total{api=\"s3\",credential=\"app-eu\"} 2"),
            "{text}"
        );
        assert!(text.contains("domicile_access_denied_total{api=\"rest\",token=\"dpo\"} 1"));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(labels(&[("a", "x\"y")]), "a=\"x\\\"y\"");
    }
}
