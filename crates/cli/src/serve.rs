//! `domicile serve`: binds the REST and S3 listeners, prints where they
//! listen, and serves until SIGTERM or ctrl-c, letting in-flight requests
//! finish. It collects garbage now and then meanwhile (`--collect-every`),
//! once replaced bytes are past their grace period (`--gc-grace`), and
//! signs the ledger's head now and then (`--checkpoint-every`), publishing
//! each checkpoint to a file or URL outside the catalog.
//!
//! The network edge comes from the flags, else the config's `[server]`,
//! else the server's defaults: TLS on both listeners when a certificate and
//! key are given (read again on SIGHUP and when the files change), and the
//! limits on connections, request heads, requests in flight and request
//! time. Without TLS, only a loopback address may be bound, unless
//! `--insecure-plaintext` says a proxy in front carries TLS: an address on
//! the network would carry bearer tokens, S3 signatures and data in clear.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use domicile_core::config::ServerSettings;
use domicile_engine::checkpoint::Publish;
use domicile_engine::{Engine, EngineOptions, GcOptions, Secrets};
use domicile_server::{Certificates, Listeners, ServerOptions};
use tokio::net::TcpListener;

use crate::BadInput;
use crate::cli::ServeArgs;

async fn bind(what: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BadInput(format!("cannot listen on {addr} for the {what} API: {e}")).into())
}

/// Refuses plain text on an address other than loopback.
fn plaintext_allowed(what: &str, addr: SocketAddr, insecure_plaintext: bool) -> Result<()> {
    if addr.ip().is_loopback() || insecure_plaintext {
        return Ok(());
    }
    Err(BadInput(format!(
        "refusing to serve the {what} API in plain text on {addr}, an address other machines can reach: \
         bearer tokens, S3 signatures and object data would cross the network unencrypted. \
         Give --tls-cert FILE and --tls-key FILE (or tls_cert and tls_key in the config's [server]), \
         listen on a loopback address such as 127.0.0.1, \
         or pass --insecure-plaintext if a proxy in front of this server terminates TLS"
    ))
    .into())
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

/// Reloads the certificate on every SIGHUP. Installed with or without TLS,
/// so that a SIGHUP never ends a plain-text server.
fn reload_on_hangup(certs: Option<Arc<Certificates>>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!(
            "cannot listen for SIGHUP: the certificate reloads only when its files change"
        );
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match &certs {
                None => tracing::info!("SIGHUP: no TLS certificate to reload"),
                Some(certs) => match certs.reload() {
                    Ok(()) => tracing::info!(
                        cert = %certs.cert_path().display(),
                        "SIGHUP: serving the TLS certificate read again"
                    ),
                    Err(e) => tracing::warn!(
                        "SIGHUP: the TLS certificate cannot be used, the previous one stays: {e}"
                    ),
                },
            }
        }
    });
}

/// Seconds from a flag or the config, checked.
fn seconds(flag: Option<f64>, name: &str, zero_ok: bool) -> Result<Option<Duration>> {
    let Some(x) = flag else { return Ok(None) };
    let low_ok = if zero_ok { x >= 0.0 } else { x > 0.0 };
    if !(x.is_finite() && low_ok && x <= 86_400.0) {
        let low = if zero_ok { "at least 0" } else { "more than 0" };
        return Err(BadInput(format!("--{name} must be {low} and at most 86400 seconds")).into());
    }
    Ok(Some(Duration::from_secs_f64(x)))
}

fn count(flag: Option<usize>, name: &str) -> Result<Option<usize>> {
    match flag {
        Some(n) if !(1..=1_000_000).contains(&n) => {
            Err(BadInput(format!("--{name} must be between 1 and 1000000")).into())
        }
        other => Ok(other),
    }
}

/// The server's options: each flag, else the config's `[server]`, else the
/// default; and the certificate, read and checked. Bad values are bad input.
pub fn options(args: &ServeArgs, settings: &ServerSettings) -> Result<ServerOptions> {
    if !(args.collect_every.is_finite() && (0.0..=86_400.0).contains(&args.collect_every)) {
        return Err(BadInput("--collect-every must be between 0 and 86400 seconds".into()).into());
    }
    let d = ServerOptions::default();
    let tls_files = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => settings.tls_cert.clone().zip(settings.tls_key.clone()),
    };
    let tls = match tls_files {
        None => None,
        Some((cert, key)) => Some(
            Certificates::load(&cert, &key)
                .map_err(|e| BadInput(format!("cannot serve TLS: {e}")))?,
        ),
    };
    Ok(ServerOptions {
        max_object_size: args.max_object_size,
        collect_every: Duration::from_secs_f64(args.collect_every),
        tls,
        tls_check_every: seconds(args.tls_check_every, "tls-check-every", true)?
            .or(settings.tls_check_every)
            .unwrap_or(d.tls_check_every),
        header_read_timeout: seconds(args.header_read_timeout, "header-read-timeout", false)?
            .or(settings.header_read_timeout)
            .unwrap_or(d.header_read_timeout),
        request_timeout: seconds(args.request_timeout, "request-timeout", false)?
            .or(settings.request_timeout)
            .unwrap_or(d.request_timeout),
        max_connections: count(args.max_connections, "max-connections")?
            .or(settings.max_connections)
            .unwrap_or(d.max_connections),
        max_in_flight: count(args.max_in_flight, "max-in-flight")?
            .or(settings.max_in_flight)
            .unwrap_or(d.max_in_flight),
        ..d
    })
}

