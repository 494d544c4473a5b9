//! `domicile serve` end to end, multipart uploads as S3 clients use them
//! (boto3, with the checksums current versions send by default):
//!
//! - a managed upload, and one whose part is sent again, complete with S3's
//!   ETag (the MD5 of the parts' MD5s, `-N`), read back whole, by range
//!   across part boundaries, and by `partNumber`, with the parts count;
//! - ListParts and ListMultipartUploads page, group by delimiter and
//!   filter by prefix;
//! - what an upload leaves (its marker, a part sent again, aborted
//!   uploads, the parts of an object overwritten) is collected by the
//!   background passes, and erasure leaves nothing; `verify --deep` is
//!   clean after it all;
//! - an upload left incomplete expires after `--multipart-expiry`.
//!
//! Migration and re-keying of objects of parts are tested in the engine
//! (`crates/engine/tests/multipart.rs`).
//!
//! The clients must be installed: a missing one fails the test.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SUBJECT: &str = "zq-subject-mp";

/// The blobs in the regions' folders: distinct file names, so that a
/// blob with a copy in each of two regions counts once (the test's one
/// subject is all they hold).
fn region_files(d: &Deployment) -> usize {
    fn walk(dir: &Path, out: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    walk(&d.path().join("data/regions"), &mut names);
    names.len()
}

fn wait_for_files(d: &Deployment, srv: &Server, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while region_files(d) != n {
        assert!(
            Instant::now() < deadline,
            "{what}: {} files in the regions, not {n}\n{}",
            region_files(d),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `domicile verify --deep` on the deployment: its problems.
fn verify_problems(d: &Deployment) -> Vec<Value> {
    let out = Command::new(BIN)
        .current_dir(d.path())
        .env_remove("DOMICILE_TOKEN_KEY")
        .env_remove("DOMICILE_CONFIG")
        .args([
            "--config",
            "domicile.toml",
            "--format",
            "json",
            "verify",
            "--deep",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["problems"].as_array().cloned().unwrap_or_default()
}

const SCRIPT: &str = r#"
import hashlib, io, os, random, time
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
B = "user-data"
P = "users/zq-subject-mp/"
MiB = 1 << 20
rnd = random.Random(17)

def blob(n):
    return rnd.randbytes(n)

def code(f):
    try:
        f()
        return None
    except ClientError as e:
        return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])

def s3_etag(parts):
    inner = b"".join(hashlib.md5(p).digest() for p in parts)
    return '"%s-%d"' % (hashlib.md5(inner).hexdigest(), len(parts))

# A managed upload, with the client's default checksums.
data = blob(13 * MiB)
cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
s3.upload_fileobj(io.BytesIO(data), B, P + "managed.bin", Config=cfg)
chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
h = s3.head_object(Bucket=B, Key=P + "managed.bin")
assert h["ContentLength"] == len(data), h
assert h["ETag"] == s3_etag(chunks), (h["ETag"], s3_etag(chunks))
assert h["PartsCount"] == 3, h
assert s3.get_object(Bucket=B, Key=P + "managed.bin")["Body"].read() == data

# A part sent again replaces the first one.
K = P + "resent.bin"
up = s3.create_multipart_upload(Bucket=B, Key=K, ContentType="video/x-test", Metadata={"m": "1"},
                                CacheControl="max-age=60", ContentDisposition="attachment",
                                ContentLanguage="fr")["UploadId"]
a, b1, b2, c = blob(5 * MiB), blob(5 * MiB), blob(5 * MiB), b"tail" * 10
e1 = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=1, Body=a)["ETag"]
assert e1 == '"%s"' % hashlib.md5(a).hexdigest(), e1
s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=2, Body=b1)
e2 = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=2, Body=b2)["ETag"]
e3 = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=3, Body=c)["ETag"]
first = s3.list_parts(Bucket=B, Key=K, UploadId=up, MaxParts=2)
assert [p["PartNumber"] for p in first["Parts"]] == [1, 2] and first["IsTruncated"], first
assert first["Parts"][1]["ETag"] == e2 and first["Parts"][1]["Size"] == len(b2), first
rest = s3.list_parts(Bucket=B, Key=K, UploadId=up, MaxParts=2, PartNumberMarker=first["NextPartNumberMarker"])
assert [p["PartNumber"] for p in rest["Parts"]] == [3] and not rest["IsTruncated"], rest
r = s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": e3}]})
whole = a + b2 + c
assert r["ETag"] == s3_etag([a, b2, c]), (r["ETag"], s3_etag([a, b2, c]))
g = s3.get_object(Bucket=B, Key=K)
assert g["Body"].read() == whole
assert g["ETag"] == r["ETag"] and g["PartsCount"] == 3, g
assert g["ContentType"] == "video/x-test" and g["Metadata"] == {"m": "1"}, g
assert g["CacheControl"] == "max-age=60" and g["ContentDisposition"] == "attachment", g
assert g["ContentLanguage"] == "fr", g
assert code(lambda: s3.list_parts(Bucket=B, Key=K, UploadId=up))[0] == "NoSuchUpload"

