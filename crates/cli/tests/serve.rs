//! `domicile serve` end to end: each test starts the real binary on free
//! ports in a fresh deployment and drives it with real clients — the aws
//! cli, boto3, rclone, and plain HTTP for the admin API — checking the bytes
//! that come back, the status codes of bad input, the JSON shapes of the
//! SPEC, and that neither the catalog nor the server's debug log holds a
//! subject id or an object name (invariant 4).
//!
//! One test also puts regions on an S3-compatible server (`moto_server`,
//! started by the test): a local folder and S3 buckets side by side, through
//! placement, a migration and `verify`.
//!
//! The clients and moto must be installed (`.ci/run` installs what is
//! missing): a missing one fails the test, it never skips it.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use domicile_test_support::moto::Moto;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn aws_cli_put_get_range_list_multipart_copy_delete() {
    let d = Deployment::new(EXAMPLE);
    let home = d.path();
    let srv = Server::start(&d, Some(32 << 20));
    add_subject(&srv, "zq-subject-aws", "IN");
    add_subject(&srv, "zq-subject-two", "CN");
    let k = |rest: &str| format!("users/zq-subject-aws/{rest}");

    // Put, get, range, head with content type and metadata.
    let small = b"hello domicile: 0123456789 abcdefghij".to_vec();
    std::fs::write(home.join("small.txt"), &small).unwrap();
    let put = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            &k("docs/zq-name-small.txt"),
            "--body",
            home.join("small.txt").to_str().unwrap(),
            "--content-type",
            "text/plain",
            "--metadata",
            "origin=aws-cli",
        ],
    );
    let etag = put["ETag"].as_str().unwrap().to_string();
    aws_ok(
        &srv,
        home,
        &[
            "s3api",
            "get-object",
            "--bucket",
            BUCKET,
            "--key",
            &k("docs/zq-name-small.txt"),
            home.join("small.out").to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(home.join("small.out")).unwrap(), small);
    let ranged = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "get-object",
            "--bucket",
            BUCKET,
            "--key",
            &k("docs/zq-name-small.txt"),
            "--range",
            "bytes=6-13",
            home.join("range.out").to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(home.join("range.out")).unwrap(),
        &small[6..14]
    );
    assert_eq!(
        ranged["ContentRange"],
        format!("bytes 6-13/{}", small.len())
    );
    let head = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "head-object",
            "--bucket",
            BUCKET,
            "--key",
            &k("docs/zq-name-small.txt"),
        ],
    );
    assert_eq!(head["ContentLength"], small.len());
    assert_eq!(head["ContentType"], "text/plain");
    assert_eq!(head["Metadata"]["origin"], "aws-cli");
    assert_eq!(head["ETag"], etag.as_str());

    // A few more keys, in two subjects, for listings.
    for (key, body) in [
        (k("docs/a.txt"), "a"),
        (k("docs/sub/b.txt"), "b"),
        (k("photos/c.txt"), "c"),
        ("users/zq-subject-two/x.txt".to_string(), "x"),
    ] {
        std::fs::write(home.join("body"), body).unwrap();
        aws_ok(
            &srv,
            home,
            &[
                "s3api",
                "put-object",
                "--bucket",
                BUCKET,
                "--key",
                &key,
                "--body",
                home.join("body").to_str().unwrap(),
            ],
        );
    }
    let top = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            &k(""),
            "--delimiter",
            "/",
        ],
    );
    assert_eq!(prefix_list(&top), [k("docs/"), k("photos/")]);
    assert!(key_list(&top).is_empty());
    let docs = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            &k("docs/"),
            "--delimiter",
            "/",
        ],
    );
    assert_eq!(
        key_list(&docs),
        [k("docs/a.txt"), k("docs/zq-name-small.txt")]
    );
    assert_eq!(prefix_list(&docs), [k("docs/sub/")]);
    // Across subjects, one key per page: every key once, in key order.
    let all = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            "users/",
            "--page-size",
            "1",
        ],
    );
    let mut expected = vec![
        k("docs/a.txt"),
        k("docs/sub/b.txt"),
        k("docs/zq-name-small.txt"),
        k("photos/c.txt"),
        "users/zq-subject-two/x.txt".to_string(),
    ];
    expected.sort();
    assert_eq!(key_list(&all), expected);
    let subjects = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            "users/",
            "--delimiter",
            "/",
        ],
    );
    assert_eq!(
        prefix_list(&subjects),
        ["users/zq-subject-aws/", "users/zq-subject-two/"]
    );

    // Multipart: `aws s3 cp` splits files over 8 MiB into parts.
    let big = bytes(7, 17 * 1024 * 1024 + 123);
    std::fs::write(home.join("zq-name-big.bin"), &big).unwrap();
    let big_key = format!("s3://{BUCKET}/{}", k("zq-name-big.bin"));
    aws_ok(
        &srv,
        home,
        &[
            "s3",
            "cp",
            "--only-show-errors",
            home.join("zq-name-big.bin").to_str().unwrap(),
            &big_key,
        ],
    );
    aws_ok(
        &srv,
        home,
        &[
            "s3",
            "cp",
            "--only-show-errors",
            &big_key,
            home.join("big.out").to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(home.join("big.out")).unwrap() == big,
        "multipart bytes differ"
    );
    // Parts in progress are never listed; the assembled object is.
    let listed = key_list(&aws_json(
        &srv,
        home,
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            &k(""),
        ],
    ));
    assert!(listed.contains(&k("zq-name-big.bin")));
    assert!(
        listed.iter().all(|key| !key.contains(".domicile-mpu")),
        "{listed:?}"
    );

    // Copy: a big one (multipart copy) into another subject, a small one
    // with new metadata.
    let copy_key = format!("s3://{BUCKET}/users/zq-subject-two/big-copy.bin");
    aws_ok(
        &srv,
        home,
        &["s3", "cp", "--only-show-errors", &big_key, &copy_key],
    );
    aws_ok(
        &srv,
        home,
        &[
            "s3",
            "cp",
            "--only-show-errors",
            &copy_key,
            home.join("copy.out").to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(home.join("copy.out")).unwrap() == big,
        "copied bytes differ"
    );
    aws_ok(
        &srv,
        home,
        &[
            "s3api",
            "copy-object",
            "--bucket",
            BUCKET,
            "--key",
            &k("docs/copy.txt"),
            "--copy-source",
            &format!("{BUCKET}/{}", k("docs/zq-name-small.txt")),
            "--metadata-directive",
            "REPLACE",
            "--metadata",
            "origin=copy",
            "--content-type",
            "text/x-copy",
        ],
    );
    let head = aws_json(
        &srv,
        home,
        &[
            "s3api",
            "head-object",
            "--bucket",
            BUCKET,
            "--key",
            &k("docs/copy.txt"),
        ],
    );
    assert_eq!(head["Metadata"]["origin"], "copy");
    assert_eq!(head["ContentType"], "text/x-copy");
    assert_eq!(head["ContentLength"], small.len());

    // Delete.
    aws_ok(
        &srv,
        home,
        &[
            "s3",
            "rm",
            "--only-show-errors",
            &format!("s3://{BUCKET}/{}", k("docs/zq-name-small.txt")),
        ],
    );
    let gone = aws(
        &srv,
        home,
        &[
            "s3api",
            "head-object",
            "--bucket",
            BUCKET,
            "--key",
            &k("docs/zq-name-small.txt"),
        ],
    );
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404"));

    let metrics = http("GET", &format!("{}/metrics", srv.rest), None, None).body;
    let parts = metrics
        .lines()
        .find(|l| {
            l.starts_with("domicile_requests_total{api=\"s3\",op=\"UploadPart\",status=\"200\"}")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(parts >= 3, "aws s3 cp did not upload in parts:\n{metrics}");

    let log = srv.stop();
    assert_no_personal_data(
        &d,
        &log,
        &[
            "zq-subject-aws",
            "zq-subject-two",
            "zq-name-small",
            "zq-name-big",
        ],
    );
}

const BOTO3_SCRIPT: &str = r#"
import datetime, io, os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
B = "user-data"
K = "users/zq-subject-boto/zq-name-boto.json"

def code(f):
    try:
        f()
        return None
    except ClientError as e:
        return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])

