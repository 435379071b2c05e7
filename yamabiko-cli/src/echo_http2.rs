//! `yamabiko echo` over HTTP/2: every extended CONNECT on the connection (RFC 8441)
//! becomes an echoing (or, with `--broadcast`, broadcasting) WebSocket, with the same upgrader, limits, idle timeout and
//! shutdown as over HTTP/1.1. Reached through ALPN `h2` (`--tls-cert`) or, with
//! `--h2c`, cleartext HTTP/2 with prior knowledge.

use crate::echo::{serve_conn, SHUTDOWN_GRACE};
use crate::echo_broadcast::Broadcast;
use crate::http2_server::{self, Body};
use crate::limits::ConnPermit;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use yamabiko::upgrade::hyper::error_response;
use yamabiko::Upgrader;

/// Serves one HTTP/2 connection: each WebSocket in a task of its own. The permit
/// counts the connection against `--max-conns` (its streams are bounded by the
/// HTTP/2 stream limit).
pub async fn serve<I>(
    io: I,
    upgrader: Upgrader,
    peer: SocketAddr,
    idle: Duration,
    broadcast: Option<Arc<Broadcast>>,
    shutdown: CancellationToken,
    permit: ConnPermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    tracing::debug!(%peer, "HTTP/2 connection");
    let stop = shutdown.clone();
    http2_server::serve(io, peer, shutdown, SHUTDOWN_GRACE, move |mut req| {
        let upgrader = upgrader.clone();
        let stop = stop.clone();
        let broadcast = broadcast.clone();
        async move {
            match upgrader.upgrade_hyper::<_, Body>(&mut req) {
                Ok((response, upgrading)) => {
                    tokio::spawn(async move {
                        match upgrading.await {
                            Ok(conn) => {
                                tracing::debug!(%peer, "WebSocket over HTTP/2 (extended CONNECT)");
                                serve_conn(conn, peer, idle, broadcast.as_deref(), stop).await;
                            }
                            Err(e) => tracing::debug!(%peer, error = %e, "upgrade failed"),
                        }
                    });
                    response
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "handshake failed");
                    error_response::<String>(&e).map(|body| Body::new(Bytes::from(body)))
                }
            }
        }
    })
    .await;
}