# partNumber reads, and ranges across part boundaries.
g2 = s3.get_object(Bucket=B, Key=K, PartNumber=2)
assert g2["Body"].read() == b2
assert g2["ResponseMetadata"]["HTTPStatusCode"] == 206, g2
assert g2["ContentRange"] == "bytes %d-%d/%d" % (5 * MiB, 10 * MiB - 1, len(whole)), g2
assert g2["PartsCount"] == 3, g2
h3 = s3.head_object(Bucket=B, Key=K, PartNumber=3)
assert h3["ContentLength"] == len(c) and h3["PartsCount"] == 3, h3
assert code(lambda: s3.get_object(Bucket=B, Key=K, PartNumber=4)) == ("InvalidPartNumber", 416)
for lo, hi in [(5 * MiB - 7, 10 * MiB + 5), (0, 10 * MiB), (10 * MiB - 1, len(whole) - 1)]:
    got = s3.get_object(Bucket=B, Key=K, Range="bytes=%d-%d" % (lo, hi))["Body"].read()
    assert got == whole[lo:hi + 1], (lo, hi)
assert code(lambda: s3.get_object(Bucket=B, Key=K, IfNoneMatch=r["ETag"]))[1] == 304
listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=B, Prefix=P)["Contents"]}
assert sorted(listed) == [P + "managed.bin", K], listed
assert listed[K]["ETag"] == r["ETag"] and listed[K]["Size"] == len(whole), listed[K]

# ListMultipartUploads: prefix, delimiter, pages.
keys = [P + "up/a/1", P + "up/a/1", P + "up/a/2", P + "up/b", P + "up/c/d/e"]
ids = []
for k in keys:
    ids.append(s3.create_multipart_upload(Bucket=B, Key=k)["UploadId"])
    time.sleep(0.01)
s3.upload_part(Bucket=B, Key=keys[0], UploadId=ids[0], PartNumber=1, Body=b"abandoned")
# By key, then one key's uploads in the order they were started.
expected = sorted(zip(keys, ids), key=lambda u: u[0])
got, kw, pages = [], {}, 0
while True:
    page = s3.list_multipart_uploads(Bucket=B, Prefix=P + "up/", MaxUploads=2, **kw)
    pages += 1
    assert pages <= 5, (pages, got)
    got += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
    if not page["IsTruncated"]:
        break
    kw = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
assert got == expected and pages == 3, (got, expected, pages)
grouped = s3.list_multipart_uploads(Bucket=B, Prefix=P + "up/", Delimiter="/")
assert [p["Prefix"] for p in grouped.get("CommonPrefixes", [])] == [P + "up/a/", P + "up/c/"], grouped
assert [u["Key"] for u in grouped.get("Uploads", [])] == [P + "up/b"], grouped
assert s3.list_multipart_uploads(Bucket=B, Prefix=P + "none/").get("Uploads", []) == []
for k, i in zip(keys, ids):
    s3.abort_multipart_upload(Bucket=B, Key=k, UploadId=i)