body = b'{"hello": "boto3"}' * 50
r = s3.put_object(Bucket=B, Key=K, Body=body, ContentType="application/json",
                  Metadata={"colour": "teal", "owner": "qa"})
etag = r["ETag"]
h = s3.head_object(Bucket=B, Key=K)
assert h["ContentLength"] == len(body), h
assert h["ContentType"] == "application/json", h
assert h["Metadata"] == {"colour": "teal", "owner": "qa"}, h["Metadata"]
assert h["ETag"] == etag, (h["ETag"], etag)
g = s3.get_object(Bucket=B, Key=K)
assert g["Body"].read() == body
assert g["Metadata"]["colour"] == "teal"
g = s3.get_object(Bucket=B, Key=K, Range="bytes=2-9")
assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
assert g["Body"].read() == body[2:10]
assert s3.get_object(Bucket=B, Key=K, Range="bytes=-5")["Body"].read() == body[-5:]
assert code(lambda: s3.get_object(Bucket=B, Key=K, Range="bytes=99999-"))[1] == 416

# Conditional requests.
now = datetime.datetime.now(datetime.timezone.utc)
assert code(lambda: s3.get_object(Bucket=B, Key=K, IfNoneMatch=etag))[1] == 304
assert code(lambda: s3.head_object(Bucket=B, Key=K, IfNoneMatch=etag))[1] == 304
assert code(lambda: s3.get_object(Bucket=B, Key=K, IfMatch='"0000"'))[1] == 412
assert code(lambda: s3.get_object(Bucket=B, Key=K, IfMatch=etag)) is None
assert code(lambda: s3.get_object(Bucket=B, Key=K, IfModifiedSince=now + datetime.timedelta(days=1)))[1] == 304
assert code(lambda: s3.get_object(Bucket=B, Key=K, IfModifiedSince=now - datetime.timedelta(days=1))) is None
assert code(lambda: s3.get_object(Bucket=B, Key=K, IfUnmodifiedSince=now - datetime.timedelta(days=1)))[1] == 412
assert code(lambda: s3.put_object(Bucket=B, Key=K, Body=b"x", IfNoneMatch="*"))[1] == 412

