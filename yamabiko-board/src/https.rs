//! The board over HTTPS (`--tls-cert`, `--tls-key`): ALPN offers `h2` and
//! `http/1.1`. A browser that picks `h2` loads the page over HTTP/2 and opens its
//! WebSocket inside the same connection as an extended CONNECT stream (RFC 8441);
//! one that picks `http/1.1` gets the plain board's handling over TLS.
//!
//! Each WebSocket's `connected` log line says how it came (`via="HTTP/2 extended
//! CONNECT"` or `via="HTTP/1.1 upgrade"`), and [`Board::http2_websockets`] counts
//! the HTTP/2 ones.

use super::server::{asset, handle_tcp, run_client, Board, ASSET_HEADERS};
use crate::http2_server::{self, Transport};
use crate::limits::ConnPermit;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use yamabiko::http2::IncomingRequest;
use yamabiko::Upgrader;

/// How long a client may take over the TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// How long an HTTP/2 connection waits for its streams at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// One HTTPS connection: TLS, then HTTP/2 or HTTP/1.1 as ALPN decided.
pub async fn handle_tls(
    acceptor: TlsAcceptor,
    board: Arc<Board>,
    upgrader: Arc<Upgrader>,
    tcp: TcpStream,
    peer: SocketAddr,
    shutdown: CancellationToken,
    permit: ConnPermit,
) {
    let _permit = permit;
    let accepted = tokio::select! {
        _ = shutdown.cancelled() => return,
        a = tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(tcp)) => a,
    };
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        handle_tcp(board, upgrader, tls, peer, shutdown).await;
        return;
    }
    let local = match tls.get_ref().0.local_addr() {
        Ok(local) => local,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "no local address");
            return;
        }
    };
    tracing::debug!(%peer, "HTTP/2 connection");
    let stop = shutdown.clone();
    let transport = Transport {
        local,
        peer,
        tls: true,
    };
    http2_server::serve(tls, transport, shutdown, SHUTDOWN_GRACE, move |request| {
        respond(request, &board, &upgrader, peer, &stop)
    })
    .await;
}

/// One HTTP/2 request: `/ws` is the WebSocket, anything else an asset. Answers at
/// once; a WebSocket runs in a task of its own.
fn respond(
    request: IncomingRequest,
    board: &Arc<Board>,
    upgrader: &Upgrader,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) {
    let head = request.head();
    if head.uri().path() != "/ws" {
        let (status, content_type, body) = asset(head.method(), head.uri().path());
        let code = status
            .split(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(500);
        let body = if head.method() == http::Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from_static(body)
        };
        let mut b = http::Response::builder()
            .status(code)
            .header(http::header::CONTENT_TYPE, content_type);
        for (name, value) in ASSET_HEADERS {
            b = b.header(name, value);
        }
        if code == 405 {
            b = b.header(http::header::ALLOW, "GET, HEAD");
        }
        tracing::debug!(path = %head.uri().path(), status, "http/2");
        let response = b.body(body).unwrap_or_else(|_| {
            let mut r = http::Response::new(Bytes::new());
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        });
        if let Err(e) = request.respond(response) {
            tracing::debug!(%peer, error = %e, "response not sent");
        }
        return;
    }
    match request.upgrade(upgrader) {
        Ok(conn) => {
            let board = board.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let id = board.next_client();
                let span = tracing::info_span!("client", id, %peer);
                span.in_scope(|| run_client(board, conn, id, shutdown, http::Version::HTTP_2))
                    .instrument(span)
                    .await;
            });
        }
        Err(e) => tracing::info!(%peer, error = %e, "websocket handshake refused"),
    }
}
