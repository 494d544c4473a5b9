//! `--format html`: each report and `plan` as one self-contained HTML
//! document, run with the real binary on a deployment with data. The
//! documents are read back: their charts (flow diagram, heat maps, bars)
//! carry the expected labels and the same numbers as the JSON reports, the
//! header the policy digest and the time, and nothing in them refers to
//! anything outside the document.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{BIN, Deployment, V1, V2};
use serde_json::Value;

/// The demo's first policy, with an operator name that needs escaping.
const OPERATOR: &str = r#"Ex<ample> "Phones" & Co's"#;

fn deployment() -> Deployment {
    let operator = |text: &str| {
        let t = text.replace(
            r#"name = "Example Phones""#,
            &format!("name = {}", toml_string(OPERATOR)),
        );
        assert!(t.contains("Co's"), "the operator name was not replaced");
        t
    };
    let d = Deployment::new(&operator(V1));
    std::fs::write(d.path().join("v2.toml"), operator(V2)).unwrap();
    for (id, home) in [("ravi", "IN"), ("priya", "IN"), ("wang", "CN")] {
        ok(&d, &["subject", "add", id, "--home", home]);
    }
    let body = d.path().join("body");
    std::fs::write(&body, vec![7u8; 3000]).unwrap();
    let body = body.to_str().unwrap();
    for (id, key) in [
        ("ravi", "profile.json"),
        ("ravi", "payments/card.json"),
        ("priya", "profile.json"),
        ("wang", "media/photo.jpg"),
    ] {
        ok(&d, &["put", id, key, body]);
    }
    d
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn run(d: &Deployment, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .current_dir(d.path())
        .env("DOMICILE_CONFIG", d.path().join("domicile.toml"))
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_LOG")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    out
}

fn expect(d: &Deployment, code: i32, args: &[&str]) -> String {
    let out = run(d, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ok(d: &Deployment, args: &[&str]) -> String {
    expect(d, 0, args)
}

fn json(d: &Deployment, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    serde_json::from_str(&ok(d, &a)).unwrap()
}

// ---------------------------------------------------------------------------
// Reading a document back
// ---------------------------------------------------------------------------

/// Everything in `doc` that could make a browser fetch something: every
/// `src`, `href` (and the like) whose value is not a `#` fragment or a
/// `data:` URL, every `url(…)` likewise, any `@import`, `<link`, script,
/// frame or object, and any `http://` or `https://` at all.
fn external_references(doc: &str) -> Vec<String> {
    let lower = doc.to_ascii_lowercase();
    let mut bad = Vec::new();
    let local = |v: &str| v.starts_with('#') || v.starts_with("data:");
    for attr in [
        "src=",
        "href=",
        "srcset=",
        "action=",
        "formaction=",
        "poster=",
        "background=",
    ] {
        let mut at = 0;
        while let Some(i) = lower[at..].find(attr) {
            let start = at + i;
            at = start + attr.len();
            // `data-src=` and the like are not fetched.
            if lower[..start].ends_with('-') {
                continue;
            }
            let v = lower[at..].trim_start_matches(['"', '\'', ' ']);
            if !local(v) {
                bad.push(doc[start..(start + 60).min(doc.len())].to_string());
            }
        }
    }
    let mut at = 0;
    while let Some(i) = lower[at..].find("url(") {
        let start = at + i;
        at = start + 4;
        let v = lower[at..].trim_start_matches(['"', '\'', ' ']);
        if !local(v) {
            bad.push(doc[start..(start + 60).min(doc.len())].to_string());
        }
    }
    for needle in [
        "@import",
        "<link",
        "<script",
        "<iframe",
        "<object",
        "<embed",
        "@font-face",
        "http://",
        "https://",
        "<img",
        "<base",
    ] {
        if let Some(i) = lower.find(needle) {
            bad.push(doc[i..(i + 60).min(doc.len())].to_string());
        }
    }
    bad
}

/// Checks that every element of `doc` is closed in order (void elements
/// and `/>` aside) and that no text holds a raw `<` or `>`: a parse of
/// the document's structure, enough to catch a broken tag or an unescaped
/// string. Returns the names of the elements seen.
fn check_structure(doc: &str, what: &str) -> Vec<String> {
    const VOID: [&str; 6] = ["meta", "br", "hr", "img", "link", "input"];
    let mut stack: Vec<String> = Vec::new();
    let mut seen = Vec::new();
    let mut rest = doc
        .strip_prefix("<!DOCTYPE html>")
        .unwrap_or_else(|| panic!("{what}: doctype"));
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        assert!(!text.contains('>'), "{what}: raw '>' in text {text:?}");
        let close = rest[open..]
            .find('>')
            .unwrap_or_else(|| panic!("{what}: unclosed tag"))
            + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "{what}: '<' inside tag {tag:?}");
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .unwrap_or_else(|| panic!("{what}: </{name}> closes nothing"));
            assert_eq!(top, name, "{what}: </{name}> closes <{top}>");
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        assert!(!name.is_empty(), "{what}: bad tag {tag:?}");
        seen.push(name.clone());
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "style" {
            // CSS holds '>' (child selectors): skip to its end.
            let end = rest
                .find("</style>")
                .unwrap_or_else(|| panic!("{what}: style"));
            rest = &rest[end + 8..];
            continue;
        }
        stack.push(name);
    }
    assert!(!rest.contains('>'), "{what}: raw '>' after the last tag");
    assert!(stack.is_empty(), "{what}: unclosed {stack:?}");
    seen
}

/// Every `<svg …>…</svg>` of `doc` whose class contains `class`.
fn svgs<'a>(doc: &'a str, class: &str) -> Vec<&'a str> {
    doc.match_indices("<svg ")
        .map(|(i, _)| &doc[i..i + doc[i..].find("</svg>").unwrap() + 6])
        .filter(|s| {
            let tag = &s[..s.find('>').unwrap()];
            tag.contains(&format!("class=\"chart {class}"))
        })
        .collect()
}