# Listings, v2 and v1 (with the empty delimiter some clients send).
lst = s3.list_objects_v2(Bucket=B, Prefix="users/zq-subject-boto/")
assert [o["Key"] for o in lst["Contents"]] == [K], lst
assert lst["Contents"][0]["ETag"] == etag
assert lst["Contents"][0]["Size"] == len(body)
l1 = s3.list_objects(Bucket=B, Prefix="users/", Delimiter="")
assert [o["Key"] for o in l1["Contents"]] == [K], l1

# Buckets.
assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [B]
s3.head_bucket(Bucket=B)
s3.create_bucket(Bucket=B)

# Multipart through the API: ListParts, order checks, abort.
MK = "users/zq-subject-boto/mp.bin"
up = s3.create_multipart_upload(Bucket=B, Key=MK, ContentType="application/x-test", Metadata={"m": "1"})["UploadId"]
a = b"a" * (5 * 1024 * 1024)
p1 = s3.upload_part(Bucket=B, Key=MK, UploadId=up, PartNumber=1, Body=a)
p2 = s3.upload_part(Bucket=B, Key=MK, UploadId=up, PartNumber=2, Body=b"tail")
parts = s3.list_parts(Bucket=B, Key=MK, UploadId=up)["Parts"]
assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(a)), (2, 4)], parts
assert code(lambda: s3.complete_multipart_upload(Bucket=B, Key=MK, UploadId=up, MultipartUpload={"Parts": [
    {"PartNumber": 2, "ETag": p2["ETag"]}, {"PartNumber": 1, "ETag": p1["ETag"]}]}))[0] == "InvalidPartOrder"
assert code(lambda: s3.complete_multipart_upload(Bucket=B, Key=MK, UploadId=up, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": '"bad"'}]}))[0] == "InvalidPart"
s3.complete_multipart_upload(Bucket=B, Key=MK, UploadId=up, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
g = s3.get_object(Bucket=B, Key=MK)
assert g["Body"].read() == a + b"tail"
assert g["ContentType"] == "application/x-test" and g["Metadata"] == {"m": "1"}
assert code(lambda: s3.list_parts(Bucket=B, Key=MK, UploadId=up))[0] == "NoSuchUpload"
up2 = s3.create_multipart_upload(Bucket=B, Key=MK)["UploadId"]
s3.upload_part(Bucket=B, Key=MK, UploadId=up2, PartNumber=1, Body=b"zzz")
s3.abort_multipart_upload(Bucket=B, Key=MK, UploadId=up2)
assert code(lambda: s3.list_parts(Bucket=B, Key=MK, UploadId=up2))[0] == "NoSuchUpload"
assert s3.get_object(Bucket=B, Key=MK)["Body"].read() == a + b"tail"
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=B, Prefix="users/zq-subject-boto/")["Contents"]]
assert keys == sorted([K, MK]), keys

# DeleteObjects.
d = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": K}, {"Key": MK}]})
assert sorted(x["Key"] for x in d["Deleted"]) == sorted([K, MK]), d
assert "Contents" not in s3.list_objects_v2(Bucket=B, Prefix="users/zq-subject-boto/")
print("BOTO3 OK")
"#;

#[test]
fn boto3_metadata_conditions_listing_multipart() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start(&d, None);
    add_subject(&srv, "zq-subject-boto", "SG");
    let out = python(&srv, d.path(), BOTO3_SCRIPT, &[]);
    assert!(out.contains("BOTO3 OK"), "{out}");
    let log = srv.stop();
    assert_no_personal_data(&d, &log, &["zq-subject-boto", "zq-name-boto"]);
}

#[test]
fn rclone_copy_sync_check() {
    let d = Deployment::new(EXAMPLE);
    let home = d.path();
    let srv = Server::start(&d, None);
    add_subject(&srv, "zq-subject-rclone", "IN");
    let tree = home.join("tree");
    let files: [(&str, usize); 5] = [
        ("zq-name-top.txt", 10),
        ("a/one.bin", 70_000),
        ("a/b/two.bin", 1_000_000),
        ("a/b/c/three.txt", 3),
        ("empty.txt", 0),
    ];
    for (i, (name, size)) in files.iter().enumerate() {
        let p = tree.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes(i as u64, *size)).unwrap();
    }
    let remote = format!("d:{BUCKET}/users/zq-subject-rclone/tree");
    let t = tree.to_str().unwrap();
    rclone(&srv, home, &["copy", t, &remote]);
    rclone(&srv, home, &["check", "--download", t, &remote]);

    // Change the tree: a file removed, one changed, one added; sync.
    std::fs::remove_file(tree.join("a/one.bin")).unwrap();
    std::fs::write(tree.join("a/b/c/three.txt"), b"changed").unwrap();
    std::fs::write(tree.join("a/new.txt"), b"new file").unwrap();
    rclone(&srv, home, &["sync", t, &remote]);
    rclone(&srv, home, &["check", "--download", t, &remote]);
    let listed = rclone(&srv, home, &["lsf", "-R", "--files-only", &remote]);
    let mut names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "a/b/c/three.txt",
            "a/b/two.bin",
            "a/new.txt",
            "empty.txt",
            "zq-name-top.txt"
        ]
    );
    let log = srv.stop();
    assert_no_personal_data(&d, &log, &["zq-subject-rclone", "zq-name-top"]);
}

const BAD_INPUT_SCRIPT: &str = r#"
import io, json, os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def client(secret):
    return boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], aws_secret_access_key=secret,
                        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3 = client(os.environ["AWS_SECRET_ACCESS_KEY"])
