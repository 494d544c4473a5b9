//! The page around every view: the head (the embedded style sheet and
//! script, nothing else), the bar with the pages the role may see, who is
//! logged in and the logout form; and small builders of tables and lists.
//! Every string from data or input goes through [`esc`] (the reports'
//! one); fragments from `domicile-report-html` are escaped there.

use std::fmt::Write;

pub(crate) use domicile_report_html::text::esc;

use super::View;
use super::session::Session;

/// The style sheet: the reports' (their charts and tables look the same
/// here) and the console's own.
pub(crate) fn style_sheet() -> String {
    format!(
        "{}\n{}",
        domicile_report_html::page::CSS,
        include_str!("assets/console.css")
    )
}

/// The console's one script.
pub(crate) const SCRIPT: &str = include_str!("assets/app.js");

/// A whole page: `body` (already escaped HTML) under the bar. `session` is
/// `None` on the login page.
pub(crate) fn page(
    title: &str,
    session: Option<&Session>,
    active: Option<View>,
    body: &str,
) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{} · domicile</title>
<link rel="stylesheet" href="/ui/console.css">
<script src="/ui/app.js" defer></script>
</head>
<body class="console">
<header class="bar"><a class="brand" href="/ui/">domicile</a>"#,
        esc(title)
    );
    if let Some(s) = session {
        out.push_str(r#"<nav aria-label="pages">"#);
        for v in View::ALL.iter().filter(|v| v.open_to(s.role)) {
            let current = if Some(*v) == active {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(
                out,
                r#"<a href="{}"{current}>{}</a>"#,
                v.path(),
                esc(v.name())
            );
        }
        let _ = write!(
            out,
            r#"</nav><span class="who">{} <span class="role">({})</span></span>{}"#,
            esc(&s.name),
            esc(s.role.as_str()),
            form_open("/ui/logout", s, "logout")
        );
        out.push_str(r#"<button type="submit">Log out</button></form>"#);
    }
    let _ = write!(
        out,
        "</header>\n<main>\n<h1>{}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    );
    out
}

/// The opening of a POST form of this session, with its CSRF token.
pub(crate) fn form_open(action: &str, s: &Session, class: &str) -> String {
    format!(
        r#"<form method="post" action="{}" class="{}"><input type="hidden" name="csrf" value="{}">"#,
        esc(action),
        esc(class),
        esc(&s.csrf)
    )
}

/// A paragraph that says something went wrong.
pub(crate) fn error(message: &str) -> String {
    format!(r#"<p class="error" role="alert">{}</p>"#, esc(message))
}

/// A paragraph of plain text, with a class.
pub(crate) fn para(class: &str, text: &str) -> String {
    format!(r#"<p class="{}">{}</p>"#, esc(class), esc(text))
}

/// A table of plain text cells.
pub(crate) fn table(class: &str, caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        r#"<table class="{}"><caption>{}</caption><thead><tr>"#,
        esc(class),
        esc(caption)
    );
    for h in headers {
        let _ = write!(out, r#"<th scope="col">{}</th>"#, esc(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    if rows.is_empty() {
        let _ = writeln!(
            out,
            r#"<tr><td colspan="{}">none</td></tr>"#,
            headers.len().max(1)
        );
    }
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    out
}

/// A list of labels and values, each with an id-able class.
pub(crate) fn pairs(class: &str, items: &[(String, String)]) -> String {
    let mut out = format!(r#"<dl class="meta {}">"#, esc(class));
    for (k, v) in items {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    out.push_str("</dl>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_pages_escape_their_text() {
        let t = table(
            "x",
            "<c>",
            &["a&b"],
            &[vec![r#"<script>alert("x")</script>"#.into()]],
        );
        assert!(!t.contains("<script"), "{t}");
        assert!(t.contains("&lt;script&gt;alert(&quot;x&quot;)"), "{t}");
        assert!(t.contains("<th scope=\"col\">a&amp;b</th>"), "{t}");
        let p = page("<t>", None, None, "<p>ok</p>");
        assert!(p.contains("<title>&lt;t&gt; · domicile</title>"), "{p}");
        assert!(p.contains("<p>ok</p>"));
        // Only the console's own style sheet and script.
        assert!(!p.contains("<style") && !p.contains("<script>"), "{p}");
        assert!(!p.contains("http"), "{p}");
    }
}
