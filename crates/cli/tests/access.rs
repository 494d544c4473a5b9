//! Who may do what, end to end against `domicile serve`: S3 credentials
//! scoped to buckets and to reading (aws cli, boto3), hostile input refused
//! before it costs anything (SigV2, week-long presigned URLs, a 1 GB form
//! upload), REST tokens by role over every route, and the refusals counted
//! in `/metrics`.

#![allow(clippy::unwrap_used)]
#![recursion_limit = "256"]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const APP: (&str, &str) = ("AKAPPEU", "app-eu-secret-for-tests");
const READER: (&str, &str) = ("AKREADER", "reader-secret-for-tests");

const ROOT: &str = "root-token-for-tests";
const OPS: &str = "ops-token-for-tests";
const DPO: &str = "dpo-token-for-tests";
const COUNSEL: &str = "counsel-token-for-tests";

/// The example config with a second bucket, two credentials (one scoped to
/// `user-data`, one reading everything) and a token of each role.
fn config() -> String {
    format!(
        r#"{EXAMPLE}
[[bucket]]
name = "archive"
subject = "archive/{{subject}}/"
category = "archive"

[[credential]]
name = "app-eu"
access_key_id = "{}"
buckets = ["user-data"]
access = "read-write"

[[credential]]
name = "reader"
access_key_id = "{}"
buckets = ["*"]
access = "read"

[[token]]
name = "root"
role = "admin"

[[token]]
name = "ops"
role = "operator"

[[token]]
name = "dpo"
role = "auditor"

[[token]]
name = "counsel"
role = "legal"
"#,
        APP.0, READER.0
    )
}

const SECRETS: &[(&str, &str)] = &[
    ("DOMICILE_CREDENTIAL_APP_EU_SECRET", APP.1),
    ("DOMICILE_CREDENTIAL_READER_SECRET", READER.1),
    ("DOMICILE_REST_TOKEN_ROOT", ROOT),
    ("DOMICILE_REST_TOKEN_OPS", OPS),
    ("DOMICILE_REST_TOKEN_DPO", DPO),
    ("DOMICILE_REST_TOKEN_COUNSEL", COUNSEL),
];

fn start() -> (Deployment, Server) {
    let d = Deployment::new(&config());
    let srv = Server::start_with(&d, None, SECRETS);
    (d, srv)
}

fn metrics(srv: &Server) -> String {
    http("GET", &format!("{}/metrics", srv.rest), None, None).body
}

/// Each boto3 attempt's outcome: "ok", or the S3 error code.
const ATTEMPTS: &str = r#"
import json, os, boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def client(key, secret):
    return boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

out = {}
def attempt(name, f):
    try:
        r = f()
        out[name] = "ok" if r is None or not isinstance(r, (list, str)) else r
    except ClientError as e:
        out[name] = e.response["Error"]["Code"]
"#;