B = "user-data"
OK = "users/zq-subject-bad/ok.txt"

def code(f):
    try:
        f()
        return None
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"],
                e.response["Error"].get("Message", "")]

r = {}
s3.put_object(Bucket=B, Key=OK, Body=b"fine")
r["bad_signature"] = code(lambda: client("wrong-secret").put_object(Bucket=B, Key=OK, Body=b"x"))
r["bad_signature_get"] = code(lambda: client("wrong-secret").get_object(Bucket=B, Key=OK))
r["dotdot"] = code(lambda: s3.put_object(Bucket=B, Key="users/zq-subject-bad/../escape", Body=b"x"))
r["dotdot_get"] = code(lambda: s3.get_object(Bucket=B, Key="users/zq-subject-bad/a/../../x"))
r["nul"] = code(lambda: s3.put_object(Bucket=B, Key="users/zq-subject-bad/a\x00b", Body=b"x"))
r["long_segment"] = code(lambda: s3.put_object(Bucket=B, Key="users/zq-subject-bad/" + "s" * 300, Body=b"x"))
r["long_key"] = code(lambda: s3.put_object(Bucket=B, Key="users/zq-subject-bad/" + "k/" * 600 + "k", Body=b"x"))
r["reserved"] = code(lambda: s3.put_object(Bucket=B, Key="users/zq-subject-bad/.domicile-mpu/x/00001", Body=b"x"))
r["oversize"] = code(lambda: s3.put_object(Bucket=B, Key="users/zq-subject-bad/big", Body=io.BytesIO(b"x" * (2 << 20))))
r["oversize_part"] = None
up = s3.create_multipart_upload(Bucket=B, Key="users/zq-subject-bad/mp")["UploadId"]
r["oversize_part"] = code(lambda: s3.upload_part(Bucket=B, Key="users/zq-subject-bad/mp", UploadId=up, PartNumber=1, Body=io.BytesIO(b"x" * (2 << 20))))
r["bad_part_number"] = code(lambda: s3.upload_part(Bucket=B, Key="users/zq-subject-bad/mp", UploadId=up, PartNumber=10001, Body=b"x"))
r["no_such_upload"] = code(lambda: s3.upload_part(Bucket=B, Key="users/zq-subject-bad/mp", UploadId="0" * 32, PartNumber=1, Body=b"x"))
r["unknown_bucket"] = code(lambda: s3.put_object(Bucket="no-such-bucket", Key=OK, Body=b"x"))
r["unknown_bucket_list"] = code(lambda: s3.list_objects_v2(Bucket="no-such-bucket"))
r["create_other_bucket"] = code(lambda: s3.create_bucket(Bucket="another-bucket"))
r["unregistered"] = code(lambda: s3.put_object(Bucket=B, Key="users/zq-nobody/x.txt", Body=b"x"))
r["unregistered_mpu"] = code(lambda: s3.create_multipart_upload(Bucket=B, Key="users/zq-nobody/x.txt"))
r["no_subject"] = code(lambda: s3.put_object(Bucket=B, Key="elsewhere/x.txt", Body=b"x"))
r["missing"] = code(lambda: s3.get_object(Bucket=B, Key="users/zq-subject-bad/missing"))
r["bad_token"] = code(lambda: s3.list_objects_v2(Bucket=B, ContinuationToken="not-hex"))
r["metadata_too_large"] = code(lambda: s3.put_object(Bucket=B, Key=OK, Body=b"x", Metadata={"k": "v" * 3000}))
r["still_there"] = s3.get_object(Bucket=B, Key=OK)["Body"].read().decode()
print(json.dumps(r))
"#;

#[test]
fn bad_input_gets_the_right_4xx_and_changes_nothing() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start(&d, Some(1 << 20));
    add_subject(&srv, "zq-subject-bad", "CN");
    let out = python(&srv, d.path(), BAD_INPUT_SCRIPT, &[]);
    let r: Value = serde_json::from_str(out.trim()).unwrap();
    let expect = |name: &str, code: &str, status: u64| {
        assert_eq!(
            (r[name][0].as_str(), r[name][1].as_u64()),
            (Some(code), Some(status)),
            "{name}: {}",
            r[name]
        );
    };
    expect("bad_signature", "SignatureDoesNotMatch", 403);
    expect("bad_signature_get", "SignatureDoesNotMatch", 403);
    expect("dotdot", "InvalidArgument", 400);
    expect("dotdot_get", "InvalidArgument", 400);
    assert_eq!(r["nul"][1].as_u64(), Some(400), "nul: {}", r["nul"]);
    expect("long_segment", "InvalidArgument", 400);
    expect("long_key", "KeyTooLongError", 400);
    expect("reserved", "InvalidArgument", 400);
    expect("oversize", "EntityTooLarge", 400);
    expect("oversize_part", "EntityTooLarge", 400);
    expect("bad_part_number", "InvalidArgument", 400);
    expect("no_such_upload", "NoSuchUpload", 404);
    expect("unknown_bucket", "NoSuchBucket", 404);
    expect("unknown_bucket_list", "NoSuchBucket", 404);
    expect("create_other_bucket", "AccessDenied", 403);
    expect("unregistered", "AccessDenied", 403);
    assert!(
        r["unregistered"][2]
            .as_str()
            .unwrap()
            .contains("not registered"),
        "{}",
        r["unregistered"]
    );
    expect("unregistered_mpu", "AccessDenied", 403);
    expect("no_subject", "AccessDenied", 403);
    expect("missing", "NoSuchKey", 404);
    expect("bad_token", "InvalidArgument", 400);
    expect("metadata_too_large", "MetadataTooLarge", 400);
    assert_eq!(r["still_there"], "fine");

    // Refused writes left nothing behind: the subject holds its one object
    // and the upload's staged marker, no placement exists for the nobody.
    let show = http(
        "GET",
        &format!("{}/v1/subjects/zq-subject-bad", srv.rest),
        Some(ADMIN),
        None,
    )
    .json();
    let objects: u64 = show["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["objects"].as_u64().unwrap())
        .sum();
    assert_eq!(objects, 2, "{show}");
    let health = http("GET", &format!("{}/healthz", srv.rest), None, None);
    assert_eq!(health.status, 200);
    let metrics = http("GET", &format!("{}/metrics", srv.rest), None, None).body;
    assert!(
        metrics.contains("domicile_http_responses_total{api=\"s3\",status=\"403\"}"),
        "refused signatures are counted:\n{metrics}"
    );
    srv.stop();
}

