//! `domicile serve` end to end, body checksums as current S3 clients send
//! them by default, over HTTPS (where boto3 and the aws cli send their
//! CRC32 as the trailer of an aws-chunked body) and over HTTP (where they
//! send it as a header):
//!
//! - PutObject with every algorithm (CRC32, CRC32C, CRC64NVME, SHA1,
//!   SHA256) and Content-MD5: verified as the body streams (`BadDigest` on
//!   a mismatch, and nothing is stored), stored, and returned by GET and
//!   HEAD with `x-amz-checksum-mode: ENABLED` only; CRC64NVME when the
//!   client sends none, as S3 does;
//! - multipart uploads: each part verified and its checksum listed; the
//!   object's COMPOSITE (`-N`) or FULL_OBJECT checksum as S3 computes it;
//!   wrong part or object checksums at completion refused;
//! - the aws cli's `s3 cp` (single and multipart) and `s3api` with a wrong
//!   Content-MD5.
//!
//! The expected values are computed by the test's own Python (zlib, hashlib
//! and table CRCs), never by the server. The clients must be installed: a
//! missing one fails the test.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use domicile_test_support::tls::Ca;
use serde_json::Value;

const SUBJECT: &str = "zq-subject-sum";

/// CRCs and helpers, shared by the scripts.
const PRELUDE: &str = r#"
import base64, hashlib, io, os, random, time, zlib
import boto3, botocore.httpchecksum
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

def table(poly, bits):
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t

T32C = table(0x82F63B78, 32)
T64 = table(0x9A6C9329AC4BC9B5, 64)

def crc_raw(t, mask, data):
    c = mask
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ mask

def b64(b):
    return base64.b64encode(b).decode()

def crc32(d): return zlib.crc32(d).to_bytes(4, "big")
def crc32c(d): return crc_raw(T32C, 0xFFFFFFFF, d).to_bytes(4, "big")
def crc64nvme(d): return crc_raw(T64, 0xFFFFFFFFFFFFFFFF, d).to_bytes(8, "big")
def sha1(d): return hashlib.sha1(d).digest()
def sha256(d): return hashlib.sha256(d).digest()

assert b64(crc32c(b"Hello world")) == "crUfeA=="
assert b64(crc64nvme(b"Hello world")) == "OOJZ0D8xKts="

kw = {"verify": os.environ["CA"]} if os.environ.get("CA") else {}
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}), **kw)
B = "user-data"
P = "users/zq-subject-sum/"
MiB = 1 << 20
rnd = random.Random(29)

def code(f):
    try:
        f()
        return None
    except ClientError as e:
        return e.response["Error"]["Code"]

def absent(k):
    return code(lambda: s3.head_object(Bucket=B, Key=k)) in ("404", "NoSuchKey")

