//! Hostile input over the network: a real `domicile serve` is sent
//! thousands of malformed and truncated S3 and REST requests over raw TCP
//! (bad request lines, bad, duplicate and oversized headers, bad percent
//! encodings, truncated bodies, bad chunked encodings, garbage XML and
//! JSON, absurd lengths, bad SigV4 headers and presigned queries, paths
//! with `..`, NUL and bytes that are not UTF-8), from a seeded generator so
//! a failure replays. Some carry valid presigned signatures (made by boto3)
//! so that their garbage bodies reach the handlers.
//!
//! It passes when the server logs no panic, answers no malformed request
//! with a 5xx (not even `501 NotImplemented`: a request that names no S3
//! operation or signs with another algorithm gets a 4xx, as from AWS), and
//! still serves a normal boto3 PUT and GET at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use domicile_test_support::rng::Rng;
use serde_json::{Value, json};

const SEED: u64 = 0x0020_F022;
const REQUESTS: usize = 3000;

/// Presigned URLs for the S3 operations whose bodies the generator
/// garbles: their signatures cover the URL and the host only, so any body
/// reaches the handler.
const PRESIGN_SCRIPT: &str = r#"
import json, os, boto3
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
b = "user-data"
up = s3.create_multipart_upload(Bucket=b, Key="users/zq-hostile/mp.bin")["UploadId"]
s3.put_object(Bucket=b, Key="users/zq-hostile/a.txt", Body=b"seed object")
p = lambda op, **kw: s3.generate_presigned_url(op, Params=dict(Bucket=b, **kw), ExpiresIn=3600)
# boto3 will not presign an operation with a body (DeleteObjects): sign it by hand.
r = AWSRequest(method="POST", url=os.environ["ENDPOINT"] + "/" + b + "?delete")
S3SigV4QueryAuth(boto3.Session().get_credentials(), "s3", "us-east-1", expires=3600).add_auth(r)
print(json.dumps({
  "put": ["PUT", p("put_object", Key="users/zq-hostile/p.bin")],
  "part": ["PUT", p("upload_part", Key="users/zq-hostile/mp.bin", UploadId=up, PartNumber=1)],
  "complete": ["POST", p("complete_multipart_upload", Key="users/zq-hostile/mp.bin", UploadId=up)],
  "delete_objects": ["POST", r.url],
  "get": ["GET", p("get_object", Key="users/zq-hostile/a.txt")],
  "list": ["GET", p("list_objects_v2", Prefix="users/zq-hostile/")],
}))
"#;

const NORMAL_SCRIPT: &str = r#"
import os, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"],
                  config=Config(s3={"addressing_style": "path"}))
body = os.urandom(100000)
s3.put_object(Bucket="user-data", Key="users/zq-hostile/after.bin", Body=body)
got = s3.get_object(Bucket="user-data", Key="users/zq-hostile/after.bin")["Body"].read()
assert got == body, "read back other bytes"
print("NORMAL OK")
"#;

/// Where a request goes and whether its body is cut short (then the
/// write side is closed, so the server sees the end of the stream).
struct Hostile {
    api: Api,
    kind: &'static str,
    bytes: Vec<u8>,
    truncated: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    S3,
    Rest,
}

/// A presigned request: method, path and query, as boto3 signed it.
#[derive(Clone)]
struct Signed {
    method: String,
    target: String,
}

struct Generator {
    rng: Rng,
    s3_host: String,
    rest_host: String,
    signed: Vec<(String, Signed)>,
}

