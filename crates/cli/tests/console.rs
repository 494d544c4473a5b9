//! The web console at `/ui/`, end to end, on the demo's deployment served
//! by the real binary: its headers, cookie and refusals over plain HTTP
//! (and the Secure cookie over TLS), then headless Chromium driven by
//! Python selenium (console/drive.py) through what an auditor and an
//! operator do: log in, read the overview's flow diagram and the exposure
//! heat map, plan the next policy without applying it, watch the migration
//! the admin REST API starts run to done, without a pause button for the
//! auditor and with one for the operator. The browser's screenshots are
//! kept under the target folder (the test prints where).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{ADMIN, AUDITOR, BIN, Deployment, Server, V1, V2};
use domicile_test_support::tls::Ca;

const OPERATOR: &str = "operator-token-for-console-tests";

/// The demo's first policy with an operator token, and data of a dozen
/// subjects: eleven in India (their data moves under the second policy)
/// and one in China.
fn deployment() -> Deployment {
    let d = Deployment::new(&format!(
        "{V1}\n[[token]]\nname = \"ops\"\nrole = \"operator\"\n"
    ));
    std::fs::write(d.path().join("v2.toml"), V2).unwrap();
    let body = d.path().join("body");
    std::fs::write(&body, vec![7u8; 48 * 1024]).unwrap();
    let body = body.to_str().unwrap();
    let mut subjects: Vec<(String, &str)> = vec![("ravi".into(), "IN"), ("wang".into(), "CN")];
    subjects.extend((1..=10).map(|i| (format!("in-{i:02}"), "IN")));
    for (id, home) in &subjects {
        cli(&d, &["subject", "add", id, "--home", home]);
        cli(&d, &["put", id, "profile.json", body]);
    }
    cli(&d, &["put", "ravi", "payments/card.json", body]);
    d
}

fn cli(d: &Deployment, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .current_dir(d.path())
        .env("DOMICILE_CONFIG", d.path().join("domicile.toml"))
        .env("DOMICILE_REST_TOKEN_OPS", OPERATOR)
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_LOG")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn serve(d: &Deployment) -> Server {
    Server::start_with(d, None, &[("DOMICILE_REST_TOKEN_OPS", OPERATOR)])
}

/// One HTTP/1.1 exchange: (status, head, body). `headers` are extra
/// request header lines.
fn exchange(
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<&str>,
) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A body the server refuses unread (too large) may meet a closed
    // socket: the answer is read all the same.
    let _ = s.write_all(body.unwrap_or("").as_bytes());
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => {
                eprintln!("reading the answer ended with {e}");
                break;
            }
            Err(e) => panic!("{method} {path}: no answer: {e}"),
        }
    }
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = common::dechunk(&body);
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// A header's value in a response head (the first, by name).
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Logs in with `token`: the cookie header to send, and the session's
/// CSRF token (read from the logout form of the page it lands on).
fn login(srv: &Server, token: &str) -> (String, String) {
    let (status, head, _) = exchange(
        "POST",
        &format!("{}/ui/login", srv.rest),
        &[],
        Some(&form(&[("token", token)])),
    );
    assert_eq!(status, 303, "{head}");
    let set = header(&head, "set-cookie").unwrap();
    let pair = set.split(';').next().unwrap().to_string();
    let (_, _, page) = exchange(
        "GET",
        &format!("{}/ui/overview", srv.rest),
        &[format!("Cookie: {pair}")],
        None,
    );
    let at = page.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    let csrf = page[at..at + 64].to_string();
    (format!("Cookie: {pair}"), csrf)
}

/// Every `src` and `href` of a page points into the console, and no
/// absolute URL appears anywhere in it.
fn assert_self_contained(what: &str, page: &str) {
    for attr in ["src=\"", "href=\""] {
        for (i, _) in page.match_indices(attr) {
            let v = &page[i + attr.len()..];
            let v = &v[..v.find('"').unwrap()];
            assert!(
                v.starts_with("/ui/") || v.starts_with('#'),
                "{what} refers to {v:?}"
            );
        }
    }
    for bad in ["http://", "https://", "//cdn", "url("] {
        assert!(!page.contains(bad), "{what} holds {bad:?}");
    }
}