def sums(h):
    return {a: h.get("Checksum" + a) for a in ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256") if h.get("Checksum" + a)}
"#;

const PUTS: &str = r#"
# The client's default: CRC32 (a trailer over HTTPS, a header over HTTP).
data = rnd.randbytes(300_000)
r = s3.put_object(Bucket=B, Key=P + "default.bin", Body=data)
assert r.get("ChecksumCRC32") == b64(crc32(data)), r
h = s3.head_object(Bucket=B, Key=P + "default.bin", ChecksumMode="ENABLED")
assert sums(h) == {"CRC32": b64(crc32(data))} and h["ChecksumType"] == "FULL_OBJECT", h
assert sums(s3.head_object(Bucket=B, Key=P + "default.bin")) == {}, "returned only when asked"
at = s3.get_object_attributes(Bucket=B, Key=P + "default.bin", ObjectAttributes=["Checksum", "ObjectSize"])
assert at["Checksum"] == {"ChecksumCRC32": b64(crc32(data)), "ChecksumType": "FULL_OBJECT"}, at
assert at["ObjectSize"] == len(data) and "ObjectParts" not in at and "ETag" not in at, at
g = s3.get_object(Bucket=B, Key=P + "default.bin", ChecksumMode="ENABLED")
assert g["Body"].read() == data and sums(g) == {"CRC32": b64(crc32(data))}, g
g = s3.get_object(Bucket=B, Key=P + "default.bin", ChecksumMode="ENABLED", Range="bytes=1-9")
assert sums(g) == {}, "a range has no checksum"

# Algorithms the client computes (SHA1, SHA256) and values given as headers
# (CRC32C and CRC64NVME need the CRT in botocore: the test computes them).
for alg, f in (("SHA1", sha1), ("SHA256", sha256)):
    r = s3.put_object(Bucket=B, Key=P + alg, Body=data, ChecksumAlgorithm=alg)
    assert r.get("Checksum" + alg) == b64(f(data)), (alg, r)
    h = s3.head_object(Bucket=B, Key=P + alg, ChecksumMode="ENABLED")
    assert sums(h) == {alg: b64(f(data))}, (alg, h)
for alg, f in (("CRC32C", crc32c), ("CRC64NVME", crc64nvme), ("SHA256", sha256), ("CRC32", crc32)):
    k = P + "given-" + alg
    s3.put_object(Bucket=B, Key=k, Body=data[:5000], **{"Checksum" + alg: b64(f(data[:5000]))})
    h = s3.head_object(Bucket=B, Key=k, ChecksumMode="ENABLED")
    assert sums(h) == {alg: b64(f(data[:5000]))}, (alg, h)
    # A wrong value: BadDigest, and the object is not replaced.
    wrong = b64(f(data[:4999]))
    assert code(lambda: s3.put_object(Bucket=B, Key=k, Body=b"other", **{"Checksum" + alg: b64(f(b"else"))})) == "BadDigest", alg
    assert code(lambda: s3.put_object(Bucket=B, Key=k + ".new", Body=data[:5000], **{"Checksum" + alg: wrong})) == "BadDigest", alg
    assert absent(k + ".new"), alg
    assert s3.get_object(Bucket=B, Key=k)["Body"].read() == data[:5000], alg

# Content-MD5.
md5 = b64(hashlib.md5(data).digest())
s3.put_object(Bucket=B, Key=P + "md5.bin", Body=data, ContentMD5=md5)
assert code(lambda: s3.put_object(Bucket=B, Key=P + "md5-bad.bin", Body=data,
                                  ContentMD5=b64(hashlib.md5(b"x").digest()))) == "BadDigest"
assert absent(P + "md5-bad.bin")
assert code(lambda: s3.put_object(Bucket=B, Key=P + "md5-bad.bin", Body=data, ContentMD5="bm90")) == "InvalidDigest"

# The client's own checksum computed wrong (the trailer over HTTPS).
good = botocore.httpchecksum.Crc32Checksum.b64digest
botocore.httpchecksum.Crc32Checksum.b64digest = lambda self: b64(crc32(b"not the body"))
assert code(lambda: s3.put_object(Bucket=B, Key=P + "default.bin", Body=b"replacement")) == "BadDigest"
assert code(lambda: s3.put_object(Bucket=B, Key=P + "bad-trailer.bin", Body=data)) == "BadDigest"
botocore.httpchecksum.Crc32Checksum.b64digest = good
assert absent(P + "bad-trailer.bin")
assert s3.get_object(Bucket=B, Key=P + "default.bin")["Body"].read() == data

# Without any checksum from the client: CRC64NVME, as S3 adds by default.
nochk = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                     config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                   retries={"total_max_attempts": 1}), **kw)
nochk.put_object(Bucket=B, Key=P + "plain.bin", Body=data[:7000])
h = s3.head_object(Bucket=B, Key=P + "plain.bin", ChecksumMode="ENABLED")
assert sums(h) == {"CRC64NVME": b64(crc64nvme(data[:7000]))}, h