impl Generator {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.below(items.len() as u64) as usize]
    }

    fn garbage(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.next() as u8).collect()
    }

    fn host(&self, api: Api) -> &str {
        match api {
            Api::S3 => &self.s3_host,
            Api::Rest => &self.rest_host,
        }
    }

    fn request(&self, api: Api, line: &[u8], headers: &[Vec<u8>], body: &[u8]) -> Vec<u8> {
        let mut out = line.to_vec();
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(
            format!("Host: {}\r\nConnection: close\r\n", self.host(api)).as_bytes(),
        );
        for h in headers {
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        out
    }

    fn api(&mut self) -> Api {
        if self.rng.below(2) == 0 {
            Api::S3
        } else {
            Api::Rest
        }
    }

    fn path(&mut self, api: Api) -> String {
        let s3 = [
            "/",
            "/user-data",
            "/user-data/users/zq-hostile/a.txt",
            "/user-data/users/zq-hostile/new.bin",
            "/user-data/users/zq-hostile/../../../etc/passwd",
            "/user-data/users/zq-hostile/%2e%2e/%2e%2e/x",
            "/user-data/users/zq-hostile/a%00b",
            "/user-data/users/zq-hostile/%ff%fe%c0%af",
            "/user-data/users/zq-hostile/%",
            "/user-data/users/zq-hostile/%G1%1",
            "/user-data/users/%2fzq-hostile/x",
            "/user-data//users//zq-hostile//x",
            "/no-such-bucket/x",
            "/user-data/users/zq-hostile/.domicile-mpu/x/00001",
            "/user-data?list-type=2&prefix=users%2F&continuation-token=zz",
            "/user-data?list-type=2&continuation-token=%ff%fe&max-keys=-5",
            "/user-data?list-type=2&max-keys=99999999999999999999",
            "/user-data?delete",
            "/user-data/users/zq-hostile/mp.bin?uploads",
            "/user-data/users/zq-hostile/mp.bin?uploadId=..%2f..&partNumber=0",
            "/user-data/users/zq-hostile/mp.bin?uploadId=x&partNumber=99999999999",
            "/user-data?location&acl&tagging&versioning",
        ];
        let rest = [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v1/subjects",
            "/v1/subjects/zq-hostile",
            "/v1/subjects/%00",
            "/v1/subjects/..%2f..%2fetc",
            "/v1/subjects/%ff%fe",
            "/v1/subjects/%",
            "/v1/reports/residency",
            "/v1/reports/%c0%af",
            "/v1/plan?limit=-1",
            "/v1/plan?limit=99999999999999999999999",
            "/v1/demands",
            "/v1/ledger/verify",
            "/v1/policy?migrate=maybe",
            "/v1/policy/history",
            "/v1/migrations",
            "/v1/migrations/current/%2e%2e",
            "/v1/migrations/current/events?every_ms=0&max_seconds=1",
            "/v1/subjects?after=%ff%fe&limit=-3&home=%00&region=..",
            "/v1/subjects?limit=99999999999999999999999&after=",
            "/v1/subjects/import",
            "/v1/subjects/zq-hostile/rehome",
            "/v1/subjects/%00/ledger",
            "/v1/demands/-1",
            "/v1/demands/99999999999999999999",
            "/v1/ledger?after=-5&limit=0",
            "/v1/policy/explain?home=%00&category=..",
            "/v1/policy/diff?old=-1&new=99999999999999999999",
            "/v1/policy/check",
            "/v1/reach/%c0%af",
            "/v1/verify",
            "/v1/custodians/..%2f/rotate",
            "/v1/../../etc/passwd",
        ];
        match api {
            Api::S3 => self.pick(&s3).to_string(),
            Api::Rest => self.pick(&rest).to_string(),
        }
    }

    fn method(&mut self) -> &'static str {
        const METHODS: [&str; 7] = ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"];
        METHODS[self.rng.below(METHODS.len() as u64) as usize]
    }

    fn auth_headers(&mut self, api: Api) -> Vec<Vec<u8>> {
        let bearer = [
            format!("Authorization: Bearer {ADMIN}"),
            format!("Authorization: Bearer {AUDITOR}"),
            "Authorization: Bearer".to_string(),
            "Authorization: Bearer  ".to_string(),
            "Authorization: Basic YWRtaW46YWRtaW4=".to_string(),
            format!("Authorization: Bearer {}", "x".repeat(20_000)),
            format!("Authorization: bearer {ADMIN}"),
        ];
        let now = "20261204T180000Z";
        let sigv4 = [
            "Authorization: AWS4-HMAC-SHA256".to_string(),
            format!(
                "Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20261204/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
            ),
            format!(
                "Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}, SignedHeaders=, Signature="
            ),
            format!(
                "Authorization: AWS4-HMAC-SHA256 Credential=/////, SignedHeaders={}, Signature={}",
                "h;".repeat(5000),
                "f".repeat(64)
            ),
            format!(
                "Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/99999999/us-east-1/s3/aws4_request,SignedHeaders=host,Signature={}",
                "0".repeat(64)
            ),
            format!("Authorization: AWS {ACCESS_KEY}:c2lnbmF0dXJl"),
            "Authorization: AWS :".to_string(),
            format!(
                "Authorization: AWS4-HMAC-SHA256 Credential=\u{0}{ACCESS_KEY}/20261204/us-east-1/s3/aws4_request"
            ),
        ];
        let mut out = Vec::new();
        match api {
            Api::Rest => out.push(self.pick(&bearer).clone().into_bytes()),
            Api::S3 => {
                out.push(self.pick(&sigv4).clone().into_bytes());
                let date = [
                    format!("x-amz-date: {now}"),
                    "x-amz-date: yesterday".to_string(),
                    "x-amz-date: 99999999T999999Z".to_string(),
                    "Date: Fri, 04 Dec 2026 18:00:00 GMT".to_string(),
                ];
                out.push(self.pick(&date).clone().into_bytes());
                let sha = [
                    "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                    "x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    "x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                    "x-amz-content-sha256: zz",
                ];
                out.push(self.pick(&sha).as_bytes().to_vec());
            }
        }
        out
    }

    fn body(&mut self, api: Api) -> (Vec<u8>, &'static str) {
        let deep_xml = format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000));
        let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let parts: String = (1..=12_000)
            .map(|i| format!("<Part><PartNumber>{i}</PartNumber><ETag>\"x\"</ETag></Part>"))
            .collect();
        let xml = [
            "<Delete><Object><Key>users/zq-hostile/a.txt</Key></Object>".to_string(),
            "<Delete><Object><Key>../../x</Key></Object><Object><Key>\u{0}</Key></Object></Delete>".to_string(),
            "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]><Delete><Object><Key>&b;</Key></Object></Delete>".to_string(),
            format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>"),
            "<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>".to_string(),
            "<CompleteMultipartUpload><Part><PartNumber>99999999999999999999</PartNumber></Part>".to_string(),
            deep_xml,
            "<<<>>>&&&;;;".to_string(),
        ];
        let json = [
            "{\"subject\":".to_string(),
            "{\"subject\": 5, \"home\": []}".to_string(),
            "{\"subject\":\"zq\u{0}\",\"home\":\"ZZ\"}".to_string(),
            "{\"subject\":\"../../etc\",\"home\":\"IN\"}".to_string(),
            format!("{{\"subject\":\"{}\",\"home\":\"IN\"}}", "a".repeat(70_000)),
            "{\"rate\": -1, \"workers\": 1e309, \"batch\": 18446744073709551616}".to_string(),
            "{\"authority\":\"\",\"subject\":\"\"}".to_string(),
            deep_json,
            "[operator]\nname = \"x\"\n[[region]]\nid = 5".to_string(),
            "null".to_string(),
        ];
        match self.rng.below(3) {
            0 => {
                let n = self.rng.below(4096) as usize;
                (self.garbage(n), "random bytes")
            }
            _ => match api {
                Api::S3 => (self.pick(&xml).clone().into_bytes(), "garbage XML"),
                Api::Rest => (self.pick(&json).clone().into_bytes(), "bad JSON"),
            },
        }
    }

    /// A valid request, for mutations and truncations.
    fn base(&mut self) -> (Api, Vec<u8>) {
        let api = self.api();
        let path = self.path(api);
        let method = self.method();
        let mut headers = self.auth_headers(api);
        let (body, _) = self.body(api);
        headers.push(format!("Content-Length: {}", body.len()).into_bytes());
        let line = format!("{method} {path} HTTP/1.1");
        (api, self.request(api, line.as_bytes(), &headers, &body))
    }

    fn next(&mut self) -> Hostile {
        match self.rng.below(12) {
            0 => {
                let api = self.api();
                let lines: Vec<Vec<u8>> = vec![
                    b"GET".to_vec(),
                    b"GET /".to_vec(),
                    b"GET / HTTP/9.9".to_vec(),
                    b"get / http/1.1".to_vec(),
                    b"GET  /  HTTP/1.1".to_vec(),
                    b"GET /\0 HTTP/1.1".to_vec(),
                    b"\xff\xfe / HTTP/1.1".to_vec(),
                    format!("{} / HTTP/1.1", "A".repeat(100_000)).into_bytes(),
                    format!("GET /{} HTTP/1.1", "a".repeat(200_000)).into_bytes(),
                    b"GET http://evil.example/ HTTP/1.1".to_vec(),
                    b"CONNECT evil.example:443 HTTP/1.1".to_vec(),
                    b"GET /user-data/\x80\x81\xfe HTTP/1.1".to_vec(),
                    b"\r\n\r\nGET / HTTP/1.1".to_vec(),
                    self.garbage(64),
                ];
                let line = self.pick(&lines).clone();
                let bytes = self.request(api, &line, &[], b"");
                Hostile {
                    api,
                    kind: "bad request line",
                    bytes,
                    truncated: false,
                }
            }
            1 => {
                let api = self.api();
                let path = self.path(api);
                let headers: Vec<Vec<u8>> = match self.rng.below(9) {
                    0 => vec![b"NoColonHere".to_vec()],
                    1 => vec![b"Bad Name: x".to_vec()],
                    2 => vec![b"X-Val: \xff\xfe\x80".to_vec()],
                    3 => vec![b"X-Fold: a".to_vec(), b" continued".to_vec()],
                    4 => (0..300)
                        .map(|i| format!("X-Dup: {i}").into_bytes())
                        .collect(),
                    5 => vec![format!("X-Big: {}", "b".repeat(120_000)).into_bytes()],
                    6 => vec![b"Host: other.example".to_vec()],
                    7 => (0..2000)
                        .map(|i| format!("X-Many-{i}: v").into_bytes())
                        .collect(),
                    _ => vec![b"Content-Type: \x00\x01".to_vec()],
                };
                let line = format!("{} {path} HTTP/1.1", self.method());
                let bytes = self.request(api, line.as_bytes(), &headers, b"");
                Hostile {
                    api,
                    kind: "bad headers",
                    bytes,
                    truncated: false,
                }
            }
            2 => {
                let api = self.api();
                let path = self.path(api);
                let lengths = [
                    "Content-Length: -1",
                    "Content-Length: abc",
                    "Content-Length: 99999999999999999999999",
                    "Content-Length: 18446744073709551615",
                    "Content-Length: 9223372036854775807",
                    "Content-Length: 5\r\nContent-Length: 6",
                    "Content-Length: 5, 5",
                    "Content-Length: 5\r\nTransfer-Encoding: chunked",
                    "Transfer-Encoding: gzip, chunked",
                    "Transfer-Encoding: identity",
                    "Content-Length: 0x10",
                ];
                let mut headers = self.auth_headers(api);
                headers.push(self.pick(&lengths).as_bytes().to_vec());
                let line = format!("PUT {path} HTTP/1.1");
                let bytes = self.request(api, line.as_bytes(), &headers, b"hello");
                Hostile {
                    api,
                    kind: "bad or absurd length",
                    bytes,
                    truncated: true,
                }
            }
            3 => {
                let api = self.api();
                let path = self.path(api);
                let chunked = [
                    b"zz\r\nhello\r\n0\r\n\r\n".to_vec(),
                    b"5\r\nhello".to_vec(),
                    b"ffffffffffffffffff\r\nx\r\n".to_vec(),
                    b"5;ext=\"\x00\"\r\nhello\r\n0\r\n\r\n".to_vec(),
                    b"5\r\nhelloXX0\r\n\r\n".to_vec(),
                    b"-5\r\nhello\r\n0\r\n\r\n".to_vec(),
                    b"3\r\nabc\r\n0\r\nTrailer: \xff\r\n\r\n".to_vec(),
                    b"\r\n\r\n".to_vec(),
                    format!(
                        "5;chunk-signature={}\r\nhello\r\n0;chunk-signature=00\r\n\r\n",
                        "0".repeat(64)
                    )
                    .into_bytes(),
                ];
                let mut headers = self.auth_headers(api);
                headers.push(b"Transfer-Encoding: chunked".to_vec());
                if self.rng.below(2) == 0 {
                    headers.push(b"Content-Encoding: aws-chunked".to_vec());
                    headers.push(b"x-amz-decoded-content-length: 5".to_vec());
                }
                let line = format!("PUT {path} HTTP/1.1");
                let body = self.pick(&chunked).clone();
                let bytes = self.request(api, line.as_bytes(), &headers, &body);
                Hostile {
                    api,
                    kind: "bad chunked encoding",
                    bytes,
                    truncated: true,
                }
            }
            4 | 5 => {
                // Truncated: a valid request cut anywhere.
                let (api, full) = self.base();
                let cut = self.rng.below(full.len() as u64) as usize;
                Hostile {
                    api,
                    kind: "truncated",
                    bytes: full[..cut].to_vec(),
                    truncated: true,
                }
            }
            6 | 7 => {
                // A valid request with a few random mutations.
                let (api, mut bytes) = self.base();
                for _ in 0..=self.rng.below(8) {
                    let at = self.rng.below(bytes.len() as u64 + 1) as usize;
                    match self.rng.below(4) {
                        0 if at < bytes.len() => bytes[at] ^= 1 << self.rng.below(8),
                        1 => bytes.insert(at, self.rng.next() as u8),
                        2 if at < bytes.len() => {
                            let n = (self.rng.below(16) as usize).min(bytes.len() - at);
                            bytes.drain(at..at + n);
                        }
                        _ => {
                            let junk = *self.pick(&[
                                &b"\r\n"[..],
                                b"%",
                                b"\0",
                                b"..",
                                b"\xff",
                                b":",
                                b" ",
                            ]);
                            bytes.splice(at..at, junk.iter().copied());
                        }
                    }
                }
                Hostile {
                    api,
                    kind: "mutated",
                    bytes,
                    truncated: true,
                }
            }
            8 | 9 => {
                // A validly presigned S3 request with a garbage body.
                let (name, s) = self.pick(&self.signed.clone()).clone();
                let (body, kind) = self.body(Api::S3);
                let headers = vec![format!("Content-Length: {}", body.len()).into_bytes()];
                let line = format!("{} {} HTTP/1.1", s.method, s.target);
                let bytes = self.request(Api::S3, line.as_bytes(), &headers, &body);
                let kind = if kind == "random bytes" {
                    "presigned, random body"
                } else {
                    "presigned, garbage XML"
                };
                let _ = name;
                Hostile {
                    api: Api::S3,
                    kind,
                    bytes,
                    truncated: false,
                }
            }
            10 => {
                // A presigned URL with its query tampered with.
                let (_, s) = self.pick(&self.signed.clone()).clone();
                let tamper = [
                    ("X-Amz-Expires=3600", "X-Amz-Expires=691200"),
                    ("X-Amz-Expires=3600", "X-Amz-Expires=-1"),
                    ("X-Amz-Expires=3600", "X-Amz-Expires=99999999999999999999"),
                    ("X-Amz-Expires=3600", "X-Amz-Expires=abc"),
                    ("X-Amz-Date=", "X-Amz-Date=garbage&X-Amz-Old="),
                    ("X-Amz-Credential=", "X-Amz-Credential=%2F%2F%2F&X-Amz-Old="),
                    ("X-Amz-Signature=", "X-Amz-Signature=zz&X-Amz-Signature="),
                    (
                        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
                        "X-Amz-Algorithm=AWS4-HMAC-MD5",
                    ),
                    ("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders="),
                    ("X-Amz-", "AWSAccessKeyId=x&Signature=%ff&Expires=1&X-Amz-"),
                    ("?", "?%ff%fe=%&"),
                ];
                let (from, to) = *self.pick(&tamper);
                let target = s.target.replacen(from, to, 1);
                let line = format!("{} {target} HTTP/1.1", s.method);
                let bytes = self.request(
                    Api::S3,
                    line.as_bytes(),
                    &[b"Content-Length: 0".to_vec()],
                    b"",
                );
                Hostile {
                    api: Api::S3,
                    kind: "bad presigned query",
                    bytes,
                    truncated: false,
                }
            }
            _ => {
                // Well-formed HTTP, hostile content.
                let api = self.api();
                let path = self.path(api);
                let method = self.method();
                let mut headers = self.auth_headers(api);
                let (body, kind) = self.body(api);
                headers.push(format!("Content-Length: {}", body.len()).into_bytes());
                let ct = *self.pick(&[
                    "Content-Type: application/json",
                    "Content-Type: application/xml",
                    "Content-Type: multipart/form-data; boundary=x",
                    "Content-Type: text/plain; charset=\u{ff}",
                ]);
                headers.push(ct.as_bytes().to_vec());
                let line = format!("{method} {path} HTTP/1.1");
                let bytes = self.request(api, line.as_bytes(), &headers, &body);
                Hostile {
                    api,
                    kind,
                    bytes,
                    truncated: false,
                }
            }
        }
    }
}