assert s3.list_multipart_uploads(Bucket=B).get("Uploads", []) == []

# The object of parts overwritten by a plain one.
s3.put_object(Bucket=B, Key=K, Body=b"plain")
assert "PartsCount" not in s3.head_object(Bucket=B, Key=K)
print("MULTIPART OK")
"#;

#[test]
fn boto3_multipart_uploads_etags_part_reads_listings_and_collection() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &["--collect-every", "0.2", "--gc-grace", "1"],
    );
    add_subject(&srv, SUBJECT, "SG");
    let out = python(&srv, d.path(), SCRIPT, &[]);
    assert!(out.contains("MULTIPART OK"), "{out}");
    // What is left: the managed upload's three parts and its own empty
    // blob, and the plain object that replaced the other. The part sent
    // again, the markers, the aborted uploads and the replaced object's
    // parts are all collected.
    wait_for_files(&d, &srv, 5, "after collection");
    let erased = http(
        "DELETE",
        &format!("{}/v1/subjects/{SUBJECT}", srv.rest),
        Some(ADMIN),
        None,
    );
    assert_eq!(erased.status, 200, "{}", erased.body);
    wait_for_files(&d, &srv, 0, "after erasure");
    let log = srv.stop();
    assert_no_personal_data(&d, &log, &[SUBJECT, "managed.bin", "resent.bin"]);
    let problems = verify_problems(&d);
    assert!(problems.is_empty(), "{problems:#?}");
}

const EXPIRY_SCRIPT: &str = r#"
import os, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
B = "user-data"
K = "users/zq-subject-mp/left.bin"
if sys.argv[1:] == []:
    up = s3.create_multipart_upload(Bucket=B, Key=K)["UploadId"]
    s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=1, Body=b"x" * 100000)
    s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=2, Body=b"y" * 100)
    open(os.environ["UPLOAD_FILE"], "w").write(up)
else:
    up = open(os.environ["UPLOAD_FILE"]).read()
    assert s3.list_multipart_uploads(Bucket=B).get("Uploads", []) == []
    try:
        s3.list_parts(Bucket=B, Key=K, UploadId=up)
        raise SystemExit("the expired upload still lists its parts")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchUpload", e.response
print("EXPIRY OK")
"#;

#[test]
fn an_abandoned_upload_expires_and_its_parts_are_collected() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start_args(
        &d,
        None,
        &[],
        &[
            "--collect-every",
            "0.2",
            "--gc-grace",
            "0",
            "--multipart-expiry",
            "3",
        ],
    );
    add_subject(&srv, SUBJECT, "SG");
    let upload_file = d.path().join("upload-id");
    let env = [("UPLOAD_FILE", upload_file.to_str().unwrap())];
    let started = Instant::now();
    let out = python(&srv, d.path(), EXPIRY_SCRIPT, &env);
    assert!(out.contains("EXPIRY OK"), "{out}");
    assert_eq!(region_files(&d), 3, "a marker and two parts");
    wait_for_files(&d, &srv, 0, "after expiry");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "collected before the upload expired"
    );
    let file = d.path().join("client.py");
    let mut c = client("python3", d.path());
    c.arg(&file)
        .arg("after")
        .env("ENDPOINT", &srv.s3)
        .env("UPLOAD_FILE", &upload_file);
    let out = run(c, "python3 (boto3)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("EXPIRY OK"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    srv.stop();
}

#[test]
fn a_bad_multipart_expiry_is_refused() {
    let d = Deployment::new(EXAMPLE);
    for bad in ["0", "nan", "-5"] {
        let out = Command::new(BIN)
            .current_dir(d.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--s3-listen",
                "127.0.0.1:0",
            ])
            .arg(format!("--multipart-expiry={bad}"))
            .env("DOMICILE_S3_ACCESS_KEY_ID", ACCESS_KEY)
            .env("DOMICILE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--multipart-expiry"), "{bad}: {err}");
    }
}
