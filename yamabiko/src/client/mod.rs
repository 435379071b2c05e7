//! The client side of the opening handshake: [`Dialer`] (gorilla's `Dialer`).
//!
//! ```no_run
//! # async fn run() -> yamabiko::Result<()> {
//! let (mut conn, response) = yamabiko::Dialer::new()
//!     .subprotocols(["chat"])
//!     .dial("wss://example.com/socket?room=1")
//!     .await?;
//! println!("agreed on {:?}", response.headers().get("sec-websocket-protocol"));
//! conn.write_text("hello").await?;
//! let reply = conn.read_message().await?;
//! # Ok(()) }
//! ```
//!
//! A server that answers anything but `101 Switching Protocols` gives
//! [`Error::BadHandshake`] with its status, headers and the start of its body; a `101`
//! that does not prove it understood the request (wrong `Sec-WebSocket-Accept`, a
//! subprotocol or extension that was not offered) gives [`Error::Handshake`]; TLS
//! failures give [`Error::Tls`]; a handshake that does not finish in time gives
//! [`Error::Timeout`].
//!
//! Every frame the client sends is masked with a fresh 32-bit key from the thread-local
//! ChaCha-based CSPRNG of `rand` (RFC 6455 §5.3 asks for unpredictable keys).

#[cfg(feature = "http2")]
mod http2;
mod proxy;
mod stream;
pub(crate) mod target;
pub mod tls;
mod version;

pub use rustls;
pub use stream::MaybeTlsStream;
pub use version::HttpVersion;

use crate::conn::{Config, Conn};
use crate::error::{Error, Result};
use crate::proto::deflate;
use crate::proto::handshake;
use crate::proto::Role;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use proxy::Proxy;
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
pub(crate) use target::Target;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use url::Host;

/// How much of a refused handshake's body [`HandshakeResponse`] keeps.
pub const MAX_ERROR_BODY: usize = 1024;

/// How long, at most, the body of a refused handshake is waited for.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(1);

/// Opens WebSocket connections to `ws://` and `wss://` URLs (gorilla's `Dialer`).
///
/// Build it once and share it (it is cheap to clone); `dial` takes `&self`.
///
/// ```no_run
/// # async fn run() -> yamabiko::Result<()> {
/// use std::time::Duration;
/// use yamabiko::http::{header, HeaderValue};
/// let dialer = yamabiko::Dialer::new()
///     .header(header::ORIGIN, HeaderValue::from_static("https://example.com"))
///     .handshake_timeout(Duration::from_secs(5))
///     .max_message_size(1 << 20);
/// let (conn, _response) = dialer.dial("ws://127.0.0.1:9001/").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Dialer {
    config: Config,
    subprotocols: Vec<String>,
    headers: HeaderMap,
    handshake_timeout: Duration,
    max_header_bytes: usize,
    tls: Option<Arc<ClientConfig>>,
    extra_roots: Vec<CertificateDer<'static>>,
    proxy: Option<String>,
    compression: Option<crate::proto::deflate::DeflateConfig>,
    http_version: HttpVersion,
    #[cfg(feature = "http2")]
    http2: crate::http2::Http2Settings,
    #[cfg(feature = "http2")]
    share_http2: bool,
    /// HTTP/2 connections, shared by the clones of this dialer.
    #[cfg(feature = "http2")]
    pool: Arc<http2::Pool>,
}

impl Default for Dialer {
    fn default() -> Self {
        Dialer {
            config: Config::default(),
            subprotocols: Vec::new(),
            headers: HeaderMap::new(),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            tls: None,
            extra_roots: Vec::new(),
            proxy: None,
            compression: None,
            http_version: HttpVersion::Auto,
            #[cfg(feature = "http2")]
            http2: crate::http2::Http2Settings::default(),
            #[cfg(feature = "http2")]
            share_http2: true,
            #[cfg(feature = "http2")]
            pool: Arc::default(),
        }
    }
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values (Authorization, Cookie) stay out of logs.
        f.debug_struct("Dialer")
            .field("config", &self.config)
            .field("subprotocols", &self.subprotocols)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("custom_tls", &self.tls.is_some())
            .field("extra_roots", &self.extra_roots.len())
            .field("proxy", &self.proxy.is_some())
            .field("compression", &self.compression)
            .field("http_version", &self.http_version)
            .finish()
    }
}

impl Dialer {
    /// Offers permessage-deflate (RFC 7692) with these settings; `None` (the default)
    /// offers nothing.
    pub fn compression(mut self, config: Option<crate::DeflateConfig>) -> Self {
        self.compression = config;
        self
    }

    /// Offers permessage-deflate with the default settings.
    pub fn enable_compression(self, enable: bool) -> Self {
        self.compression(enable.then(crate::DeflateConfig::default))
    }

