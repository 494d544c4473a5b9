//! The document around the charts: one HTML5 page with its CSS inline,
//! a header that says what the report is of (operator, policy version and
//! digest, time), sections of figures and tables, and no reference to
//! anything outside it. A Content-Security-Policy in the page itself
//! forbids any fetch, so that even a browser that opens it online loads
//! nothing else.

use std::fmt::Write;

use crate::text::esc;

/// What the header says about a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The report's name, such as "Residency report".
    pub title: String,
    /// The operator of the deployment.
    pub operator: String,
    /// The policy version the report is made under (0: none applied yet).
    pub policy_version: i64,
    /// That policy's digest.
    pub policy_digest: String,
    /// When the report was made: UTC, RFC 3339.
    pub generated_at: String,
    /// More lines of the header, label and value (a plan's target policy).
    pub extra: Vec<(String, String)>,
}

/// Only what the page itself holds: inline styles, `data:` images.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// The style sheet of the documents, for pages that show the same charts
/// and tables (it styles `svg text` and the tables by class).
pub const CSS: &str = r#"
@page { size: A4; margin: 14mm 12mm; }
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 10.5pt/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1a1a1a; background: #fff; margin: 0 auto; max-width: 200mm; padding: 8mm;
  -webkit-print-color-adjust: exact; print-color-adjust: exact; }