# CopyObject: the copy's checksum is computed as it is written.
s3.copy_object(Bucket=B, Key=P + "copy.bin", CopySource={"Bucket": B, "Key": P + "SHA1"})
assert sums(s3.head_object(Bucket=B, Key=P + "copy.bin", ChecksumMode="ENABLED")) == {"SHA1": b64(sha1(data))}
print("PUTS OK")
"#;

const PARTS: &str = r#"
def crc_parts(f, parts):
    return b64(f(b"".join(f(p) for p in parts))) + "-%d" % len(parts)

# A managed upload with the client's defaults: CRC32, COMPOSITE.
data = rnd.randbytes(11 * MiB)
cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
s3.upload_fileobj(io.BytesIO(data), B, P + "managed.bin", Config=cfg)
chunks = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
h = s3.head_object(Bucket=B, Key=P + "managed.bin", ChecksumMode="ENABLED")
assert sums(h) == {"CRC32": crc_parts(crc32, chunks)} and h["ChecksumType"] == "COMPOSITE", h
assert s3.get_object(Bucket=B, Key=P + "managed.bin")["Body"].read() == data

# SHA256, COMPOSITE: parts verified and listed; a wrong part is refused
# and the part sent before it stays.
K = P + "sha.bin"
up = s3.create_multipart_upload(Bucket=B, Key=K, ChecksumAlgorithm="SHA256")
assert up["ChecksumAlgorithm"] == "SHA256" and up.get("ChecksumType") == "COMPOSITE", up
up = up["UploadId"]
a, b = rnd.randbytes(5 * MiB), b"tail" * 100
ra = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=1, Body=a, ChecksumAlgorithm="SHA256")
assert ra["ChecksumSHA256"] == b64(sha256(a)), ra
rb = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=2, Body=b, ChecksumSHA256=b64(sha256(b)))
assert code(lambda: s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=2, Body=b"x" + b,
                                   ChecksumSHA256=b64(sha256(b)))) == "BadDigest"
assert code(lambda: s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=3, Body=b,
                                   ChecksumCRC32C=b64(crc32c(b)))) == "InvalidRequest"
lp = s3.list_parts(Bucket=B, Key=K, UploadId=up)
assert [(p["PartNumber"], p["ChecksumSHA256"], p["Size"]) for p in lp["Parts"]] == \
    [(1, b64(sha256(a)), len(a)), (2, b64(sha256(b)), len(b))], lp
assert lp["ChecksumAlgorithm"] == "SHA256", lp
parts = [{"PartNumber": 1, "ETag": ra["ETag"], "ChecksumSHA256": b64(sha256(a))},
         {"PartNumber": 2, "ETag": rb["ETag"], "ChecksumSHA256": b64(sha256(b"wrong"))}]