#[test]
fn credentials_are_held_to_their_buckets_and_their_access() {
    let (d, srv) = start();
    let home = d.path();
    add_subject(&srv, "zq-acc", "IN");
    add_subject(&srv, "zq-arc", "IN");
    // The deployment-wide credential writes in both buckets.
    let script = format!(
        r#"{ATTEMPTS}
default = client("{}", "{}")
default.put_object(Bucket="user-data", Key="users/zq-acc/a.txt", Body=b"in user-data")
default.put_object(Bucket="archive", Key="archive/zq-arc/old.txt", Body=b"in the archive")

reader = client("{}", "{}")
attempt("reader_list", lambda: sorted(o["Key"] for o in reader.list_objects_v2(Bucket="user-data", Prefix="users/zq-acc/")["Contents"]))
attempt("reader_get", lambda: reader.get_object(Bucket="user-data", Key="users/zq-acc/a.txt")["Body"].read().decode())
attempt("reader_get_archive", lambda: reader.get_object(Bucket="archive", Key="archive/zq-arc/old.txt")["Body"].read().decode())
attempt("reader_buckets", lambda: sorted(b["Name"] for b in reader.list_buckets()["Buckets"]))
attempt("reader_put", lambda: reader.put_object(Bucket="user-data", Key="users/zq-acc/r.txt", Body=b"x"))
attempt("reader_delete", lambda: reader.delete_object(Bucket="user-data", Key="users/zq-acc/a.txt"))
attempt("reader_delete_many", lambda: reader.delete_objects(Bucket="user-data", Delete={{"Objects": [{{"Key": "users/zq-acc/a.txt"}}]}}))
attempt("reader_copy", lambda: reader.copy_object(Bucket="user-data", Key="users/zq-acc/c.txt", CopySource="user-data/users/zq-acc/a.txt"))
attempt("reader_multipart", lambda: reader.create_multipart_upload(Bucket="user-data", Key="users/zq-acc/m.txt"))
attempt("reader_create_bucket", lambda: reader.create_bucket(Bucket="user-data"))

app = client("{}", "{}")
attempt("app_put", lambda: app.put_object(Bucket="user-data", Key="users/zq-acc/b.txt", Body=b"from the app"))
attempt("app_get", lambda: app.get_object(Bucket="user-data", Key="users/zq-acc/b.txt")["Body"].read().decode())
attempt("app_copy_inside", lambda: app.copy_object(Bucket="user-data", Key="users/zq-acc/b2.txt", CopySource="user-data/users/zq-acc/b.txt"))
attempt("app_buckets", lambda: sorted(b["Name"] for b in app.list_buckets()["Buckets"]))
attempt("app_list_archive", lambda: app.list_objects_v2(Bucket="archive", Prefix="archive/zq-arc/"))
attempt("app_get_archive", lambda: app.get_object(Bucket="archive", Key="archive/zq-arc/old.txt"))
attempt("app_head_archive", lambda: app.head_object(Bucket="archive", Key="archive/zq-arc/old.txt"))
attempt("app_put_archive", lambda: app.put_object(Bucket="archive", Key="users/zq-acc/x.txt", Body=b"x"))
# The archive's object is not user-data's, though both buckets reach zq-arc.
attempt("app_archive_through_user_data", lambda: app.get_object(Bucket="user-data", Key="users/zq-arc/old.txt"))
attempt("app_copy_from_archive", lambda: app.copy_object(Bucket="user-data", Key="users/zq-acc/stolen.txt", CopySource="archive/archive/zq-arc/old.txt"))
up = app.create_multipart_upload(Bucket="user-data", Key="users/zq-acc/parts.txt")["UploadId"]
attempt("app_part_copy_from_archive", lambda: app.upload_part_copy(Bucket="user-data", Key="users/zq-acc/parts.txt", UploadId=up, PartNumber=1, CopySource="archive/archive/zq-arc/old.txt"))
app.abort_multipart_upload(Bucket="user-data", Key="users/zq-acc/parts.txt", UploadId=up)

# Nothing the refused requests asked for happened.
attempt("after_user_data", lambda: sorted(o["Key"] for o in default.list_objects_v2(Bucket="user-data", Prefix="users/zq-acc/")["Contents"]))
attempt("after_archive", lambda: sorted(o["Key"] for o in default.list_objects_v2(Bucket="archive", Prefix="archive/zq-arc/")["Contents"]))
print(json.dumps(out))
"#,
        ACCESS_KEY, SECRET_KEY, READER.0, READER.1, APP.0, APP.1
    );
    let out: Value = serde_json::from_str(python(&srv, home, &script, &[]).trim()).unwrap();
    let expect = json!({
        "reader_list": ["users/zq-acc/a.txt"],
        "reader_get": "in user-data",
        "reader_get_archive": "in the archive",
        "reader_buckets": ["archive", "user-data"],
        "reader_put": "AccessDenied",
        "reader_delete": "AccessDenied",
        "reader_delete_many": "AccessDenied",
        "reader_copy": "AccessDenied",
        "reader_multipart": "AccessDenied",
        "reader_create_bucket": "AccessDenied",
        "app_put": "ok",
        "app_get": "from the app",
        "app_copy_inside": "ok",
        "app_buckets": ["user-data"],
        "app_list_archive": "AccessDenied",
        "app_get_archive": "AccessDenied",
        // HEAD answers carry no body, so no code: only the status.
        "app_head_archive": "403",
        "app_put_archive": "AccessDenied",
        "app_archive_through_user_data": "NoSuchKey",
        "app_copy_from_archive": "AccessDenied",
        "app_part_copy_from_archive": "AccessDenied",
        "after_user_data": ["users/zq-acc/a.txt", "users/zq-acc/b.txt", "users/zq-acc/b2.txt"],
        "after_archive": ["archive/zq-arc/old.txt"],
    });
    assert_eq!(out, expect);

    // The aws cli, with the same credentials.
    std::fs::write(home.join("body"), b"cli").unwrap();
    let put = [
        "s3api",
        "put-object",
        "--bucket",
        "user-data",
        "--key",
        "users/zq-acc/cli.txt",
        "--body",
    ];
    let body = home.join("body");
    let args: Vec<&str> = put
        .iter()
        .copied()
        .chain([body.to_str().unwrap()])
        .collect();
    let refused = aws_as(&srv, home, READER, &args);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("AccessDenied"), "{stderr}");
    assert!(aws_as(&srv, home, APP, &args).status.success());
    let listed = aws_as(&srv, home, APP, &["s3api", "list-buckets"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["Buckets"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["Buckets"][0]["Name"], "user-data");
    let got = aws_as(
        &srv,
        home,
        APP,
        &[
            "s3api",
            "get-object",
            "--bucket",
            "archive",
            "--key",
            "archive/zq-arc/old.txt",
            home.join("out").to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&got.stderr).contains("AccessDenied"));

    // Every refusal counted under its credential's name, no secret anywhere.
    let text = metrics(&srv);
    let denied = |name: &str| {
        metric(
            &text,
            &format!("domicile_access_denied_total{{api=\"s3\",credential=\"{name}\"}}"),
        )
    };
    assert_eq!(
        (denied("reader"), denied("app-eu"), denied("default")),
        (7, 7, 0),
        "{text}"
    );
    let log = srv.stop();
    for (_, secret) in SECRETS {
        assert!(!text.contains(secret) && !log.contains(secret));
    }

    // The ledger names who caused each entry: the subjects were added with
    // the admin token, their first writes placed them through the
    // deployment-wide credential; no secret is an actor.
    let shown = std::process::Command::new(BIN)
        .current_dir(d.path())
        .args(["ledger", "show", "--format", "json"])
        .env_remove("DOMICILE_CONFIG")
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let ledger: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let entries = ledger["entries"].as_array().unwrap();
    let actors = |kind: &str| -> Vec<&str> {
        entries
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| e["actor"].as_str().unwrap())
            .collect()
    };
    assert_eq!(actors("subject"), ["rest:admin", "rest:admin"], "{ledger}");
    assert_eq!(
        actors("placement"),
        ["s3:default", "s3:default"],
        "{ledger}"
    );
    for e in entries {
        let actor = e["actor"].as_str().unwrap();
        assert!(!actor.is_empty(), "{e}");
        assert!(SECRETS.iter().all(|(_, secret)| !actor.contains(secret)));
    }
}

