//! domicile on the network: the engine behind an S3-compatible API, for
//! applications and tools that already speak S3, and a REST admin API, for
//! operators and compliance teams. This crate never touches the catalog or
//! the region stores itself: every request goes through [`Engine`].
//!
//! - [`s3`]: the S3 API on `s3s` (SigV4, path-style buckets). Buckets are the
//!   config's `[[bucket]]`s and each key maps to (subject, category, name);
//!   credentials scoped to buckets, read or read-write; one handler per
//!   operation, errors mapped to S3 codes that never carry internals.
//! - [`rest`]: the admin API on axum: JSON, bearer tokens with a role
//!   (admin, operator, auditor, legal) checked against one permission
//!   table, `/openapi.json`, `/metrics`, `/healthz`.
//! - [`metrics`]: request, byte and error counters per operation and region,
//!   rendered as Prometheus text.
//! - [`error`]: why the server could not start or stopped.
//!
//! [`run`] serves both APIs on listeners the caller bound (port 0 in tests)
//! until `shutdown` resolves, then drains in-flight requests.

pub mod error;
pub mod metrics;
pub mod rest;
pub mod s3;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use domicile_engine::Engine;
use tokio::net::TcpListener;

pub use error::{Error, Result};
pub use metrics::Metrics;

/// Limits of both APIs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest object body accepted by PutObject, UploadPart and the
    /// assembled multipart object, in bytes.
    pub max_object_size: u64,
    /// Largest JSON body of the REST API, in bytes.
    pub max_json_body: usize,
    /// Longest a REST request may take.
    pub request_timeout: Duration,
    /// Longest an S3 upload may wait for its next bytes.
    pub body_idle_timeout: Duration,
    /// Time between the server's garbage collection passes
    /// (`Engine::collect_garbage_every`); zero runs none.
    pub collect_every: Duration,
    /// Longest a server acts on a policy version after another became
    /// active, when none of its commits was refused meanwhile
    /// (`Engine::follow_policy_every`); zero probes never.
    pub follow_every: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_object_size: 5 << 30,
            max_json_body: 64 * 1024,
            request_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            collect_every: Duration::from_secs(60),
            follow_every: Duration::from_secs(1),
        }
    }
}

/// The sockets to serve on; either may be absent.
#[derive(Debug, Default)]
pub struct Listeners {
    pub rest: Option<TcpListener>,
    pub s3: Option<TcpListener>,
}

/// Serves the REST and S3 APIs until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish. Fails before serving
/// anything if the S3 listener is given without S3 credentials in the
/// secrets.
pub async fn run(
    engine: Arc<Engine>,
    listeners: Listeners,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let s3_app = match &listeners.s3 {
        Some(_) => Some(s3::router(engine.clone(), metrics.clone(), &options)?),
        None => None,
    };
    let rest_app = rest::router(engine.clone(), metrics, &options);

    // One shutdown signal, fanned out to both servers.
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = listeners.rest {
        let signal = stopped(rx.clone());
        tasks.spawn(async move {
            axum::serve(listener, rest_app)
                .with_graceful_shutdown(signal)
                .await
                .map_err(|source| Error::Serve {
                    api: "rest",
                    source,
                })
        });
    }
    if let (Some(listener), Some(app)) = (listeners.s3, s3_app) {
        let signal = stopped(rx.clone());
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
                .map_err(|source| Error::Serve { api: "s3", source })
        });
    }
    if !options.follow_every.is_zero() {
        let engine = engine.clone();
        let signal = stopped(rx.clone());
        tasks.spawn(async move {
            engine
                .follow_policy_every(options.follow_every, signal)
                .await;
            Ok(())
        });
    }
    if !options.collect_every.is_zero() {
        let signal = stopped(rx.clone());
        tasks.spawn(async move {
            engine
                .collect_garbage_every(options.collect_every, signal)
                .await;
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Error::Internal(format!("server task: {e}")))??;
    }
    Ok(())
}
