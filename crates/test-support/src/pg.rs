//! A fresh PostgreSQL database per test, for the test binaries that run
//! domicile on a PostgreSQL catalog.
//!
//! The server is `DOMICILE_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432`), a role that may create databases.
//! Each database is dropped when its test ends, even by a panic. Without a
//! reachable server the tests FAIL, never skip.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

fn server() -> String {
    std::env::var("DOMICILE_TEST_POSTGRES")
        .unwrap_or_else(|_| DEFAULT_SERVER.into())
        .trim_end_matches('/')
        .to_string()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn admin() -> PgConnection {
    let url = format!("{}/postgres", server());
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is unreachable at {url}: {e}\n\
             set DOMICILE_TEST_POSTGRES to postgres://USER[:PASSWORD]@HOST:PORT, or start \
             the local server with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
        )
    })
}

/// A fresh database, dropped (with any connection still on it) on drop.
#[derive(Debug)]
pub struct Database {
    name: String,
    pub url: String,
}

impl Database {
    pub fn create(tag: &str) -> Database {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("domicile_test_{}_{tag}_{nanos:x}", std::process::id());
        block_on(async {
            let mut a = admin().await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
            )))
            .execute(&mut a)
            .await
            .unwrap();
            a.close().await.ok();
        });
        let url = format!("{}/{name}", server());
        Database { name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A thread of its own: works while a failed test unwinds.
        let t = std::thread::spawn(move || {
            block_on(async {
                match PgConnection::connect(&format!("{}/postgres", server())).await {
                    Ok(mut a) => {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut a).await
                        {
                            eprintln!("cannot drop test database {name}: {e}");
                        }
                        a.close().await.ok();
                    }
                    Err(e) => eprintln!("cannot drop test database {name}: {e}"),
                }
            })
        });
        if t.join().is_err() {
            eprintln!("dropping test database {} panicked", self.name);
        }
    }
}

/// A throwaway PostgreSQL server of its own (`initdb`, `pg_ctl`) that
/// accepts TCP connections over TLS only, with the certificate and key
/// given, and trusts every login. Stopped and removed on drop.
///
/// PostgreSQL refuses to run as root: as root, its programs run as the
/// `postgres` user, which then owns the folder.
#[derive(Debug)]
pub struct TlsServer {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    pub port: u16,
}

fn pg_bin() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("DOMICILE_TEST_PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server programs (initdb) under /usr/lib/postgresql; set DOMICILE_TEST_PG_BIN")
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(bin: &std::path::Path, program: &str) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        std::process::Command::new(bin.join(program))
    }
}

fn run_ok(mut c: std::process::Command, what: &str) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsServer {
    /// Starts the server on a free port with `cert` and `key` (PEM).
    pub fn start(cert: &str, key: &str) -> TlsServer {
        use std::os::unix::fs::PermissionsExt;

        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("domicile-pg-tls")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let root = is_root();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut init = pg_command(&bin, "initdb");
        init.args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
            "-D",
        ])
        .arg(&data);
        run_ok(init, "initdb");
        let files = [("server.crt", cert), ("server.key", key)];
        for (name, text) in files {
            let p = data.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        if root {
            let mut chown = std::process::Command::new("chown");
            chown.args(["-R", "postgres"]).arg(dir.path());
            run_ok(chown, "chown");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c fsync=off",
            dir.path().display()
        );
        let mut start = pg_command(&bin, "pg_ctl");
        start
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.path().join("log"))
            .args(["-o", &options, "start"]);
        let server = TlsServer { dir, bin, port };
        run_ok(start, "pg_ctl start");
        server
    }

    /// A URL of the server's `postgres` database with `params` appended
    /// (such as `sslmode=verify-full&sslrootcert=…`).
    pub fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{params}",
            self.port
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let mut stop = pg_command(&self.bin, "pg_ctl");
        stop.args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop");
        if let Err(e) = stop.output() {
            eprintln!("cannot stop the test PostgreSQL server: {e}");
        }
    }
}
