//! Writes the seed corpora, `fuzz/seeds/<target>/`, from real inputs:
//! blobs and sealed values written by the store, the example configs, the
//! bucket of the example config with keys from the tests, continuation
//! tokens the server returns, and requests as the S3 clients and the admin
//! API's users send them. `cargo run --manifest-path fuzz/Cargo.toml -p
//! domicile-fuzz-seeds`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use domicile_engine::ObjectMeta;
use domicile_fuzz_seeds::{
    ACCESS_KEY, ADMIN_TOKEN, AUDITOR_TOKEN, BLOB_ID, EXAMPLE_CONFIG, KEY, LOOKUP, TOKEN,
};
use domicile_store::crypto::seal_value;
use domicile_store::{BlobPath, BlobWriter, DataKey, RegionStore};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../seeds")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(dir(target).join(name), bytes).unwrap();
}

fn main() {
    blobs();
    sealed();
    configs();
    bucket_keys();
    tokens();
    s3_requests();
    rest_requests();
}

fn blobs() {
    let region = RegionStore::open("seed", "memory://", Path::new("/")).unwrap();
    let path = BlobPath::new(TOKEN, "profile", BLOB_ID).unwrap();
    let key = DataKey::from_bytes(KEY);
    for (encrypted, len, chunk, range) in [
        (true, 0u64, 65_536u32, None),
        (true, 5, 65_536, None),
        (true, 100, 16, Some((10u64, 50u64))),
        (true, 1000, 64, Some((0, 1000))),
        (true, 1000, 64, Some((999, 1000))),
        (true, 65_537, 65_536, Some((65_530, 65_537))),
        (false, 100, 16, None),
        (false, 33, 1, Some((3, 4))),
    ] {
        let stored = runtime().block_on(async {
            let k = encrypted.then_some(&key);
            let mut w = BlobWriter::new(vec![region.clone()], path.clone(), k, chunk).unwrap();
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            w.write(&plain).await.unwrap();
            w.finish().await.unwrap();
            region.get(&path).await.unwrap()
        });
        let mut input = vec![u8::from(encrypted) | if range.is_some() { 2 } else { 0 }];
        input.extend_from_slice(&len.to_le_bytes());
        let (s, e) = range.unwrap_or((0, len));
        input.extend_from_slice(&s.to_le_bytes());
        input.extend_from_slice(&e.to_le_bytes());
        input.extend_from_slice(&stored);
        let mode = if encrypted { "aes" } else { "plain" };
        write(
            "blob",
            &format!("{mode}-{len}-chunk{chunk}-from{s}"),
            &input,
        );
    }
}

fn sealed() {
    let key = DataKey::from_bytes(KEY);
    let meta = serde_json::to_vec(&ObjectMeta {
        content_type: Some("text/plain".into()),
        user: [("colour".to_string(), "blue".to_string())].into(),
        ..ObjectMeta::default()
    })
    .unwrap();
    let cases: [(u8, Vec<u8>, &[u8]); 4] = [
        (
            0,
            format!("name:{LOOKUP}").into_bytes(),
            b"payments/card.json",
        ),
        (1, format!("meta:{LOOKUP}").into_bytes(), &meta),
        (2, TOKEN.as_bytes().to_vec(), b"alice"),
        (3, b"ctx".to_vec(), b""),
    ];
    for (selector, context, plain) in cases {
        let mut input = vec![selector];
        if selector == 3 {
            input.push(context.len() as u8);
            input.extend_from_slice(&context);
        }
        input.extend_from_slice(&seal_value(&key, &context, plain).unwrap());
        write("sealed_value", &format!("selector-{selector}"), &input);
    }
}

fn configs() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for e in std::fs::read_dir(examples).unwrap() {
        let p = e.unwrap().path();
        write(
            "config",
            p.file_name().unwrap().to_str().unwrap(),
            &std::fs::read(&p).unwrap(),
        );
    }
}

fn bucket_keys() {
    let cases = [
        "users/{subject}/\nusers/{subject}/payments/\nusers/u1/payments/card.json",
        "users/{subject}/\nusers/{subject}/payments/\nusers/u1/avatar.png",
        "users/{subject}/\nusers/u1/../x",
        "users/{subject}/\nusers/u1/.domicile-mpu/x/1",
        "{subject}/\n{subject}/a/\n{subject}/a/b/\nalice/a/b/c",
        "tenants/t/{subject}/data/\ntenants/t/{subject}/data/logs/\ntenants/t/bob/data/logs/1",
        "users/{subject}/\nusers/bad id/x",
    ];
    for (i, c) in cases.iter().enumerate() {
        write("bucket_keys", &format!("case-{i}"), c.as_bytes());
    }
}