    /// A dialer with the defaults: no subprotocols, 10 s handshake timeout, the
    /// Mozilla roots for TLS, no proxy, 64 MiB messages, 16 MiB frames.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subprotocols to offer, most preferred first (`Sec-WebSocket-Protocol`). The
    /// server's choice is [`Conn::subprotocol`]; a choice that was not offered fails
    /// the handshake.
    pub fn subprotocols<I, T>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a header to the request (`Origin`, `Cookie`, `Authorization`, …). Headers
    /// the handshake writes itself (`Host`, `Upgrade`, `Connection`,
    /// `Sec-WebSocket-*`) are ignored here.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// How long connecting may take in all: name lookup, TCP (and proxy) connect, TLS
    /// handshake, request and response (default 10 s) → [`Error::Timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Read buffer size of the connection.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }

    /// Write buffer (fragment) size of the connection's message writers.
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.config.write_buffer_size = bytes;
        self
    }

    /// Largest message accepted (default 64 MiB) → close 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Largest frame accepted (default 16 MiB) → close 1009.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Largest response head accepted (default 16 KiB).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// The TLS configuration for `wss://` (trusted roots, client certificates, ALPN…).
    /// Replaces the default (Mozilla roots) and any roots added before.
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls = Some(config);
        self.extra_roots.clear();
        self
    }

    /// Also trusts the certificates of a PEM file (e.g. a test CA, or the self-signed
    /// certificate of a development server), besides the Mozilla roots. Replaces a
    /// configuration set with [`tls_config`](Self::tls_config).
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.extra_roots.extend(tls::certificates_from_pem(pem)?);
        self.tls = Some(tls::config_with_roots(&self.extra_roots)?);
        Ok(self)
    }

    /// Connects through an HTTP proxy, `http://[user:password@]host:port`, with
    /// `CONNECT` (the URL is checked when dialling).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// The connection settings this dialer applies.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which HTTP version to open WebSockets with (default [`HttpVersion::Auto`]:
    /// HTTP/2 for `wss://` when the server enables extended CONNECT, else HTTP/1.1).
    /// The dialer sets the ALPN protocols of its TLS configuration to match.
    pub fn http_version(mut self, version: HttpVersion) -> Self {
        self.http_version = version;
        self
    }

    /// The flow-control windows and buffer of the HTTP/2 connections this dialer
    /// opens (see [`Http2Settings`](crate::http2::Http2Settings) for the defaults and
    /// their memory bounds).
    #[cfg(feature = "http2")]
    pub fn http2_settings(mut self, settings: crate::http2::Http2Settings) -> Self {
        self.http2 = settings;
        self
    }

    /// Whether WebSockets to one origin share one HTTP/2 connection (default `true`,
    /// as browsers do): a dial finds the connection an earlier dial of this dialer
    /// (or a clone) opened and, while the server's stream limit leaves room, opens
    /// its WebSocket as another stream of it — no TCP or TLS handshake. The
    /// connection closes when its last WebSocket does. With `false` every dial opens
    /// its own connection.
    #[cfg(feature = "http2")]
    pub fn share_http2_connections(mut self, share: bool) -> Self {
        self.share_http2 = share;
        self
    }

    /// Connects to a `ws://` or `wss://` URL and performs the opening handshake.
    /// Returns the connection and the server's response — `101` over HTTP/1.1, `200`
    /// over HTTP/2 (its headers carry cookies and the agreed subprotocol).
    ///
    /// Over HTTP/2 ([`HttpVersion`]) the WebSocket may be opened on a connection an
    /// earlier dial left open (see
    /// [`share_http2_connections`](Self::share_http2_connections)).
    ///
    /// The whole of it is bounded by the handshake timeout. Dropping the future
    /// abandons the attempt and closes whatever was opened.
    pub async fn dial(&self, url: &str) -> Result<(Conn<MaybeTlsStream>, http::Response<()>)> {
        let target = Target::parse(url)?;
        let proxy = self.proxy.as_deref().map(Proxy::parse).transpose()?;
        let deadline = Instant::now() + self.handshake_timeout;
        #[cfg(feature = "http2")]
        {
            self.dial_any(&target, proxy.as_ref(), deadline).await
        }
        #[cfg(not(feature = "http2"))]
        {
            if self.http_version == HttpVersion::Http2 {
                return Err(Error::Handshake(
                    handshake::HandshakeError::NoExtendedConnect,
                ));
            }
            let stream = timeout_at(deadline, self.open(&target, proxy.as_ref(), &[]))
                .await
                .map_err(|_| Error::Timeout)??;
            self.handshake(stream, &target, deadline).await
        }
    }

    /// Performs the opening handshake for `url` over a stream the caller opened (a
    /// Unix socket, an in-memory pipe, a TLS stream of another make…). The URL gives
    /// the `Host` header and the request path; nothing is added to the stream, so for
    /// `wss://` the stream must already be encrypted. Bounded by the handshake
    /// timeout.
    pub async fn dial_with_stream<S>(
        &self,
        stream: S,
        url: &str,
    ) -> Result<(Conn<S>, http::Response<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = Target::parse(url)?;
        let deadline = Instant::now() + self.handshake_timeout;
        self.handshake(stream, &target, deadline).await
    }

    /// TCP (through the proxy, if any), then TLS for `wss://`, offering `alpn` (when
    /// not empty) in place of the configuration's ALPN protocols.
    async fn open(
        &self,
        target: &Target,
        proxy: Option<&Proxy>,
        alpn: &[&[u8]],
    ) -> Result<MaybeTlsStream> {
        let tcp = match proxy {
            Some(p) => p.tunnel(target, self.max_header_bytes).await?,
            None => connect_tcp(&target.host, target.port).await?,
        };
        if !target.tls {
            return Ok(MaybeTlsStream::Plain(tcp));
        }
        let mut config = match &self.tls {
            Some(c) => c.clone(),
            None => tls::default_config()?,
        };
        if !alpn.is_empty() {
            let mut with_alpn = (*config).clone();
            with_alpn.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            config = Arc::new(with_alpn);
        }
        let name = tls::server_name(&target.host)?;
        let stream = tls::connect(config, name, tcp).await?;
        Ok(MaybeTlsStream::Tls(Box::new(stream)))
    }

    /// The HTTP part (RFC 6455 §4.1): send the request, read and check the response.
    async fn handshake<S>(
        &self,
        mut stream: S,
        target: &Target,
        deadline: Instant,
    ) -> Result<(Conn<S>, http::Response<()>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let pending = self.start_handshake(target);
        let request = &pending.request;
        let max_head = self.max_header_bytes;
        let exchange = async {
            stream.write_all(request).await?;
            stream.flush().await?;
            let mut buf = BytesMut::with_capacity(1024);
            loop {
                if let Some((response, used)) = handshake::parse_response(&buf, max_head)? {
                    let _ = buf.split_to(used);
                    return Ok((response, buf));
                }
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the handshake",
                    )));
                }
            }
        };
        let (response, leftover) = timeout_at(deadline, exchange)
            .await
            .map_err(|_| Error::Timeout)??;

        if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            let body_deadline = deadline.min(Instant::now() + ERROR_BODY_WAIT);
            let body = read_error_body(&mut stream, &response, leftover, body_deadline).await;
            return Err(bad_handshake(response, body));
        }
        let (protocol, deflate) = self.finish_handshake(&pending, &response)?;
        let conn = Conn::from_parts(stream, Role::Client, &self.config, leftover, protocol);
        let conn = match (&deflate, &self.compression) {
            (Some(params), Some(config)) => conn.with_deflate(params, config),
            _ => conn,
        };
        Ok((conn, response))
    }
}