/// `domicile` run in the deployment's folder.
fn cli(d: &Deployment, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .current_dir(d.path())
        .args(args)
        .env_remove("DOMICILE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    out
}

/// Stored names of a subject's objects, as `domicile ls` shows them.
fn stored_names(d: &Deployment, subject: &str) -> Vec<String> {
    let out = cli(d, &["ls", subject, "--format", "json"]);
    let ls: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = ls["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        // Multipart parts (staged, or making up a completed object) are
        // stored objects too; this listing is about the objects' names.
        .filter(|n| !n.contains(".domicile-mpu/"))
        .collect();
    names.sort();
    names
}

#[test]
fn each_bucket_is_a_namespace_though_two_reach_one_subject() {
    let d = Deployment::new(&config());
    let home = d.path();
    // Objects stored before buckets were namespaces have names without a
    // bucket; the command line writes such names today. One of the
    // archive's category, one of user-data's (the first bucket's mapping).
    cli(&d, &["subject", "add", "zq-ns", "--home", "IN"]);
    std::fs::write(home.join("old"), b"from before").unwrap();
    let old = home.join("old");
    let old = old.to_str().unwrap();
    cli(
        &d,
        &[
            "put",
            "zq-ns",
            "was-archived.txt",
            old,
            "--category",
            "archive",
        ],
    );
    cli(&d, &["put", "zq-ns", "was-profile.txt", old]);
    cli(
        &d,
        &["put", "zq-ns", "retired.txt", old, "--category", "archive"],
    );
    // A name in a bucket's namespace is that bucket's object, with its
    // category from that bucket's mapping.
    cli(&d, &["put", "zq-ns", "archive/by-cli.txt", old]);
    let srv = Server::start_with(&d, None, SECRETS);
    let script = format!(
        r#"{ATTEMPTS}
def keys(r):
    return [o["Key"] for o in r.get("Contents", [])]
def read(c, b, k):
    return c.get_object(Bucket=b, Key=k)["Body"].read().decode()

default = client("{}", "{}")
app = client("{}", "{}")
# Both buckets' patterns reach subject zq-ns.
etag = default.put_object(Bucket="archive", Key="archive/zq-ns/old.txt", Body=b"archived")["ETag"]
default.put_object(Bucket="archive", Key="archive/zq-ns/deep/a.txt", Body=b"deep")
arc_up = default.create_multipart_upload(Bucket="archive", Key="archive/zq-ns/m.txt")["UploadId"]
default.upload_part(Bucket="archive", Key="archive/zq-ns/m.txt", UploadId=arc_up, PartNumber=1, Body=b"multi")

# Through user-data, the archive's objects (same subject, same names) are
# not there; user-data's one old name is.
attempt("app_list", lambda: keys(app.list_objects_v2(Bucket="user-data", Prefix="users/zq-ns/")))
attempt("app_list_all", lambda: keys(app.list_objects_v2(Bucket="user-data")))
attempt("app_list_v1", lambda: keys(app.list_objects(Bucket="user-data", Prefix="users/")))
attempt("app_get", lambda: app.get_object(Bucket="user-data", Key="users/zq-ns/old.txt"))
attempt("app_get_range", lambda: app.get_object(Bucket="user-data", Key="users/zq-ns/old.txt", Range="bytes=0-1"))
attempt("app_get_if_match", lambda: app.get_object(Bucket="user-data", Key="users/zq-ns/old.txt", IfMatch=etag))
attempt("app_head", lambda: app.head_object(Bucket="user-data", Key="users/zq-ns/old.txt"))
attempt("app_copy_source", lambda: app.copy_object(Bucket="user-data", Key="users/zq-ns/c.txt", CopySource="user-data/users/zq-ns/old.txt"))
attempt("app_copy_from_archive", lambda: app.copy_object(Bucket="user-data", Key="users/zq-ns/c.txt", CopySource="archive/archive/zq-ns/old.txt"))
attempt("app_part_into_archive_upload", lambda: app.upload_part(Bucket="user-data", Key="users/zq-ns/m.txt", UploadId=arc_up, PartNumber=2, Body=b"x"))
attempt("app_list_archive_parts", lambda: app.list_parts(Bucket="user-data", Key="users/zq-ns/m.txt", UploadId=arc_up))
attempt("app_abort_archive_upload", lambda: app.abort_multipart_upload(Bucket="user-data", Key="users/zq-ns/m.txt", UploadId=arc_up))
attempt("app_complete_archive_upload", lambda: app.complete_multipart_upload(Bucket="user-data", Key="users/zq-ns/m.txt", UploadId=arc_up, MultipartUpload={{"Parts": [{{"PartNumber": 1}}]}}))
attempt("app_delete", lambda: app.delete_object(Bucket="user-data", Key="users/zq-ns/old.txt"))
attempt("app_delete_many", lambda: app.delete_objects(Bucket="user-data", Delete={{"Objects": [{{"Key": "users/zq-ns/deep/a.txt"}}]}}).get("Errors", []))
# An old name the archive alone can have written is not user-data's either.
attempt("app_get_was_archived", lambda: app.get_object(Bucket="user-data", Key="users/zq-ns/was-archived.txt"))
# Writes through user-data land in user-data: the archive's objects stay.
attempt("app_put_if_none_match", lambda: app.put_object(Bucket="user-data", Key="users/zq-ns/old.txt", Body=b"the app's", IfNoneMatch="*"))
attempt("app_put_again", lambda: app.put_object(Bucket="user-data", Key="users/zq-ns/deep/a.txt", Body=b"the app's too"))
up = app.create_multipart_upload(Bucket="user-data", Key="users/zq-ns/m.txt")["UploadId"]
app.upload_part(Bucket="user-data", Key="users/zq-ns/m.txt", UploadId=up, PartNumber=1, Body=b"app multi")
attempt("app_complete", lambda: app.complete_multipart_upload(Bucket="user-data", Key="users/zq-ns/m.txt", UploadId=up, MultipartUpload={{"Parts": [{{"PartNumber": 1}}]}}) and None)
attempt("app_copy_inside", lambda: app.copy_object(Bucket="user-data", Key="users/zq-ns/c.txt", CopySource="user-data/users/zq-ns/old.txt") and None)
attempt("archive_complete", lambda: default.complete_multipart_upload(Bucket="archive", Key="archive/zq-ns/m.txt", UploadId=arc_up, MultipartUpload={{"Parts": [{{"PartNumber": 1}}]}}) and None)

# The deployment-wide credential sees each object in its own bucket only.
attempt("archive_keys", lambda: keys(default.list_objects_v2(Bucket="archive")))
attempt("archive_pages", lambda: [o["Key"] for p in default.get_paginator("list_objects_v2").paginate(Bucket="archive", PaginationConfig={{"PageSize": 1}}) for o in p.get("Contents", [])])
attempt("archive_delimited", lambda: (lambda r: [keys(r), [p["Prefix"] for p in r.get("CommonPrefixes", [])]])(default.list_objects_v2(Bucket="archive", Prefix="archive/zq-ns/", Delimiter="/")))
attempt("user_keys", lambda: keys(default.list_objects_v2(Bucket="user-data", Prefix="users/zq-ns/")))
attempt("user_pages", lambda: [o["Key"] for p in default.get_paginator("list_objects").paginate(Bucket="user-data", PaginationConfig={{"PageSize": 2}}) for o in p.get("Contents", [])])
attempt("archive_old", lambda: read(default, "archive", "archive/zq-ns/old.txt"))
attempt("archive_deep", lambda: read(default, "archive", "archive/zq-ns/deep/a.txt"))
attempt("archive_m", lambda: read(default, "archive", "archive/zq-ns/m.txt"))
attempt("user_old", lambda: read(default, "user-data", "users/zq-ns/old.txt"))
attempt("user_c", lambda: read(default, "user-data", "users/zq-ns/c.txt"))
attempt("user_m", lambda: read(default, "user-data", "users/zq-ns/m.txt"))
attempt("user_deep", lambda: read(default, "user-data", "users/zq-ns/deep/a.txt"))
# Old names: read, ranged, copied through the one bucket that could write them.
attempt("was_archived", lambda: read(default, "archive", "archive/zq-ns/was-archived.txt"))
attempt("by_cli", lambda: read(default, "archive", "archive/zq-ns/by-cli.txt"))
attempt("by_cli_through_user_data", lambda: app.get_object(Bucket="user-data", Key="users/zq-ns/by-cli.txt"))
attempt("was_archived_range", lambda: default.get_object(Bucket="archive", Key="archive/zq-ns/was-archived.txt", Range="bytes=5-10")["Body"].read().decode())
attempt("was_profile", lambda: read(app, "user-data", "users/zq-ns/was-profile.txt"))
attempt("was_profile_in_archive", lambda: default.head_object(Bucket="archive", Key="archive/zq-ns/was-profile.txt"))
attempt("copy_was_archived", lambda: default.copy_object(Bucket="archive", Key="archive/zq-ns/copied.txt", CopySource="archive/archive/zq-ns/was-archived.txt") and read(default, "archive", "archive/zq-ns/copied.txt"))
# A write of an old name's key replaces it; a delete removes it.
attempt("rewrite_retired", lambda: default.put_object(Bucket="archive", Key="archive/zq-ns/retired.txt", Body=b"new") and read(default, "archive", "archive/zq-ns/retired.txt"))
attempt("delete_was_profile", lambda: app.delete_object(Bucket="user-data", Key="users/zq-ns/was-profile.txt") and None)
attempt("was_profile_gone", lambda: app.get_object(Bucket="user-data", Key="users/zq-ns/was-profile.txt"))
# A delete through one bucket leaves the other's object of the same key.
attempt("delete_user_old", lambda: default.delete_object(Bucket="user-data", Key="users/zq-ns/old.txt") and None)
attempt("archive_old_after", lambda: read(default, "archive", "archive/zq-ns/old.txt"))
print(json.dumps(out))
"#,
        ACCESS_KEY, SECRET_KEY, APP.0, APP.1
    );
    let out: Value = serde_json::from_str(python(&srv, home, &script, &[]).trim()).unwrap();
    let archive = [
        "archive/zq-ns/by-cli.txt",
        "archive/zq-ns/deep/a.txt",
        "archive/zq-ns/m.txt",
        "archive/zq-ns/old.txt",
        "archive/zq-ns/retired.txt",
        "archive/zq-ns/was-archived.txt",
    ];
    let expect = json!({
        "app_list": ["users/zq-ns/was-profile.txt"],
        "app_list_all": ["users/zq-ns/was-profile.txt"],
        "app_list_v1": ["users/zq-ns/was-profile.txt"],
        "app_get": "NoSuchKey",
        "app_get_range": "NoSuchKey",
        "app_get_if_match": "NoSuchKey",
        // HEAD answers carry no body, so no code: only the status.
        "app_head": "404",
        "app_copy_source": "NoSuchKey",
        "app_copy_from_archive": "AccessDenied",
        "app_part_into_archive_upload": "NoSuchUpload",
        "app_list_archive_parts": "NoSuchUpload",
        "app_abort_archive_upload": "NoSuchUpload",
        "app_complete_archive_upload": "NoSuchUpload",
        "app_delete": "ok",
        "app_delete_many": [],
        "app_get_was_archived": "NoSuchKey",
        "app_put_if_none_match": "ok",
        "app_put_again": "ok",
        "app_complete": "ok",
        "app_copy_inside": "ok",
        "archive_complete": "ok",
        "archive_keys": archive,
        "archive_pages": archive,
        "archive_delimited": [
            ["archive/zq-ns/by-cli.txt", "archive/zq-ns/m.txt", "archive/zq-ns/old.txt", "archive/zq-ns/retired.txt", "archive/zq-ns/was-archived.txt"],
            ["archive/zq-ns/deep/"]
        ],
        "user_keys": [
            "users/zq-ns/c.txt",
            "users/zq-ns/deep/a.txt",
            "users/zq-ns/m.txt",
            "users/zq-ns/old.txt",
            "users/zq-ns/was-profile.txt",
        ],
        "user_pages": [
            "users/zq-ns/c.txt",
            "users/zq-ns/deep/a.txt",
            "users/zq-ns/m.txt",
            "users/zq-ns/old.txt",
            "users/zq-ns/was-profile.txt",
        ],
        "archive_old": "archived",
        "archive_deep": "deep",
        "archive_m": "multi",
        "user_old": "the app's",
        "user_c": "the app's",
        "user_m": "app multi",
        "user_deep": "the app's too",
        "was_archived": "from before",
        "was_archived_range": "before",
        "by_cli": "from before",
        "by_cli_through_user_data": "NoSuchKey",
        "was_profile": "from before",
        "was_profile_in_archive": "404",
        "copy_was_archived": "from before",
        "rewrite_retired": "new",
        "delete_was_profile": "ok",
        "was_profile_gone": "NoSuchKey",
        "delete_user_old": "ok",
        "archive_old_after": "archived",
    });
    assert_eq!(out, expect);
    srv.stop();

    // Operators see stored names: the bucket first, the command line's
    // own names as they were given. The rewritten and deleted old names
    // are gone; the one no write touched stays where it was.
    assert_eq!(
        stored_names(&d, "zq-ns"),
        [
            "archive/by-cli.txt",
            "archive/copied.txt",
            "archive/deep/a.txt",
            "archive/m.txt",
            "archive/old.txt",
            "archive/retired.txt",
            "user-data/c.txt",
            "user-data/deep/a.txt",
            "user-data/m.txt",
            "was-archived.txt",
        ]
    );
    // The command line reads a bucket's object by its stored name.
    let got = cli(&d, &["get", "zq-ns", "archive/old.txt"]);
    assert_eq!(got.stdout, b"archived");
    let ls: Value =
        serde_json::from_slice(&cli(&d, &["ls", "zq-ns", "--format", "json"]).stdout).unwrap();
    let category = |name: &str| {
        ls["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .map(|o| o["category"].clone())
    };
    assert_eq!(category("archive/by-cli.txt"), Some(json!("archive")));
    assert_eq!(category("user-data/c.txt"), Some(json!("profile")));
}

#[test]
fn sigv2_and_presigned_urls_beyond_a_week_are_refused() {
    let (d, srv) = start();
    add_subject(&srv, "zq-pre", "IN");
    let script = r#"
import json, os, urllib.request, urllib.error, boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def client(sig):
    return boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                        config=Config(signature_version=sig, s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))

def fetch(url):
    try:
        with urllib.request.urlopen(url) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]

v4, v2 = client("s3v4"), client("s3")
B, K = "user-data", "users/zq-pre/a.txt"
v4.put_object(Bucket=B, Key=K, Body=b"presigned")
out = {}
for name, f in [("v2_get", lambda: v2.get_object(Bucket=B, Key=K)),
                ("v2_put", lambda: v2.put_object(Bucket=B, Key="users/zq-pre/v2.txt", Body=b"x"))]:
    try:
        f()
        out[name] = "ok"
    except ClientError as e:
        out[name] = [e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"],
                     e.response["Error"]["Message"]]
url = lambda client, s: client.generate_presigned_url("get_object", Params={"Bucket": B, "Key": K}, ExpiresIn=s)
out["v2_presigned"] = fetch(url(v2, 3600))
out["hour"] = fetch(url(v4, 3600))
out["week"] = fetch(url(v4, 604800))
out["eight_days"] = fetch(url(v4, 8 * 86400))
try:
    v4.head_object(Bucket=B, Key="users/zq-pre/v2.txt")
    out["v2_put_wrote"] = True
except ClientError:
    out["v2_put_wrote"] = False
print(json.dumps(out))
"#;
    let out: Value = serde_json::from_str(python(&srv, d.path(), script, &[]).trim()).unwrap();
    let v2 = "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256. (SigV2 is refused.)";
    assert_eq!(out["v2_get"], json!([400, "InvalidRequest", v2]), "{out}");
    assert_eq!(out["v2_put"], json!([400, "InvalidRequest", v2]), "{out}");
    assert_eq!(out["v2_put_wrote"], false);
    assert_eq!(out["v2_presigned"][0], 400, "{out}");
    assert!(
        out["v2_presigned"][1]
            .as_str()
            .unwrap()
            .contains("<Code>InvalidRequest</Code>")
    );
    assert_eq!(out["hour"], json!([200, "presigned"]));
    assert_eq!(out["week"], json!([200, "presigned"]));
    assert_eq!(out["eight_days"][0], 400, "{out}");
    let body = out["eight_days"][1].as_str().unwrap();
    assert!(
        body.contains("<Code>AuthorizationQueryParametersError</Code>")
            && body.contains(
                "<Message>X-Amz-Expires must be less than a week (in seconds) that is 604800</Message>"
            ),
        "{body}"
    );
    srv.stop();
}

/// Sends `POST /user-data` with a `multipart/form-data` body of `size`
/// bytes, unsigned, streaming it while reading the answer; returns the
/// answer's status line and body, and how much of the body went out.
fn post_form(srv: &Server, size: u64) -> (String, String, u64) {
    let host = srv.s3.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = "--B\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nusers/zq-form/a.bin\r\n\
                --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
                Content-Type: application/octet-stream\r\n\r\n";
    let tail = "\r\n--B--\r\n";
    let total = head.len() as u64 + size + tail.len() as u64;
    write!(
        s,
        "POST /user-data HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {total}\r\n\r\n{head}"
    )
    .unwrap();
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        let mut sent = 0u64;
        while sent < size {
            let n = chunk.len().min((size - sent) as usize);
            if writer.write_all(&chunk[..n]).is_err() {
                return sent;
            }
            sent += n as u64;
        }
        let _ = writer.write_all(tail.as_bytes());
        sent
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the server closes; a reset after the answer ends it too.
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("no answer to the form upload: {e}"),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let sent = sender.join().unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        format!("{head}\n{body}"),
        sent,
    )
}

