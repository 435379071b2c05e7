//! The server side of HTTP/2 on the h2 crate: [`ServerConnection`] and
//! [`IncomingRequest`].
//!
//! hyper's HTTP/2 server leaves received DATA frames in h2's queues until the
//! application reads the upgraded stream, and h2 ends the whole connection (GOAWAY
//! ENHANCE_YOUR_CALM) once too many small frames wait there — so one WebSocket whose
//! application stops reading, while its peer sends many small messages, takes down
//! every other WebSocket on the connection. Here each WebSocket's stream is an
//! [`H2Stream`], which takes frames out of h2's queues as they arrive and returns
//! flow-control credit only as the application reads: a stalled WebSocket holds at
//! most its stream window and costs the others nothing.

use super::settings::Http2Settings;
use super::stream::{ConnectionInfo, H2Stream};
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::proto::handshake::extended_connect;
use crate::proto::Role;
use crate::server::Upgrader;
use bytes::{Bytes, BytesMut};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// One HTTP/2 server connection whose clients may open WebSockets with extended
/// CONNECT (RFC 8441), on the h2 crate.
///
/// Start it on a transport that speaks HTTP/2 — TLS whose ALPN chose `h2`, or a
/// cleartext connection that begins with the HTTP/2 preface (prior knowledge) — then
/// [`accept`](Self::accept) requests until it returns `None`. `accept` also drives
/// the connection (every stream's frames go through it), so keep calling it for as
/// long as any stream should make progress, typically in the connection's own task,
/// and handle each request in a task of its own:
///
/// ```no_run
/// use yamabiko::http2::{Http2Settings, ServerConnection};
/// use yamabiko::Upgrader;
///
/// # async fn serve(tcp: tokio::net::TcpStream) -> yamabiko::Result<()> {
/// let upgrader = Upgrader::new();
/// let mut conn = ServerConnection::handshake(tcp, &Http2Settings::default()).await?;
/// while let Some(request) = conn.accept().await {
///     let request = request?;
///     if request.is_websocket() {
///         // Answers 200, or the refusal (403, 426, ...) on that stream only.
///         let mut ws = request.upgrade(&upgrader)?;
///         tokio::spawn(async move {
///             while let Ok(msg) = ws.read_message().await {
///                 if ws.write_message(msg).await.is_err() {
///                     break;
///                 }
///             }
///         });
///     } else {
///         let page = yamabiko::http::Response::new(yamabiko::bytes::Bytes::from("hello\n"));
///         request.respond(page)?;
///     }
/// }
/// # Ok(()) }
/// ```
///
/// **Flow control.** The connection applies [`Http2Settings`]: the stream and
/// connection windows, the stream limit, the frame size and the send buffer. A
/// WebSocket's received bytes wait in its [`H2Stream`] until its `Conn` reads them,
/// at most `stream_window` of them: credit goes back to the client only as they are
/// read. So a WebSocket nobody reads stalls only itself (its client's writes wait),
/// and all the WebSockets of a connection hold at most `connection_window` received
/// bytes, however small the client's frames.
///
/// **Shutting down.** [`graceful_shutdown`](Self::graceful_shutdown) sends GOAWAY:
/// the client opens no more streams; the open ones go on until they end, and `accept`
/// returns `None` once they all have (bound that wait yourself).
pub struct ServerConnection<T> {
    conn: h2::server::Connection<T, Bytes>,
    info: Arc<ConnectionInfo>,
}

impl<T> fmt::Debug for ServerConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConnection")
            .field("peer_addr", &self.info.peer_addr)
            .field("tls", &self.info.tls)
            .finish_non_exhaustive()
    }
}

impl<T> ServerConnection<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// Runs the server side of the HTTP/2 handshake on `io`: reads the client's
    /// preface and sends SETTINGS that enable extended CONNECT
    /// (`SETTINGS_ENABLE_CONNECT_PROTOCOL`, RFC 8441 §3) with the windows and limits
    /// of `settings`. Not bounded in time: wrap it in `tokio::time::timeout` for
    /// clients that send nothing.
    pub async fn handshake(io: T, settings: &Http2Settings) -> Result<Self> {
        let conn = settings
            .server_builder()
            .handshake(io)
            .await
            .map_err(super::h2_error)?;
        Ok(ServerConnection {
            conn,
            info: Arc::new(ConnectionInfo {
                local_addr: None,
                peer_addr: None,
                tls: false,
            }),
        })
    }

    /// Sets what the WebSockets of this connection report as their addresses
    /// ([`Conn::local_addr`], [`Conn::peer_addr`]) and whether TLS carries the
    /// connection ([`H2Stream::is_tls`]), for streams accepted from now on. The
    /// transport is generic, so the connection cannot find these itself.
    pub fn set_transport_info(&mut self, local: SocketAddr, peer: SocketAddr, tls: bool) {
        self.info = Arc::new(ConnectionInfo {
            local_addr: Some(local),
            peer_addr: Some(peer),
            tls,
        });
    }

    /// The next request, driving the connection meanwhile; `None` once the
    /// connection has ended (the client closed it, or after
    /// [`graceful_shutdown`](Self::graceful_shutdown), once every stream has ended).
    /// An error is the end of the connection too (a broken transport, a protocol
    /// error by the client).
    ///
    /// Cancel-safe: a request is taken from the connection only when it is
    /// returned.
    pub async fn accept(&mut self) -> Option<Result<IncomingRequest>> {
        let (request, respond) = match self.conn.accept().await? {
            Ok(accepted) => accepted,
            Err(e) => return Some(Err(super::h2_error(e))),
        };
        let (parts, body) = request.into_parts();
        let protocol = parts
            .extensions
            .get::<h2::ext::Protocol>()
            .map(|p| p.as_str().to_owned());
        let head = http::Request::from_parts(parts, ());
        Some(Ok(IncomingRequest {
            head,
            protocol,
            body,
            respond,
            info: self.info.clone(),
        }))
    }

    /// Starts a graceful shutdown: GOAWAY, so the client opens no new streams, while
    /// the open ones go on; [`accept`](Self::accept) returns `None` once they have all
    /// ended.
    pub fn graceful_shutdown(&mut self) {
        self.conn.graceful_shutdown();
    }
}