h1 { font-size: 18pt; margin: 0 0 2pt; }
h2 { font-size: 13pt; margin: 16pt 0 6pt; padding-bottom: 2pt; border-bottom: 1px solid #bbb; break-after: avoid; page-break-after: avoid; }
h3 { font-size: 11pt; margin: 10pt 0 4pt; break-after: avoid; }
.operator { color: #555; margin: 0 0 6pt; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 1pt 10pt; margin: 6pt 0 10pt; font-size: 9.5pt; }
dl.meta dt { font-weight: 600; }
dl.meta dd { margin: 0; }
code { font-family: ui-monospace, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace; font-size: 8.5pt; word-break: break-all; }
figure { margin: 6pt 0 10pt; break-inside: avoid; page-break-inside: avoid; }
figure svg { display: block; width: 100%; height: auto; max-height: 240mm; }
figcaption { font-size: 9pt; color: #444; margin-top: 2pt; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 8pt; }
.pair figure { margin: 0; }
svg text { font-family: inherit; font-size: 11px; fill: #222; }
svg text.head { font-weight: 600; }
svg text.axis, svg text.small, svg .value { fill: #555; font-size: 9.5px; }
svg text.no-data { fill: #777; font-style: italic; }
svg text.on-dark { fill: #fff; }
table { border-collapse: collapse; width: 100%; font-size: 9pt; margin: 4pt 0 10pt; }
caption { text-align: left; font-weight: 600; padding-bottom: 2pt; }
th, td { border-bottom: 1px solid #ddd; padding: 2pt 5pt; text-align: left; vertical-align: top; }
th { border-bottom: 1.5px solid #888; }
.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
.count { font-size: 12pt; font-weight: 600; }
.notice { font-size: 8.5pt; color: #444; border-left: 3px solid #aaa; padding-left: 6pt; margin: 6pt 0; }
ul.grounds { font-size: 9pt; padding-left: 14pt; }
@media print { body { padding: 0; max-width: none; } }
"#;

/// A page being written.
#[derive(Debug)]
pub struct Page {
    out: String,
    in_section: bool,
}

impl Page {
    /// The page's head and header.
    pub fn new(meta: &Meta) -> Page {
        let mut out = String::with_capacity(64 * 1024);
        let title = if meta.operator.is_empty() {
            meta.title.clone()
        } else {
            format!("{}: {}", meta.title, meta.operator)
        };
        let _ = write!(
            out,
            r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="generator" content="domicile">
<title>{title}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{h1}</h1>
"#,
            csp = esc(CSP),
            title = esc(&title),
            h1 = esc(&meta.title),
        );
        if !meta.operator.is_empty() {
            let _ = writeln!(out, r#"<p class="operator">{}</p>"#, esc(&meta.operator));
        }
        let version = if meta.policy_version == 0 {
            "0 (none applied yet: the config file's policy)".to_string()
        } else {
            meta.policy_version.to_string()
        };
        let _ = write!(
            out,
            r#"<dl class="meta">
<dt>Policy version</dt><dd class="policy-version">{}</dd>
<dt>Policy digest</dt><dd><code class="policy-digest">{}</code></dd>
<dt>Report time (UTC)</dt><dd><time class="generated" datetime="{t}">{t}</time></dd>
"#,
            esc(&version),
            esc(&meta.policy_digest),
            t = esc(&meta.generated_at),
        );
        for (k, v) in &meta.extra {
            let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
        }
        out.push_str("</dl>\n</header>\n<main>\n");
        Page {
            out,
            in_section: false,
        }
    }

    /// A page with no head and no header: sections to place inside
    /// another document (the web console's pages), ended by
    /// [`Page::into_fragment`].
    pub fn fragment() -> Page {
        Page {
            out: String::with_capacity(16 * 1024),
            in_section: false,
        }
    }

    /// The sections written so far, the open one closed: a fragment's
    /// text.
    pub fn into_fragment(mut self) -> String {
        self.end_section();
        self.out
    }

    /// Opens a section headed `heading` (closing the one open).
    pub fn section(&mut self, id: &str, heading: &str) {
        self.end_section();
        let _ = writeln!(
            self.out,
            r#"<section id="{id}" aria-labelledby="{id}-h"><h2 id="{id}-h">{h}</h2>"#,
            id = esc(id),
            h = esc(heading)
        );
        self.in_section = true;
    }

    fn end_section(&mut self) {
        if self.in_section {
            self.out.push_str("</section>\n");
            self.in_section = false;
        }
    }

    /// A sub-heading.
    pub fn heading(&mut self, text: &str) {
        let _ = writeln!(self.out, "<h3>{}</h3>", esc(text));
    }

    /// A chart (SVG built by [`crate::svg`]) with its caption.
    pub fn figure(&mut self, svg: &str, caption: &str) {
        let _ = writeln!(
            self.out,
            "<figure>{svg}<figcaption>{}</figcaption></figure>",
            esc(caption)
        );
    }

    /// Charts side by side (before and after).
    pub fn pair(&mut self, figures: &[(String, String)]) {
        self.out.push_str(r#"<div class="pair">"#);
        for (svg, caption) in figures {
            self.figure(svg, caption);
        }
        self.out.push_str("</div>\n");
    }

    /// A paragraph of plain text, with a class (`notice`, `count`, or
    /// none).
    pub fn para(&mut self, class: &str, text: &str) {
        if class.is_empty() {
            let _ = writeln!(self.out, "<p>{}</p>", esc(text));
        } else {
            let _ = writeln!(self.out, r#"<p class="{}">{}</p>"#, esc(class), esc(text));
        }
    }

    /// A bulleted list of plain text.
    pub fn list(&mut self, class: &str, items: &[String]) {
        let _ = write!(self.out, r#"<ul class="{}">"#, esc(class));
        for i in items {
            let _ = write!(self.out, "<li>{}</li>", esc(i));
        }
        self.out.push_str("</ul>\n");
    }

    /// A table: numbers (cells that start with a digit, `$` or `-` and
    /// hold a digit, in every row) aligned right.
    pub fn table(&mut self, class: &str, caption: &str, headers: &[&str], rows: &[Vec<String>]) {
        let numeric: Vec<bool> = (0..headers.len())
            .map(|i| {
                !rows.is_empty()
                    && rows.iter().all(|r| {
                        r.get(i).is_some_and(|c| {
                            c.starts_with(|ch: char| ch.is_ascii_digit() || ch == '$' || ch == '-')
                                && c.contains(|ch: char| ch.is_ascii_digit())
                        })
                    })
            })
            .collect();
        let cls = |i: usize| if numeric[i] { r#" class="n""# } else { "" };
        let _ = write!(
            self.out,
            r#"<table class="{}"><caption>{}</caption><thead><tr>"#,
            esc(class),
            esc(caption)
        );
        for (i, h) in headers.iter().enumerate() {
            let _ = write!(self.out, r#"<th scope="col"{}>{}</th>"#, cls(i), esc(h));
        }
        self.out.push_str("</tr></thead><tbody>\n");
        if rows.is_empty() {
            let _ = writeln!(
                self.out,
                r#"<tr><td colspan="{}">none</td></tr>"#,
                headers.len().max(1)
            );
        }
        for r in rows {
            self.out.push_str("<tr>");
            for i in 0..headers.len() {
                let c = r.get(i).map_or("", |s| s.as_str());
                let _ = write!(self.out, "<td{}>{}</td>", cls(i), esc(c));
            }
            self.out.push_str("</tr>\n");
        }
        self.out.push_str("</tbody></table>\n");
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.end_section();
        self.out.push_str("</main>\n</body>\n</html>\n");
        self.out
    }
}
