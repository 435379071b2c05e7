//! The blocking driver: gorilla's model literally — a thread per connection, blocking
//! calls, deadlines — over `std::io::Read + Write` streams.
//!
//! It is a thin driver over the same sans-IO core as the async [`Conn`](crate::Conn):
//! the same [`Decoder`] and encoder, the same handshake code,
//! the same permessage-deflate codec, the same handlers with gorilla's defaults, and
//! the same [`Upgrader`](crate::Upgrader) and [`Dialer`](crate::Dialer) settings. So
//! the two drivers cannot disagree about the protocol.
//!
//! * Server: [`Upgrader::upgrade_blocking`](crate::Upgrader::upgrade_blocking) on a
//!   [`TcpStream`](std::net::TcpStream) (or a rustls
//!   [`StreamOwned`](rustls::StreamOwned) for `wss://`).
//! * Client: [`Dialer::dial_blocking`](crate::Dialer::dial_blocking) for `ws://` and
//!   `wss://` URLs.
//! * Deadlines ([`Conn::set_read_deadline`], [`Conn::set_write_deadline`]) become socket
//!   timeouts before every system call ([`Transport`]).
//! * [`Conn::split`] gives a [`ReadHalf`] and a [`WriteHalf`] for two threads;
//!   a [`ControlHandle`] sends pings and closes from any thread.
//! * `close()` — on the connection, either half or a handle — ends the connection at
//!   once: a thread blocked reading or writing it returns [`Error::AlreadyClosed`]
//!   (through the transport's [`ShutdownHandle`]; TCP and TLS over TCP have one).
//! * A dialled connection runs over a [`BlockingStream`] (plain or TLS); the async
//!   dialer's is [`MaybeTlsStream`](crate::MaybeTlsStream), a different type.
//!
//! ```no_run
//! use std::net::TcpListener;
//! use std::time::{Duration, Instant};
//!
//! fn main() -> yamabiko::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:9001")?;
//!     let upgrader = yamabiko::Upgrader::new();
//!     for tcp in listener.incoming().take(100) {
//!         let upgrader = upgrader.clone();
//!         std::thread::spawn(move || -> yamabiko::Result<()> {
//!             let mut conn = upgrader.upgrade_blocking(tcp?)?;
//!             loop {
//!                 conn.set_read_deadline(Some(Instant::now() + Duration::from_secs(60)));
//!                 let msg = conn.read_message()?;
//!                 conn.write_message(msg)?;
//!             }
//!         });
//!     }
//!     Ok(())
//! }
//! ```
//!
//! With TLS, a stream cannot be duplicated: reads and writes take turns under a lock,
//! a blocked read releasing it every 20 ms, so a write from another thread may wait that
//! long.

mod client;
mod read;
mod server;
mod shared;
mod transport;
mod write;

pub use read::{MessageReader, ReadHalf};
pub use transport::{BlockingStream, ShutdownHandle, Transport};
pub use write::{ControlHandle, MessageWriter, WriteHalf};