fn tokens() {
    let keys = "users/alice/a.txt\nusers/alice/d/1\nusers/alice/d/2\nusers/alice/e/3\nusers/bob/x";
    let cases = [
        (String::new(), "users/alice/", "/", "2"),
        (hex::encode("users/alice/d/"), "users/alice/", "/", "2"),
        (hex::encode("users/alice/a.txt"), "", "", "1"),
        (hex::encode("users/"), "users/", "/", "1000"),
        ("zz".to_string(), "", "", ""),
    ];
    for (i, (token, prefix, delimiter, max)) in cases.iter().enumerate() {
        write(
            "continuation_token",
            &format!("case-{i}"),
            format!("{token}\n{prefix}\n{delimiter}\n{max}\n{keys}").as_bytes(),
        );
    }
}

fn s3_requests() {
    let sig = "x-fuzz-auth: sigv4";
    let cases: Vec<(&str, String)> = vec![
        ("list-buckets", format!("GET / HTTP/1.1\n{sig}\n\n")),
        ("head-bucket", format!("HEAD /user-data HTTP/1.1\n{sig}\n\n")),
        (
            "put-get",
            format!(
                "PUT /user-data/users/alice/new.txt HTTP/1.1\n{sig}\ncontent-type: text/plain\nx-amz-meta-colour: blue\n\nhello\n%%\nGET /user-data/users/alice/new.txt HTTP/1.1\n{sig}\nrange: bytes=1-3\n\n"
            ),
        ),
        (
            "get-conditional",
            format!("GET /user-data/users/u1/photo.jpg HTTP/1.1\n{sig}\nif-none-match: \"x\"\nrange: bytes=65530-\n\n"),
        ),
        (
            "list-v2",
            format!(
                "GET /user-data?list-type=2&prefix=users%2F&delimiter=%2F&max-keys=1 HTTP/1.1\n{sig}\n\n%%\nGET /user-data?list-type=2&prefix=users%2Falice%2F&continuation-token={}&max-keys=1&encoding-type=url HTTP/1.1\n{sig}\n\n",
                hex::encode("users/alice/a.txt")
            ),
        ),
        (
            "list-v1",
            format!("GET /user-data?prefix=users%2Fbob%2F&marker=users%2Fbob%2Fa HTTP/1.1\n{sig}\n\n"),
        ),
        (
            "multipart",
            format!(
                "POST /user-data/users/bob/big.bin?uploads HTTP/1.1\n{sig}\n\n\n%%\nPUT /user-data/users/bob/big.bin?partNumber=1&uploadId={{upload}} HTTP/1.1\n{sig}\n\npart one\n%%\nGET /user-data/users/bob/big.bin?uploadId={{upload}} HTTP/1.1\n{sig}\n\n\n%%\nPOST /user-data/users/bob/big.bin?uploadId={{upload}} HTTP/1.1\n{sig}\ncontent-type: application/xml\n\n<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"x\"</ETag></Part></CompleteMultipartUpload>"
            ),
        ),
        (
            "delete-objects",
            format!(
                "POST /user-data?delete HTTP/1.1\n{sig}\ncontent-type: application/xml\n\n<Delete><Object><Key>users/alice/new.txt</Key></Object><Object><Key>users/x/../y</Key></Object><Quiet>false</Quiet></Delete>"
            ),
        ),
        (
            "copy",
            format!(
                "PUT /user-data/users/bob/copied HTTP/1.1\n{sig}\nx-amz-copy-source: /user-data/users/alice/a.txt\nx-amz-metadata-directive: REPLACE\n\n"
            ),
        ),
        (
            "delete",
            format!("DELETE /user-data/users/alice/gone HTTP/1.1\n{sig}\n\n"),
        ),
        (
            "presigned-get",
            "GET /user-data/users/alice/a.txt HTTP/1.1\nx-fuzz-auth: presign\nx-fuzz-expires: 600\n\n".to_string(),
        ),
        (
            "presigned-8-days",
            "GET /user-data/users/alice/a.txt HTTP/1.1\nx-fuzz-auth: presign\nx-fuzz-expires: 691200\n\n".to_string(),
        ),
        (
            "unsigned-payload",
            "PUT /user-data/users/u1/u.txt HTTP/1.1\nx-fuzz-auth: sigv4-unsigned\n\nunsigned".to_string(),
        ),
        (
            "streaming-chunked",
            format!(
                "PUT /user-data/users/u1/s.txt HTTP/1.1\nx-fuzz-auth: sigv4-unsigned\ncontent-encoding: aws-chunked\nx-amz-decoded-content-length: 5\n\n5;chunk-signature={}\r\nhello\r\n0;chunk-signature={}\r\n\r\n",
                "0".repeat(64),
                "0".repeat(64)
            ),
        ),
        (
            "sigv2",
            format!("GET /user-data/users/alice/a.txt HTTP/1.1\nauthorization: AWS {ACCESS_KEY}:c2lnbmF0dXJl\ndate: Fri, 04 Dec 2026 18:00:00 GMT\n\n"),
        ),
        ("anonymous", "GET /user-data/users/alice/a.txt HTTP/1.1\n\n".to_string()),
        (
            "form-post",
            "POST /user-data HTTP/1.1\ncontent-type: multipart/form-data; boundary=xx\n\n--xx\r\ncontent-disposition: form-data; name=\"key\"\r\n\r\nusers/alice/f\r\n--xx\r\ncontent-disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\ndata\r\n--xx--\r\n".to_string(),
        ),
        (
            "bad-key",
            format!("GET /user-data/users/alice/%00/%ff%2e%2e/x HTTP/1.1\n{sig}\n\n"),
        ),
    ];
    for (name, text) in cases {
        write("s3_request", name, text.as_bytes());
    }
}