/// A request on a [`ServerConnection`]: an extended CONNECT that asks for a
/// WebSocket ([`upgrade`](Self::upgrade) it), or any other request
/// ([`respond`](Self::respond) to it). Dropping it unanswered resets its stream.
pub struct IncomingRequest {
    head: http::Request<()>,
    protocol: Option<String>,
    body: h2::RecvStream,
    respond: h2::server::SendResponse<Bytes>,
    info: Arc<ConnectionInfo>,
}

impl fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("method", self.head.method())
            .field("uri", self.head.uri())
            .field("protocol", &self.protocol)
            .field("stream_id", &self.respond.stream_id().as_u32())
            .finish_non_exhaustive()
    }
}

impl IncomingRequest {
    /// The request's method, URI (with `:scheme`, `:authority` and `:path`), version
    /// (HTTP/2) and headers.
    pub fn head(&self) -> &http::Request<()> {
        &self.head
    }

    /// The `:protocol` pseudo-header of an extended CONNECT (`websocket` for a
    /// WebSocket), which HTTP/2 carries outside the header map.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Whether the request asks for a WebSocket: a CONNECT with a `:protocol`
    /// (RFC 8441 §4). [`upgrade`](Self::upgrade) checks the rest.
    pub fn is_websocket(&self) -> bool {
        self.head.method() == http::Method::CONNECT && self.protocol.is_some()
    }

    /// Applies `upgrader`'s policy (origin, subprotocols, compression, extra headers;
    /// [`Upgrader::negotiate_extended_connect`]) and answers on this request's stream:
    /// `200` and the WebSocket's [`Conn`] over an [`H2Stream`], or the refusal's
    /// status (405, 400, 426, 403) with a one-line body, returned as
    /// [`Error::Handshake`]. Either way the connection's other streams go on. Needs a
    /// tokio runtime (the stream's receiving task is spawned on it).
    pub fn upgrade(mut self, upgrader: &Upgrader) -> Result<Conn<H2Stream>> {
        let agreed = match upgrader.negotiate_extended_connect(&self.head, self.protocol()) {
            Ok(agreed) => agreed,
            Err(e) => {
                tracing::debug!(error = %e, "websocket: extended CONNECT refused");
                let refusal = extended_connect::build_error_response(&e).map(Bytes::from);
                // The refusal is the answer; failing to send it changes nothing.
                let _ = self.send(refusal);
                return Err(Error::Handshake(e));
            }
        };
        let send = self
            .respond
            .send_response(agreed.response, false)
            .map_err(super::h2_error)?;
        let stream = H2Stream::new(send, self.body, self.info, Arc::new(()));
        let conn = Conn::from_parts(
            stream,
            Role::Server,
            upgrader.config(),
            BytesMut::new(),
            agreed.subprotocol,
        );
        Ok(match (&agreed.deflate, upgrader.compression_config()) {
            (Some(params), Some(config)) => conn.with_deflate(params, config),
            _ => conn,
        })
    }

    /// Answers a request that is not a WebSocket (a page, an asset, an error) with
    /// `response`, its body sent whole and the stream then ended. The body is handed
    /// to the connection, which sends it as the client's flow-control windows allow;
    /// nothing here waits. The request's own body, if any, is not read.
    pub fn respond(mut self, response: http::Response<Bytes>) -> Result<()> {
        self.send(response)
    }

    fn send(&mut self, response: http::Response<Bytes>) -> Result<()> {
        let (mut parts, body) = response.into_parts();
        // Connection-specific header fields are malformed in HTTP/2 (RFC 9113
        // §8.2.2), and h2 refuses them.
        parts.headers.remove(http::header::CONNECTION);
        parts.headers.remove("keep-alive");
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        parts.headers.remove(http::header::UPGRADE);
        let head = http::Response::from_parts(parts, ());
        let end = body.is_empty();
        let mut send = self
            .respond
            .send_response(head, end)
            .map_err(super::h2_error)?;
        if !end {
            send.send_data(body, true).map_err(super::h2_error)?;
        }
        Ok(())
    }
}