#[test]
fn an_unauthenticated_1gb_form_upload_is_answered_without_its_memory() {
    let (d, srv) = start();
    add_subject(&srv, "zq-form", "IN");
    // Warm the S3 side up with an ordinary request first.
    std::fs::write(d.path().join("body"), b"warm").unwrap();
    aws_ok(
        &srv,
        d.path(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            "users/zq-form/warm.txt",
            "--body",
            d.path().join("body").to_str().unwrap(),
        ],
    );
    let (rss_before, hwm_before) = memory(&srv);
    let (status, answer, sent) = post_form(&srv, 1 << 30);
    let (rss_after, hwm_after) = memory(&srv);
    eprintln!(
        "form upload: {sent} bytes sent; resident {rss_before} -> {rss_after}, peak {hwm_before} -> {hwm_after}"
    );
    const LIMIT: u64 = 64 << 20;
    let rise = |before: u64, after: u64| after.saturating_sub(before);
    assert!(
        rise(rss_before, rss_after) <= LIMIT
            && rise(hwm_before.max(rss_before), hwm_after) <= LIMIT,
        "resident memory rose from {rss_before} (peak {hwm_before}) to {rss_after} (peak {hwm_after}) \
         bytes; {sent} bytes of the form went out"
    );
    assert!(status.contains(" 405 "), "{answer}");
    assert!(answer.contains("<Code>MethodNotAllowed</Code>"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // Nothing was written, and the server goes on serving.
    let listed = aws_json(
        &srv,
        d.path(),
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            "users/zq-form/",
        ],
    );
    assert_eq!(key_list(&listed), ["users/zq-form/warm.txt"]);
    let text = metrics(&srv);
    assert_eq!(
        metric(
            &text,
            "domicile_request_errors_total{api=\"s3\",op=\"PostObject\",code=\"MethodNotAllowed\"}"
        ),
        1,
        "{text}"
    );
    srv.stop();
}

/// One route with a request that succeeds for a role that may call it.
struct Route {
    method: &'static str,
    template: &'static str,
    path: String,
    body: Option<Value>,
    raw: Option<String>,
    roles: &'static [&'static str],
    /// The answer depends on what ran before (a migration job's state):
    /// any answer the handler gives will do, as long as it gave one.
    stateful: bool,
}

