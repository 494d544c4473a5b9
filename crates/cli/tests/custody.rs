//! End-to-end tests of custodians whose keys live in a key manager: the real `domicile`
//! binary, one process per command, with an `aws-kms://` custodian on `moto_server` (which
//! the test starts: it fails, never skips, without moto) or a `vault://` custodian on the
//! in-repo Transit fake. The key manager really controls access: a key it will not use
//! makes a new process's reads fail, naming the custodian, and reads come back with it.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use domicile_test_support::moto::Moto;
use domicile_test_support::vault::FakeVault;

const BIN: &str = env!("CARGO_BIN_EXE_domicile");
const V1: &str = include_str!("../../../examples/demo-v1.toml");
/// The custodian of the demo's Chinese subjects, whose keyring the tests replace.
const OPERATOR_KEYRING: &str = "keyring = \"file://data/keys/operator-kms\"";
const BODY: &[u8] = b"{\"name\":\"Wei\"}";

/// A deployment of the demo config whose `operator-kms` keyring is `keyring`, run with
/// `env` (the custodian's secrets).
struct Deployment {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Deployment {
    fn new(keyring: &str, env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        assert!(V1.contains(OPERATOR_KEYRING));
        let config = V1.replace(OPERATOR_KEYRING, &format!("keyring = \"{keyring}\""));
        std::fs::write(dir.join("domicile.toml"), config).unwrap();
        Deployment {
            _tmp: tmp,
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(BIN);
        c.current_dir(&self.dir)
            .env_remove("DOMICILE_TOKEN_KEY")
            .env_remove("DOMICILE_LOG")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("VAULT_TOKEN")
            .env("DOMICILE_CONFIG", self.dir.join("domicile.toml"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked"),
            "domicile {args:?} panicked:\n{err}"
        );
        out
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(code(&out), 0, "domicile {args:?}:\n{}", stderr(&out));
        out
    }

    fn put(&self, key: &str, body: &[u8]) {
        let f = self.dir.join("body");
        std::fs::write(&f, body).unwrap();
        self.ok(&["put", "wei", key, s(&f)]);
    }

    /// `get` into a file: the exit code, and the bytes when it succeeded.
    fn get(&self, key: &str) -> (Output, Option<Vec<u8>>) {
        let f = self.dir.join("got");
        let _ = std::fs::remove_file(&f);
        let out = self.run(&["get", "wei", key, "-o", s(&f)]);
        let got = std::fs::read(&f).ok().filter(|_| code(&out) == 0);
        (out, got)
    }

    /// `get` must fail with exit code 1 and a message naming the custodian.
    fn get_refused(&self, key: &str, why: &str) {
        let (out, got) = self.get(key);
        assert_eq!(code(&out), 1, "{why}: {}", stderr(&out));
        assert!(got.is_none(), "{why}");
        assert!(
            stderr(&out).contains("custodian operator-kms"),
            "{why}: the message names no custodian:\n{}",
            stderr(&out)
        );
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_kms_custodian_controls_access_and_an_alias_pointed_elsewhere_is_refused() {
    let moto = Moto::start();
    let arn = moto.kms_create_key();
    moto.kms_alias("alias/operator", &arn);
    let url = format!(
        "aws-kms://alias/operator?region=us-east-1&endpoint={}",
        moto.endpoint
    );
    let d = Deployment::new(
        &url,
        &[
            ("DOMICILE_CUSTODIAN_OPERATOR_KMS_ACCESS_KEY_ID", "test"),
            ("DOMICILE_CUSTODIAN_OPERATOR_KMS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    d.ok(&["subject", "add", "wei", "--home", "CN"]);
    d.put("users/wei/profile.json", BODY);
    assert_eq!(d.get("users/wei/profile.json").1.as_deref(), Some(BODY));
    assert!(
        !d.dir.join("data/keys/operator-kms").exists(),
        "a KMS custodian keeps no key file"
    );

    moto.kms_disable(&arn);
    d.get_refused("users/wei/profile.json", "a disabled KMS key");
    moto.kms_enable(&arn);
    assert_eq!(d.get("users/wei/profile.json").1.as_deref(), Some(BODY));

    // The alias now names another key: refused, naming the custodian and both keys.
    let other = moto.kms_create_key();
    moto.kms_alias("alias/operator", &other);
    d.get_refused("users/wei/profile.json", "an alias pointed at another key");
    let (out, _) = d.get("users/wei/profile.json");
    assert!(
        stderr(&out).contains(&arn) && stderr(&out).contains(&other),
        "{}",
        stderr(&out)
    );
    let add = d.run(&["subject", "add", "li", "--home", "CN"]);
    assert_eq!(code(&add), 1, "{}", stderr(&add));
    moto.kms_alias("alias/operator", &arn);
    assert_eq!(d.get("users/wei/profile.json").1.as_deref(), Some(BODY));

    // The KMS gone: a clear, retryable failure naming the custodian, exit 1.
    drop(moto);
    let (out, _) = d.get("users/wei/profile.json");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("custodian operator-kms") && stderr(&out).contains("retry"),
        "{}",
        stderr(&out)
    );

    // `verify --deep` with the KMS gone: the custodian is named as unreachable and its
    // objects counted unchecked, never reported as corrupt.
    let out = d.run(&["verify", "--deep", "--format", "json"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "custodian" && p["region"] == "operator-kms"),
        "{report}"
    );
    assert!(
        !problems.iter().any(|p| p["kind"] == "undecryptable"),
        "an unreachable custodian is not corrupt data: {report}"
    );
    assert!(
        report["objects_unchecked"].as_u64().unwrap() >= 1,
        "{report}"
    );
}

#[test]
fn a_vault_custodian_controls_access() {
    let vault = FakeVault::start();
    vault.create_key("operator", true);
    let d = Deployment::new(
        &vault.url("operator"),
        &[("DOMICILE_CUSTODIAN_OPERATOR_KMS_TOKEN", &vault.token)],
    );
    d.ok(&["subject", "add", "wei", "--home", "CN"]);
    d.put("users/wei/profile.json", BODY);
    assert_eq!(d.get("users/wei/profile.json").1.as_deref(), Some(BODY));

    // A policy that no longer lets the token decrypt: reads refused; allowed, they return.
    vault.deny("decrypt");
    d.get_refused("users/wei/profile.json", "Transit decrypt denied");
    vault.allow("decrypt");
    assert_eq!(d.get("users/wei/profile.json").1.as_deref(), Some(BODY));

    // Version 1 retired (min_decryption_version 2): the data's key no longer opens.
    vault.rotate("operator");
    vault.set_min_decryption_version("operator", 2);
    d.get_refused("users/wei/profile.json", "version 1 retired");
    vault.set_min_decryption_version("operator", 1);
    assert_eq!(d.get("users/wei/profile.json").1.as_deref(), Some(BODY));

    // The key deleted and created again under its name is another key: refused.
    vault.delete_key("operator");
    vault.create_key("operator", true);
    d.get_refused("users/wei/profile.json", "a key created again");
    let put = d.run(&["put", "wei", "users/wei/more.json", s(&d.dir.join("body"))]);
    assert_eq!(code(&put), 1, "{}", stderr(&put));

    // Without its token the custodian is refused, saying which secret to set.
    let bare = Deployment::new(&vault.url("operator"), &[]);
    let add = bare.run(&["subject", "add", "wei", "--home", "CN"]);
    assert_eq!(code(&add), 1, "{}", stderr(&add));
    assert!(
        stderr(&add).contains("DOMICILE_CUSTODIAN_OPERATOR_KMS_TOKEN"),
        "{}",
        stderr(&add)
    );
}
