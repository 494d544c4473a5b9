//! A `moto_server` for the tests of s3:// regions and aws-kms:// custodians: started on a free port,
//! waited for, and stopped on drop. Without moto the tests FAIL, never skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto_server on a free port, stopped on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): install it with pip install 'moto[server]'")
            });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub fn bucket(&self, name: &str) {
        let host = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("{e}"));
        let req = format!(
            "PUT /{name} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut reply = String::new();
        s.read_to_string(&mut reply)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
    }
}

/// The KMS calls tests make. moto routes a request to KMS by the service in its
/// Authorization header's scope, and checks no signature.
impl Moto {
    /// One call of the KMS JSON API; panics unless it answers 200.
    pub fn kms(&self, action: &str, body: serde_json::Value) -> serde_json::Value {
        let host = self.endpoint.trim_start_matches("http://");
        let body = body.to_string();
        let mut s = TcpStream::connect(host).unwrap_or_else(|e| panic!("{e}"));
        let req = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             X-Amz-Target: TrentService.{action}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut reply = String::new();
        s.read_to_string(&mut reply)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(reply.starts_with("HTTP/1.1 200"), "KMS {action}: {reply}");
        let json = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
        if json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("KMS {action}: {e}: {json}"))
        }
    }

    /// Creates a symmetric key; returns its ARN.
    pub fn kms_create_key(&self) -> String {
        let meta = self.kms("CreateKey", serde_json::json!({}));
        meta["KeyMetadata"]["Arn"].as_str().unwrap().to_owned()
    }

    /// Points `alias` (`alias/NAME`) at `key`, creating the alias if needed.
    pub fn kms_alias(&self, alias: &str, key: &str) {
        let aliases = self.kms("ListAliases", serde_json::json!({}));
        let exists = aliases["Aliases"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["AliasName"] == alias));
        let action = if exists { "UpdateAlias" } else { "CreateAlias" };
        self.kms(
            action,
            serde_json::json!({ "AliasName": alias, "TargetKeyId": key }),
        );
    }

    /// Disables a key (its id or ARN: moto takes only the id here).
    pub fn kms_disable(&self, key: &str) {
        let id = key.rsplit('/').next().unwrap_or(key);
        self.kms("DisableKey", serde_json::json!({ "KeyId": id }));
    }

    pub fn kms_enable(&self, key: &str) {
        let id = key.rsplit('/').next().unwrap_or(key);
        self.kms("EnableKey", serde_json::json!({ "KeyId": id }));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
