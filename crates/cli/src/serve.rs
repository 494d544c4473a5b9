//! `domicile serve`: binds the REST and S3 listeners, prints where they
//! listen, and serves until SIGTERM or ctrl-c, letting in-flight requests
//! finish. It collects garbage now and then meanwhile (`--collect-every`),
//! once replaced bytes are past their grace period (`--gc-grace`).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use domicile_engine::{Engine, EngineOptions, GcOptions, Secrets};
use domicile_server::{Listeners, ServerOptions};
use tokio::net::TcpListener;

use crate::BadInput;

async fn bind(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BadInput(format!("cannot listen on {addr} for the {what} API: {e}")).into())
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}

/// The server's options from its flags; bad values are bad input.
pub fn options(max_object_size: u64, collect_every: f64) -> Result<ServerOptions> {
    if !(collect_every.is_finite() && (0.0..=86_400.0).contains(&collect_every)) {
        return Err(BadInput("--collect-every must be between 0 and 86400 seconds".into()).into());
    }
    Ok(ServerOptions {
        max_object_size,
        collect_every: Duration::from_secs_f64(collect_every),
        ..ServerOptions::default()
    })
}

/// The grace period of replaced and deleted blobs, from `--gc-grace`; a bad
/// value is bad input.
pub fn gc_grace(secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs)) {
        return Err(BadInput("--gc-grace must be between 0 and 604800 seconds".into()).into());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(
    config: &Path,
    listen: &str,
    s3_listen: &str,
    options: ServerOptions,
    gc_grace: Duration,
) -> Result<u8> {
    let max_object_size = options.max_object_size;
    let config = crate::config_file::load(config)?;
    let secrets = Secrets::load(config.secrets_file.as_deref())?;
    // Refused before anything is bound: the S3 API never runs
    // unauthenticated, and a declared credential or token has its secret.
    let problems: Vec<String> = [
        domicile_server::s3::credentials(&config, &secrets).err(),
        domicile_server::rest::tokens(&config, &secrets).err(),
    ]
    .into_iter()
    .flatten()
    .map(|e| e.to_string())
    .collect();
    if !problems.is_empty() {
        return Err(BadInput(problems.join("; ")).into());
    }
    let engine = Engine::open_with(
        config,
        secrets,
        EngineOptions {
            max_object_size,
            gc: GcOptions {
                grace: gc_grace,
                ..GcOptions::default()
            },
            ..EngineOptions::default()
        },
    )
    .await?;
    let rest = bind("REST", listen).await?;
    let s3 = bind("S3", s3_listen).await?;
    println!("rest listening on http://{}", rest.local_addr()?);
    println!("s3 listening on http://{}", s3.local_addr()?);
    std::io::stdout().flush()?;
    domicile_server::run(
        Arc::new(engine),
        Listeners {
            rest: Some(rest),
            s3: Some(s3),
        },
        options,
        shutdown_signal(),
    )
    .await?;
    Ok(0)
}