/// A request sent, waiting for its answer.
pub(crate) struct PendingHandshake {
    /// The request head to write.
    pub(crate) request: Vec<u8>,
    key: String,
    offered_deflate: bool,
}

impl Dialer {
    /// The request head for `target` (RFC 6455 §4.1), with what is needed to check the
    /// answer. Sans-IO: shared by the async and the blocking dialers.
    pub(crate) fn start_handshake(&self, target: &Target) -> PendingHandshake {
        let key = handshake::generate_key();
        let offer = self.compression.as_ref().map(deflate::client_offer);
        let mut headers = self.headers.clone();
        if let Some(auth) = &target.basic_auth {
            if !headers.contains_key(AUTHORIZATION) {
                headers.insert(AUTHORIZATION, auth.clone());
            }
        }
        let request = handshake::build_request(
            &target.host_header,
            &target.path_and_query,
            &key,
            &self.subprotocols,
            offer.as_deref(),
            &headers,
        );
        PendingHandshake {
            request,
            key,
            offered_deflate: offer.is_some(),
        }
    }

    /// Checks a `101` answer: the agreed subprotocol and permessage-deflate parameters.
    pub(crate) fn finish_handshake(
        &self,
        pending: &PendingHandshake,
        response: &http::Response<()>,
    ) -> Result<(Option<String>, Option<deflate::DeflateParams>)> {
        // §4.1: Upgrade, Connection, Sec-WebSocket-Accept, and nothing we did not offer.
        let protocol = handshake::validate_response(
            response,
            &pending.key,
            &self.subprotocols,
            pending.offered_deflate,
        )?;
        // RFC 7692 §7.1: a response we cannot accept fails the connection.
        let Some(config) = &self.compression else {
            return Ok((protocol, None));
        };
        let answer =
            handshake::header_tokens(response.headers(), "sec-websocket-extensions").join(", ");
        match deflate::negotiate_client(&answer, config) {
            Ok(params) => Ok((protocol, params)),
            Err(e) => Err(Error::Handshake(
                handshake::HandshakeError::UnrequestedExtension(e.to_string()),
            )),
        }
    }