/// The value of attribute `name` in the tag that starts `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let tag = &tag[..tag.find('>')?];
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// `(from, to) → value` of a flow diagram's bands.
fn bands(svg: &str) -> BTreeMap<(String, String), f64> {
    svg.match_indices("<path class=\"band\"")
        .map(|(i, _)| {
            let tag = &svg[i..];
            (
                (
                    attr(tag, "data-from").unwrap().to_string(),
                    attr(tag, "data-to").unwrap().to_string(),
                ),
                attr(tag, "data-value").unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// `(authority, home) → value` of a heat map's cells.
fn cells(svg: &str) -> BTreeMap<(String, String), u64> {
    svg.match_indices("<g class=\"cell\"")
        .map(|(i, _)| {
            let tag = &svg[i..];
            (
                (
                    attr(tag, "data-authority").unwrap().to_string(),
                    attr(tag, "data-home").unwrap().to_string(),
                ),
                attr(tag, "data-value").unwrap().parse().unwrap(),
            )
        })
        .collect()
}

/// The text of every `<text>` of `svg`, tags removed.
fn labels(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
            let mut s = String::new();
            let mut in_tag = false;
            for c in body.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => s.push(c),
                    _ => {}
                }
            }
            s
        })
        .collect()
}

fn has_label(svg: &str, label: &str) -> bool {
    labels(svg)
        .iter()
        .any(|l| l == label || l.starts_with(&format!("{label} ")))
}

