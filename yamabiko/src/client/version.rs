//! Which HTTP version the [`Dialer`](super::Dialer) opens WebSockets with.

/// Which HTTP version a [`Dialer`](super::Dialer) opens WebSockets with
/// ([`Dialer::http_version`](super::Dialer::http_version)).
///
/// Over HTTP/2 (RFC 8441) a WebSocket is one stream of a connection, opened with an
/// extended CONNECT once the server's SETTINGS allow it; several WebSockets to one
/// server can then share one TCP and TLS connection. HTTP/2 needs the crate feature
/// `http2` (on by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpVersion {
    /// `wss://`: offer `h2` and `http/1.1` in ALPN; if the server picks `h2`, wait for
    /// its SETTINGS and open the WebSocket with an extended CONNECT when they enable
    /// it, else dial again over HTTP/1.1 (and remember that server for five minutes,
    /// so later dials go straight to HTTP/1.1). `ws://`: HTTP/1.1. The default.
    #[default]
    Auto,
    /// HTTP/1.1 only (ALPN `http/1.1` for `wss://`).
    Http1,
    /// HTTP/2 only: ALPN `h2` for `wss://`, prior knowledge (h2c) for `ws://`. Fails
    /// with [`HandshakeError::NoExtendedConnect`](crate::proto::handshake::HandshakeError::NoExtendedConnect)
    /// when the server does not speak HTTP/2 or does not enable extended CONNECT.
    Http2,
}