assert code(lambda: s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up, MultipartUpload={"Parts": parts})) == "InvalidPart"
parts[1]["ChecksumSHA256"] = b64(sha256(b))
r = s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up, MultipartUpload={"Parts": parts})
want = crc_parts(sha256, [a, b])
assert r["ChecksumSHA256"] == want and r["ChecksumType"] == "COMPOSITE", r
h = s3.head_object(Bucket=B, Key=K, ChecksumMode="ENABLED")
assert sums(h) == {"SHA256": want} and h["ChecksumType"] == "COMPOSITE", h
at = s3.get_object_attributes(Bucket=B, Key=K, ObjectAttributes=["ETag", "Checksum", "ObjectParts", "ObjectSize", "StorageClass"])
assert at["Checksum"] == {"ChecksumSHA256": want, "ChecksumType": "COMPOSITE"}, at
assert at["ObjectSize"] == len(a) + len(b) and '"%s"' % at["ETag"].strip('"') == r["ETag"], at
assert at["ObjectParts"]["TotalPartsCount"] == 2 and at["StorageClass"] == "STANDARD", at
at = s3.get_object_attributes(Bucket=B, Key=K, ObjectAttributes=["ObjectParts"], MaxParts=1)
op = at["ObjectParts"]
assert [(p["PartNumber"], p["Size"], p["ChecksumSHA256"]) for p in op["Parts"]] == [(1, len(a), b64(sha256(a)))], at
assert op["IsTruncated"], at
assert op["NextPartNumberMarker"] == 1 and "Checksum" not in at and "ObjectSize" not in at, at
at = s3.get_object_attributes(Bucket=B, Key=K, ObjectAttributes=["ObjectParts"], PartNumberMarker=1)
assert [(p["PartNumber"], p["Size"]) for p in at["ObjectParts"]["Parts"]] == [(2, len(b))], at
assert not at["ObjectParts"]["IsTruncated"], at
assert code(lambda: s3.get_object_attributes(Bucket=B, Key=K, ObjectAttributes=["Colour"])) == "InvalidArgument"
# A part read with partNumber: that part's checksum.
g = s3.get_object(Bucket=B, Key=K, PartNumber=2, ChecksumMode="ENABLED")
assert g["Body"].read() == b and sums(g) == {"SHA256": b64(sha256(b))}, g
h = s3.head_object(Bucket=B, Key=K, PartNumber=1, ChecksumMode="ENABLED")
assert sums(h) == {"SHA256": b64(sha256(a))}, h
assert sums(s3.head_object(Bucket=B, Key=K, PartNumber=1)) == {}

# CRC32, FULL_OBJECT: the parts' CRCs combined into the whole's; a wrong
# whole is refused with BadDigest and the upload is still there.
K = P + "full.bin"
up = s3.create_multipart_upload(Bucket=B, Key=K, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")["UploadId"]
a, b = rnd.randbytes(5 * MiB), rnd.randbytes(1000)
ra = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=1, Body=a, ChecksumCRC32=b64(crc32(a)))
rb = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=2, Body=b)
parts = [{"PartNumber": 1, "ETag": ra["ETag"]}, {"PartNumber": 2, "ETag": rb["ETag"]}]
assert code(lambda: s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up, MultipartUpload={"Parts": parts},
                                                 ChecksumCRC32=b64(crc32(a)), ChecksumType="FULL_OBJECT")) == "BadDigest"
assert code(lambda: s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up, MultipartUpload={"Parts": parts},
                                                 ChecksumType="COMPOSITE")) == "InvalidRequest"
r = s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up, MultipartUpload={"Parts": parts},
                                 ChecksumCRC32=b64(crc32(a + b)), ChecksumType="FULL_OBJECT")
assert r["ChecksumCRC32"] == b64(crc32(a + b)) and r["ChecksumType"] == "FULL_OBJECT", r

