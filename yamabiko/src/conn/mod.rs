//! The async connection: gorilla's `Conn` over any tokio stream.

mod deadline;
mod dormant;
pub(crate) mod handlers;
pub(crate) mod keepalive;
mod outlet;
mod read;
mod shared;
mod stream_sink;
mod write;

pub use deadline::IntoDeadline;
pub(crate) use dormant::{Absorbed, Dormant, Tend};
pub use handlers::{CloseHandler, HandlerContext, PingHandler, PongHandler};
pub(crate) use keepalive::epoch;
pub use keepalive::Keepalive;
pub use read::{MessageReader, ReadHalf};
pub use write::{ControlHandle, MessageWriter, WriteHalf};

use crate::error::{Error, Result, ReuniteError};
use crate::message::{Control, Message, Utf8Bytes};
use crate::proto::{CloseCode, CloseFrame, Decoder, DecoderConfig, MessageKind, Role};
use bytes::{Bytes, BytesMut};
use shared::Shared;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// Buffer sizes and limits of a connection. The defaults suit most servers.
///
/// Memory: a connection holds a read buffer only while bytes wait to be decoded
/// (`read_buffer_size`, or the size of a large frame while it arrives, and for the read
/// after a frame of up to 256 KiB) and, while a message is being assembled by
/// `read_message`, up to
/// `max_message_size` bytes. A server with N connections can therefore be made to hold
/// N × `max_message_size` in the worst case; lower it where messages are small.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes read from the transport per system call (default 4 KiB).
    pub read_buffer_size: usize,
    /// Fragment size of a [`MessageWriter`] (default 4 KiB).
    pub write_buffer_size: usize,
    /// Largest message accepted, in bytes (default 64 MiB) → close 1009.
    pub max_message_size: usize,
    /// Largest frame accepted, in bytes (default 16 MiB) → close 1009.
    pub max_frame_size: usize,
    /// Ping every so often and fail the connection when the peer stays silent
    /// ([`Keepalive`]; default on, 20 s and 20 s); `None` turns it off.
    pub keepalive: Option<Keepalive>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            read_buffer_size: 4096,
            write_buffer_size: 4096,
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            keepalive: Some(Keepalive::default()),
        }
    }
}

/// The two halves of a split connection.
pub type Halves<S> = (ReadHalf<S>, WriteHalf<S>);

/// A WebSocket connection (gorilla's `Conn`).
///
/// One reader and one writer at a time is enforced by `&mut self`; to read and write
/// from two tasks, [`split`](Self::split) it. Control frames can be sent from anywhere
/// through a [`ControlHandle`].
///
/// ```no_run
/// # async fn run(mut conn: yamabiko::Conn<tokio::net::TcpStream>) -> yamabiko::Result<()> {
/// while let Ok(msg) = conn.read_message().await {
///     conn.write_message(msg).await?;
/// }
/// # Ok(()) }
/// ```
pub struct Conn<S> {
    read: ReadHalf<S>,
    write: WriteHalf<S>,
}