/// Sends raw bytes and reads the status of the answer, if any. A body cut
/// short is followed by closing the write side, so the server sees the
/// stream end instead of waiting for bytes that never come.
fn send(addr: &str, h: &Hostile) -> Option<Answer> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may refuse and close before reading everything: a failed
    // write is an answer of its own, not a test failure.
    let _ = s.write_all(&h.bytes);
    if h.truncated {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut raw = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "no answer within {:?} to a {} request:\n{}",
                    started.elapsed(),
                    h.kind,
                    String::from_utf8_lossy(&h.bytes[..h.bytes.len().min(600)])
                );
            }
            Err(_) => break,
        }
    }
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).to_string();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())?;
    // An answer to HEAD has no body to carry its S3 code: its status says
    // it all.
    const CODE: &[u8] = b"<Code>NotImplemented</Code>";
    let not_implemented =
        raw.windows(CODE.len()).any(|w| w == CODE) || h.bytes.starts_with(b"HEAD ");
    Some(Answer {
        status,
        not_implemented,
    })
}

/// The status of an answer, and whether it is S3's own `NotImplemented`
/// refusal.
struct Answer {
    status: u16,
    not_implemented: bool,
}

#[test]
fn thousands_of_hostile_requests_get_no_panic_and_no_5xx() {
    let d = Deployment::new(EXAMPLE);
    let srv = Server::start(&d, Some(1 << 20));
    add_subject(&srv, "zq-hostile", "SG");
    let signed: Value =
        serde_json::from_str(python(&srv, d.path(), PRESIGN_SCRIPT, &[]).trim()).unwrap();
    let signed: Vec<(String, Signed)> = signed
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let url = v[1].as_str().unwrap();
            let target = url.splitn(4, '/').nth(3).map(|t| format!("/{t}")).unwrap();
            (
                name.clone(),
                Signed {
                    method: v[0].as_str().unwrap().to_string(),
                    target,
                },
            )
        })
        .collect();
    let host = |url: &str| url.strip_prefix("http://").unwrap().to_string();
    let mut g = Generator {
        rng: Rng::new(SEED),
        s3_host: host(&srv.s3),
        rest_host: host(&srv.rest),
        signed,
    };

    let started = Instant::now();
    // (kind, api) -> answers by class; None: the server closed without one.
    let mut seen: BTreeMap<(&str, String), BTreeMap<String, usize>> = BTreeMap::new();
    let mut failures = Vec::new();
    for i in 0..REQUESTS {
        let h = g.next();
        let addr = g.host(h.api).to_string();
        let answer = send(&addr, &h);
        let class = match &answer {
            None => "closed".to_string(),
            Some(a) if a.status == 501 && a.not_implemented => "501 NotImplemented".to_string(),
            Some(a) => format!("{}xx", a.status / 100),
        };
        *seen
            .entry((h.kind, format!("{:?}", h.api)))
            .or_default()
            .entry(class)
            .or_default() += 1;
        // Malformed input gets a 4xx, never a 5xx.
        if answer.as_ref().is_some_and(|a| a.status >= 500) {
            failures.push(format!(
                "#{i} {} ({:?}) got {}:\n{}",
                h.kind,
                h.api,
                answer.as_ref().map_or(0, |a| a.status),
                String::from_utf8_lossy(&h.bytes[..h.bytes.len().min(400)])
            ));
        }
    }
    let elapsed = started.elapsed();
    for ((kind, api), classes) in &seen {
        eprintln!("{api:>4} {kind:<24} {classes:?}");
    }
    eprintln!("{REQUESTS} hostile requests in {elapsed:?}");

    let log = srv.log();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    assert!(
        failures.is_empty(),
        "{} 5xx answers:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The test proves something only if most requests were answered.
    let answered: usize = seen
        .values()
        .flat_map(|c| c.iter())
        .filter(|(class, _)| class.as_str() != "closed")
        .map(|(_, n)| n)
        .sum();
    assert!(
        answered * 10 >= REQUESTS * 7,
        "only {answered} of {REQUESTS} requests were answered"
    );
    let handled: usize = seen
        .iter()
        .filter(|((kind, _), _)| kind.starts_with("presigned"))
        .flat_map(|(_, c)| c.iter())
        .filter(|(class, _)| class.as_str() != "closed")
        .map(|(_, n)| n)
        .sum();
    assert!(
        handled > 100,
        "only {handled} presigned requests reached the S3 API"
    );

    // The admin token's hostile calls may have erased the subject (a
    // DELETE of it is a valid request): register it again if so.
    let again = http(
        "POST",
        &format!("{}/v1/subjects", srv.rest),
        Some(ADMIN),
        Some(&json!({"subject": "zq-hostile", "home": "SG"})),
    );
    assert!([201, 409].contains(&again.status), "{}", again.body);
    let out = python(&srv, d.path(), NORMAL_SCRIPT, &[]);
    assert!(out.contains("NORMAL OK"), "{out}");
    let log = srv.stop();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