# No algorithm: the parts carry the client's CRC32, the object gets S3's
# default full-object CRC64NVME.
K = P + "noalg.bin"
up = s3.create_multipart_upload(Bucket=B, Key=K)["UploadId"]
ra = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=1, Body=a)
assert ra["ChecksumCRC32"] == b64(crc32(a)), ra
rb = s3.upload_part(Bucket=B, Key=K, UploadId=up, PartNumber=2, Body=b)
s3.complete_multipart_upload(Bucket=B, Key=K, UploadId=up, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": ra["ETag"]}, {"PartNumber": 2, "ETag": rb["ETag"]}]})
h = s3.head_object(Bucket=B, Key=K, ChecksumMode="ENABLED")
assert sums(h) == {"CRC64NVME": b64(crc64nvme(a + b))} and h["ChecksumType"] == "FULL_OBJECT", h

# What S3 refuses at creation.
for bad in ({"ChecksumAlgorithm": "SHA1", "ChecksumType": "FULL_OBJECT"},
            {"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "COMPOSITE"},
            {"ChecksumType": "COMPOSITE"}):
    assert code(lambda: s3.create_multipart_upload(Bucket=B, Key=P + "bad", **bad)) == "InvalidRequest", bad

# ListMultipartUploads: one key's uploads in the order they were started
# (ids are random: start them until the ids are out of order), with the
# credential that started them as Initiator.
K = P + "order.bin"
ids = [s3.create_multipart_upload(Bucket=B, Key=K)["UploadId"]]
while len(ids) < 12 and sorted(ids) == ids:
    time.sleep(0.01)
    ids.append(s3.create_multipart_upload(Bucket=B, Key=K)["UploadId"])
assert sorted(ids) != ids, ids
s3.upload_part(Bucket=B, Key=K, UploadId=ids[0], PartNumber=1, Body=b"left")
ups = s3.list_multipart_uploads(Bucket=B, Prefix=K)["Uploads"]
assert [u["UploadId"] for u in ups] == ids, (ups, ids)
assert all(u["Initiator"]["ID"] == "default" and u["Owner"]["ID"] == "domicile" for u in ups), ups
page = s3.list_multipart_uploads(Bucket=B, Prefix=K, MaxUploads=1, KeyMarker=K, UploadIdMarker=ids[0])
assert [u["UploadId"] for u in page["Uploads"]] == ids[1:2], page
lp = s3.list_parts(Bucket=B, Key=K, UploadId=ids[0])
assert lp["Initiator"]["ID"] == "default" and lp["Owner"]["ID"] == "domicile", lp
print("PARTS OK")
"#;

/// aws-chunked bodies signed chunk by chunk (SigV4 streaming), sent with
/// HTTP/1.1 chunked transfer encoding and no Content-Length, only
/// `x-amz-decoded-content-length`: the way SDKs stream a body of unknown
/// length. With a checksum trailer (signed) and without one; a trailer
/// that does not match is `BadDigest`, a chunk signature that does not
/// match stores nothing.
const SIGNED_CHUNKS: &str = r#"
import datetime, hmac, http.client, urllib.parse
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
EMPTY = hashlib.sha256(b"").hexdigest()

class Streaming(SigV4Auth):
    def __init__(self, payload):
        super().__init__(creds, "s3", "us-east-1")
        self.p = payload
    def payload(self, request):
        return self.p

def hm(k, m):
    return hmac.new(k, m.encode(), hashlib.sha256).digest()

def put(key, pieces, trailer=None, tamper=False):
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    url = os.environ["ENDPOINT"] + "/" + B + "/" + key
    total = sum(len(p) for p in pieces)
    headers = {"X-Amz-Content-SHA256": mode, "Content-Encoding": "aws-chunked",
               "X-Amz-Decoded-Content-Length": str(total)}
    if trailer:
        headers["X-Amz-Trailer"] = trailer[0]
    req = AWSRequest(method="PUT", url=url, headers=headers)
    Streaming(mode).add_auth(req)
    auth = req.headers["Authorization"]
    seed = auth.split("Signature=")[1]
    amz_date = req.headers["X-Amz-Date"]
    scope = "%s/us-east-1/s3/aws4_request" % amz_date[:8]
    key_ = hm(hm(hm(hm(("AWS4" + creds.secret_key).encode(), amz_date[:8]), "us-east-1"), "s3"), "aws4_request")
    prev, body = seed, []
    for chunk in pieces + [b""]:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY,
                         hashlib.sha256(chunk).hexdigest()])
        sig = hmac.new(key_, sts.encode(), hashlib.sha256).hexdigest()
        if tamper and chunk:
            sig = "0" * 64
        body.append(b"%x;chunk-signature=%s\r\n" % (len(chunk), sig.encode()) + chunk + b"\r\n")
        prev = sig
    if trailer:
        line = "%s:%s" % trailer
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev,
                         hashlib.sha256((line + "\n").encode()).hexdigest()])
        tsig = hmac.new(key_, sts.encode(), hashlib.sha256).hexdigest()
        body[-1] = body[-1][:-2] + (line + "\r\nx-amz-trailer-signature:" + tsig + "\r\n\r\n").encode()
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    send = {k: v for k, v in req.headers.items()}
    conn.request("PUT", u.path, body=iter(body), headers=send, encode_chunked=True)
    r = conn.getresponse()
    text = r.read().decode()
    assert "Content-Length" not in send and "content-length" not in {k.lower() for k in send}
    return r.status, text