impl<S> std::fmt::Debug for Conn<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("role", &self.read.shared.role)
            .field("subprotocol", &self.read.subprotocol())
            .field("compression", &self.write.compression_negotiated())
            .field("closed", &self.read.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
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
        let shared = Arc::new(Shared::new(stream, role, subprotocol));
        let decoder = Decoder::new(DecoderConfig {
            role,
            max_frame_size: config.max_frame_size as u64,
            max_message_size: config.max_message_size as u64,
        });
        Conn {
            read: ReadHalf::new(
                shared.clone(),
                decoder,
                config.read_buffer_size,
                leftover,
                config.keepalive,
            ),
            write: WriteHalf::new(shared, config.write_buffer_size),
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
    pub async fn read_message(&mut self) -> Result<Message> {
        self.read.read_message().await
    }

    /// Streams the next message. See [`ReadHalf::next_reader`].
    pub async fn next_reader(&mut self) -> Result<MessageReader<'_, S>> {
        self.read.next_reader().await
    }

    /// Sends a whole message. See [`WriteHalf::write_message`].
    pub async fn write_message(&mut self, message: impl Into<Message>) -> Result<()> {
        self.write.write_message(message).await
    }

    /// Sends a text message: a `&str`, a `String` or [`Utf8Bytes`].
    pub async fn write_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.write.write_text(text).await
    }

    /// Sends a binary message.
    pub async fn write_binary(&mut self, bytes: impl Into<Bytes>) -> Result<()> {
        self.write.write_binary(bytes).await
    }

    /// Queues a message without waiting; see [`WriteHalf::queue_message`].
    pub fn queue_message(&mut self, message: impl Into<Message>) -> Result<()> {
        self.write.queue_message(message)
    }

    /// Sends a message framed once for many connections.
    pub async fn write_prepared(&mut self, message: &crate::PreparedMessage) -> Result<()> {
        self.write.write_prepared(message).await
    }

    /// Queues a prepared message without waiting; see [`WriteHalf::queue_prepared`].
    pub fn queue_prepared(&mut self, message: &crate::PreparedMessage) -> Result<()> {
        self.write.queue_prepared(message)
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<()> {
        self.write.flush().await
    }

    /// Streams a message out. See [`WriteHalf::next_writer`].
    pub fn next_writer(&mut self, kind: MessageKind) -> MessageWriter<'_, S> {
        self.write.next_writer(kind)
    }

    /// Sends a control frame. See [`ControlHandle::write_control`].
    ///
    /// The returned future does not borrow the connection (a `Conn` is `Send` but not
    /// `Sync`, because handlers are `FnMut`), so it can be awaited in a spawned task.
    pub fn write_control(
        &self,
        control: Control,
        deadline: impl IntoDeadline,
    ) -> impl std::future::Future<Output = Result<()>> {
        let handle = self.write.control_handle();
        let deadline = deadline.into_deadline();
        async move { handle.write_control(control, deadline).await }
    }

    /// Closes gracefully: sends a close frame with `code` and `reason`, then reads (and
    /// discards data) until the peer's close frame arrives or `timeout` passes, then
    /// drops the transport. `Ok` when the peer answered the close.
    pub async fn close_with(
        mut self,
        code: impl Into<CloseCode>,
        reason: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let frame = CloseFrame::new(code, reason);
        match self
            .write_control(Control::Close(Some(frame)), Some(deadline))
            .await
        {
            Ok(()) | Err(Error::CloseSent) => {}
            Err(e) => return Err(e),
        }
        self.read.set_read_deadline(Some(deadline));
        loop {
            match self.read.read_message().await {
                Ok(_) => continue,
                Err(Error::Closed(f)) if f.code != CloseCode::ABNORMAL => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S> Conn<S> {
    /// The write half, for a hub.
    pub(crate) fn write_half(&self) -> &WriteHalf<S> {
        &self.write
    }

    /// Splits into a read half and a write half that can live in different tasks. The
    /// read half's automatic replies (pong, close) go out through the shared writer.
    pub fn split(self) -> (ReadHalf<S>, WriteHalf<S>) {
        (self.read, self.write)
    }

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

    /// Closes the connection at once, without a close handshake (gorilla's `Close`):
    /// the transport is dropped now, even while a [`ControlHandle`] lives (its calls
    /// then fail with [`Error::AlreadyClosed`]). The halves and handles have the same
    /// [`close`](WriteHalf::close), for closing from another task.
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

    /// Whether received bytes wait to be decoded. See [`ReadHalf::has_buffered_input`].
    pub fn has_buffered_input(&self) -> bool {
        self.read.has_buffered_input()
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

    /// Turns keepalive on or off from now on. See [`ReadHalf::set_keepalive`].
    pub fn set_keepalive(&mut self, keepalive: impl Into<Option<Keepalive>>) {
        self.read.set_keepalive(keepalive);
    }

    /// The round trip of the last keepalive ping. See [`ReadHalf::latency`].
    pub fn latency(&self) -> Option<Duration> {
        self.read.latency()
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

    /// A handle for sending control frames from other tasks.
    pub fn control_handle(&self) -> ControlHandle<S> {
        self.write.control_handle()
    }

    /// Turns compression of outgoing messages on or off. See
    /// [`WriteHalf::enable_write_compression`].
    pub fn enable_write_compression(&mut self, enable: bool) {
        self.write.enable_write_compression(enable);
    }

    /// Sets the deflate level for the next messages. See
    /// [`WriteHalf::set_compression_level`].
    pub fn set_compression_level(&mut self, level: u32) {
        self.write.set_compression_level(level);
    }

    /// Whether permessage-deflate was negotiated.
    pub fn compression_negotiated(&self) -> bool {
        self.write.compression_negotiated()
    }
}

/// `local_addr` and `peer_addr` for the connection and both halves, over the streams
/// that know the addresses of a TCP connection (`$addrs` reaches them).
macro_rules! socket_addresses {
    ($stream:ty, $addrs:expr) => {
        socket_addresses!(@one $crate::Conn<$stream>, $stream, $addrs, read.shared);
        socket_addresses!(@one $crate::ReadHalf<$stream>, $stream, $addrs, shared);
        socket_addresses!(@one $crate::WriteHalf<$stream>, $stream, $addrs, shared);
    };
    (@one $owner:ty, $stream:ty, $addrs:expr, $($shared:ident).+) => {
        impl $owner {
            /// The local address of the TCP connection.
            pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
                let addrs: fn(&$stream) -> SocketAddrs<'_> = $addrs;
                self.$($shared).+
                    .with_io(|s| addrs(s).local())
                    .unwrap_or_else(|| Err(shared::closed_error()))
            }

            /// The remote address of the TCP connection (for a dialled connection, the
            /// proxy's when it went through one).
            pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
                let addrs: fn(&$stream) -> SocketAddrs<'_> = $addrs;
                self.$($shared).+
                    .with_io(|s| addrs(s).peer())
                    .unwrap_or_else(|| Err(shared::closed_error()))
            }
        }
    };
}

/// Where a transport finds the addresses of its TCP connection: the socket itself,
/// or (an HTTP/2 stream, whose connection belongs to another task) what the stream
/// keeps of them.
enum SocketAddrs<'a> {
    Tcp(&'a tokio::net::TcpStream),
    #[cfg(feature = "http2")]
    Http2(&'a crate::http2::H2Stream),
}

impl SocketAddrs<'_> {
    fn local(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            SocketAddrs::Tcp(s) => s.local_addr(),
            #[cfg(feature = "http2")]
            SocketAddrs::Http2(s) => s.local_addr(),
        }
    }

    fn peer(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            SocketAddrs::Tcp(s) => s.peer_addr(),
            #[cfg(feature = "http2")]
            SocketAddrs::Http2(s) => s.peer_addr(),
        }
    }
}

/// A dialled transport: its socket, or its HTTP/2 stream.
fn dialled_addrs(s: &crate::client::MaybeTlsStream) -> SocketAddrs<'_> {
    use crate::client::MaybeTlsStream;
    match s {
        MaybeTlsStream::Plain(tcp) => SocketAddrs::Tcp(tcp),
        MaybeTlsStream::Tls(tls) => SocketAddrs::Tcp(tls.get_ref().0),
        #[cfg(feature = "http2")]
        MaybeTlsStream::Http2(h2) => SocketAddrs::Http2(h2),
    }
}

socket_addresses!(tokio::net::TcpStream, |s| SocketAddrs::Tcp(s));
socket_addresses!(crate::client::MaybeTlsStream, dialled_addrs);
#[cfg(feature = "http2")]
socket_addresses!(crate::http2::H2Stream, |s| SocketAddrs::Http2(s));

#[cfg(feature = "json")]
impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Sends `value` as a JSON text message (gorilla's `WriteJSON`).
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn write_json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.write.write_json(value).await
    }

    /// Reads the next message and decodes it as JSON (gorilla's `ReadJSON`).
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn read_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        self.read.read_json().await
    }
}
