//! HTTP/2 for the servers of the `yamabiko` command (`serve` and `echo`): one
//! [`ServerConnection`] whose WebSockets arrive as extended CONNECT streams
//! (RFC 8441).
//!
//! The connection gets yamabiko's [`Http2Settings`]: extended CONNECT on, 128 KiB per
//! stream and a 16 MiB connection window. Each WebSocket's received frames leave h2's
//! queues as they arrive and wait in its `H2Stream` within the stream window, so one
//! slow WebSocket stalls only itself — however small its client's messages (hyper's
//! server would end the whole connection on a flood of tiny unread frames). On
//! shutdown the connection sends GOAWAY and keeps driving its streams (bounded),
//! which close themselves with 1001.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use yamabiko::http2::{Http2Settings, IncomingRequest, ServerConnection};

/// The first bytes of an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a client may take to send its preface and SETTINGS.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Where an HTTP/2 connection runs, for its WebSockets' addresses.
#[derive(Clone, Copy, Debug)]
pub struct Transport {
    /// Our end of the TCP connection.
    pub local: SocketAddr,
    /// The client's end.
    pub peer: SocketAddr,
    /// Whether TLS carries the connection.
    pub tls: bool,
}

/// Serves one HTTP/2 connection until it ends or `shutdown` fires (then for at most
/// `grace` more), giving each request to `handle`. `handle` must not wait: the
/// connection's frames (every stream's) move only while this loop runs, so it
/// answers at once or spawns.
pub async fn serve<I, F>(
    io: I,
    transport: Transport,
    shutdown: CancellationToken,
    grace: Duration,
    mut handle: F,
) where
    I: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(IncomingRequest),
{
    let peer = transport.peer;
    let settings = Http2Settings::default();
    let handshake = ServerConnection::handshake(io, &settings);
    let mut conn = tokio::select! {
        _ = shutdown.cancelled() => return,
        c = tokio::time::timeout(HANDSHAKE, handshake) => match c {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "HTTP/2 handshake timed out");
                return;
            }
        },
    };
    conn.set_transport_info(transport.local, transport.peer, transport.tls);
    let mut deadline = None;
    loop {
        let next = tokio::select! {
            r = conn.accept() => r,
            _ = shutdown.cancelled(), if deadline.is_none() => {
                conn.graceful_shutdown();
                deadline = Some(tokio::time::Instant::now() + grace);
                continue;
            }
            _ = sleep_until(deadline) => {
                tracing::debug!(%peer, "HTTP/2 streams still open after the grace period");
                return;
            }
        };
        match next {
            Some(Ok(request)) => handle(request),
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HTTP/2 connection ended");
                return;
            }
            None => return,
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