fn rest_requests() {
    let admin = format!("authorization: Bearer {ADMIN_TOKEN}");
    let auditor = format!("authorization: Bearer {AUDITOR_TOKEN}");
    let cases: Vec<(&str, String)> = vec![
        ("healthz", "GET /healthz\n\n".to_string()),
        ("metrics", "GET /metrics\n\n".to_string()),
        ("openapi", "GET /openapi.json\n\n".to_string()),
        (
            "add-show-erase",
            format!(
                "POST /v1/subjects\n{admin}\ncontent-type: application/json\n\n{{\"subject\":\"carol\",\"home\":\"IN\"}}\n%%\nGET /v1/subjects/carol\n{auditor}\n\n\n%%\nDELETE /v1/subjects/carol\n{admin}\n\n"
            ),
        ),
        ("plan", format!("GET /v1/plan?limit=5\n{auditor}\n\n")),
        (
            "residency",
            format!("GET /v1/reports/residency\n{auditor}\n\n"),
        ),
        (
            "exposure",
            format!("GET /v1/reports/exposure\n{auditor}\n\n"),
        ),
        (
            "demand",
            format!(
                "POST /v1/demands\n{admin}\ncontent-type: application/json\n\n{{\"authority\":\"US\",\"subject\":\"alice\"}}"
            ),
        ),
        (
            "ledger-verify",
            format!("GET /v1/ledger/verify\n{auditor}\n\n"),
        ),
        (
            "policy",
            format!("GET /v1/policy\n{auditor}\n\n%%\nGET /v1/policy/history\n{auditor}\n\n"),
        ),
        (
            "policy-apply",
            format!(
                "POST /v1/policy?migrate=false\n{admin}\ncontent-type: text/plain\n\n{EXAMPLE_CONFIG}"
            ),
        ),
        (
            "migrations",
            format!(
                "POST /v1/migrations\n{admin}\ncontent-type: application/json\n\n{{\"rate\":0,\"workers\":1}}\n%%\nGET /v1/migrations/current\n{auditor}\n\n\n%%\nPOST /v1/migrations/current/pause\n{admin}\n\n"
            ),
        ),
        (
            "wrong-token",
            "GET /v1/plan\nauthorization: Bearer nope\n\n".to_string(),
        ),
        (
            "bad-json",
            format!("POST /v1/subjects\n{admin}\ncontent-type: application/json\n\n{{\"subject\":"),
        ),
    ];
    for (name, text) in cases {
        write("rest_request", name, text.as_bytes());
    }
}
