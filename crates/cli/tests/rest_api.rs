//! The full REST API over real HTTP against `domicile serve`, on an
//! embedded (SQLite) and a PostgreSQL catalog: subjects listed page by
//! page and filtered, imported from CSV (all or nothing), re-homed, with
//! their ledger history; a what-if plan of a posted policy that applies
//! nothing; policy explain and diff; demands filed and read back; a
//! migration followed as server-sent events to its end; verify as a
//! background job; and every route of the OpenAPI document served.
//!
//! PostgreSQL is `DOMICILE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`), a role that may create databases.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use domicile_test_support::pg::Database;
use serde_json::{Value, json};

const SQLITE_URL: &str = "url = \"sqlite://data/catalog.db\"";

fn get(srv: &Server, path: &str) -> Reply {
    http("GET", &format!("{}{path}", srv.rest), Some(ADMIN), None)
}

fn post_text(srv: &Server, path: &str, content_type: &str, text: &str) -> Reply {
    http_raw(
        "POST",
        &format!("{}{path}", srv.rest),
        Some(ADMIN),
        Some((content_type, text)),
    )
}

fn ok(r: Reply) -> Value {
    assert!((200..300).contains(&r.status), "{}: {}", r.status, r.body);
    r.json()
}

fn bad_request(r: &Reply, needle: &str) {
    assert_eq!(r.status, 400, "{}", r.body);
    let e = r.json();
    assert_eq!(e["error"]["code"], "bad_request", "{}", r.body);
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} does not say {needle:?}");
}

/// Every subject the listing gives, page by page with `query`, and how
/// many pages it took; fails on a repeat.
fn list_all(srv: &Server, query: &str, limit: u32) -> (BTreeMap<String, String>, usize) {
    let mut seen = BTreeMap::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/subjects?limit={limit}{query}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let page = ok(get(srv, &path));
        pages += 1;
        let subjects = page["subjects"].as_array().unwrap();
        assert!(subjects.len() <= limit as usize, "{page}");
        for s in subjects {
            let id = s["subject"].as_str().unwrap().to_string();
            let home = s["home"].as_str().unwrap().to_string();
            assert!(seen.insert(id.clone(), home).is_none(), "{id} listed twice");
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return (seen, pages),
        }
        assert!(pages < 1000, "the listing does not end");
    }
}

/// The events of a server-sent event stream: (event, data).
fn events(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut event = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim());
            }
        }
        if !data.is_empty() {
            out.push((event, serde_json::from_str(&data).unwrap()));
        }
    }
    out
}

fn put(srv: &Server, d: &Deployment, key: &str, size: usize) {
    std::fs::write(d.path().join("body"), bytes(7, size)).unwrap();
    aws_ok(
        srv,
        d.path(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            key,
            "--body",
            d.path().join("body").to_str().unwrap(),
        ],
    );
}

