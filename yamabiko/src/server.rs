//! The server side of the opening handshake: [`Upgrader`].
//!
//! The same `Upgrader` answers HTTP/2 extended CONNECT requests (RFC 8441):
//! [`Upgrader::negotiate_extended_connect`].

mod extended_connect;

pub use extended_connect::NegotiatedConnect;

use crate::conn::{Config, Conn};
use crate::error::{Error, Result};
use crate::proto::deflate::{self, DeflateConfig, DeflateParams};
use crate::proto::handshake::{self, HandshakeError};
use crate::proto::Role;
use bytes::BytesMut;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type OriginCheck = Arc<dyn Fn(&http::Request<()>) -> bool + Send + Sync>;

/// Writes an HTTP/1.1 response (status line, headers, body; `Content-Length` added when
/// missing) and flushes it: how a server that reads requests itself
/// ([`Upgrader::read_request`]) answers those that are not WebSocket upgrades, on the
/// same port. Not bounded in time: wrap it in `tokio::time::timeout` for slow peers.
///
/// ```no_run
/// use yamabiko::http::{header, Response, StatusCode};
/// use yamabiko::{is_websocket_upgrade, write_http_response, Upgrader};
///
/// # async fn serve(mut tcp: tokio::net::TcpStream, upgrader: Upgrader) -> yamabiko::Result<()> {
/// let (request, leftover) = upgrader.read_request(&mut tcp).await?;
/// if is_websocket_upgrade(&request) && request.uri().path() == "/ws" {
///     let mut conn = upgrader.upgrade_request(tcp, &request, leftover).await?;
///     conn.write_text("hello").await?;
/// } else if request.uri().path() == "/" {
///     let page = Response::builder()
///         .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
///         .header(header::CONNECTION, "close")
///         .body("<script>new WebSocket(`ws://${location.host}/ws`)</script>")
///         .expect("valid headers");
///     write_http_response(&mut tcp, &page).await?;
/// } else {
///     let missing = Response::builder()
///         .status(StatusCode::NOT_FOUND)
///         .header(header::CONNECTION, "close")
///         .body("not found\n")
///         .expect("valid headers");
///     write_http_response(&mut tcp, &missing).await?;
/// }
/// # Ok(()) }
/// ```
pub async fn write_http_response<S, B>(
    stream: &mut S,
    response: &http::Response<B>,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
    B: AsRef<[u8]>,
{
    stream
        .write_all(&handshake::encode_response(response))
        .await?;
    stream.flush().await
}

/// What [`Upgrader::agree`] settles: the subprotocol, and permessage-deflate with its
/// response header.
type Agreement = (Option<String>, Option<(DeflateParams, String)>);

/// Turns an HTTP/1.1 upgrade request into a [`Conn`] (gorilla's `Upgrader`).
///
/// Build it once and share it; `upgrade` takes `&self`.
///
/// ```no_run
/// # async fn run() -> yamabiko::Result<()> {
/// let upgrader = yamabiko::Upgrader::new().subprotocols(["chat"]);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let (tcp, _) = listener.accept().await?;
/// let mut conn = upgrader.upgrade(tcp).await?;
/// conn.write_text("hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Upgrader {
    config: Config,
    subprotocols: Vec<String>,
    check_origin: Option<OriginCheck>,
    handshake_timeout: Duration,
    max_header_bytes: usize,
    response_headers: http::HeaderMap,
    compression: Option<DeflateConfig>,
}

/// The outcome of checking an upgrade request: what to answer and what was agreed.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The complete `101 Switching Protocols` response head.
    pub response: Vec<u8>,
    /// The subprotocol chosen, if any.
    pub subprotocol: Option<String>,
    /// permessage-deflate parameters, when compression was agreed.
    pub deflate: Option<DeflateParams>,
}

impl Default for Upgrader {
    fn default() -> Self {
        Upgrader {
            config: Config::default(),
            subprotocols: Vec::new(),
            check_origin: None,
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 8192,
            response_headers: http::HeaderMap::new(),
            compression: None,
        }
    }
}

impl fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrader")
            .field("config", &self.config)
            .field("subprotocols", &self.subprotocols)
            .field("custom_origin_check", &self.check_origin.is_some())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .finish()
    }
}

impl Upgrader {
    /// An upgrader with the defaults: same-origin check, no subprotocols, 64 MiB
    /// messages, 16 MiB frames, 10 s handshake timeout, 8 KiB request head.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the origin check. The default refuses a request whose `Origin` header
    /// names another host than `Host` (cross-site WebSocket hijacking protection); a
    /// request without `Origin` (non-browser clients) passes.
    pub fn check_origin(
        mut self,
        check: impl Fn(&http::Request<()>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.check_origin = Some(Arc::new(check));
        self
    }

    /// Subprotocols the server speaks, most preferred first.
    pub fn subprotocols<I, T>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Read buffer size of each connection.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }

    /// Write buffer (fragment) size of each connection's message writers.
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.config.write_buffer_size = bytes;
        self
    }

    /// Largest message accepted (default 64 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Largest frame accepted (default 16 MiB).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// How long a client may take to send its request (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Largest request head accepted (default 8 KiB); larger → HTTP 431.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Adds a header to every 101 response (e.g. `Set-Cookie`).
    pub fn response_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.response_headers.append(name, value);
        self
    }

    /// Accepts permessage-deflate offers (RFC 7692) with these settings; `None` refuses
    /// them (the default, as in gorilla).
    pub fn compression(mut self, config: Option<DeflateConfig>) -> Self {
        self.compression = config;
        self
    }

    /// Accepts permessage-deflate offers with the default [`DeflateConfig`] (level 1,
    /// 15-bit windows, context takeover, messages under 64 bytes sent plain).
    pub fn enable_compression(self, enable: bool) -> Self {
        self.compression(enable.then(DeflateConfig::default))
    }

    /// The connection settings this upgrader applies.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handshake timeout and request head limit, for the other drivers.
    pub(crate) fn handshake_limits(&self) -> (Duration, usize) {
        (self.handshake_timeout, self.max_header_bytes)
    }

    /// The permessage-deflate settings, when offers are accepted.
    pub(crate) fn compression_config(&self) -> Option<&DeflateConfig> {
        self.compression.as_ref()
    }

    /// Reads the upgrade request from `stream`, checks it, answers 101 and returns the
    /// connection. A bad request gets its HTTP error response (400, 403, 405, 426, 431)
    /// and an [`Error::Handshake`]; a stalled client gets [`Error::Timeout`].
    pub async fn upgrade<S>(&self, stream: S) -> Result<Conn<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.upgrade_with_request(stream)
            .await
            .map(|(conn, _)| conn)
    }

    /// Like [`upgrade`](Self::upgrade), also returning the request (path, headers,
    /// cookies) for the application.
    pub async fn upgrade_with_request<S>(
        &self,
        mut stream: S,
    ) -> Result<(Conn<S>, http::Request<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (request, leftover) = self.read_request(&mut stream).await?;
        let conn = self.upgrade_request(stream, &request, leftover).await?;
        Ok((conn, request))
    }

    /// Reads one HTTP request head, within the handshake timeout and header limit.
    /// Returns it with the bytes read past it. Lets an application serve plain HTTP and
    /// WebSocket on one port: look at the request, then call
    /// [`upgrade_request`](Self::upgrade_request) or answer it yourself.
    pub async fn read_request<S>(&self, stream: &mut S) -> Result<(http::Request<()>, BytesMut)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let read = async {
            let mut buf = BytesMut::with_capacity(1024);
            loop {
                match handshake::parse_request(&buf, self.max_header_bytes) {
                    Ok(Some((req, used))) => {
                        let _ = buf.split_to(used);
                        return Ok((req, buf));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Error::Handshake(e)),
                }
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
        };
        match tokio::time::timeout(self.handshake_timeout, read).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(Error::Handshake(e))) => {
                self.refuse(stream, &e).await;
                Err(Error::Handshake(e))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Completes the handshake for a request already read: validates it, runs the
    /// origin check, negotiates the subprotocol and writes the 101 response.
    pub async fn upgrade_request<S>(
        &self,
        mut stream: S,
        request: &http::Request<()>,
        leftover: BytesMut,
    ) -> Result<Conn<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let agreed = match self.negotiate(request) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(&mut stream, &e).await;
                return Err(Error::Handshake(e));
            }
        };
        let write = async {
            stream.write_all(&agreed.response).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.handshake_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Io(e)),
            Err(_) => return Err(Error::Timeout),
        }
        let conn = Conn::from_parts(
            stream,
            Role::Server,
            &self.config,
            leftover,
            agreed.subprotocol,
        );
        Ok(match (&agreed.deflate, &self.compression) {
            (Some(params), Some(config)) => conn.with_deflate(params, config),
            _ => conn,
        })
    }

    /// Checks a request and builds the 101 response, choosing the subprotocol and the
    /// compression parameters. The building block for integrations that write the
    /// response themselves.
    pub fn negotiate(
        &self,
        request: &http::Request<()>,
    ) -> std::result::Result<Negotiated, HandshakeError> {
        let offer = handshake::validate_request(request)?;
        let (protocol, deflate) = self.agree(request, &offer.protocols, &offer.extensions)?;
        let accept = handshake::accept_key(offer.key.as_bytes());
        let response = handshake::build_response(
            &accept,
            protocol.as_deref(),
            deflate.as_ref().map(|(_, header)| header.as_str()),
            &self.response_headers,
        );
        Ok(Negotiated {
            response,
            subprotocol: protocol,
            deflate: deflate.map(|(params, _)| params),
        })
    }

    /// The policy part of a negotiation, the same over HTTP/1.1 and HTTP/2: the origin
    /// check, the subprotocol, and permessage-deflate (its parameters and the
    /// response header).
    fn agree(
        &self,
        request: &http::Request<()>,
        protocols: &[String],
        extensions: &Option<String>,
    ) -> std::result::Result<Agreement, HandshakeError> {
        let origin_ok = match &self.check_origin {
            Some(check) => check(request),
            None => handshake::is_same_origin(request),
        };
        if !origin_ok {
            return Err(HandshakeError::OriginRejected);
        }
        let protocol = handshake::select_subprotocol(protocols, &self.subprotocols);
        // RFC 7692 §5: a malformed or unacceptable offer is declined, not fatal.
        let deflate = match (&self.compression, extensions) {
            (Some(config), Some(offers)) => {
                deflate::negotiate_server(offers, config).ok().flatten()
            }
            _ => None,
        };
        Ok((protocol, deflate))
    }

    async fn refuse<S: AsyncWrite + Unpin>(&self, stream: &mut S, e: &HandshakeError) {
        tracing::debug!(error = %e, "websocket: handshake refused");
        let response = e.to_http_response();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
        })
        .await;
    }
}