pieces = [rnd.randbytes(70_000), rnd.randbytes(70_000), b"end"]
data = b"".join(pieces)
st, text = put(P + "signed.bin", pieces)
assert st == 200, (st, text)
assert s3.get_object(Bucket=B, Key=P + "signed.bin")["Body"].read() == data
st, text = put(P + "signed-trailer.bin", pieces, ("x-amz-checksum-crc32c", b64(crc32c(data))))
assert st == 200, (st, text)
h = s3.head_object(Bucket=B, Key=P + "signed-trailer.bin", ChecksumMode="ENABLED")
assert sums(h) == {"CRC32C": b64(crc32c(data))}, h
st, text = put(P + "signed-bad.bin", pieces, ("x-amz-checksum-crc32c", b64(crc32c(b"other"))))
assert st == 400 and "BadDigest" in text, (st, text)
st, text = put(P + "signed-tampered.bin", pieces, tamper=True)
assert st in (400, 403), (st, text)
assert absent(P + "signed-bad.bin") and absent(P + "signed-tampered.bin")
print("SIGNED OK")
"#;

fn tls_server() -> (Deployment, Server, PathBuf) {
    let ca = Ca::new("domicile test CA");
    let d = Deployment::new(&format!(
        "{EXAMPLE}\n[server]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n"
    ));
    let pem = ca.server(&["localhost", "127.0.0.1"]);
    let dir = d.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key.pem"), &pem.key).unwrap();
    std::fs::write(dir.join("cert.pem"), &pem.cert).unwrap();
    let ca_file = d.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let srv = Server::start(&d, None);
    assert!(srv.s3.starts_with("https://"), "{}", srv.s3);
    let added = curl(
        "POST",
        &format!("{}/v1/subjects", srv.rest),
        &ca_file,
        Some(ADMIN),
        Some(&serde_json::json!({"subject": SUBJECT, "home": "SG"})),
    )
    .unwrap();
    assert_eq!(added.status, 201, "{}", added.body);
    (d, srv, ca_file)
}

#[test]
fn boto3_puts_over_https_verify_store_and_return_every_checksum() {
    let (d, srv, ca) = tls_server();
    let script = format!("{PRELUDE}{PUTS}");
    let out = python(&srv, d.path(), &script, &[("CA", ca.to_str().unwrap())]);
    assert!(out.contains("PUTS OK"), "{out}");
    let log = srv.stop();
    assert_no_personal_data(&d, &log, &[SUBJECT]);
}

#[test]
fn boto3_puts_over_http_send_checksums_as_headers_and_are_verified_alike() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start(&d, None);
    add_subject(&srv, SUBJECT, "SG");
    let script = format!("{PRELUDE}{PUTS}");
    let out = python(&srv, d.path(), &script, &[]);
    assert!(out.contains("PUTS OK"), "{out}");
    srv.stop();
}

#[test]
fn signed_aws_chunked_bodies_without_content_length_with_and_without_trailers() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start(&d, None);
    add_subject(&srv, SUBJECT, "SG");
    let script = format!("{PRELUDE}{SIGNED_CHUNKS}");
    let out = python(&srv, d.path(), &script, &[]);
    assert!(out.contains("SIGNED OK"), "{out}");
    srv.stop();
}