fn full_api(pg: Option<&Database>) {
    let config = |text: &str| match pg {
        Some(db) => text.replace(SQLITE_URL, &format!("url = \"{}\"", db.url)),
        None => text.to_string(),
    };
    let d = Deployment::new(&config(V1));
    let srv = Server::start(&d, None);

    // Import: 23 subjects, a header and a repeated row.
    let mut csv = String::from("subject,home\n");
    let mut expected = BTreeMap::new();
    for i in 0..23 {
        let (id, home) = (format!("zq-imp-{i:02}"), ["IN", "CN", "SG"][i % 3]);
        csv.push_str(&format!("{id},{home}\n"));
        expected.insert(id, home.to_string());
    }
    csv.push_str("zq-imp-00,IN\n");
    let r = ok(post_text(&srv, "/v1/subjects/import", "text/csv", &csv));
    assert_eq!(
        (r["rows"].as_u64(), r["added"].as_u64()),
        (Some(23), Some(23)),
        "{r}"
    );
    let again = ok(post_text(&srv, "/v1/subjects/import", "text/csv", &csv));
    assert_eq!(again["added"], 0, "{again}");

    // A bad row anywhere: 400 naming its line, and nothing registered.
    let ledger_len = |srv: &Server| {
        ok(get(srv, "/v1/ledger/verify"))["entries"]
            .as_u64()
            .unwrap()
    };
    let before = ledger_len(&srv);
    for (bad, says) in [
        ("zq-new-1,IN\nzq-new-2,ZZ\n", "request body:2: "),
        ("zq-new-1,IN\nzq-new-2,IN,extra\n", "expected 2 columns"),
        ("zq-new-1,IN\nbad id,IN\n", "request body:2: "),
        (
            "zq-new-1,IN\nzq-new-1,CN\n",
            "repeats the subject of line 1",
        ),
    ] {
        bad_request(
            &post_text(&srv, "/v1/subjects/import", "text/csv", bad),
            says,
        );
    }
    assert_eq!(
        get(&srv, "/v1/subjects/zq-new-1").status,
        404,
        "a bad import registered a row"
    );
    assert_eq!(ledger_len(&srv), before, "a bad import was ledgered");

    // Paging: every subject exactly once, whatever the page size.
    for limit in [1, 4, 23, 1000] {
        let (all, pages) = list_all(&srv, "", limit);
        assert_eq!(all, expected, "limit {limit}");
        assert!(
            pages >= 23_usize.div_ceil(limit as usize),
            "limit {limit}: {pages} pages"
        );
    }
    let (india, _) = list_all(&srv, "&home=IN", 3);
    let want: BTreeMap<String, String> = expected
        .iter()
        .filter(|(_, h)| *h == "IN")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(india, want);
    // Bad listings: 400, with why.
    bad_request(&get(&srv, "/v1/subjects?after=not-a-cursor!"), "cursor");
    bad_request(&get(&srv, "/v1/subjects?home=ZZ"), "ZZ");
    bad_request(&get(&srv, "/v1/subjects?region=nowhere"), "nowhere");
    bad_request(&get(&srv, "/v1/subjects?limit=0"), "limit");
    bad_request(&get(&srv, "/v1/subjects?limit=5000"), "limit");

    // Data for two subjects: the region filter finds them (v1 keeps
    // everything in China).
    put(&srv, &d, "users/zq-imp-00/profile.json", 3000);
    put(&srv, &d, "users/zq-imp-01/payments/card.json", 500);
    let (in_china, _) = list_all(&srv, "&region=cn-north", 1);
    assert_eq!(
        in_china.keys().collect::<Vec<_>>(),
        ["zq-imp-00", "zq-imp-01"]
    );
    let (none, _) = list_all(&srv, "&region=in-mumbai", 10);
    assert!(none.is_empty(), "{none:?}");
    let (cn_in_china, _) = list_all(&srv, "&region=cn-north&home=CN", 10);
    assert_eq!(cn_in_china.keys().collect::<Vec<_>>(), ["zq-imp-01"]);

    // Residency and exposure of a subject.
    let show = ok(get(&srv, "/v1/subjects/zq-imp-00"));
    assert_eq!(
        show["categories"][0]["regions"],
        json!(["cn-north"]),
        "{show}"
    );
    assert!(
        show["exposure"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["authority"] == "CN" && e["level"] == "plaintext")
    );

    // Rehome: a bad home changes nothing; then the listing follows.
    let rehome = |id: &str, home: &str| {
        http(
            "POST",
            &format!("{}/v1/subjects/{id}/rehome", srv.rest),
            Some(ADMIN),
            Some(&json!({ "home": home })),
        )
    };
    bad_request(&rehome("zq-imp-03", "ZZ"), "ZZ");
    assert_eq!(rehome("zq-nobody", "SG").status, 404);
    let moved = ok(rehome("zq-imp-03", "SG"));
    assert_eq!(
        (moved["from"].as_str(), moved["to"].as_str()),
        (Some("IN"), Some("SG"))
    );
    let (sg, _) = list_all(&srv, "&home=SG", 2);
    assert!(sg.contains_key("zq-imp-03") && !india_after(&srv).contains_key("zq-imp-03"));

    // A subject's ledger history.
    let history = ok(get(&srv, "/v1/subjects/zq-imp-03/ledger"));
    let kinds: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["subject", "rehome"], "{history}");
    assert_eq!(history["entries"][1]["body"]["to"], "SG");
    assert_eq!(get(&srv, "/v1/subjects/zq-nobody/ledger").status, 404);

    // What if: v2's policy would move the Indian subject's data out of
    // China; nothing is applied or recorded.
    let before = ledger_len(&srv);
    let now = ok(get(&srv, "/v1/plan"));
    assert_eq!(now["totals"]["units"], 0, "{now}");
    let v2 = config(V2);
    let what_if = ok(post_text(&srv, "/v1/plan", "text/plain", &v2));
    let moves = what_if["moves"].as_array().unwrap();
    assert!(
        moves.iter().any(|m| m["subject"] == "zq-imp-00"),
        "{what_if}"
    );
    assert!(
        moves.iter().all(|m| m["from"] == json!(["cn-north"])),
        "{what_if}"
    );
    assert!(
        what_if["totals"]["bytes"].as_u64().unwrap() >= 3000,
        "{what_if}"
    );
    for field in [
        "exposure_before",
        "exposure_after",
        "cost_before",
        "cost_after",
        "grounds",
    ] {
        assert!(what_if[field].is_array(), "{field}: {what_if}");
    }
    assert_ne!(what_if["exposure_before"], what_if["exposure_after"]);
    // The engine's whole plan summary is served, fields this API does not
    // name included.
    assert!(what_if["subjects_seen"].as_u64().unwrap() >= 2, "{what_if}");
    assert!(
        what_if["totals"]["units"].as_u64().unwrap() >= 1,
        "{what_if}"
    );
    bad_request(
        &post_text(&srv, "/v1/plan", "text/plain", "[[rule]\nname ="),
        "request body",
    );
    assert_eq!(ok(get(&srv, "/v1/policy"))["version"], 1);
    assert_eq!(ok(get(&srv, "/v1/plan"))["totals"]["units"], 0);
    assert_eq!(ledger_len(&srv), before, "a what-if was ledgered");

    // Policy: explain, diff against the active one, check.
    let explain = ok(get(&srv, "/v1/policy/explain?home=IN&category=profile"));
    assert_eq!(explain["allowed"], json!(["cn-north"]), "{explain}");
    assert_eq!(
        explain["rules"],
        json!(["everything-in-china"]),
        "{explain}"
    );
    bad_request(&get(&srv, "/v1/policy/explain?home=IN&category=Bad!"), "");
    let diff = ok(post_text(&srv, "/v1/policy/diff", "text/plain", &v2));
    let changes = diff["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["homes"].as_array().unwrap().contains(&json!("IN"))
                && c["newly_forbidden"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("cn-north"))),
        "{diff}"
    );
    let same = ok(post_text(
        &srv,
        "/v1/policy/diff",
        "text/plain",
        &config(V1),
    ));
    assert_eq!(same["changes"], json!([]), "{same}");
    assert_eq!(
        ok(post_text(&srv, "/v1/policy/check", "text/plain", &v2))["ok"],
        true
    );
    bad_request(
        &post_text(&srv, "/v1/policy/check", "text/plain", "nonsense = ["),
        "",
    );
    let reach = ok(get(&srv, "/v1/reach/CN"));
    assert_eq!(reach["reaches_anything"], true, "{reach}");
    bad_request(&get(&srv, "/v1/reach/ZZ"), "ZZ");

    // Demands: filed, listed, shown.
    let mut filed = Vec::new();
    for authority in ["CN", "US", "IN"] {
        let r = ok(http(
            "POST",
            &format!("{}/v1/demands", srv.rest),
            Some(ADMIN),
            Some(&json!({"authority": authority, "subject": "zq-imp-00"})),
        ));
        filed.push(r["ledger_seq"].as_i64().unwrap());
    }
    let page1 = ok(get(&srv, "/v1/demands?limit=2"));
    let seqs = |p: &Value| -> Vec<i64> {
        p["demands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["seq"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&page1), filed[..2]);
    let after = page1["next"].as_i64().unwrap();
    let page2 = ok(get(&srv, &format!("/v1/demands?limit=2&after={after}")));
    assert_eq!(seqs(&page2), filed[2..]);
    assert!(page2["next"].is_null(), "{page2}");
    let one = ok(get(&srv, &format!("/v1/demands/{}", filed[1])));
    assert_eq!(
        (one["subject"].as_str(), one["record"]["authority"].as_str()),
        (Some("zq-imp-00"), Some("US"))
    );
    assert_eq!(
        get(&srv, &format!("/v1/demands/{}", filed[0] - 1)).status,
        404
    );
    assert_eq!(get(&srv, "/v1/demands/x").status, 400);

    // Apply v2 and follow its migration as server-sent events to the end.
    let applied = http_raw(
        "POST",
        &format!("{}/v1/policy", srv.rest),
        Some(ADMIN),
        Some(("text/plain", &v2)),
    );
    assert_eq!(applied.status, 201, "{}", applied.body);
    let stream = get(&srv, "/v1/migrations/current/events?every_ms=100");
    assert_eq!(stream.status, 200, "{}", stream.body);
    let evs = events(&stream.body);
    let (last, status) = evs.last().unwrap();
    assert_eq!(last, "end", "{}", stream.body);
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["done"], status["units"], "{status}");
    assert_eq!(
        status["units"], 1,
        "the Indian subject's one placement: {status}"
    );
    assert!(
        evs[..evs.len() - 1].iter().all(|(e, _)| e == "status"),
        "{}",
        stream.body
    );
    let show = ok(get(&srv, "/v1/subjects/zq-imp-00"));
    assert_ne!(
        show["categories"][0]["regions"],
        json!(["cn-north"]),
        "{show}"
    );

    // Verify as a background job.
    assert_eq!(get(&srv, "/v1/verify").status, 404);
    let started = http(
        "POST",
        &format!("{}/v1/verify", srv.rest),
        Some(ADMIN),
        Some(&json!({"deep": true})),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let j = ok(get(&srv, "/v1/verify"));
        if j["state"] != "running" {
            break j;
        }
        assert!(Instant::now() < deadline, "verify did not end: {j}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["clean"], true, "{job}");
    assert!(
        job["report"]["objects_decrypted"].as_u64().unwrap() >= 2,
        "{job}"
    );
    // Its progress counted what it did.
    let progress = &job["progress"];
    assert_eq!(
        progress["objects_indexed"], job["report"]["objects_indexed"],
        "{job}"
    );
    assert_eq!(
        progress["copies_checked"], job["report"]["copies_checked"],
        "{job}"
    );
    assert!(progress["objects_opened"].as_u64().unwrap() >= 2, "{job}");
    let bad = http(
        "POST",
        &format!("{}/v1/verify", srv.rest),
        Some(ADMIN),
        Some(&json!({"deep": "yes"})),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);

    assert_eq!(
        ok(post_text(&srv, "/v1/gc", "text/plain", ""))["failures"],
        0
    );

    // A CSV larger than any JSON body imports whole, and pages through.
    let bulk: String = (0..5000).map(|i| format!("zq-bulk-{i:04},TW\n")).collect();
    assert!(bulk.len() > 64 * 1024);
    let r = ok(post_text(&srv, "/v1/subjects/import", "text/csv", &bulk));
    assert_eq!(r["added"], 5000, "{r}");
    let (all, pages) = list_all(&srv, "", 1000);
    assert_eq!((all.len(), pages), (5023, 6));
    assert_eq!(list_all(&srv, "&home=TW", 1000).0.len(), 5000);

    // Every operation of the document is served: without a token, a
    // protected one answers 401 (the router matched it), an open one 200.
    let doc = ok(http(
        "GET",
        &format!("{}/openapi.json", srv.rest),
        None,
        None,
    ));
    let mut walked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let concrete = path
                .replace("{id}", "zq-imp-00")
                .replace("{kind}", "residency")
                .replace("{seq}", "1")
                .replace("{action}", "pause")
                .replace("{authority}", "CN")
                .replace("{name}", "operator-kms");
            let r = http(
                &method.to_uppercase(),
                &format!("{}{concrete}", srv.rest),
                None,
                None,
            );
            let want = if op["x-roles"].is_array() { 401 } else { 200 };
            assert_eq!(r.status, want, "{method} {path}: {}", r.body);
            walked += 1;
        }
    }
    assert!(walked >= 35, "{walked} operations");
    srv.stop();
}

fn india_after(srv: &Server) -> BTreeMap<String, String> {
    list_all(srv, "&home=IN", 5).0
}

#[test]
fn the_full_api_on_an_embedded_catalog() {
    full_api(None);
}

#[test]
fn the_full_api_on_postgres() {
    let db = Database::create("rest");
    full_api(Some(&db));
}
