//! Request bodies as the engine reads them: an `AsyncRead` over the body
//! stream that stops at the size limit, checks the declared length, and
//! gives up on a client that goes quiet. When it stops a read, it records
//! why, so the handler answers with the right S3 code instead of the
//! engine's generic "reading the body failed".

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use s3s::{S3Error, S3ErrorCode};
use tokio::time::{Instant, Sleep};
use tokio_util::io::StreamReader;

use super::error::s3;

/// Why a body was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    TooLarge(u64),
    /// Fewer or more bytes than Content-Length said.
    Length,
    Idle,
    /// The client's stream failed (disconnect, bad chunk signature).
    Client,
}

impl Fault {
    pub(crate) fn to_s3(self) -> S3Error {
        match self {
            Fault::TooLarge(max) => s3(
                S3ErrorCode::EntityTooLarge,
                format!(
                    "your proposed upload exceeds the maximum allowed object size of {max} bytes"
                ),
            ),
            Fault::Length => s3(
                S3ErrorCode::IncompleteBody,
                "you did not provide the number of bytes specified by the Content-Length HTTP header",
            ),
            Fault::Idle => s3(
                S3ErrorCode::RequestTimeout,
                "your socket connection to the server was not read from or written to within the timeout period",
            ),
            Fault::Client => s3(
                S3ErrorCode::IncompleteBody,
                "the request body could not be read to its end",
            ),
        }
    }
}

/// Shared with the handler: bytes seen and the fault, if any.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    fault: Mutex<Option<Fault>>,
}

impl Progress {
    pub(crate) fn fault(&self) -> Option<Fault> {
        self.fault.lock().ok().and_then(|f| *f)
    }

    fn set(&self, f: Fault) {
        if let Ok(mut slot) = self.fault.lock() {
            slot.get_or_insert(f);
        }
    }
}

type Inner = Pin<Box<dyn Stream<Item = Result<Bytes, s3s::StdError>> + Send + Sync>>;

/// The checked body stream.
pub(crate) struct Body {
    inner: Inner,
    seen: u64,
    max: u64,
    expected: Option<u64>,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    progress: Arc<Progress>,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").field("seen", &self.seen).finish()
    }
}

impl Body {
    fn fail(&mut self, f: Fault) -> Poll<Option<std::io::Result<Bytes>>> {
        self.progress.set(f);
        Poll::Ready(Some(Err(std::io::Error::other("request body refused"))))
    }
}

impl Stream for Body {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    return this.fail(Fault::Idle);
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(bytes))) => {
                this.seen += bytes.len() as u64;
                if this.seen > this.max {
                    return this.fail(Fault::TooLarge(this.max));
                }
                if this.expected.is_some_and(|n| this.seen > n) {
                    return this.fail(Fault::Length);
                }
                let deadline = Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(_))) => this.fail(Fault::Client),
            Poll::Ready(None) => {
                if this.expected.is_some_and(|n| this.seen != n) {
                    return this.fail(Fault::Length);
                }
                Poll::Ready(None)
            }
        }
    }
}

/// A body as an `AsyncRead`, with the shared record of why it stopped.
pub(crate) fn reader(
    blob: Option<s3s::dto::StreamingBlob>,
    expected: Option<i64>,
    max: u64,
    idle: Duration,
) -> Result<(StreamReader<Body, Bytes>, Arc<Progress>), S3Error> {
    let expected = match expected {
        Some(n) if n < 0 => {
            return Err(s3(
                S3ErrorCode::InvalidArgument,
                "Content-Length must not be negative",
            ));
        }
        Some(n) => Some(n as u64),
        None => None,
    };
    if let Some(n) = expected
        && n > max
    {
        return Err(Fault::TooLarge(max).to_s3());
    }
    let inner: Inner = match blob {
        Some(b) => Box::pin(b),
        None => Box::pin(futures::stream::empty()),
    };
    let progress = Arc::new(Progress::default());
    let body = Body {
        inner,
        seen: 0,
        max,
        expected,
        idle,
        sleep: Box::pin(tokio::time::sleep(idle)),
        progress: progress.clone(),
    };
    Ok((StreamReader::new(body), progress))
}

/// A streamed request body of unknown length (chunked, no
/// `Content-Length`) signed with `UNSIGNED-PAYLOAD`. s3s 0.14 refuses such
/// a body (`MissingContentLength`) unless its size hint is exact, so this
/// wrapper claims the size limit as that hint. Nothing else reads the
/// hint: [`reader`] counts the bytes as they come and stops at the limit,
/// and s3s reads no body of an object upload in full.
pub(crate) struct Unsized {
    inner: axum::body::Body,
    claim: u64,
}

impl Unsized {
    pub(crate) fn new(inner: axum::body::Body, claim: u64) -> Self {
        Unsized { inner, claim }
    }
}

impl http_body::Body for Unsized {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.claim)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn blob(parts: &[&'static [u8]]) -> s3s::dto::StreamingBlob {
        let items: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        s3s::dto::StreamingBlob::wrap(futures::stream::iter(items))
    }

    async fn read_all(
        parts: &[&'static [u8]],
        expected: Option<i64>,
        max: u64,
    ) -> (std::io::Result<Vec<u8>>, Option<Fault>) {
        let Ok((mut r, p)) = reader(Some(blob(parts)), expected, max, Duration::from_secs(5))
        else {
            return (Err(std::io::Error::other("refused")), None);
        };
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).await.map(|_| out);
        (res, p.fault())
    }

    #[tokio::test]
    async fn passes_a_body_within_limits() {
        let (r, f) = read_all(&[b"abc", b"def"], Some(6), 10).await;
        assert_eq!(r.ok(), Some(b"abcdef".to_vec()));
        assert_eq!(f, None);
    }

    #[tokio::test]
    async fn stops_at_the_size_limit() {
        let (r, f) = read_all(&[b"abc", b"def"], None, 4).await;
        assert!(r.is_err());
        assert_eq!(f, Some(Fault::TooLarge(4)));
    }

    #[tokio::test]
    async fn checks_the_declared_length() {
        let (r, f) = read_all(&[b"abc"], Some(5), 10).await;
        assert!(r.is_err());
        assert_eq!(f, Some(Fault::Length));
        assert!(reader(None, Some(11), 10, Duration::from_secs(1)).is_err());
    }
}