/// How often to sign the ledger's head and where to publish it, from
/// `--checkpoint-every`, `--checkpoint-file` and `--checkpoint-url`; `None`
/// for none. Bad values are bad input.
fn checkpoints(args: &ServeArgs) -> Result<Option<(Duration, Publish)>> {
    let every = args.checkpoint_every;
    if !(every.is_finite() && (0.0..=86_400.0).contains(&every)) {
        return Err(
            BadInput("--checkpoint-every must be between 0 and 86400 seconds".into()).into(),
        );
    }
    let publish = Publish {
        file: args.checkpoint_file.clone(),
        url: args.checkpoint_url.clone(),
    };
    if every == 0.0 {
        if !publish.is_empty() {
            return Err(BadInput(
                "--checkpoint-file and --checkpoint-url need --checkpoint-every SECONDS".into(),
            )
            .into());
        }
        return Ok(None);
    }
    if let Some(url) = &publish.url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(BadInput(format!(
            "--checkpoint-url must be an http(s) URL, not {url}"
        ))
        .into());
    }
    Ok(Some((Duration::from_secs_f64(every), publish)))
}

/// The grace period of the blobs a command replaces or deletes: as
/// `serve`'s, from `DOMICILE_GC_GRACE` (seconds) when it is set, else the
/// default; a bad value is bad input.
pub fn gc_grace_from_env() -> Result<Duration> {
    match std::env::var("DOMICILE_GC_GRACE") {
        Err(_) => Ok(domicile_engine::GcOptions::default().grace),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(secs) => gc_grace(secs),
            Err(_) => Err(BadInput(format!(
                "DOMICILE_GC_GRACE must be a number of seconds, not {v:?}"
            ))
            .into()),
        },
    }
}

/// The grace period of replaced and deleted blobs, from `--gc-grace`; a bad
/// value is bad input.
pub fn gc_grace(secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs)) {
        return Err(BadInput("--gc-grace must be between 0 and 604800 seconds".into()).into());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(config: &Path, args: ServeArgs) -> Result<u8> {
    let config = crate::config_file::load(config)?;
    let options = options(&args, &config.server)?;
    let gc_grace = gc_grace(args.gc_grace)?;
    let checkpoints = checkpoints(&args)?;
    if !(args.multipart_expiry.is_finite()
        && (1.0..=3_650.0 * 86_400.0).contains(&args.multipart_expiry))
    {
        return Err(
            BadInput("--multipart-expiry must be between 1 and 315360000 seconds".into()).into(),
        );
    }
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
    // Bound (and checked) before the engine opens: a refused address costs
    // nothing and changes nothing.
    let rest = bind("REST", &args.listen).await?;
    let s3 = bind("S3", &args.s3_listen).await?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        plaintext_allowed("REST", rest.local_addr()?, args.insecure_plaintext)?;
        plaintext_allowed("S3", s3.local_addr()?, args.insecure_plaintext)?;
        "http"
    };
    let engine = Engine::open_with(
        config,
        secrets,
        EngineOptions {
            max_object_size: options.max_object_size,
            gc: GcOptions {
                grace: gc_grace,
                upload_expiry: Duration::from_secs_f64(args.multipart_expiry),
                ..GcOptions::default()
            },
            ..EngineOptions::default()
        },
    )
    .await?;
    let engine = Arc::new(engine);
    if let Some((every, publish)) = checkpoints {
        tokio::spawn(engine.clone().checkpoint_every(every, publish));
    }
    reload_on_hangup(options.tls.clone());
    println!("rest listening on {scheme}://{}", rest.local_addr()?);
    println!("s3 listening on {scheme}://{}", s3.local_addr()?);
    std::io::stdout().flush()?;
    domicile_server::run(
        engine,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn plain_text_is_refused_off_loopback_unless_asked_for() {
        let any: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        let err = plaintext_allowed("REST", any, false).unwrap_err();
        assert!(err.downcast_ref::<BadInput>().is_some());
        assert!(err.to_string().contains("--insecure-plaintext"), "{err}");
        assert!(plaintext_allowed("REST", any, true).is_ok());
        for lo in ["127.0.0.1:1", "127.8.0.1:1", "[::1]:1"] {
            assert!(
                plaintext_allowed("S3", lo.parse().unwrap(), false).is_ok(),
                "{lo}"
            );
        }
        let v6: SocketAddr = "[::]:1".parse().unwrap();
        assert!(plaintext_allowed("S3", v6, false).is_err());
    }
}