use crate::conn::{Config, HandlerContext, IntoDeadline};
use crate::error::{Error, Result, ReuniteError};
use crate::message::{Control, Message, Utf8Bytes};
use crate::proto::{CloseCode, CloseFrame, Decoder, DecoderConfig, MessageKind, Role};
use bytes::{Bytes, BytesMut};
use shared::Shared;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A blocking WebSocket connection (gorilla's `Conn`). The same methods as the async
/// [`crate::Conn`], without `.await`. One reader and one writer at a time is enforced
/// by `&mut self`; [`split`](Self::split) it to read and write from two threads.
pub struct Conn<S> {
    read: ReadHalf<S>,
    write: WriteHalf<S>,
}

impl<S> std::fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Conn")
            .field("role", &self.read.shared.role)
            .field("subprotocol", &self.read.subprotocol())
            .field("compression", &self.write.compression_negotiated())
            .field("closed", &self.read.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S: Transport> Conn<S> {
    /// Wraps a stream on which the opening handshake already happened. `leftover` holds
    /// bytes read past the handshake (they belong to the first frames).
    pub fn from_raw(stream: S, role: Role, config: &Config, leftover: BytesMut) -> Self {
        Self::from_parts(stream, role, config, leftover, None)
    }

    pub(crate) fn from_parts(
        stream: S,
        role: Role,
        config: &Config,
        leftover: BytesMut,
        subprotocol: Option<String>,
    ) -> Self {
        let own = stream.duplicate();
        let shared = Arc::new(Shared::new(stream, role));
        let decoder = Decoder::new(DecoderConfig {
            role,
            max_frame_size: config.max_frame_size as u64,
            max_message_size: config.max_message_size as u64,
        });
        Conn {
            read: ReadHalf::new(
                shared.clone(),
                own,
                decoder,
                config.read_buffer_size,
                leftover,
                subprotocol.clone(),
            ),
            write: WriteHalf::new(shared, config.write_buffer_size, subprotocol),
        }
    }

    /// Turns on permessage-deflate with parameters agreed in the handshake.
    pub(crate) fn with_deflate(
        mut self,
        params: &crate::proto::deflate::DeflateParams,
        config: &crate::proto::deflate::DeflateConfig,
    ) -> Self {
        use crate::proto::deflate::{Compressor, Decompressor};
        let role = self.read.shared.role;
        self.read.set_decompressor(Decompressor::new(params, role));
        self.write.set_compressor(
            Compressor::new(params, role, config.level),
            config.threshold,
        );
        self
    }

    /// Reads the next whole message. See [`ReadHalf::read_message`].
    pub fn read_message(&mut self) -> Result<Message> {
        self.read.read_message()
    }

    /// Streams the next message. See [`ReadHalf::next_reader`].
    pub fn next_reader(&mut self) -> Result<MessageReader<'_, S>> {
        self.read.next_reader()
    }

    /// Sends a whole message. See [`WriteHalf::write_message`].
    pub fn write_message(&mut self, message: impl Into<Message>) -> Result<()> {
        self.write.write_message(message)
    }

    /// Sends a text message: a `&str`, a `String` or [`Utf8Bytes`].
    pub fn write_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.write.write_text(text)
    }

    /// Sends a binary message.
    pub fn write_binary(&mut self, bytes: impl Into<Bytes>) -> Result<()> {
        self.write.write_binary(bytes)
    }

    /// Sends a message framed once for many connections.
    pub fn write_prepared(&mut self, message: &crate::PreparedMessage) -> Result<()> {
        self.write.write_prepared(message)
    }

    /// Writes whatever a timed-out write left queued.
    pub fn flush(&mut self) -> Result<()> {
        self.write.flush()
    }

    /// Streams a message out. See [`WriteHalf::next_writer`].
    pub fn next_writer(&mut self, kind: MessageKind) -> MessageWriter<'_, S> {
        self.write.next_writer(kind)
    }

    /// Sends a control frame. See [`ControlHandle::write_control`].
    pub fn write_control(&self, control: Control, deadline: impl IntoDeadline) -> Result<()> {
        self.write.write_control(control, deadline)
    }

    /// Splits into a read half and a write half for two threads. The read half's
    /// automatic replies (pong, close) go out through the shared writer.
    pub fn split(self) -> (ReadHalf<S>, WriteHalf<S>) {
        self.read.shared.prepare_close();
        (self.read, self.write)
    }

    /// A handle for sending control frames (and closing) from other threads.
    pub fn control_handle(&self) -> ControlHandle<S> {
        self.write.control_handle()
    }

    /// Closes gracefully: sends a close frame with `code` and `reason`, reads (and
    /// discards data) until the peer's close frame arrives or `timeout` passes, then
    /// drops the transport. `Ok` when the peer answered the close.
    pub fn close_with(
        mut self,
        code: impl Into<CloseCode>,
        reason: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let frame = CloseFrame::new(code, reason);
        match self.write_control(Control::Close(Some(frame)), Some(deadline)) {
            Ok(()) | Err(Error::CloseSent) => {}
            Err(e) => return Err(e),
        }
        self.read.set_read_deadline(Some(deadline));
        // Bounded by the deadline.
        loop {
            match self.read.read_message() {
                Ok(_) => continue,
                Err(Error::Closed(f)) if f.code != CloseCode::ABNORMAL => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S> Conn<S> {
    /// Puts the halves back together. Halves of different connections are an error
    /// that gives them back ([`ReuniteError`]; `?` turns it into an [`Error`]).
    // The error holds the same two halves as the `Conn` of the `Ok` side: no larger.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        read: ReadHalf<S>,
        write: WriteHalf<S>,
    ) -> std::result::Result<Self, ReuniteError<ReadHalf<S>, WriteHalf<S>>> {
        if Arc::ptr_eq(&read.shared, &write.shared) {
            Ok(Conn { read, write })
        } else {
            Err(ReuniteError(read, write))
        }
    }

    /// Closes the connection at once, without a close handshake (gorilla's `Close`),
    /// even while a [`ControlHandle`] lives (its calls then fail with
    /// [`Error::AlreadyClosed`]). The halves and handles have the same
    /// [`close`](WriteHalf::close), for closing from another thread.
    pub fn close(self) {
        self.read.shared.close_now();
    }

    /// The underlying stream; `None` while a [`ControlHandle`] still shares it, or
    /// once the connection was closed.
    pub fn into_inner(self) -> Option<S> {
        let Conn { read, write } = self;
        let shared = read.shared.clone();
        drop(read);
        drop(write);
        Arc::try_unwrap(shared).ok().and_then(Shared::into_inner)
    }

    /// Runs `f` with the underlying stream (e.g. to read socket options); `None` once
    /// the connection was closed with `close` (by a half or a handle).
    pub fn with_stream<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.read.shared.with_io(f)
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.read.subprotocol()
    }

    /// Sets the read deadline (a `std` or tokio instant, or `None`). See
    /// [`ReadHalf::set_read_deadline`].
    pub fn set_read_deadline(&mut self, deadline: impl IntoDeadline) {
        self.read.set_read_deadline(deadline);
    }

    /// Sets the write deadline (a `std` or tokio instant, or `None`). See
    /// [`WriteHalf::set_write_deadline`].
    pub fn set_write_deadline(&mut self, deadline: impl IntoDeadline) {
        self.write.set_write_deadline(deadline);
    }

    /// Sets the largest message accepted. See [`ReadHalf::set_read_limit`].
    pub fn set_read_limit(&mut self, bytes: usize) {
        self.read.set_read_limit(bytes);
    }

    /// Replaces the close handler. Default: reply with the same close code.
    pub fn set_close_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, Option<&CloseFrame>) -> Result<()> + Send + 'static,
    ) {
        self.read.set_close_handler(h);
    }

    /// Replaces the ping handler. Default: reply with a pong carrying the same data.
    pub fn set_ping_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send + 'static,
    ) {
        self.read.set_ping_handler(h);
    }

    /// Replaces the pong handler. Default: nothing.
    pub fn set_pong_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send + 'static,
    ) {
        self.read.set_pong_handler(h);
    }

    /// Turns compression of outgoing messages on or off (when negotiated).
    pub fn enable_write_compression(&mut self, enable: bool) {
        self.write.enable_write_compression(enable);
    }

    /// Sets the deflate level for the next messages.
    pub fn set_compression_level(&mut self, level: u32) {
        self.write.set_compression_level(level);
    }

    /// Whether permessage-deflate was negotiated.
    pub fn compression_negotiated(&self) -> bool {
        self.write.compression_negotiated()
    }
}