#[test]
fn s3_api_refuses_to_start_without_a_credential() {
    let d = Deployment::new(EXAMPLE);
    let out = Command::new(BIN)
        .current_dir(d.path())
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
        .env_remove("DOMICILE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DOMICILE_S3_ACCESS_KEY_ID"), "{err}");
    assert!(out.stdout.is_empty(), "nothing was served");
}

#[test]
fn rest_api_auth_shapes_and_a_migration() {
    let d = Deployment::new(V1);
    let home = d.path();
    let srv = Server::start(&d, None);
    let url = |p: &str| format!("{}{p}", srv.rest);

    // Open endpoints.
    assert_eq!(
        http("GET", &url("/healthz"), None, None).json()["status"],
        "ok"
    );
    let doc = http("GET", &url("/openapi.json"), None, None).json();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/v1/subjects",
        "/v1/subjects/{id}",
        "/v1/plan",
        "/v1/reports/{kind}",
        "/v1/demands",
        "/v1/ledger/verify",
        "/v1/migrations",
        "/v1/migrations/current",
        "/v1/migrations/current/{action}",
        "/metrics",
        "/healthz",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is not in /openapi.json");
    }
    let missing = http("GET", &url("/v1/nothing"), Some(ADMIN), None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");

    // Auth: no token and a wrong one get 401; the auditor reads reports
    // and the ledger, and gets 403 for anything else.
    let body = json!({"subject": "zq-rest-in", "home": "IN"});
    assert_eq!(
        http("POST", &url("/v1/subjects"), None, Some(&body)).status,
        401
    );
    assert_eq!(
        http("POST", &url("/v1/subjects"), Some("wrong"), Some(&body)).status,
        401
    );
    assert_eq!(
        http("POST", &url("/v1/subjects"), Some(AUDITOR), Some(&body)).status,
        403
    );
    assert_eq!(
        http("GET", &url("/v1/plan"), Some(AUDITOR), None).status,
        403
    );
    assert_eq!(
        http("GET", &url("/v1/reports/residency"), None, None).status,
        401
    );
    add_subject(&srv, "zq-rest-in", "IN");
    add_subject(&srv, "zq-rest-cn", "CN");
    let dup = http("POST", &url("/v1/subjects"), Some(ADMIN), Some(&body));
    assert_eq!(dup.status, 409);
    let bad = http(
        "POST",
        &url("/v1/subjects"),
        Some(ADMIN),
        Some(&json!({"subject": "bad id", "home": "IN"})),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "bad_request");
    let bad = http(
        "POST",
        &url("/v1/subjects"),
        Some(ADMIN),
        Some(&json!({"subject": "x1", "home": "ZZ"})),
    );
    assert_eq!(bad.status, 400);

    // Data through S3, in two categories.
    let files = [
        ("users/zq-rest-in/profile.json", bytes(1, 5000)),
        ("users/zq-rest-in/payments/card.json", bytes(2, 300)),
        ("users/zq-rest-cn/a.txt", bytes(3, 42)),
    ];
    for (key, body) in &files {
        std::fs::write(home.join("body"), body).unwrap();
        aws_ok(
            &srv,
            home,
            &[
                "s3api",
                "put-object",
                "--bucket",
                BUCKET,
                "--key",
                key,
                "--body",
                home.join("body").to_str().unwrap(),
            ],
        );
    }

    // Shapes of the SPEC.
    let show = http("GET", &url("/v1/subjects/zq-rest-in"), Some(ADMIN), None).json();
    assert_eq!(show["subject"], "zq-rest-in");
    assert_eq!(show["home"], "IN");
    let cats = show["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 2, "{show}");
    for c in cats {
        for f in ["category", "regions", "epoch", "objects", "bytes"] {
            assert!(!c[f].is_null(), "subject show lacks {f}: {show}");
        }
        assert_eq!(
            c["regions"],
            json!(["cn-north"]),
            "v1 keeps everything in China"
        );
    }
    assert!(
        show["exposure"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["authority"].is_string() && e["level"].is_string())
    );
    assert_eq!(
        http("GET", &url("/v1/subjects/zq-nobody"), Some(ADMIN), None).status,
        404
    );
    let residency = http("GET", &url("/v1/reports/residency"), Some(AUDITOR), None).json();
    let row = &residency["rows"][0];
    for f in [
        "home",
        "category",
        "region",
        "jurisdiction",
        "subjects",
        "objects",
        "bytes",
    ] {
        assert!(!row[f].is_null(), "residency row lacks {f}: {residency}");
    }
    let exposure = http("GET", &url("/v1/reports/exposure"), Some(AUDITOR), None).json();
    for f in [
        "authority",
        "home",
        "subjects",
        "plaintext_subjects",
        "ciphertext_subjects",
    ] {
        assert!(
            !exposure["rows"][0][f].is_null(),
            "exposure row lacks {f}: {exposure}"
        );
    }
    let cost = http("GET", &url("/v1/reports/cost"), Some(AUDITOR), None).json();
    assert!(cost["total_monthly_cost"].is_number());
    for f in ["region", "jurisdiction", "bytes", "monthly_cost"] {
        assert!(!cost["rows"][0][f].is_null(), "cost row lacks {f}: {cost}");
    }
    let v = http("GET", &url("/v1/reports/violations"), Some(AUDITOR), None).json();
    assert_eq!(v["violations"], json!([]));
    assert_eq!(
        http("GET", &url("/v1/reports/other"), Some(AUDITOR), None).status,
        404
    );
    let demand_body = json!({"authority": "CN", "subject": "zq-rest-in"});
    assert_eq!(
        http(
            "POST",
            &url("/v1/demands"),
            Some(AUDITOR),
            Some(&demand_body)
        )
        .status,
        403
    );
    let demand = http("POST", &url("/v1/demands"), Some(ADMIN), Some(&demand_body)).json();
    assert_eq!(demand["authority"], "CN");
    assert_eq!(demand["subject"], "zq-rest-in");
    assert_eq!(demand["level"], "plaintext");
    for f in ["category", "region", "objects", "bytes", "level"] {
        assert!(
            !demand["copies"][0][f].is_null(),
            "demand copy lacks {f}: {demand}"
        );
    }
    let ledger = http("GET", &url("/v1/ledger/verify"), Some(AUDITOR), None).json();
    assert_eq!(ledger["ok"], true, "{ledger}");
    srv.stop();

    // The rules change (India's data leaves China): plan and migrate
    // through the API while the server runs.
    d.write_config(V2);
    let srv = Server::start(&d, None);
    let url = |p: &str| format!("{}{p}", srv.rest);
    // The server's file says v2 now, but it acts on the active version
    // until v2 is applied (here without its job: the API starts it below).
    let applied = http_raw(
        "POST",
        &url("/v1/policy?migrate=false"),
        Some(ADMIN),
        Some(("text/plain", V2)),
    );
    assert_eq!(applied.status, 201, "{}", applied.body);
    assert!(applied.json()["job"].is_null(), "{}", applied.body);
    let plan = http("GET", &url("/v1/plan"), Some(ADMIN), None).json();
    let moves = plan["moves"].as_array().unwrap();
    assert!(
        moves
            .iter()
            .any(|m| m["subject"] == "zq-rest-in" && m["from"] == json!(["cn-north"])),
        "{plan}"
    );
    for f in [
        "subjects",
        "objects",
        "bytes",
        "egress_cost",
        "monthly_cost_before",
        "monthly_cost_after",
    ] {
        assert!(!plan["totals"][f].is_null(), "plan totals lack {f}: {plan}");
    }
    assert!(plan["exposure_before"].is_array() && plan["exposure_after"].is_array());
    let violations = http("GET", &url("/v1/reports/violations"), Some(ADMIN), None).json();
    assert!(!violations["violations"].as_array().unwrap().is_empty());

    let started = http(
        "POST",
        &url("/v1/migrations"),
        Some(ADMIN),
        Some(&json!({"workers": 2})),
    );
    assert_eq!(started.status, 202, "{}", started.body);
    assert!(started.json()["units"].as_u64().unwrap() >= 2);
    assert_eq!(
        http("POST", &url("/v1/migrations"), Some(ADMIN), None).status,
        400,
        "a second job while one is open is refused"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let s = http("GET", &url("/v1/migrations/current"), Some(ADMIN), None).json();
        if s["state"] == "done" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "migration did not finish: {s}\nserve's log:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["failed"], 0, "{status}");
    assert_eq!(status["done"], status["units"], "{status}");
    assert_eq!(
        http(
            "POST",
            &url("/v1/migrations/current/pause"),
            Some(ADMIN),
            None
        )
        .status,
        404,
        "nothing open to pause"
    );
    let v = http("GET", &url("/v1/reports/violations"), Some(ADMIN), None).json();
    assert_eq!(v["violations"], json!([]), "{v}");
    let show = http("GET", &url("/v1/subjects/zq-rest-in"), Some(ADMIN), None).json();
    for c in show["categories"].as_array().unwrap() {
        assert!(
            !c["regions"]
                .as_array()
                .unwrap()
                .contains(&json!("cn-north")),
            "{show}"
        );
    }
    for (key, body) in &files {
        aws_ok(
            &srv,
            home,
            &[
                "s3api",
                "get-object",
                "--bucket",
                BUCKET,
                "--key",
                key,
                home.join("out").to_str().unwrap(),
            ],
        );
        assert_eq!(&std::fs::read(home.join("out")).unwrap(), body, "{key}");
    }
    let metrics = http("GET", &url("/metrics"), None, None).body;
    for needle in [
        "domicile_migration_units{state=\"done\"}",
        "domicile_migration_bytes_moved_total ",
        "domicile_requests_total{api=\"rest\",op=\"GET /v1/subjects/{id}\",status=\"200\"}",
        "domicile_requests_total{api=\"s3\",op=\"GetObject\",status=\"200\"} 3",
        "domicile_bytes_sent_total{op=\"GetObject\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }
    assert!(
        !metrics.contains("domicile_migration_bytes_moved_total 0\n"),
        "migration bytes did not move:\n{metrics}"
    );

    // Erasure.
    let erased = http("DELETE", &url("/v1/subjects/zq-rest-cn"), Some(ADMIN), None);
    assert_eq!(erased.status, 200, "{}", erased.body);
    assert_eq!(erased.json()["objects"], 1);
    assert_eq!(
        http("GET", &url("/v1/subjects/zq-rest-cn"), Some(ADMIN), None).status,
        404
    );
    let log = srv.stop();
    assert_no_personal_data(&d, &log, &["zq-rest-in", "zq-rest-cn", "card.json"]);
}

/// A moto_server with the bucket the s3:// regions live in.
fn start_moto() -> Moto {
    let moto = Moto::start();
    moto.bucket("domicile-regions");
    moto
}

/// The keys moto holds under a prefix of the bucket.
fn moto_keys(moto: &Moto, prefix: &str) -> usize {
    let r = http(
        "GET",
        &format!(
            "{}/domicile-regions?list-type=2&prefix={prefix}",
            moto.endpoint
        ),
        None,
        None,
    );
    r.body.matches("<Key>").count()
}

#[test]
fn s3_backed_regions_beside_local_ones_through_a_migration() {
    let moto = start_moto();
    // The two AWS regions of the demo live in S3 buckets (one bucket, two
    // prefixes); China, India and Taiwan stay local folders.
    let on_s3 = |config: &str| {
        let mut c = config.to_string();
        for r in ["aws-ap-southeast-1", "aws-us-east-1"] {
            c = c.replace(
                &format!("store = \"file://data/regions/{r}\""),
                &format!(
                    "store = \"s3://domicile-regions/{r}?endpoint={}&region=us-east-1\"",
                    moto.endpoint
                ),
            );
        }
        c
    };
    let env = [
        ("DOMICILE_REGIONS_ACCESS_KEY_ID", "moto-key"),
        ("DOMICILE_REGIONS_SECRET_ACCESS_KEY", "moto-secret"),
    ];
    let d = Deployment::new(&on_s3(V1));
    let home = d.path();
    let srv = Server::start_with(&d, None, &env);
    add_subject(&srv, "zq-s3-in", "IN");
    let files = [
        ("users/zq-s3-in/profile.json", bytes(11, 3000)),
        ("users/zq-s3-in/media/clip.bin", bytes(12, 9 * 1024 * 1024)),
        ("users/zq-s3-in/payments/card.json", bytes(13, 200)),
    ];
    for (key, body) in &files {
        std::fs::write(home.join("body"), body).unwrap();
        aws_ok(
            &srv,
            home,
            &[
                "s3api",
                "put-object",
                "--bucket",
                BUCKET,
                "--key",
                key,
                "--body",
                home.join("body").to_str().unwrap(),
            ],
        );
    }
    assert_eq!(moto_keys(&moto, "aws-"), 0, "v1 keeps everything in China");
    srv.stop();

    // v2: Indian profile and media move to the S3-backed regions, payments
    // to India's local folder.
    d.write_config(&on_s3(V2));
    let srv = Server::start_with(&d, None, &env);
    let url = |p: &str| format!("{}{p}", srv.rest);
    let applied = http_raw(
        "POST",
        &url("/v1/policy?migrate=false"),
        Some(ADMIN),
        Some(("text/plain", &on_s3(V2))),
    );
    assert_eq!(applied.status, 201, "{}", applied.body);
    let started = http("POST", &url("/v1/migrations"), Some(ADMIN), None);
    assert_eq!(started.status, 202, "{}", started.body);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = http("GET", &url("/v1/migrations/current"), Some(ADMIN), None).json();
        if s["state"] == "done" {
            assert_eq!(s["failed"], 0, "{s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "migration did not finish: {s}\nserve's log:\n{}",
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let show = http("GET", &url("/v1/subjects/zq-s3-in"), Some(ADMIN), None).json();
    let regions: Vec<&str> = show["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["regions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
        })
        .collect();
    assert!(regions.iter().any(|r| r.starts_with("aws-")), "{show}");
    assert!(!regions.contains(&"cn-north"), "{show}");
    assert!(moto_keys(&moto, "aws-") >= 2, "the moved copies are in S3");
    for (key, body) in &files {
        aws_ok(
            &srv,
            home,
            &[
                "s3api",
                "get-object",
                "--bucket",
                BUCKET,
                "--key",
                key,
                home.join("out").to_str().unwrap(),
            ],
        );
        assert!(&std::fs::read(home.join("out")).unwrap() == body, "{key}");
    }
    // A new write lands in S3 directly.
    std::fs::write(home.join("body"), b"fresh").unwrap();
    aws_ok(
        &srv,
        home,
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            "users/zq-s3-in/fresh.txt",
            "--body",
            home.join("body").to_str().unwrap(),
        ],
    );
    srv.stop();

    // verify scans every region, local and S3, against catalog and policy.
    let out = Command::new(BIN)
        .current_dir(home)
        .args(["verify", "--format", "json"])
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_CONFIG")
        .envs(env)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
    assert_eq!(report["regions"], 5);
    assert!(report["copies_checked"].as_u64().unwrap() >= 4, "{report}");
}

/// The policy through the REST API, across two servers on one catalog: an
/// apply through one is acted on by the other within its follow delay,
/// recorded with its actor, idempotent, and refused for the auditor role
/// and for text that is not a valid config (changing nothing).
#[test]
fn a_policy_applied_through_one_server_is_followed_by_the_other() {
    let d = Deployment::new(V1);
    let a = Server::start(&d, None);
    let b = Server::start(&d, None);
    let health = |srv: &Server| http("GET", &format!("{}/healthz", srv.rest), None, None).json();
    // The first server stored its file's policy as version 1.
    assert_eq!(health(&a)["policy_version"], 1);
    assert_eq!(health(&b)["policy_version"], 1);
    let shown = http("GET", &format!("{}/v1/policy", b.rest), Some(AUDITOR), None);
    assert_eq!(
        (shown.status, shown.json()["version"].clone()),
        (200, json!(1))
    );

    let post = |srv: &Server, token: &str, text: &str| {
        http_raw(
            "POST",
            &format!("{}/v1/policy", srv.rest),
            Some(token),
            Some(("text/plain", text)),
        )
    };
    let refused = post(&a, AUDITOR, V2);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let bad = post(&a, ADMIN, "[[rule]]\nname = 7\n");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(health(&a)["policy_version"], 1, "bad input changes nothing");

    let applied = post(&a, ADMIN, V2);
    assert_eq!(applied.status, 201, "{}", applied.body);
    let applied = applied.json();
    assert_eq!(applied["version"], 2, "{applied}");
    assert!(applied["job"].is_i64(), "{applied}");
    assert_eq!(
        health(&a)["policy_version"],
        2,
        "the applier acts on it at once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&b)["policy_version"] != 2 {
        assert!(
            Instant::now() < deadline,
            "server b never followed version 2"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let active = http("GET", &format!("{}/v1/policy", b.rest), Some(ADMIN), None).json();
    assert_eq!(
        (active["version"].clone(), active["actor"].clone()),
        (json!(2), json!("rest:admin"))
    );
    assert_eq!(active["digest"], applied["digest"]);
    let again = post(&b, ADMIN, V2);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["created"], false);
    let history = http(
        "GET",
        &format!("{}/v1/policy/history", a.rest),
        Some(ADMIN),
        None,
    )
    .json();
    assert_eq!(
        history["versions"].as_array().unwrap().len(),
        2,
        "{history}"
    );
}

/// Two servers on one catalog: a subject written through the second is
/// erased and added again (elsewhere) through the first, then written
/// through the second, which holds the erased data key in its cache. The
/// new object must be encrypted under the new key: the first server reads
/// the bytes back, and `verify` re-reads every copy.
#[test]
fn a_subject_erased_and_added_again_through_one_server_is_written_through_the_other() {
    let d = Deployment::new(V1);
    let home = d.path();
    let a = Server::start(&d, None);
    let b = Server::start(&d, None);
    add_subject(&a, "zq-bob", "IN");
    let key = |name: &str| format!("users/zq-bob/{name}");
    let put = |srv: &Server, name: &str, body: &[u8]| {
        let file = home.join(format!("{name}.body"));
        std::fs::write(&file, body).unwrap();
        aws_ok(
            srv,
            home,
            &[
                "s3api",
                "put-object",
                "--bucket",
                BUCKET,
                "--key",
                &key(name),
                "--body",
                file.to_str().unwrap(),
            ],
        );
    };
    let get = |srv: &Server, name: &str| {
        let out = home.join(format!("{name}.out"));
        aws_ok(
            srv,
            home,
            &[
                "s3api",
                "get-object",
                "--bucket",
                BUCKET,
                "--key",
                &key(name),
                out.to_str().unwrap(),
            ],
        );
        std::fs::read(out).unwrap()
    };
    // Server b writes and reads bob's first placement: its data key is in
    // b's cache.
    put(&b, "profile.json", b"first life");
    assert_eq!(get(&b, "profile.json"), b"first life");

    let erased = http(
        "DELETE",
        &format!("{}/v1/subjects/zq-bob", a.rest),
        Some(ADMIN),
        None,
    );
    assert_eq!(erased.status, 200, "{}", erased.body);
    add_subject(&a, "zq-bob", "CN");

    put(&b, "profile.json", b"second life");
    assert_eq!(get(&a, "profile.json"), b"second life");
    assert_eq!(get(&b, "profile.json"), b"second life");
    a.stop();
    b.stop();
    let out = Command::new(BIN)
        .current_dir(home)
        .args(["verify", "--format", "json"])
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_CONFIG")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");
}