fn route(
    method: &'static str,
    template: &'static str,
    path: &str,
    roles: &'static [&'static str],
) -> Route {
    Route {
        method,
        template,
        path: path.to_string(),
        body: None,
        raw: None,
        roles,
        stateful: false,
    }
}

const ALL: &[&str] = &["admin", "operator", "auditor", "legal"];

#[test]
fn every_rest_route_answers_each_role_as_the_table_says() {
    let (d, srv) = start();
    add_subject(&srv, "zq-base", "IN");
    std::fs::write(d.path().join("body"), b"data").unwrap();
    aws_ok(
        &srv,
        d.path(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            "users/zq-base/profile.json",
            "--body",
            d.path().join("body").to_str().unwrap(),
        ],
    );
    let tokens = [
        ("admin", "root", ROOT),
        ("operator", "ops", OPS),
        ("auditor", "dpo", DPO),
        ("legal", "counsel", COUNSEL),
    ];
    let file = config();
    // A demand to read back, filed by legal.
    let filed = http(
        "POST",
        &format!("{}/v1/demands", srv.rest),
        Some(COUNSEL),
        Some(&json!({"authority": "CN", "subject": "zq-base"})),
    );
    assert_eq!(filed.status, 200, "{}", filed.body);
    let demand_seq = filed.json()["ledger_seq"].as_i64().unwrap();
    let mut denied = std::collections::BTreeMap::<&str, u64>::new();
    let mut answered = std::collections::BTreeSet::new();
    let mut unauthenticated = 0;
    for (role, name, token) in tokens {
        // Per role, so that each allowed call has something to act on.
        let mut routes = vec![
            route("GET", "/healthz", "/healthz", ALL),
            route("GET", "/metrics", "/metrics", ALL),
            route("GET", "/openapi.json", "/openapi.json", ALL),
            Route {
                body: Some(json!({"subject": format!("zq-new-{role}"), "home": "IN"})),
                ..route(
                    "POST",
                    "/v1/subjects",
                    "/v1/subjects",
                    &["admin", "operator"],
                )
            },
            route(
                "GET",
                "/v1/subjects/{id}",
                "/v1/subjects/zq-base",
                &["admin", "operator"],
            ),
            route(
                "DELETE",
                "/v1/subjects/{id}",
                &format!("/v1/subjects/zq-gone-{role}"),
                &["admin", "operator"],
            ),
            route("GET", "/v1/plan", "/v1/plan", &["admin", "operator"]),
            Route {
                raw: Some(file.clone()),
                ..route("POST", "/v1/plan", "/v1/plan", &["admin", "operator"])
            },
            route(
                "GET",
                "/v1/subjects",
                "/v1/subjects?limit=5&home=IN",
                &["admin", "operator"],
            ),
            Route {
                raw: Some(format!("subject,home\nzq-imp-{role},IN\n")),
                ..route(
                    "POST",
                    "/v1/subjects/import",
                    "/v1/subjects/import",
                    &["admin", "operator"],
                )
            },
            Route {
                body: Some(json!({"home": "IN"})),
                ..route(
                    "POST",
                    "/v1/subjects/{id}/rehome",
                    "/v1/subjects/zq-base/rehome",
                    &["admin", "operator"],
                )
            },
            route(
                "GET",
                "/v1/subjects/{id}/ledger",
                "/v1/subjects/zq-base/ledger",
                &["admin", "operator"],
            ),
            Route {
                body: Some(json!({"authority": "US", "subject": "zq-base"})),
                ..route("POST", "/v1/demands", "/v1/demands", &["admin", "legal"])
            },
            route("GET", "/v1/demands", "/v1/demands", &["admin", "legal"]),
            route(
                "GET",
                "/v1/demands/{seq}",
                &format!("/v1/demands/{demand_seq}"),
                &["admin", "legal"],
            ),
            route("GET", "/v1/reach/{authority}", "/v1/reach/CN", ALL),
            route(
                "GET",
                "/v1/ledger",
                "/v1/ledger?limit=50",
                &["admin", "operator", "auditor"],
            ),
            Route {
                raw: Some(file.clone()),
                ..route(
                    "POST",
                    "/v1/policy/check",
                    "/v1/policy/check",
                    &["admin", "operator", "auditor"],
                )
            },
            route(
                "GET",
                "/v1/policy/explain",
                "/v1/policy/explain?home=IN&category=profile",
                &["admin", "operator", "auditor"],
            ),
            route(
                "GET",
                "/v1/policy/diff",
                "/v1/policy/diff?old=1",
                &["admin", "operator", "auditor"],
            ),
            Route {
                raw: Some(file.clone()),
                ..route(
                    "POST",
                    "/v1/policy/diff",
                    "/v1/policy/diff",
                    &["admin", "operator", "auditor"],
                )
            },
            Route {
                body: Some(json!({"quick": true})),
                stateful: true,
                ..route("POST", "/v1/verify", "/v1/verify", &["admin", "operator"])
            },
            Route {
                stateful: true,
                ..route(
                    "GET",
                    "/v1/verify",
                    "/v1/verify",
                    &["admin", "operator", "auditor"],
                )
            },
            route(
                "POST",
                "/v1/custodians/{name}/rotate",
                "/v1/custodians/operator-kms/rotate",
                &["admin"],
            ),
            route("POST", "/v1/gc", "/v1/gc", &["admin", "operator"]),
            route(
                "GET",
                "/v1/ledger/verify",
                "/v1/ledger/verify",
                &["admin", "auditor"],
            ),
            route(
                "GET",
                "/v1/ledger/checkpoints",
                "/v1/ledger/checkpoints",
                &["admin", "auditor"],
            ),
            route(
                "POST",
                "/v1/ledger/checkpoints",
                "/v1/ledger/checkpoints",
                &["admin", "operator"],
            ),
            route("GET", "/v1/evidence", "/v1/evidence", &["admin", "auditor"]),
            route("GET", "/v1/policy", "/v1/policy", &["admin", "auditor"]),
            Route {
                raw: Some(file.clone()),
                ..route("POST", "/v1/policy", "/v1/policy", &["admin"])
            },
            route(
                "GET",
                "/v1/policy/history",
                "/v1/policy/history",
                &["admin", "auditor"],
            ),
            Route {
                body: Some(json!({})),
                stateful: true,
                ..route(
                    "POST",
                    "/v1/migrations",
                    "/v1/migrations",
                    &["admin", "operator"],
                )
            },
            route(
                "GET",
                "/v1/migrations/current",
                "/v1/migrations/current",
                &["admin", "operator", "auditor"],
            ),
            Route {
                stateful: true,
                ..route(
                    "GET",
                    "/v1/migrations/current/events",
                    "/v1/migrations/current/events?every_ms=100&max_seconds=1",
                    &["admin", "operator", "auditor"],
                )
            },
            Route {
                stateful: true,
                ..route(
                    "POST",
                    "/v1/migrations/current/{action}",
                    "/v1/migrations/current/pause",
                    &["admin", "operator"],
                )
            },
        ];
        for kind in ["residency", "exposure", "cost", "violations"] {
            routes.push(route(
                "GET",
                "/v1/reports/{kind}",
                &format!("/v1/reports/{kind}"),
                ALL,
            ));
        }
        add_subject(&srv, &format!("zq-gone-{role}"), "IN");
        for r in &routes {
            let url = format!("{}{}", srv.rest, r.path);
            let call = |token: Option<&str>| match &r.raw {
                Some(text) => http_raw(r.method, &url, token, Some(("text/plain", text))),
                None => http(r.method, &url, token, r.body.as_ref()),
            };
            let reply = call(Some(token));
            let what = format!("{role} ({name}) {} {}", r.method, r.path);
            if r.roles.contains(&role) {
                let answered_by_handler = if r.stateful {
                    ![401, 403, 405].contains(&reply.status) && reply.status < 500
                } else {
                    (200..300).contains(&reply.status)
                };
                assert!(
                    answered_by_handler,
                    "{what}: {} {}",
                    reply.status, reply.body
                );
                if role == "auditor" {
                    assert!(
                        !reply.body.contains("zq-"),
                        "{what} shows a subject id: {}",
                        reply.body
                    );
                }
            } else {
                assert_eq!(reply.status, 403, "{what}: {}", reply.body);
                assert_eq!(reply.json()["error"]["code"], "forbidden", "{what}");
                *denied.entry(name).or_default() += 1;
            }
            answered.insert((r.method, r.template));
            if r.template.starts_with("/v1/") {
                // Without a token, or with an unknown one: 401.
                assert_eq!(call(None).status, 401, "no token: {what}");
                assert_eq!(call(Some("not-a-token")).status, 401, "bad token: {what}");
                unauthenticated += 2;
            }
        }
    }
    // The refused calls changed nothing: the subjects the other roles
    // could not add, import or erase are as they were.
    for role in ["auditor", "legal"] {
        let imported = http(
            "GET",
            &format!("{}/v1/subjects/zq-imp-{role}", srv.rest),
            Some(ADMIN),
            None,
        );
        assert_eq!(
            imported.status, 404,
            "{role}'s refused import: {}",
            imported.body
        );
        let added = http(
            "GET",
            &format!("{}/v1/subjects/zq-new-{role}", srv.rest),
            Some(ADMIN),
            None,
        );
        assert_eq!(added.status, 404, "{role}'s refused add: {}", added.body);
        let kept = http(
            "GET",
            &format!("{}/v1/subjects/zq-gone-{role}", srv.rest),
            Some(ADMIN),
            None,
        );
        assert_eq!(kept.status, 200, "{role}'s refused erase: {}", kept.body);
    }
    // Every route of the table was called, and the table says what this
    // test expects of each.
    for p in domicile_server::rest::PERMISSIONS {
        assert!(
            answered.contains(&(p.method, p.path)),
            "{} {} is in the permission table but not in this test",
            p.method,
            p.path
        );
    }
    assert_eq!(answered.len(), domicile_server::rest::PERMISSIONS.len());

    // The deployment-wide tokens keep working, as admin and auditor.
    let url = |p: &str| format!("{}{p}", srv.rest);
    assert_eq!(http("GET", &url("/v1/plan"), Some(ADMIN), None).status, 200);
    assert_eq!(
        http("GET", &url("/v1/ledger/verify"), Some(AUDITOR), None).status,
        200
    );
    assert_eq!(
        http("GET", &url("/v1/plan"), Some(AUDITOR), None).status,
        403
    );

    let text = metrics(&srv);
    for (_, name, _) in tokens {
        let series = format!("domicile_access_denied_total{{api=\"rest\",token=\"{name}\"}}");
        assert_eq!(
            metric(&text, &series),
            denied.get(name).copied().unwrap_or(0),
            "{series}\n{text}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "domicile_access_denied_total{api=\"rest\",token=\"auditor\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            "domicile_access_denied_total{api=\"rest\",token=\"\"}"
        ),
        unauthenticated
    );
    let log = srv.stop();
    for (_, secret) in SECRETS {
        assert!(!text.contains(secret) && !log.contains(secret));
    }
}

#[test]
fn a_declared_credential_or_token_without_its_secret_stops_serve() {
    let d = Deployment::new(&config());
    let serve = |env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.current_dir(d.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
            ])
            .env_remove("DOMICILE_S3_ACCESS_KEY_ID")
            .env_remove("DOMICILE_S3_SECRET_ACCESS_KEY")
            .env_remove("DOMICILE_TOKEN_KEY")
            .env_remove("DOMICILE_CONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing: Vec<(&str, &str)> = SECRETS
        .iter()
        .copied()
        .filter(|(k, _)| {
            *k != "DOMICILE_CREDENTIAL_READER_SECRET" && *k != "DOMICILE_REST_TOKEN_DPO"
        })
        .collect();
    let (code, stderr) = serve(&missing);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("credential reader has no secret: set DOMICILE_CREDENTIAL_READER_SECRET"),
        "{stderr}"
    );
    assert!(
        stderr.contains("token dpo has no secret: set DOMICILE_REST_TOKEN_DPO"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    for (_, secret) in SECRETS {
        assert!(!stderr.contains(secret), "{stderr}");
    }

    // A config error in a credential or a token is reported as the
    // config's other errors are, all at once, where it is.
    // Only in the entries this test adds (the example's comments show
    // the same lines).
    let good = config();
    let (example, ours) = good.split_at(EXAMPLE.len());
    let bad = format!(
        "{example}{}",
        ours.replace(
            "buckets = [\"user-data\"]",
            "buckets = [\"user-data\", \"nope\"]",
        )
        .replace("role = \"legal\"", "role = \"lawyer\"")
    );
    d.write_config(&bad);
    let (code, stderr) = serve(SECRETS);
    assert_eq!(code, Some(2), "{stderr}");
    let at = |needle: &str| {
        let (n, line) = bad
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle) && !l.starts_with('#'))
            .unwrap();
        format!(
            "domicile.toml:{}:{}:",
            n + 1,
            line.find(needle).unwrap() + 1
        )
    };
    assert!(
        stderr.contains(&format!("{} unknown bucket \"nope\"", at("\"nope\""))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{} role \"lawyer\"", at("\"lawyer\""))),
        "{stderr}"
    );
}
