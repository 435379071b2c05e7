//! HTTP/2 for the servers of the `yamabiko` command (`serve` and `echo`): one hyper
//! HTTP/2 connection whose WebSockets arrive as extended CONNECT streams (RFC 8441).
//!
//! The connection gets yamabiko's [`Http2Settings`]: extended CONNECT on, 128 KiB per
//! stream and a 16 MiB connection window, so one slow WebSocket stalls only itself.
//! On shutdown the connection sends GOAWAY and waits (bounded) for its streams,
//! which close themselves with 1001.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use yamabiko::http2::Http2Settings;

/// The response body of the HTTP/2 services.
pub type Body = Full<Bytes>;

/// The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one HTTP/2 connection with `handle` until it ends or `shutdown` fires.
pub async fn serve<I, F, Fut>(
    io: I,
    peer: SocketAddr,
    shutdown: CancellationToken,
    grace: Duration,
    handle: F,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    Http2Settings::default().configure_hyper(&mut builder);
    let handle = std::sync::Arc::new(handle);
    let service = hyper::service::service_fn(move |req| {
        let handle = handle.clone();
        async move { Ok::<_, Infallible>(handle(req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(grace, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP/2 connection ended");
    }
}

/// Whether a cleartext connection starts with the HTTP/2 preface (prior knowledge),
/// looking at what has arrived without consuming it. `None` if the client closed or
/// sent nothing in `wait`.
pub async fn starts_with_preface(tcp: &tokio::net::TcpStream, wait: Duration) -> Option<bool> {
    let look = async {
        let mut buf = [0u8; PREFACE.len()];
        // Bounded by `wait`; a few bytes usually arrive in the first segment.
        loop {
            let n = tcp.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if buf[..n] != PREFACE[..n] {
                return Some(false);
            }
            if n >= 3 {
                // "PRI" is no HTTP/1.1 method a WebSocket client sends.
                return Some(true);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(wait, look).await.ok().flatten()
}
