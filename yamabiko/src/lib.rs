//! # yamabiko — WebSocket for Rust, the gorilla/websocket way
//!
//! yamabiko speaks RFC 6455 and RFC 7692 (permessage-deflate) as a server and as a client
//! ([`Dialer`]), with the programming
//! model of Go's gorilla/websocket: an [`Upgrader`] turns an HTTP request into a
//! [`Conn`]; a `Conn` reads and writes whole messages ([`Conn::read_message`],
//! [`Conn::write_message`]) or streams them ([`Conn::next_reader`],
//! [`Conn::next_writer`]); control frames go out with [`Conn::write_control`]; close,
//! ping and pong handlers have gorilla's defaults and run inside read calls.
//!
//! The echo server, whole; it needs tokio with the features
//! `rt-multi-thread`, `macros` and `net`:
//!
//! ```no_run
//! #[tokio::main]
//! async fn main() -> yamabiko::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//!     let upgrader = yamabiko::Upgrader::new();
//!     loop {
//!         let (tcp, _) = listener.accept().await?;
//!         let upgrader = upgrader.clone();
//!         tokio::spawn(async move {
//!             let Ok(mut conn) = upgrader.upgrade(tcp).await else { return };
//!             while let Ok(msg) = conn.read_message().await {
//!                 if conn.write_message(msg).await.is_err() { break }
//!             }
//!         });
//!     }
//! }
//! ```
//!
//! ## The model
//!
//! * **One reader, one writer.** Go panics at run time when two goroutines read at once;
//!   here `read_*` and `write_*` take `&mut self`, so it cannot compile. To read in one
//!   task and write in another, [`Conn::split`] it. Control frames can be sent from
//!   anywhere through a [`ControlHandle`].
//! * **Handlers run inside reads.** A ping is answered, and a close is echoed, only
//!   while some task is reading. Keep a reader running.
//! * **Closing.** [`Conn::close`] drops the transport at once (gorilla's `Close`), even
//!   while the other half or a [`ControlHandle`] lives; the halves and handles have
//!   [`close`](WriteHalf::close) too, so one task can end a connection another task is
//!   reading. Whatever shared it then fails with [`Error::AlreadyClosed`].
//!   [`Conn::close_with`] performs the close handshake. After the peer's close frame,
//!   reads return [`Error::Closed`] with its code; a transport that ends without one
//!   reports code 1006.
//! * **Deadlines.** [`Conn::set_read_deadline`] / [`Conn::set_write_deadline`]: past
//!   the instant, calls fail with [`Error::Timeout`]; `None` clears them. Instants of
//!   either clock are accepted, `std`'s or tokio's ([`IntoDeadline`]).
//! * **Messages** are built from what you have: `&str` (any lifetime), `String`,
//!   `&[u8]`, `Vec<u8>`, [`Bytes`](bytes::Bytes) all convert into a [`Message`].
//! * **Limits.** Messages over 64 MiB or frames over 16 MiB (configurable) fail the
//!   connection with close 1009 before their payload is buffered; every violation of
//!   the protocol is a typed [`ProtocolError`] answered with its close code.
//!
//! ## Three ways in
//!
//! The same [`Upgrader`] and [`Dialer`] settings and the same protocol core serve
//! three kinds of programs:
//!
//! 1. **A raw tokio stream**: [`Upgrader::upgrade`] on any `AsyncRead + AsyncWrite`
//!    (the echo server above); [`Conn::from_raw`] wraps a stream whose handshake
//!    happened elsewhere. To serve pages on the same port, read the request with
//!    [`Upgrader::read_request`], route with [`is_websocket_upgrade`], and answer with
//!    [`Upgrader::upgrade_request`] or [`write_http_response`].
//! 2. **Blocking, a thread per connection** ([`blocking`]): [`Upgrader::upgrade_blocking`]
//!    and [`Dialer::dial_blocking`] on `std` streams, deadlines as socket timeouts:
//!
//!    ```no_run
//!    # fn main() -> yamabiko::Result<()> {
//!    use std::time::{Duration, Instant};
//!    let listener = std::net::TcpListener::bind("127.0.0.1:9001")?;
//!    let (tcp, _) = listener.accept()?;
//!    let mut conn = yamabiko::Upgrader::new().upgrade_blocking(tcp)?;
//!    conn.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)));
//!    let msg = conn.read_message()?;
//!    conn.write_message(msg)?;
//!    # Ok(()) }
//!    ```
//! 3. **Inside hyper 1 or axum 0.8** ([`upgrade`], features `hyper` and `axum`):
//!    `Upgrader::upgrade_hyper` returns the `101` response and a future yielding the
//!    [`Conn`]; `upgrade::axum::WebSocketUpgrade` is an extractor in the style of
//!    axum's own (`ws.protocols([..]).on_upgrade(|conn| async move { .. })`). Both
//!    modules carry a runnable example; `examples/hyper.rs` and `examples/axum.rs` are
//!    whole servers.
//!
//! ## WebSockets over HTTP/2
//!
//! With the `http2` feature (on by default) both sides speak RFC 8441: the hyper and
//! axum entrances take an HTTP/2 extended CONNECT as they take an HTTP/1.1 upgrade,
//! and [`Dialer`] opens `wss://` WebSockets over HTTP/2 when the server offers it
//! ([`HttpVersion`] forces either), several to one origin sharing one connection. The
//! `Conn` is the same. [`http2`] explains the model, the flow-control windows
//! ([`http2::Http2Settings`]) and where HTTP/3 stands.
//!
//! ## Fan-out
//!
//! [`Hub`] is publish/subscribe over connections: [`Hub::subscribe`] a [`Conn`] (or a
//! [`WriteHalf`]) to a topic, [`Hub::publish`] a message to all its subscribers. The
//! message is framed once; one flusher task per thread writes each subscriber what
//! was published to it, several messages in one write; a subscriber that falls behind is bounded in bytes
//! and handled by its [`hub::Backpressure`] policy (drop newest, latest wins, or close).
//! The [`hub`] module documentation has the model and a runnable example.
//!
//! ## Idle connections
//!
//! [`Hibernator`] keeps idle connections without a task each: a connection at rest is
//! [hibernated](Hibernator::hibernate) as its transport and settings (a few hundred
//! bytes instead of about 2 KB), one keeper task reads for all of them and sends their
//! keepalive pings, and a connection is handed back — in a new task, to the wake
//! function — when a frame arrives. The [`hibernate`] module has an echo server that
//! sleeps its quiet connections.
//!
//! The protocol itself lives in [`proto`], a sans-IO core that knows nothing of sockets;
//! it is public on purpose, for programs that bring their own I/O.
//!
//! ## Examples
//!
//! `yamabiko/examples/` holds gorilla/websocket's examples, ported, each with a README
//! and tests: `chat` (a room on the pub/sub [`hub`], read and write pumps, pings and
//! deadlines, slow clients closed at their bound), `command` (a process's stdin and stdout
//! over a socket), `filewatch` (a file pushed to the page when it changes) and
//! `sans-io` (an echo server on `std::net::TcpStream` from [`proto`] alone); and
//! `echo`, `blocking-echo`, `wss-echo`, `hyper`, `axum`.
//!
//! ## Errors
//!
//! Everything fails with one [`Error`]; its messages are lowercase and never repeat
//! their [`source`](std::error::Error::source), so an error-chain reporter prints each
//! once.

