//! The accept loop of one listener: connections taken up to a cap, TLS
//! when configured, HTTP/1.1 by hyper with a deadline on every request
//! head, and a graceful end.
//!
//! - **Connections.** At most `max_connections` are open on the listener;
//!   beyond them the loop stops accepting, so new connections wait in the
//!   kernel's backlog until one closes instead of costing memory and file
//!   descriptors here.
//! - **Slow clients.** A TLS handshake and every request head (the first
//!   one, and each next one on a kept-alive connection) must arrive within
//!   `header_read_timeout`, or the connection is closed. A client that
//!   opens connections and never finishes its headers therefore holds each
//!   one for that long at most.
//! - **Shutdown.** When `stop` turns true the listener closes, idle
//!   connections close, and a connection with a request in flight finishes
//!   it (its response body too) and then closes. The loop returns once every
//!   connection is gone.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::error::{Error, Result};

/// What bounds one listener's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` turns true, then drains.
pub(crate) async fn serve(
    api: &'static str,
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let mut stopping = stop.clone();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stopping) => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors or similar: wait rather than
                    // spin; the connections that hold them will close.
                    tracing::warn!(api, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            _ = stopped(&mut stopping) => break,
        };
        let app = app.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(api, stream, app, tls, limits.header_read_timeout, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a slot until it closes: having them all back
    // means every request in flight has finished.
    let _all = slots
        .acquire_many(max as u32)
        .await
        .map_err(|e| Error::Internal(format!("{api} connections: {e}")))?;
    Ok(())
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    api: &'static str,
    stream: TcpStream,
    app: Router,
    tls: Option<TlsAcceptor>,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => http(api, TokioIo::new(stream), app, header_read_timeout, stop).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(header_read_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(api, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(api, "TLS handshake timed out");
                        return;
                    }
                },
                _ = stopped(&mut stop) => return,
            };
            http(api, TokioIo::new(stream), app, header_read_timeout, stop).await
        }
    }
}

async fn http<I>(
    api: &'static str,
    io: I,
    app: Router,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut app = app.clone();
        async move {
            let res: std::result::Result<_, Infallible> = app.call(req.map(Body::new)).await;
            res
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(api, error = %e, "connection ended");
            }
            return;
        }
        _ = stopped(&mut stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(api, error = %e, "connection ended while shutting down");
    }
}
