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
