//! S3 semantics as clients expect them, against a real `domicile serve`
//! with the real clients: MD5 ETags (single-part PUT, CopyObject, sync
//! tools that compare them), system and non-ASCII metadata, conditional
//! requests (304/412 with validators, conditional PUT decided atomically,
//! DeleteObject If-Match), NoSuchBucket, ListBuckets pagination, owners in
//! listings, folder keys in listings with delimiters, CopyObject onto
//! itself, and uploads in chunked transfer encoding without Content-Length.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

/// The example config with three more buckets, for ListBuckets paging.
fn config() -> String {
    let mut c = EXAMPLE.to_string();
    for name in ["archive", "bkt-b", "bkt-c"] {
        c.push_str(&format!(
            "\n[[bucket]]\nname = \"{name}\"\nsubject = \"{name}/{{subject}}/\"\ncategory = \"profile\"\n"
        ));
    }
    c
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// A folder of files to sync: nested, one empty, one of 3 MiB (under the
/// aws cli's 8 MiB multipart threshold). Returns (relative path, bytes).
fn sync_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        ("a.txt".to_string(), b"alpha".to_vec()),
        ("empty.txt".to_string(), Vec::new()),
        ("nested/b.json".to_string(), br#"{"b": 2}"#.to_vec()),
        ("nested/deeper/c.bin".to_string(), bytes(7, 3 << 20)),
        ("nested/deeper/d.txt".to_string(), b"delta".to_vec()),
    ];
    for (rel, data) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    files
}

#[test]
fn aws_sync_twice_transfers_nothing_the_second_time() {
    let d = Deployment::new(&config());
    let home = d.path();
    let srv = Server::start(&d, Some(64 << 20));
    add_subject(&srv, "zq-sync", "IN");
    let src = home.join("tree");
    let files = sync_tree(&src);
    let dest = format!("s3://{BUCKET}/users/zq-sync/tree/");
    let first = aws_ok(&srv, home, &["s3", "sync", src.to_str().unwrap(), &dest]);
    assert_eq!(
        first.matches("upload:").count(),
        files.len(),
        "the first sync uploads every file:\n{first}"
    );
    let second = aws_ok(&srv, home, &["s3", "sync", src.to_str().unwrap(), &dest]);
    assert!(
        second.trim().is_empty(),
        "the second sync transfers nothing:\n{second}"
    );
    // What was stored carries the MD5 of each file as its ETag.
    for (rel, data) in &files {
        let head = aws_json(
            &srv,
            home,
            &[
                "s3api",
                "head-object",
                "--bucket",
                BUCKET,
                "--key",
                &format!("users/zq-sync/tree/{rel}"),
            ],
        );
        assert_eq!(
            head["ETag"].as_str().unwrap(),
            format!("\"{}\"", md5_hex(data)),
            "{rel}"
        );
    }
    // And a download sync of it twice: the second fetches nothing.
    let back = home.join("back");
    let down = aws_ok(&srv, home, &["s3", "sync", &dest, back.to_str().unwrap()]);
    assert_eq!(down.matches("download:").count(), files.len(), "{down}");
    let again = aws_ok(&srv, home, &["s3", "sync", &dest, back.to_str().unwrap()]);
    assert!(again.trim().is_empty(), "{again}");
    for (rel, data) in &files {
        assert_eq!(&std::fs::read(back.join(rel)).unwrap(), data, "{rel}");
    }
    srv.stop();
}

#[test]
fn rclone_sync_then_check_compares_md5_with_no_difference() {
    let d = Deployment::new(&config());
    let home = d.path();
    let srv = Server::start(&d, Some(64 << 20));
    add_subject(&srv, "zq-rclone", "IN");
    let src = home.join("tree");
    let files = sync_tree(&src);
    let remote = format!("d:{BUCKET}/users/zq-rclone/tree");
    rclone(&srv, home, &["sync", src.to_str().unwrap(), &remote]);
    let out = rclone(&srv, home, &["check", src.to_str().unwrap(), &remote]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("0 differences found"), "{log}");
    assert!(
        log.contains(&format!("{} matching files", files.len())),
        "every file's MD5 was compared and matched:\n{log}"
    );
    assert!(!log.contains("could not be checked"), "{log}");
    // The hash rclone reads back is the ETag: the MD5 of the content.
    let out = rclone(&srv, home, &["md5sum", &remote]);
    let sums = String::from_utf8_lossy(&out.stdout).into_owned();
    for (rel, data) in &files {
        assert!(
            sums.contains(&format!("{}  {rel}", md5_hex(data))),
            "{rel}:\n{sums}"
        );
    }
    srv.stop();
}