#![warn(missing_docs, missing_debug_implementations)]
// docs.rs (`--cfg docsrs`, nightly) marks what needs the `hyper`, `axum` or `json`
// feature; stable builds never see this.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
pub mod client;
pub mod conn;
pub mod error;
pub mod hibernate;
#[cfg(feature = "http2")]
pub mod http2;
pub mod hub;
pub mod message;
pub mod prepared;
pub mod proto;
pub mod reconnect;
pub mod server;
pub mod upgrade;
mod write_compression;

/// The `bytes` crate, whose `Bytes` carry payloads and whose `BytesMut` holds the
/// bytes read past a handshake ([`Upgrader::read_request`]).
pub use bytes;
pub use client::{Dialer, HandshakeResponse, HttpVersion, MaybeTlsStream};
pub use conn::{
    CloseHandler, Config, Conn, ControlHandle, HandlerContext, IntoDeadline, Keepalive,
    MessageReader, MessageWriter, PingHandler, PongHandler, ReadHalf, WriteHalf,
};
pub use error::{is_close_error, is_unexpected_close_error, Error, Result, ReuniteError};
pub use hibernate::Hibernator;
/// The `http` crate, whose request, response and header types the handshakes use.
pub use http;
pub use hub::Hub;
pub use message::{Control, Message, Utf8Bytes};
pub use prepared::PreparedMessage;
pub use proto::deflate::DeflateConfig;
pub use proto::handshake::is_websocket_upgrade;
pub use proto::{CloseCode, CloseFrame, MessageKind, ProtocolError, Role};
pub use reconnect::{Backoff, Reconnecting};
pub use server::{write_http_response, Negotiated, NegotiatedConnect, Upgrader};