/// `local_addr` and `peer_addr` for the connection and both halves, over the streams
/// that have a TCP socket underneath (`$tcp` reaches it).
macro_rules! socket_addresses {
    ($stream:ty, $tcp:expr) => {
        socket_addresses!(@one Conn<$stream>, $stream, $tcp, read.shared);
        socket_addresses!(@one ReadHalf<$stream>, $stream, $tcp, shared);
        socket_addresses!(@one WriteHalf<$stream>, $stream, $tcp, shared);
    };
    (@one $owner:ty, $stream:ty, $tcp:expr, $($shared:ident).+) => {
        impl $owner {
            /// The local address of the TCP connection.
            pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
                let tcp: fn(&$stream) -> &std::net::TcpStream = $tcp;
                self.$($shared).+
                    .with_io(|s| tcp(s).local_addr())
                    .unwrap_or_else(|| Err(closed()))
            }

            /// The remote address of the TCP connection.
            pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
                let tcp: fn(&$stream) -> &std::net::TcpStream = $tcp;
                self.$($shared).+
                    .with_io(|s| tcp(s).peer_addr())
                    .unwrap_or_else(|| Err(closed()))
            }
        }
    };
}

socket_addresses!(std::net::TcpStream, |s| s);
socket_addresses!(BlockingStream, |s| s.tcp());

/// What the addresses of a closed connection are.
fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, Error::AlreadyClosed)
}

#[cfg(feature = "json")]
impl<S: Transport> Conn<S> {
    /// Sends `value` as a JSON text message (gorilla's `WriteJSON`).
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn write_json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.write.write_json(value)
    }

    /// Reads the next message and decodes it as JSON (gorilla's `ReadJSON`).
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn read_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        self.read.read_json()
    }
}

/// Writes an HTTP/1.1 response (status line, headers, body; `Content-Length` added
/// when missing) and flushes it: the blocking
/// [`write_http_response`](crate::write_http_response), for a server that reads
/// requests itself ([`Upgrader::read_request_blocking`](crate::Upgrader::read_request_blocking))
/// and answers those that are not WebSocket upgrades on the same port. Bounded by the
/// stream's write timeout, if it has one.
pub fn write_http_response<W, B>(
    stream: &mut W,
    response: &http::Response<B>,
) -> std::io::Result<()>
where
    W: std::io::Write + ?Sized,
    B: AsRef<[u8]>,
{
    stream.write_all(&crate::proto::handshake::encode_response(response))?;
    stream.flush()
}