const BOTO_PRELUDE: &str = r#"
import base64, hashlib, os, threading
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

def client():
    return boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3 = client()
B = "user-data"

def err(f):
    try:
        f()
        return None
    except ClientError as e:
        return e.response

def code(f):
    r = err(f)
    return None if r is None else (r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"])

def md5(b):
    return '"' + hashlib.md5(b).hexdigest() + '"'
"#;

#[test]
fn boto3_etags_metadata_and_copies() {
    let d = Deployment::new(&config());
    let home = d.path();
    let srv = Server::start(&d, Some(64 << 20));
    add_subject(&srv, "zq-meta", "IN");
    let script = format!(
        "{BOTO_PRELUDE}{}",
        r#"
K = "users/zq-meta/doc.txt"
body = b"the body of the document" * 100

# ETag: the MD5 of the body, from PUT, HEAD, GET and listings.
r = s3.put_object(Bucket=B, Key=K, Body=body)
assert r["ETag"] == md5(body), r["ETag"]
assert s3.head_object(Bucket=B, Key=K)["ETag"] == md5(body)
assert s3.get_object(Bucket=B, Key=K)["ETag"] == md5(body)
lst = s3.list_objects_v2(Bucket=B, Prefix="users/zq-meta/")
assert [o["ETag"] for o in lst["Contents"]] == [md5(body)], lst["Contents"]
empty = s3.put_object(Bucket=B, Key="users/zq-meta/empty", Body=b"")
assert empty["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"', empty

# System metadata round trip.
exp = "Wed, 21 Oct 2015 07:28:00 GMT"
s3.put_object(Bucket=B, Key=K, Body=body, ContentType="text/plain",
              CacheControl="max-age=3600", ContentDisposition='attachment; filename="doc.txt"',
              ContentEncoding="identity", ContentLanguage="fr-CA", Expires=exp,
              Metadata={"colour": "teal"})
for h in (s3.head_object(Bucket=B, Key=K), s3.get_object(Bucket=B, Key=K)):
    hh = h["ResponseMetadata"]["HTTPHeaders"]
    assert h["ContentType"] == "text/plain", h
    assert h["CacheControl"] == "max-age=3600", h
    assert h["ContentDisposition"] == 'attachment; filename="doc.txt"', h
    assert h["ContentEncoding"] == "identity", h
    assert h["ContentLanguage"] == "fr-CA", h
    assert hh["expires"] == exp, hh
    assert h["Metadata"] == {"colour": "teal"}, h
# GET may override them with response-* parameters.
g = s3.get_object(Bucket=B, Key=K, ResponseContentType="application/x-other",
                  ResponseCacheControl="no-store", ResponseContentDisposition="inline")
assert g["ContentType"] == "application/x-other", g
assert g["CacheControl"] == "no-store", g
assert g["ContentDisposition"] == "inline", g
assert g["ContentLanguage"] == "fr-CA", g

# Non-ASCII user metadata: sent as an RFC 2047 encoded-word, stored
# decoded, returned encoded as S3 returns it.
word = "=?UTF-8?B?" + base64.b64encode("élève – 日本".encode()).decode() + "?="
s3.put_object(Bucket=B, Key="users/zq-meta/utf8.txt", Body=b"x",
              Metadata={"name": word, "plain": "ascii"})
h = s3.head_object(Bucket=B, Key="users/zq-meta/utf8.txt")
assert h["Metadata"] == {"name": word, "plain": "ascii"}, h["Metadata"]

# CopyObject: the copy's ETag is the MD5 of the content; COPY keeps the
# source's metadata, REPLACE sets the request's.
c = s3.copy_object(Bucket=B, Key="users/zq-meta/copy.txt", CopySource={"Bucket": B, "Key": K})
assert c["CopyObjectResult"]["ETag"] == md5(body), c
h = s3.head_object(Bucket=B, Key="users/zq-meta/copy.txt")
assert h["ETag"] == md5(body), h
assert (h["ContentType"], h["CacheControl"], h["ContentLanguage"], h["Metadata"]) == \
    ("text/plain", "max-age=3600", "fr-CA", {"colour": "teal"}), h
c = s3.copy_object(Bucket=B, Key="users/zq-meta/copy2.txt", CopySource={"Bucket": B, "Key": K},
                   MetadataDirective="REPLACE", ContentType="text/csv", CacheControl="no-cache",
                   Metadata={"shape": "round"})
h = s3.head_object(Bucket=B, Key="users/zq-meta/copy2.txt")
assert (h["ContentType"], h["CacheControl"], h["Metadata"]) == ("text/csv", "no-cache", {"shape": "round"}), h
assert "ContentLanguage" not in h, h
assert h["ETag"] == md5(body), h

# Onto itself without a metadata change: refused as S3 refuses it.
r = err(lambda: s3.copy_object(Bucket=B, Key=K, CopySource={"Bucket": B, "Key": K}))
assert r is not None and r["Error"]["Code"] == "InvalidRequest", r
assert r["ResponseMetadata"]["HTTPStatusCode"] == 400, r
assert "copy an object to itself" in r["Error"]["Message"], r
r = err(lambda: s3.copy_object(Bucket=B, Key=K, CopySource={"Bucket": B, "Key": K},
                               MetadataDirective="COPY"))
assert r is not None and r["Error"]["Code"] == "InvalidRequest", r
# With REPLACE it is a metadata change, as in S3.
s3.copy_object(Bucket=B, Key=K, CopySource={"Bucket": B, "Key": K},
               MetadataDirective="REPLACE", ContentType="text/markdown")
h = s3.head_object(Bucket=B, Key=K)
assert h["ContentType"] == "text/markdown" and h["ETag"] == md5(body), h
assert s3.get_object(Bucket=B, Key=K)["Body"].read() == body
print("ok")
"#
    );
    let out = python(&srv, home, &script, &[]);
    assert!(out.contains("ok"), "{out}");
    srv.stop();
}

#[test]
fn boto3_conditional_requests() {
    let d = Deployment::new(&config());
    let home = d.path();
    let srv = Server::start(&d, Some(64 << 20));
    add_subject(&srv, "zq-cond", "IN");
    let script = format!(
        "{BOTO_PRELUDE}{}",
        r#"
K = "users/zq-cond/doc.txt"
body = b"conditional"
etag = s3.put_object(Bucket=B, Key=K, Body=body)["ETag"]
lm = s3.head_object(Bucket=B, Key=K)["ResponseMetadata"]["HTTPHeaders"]["last-modified"]

# 304 and 412 carry the ETag and Last-Modified.
for f, status in [
    (lambda: s3.get_object(Bucket=B, Key=K, IfNoneMatch=etag), 304),
    (lambda: s3.head_object(Bucket=B, Key=K, IfNoneMatch=etag), 304),
    (lambda: s3.get_object(Bucket=B, Key=K, IfMatch='"0000"'), 412),
    (lambda: s3.head_object(Bucket=B, Key=K, IfMatch='"0000"'), 412),
]:
    r = err(f)
    assert r is not None and r["ResponseMetadata"]["HTTPStatusCode"] == status, r
    hh = r["ResponseMetadata"]["HTTPHeaders"]
    assert hh.get("etag") == etag, hh
    assert hh.get("last-modified") == lm, hh

# Conditional PUT: If-None-Match: * on an existing key, If-Match.
assert code(lambda: s3.put_object(Bucket=B, Key=K, Body=b"x", IfNoneMatch="*")) == ("PreconditionFailed", 412)
assert code(lambda: s3.put_object(Bucket=B, Key=K, Body=b"x", IfMatch='"0000"')) == ("PreconditionFailed", 412)
assert code(lambda: s3.put_object(Bucket=B, Key="users/zq-cond/none", Body=b"x", IfMatch=etag)) == ("NoSuchKey", 404)
assert s3.get_object(Bucket=B, Key=K)["Body"].read() == body, "refused writes changed nothing"
e2 = s3.put_object(Bucket=B, Key=K, Body=b"second", IfMatch=etag)["ETag"]
assert e2 == md5(b"second"), e2
assert code(lambda: s3.put_object(Bucket=B, Key=K, Body=b"third", IfMatch=etag)) == ("PreconditionFailed", 412)
s3.put_object(Bucket=B, Key="users/zq-cond/new", Body=b"n", IfNoneMatch="*")

# Racing If-None-Match: * PUTs of one new key: exactly one wins.
N = 8
results = [None] * N
start = threading.Barrier(N)
def racer(i):
    c = client()
    start.wait()
    try:
        c.put_object(Bucket=B, Key="users/zq-cond/race", Body=("writer %d" % i).encode(), IfNoneMatch="*")
        results[i] = "won"
    except ClientError as e:
        results[i] = (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
threads = [threading.Thread(target=racer, args=(i,)) for i in range(N)]
for t in threads: t.start()
for t in threads: t.join()
won = [i for i, r in enumerate(results) if r == "won"]
assert len(won) == 1, results
assert all(r == ("PreconditionFailed", 412) for i, r in enumerate(results) if i != won[0]), results
assert s3.get_object(Bucket=B, Key="users/zq-cond/race")["Body"].read() == ("writer %d" % won[0]).encode()

# DeleteObject If-Match.
cur = s3.head_object(Bucket=B, Key=K)["ETag"]
assert code(lambda: s3.delete_object(Bucket=B, Key=K, IfMatch=etag)) == ("PreconditionFailed", 412)
assert s3.head_object(Bucket=B, Key=K)["ETag"] == cur, "a refused delete deletes nothing"
assert code(lambda: s3.delete_object(Bucket=B, Key="users/zq-cond/gone", IfMatch=etag)) == ("NoSuchKey", 404)
s3.delete_object(Bucket=B, Key=K, IfMatch=cur)
assert code(lambda: s3.head_object(Bucket=B, Key=K)) == ("404", 404)

# DeleteObjects: each object's ETag is a condition of its own.
ea = s3.put_object(Bucket=B, Key="users/zq-cond/a", Body=b"a")["ETag"]
s3.put_object(Bucket=B, Key="users/zq-cond/b", Body=b"b")
r = s3.delete_objects(Bucket=B, Delete={"Objects": [
    {"Key": "users/zq-cond/a", "ETag": ea},
    {"Key": "users/zq-cond/b", "ETag": '"0000"'},
]})
assert [d["Key"] for d in r.get("Deleted", [])] == ["users/zq-cond/a"], r
assert [(e["Key"], e["Code"]) for e in r.get("Errors", [])] == [("users/zq-cond/b", "PreconditionFailed")], r
assert code(lambda: s3.head_object(Bucket=B, Key="users/zq-cond/a")) == ("404", 404)
assert s3.get_object(Bucket=B, Key="users/zq-cond/b")["Body"].read() == b"b"
print("ok")
"#
    );
    let out = python(&srv, home, &script, &[]);
    assert!(out.contains("ok"), "{out}");
    srv.stop();
}

#[test]
fn boto3_buckets_owners_and_folder_keys() {
    let d = Deployment::new(&config());
    let home = d.path();
    let srv = Server::start(&d, Some(64 << 20));
    add_subject(&srv, "zq-fold", "IN");
    let script = format!(
        "{BOTO_PRELUDE}{}",
        r#"
# NoSuchBucket for every operation on a bucket the config does not name.
N = "no-such-bucket"
K = "users/zq-fold/x"
for name, f in [
    ("get", lambda: s3.get_object(Bucket=N, Key=K)),
    ("put", lambda: s3.put_object(Bucket=N, Key=K, Body=b"x")),
    ("delete", lambda: s3.delete_object(Bucket=N, Key=K)),
    ("list2", lambda: s3.list_objects_v2(Bucket=N)),
    ("list1", lambda: s3.list_objects(Bucket=N)),
    ("copy", lambda: s3.copy_object(Bucket=N, Key=K, CopySource={"Bucket": B, "Key": K})),
    ("copy-from", lambda: s3.copy_object(Bucket=B, Key=K, CopySource={"Bucket": N, "Key": K})),
    ("delete-many", lambda: s3.delete_objects(Bucket=N, Delete={"Objects": [{"Key": K}]})),
    ("delete-bucket", lambda: s3.delete_bucket(Bucket=N)),
    ("location", lambda: s3.get_bucket_location(Bucket=N)),
    ("versioning", lambda: s3.get_bucket_versioning(Bucket=N)),
    ("uploads", lambda: s3.create_multipart_upload(Bucket=N, Key=K)),
    ("key-outside", lambda: s3.get_object(Bucket=N, Key="nowhere")),
]:
    assert code(f) == ("NoSuchBucket", 404), (name, code(f))
assert code(lambda: s3.head_bucket(Bucket=N)) == ("404", 404)
assert code(lambda: s3.head_object(Bucket=N, Key=K)) == ("404", 404)
assert code(lambda: s3.delete_bucket(Bucket=B))[0] == "AccessDenied"

# ListBuckets: name order, paged, filtered by prefix.
assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["archive", "bkt-b", "bkt-c", "user-data"]
p1 = s3.list_buckets(MaxBuckets=3)
assert [b["Name"] for b in p1["Buckets"]] == ["archive", "bkt-b", "bkt-c"], p1
assert p1.get("ContinuationToken"), p1
p2 = s3.list_buckets(MaxBuckets=3, ContinuationToken=p1["ContinuationToken"])
assert [b["Name"] for b in p2["Buckets"]] == ["user-data"], p2
assert not p2.get("ContinuationToken"), p2
p = s3.list_buckets(Prefix="bkt-")
assert [b["Name"] for b in p["Buckets"]] == ["bkt-b", "bkt-c"] and p["Prefix"] == "bkt-", p
assert code(lambda: s3.list_buckets(MaxBuckets=3, ContinuationToken="zz"))[0] == "InvalidArgument"

# Folder keys and empty segments, stored and listed as S3 lists them.
F = "users/zq-fold/"
keys = [F, F + "photos/", F + "photos/a.jpg", F + "photos/2024/", F + "photos/2024/b.jpg",
        F + "a//b", F + "trailing/"]
for k in keys:
    s3.put_object(Bucket=B, Key=k, Body=b"" if k.endswith("/") else k.encode())
for k in keys:
    assert s3.head_object(Bucket=B, Key=k)["ContentLength"] == (0 if k.endswith("/") else len(k)), k
flat = s3.list_objects_v2(Bucket=B, Prefix=F)
assert [o["Key"] for o in flat["Contents"]] == sorted(keys), flat["Contents"]
top = s3.list_objects_v2(Bucket=B, Prefix=F, Delimiter="/")
assert [o["Key"] for o in top.get("Contents", [])] == [F], top
assert [p["Prefix"] for p in top["CommonPrefixes"]] == [F + "a/", F + "photos/", F + "trailing/"], top
inner = s3.list_objects_v2(Bucket=B, Prefix=F + "photos/", Delimiter="/")
assert [o["Key"] for o in inner["Contents"]] == [F + "photos/", F + "photos/a.jpg"], inner
assert [p["Prefix"] for p in inner["CommonPrefixes"]] == [F + "photos/2024/"], inner
dbl = s3.list_objects_v2(Bucket=B, Prefix=F + "a/", Delimiter="/")
assert [p["Prefix"] for p in dbl["CommonPrefixes"]] == [F + "a//"], dbl
above = s3.list_objects_v2(Bucket=B, Prefix="users/", Delimiter="/")
assert F in [p["Prefix"] for p in above["CommonPrefixes"]], above
# A folder above the subject level names no subject; `..` is refused.
assert code(lambda: s3.put_object(Bucket=B, Key="users/", Body=b""))[0] == "AccessDenied"
assert code(lambda: s3.put_object(Bucket=B, Key=F + "x/../y", Body=b""))[0] == "InvalidArgument"
s3.delete_object(Bucket=B, Key=F + "photos/")
assert s3.get_object(Bucket=B, Key=F + "photos/a.jpg")["Body"].read() == (F + "photos/a.jpg").encode()

# Owners: ListObjectsV2 with FetchOwner only, ListObjects always.
v2 = s3.list_objects_v2(Bucket=B, Prefix=F)
assert all("Owner" not in o for o in v2["Contents"]), v2["Contents"][0]
v2 = s3.list_objects_v2(Bucket=B, Prefix=F, FetchOwner=True)
assert all(o["Owner"]["ID"] == "domicile" for o in v2["Contents"]), v2["Contents"][0]
v1 = s3.list_objects(Bucket=B, Prefix=F)
assert all(o["Owner"]["ID"] == "domicile" for o in v1["Contents"]), v1["Contents"][0]
print("ok")
"#
    );
    let out = python(&srv, home, &script, &[]);
    assert!(out.contains("ok"), "{out}");
    srv.stop();
}

/// PutObject and UploadPart sent with `Transfer-Encoding: chunked`, no
/// `Content-Length` and an unsigned payload (`UNSIGNED-PAYLOAD`), as a
/// client streaming a body of unknown length sends them: stored byte-exact
/// up to the size limit, refused with `EntityTooLarge` and nothing stored
/// past it.
#[test]
fn chunked_uploads_without_content_length() {
    const MAX: usize = 256 << 10;
    let d = Deployment::new(&config());
    let home = d.path();
    let srv = Server::start(&d, Some(MAX as u64));
    add_subject(&srv, "zq-chunk", "IN");
    let script = format!(
        "{BOTO_PRELUDE}MAX = {MAX}\n{}",
        r#"
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

class Unsigned(S3SigV4Auth):
    def _should_sha256_sign_payload(self, request):
        return False

creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])

def chunked_put(path, body, piece=16 << 10, signed=False):
    url = os.environ["ENDPOINT"] + path
    req = AWSRequest(method="PUT", url=url, data=body)
    (S3SigV4Auth if signed else Unsigned)(creds, "s3", "us-east-1").add_auth(req)
    headers = {k: v for k, v in req.headers.items() if k.lower() != "content-length"}
    assert (headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD") != signed, headers
    def pieces():
        for i in range(0, len(body), piece):
            yield body[i:i + piece]
    r = requests.put(url, data=pieces(), headers=headers)
    sent = r.request.headers
    assert "Content-Length" not in sent and sent["Transfer-Encoding"] == "chunked", sent
    return r

def refused_too_large(r):
    assert r.status_code == 400 and "<Code>EntityTooLarge</Code>" in r.text, (r.status_code, r.text)

P = "users/zq-chunk/"
body = os.urandom(MAX - 1000)

# PutObject: byte-exact, with the MD5 ETag; exactly the limit is accepted.
r = chunked_put(f"/{B}/{P}a.bin", body)
assert r.status_code == 200, (r.status_code, r.text)
assert r.headers["ETag"] == md5(body), r.headers
g = s3.get_object(Bucket=B, Key=P + "a.bin")
assert g["ETag"] == md5(body) and g["ContentLength"] == len(body), g
assert g["Body"].read() == body
full = os.urandom(MAX)
r = chunked_put(f"/{B}/{P}full.bin", full)
assert r.status_code == 200 and r.headers["ETag"] == md5(full), (r.status_code, r.text)
assert s3.get_object(Bucket=B, Key=P + "full.bin")["Body"].read() == full
r = chunked_put(f"/{B}/{P}empty", b"")
assert r.status_code == 200 and r.headers["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"', (r.status_code, r.text)
assert s3.get_object(Bucket=B, Key=P + "empty")["Body"].read() == b""

# One byte over the limit: refused, nothing stored, an existing object kept.
refused_too_large(chunked_put(f"/{B}/{P}over.bin", os.urandom(MAX + 1)))
assert code(lambda: s3.head_object(Bucket=B, Key=P + "over.bin")) == ("404", 404)
refused_too_large(chunked_put(f"/{B}/{P}a.bin", os.urandom(MAX + 1)))
assert s3.get_object(Bucket=B, Key=P + "a.bin")["Body"].read() == body

# A payload signed with its hash still needs its length, as s3s checks it.
r = chunked_put(f"/{B}/{P}signed.bin", body, signed=True)
assert r.status_code == 411 and "<Code>MissingContentLength</Code>" in r.text, (r.status_code, r.text)
assert code(lambda: s3.head_object(Bucket=B, Key=P + "signed.bin")) == ("404", 404)

# UploadPart: the same, part by part.
K = P + "multi.bin"
up = s3.create_multipart_upload(Bucket=B, Key=K)["UploadId"]
r = chunked_put(f"/{B}/{K}?partNumber=1&uploadId={up}", body)
assert r.status_code == 200 and r.headers["ETag"] == md5(body), (r.status_code, r.text)
refused_too_large(chunked_put(f"/{B}/{K}?partNumber=2&uploadId={up}", os.urandom(MAX + 1)))
parts = s3.list_parts(Bucket=B, Key=K, UploadId=up).get("Parts", [])
assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, md5(body), len(body))], parts
s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": md5(body)}]})
assert s3.get_object(Bucket=B, Key=K)["Body"].read() == body
print("ok")
"#
    );
    let out = python(&srv, home, &script, &[]);
    assert!(out.contains("ok"), "{out}");
    srv.stop();
}