    /// Handshake timeout and response head limit, for the blocking dialer.
    pub(crate) fn handshake_limits(&self) -> (Duration, usize) {
        (self.handshake_timeout, self.max_header_bytes)
    }

    /// The permessage-deflate settings offered, if any.
    pub(crate) fn compression_config(&self) -> Option<&deflate::DeflateConfig> {
        self.compression.as_ref()
    }

    /// The TLS configuration `wss://` uses.
    pub(crate) fn tls_client_config(&self) -> Result<Arc<ClientConfig>> {
        match &self.tls {
            Some(c) => Ok(c.clone()),
            None => tls::default_config(),
        }
    }

    /// Whether a proxy was configured.
    pub(crate) fn has_proxy(&self) -> bool {
        self.proxy.is_some()
    }
}

/// The error for a refused handshake (not `101`), with the start of its body.
pub(crate) fn bad_handshake(response: http::Response<()>, body: Bytes) -> Error {
    let (parts, ()) = response.into_parts();
    Error::BadHandshake(Box::new(HandshakeResponse {
        response: http::Response::from_parts(parts, body),
    }))
}

/// How many body bytes of a refused handshake to keep: as announced by
/// `Content-Length`, none for statuses without a body, at most [`MAX_ERROR_BODY`].
pub(crate) fn error_body_limit(response: &http::Response<()>) -> usize {
    let status = response.status().as_u16();
    let content_length = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // RFC 9110 §6.4.1: these never have a body.
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    match content_length {
        _ if no_body => 0,
        Some(n) => n.min(MAX_ERROR_BODY as u64) as usize,
        None => MAX_ERROR_BODY,
    }
}

/// Reads up to [`MAX_ERROR_BODY`] bytes of a refused handshake's body: as announced
/// by `Content-Length`, or until the server closes, whichever is first, until
/// `deadline`. Whatever arrived by then is kept.
async fn read_error_body<S>(
    stream: &mut S,
    response: &http::Response<()>,
    mut body: BytesMut,
    deadline: Instant,
) -> Bytes
where
    S: AsyncRead + Unpin,
{
    let limit = error_body_limit(response);
    // Bounded: each round reads at least one byte or ends, and `limit` ≤ 1 KiB.
    while body.len() < limit {
        let want = (limit - body.len()) as u64;
        let mut limited = (&mut *stream).take(want);
        match timeout_at(deadline, limited.read_buf(&mut body)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    body.truncate(limit);
    body.freeze()
}

/// Resolves `host` and connects to its addresses in turn; the first that answers
/// wins. Errors name the host or address that failed.
pub(crate) async fn connect_tcp(host: &Host<String>, port: u16) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ipv4(a) => vec![SocketAddr::from((*a, port))],
        Host::Ipv6(a) => vec![SocketAddr::from((*a, port))],
        Host::Domain(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {name:?}: {e}")))?
            .collect(),
    };
    let mut last_error =
        io::Error::new(io::ErrorKind::NotFound, format!("{host} has no addresses"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                // Frames are written whole; Nagle would only delay them.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last_error = io::Error::new(e.kind(), format!("connecting to {addr}: {e}")),
        }
    }
    Err(Error::Io(last_error))
}

/// A server's answer that was not `101 Switching Protocols`, kept for the
/// application (gorilla's `ErrBadHandshake` with its `*http.Response`): status,
/// headers, and the first [`MAX_ERROR_BODY`] bytes of the body (raw bytes as sent;
/// a chunked body keeps its chunk framing).
#[derive(Debug)]
pub struct HandshakeResponse {
    response: http::Response<Bytes>,
}

impl HandshakeResponse {
    /// The status code (e.g. 401, 302, 404).
    pub fn status(&self) -> http::StatusCode {
        self.response.status()
    }

    /// The response headers (`Location` of a redirect, `WWW-Authenticate`, …).
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The start of the body, at most [`MAX_ERROR_BODY`] bytes.
    pub fn body(&self) -> &Bytes {
        self.response.body()
    }

    /// The response as an `http::Response`.
    pub fn into_response(self) -> http::Response<Bytes> {
        self.response
    }
}

impl fmt::Display for HandshakeResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server answered {} instead of 101 Switching Protocols",
            self.status()
        )?;
        if let Some(location) = self.headers().get(http::header::LOCATION) {
            write!(
                f,
                " (Location: {})",
                String::from_utf8_lossy(location.as_bytes())
            )?;
        }
        Ok(())
    }
}
