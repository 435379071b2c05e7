//! `yamabiko echo` over HTTP/2: every extended CONNECT on the connection (RFC 8441)
//! becomes an echoing (or, with `--broadcast`, broadcasting) WebSocket, with the
//! same upgrader, limits, idle timeout and shutdown as over HTTP/1.1. Reached
//! through ALPN `h2` (`--tls-cert`) or, with `--h2c`, cleartext HTTP/2 with prior
//! knowledge. Other requests get
//! the handshake's refusal (405 for anything but CONNECT).

use crate::echo::{serve_conn, SHUTDOWN_GRACE};
use crate::echo_broadcast::Broadcast;
use crate::http2_server::{self, Transport};
use crate::limits::ConnPermit;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use yamabiko::Upgrader;

/// Serves one HTTP/2 connection: each WebSocket in a task of its own. The permit
/// counts the connection against `--max-conns` (its streams are bounded by the
/// HTTP/2 stream limit).
pub async fn serve<I>(
    io: I,
    upgrader: Upgrader,
    transport: Transport,
    idle: Duration,
    broadcast: Option<Arc<Broadcast>>,
    shutdown: CancellationToken,
    permit: ConnPermit,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let _permit = permit;
    let peer = transport.peer;
    tracing::debug!(%peer, "HTTP/2 connection");
    let stop = shutdown.clone();
    http2_server::serve(io, transport, shutdown, SHUTDOWN_GRACE, move |request| {
        // Anything but an extended CONNECT gets its refusal (405, 400, 426, 403).
        match request.upgrade(&upgrader) {
            Ok(conn) => {
                tracing::debug!(%peer, "WebSocket over HTTP/2 (extended CONNECT)");
                let broadcast = broadcast.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    serve_conn(conn, peer, idle, broadcast.as_deref(), stop).await;
                });
            }
            Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
        }
    })
    .await;
}
