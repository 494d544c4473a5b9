//! Report output: aligned tables for people, JSON and CSV for programs,
//! and HTML documents (`report …` and `plan` only) written to standard
//! output or a file.

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
    /// One self-contained HTML document with charts: `report …` and
    /// `plan` only.
    Html,
}

/// A table of strings with headers.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Aligned text: numbers to the right, text to the left.
    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let numeric: Vec<bool> = (0..n)
            .map(|i| {
                !self.rows.is_empty()
                    && self.rows.iter().all(|r| {
                        r.get(i).is_some_and(|c| {
                            c.chars()
                                .next()
                                .is_some_and(|ch| ch.is_ascii_digit() || ch == '$' || ch == '-')
                                && c.chars().any(|ch| ch.is_ascii_digit())
                        })
                    })
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for i in 0..n {
                let c = cells.get(i).map(|s| s.as_str()).unwrap_or("");
                let pad = widths[i].saturating_sub(c.chars().count());
                if i > 0 {
                    s.push_str("  ");
                }
                if numeric[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < n {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            s.trim_end().to_string()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        out.push_str(&line(
            &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        ));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    pub fn csv(&self) -> anyhow::Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.headers)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        Ok(String::from_utf8(w.into_inner()?)?)
    }
}

/// Prints a report in the chosen format: `json` is the value as given,
/// `table` and `csv` come from the table.
pub fn emit<T: Serialize>(format: Format, json: &T, table: &Table) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, json)?;
            writeln!(out)?;
        }
        Format::Csv => write!(out, "{}", table.csv()?)?,
        Format::Table => write!(out, "{}", table.render())?,
        Format::Html => return Err(html_unsupported().into()),
    }
    Ok(())
}

/// The refusal of `--format html` by a command that has no HTML report.
pub fn html_unsupported() -> crate::BadInput {
    crate::BadInput(
        "--format html is for `report residency|exposure|cost|violations` and `plan` only".into(),
    )
}

/// Writes a finished document to `path` (replacing it whole, or not at
/// all), or to standard output.
pub fn write_document(path: Option<&std::path::Path>, doc: &str) -> anyhow::Result<()> {
    let Some(path) = path else {
        let mut out = std::io::stdout().lock();
        out.write_all(doc.as_bytes())?;
        out.flush()?;
        return Ok(());
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let cannot = |e: &dyn std::fmt::Display| {
        crate::BadInput(format!("cannot write {}: {e}", path.display()))
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| cannot(&e))?;
    tmp.write_all(doc.as_bytes()).map_err(|e| cannot(&e))?;
    tmp.as_file().sync_all().map_err(|e| cannot(&e))?;
    tmp.persist(path).map_err(|e| cannot(&e.error))?;
    Ok(())
}

/// Bytes and money print as the HTML reports print them.
pub use domicile_report_html::text::{bytes, money};

/// A timestamp in milliseconds as RFC 3339 (seconds).
pub fn time(ms: i64) -> String {
    domicile_report_html::text::rfc3339(ms)
}