/// What every document must be: one HTML5 page, self-contained, with the
/// policy digest and an RFC 3339 UTC time in its header, an escaped
/// operator name, and A4 print rules.
fn check_document(doc: &str, digest: &str, what: &str) {
    assert!(doc.starts_with("<!DOCTYPE html>"), "{what}: {doc:.200}");
    assert!(doc.trim_end().ends_with("</html>"), "{what}");
    assert_eq!(doc.matches("<html").count(), 1, "{what}: one document");
    let elements = check_structure(doc, what);
    for e in [
        "html", "head", "style", "body", "header", "main", "section", "svg", "table",
    ] {
        assert!(elements.iter().any(|x| x == e), "{what}: no <{e}>");
    }
    let bad = external_references(doc);
    assert!(bad.is_empty(), "{what}: external references {bad:?}");
    assert!(
        doc.contains(
            r#"<meta http-equiv="Content-Security-Policy" content="default-src &#39;none&#39;"#
        ),
        "{what}: no CSP"
    );
    assert!(doc.contains("@page { size: A4"), "{what}: no A4 page rule");
    assert!(doc.contains("break-inside: avoid"), "{what}");
    assert!(
        doc.contains(&format!(r#"<code class="policy-digest">{digest}</code>"#)),
        "{what}: digest {digest} missing"
    );
    let t = doc
        .find(r#"<time class="generated" datetime=""#)
        .unwrap_or_else(|| panic!("{what}: no time"));
    let v = attr(&doc[t..], "datetime").unwrap();
    let b = v.as_bytes();
    assert!(
        v.len() == 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z'
            && v.starts_with("20"),
        "{what}: time {v:?} is not RFC 3339 UTC"
    );
    assert!(
        doc.contains("Ex&lt;ample&gt; &quot;Phones&quot; &amp; Co&#39;s"),
        "{what}: operator not escaped"
    );
    assert!(!doc.contains(OPERATOR), "{what}: operator name raw");
    assert!(!doc.contains("NaN") && !doc.contains("=\"inf"), "{what}");
    for s in doc.match_indices("<svg ").map(|(i, _)| &doc[i..]) {
        let tag = &s[..s.find('>').unwrap()];
        assert!(
            attr(s, "viewBox").is_some(),
            "{what}: svg without viewBox: {tag}"
        );
        assert!(
            attr(s, "aria-label").is_some(),
            "{what}: svg without aria-label: {tag}"
        );
        assert!(
            s[tag.len()..].starts_with("><title>"),
            "{what}: svg without title: {tag}"
        );
        assert!(attr(s, "width").is_none(), "{what}: fixed width: {tag}");
    }
}

fn digest(d: &Deployment) -> String {
    json(d, &["policy", "show"])["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn first_section(doc: &str) -> &str {
    let i = doc.find("<section id=\"").unwrap() + 13;
    &doc[i..i + doc[i..].find('"').unwrap()]
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn each_report_is_a_self_contained_document_with_its_charts() {
    let d = deployment();
    let digest = digest(&d);
    let residency = json(&d, &["report", "residency"]);
    let exposure = json(&d, &["report", "exposure"]);
    let cost = json(&d, &["report", "cost"]);

    for kind in ["residency", "exposure", "cost", "violations"] {
        let doc = ok(&d, &["report", kind, "--format", "html"]);
        let what = format!("report {kind}");
        check_document(&doc, &digest, &what);
        assert_eq!(
            first_section(&doc),
            kind,
            "{what} leads with its own section"
        );

        // The flow diagram: homes on the left, regions on the right, bands
        // as the residency report counts them.
        let flows = svgs(&doc, "flow");
        assert_eq!(flows.len(), 2, "{what}: by subjects and by bytes");
        for home in ["IN", "CN"] {
            assert!(
                has_label(flows[0], home),
                "{what}: home {home} not labelled"
            );
        }
        assert!(
            has_label(flows[0], "cn-north (CN)"),
            "{what}: {:?}",
            labels(flows[0])
        );
        let mut want: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for r in residency["rows"].as_array().unwrap() {
            let e = want
                .entry((
                    r["home"].as_str().unwrap().to_string(),
                    format!(
                        "{} ({})",
                        r["region"].as_str().unwrap(),
                        r["jurisdiction"].as_str().unwrap()
                    ),
                ))
                .or_default();
            e.0 += r["subjects"].as_f64().unwrap();
            e.1 += r["bytes"].as_f64().unwrap();
        }
        let by_subjects: BTreeMap<_, _> = want.iter().map(|(k, v)| (k.clone(), v.0)).collect();
        let by_bytes: BTreeMap<_, _> = want.iter().map(|(k, v)| (k.clone(), v.1)).collect();
        assert_eq!(bands(flows[0]), by_subjects, "{what}: bands by subjects");
        assert_eq!(bands(flows[1]), by_bytes, "{what}: bands by bytes");
        assert_eq!(
            by_subjects[&("IN".to_string(), "cn-north (CN)".to_string())],
            3.0
        );

        // The heat maps: plaintext and ciphertext apart, each cell the
        // exposure report's number, with a legend; grounds and notices.
        let plain = svgs(&doc, "heat plaintext");
        let cipher = svgs(&doc, "heat ciphertext");
        assert_eq!((plain.len(), cipher.len()), (1, 1), "{what}: heat maps");
        for row in exposure["rows"].as_array().unwrap() {
            let key = (
                row["authority"].as_str().unwrap().to_string(),
                row["home"].as_str().unwrap().to_string(),
            );
            assert_eq!(
                cells(plain[0]).get(&key).copied(),
                row["plaintext_subjects"].as_u64(),
                "{what}: plaintext {key:?}"
            );
            assert_eq!(
                cells(cipher[0]).get(&key).copied(),
                row["ciphertext_subjects"].as_u64(),
                "{what}: ciphertext {key:?}"
            );
        }
        assert_eq!(cells(plain[0])[&("CN".into(), "IN".into())], 2);
        for authority in ["CN", "US", "IN"] {
            assert!(
                has_label(plain[0], authority),
                "{what}: authority {authority}"
            );
        }
        assert!(plain[0].contains("class=\"legend\""), "{what}: no legend");
        assert!(doc.contains("Grounds cited"), "{what}");
        assert!(
            doc.contains("National Intelligence Law"),
            "{what}: citations"
        );
        assert!(doc.contains("Not legal advice"), "{what}: legal notice");
        assert!(
            doc.contains("Assumes a custodian unwraps data keys"),
            "{what}"
        );

        // Cost: bars and a table with the cost report's total.
        let bars = svgs(&doc, "bars");
        assert_eq!(bars.len(), 1, "{what}: cost chart");
        assert!(has_label(bars[0], "cn-north (CN)"), "{what}");
        let total = cost["total_monthly_cost"].as_f64().unwrap();
        assert!(
            doc.contains(&format!("${total:.4}")),
            "{what}: total {total}"
        );

        // Violations: a count and a table.
        assert!(doc.contains("No violations"), "{what}");
        assert!(doc.contains(r#"<table class="violations">"#), "{what}");
    }
}

#[test]
fn violations_are_counted_and_listed_and_exit_3() {
    let d = deployment();
    ok(&d, &["policy", "apply", "v2.toml", "--no-migrate"]);
    let digest = digest(&d);
    let doc = expect(&d, 3, &["report", "violations", "--format", "html"]);
    check_document(&doc, &digest, "violations");
    assert_eq!(first_section(&doc), "violations");
    let v = json_code3(&d);
    let n = v["violations"].as_array().unwrap().len();
    assert_eq!(n, 3, "{v}");
    assert!(doc.contains(&format!(
        r#"<p class="count violations-count">{n} violations.</p>"#
    )));
    let table = &doc[doc.find(r#"<table class="violations">"#).unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr><td>").count(), n, "{table}");
    for id in ["ravi", "priya"] {
        assert!(table.contains(&format!("<td>{id}</td>")), "{table}");
    }
    assert!(table.contains("india-not-in-china"), "{table}");
    // The version is the applied one.
    assert!(doc.contains(r#"<dd class="policy-version">2</dd>"#));
}

fn json_code3(d: &Deployment) -> Value {
    serde_json::from_str(&expect(d, 3, &["report", "violations", "--format", "json"])).unwrap()
}

#[test]
fn a_plan_shows_flows_exposure_and_cost_before_and_after() {
    let d = deployment();
    let digest = digest(&d);
    let plan = json(&d, &["plan", "--policy", "v2.toml"]);
    let doc = ok(&d, &["plan", "--policy", "v2.toml", "--format", "html"]);
    check_document(&doc, &digest, "plan");

    // Flows before and after side by side, by subjects then bytes.
    let flows = svgs(&doc, "flow");
    assert_eq!(flows.len(), 4);
    let (before, after) = (bands(flows[0]), bands(flows[1]));
    assert!(
        before.keys().all(|(_, r)| r == "cn-north (CN)"),
        "{before:?}"
    );
    // India's payments go to Mumbai, its profiles out of China; China stays.
    assert_eq!(
        after.get(&("IN".into(), "in-mumbai (IN)".into())),
        Some(&1.0),
        "{after:?}"
    );
    assert_eq!(
        after.get(&("IN".into(), "cn-north (CN)".into())),
        None,
        "{after:?}"
    );
    assert_eq!(
        after.get(&("CN".into(), "cn-north (CN)".into())),
        Some(&1.0),
        "{after:?}"
    );
    assert_eq!(
        before.values().sum::<f64>(),
        after.values().sum::<f64>(),
        "every unit keeps one copy"
    );
    assert!(
        has_label(flows[1], "in-mumbai (IN)"),
        "{:?}",
        labels(flows[1])
    );
    assert!(doc.contains(r#"<div class="pair">"#));

    // Exposure before and after, plaintext and ciphertext.
    let plain = svgs(&doc, "heat plaintext");
    let cipher = svgs(&doc, "heat ciphertext");
    assert_eq!((plain.len(), cipher.len()), (2, 2));
    let cell = |svg: &str, a: &str, h: &str| cells(svg)[&(a.to_string(), h.to_string())];
    let json_cell = |key: &str, a: &str, h: &str| {
        plan[key]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["authority"] == a && r["home"] == h)
            .map_or(0, |r| r["plaintext_subjects"].as_u64().unwrap())
    };
    assert_eq!(
        cell(plain[0], "CN", "IN"),
        json_cell("exposure_before", "CN", "IN")
    );
    assert_eq!(
        cell(plain[1], "CN", "IN"),
        json_cell("exposure_after", "CN", "IN")
    );
    assert_eq!(cell(plain[0], "CN", "IN"), 2);
    assert_eq!(
        cell(plain[1], "CN", "IN"),
        0,
        "India's data leaves China's reach"
    );

    // Cost before and after.
    let bars = svgs(&doc, "bars");
    assert_eq!(bars.len(), 1);
    assert!(has_label(bars[0], "before") && has_label(bars[0], "after"));
    for key in ["monthly_cost_before", "monthly_cost_after"] {
        let v = plan["totals"][key].as_f64().unwrap();
        assert!(doc.contains(&format!("${v:.4}")), "{key} {v}");
    }

    // The moves, named, and the policy planned against.
    let moves = plan["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 3, "{plan}");
    let table = &doc[doc.find(r#"<table class="moves">"#).unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr><td>").count(), 3, "{table}");
    assert!(table.contains("<td>ravi</td>") && table.contains("operator-kms → in-kms"));
    let applied = json(&d, &["policy", "apply", "v2.toml", "--no-migrate"]);
    let v2_digest = applied["digest"].as_str().unwrap();
    assert_ne!(v2_digest, digest);
    assert!(
        doc.contains(&format!(
            "<dt>Planned policy digest</dt><dd>{v2_digest}</dd>"
        )),
        "the digest of the policy planned against"
    );

    // The plan of the current policy: nothing moves, after is before.
    let current = ok(&d, &["plan", "--format", "html"]);
    assert!(current.contains("Nothing to move"));
    let flows = svgs(&current, "flow");
    assert_eq!(bands(flows[0]), bands(flows[1]));

    // --limit bounds the moves listed, not the totals.
    let doc = ok(
        &d,
        &[
            "plan", "--policy", "v2.toml", "--format", "html", "--limit", "1",
        ],
    );
    assert!(doc.contains("… and 2 more moves"), "limit");
}

/// The document with its time taken out.
fn timeless(doc: &str) -> String {
    let i = doc.find(r#"datetime=""#).unwrap();
    let t = &doc[i + 10..i + 30];
    doc.replace(t, "TIME")
}

#[test]
fn dash_o_writes_the_same_document_to_a_file() {
    let d = deployment();
    for args in [
        vec!["report", "exposure"],
        vec!["report", "residency"],
        vec!["plan", "--policy", "v2.toml"],
    ] {
        let mut a = args.clone();
        a.extend(["--format", "html"]);
        let printed = ok(&d, &a);
        let file = d.path().join("out").join("report.html");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        a.extend(["-o", file.to_str().unwrap()]);
        assert_eq!(ok(&d, &a), "", "{args:?}: nothing on standard output");
        let written = std::fs::read_to_string(&file).unwrap();
        assert_eq!(timeless(&written), timeless(&printed), "{args:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "{args:?}: the report may name subjects"
            );
        }
        let mut long = args.clone();
        long.extend(["--format", "html", "--output", file.to_str().unwrap()]);
        std::fs::remove_file(&file).unwrap();
        ok(&d, &long);
        assert!(Path::new(&file).exists(), "--output");
    }
    // A folder that does not exist: a clear error, exit 2.
    let missing = d.path().join("no-such-folder").join("r.html");
    let out = run(
        &d,
        &[
            "report",
            "cost",
            "--format",
            "html",
            "-o",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write"));
}

#[test]
fn html_elsewhere_and_dash_o_without_html_exit_2() {
    let d = deployment();
    let before = ok(&d, &["report", "residency", "--format", "json"]);
    for args in [
        vec!["ls", "ravi", "--format", "html"],
        vec!["subject", "show", "ravi", "--format", "html"],
        vec!["policy", "show", "--format", "html"],
        vec!["policy", "check", "--format", "html"],
        vec!["ledger", "show", "--format", "html"],
        vec!["verify", "--format", "html"],
        vec!["reach", "explain", "--authority", "CN", "--format", "html"],
        vec!["subject", "add", "zed", "--home", "IN", "--format", "html"],
        vec!["report", "cost", "-o", "x.html"],
        vec!["report", "cost", "--format", "json", "-o", "x.html"],
        vec!["plan", "--format", "csv", "-o", "x.html"],
    ] {
        let out = run(&d, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("html"), "{args:?}: {err}");
    }
    assert!(!d.path().join("x.html").exists());
    assert_eq!(
        ok(&d, &["report", "residency", "--format", "json"]),
        before,
        "nothing changed"
    );
    let out = run(&d, &["subject", "show", "zed"]);
    assert_ne!(out.status.code(), Some(0), "zed was not added");
}