#[test]
fn boto3_multipart_checksums_composite_and_full_object() {
    let (d, srv, ca) = tls_server();
    let script = format!("{PRELUDE}{PARTS}");
    let out = python(&srv, d.path(), &script, &[("CA", ca.to_str().unwrap())]);
    assert!(out.contains("PARTS OK"), "{out}");
    srv.stop();
    // `domicile ls` shows the completed objects, not what the uploads (one
    // still in progress, with a part) staged; `--all` shows those too.
    let names = |all: bool| -> Vec<String> {
        let mut c = std::process::Command::new(BIN);
        c.current_dir(d.path())
            .env_remove("DOMICILE_TOKEN_KEY")
            .env_remove("DOMICILE_CONFIG")
            .args([
                "--config",
                "domicile.toml",
                "--format",
                "json",
                "ls",
                SUBJECT,
            ]);
        if all {
            c.arg("--all");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    let shown = names(false);
    assert_eq!(
        shown,
        ["full.bin", "managed.bin", "noalg.bin", "sha.bin"]
            .map(|n| format!("{BUCKET}/{n}"))
            .to_vec(),
        "{shown:?}"
    );
    let all = names(true);
    assert!(
        all.iter()
            .any(|n| n.contains("/.domicile-mpu/") && n.ends_with("/00001")),
        "{all:?}"
    );
}

/// The aws cli: `s3 cp` of a small and a large file (one PUT, then a
/// multipart upload, each with the cli's default CRC32), the checksums
/// read back with `--checksum-mode ENABLED`; a wrong Content-MD5 refused.
#[test]
fn aws_cli_uploads_carry_checksums_and_a_wrong_content_md5_is_refused() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start(&d, None);
    add_subject(&srv, SUBJECT, "SG");
    let small = d.path().join("small.bin");
    let large = d.path().join("large.bin");
    std::fs::write(&small, bytes(3, 200_000)).unwrap();
    std::fs::write(&large, bytes(4, 20 << 20)).unwrap();
    // The expected values, by Python's zlib (the cli splits into 8 MiB parts).
    let expect = |file: &PathBuf| -> (String, String) {
        let code = r#"
import base64, sys, zlib
d = open(sys.argv[1], "rb").read()
c = lambda b: zlib.crc32(b).to_bytes(4, "big")
parts = [d[i:i + 8 * 1024 * 1024] for i in range(0, len(d), 8 * 1024 * 1024)]
print(base64.b64encode(c(d)).decode())
print(base64.b64encode(c(b"".join(c(p) for p in parts))).decode() + "-%d" % len(parts))
"#;
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(code)
            .arg(file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines().map(str::to_string);
        (lines.next().unwrap(), lines.next().unwrap())
    };
    let key = |n: &str| format!("users/{SUBJECT}/{n}");
    for (file, name) in [(&small, "small.bin"), (&large, "large.bin")] {
        let target = format!("s3://{BUCKET}/{}", key(name));
        aws_ok(
            &srv,
            d.path(),
            &["s3", "cp", file.to_str().unwrap(), &target],
        );
        let head = aws_json(
            &srv,
            d.path(),
            &[
                "s3api",
                "head-object",
                "--bucket",
                BUCKET,
                "--key",
                &key(name),
                "--checksum-mode",
                "ENABLED",
            ],
        );
        let (whole, composite) = expect(file);
        let want = if name == "small.bin" {
            whole
        } else {
            composite
        };
        assert_eq!(
            head["ChecksumCRC32"].as_str(),
            Some(want.as_str()),
            "{name}: {head}"
        );
    }
    let out = aws(
        &srv,
        d.path(),
        &[
            "s3api",
            "put-object",
            "--bucket",
            BUCKET,
            "--key",
            &key("md5.bin"),
            "--body",
            small.to_str().unwrap(),
            "--content-md5",
            "1B2M2Y8AsgTpgAmY7PhCfg==",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BadDigest"), "{err}");
    let listed: Value = aws_json(
        &srv,
        d.path(),
        &[
            "s3api",
            "list-objects-v2",
            "--bucket",
            BUCKET,
            "--prefix",
            &key(""),
        ],
    );
    assert_eq!(
        key_list(&listed),
        vec![key("large.bin"), key("small.bin")],
        "nothing stored for the refused PUT"
    );
    srv.stop();
}