#[test]
fn headers_cookie_and_refusals() {
    let d = deployment();
    let srv = serve(&d);
    let url = |p: &str| format!("{}{p}", srv.rest);

    // The login page: the form, the security headers.
    let (status, head, page) = exchange("GET", &url("/ui/login"), &[], None);
    assert_eq!(status, 200, "{head}");
    assert!(page.contains(r#"name="token""#), "{page}");
    let csp = header(&head, "content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&head, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        header(&head, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(
        !page.contains("<script>") && !page.contains("<style"),
        "{page}"
    );

    // Without a session, pages send to the login; the JSON says 401.
    let (status, head, _) = exchange("GET", &url("/ui/overview"), &[], None);
    assert_eq!(status, 303);
    assert_eq!(header(&head, "location").as_deref(), Some("/ui/login"));
    assert_eq!(
        exchange("GET", &url("/ui/migration.json"), &[], None).0,
        401
    );

    // A wrong token is refused, with no cookie.
    for bad in ["not-a-token", "", &format!("{AUDITOR}x")] {
        let (status, head, page) = exchange(
            "POST",
            &url("/ui/login"),
            &[],
            Some(&form(&[("token", bad)])),
        );
        assert_eq!(status, 401, "{bad:?}: {head}");
        assert!(header(&head, "set-cookie").is_none(), "{head}");
        assert!(page.contains("not valid"), "{page}");
    }

    // The auditor's cookie: HttpOnly, SameSite=Strict, not Secure over
    // plain HTTP, a random id rather than the token.
    let (status, head, _) = exchange(
        "POST",
        &url("/ui/login"),
        &[],
        Some(&form(&[("token", AUDITOR)])),
    );
    assert_eq!(status, 303);
    let set = header(&head, "set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "{set}");
    assert!(!set.contains(AUDITOR), "{set}");
    let (auditor, csrf) = login(&srv, AUDITOR);
    assert_ne!(
        auditor,
        format!("Cookie: {}", set.split(';').next().unwrap())
    );

    // Every page the auditor sees, and the assets, are self-contained.
    for p in [
        "/ui/overview",
        "/ui/exposure",
        "/ui/plan",
        "/ui/migration",
        "/ui/ledger",
    ] {
        let (status, head, page) = exchange("GET", &url(p), std::slice::from_ref(&auditor), None);
        assert_eq!(status, 200, "{p}: {head}\n{page}");
        assert!(header(&head, "content-security-policy").is_some(), "{p}");
        assert_self_contained(p, &page);
        assert!(
            !page.contains("ravi") && !page.contains("in-01"),
            "{p} names a subject"
        );
    }
    for p in ["/ui/app.js", "/ui/console.css"] {
        let (status, _, text) = exchange("GET", &url(p), &[], None);
        assert_eq!(status, 200, "{p}");
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{p}"
        );
    }
    let (_, _, page) = exchange(
        "GET",
        &url("/ui/overview"),
        std::slice::from_ref(&auditor),
        None,
    );
    assert!(page.contains(r#"<svg class="chart flow""#), "{page}");

    // What the auditor may not see or do.
    let (_, _, page) = exchange(
        "GET",
        &url("/ui/migration"),
        std::slice::from_ref(&auditor),
        None,
    );
    assert!(!page.contains("pause-button"), "{page}");
    assert!(!page.contains(r#"href="/ui/subject""#), "{page}");
    let (status, _, _) = exchange(
        "GET",
        &url("/ui/subject"),
        std::slice::from_ref(&auditor),
        None,
    );
    assert_eq!(status, 403);
    let (status, _, page) = exchange(
        "POST",
        &url("/ui/migration/pause"),
        std::slice::from_ref(&auditor),
        Some(&form(&[("csrf", &csrf)])),
    );
    assert_eq!(status, 403, "{page}");

    // The operator sees the controls and may look a subject up.
    let (operator, ops_csrf) = login(&srv, OPERATOR);
    let (_, _, page) = exchange(
        "GET",
        &url("/ui/migration"),
        std::slice::from_ref(&operator),
        None,
    );
    assert!(page.contains(r#"id="pause-button""#), "{page}");
    let (status, _, page) = exchange(
        "POST",
        &url("/ui/subject"),
        std::slice::from_ref(&operator),
        Some(&form(&[("csrf", &ops_csrf), ("id", "ravi")])),
    );
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("operator-kms") && page.contains("cn-north"),
        "{page}"
    );
    assert_self_contained("subject", &page);

    // A POST without the session's CSRF token, or from another origin,
    // changes nothing.
    let (status, _, _) = exchange(
        "POST",
        &url("/ui/subject"),
        std::slice::from_ref(&operator),
        Some(&form(&[("csrf", &csrf), ("id", "ravi")])),
    );
    assert_eq!(status, 403, "another session's CSRF token");
    let (status, _, _) = exchange(
        "POST",
        &url("/ui/logout"),
        &[operator.clone(), "Origin: http://evil.example".into()],
        Some(&form(&[("csrf", &ops_csrf)])),
    );
    assert_eq!(status, 403);
    let (status, _, _) = exchange(
        "GET",
        &url("/ui/overview"),
        std::slice::from_ref(&operator),
        None,
    );
    assert_eq!(status, 200, "a refused logout ended the session");

    // A what-if plan applies nothing.
    let version =
        || common::http("GET", &url("/v1/policy"), Some(ADMIN), None).json()["version"].clone();
    let before = version();
    let v2 = std::fs::read_to_string(d.path().join("v2.toml")).unwrap();
    let (status, _, page) = exchange(
        "POST",
        &url("/ui/plan"),
        std::slice::from_ref(&auditor),
        // As a browser posts a text area: lines ended by CR LF.
        Some(&form(&[
            ("csrf", &csrf),
            ("policy", &v2.replace('\n', "\r\n")),
        ])),
    );
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"id="what-if""#) && page.contains("in-kms"),
        "{page}"
    );
    assert!(!page.contains('\u{fffd}'), "the policy echoed with its CRs");
    assert!(
        page.contains("# domicile demo, policy v2: India&#39;s rules.\n"),
        "{page}"
    );
    // A change for every other home names a few and counts the rest.
    assert!(page.contains(" more ("), "{page}");
    assert!(!page.contains("ravi"), "the auditor's plan names a subject");
    assert_eq!(version(), before, "the plan applied its policy");
    let (status, _, page) = exchange(
        "POST",
        &url("/ui/plan"),
        std::slice::from_ref(&auditor),
        Some(&form(&[("csrf", &csrf), ("policy", "[[rule]\nname = ")])),
    );
    assert_eq!(status, 400);
    assert!(page.contains(r#"class="error""#), "{page}");

    // Bad input gets a clear refusal, never a panic (the server's log is
    // checked for one when it stops).
    let (status, _, _) = exchange("POST", &url("/ui/login"), &[], Some("token=%ZZ%%&&=="));
    assert_eq!(status, 401);
    for (id, why) in [
        ("", "empty"),
        ("a/../b\u{0}", "character"),
        (&"x".repeat(5000)[..], "long"),
    ] {
        let (status, _, page) = exchange(
            "POST",
            &url("/ui/subject"),
            std::slice::from_ref(&operator),
            Some(&form(&[("csrf", &ops_csrf), ("id", id)])),
        );
        assert_eq!(status, 400, "{why}: {page}");
        assert!(page.contains(r#"class="error""#), "{why}: {page}");
    }
    let (status, _, page) = exchange(
        "POST",
        &url("/ui/subject"),
        std::slice::from_ref(&operator),
        Some(&form(&[("csrf", &ops_csrf), ("id", "nobody-here")])),
    );
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("not registered"), "{page}");
    let huge = form(&[("csrf", &csrf), ("policy", &"#".repeat(2 << 20))]);
    let (status, _, _) = exchange(
        "POST",
        &url("/ui/plan"),
        std::slice::from_ref(&auditor),
        Some(&huge),
    );
    assert_eq!(status, 413);
    let (status, _, _) = exchange(
        "POST",
        &url("/ui/migration/explode"),
        std::slice::from_ref(&operator),
        Some(&form(&[("csrf", &ops_csrf)])),
    );
    assert_eq!(status, 404);
    let (status, _, page) = exchange(
        "POST",
        &url("/ui/migration/pause"),
        std::slice::from_ref(&operator),
        Some(&form(&[("csrf", &ops_csrf)])),
    );
    assert!(
        status == 404 || status == 409,
        "pause with no migration: {status} {page}"
    );
    assert!(page.contains(r#"class="error""#), "{page}");
    assert_eq!(version(), before, "bad input changed the policy");

    // The operator pauses, resumes and cancels a running migration from
    // the console; the ledger names the console's session as the actor.
    let r = common::http_raw(
        "POST",
        &url("/v1/policy?migrate=false"),
        Some(ADMIN),
        Some(("text/plain", &v2)),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = common::http(
        "POST",
        &url("/v1/migrations"),
        Some(ADMIN),
        Some(&serde_json::json!({"rate": 16384, "workers": 1, "batch": 1})),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job = || common::http("GET", &url("/v1/migrations/current"), Some(ADMIN), None).json();
    let state = || job()["state"].as_str().unwrap().to_string();
    // Planned first: a pause while the job is still being planned is not
    // what this shows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while state() != "running" {
        assert!(std::time::Instant::now() < deadline, "{}", job());
        std::thread::sleep(Duration::from_millis(50));
    }
    for (action, after) in [
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "cancelled"),
    ] {
        let (status, head, page) = exchange(
            "POST",
            &url(&format!("/ui/migration/{action}")),
            std::slice::from_ref(&operator),
            Some(&form(&[("csrf", &ops_csrf)])),
        );
        assert_eq!(status, 303, "{action}: {head}\n{page}");
        assert_eq!(
            header(&head, "location").unwrap(),
            format!("/ui/migration?done={action}")
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while state() != after {
            assert!(
                std::time::Instant::now() < deadline,
                "{action}: {}",
                state()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if action == "pause" {
            // The worker finishes the unit in hand, then its run ends; a
            // resume before that end is not taken (the REST API's
            // resume starts a run only when none is going).
            while job()["in_flight"] != 0 {
                assert!(std::time::Instant::now() < deadline, "{}", job());
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let (_, _, page) = exchange(
        "GET",
        &url("/ui/migration?done=cancel"),
        std::slice::from_ref(&operator),
        None,
    );
    assert!(page.contains("Asked to cancel the migration."), "{page}");
    let bundle = common::http("GET", &url("/v1/evidence"), Some(ADMIN), None);
    assert!(
        bundle.body.contains("console:ops"),
        "no ledger entry by console:ops"
    );

    // Logout ends the session on the server.
    let (status, head, _) = exchange(
        "POST",
        &url("/ui/logout"),
        std::slice::from_ref(&operator),
        Some(&form(&[("csrf", &ops_csrf)])),
    );
    assert_eq!(status, 303, "{head}");
    assert!(header(&head, "set-cookie").unwrap().contains("Max-Age=0"));
    let (status, _, _) = exchange(
        "GET",
        &url("/ui/overview"),
        std::slice::from_ref(&operator),
        None,
    );
    assert_eq!(status, 303, "the session outlived its logout");
    let log = srv.stop();
    assert!(
        !log.contains(OPERATOR) && !log.contains(AUDITOR),
        "a token in the log"
    );
}

#[test]
fn the_cookie_is_secure_over_tls() {
    let ca = Ca::new("domicile console test CA");
    let d = Deployment::new(&format!(
        "{V1}\n[server]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n"
    ));
    let pem = ca.server(&["localhost", "127.0.0.1"]);
    std::fs::create_dir_all(d.path().join("tls")).unwrap();
    std::fs::write(d.path().join("tls/key.pem"), &pem.key).unwrap();
    std::fs::write(d.path().join("tls/cert.pem"), &pem.cert).unwrap();
    let ca_file = d.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let srv = Server::start(&d, None);
    assert!(srv.rest.starts_with("https://"), "{}", srv.rest);
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "60", "--cacert"])
        .arg(&ca_file)
        .args(["--data-urlencode", &format!("token={AUDITOR}")])
        .arg(format!("{}/ui/login", srv.rest))
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("curl must be installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 303"), "{text}");
    let set = header(&text, "set-cookie").unwrap();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
}

/// Where the screenshots go: under the target folder, kept after the run.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Chromium, its driver and Python selenium: (chromium, chromedriver), or
/// `None` when the browser itself is not installed (scripts/test.sh
/// installs it, and the test then fails). A missing selenium is installed
/// with pip.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {n}")])
                .output()
                .ok()?;
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
        })
    };
    let chromium = find(&["chromium", "chromium-browser"])?;
    let driver = find(&["chromedriver"])?;
    let has_selenium = || {
        Command::new("python3")
            .args(["-c", "import selenium"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_selenium() {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "selenium"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && has_selenium(),
            "python3 -m pip install selenium failed"
        );
    }
    Some((chromium, driver))
}

#[test]
fn an_auditor_and_an_operator_use_the_console_in_chromium() {
    let Some((chromium, driver)) = browser_tools() else {
        panic!(
            "chromium or chromedriver is not installed: scripts/test.sh installs them \
             (apt-get install chromium chromium-driver)"
        );
    };
    let d = deployment();
    let srv = serve(&d);
    let shots = screenshots();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/drive.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("BASE", &srv.rest)
        .env("AUDITOR", AUDITOR)
        .env("OPERATOR", OPERATOR)
        .env("ADMIN", ADMIN)
        .env("POLICY", d.path().join("v2.toml"))
        .env("SHOTS", &shots)
        // About 600 KiB move: a few seconds at this rate.
        .env("RATE", "150000")
        .env("CHROMIUM", &chromium)
        .env("CHROMEDRIVER", &driver)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("console screenshots: {}", shots.display());
    if !out.status.success() {
        let log = srv.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "the browser run failed:\n{stdout}\n{stderr}\nthe server log's end:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    for step in [
        "ok wrong token refused",
        "ok overview",
        "ok exposure",
        "ok plan",
        "ok migration",
        "ok ledger",
        "ok subject refused to the auditor",
        "ok logout",
        "ok operator",
    ] {
        assert!(stdout.contains(step), "{step} missing:\n{stdout}");
    }
    for name in [
        "02-overview-auditor",
        "03-exposure",
        "04-plan",
        "06-migration-done",
        "08-migration-operator",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 10_000,
            "{name}.png"
        );
    }
    // The migration the console watched did run to its end.
    let r = common::http(
        "GET",
        &format!("{}/v1/migrations/current", srv.rest),
        Some(ADMIN),
        None,
    );
    assert_eq!(r.json()["state"], "done", "{}", r.body);
    eprintln!("{stdout}");
}
