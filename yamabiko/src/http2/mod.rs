//! WebSockets over HTTP/2 (RFC 8441), feature `http2` (on by default).
//!
//! Over HTTP/2 a WebSocket is one stream of a connection: the client opens it with an
//! *extended CONNECT* (`:method CONNECT`, `:protocol websocket`), the server answers
//! `200`, and WebSocket frames then travel as the stream's DATA. Browsers do this
//! (Chromium since 91, Firefox since 65) when a page's origin already has an HTTP/2
//! connection whose server sent `SETTINGS_ENABLE_CONNECT_PROTOCOL`: no second TCP and
//! TLS handshake, one connection per origin for the page and its sockets. The
//! [`Conn`](crate::Conn) on top is the same as over HTTP/1.1 — deadlines, handlers,
//! streaming readers and writers, compression, `write_control`.
//!
//! # Server
//!
//! [`ServerConnection`] serves one HTTP/2 connection on the h2 crate: it accepts
//! requests, [`upgrade`](IncomingRequest::upgrade)s extended CONNECTs to a
//! [`Conn`](crate::Conn) over an [`H2Stream`] and answers the rest with a response.
//! It is the entrance to use when one connection carries many WebSockets from a
//! client you do not control: each stream's received DATA leaves h2's queues at once
//! and waits in the `H2Stream`, within the stream's window, so a WebSocket whose
//! application stops reading stalls only itself. `yamabiko serve` and `yamabiko
//! echo` use it for HTTP/2.
//!
//! Through hyper 1 and axum 0.8 (features `hyper`, `axum`):
//! [`Upgrader::upgrade_hyper`](crate::Upgrader::upgrade_hyper) and the axum
//! [`WebSocketUpgrade`](crate::upgrade::axum::WebSocketUpgrade) extractor take an
//! HTTP/1.1 `GET` upgrade and an HTTP/2 extended CONNECT alike (route both methods:
//! `any(handler)` or `get(handler).connect(handler)` in axum). The hyper server must
//! enable extended CONNECT, which [`Http2Settings::configure_hyper`] does along with
//! the flow-control windows below (`axum::serve` enables it by itself). The rules of
//! the handshake are sans-IO, in
//! [`proto::handshake::extended_connect`](crate::proto::handshake::extended_connect);
//! [`Upgrader::negotiate_extended_connect`](crate::Upgrader::negotiate_extended_connect)
//! applies an upgrader's policy (origin, subprotocols, compression) to a request, for
//! other HTTP/2 servers.
//!
//! hyper's HTTP/2 server leaves a stream's DATA frames in h2's queues until the
//! application reads the upgraded stream (taking them out is what returns their
//! credit), and h2 ends the *whole connection* (GOAWAY ENHANCE_YOUR_CALM) when the
//! small frames waiting there exceed a budget of half the connection window. With
//! [`Http2Settings`]' defaults any one WebSocket that stops reading is safe, whatever
//! its client sends; several flooded with tiny messages are not (eight with 20-byte
//! messages end the connection and every WebSocket on it). A larger
//! `connection_window` raises the budget, at a cost in memory
//! ([`Http2Settings`] gives the formula); [`ServerConnection`] has no such limit.
//! `axum::serve` keeps hyper's own windows (1 MiB per stream and per connection, a
//! 512 KiB budget): there one stalled WebSocket can hold the whole connection window,
//! and some 2,100 empty messages into it end the connection. To serve an axum
//! `Router` with [`Http2Settings::configure_hyper`], hand it to hyper's
//! `http2::Builder` through `hyper_util::service::TowerToHyperService`.
//!
//! A refused request (wrong `:protocol` → 400, no `sec-websocket-version: 13` → 426,
//! refused origin → 403, not CONNECT → 405) gets its status on its own stream; the
//! connection and its other streams go on. Closing maps onto the stream: after the
//! close handshake the server ends its side with END_STREAM; a stream the peer resets
//! with RST_STREAM(CANCEL) reads as a connection closed without a close frame, code
//! 1006 (a reset with an error code reads as an [`Error::Io`](crate::Error::Io)).
//!
//! # Client
//!
//! [`Dialer`](crate::Dialer) offers ALPN `h2` and `http/1.1` for `wss://` and, when the
//! server picks `h2`, waits for its SETTINGS and opens the WebSocket with an extended
//! CONNECT if they enable it, else dials again over HTTP/1.1
//! ([`HttpVersion`](crate::HttpVersion) forces either; `ws://` with
//! `HttpVersion::Http2` speaks cleartext HTTP/2 with prior knowledge). WebSockets
//! dialled to the same origin by one dialer (and its clones) share one HTTP/2
//! connection while it has room under the server's stream limit
//! ([`Dialer::share_http2_connections`](crate::Dialer::share_http2_connections)); the
//! connection closes when its last WebSocket does. The connection's transport is an
//! [`H2Stream`] inside [`MaybeTlsStream::Http2`](crate::MaybeTlsStream).
//!
//! ```no_run
//! # async fn run() -> yamabiko::Result<()> {
//! use yamabiko::{Dialer, HttpVersion};
//! let dialer = Dialer::new().http_version(HttpVersion::Http2);
//! let (mut a, _) = dialer.dial("wss://example.com/chat").await?;
//! let (mut b, _) = dialer.dial("wss://example.com/chat").await?; // same connection
//! a.write_text("hello").await?;
//! # Ok(()) }
//! ```
//!
//! # Flow control
//!
//! HTTP/2 windows replace the TCP window of each WebSocket. [`Http2Settings`] explains
//! how they are set (by default 128 KiB per stream, 16 MiB per connection, 128
//! streams): the connection window is the stream window times the stream limit, so a
//! WebSocket nobody reads stalls only itself, and what one connection can make its
//! receiver hold is bounded by the connection window. Writers wait for credit and for
//! room in a bounded send buffer, as on a full TCP socket.
//!
//! # HTTP/3
//!
//! WebSockets over HTTP/3 (RFC 9220) are not supported yet. The `h3` crate knows
//! `:protocol websocket` on its main branch (since January 2026) but no release has
//! it (the latest, 0.0.8, is from May 2025), and Chromium does not enable WebSockets
//! over HTTP/3 by default. The handshake rules are those of
//! [`extended_connect`](crate::proto::handshake::extended_connect) (RFC 9220 reuses
//! RFC 8441's), so the work left is an HTTP/3 stream adapter once `h3` releases.

mod preface;
mod server;
pub(crate) mod session;
mod settings;
mod stream;

pub use server::{IncomingRequest, ServerConnection};
pub use settings::Http2Settings;
pub(crate) use stream::ConnectionInfo;
pub use stream::H2Stream;

/// An error of the h2 crate as ours: the transport's I/O error when there is one.
pub(crate) fn h2_error(e: h2::Error) -> crate::Error {
    use std::io;
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return crate::Error::Io(io);
        }
        return crate::Error::Io(io::Error::other("HTTP/2 connection failed"));
    }
    crate::Error::Io(io::Error::new(io::ErrorKind::ConnectionAborted, e))
}
