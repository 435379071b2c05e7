//! The read half: turns transport bytes into messages, running the control handlers.

use super::deadline::{Deadline, IntoDeadline};
use super::handlers::{reply_frame, HandlerContext, Handlers};
use super::keepalive::{Beat, Heartbeat, Keepalive, Nap, KEEPALIVE_REASON};
use super::shared::{PayloadRef, Shared};
use crate::error::{Error, Result, Sticky};
use crate::message::{Message, Utf8Bytes};
use crate::proto::{
    CloseCode, CloseFrame, Decoder, DecoderConfig, Incoming, MessageKind, OpCode, ProtocolError,
    RestingDecoder, Role,
};
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a failing or closing connection tries to get its last close frame out.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Unsent bytes in the write queue above which a reader whose automatic replies
/// (pongs) wait stops reading until they drain: a peer that sends pings and never
/// reads the pongs is pushed back by TCP instead of growing the queue without bound.
const MAX_UNSENT_REPLIES: usize = 64 * 1024;

/// Most bytes reserved at once for the rest of a frame. Pages are only touched as
/// bytes arrive, so this bounds address space, not memory in use.
const MAX_FRAME_RESERVE: usize = 16 << 20;

/// Largest frame after which the next read goes straight into a buffer of that size
/// (see `ReadHalf::large_reads`). Above it a whole message rarely arrives in one read,
/// and buffers of a megabyte and more are left to the reserve-the-rest path, which
/// allocates each once.
const MAX_LARGE_READ: usize = 256 << 10;

/// The receiving half of a connection. Obtained from [`Conn::split`](crate::Conn::split);
/// [`Conn`](crate::Conn) offers the same methods.
pub struct ReadHalf<S> {
    pub(crate) shared: Arc<Shared<S>>,
    buf: BytesMut,
    read_buffer_size: usize,
    /// Size of the last large frame (0 if the last read was small): the next read
    /// goes straight into a buffer that size, so a large message arriving whole takes
    /// one system call and no copy instead of a scratch read and then the rest.
    large_reads: u32,
    decoder: Decoder,
    /// Boxed, and only once one is set: most connections keep gorilla's defaults, and
    /// an idle connection should be small.
    handlers: Option<Box<Handlers>>,
    deadline: Deadline,
    /// Keepalive, when on (boxed: off, it costs a null pointer and a branch where
    /// the reader would wait).
    heartbeat: Option<Box<Heartbeat>>,
    flush_id: u64,
    reply_pending: bool,
    /// The connection is ending: the error reads will return once the last close
    /// frame is out, and until when that may take.
    ending: Option<Box<Ending>>,
    /// Boxed (with `ending`): rare, and an idle connection should be small.
    sticky: Option<Box<Sticky>>,
    partial: BytesMut,
    partial_kind: Option<MessageKind>,
    discarding: bool,
}

impl<S> std::fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHalf")
            .field("role", &self.shared.role)
            .field("subprotocol", &self.subprotocol())
            .field("buffered", &self.buf.len())
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for MessageReader<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReader")
            .field("kind", &self.kind)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S> ReadHalf<S> {
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        decoder: Decoder,
        read_buffer_size: usize,
        leftover: BytesMut,
        keepalive: Option<Keepalive>,
    ) -> Self {
        let flush_id = shared.new_flush_id();
        ReadHalf {
            heartbeat: keepalive.map(Heartbeat::new),
            shared,
            buf: leftover,
            read_buffer_size: read_buffer_size.max(256),
            large_reads: 0,
            decoder,
            handlers: None,
            deadline: Deadline::default(),
            flush_id,
            reply_pending: false,
            ending: None,
            sticky: None,
            partial: BytesMut::new(),
            partial_kind: None,
            discarding: false,
        }
    }

    /// Whether nothing has been read that is not yet handed out, nothing is half
    /// done and the connection is not ending: what the reader holds is only its
    /// settings, which [`into_rest`](Self::into_rest) keeps.
    pub(crate) fn is_at_rest(&self) -> bool {
        self.buf.is_empty()
            && self.partial.is_empty()
            && self.partial_kind.is_none()
            && !self.discarding
            && !self.reply_pending
            && self.ending.is_none()
            && self.sticky.is_none()
            && self.decoder.is_at_rest()
    }

    /// The reader's settings (see [`is_at_rest`](Self::is_at_rest)); itself back if
    /// it is not at rest.
    #[allow(clippy::result_large_err)] // itself back, unchanged
    pub(crate) fn into_rest(mut self) -> std::result::Result<(Arc<Shared<S>>, ReadRest), Self> {
        if !self.is_at_rest() {
            return Err(self);
        }
        let config = *self.decoder.config();
        let decoder =
            match std::mem::replace(&mut self.decoder, Decoder::new(config)).into_resting() {
                Ok(d) => d,
                Err(d) => {
                    self.decoder = d;
                    return Err(self);
                }
            };
        let ReadHalf {
            shared,
            read_buffer_size,
            handlers,
            deadline,
            heartbeat,
            ..
        } = self;
        let deadline = deadline.get();
        // Without an inflater the decoder is its limits: every read sets the frame
        // mode it wants.
        let decoder = decoder.has_inflater().then_some(decoder);
        let extra = (decoder.is_some() || handlers.is_some() || deadline.is_some()).then(|| {
            Box::new(ReadExtra {
                decoder,
                handlers,
                deadline,
            })
        });
        Ok((
            shared,
            ReadRest {
                config,
                read_buffer_size,
                nap: heartbeat.as_deref().map(Heartbeat::to_nap),
                extra,
            },
        ))
    }

    /// A reader again, with `leftover` (bytes that arrived meanwhile) to decode first.
    pub(crate) fn from_rest(shared: Arc<Shared<S>>, rest: ReadRest, leftover: BytesMut) -> Self {
        let ReadRest {
            config,
            read_buffer_size,
            nap,
            extra,
        } = rest;
        let (decoder, handlers, deadline) = match extra.map(|e| *e) {
            Some(ReadExtra {
                decoder,
                handlers,
                deadline,
            }) => (
                decoder.map_or_else(|| Decoder::new(config), Decoder::from_resting),
                handlers,
                deadline,
            ),
            None => (Decoder::new(config), None, None),
        };
        let mut read = ReadHalf::new(shared, decoder, read_buffer_size, leftover, None);
        read.handlers = handlers;
        read.deadline.set(deadline);
        read.heartbeat = nap.as_ref().map(Heartbeat::from_nap);
        read
    }

    /// Sets the read deadline: once it passes, reads fail with [`Error::Timeout`] until it
    /// is moved or cleared (`None`). Unlike gorilla, a timed-out read loses nothing and
    /// reading can resume after the deadline is reset. Takes a `std` or a tokio
    /// instant ([`IntoDeadline`]).
    pub fn set_read_deadline(&mut self, deadline: impl IntoDeadline) {
        self.deadline.set(deadline.into_deadline());
    }

    /// Closes the connection at once, as [`WriteHalf::close`](crate::WriteHalf::close).
    pub fn close(&self) {
        self.shared.close_now();
    }

    /// Turns keepalive on with new settings, or off (`None`), from now on (see
    /// [`Keepalive`]; the [`Upgrader`](crate::Upgrader) or
    /// [`Dialer`](crate::Dialer) set it at the start).
    pub fn set_keepalive(&mut self, keepalive: impl Into<Option<Keepalive>>) {
        self.heartbeat = keepalive.into().map(Heartbeat::new);
    }

    /// The round trip of the last keepalive ping that was answered: from when the
    /// ping was queued to when its pong was read. `None` before the first answer, or
    /// with keepalive off.
    pub fn latency(&self) -> Option<Duration> {
        self.heartbeat.as_ref().and_then(|h| h.latency())
    }

    /// The largest message accepted; a larger one fails the connection with close 1009.
    /// gorilla's `SetReadLimit`. A message is held in memory whole by `read_message`, so
    /// this bounds the memory a peer can make us use.
    pub fn set_read_limit(&mut self, bytes: usize) {
        self.decoder.set_max_message_size(bytes as u64);
    }

    /// Replaces the close handler (see [`CloseHandler`](crate::CloseHandler)).
    pub fn set_close_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, Option<&CloseFrame>) -> Result<()> + Send + 'static,
    ) {
        self.handlers.get_or_insert_default().close = Some(Box::new(h));
    }

    /// Replaces the ping handler (see [`PingHandler`](crate::PingHandler)).
    pub fn set_ping_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send + 'static,
    ) {
        self.handlers.get_or_insert_default().ping = Some(Box::new(h));
    }

    /// Replaces the pong handler (see [`PongHandler`](crate::PongHandler)).
    pub fn set_pong_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send + 'static,
    ) {
        self.handlers.get_or_insert_default().pong = Some(Box::new(h));
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.shared.subprotocol.as_deref()
    }

    /// Whether bytes already received wait to be decoded, so that the next read may
    /// complete without the transport. An echo or relay uses it to gather replies to
    /// a burst of messages into one flush.
    pub fn has_buffered_input(&self) -> bool {
        !self.buf.is_empty() || self.decoder.has_pending_output()
    }

    pub(crate) fn set_decompressor(&mut self, inflater: crate::proto::deflate::Decompressor) {
        self.decoder.set_decompressor(inflater);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// Reads the next whole data message, running control handlers on the way.
    ///
    /// Cancel-safe: if the future is dropped, nothing is lost; a partly received message
    /// is kept and the next call continues it. Memory: at most the read limit per message.
    pub async fn read_message(&mut self) -> Result<Message> {
        poll_fn(|cx| self.poll_read_message(cx)).await
    }

    /// Starts reading the next data message piece by piece: the returned reader yields
    /// its payload as frames arrive, in constant memory whatever the message size.
    /// Dropping the reader early discards the rest of that message.
    pub async fn next_reader(&mut self) -> Result<MessageReader<'_, S>> {
        let (kind, first, last) = poll_fn(|cx| self.poll_message_start(cx)).await?;
        Ok(MessageReader {
            half: self,
            kind,
            current: first,
            done: last,
        })
    }

    /// Reads the next message and decodes it as JSON (gorilla's `ReadJSON`).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn read_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let msg = self.read_message().await?;
        serde_json::from_slice(msg.as_bytes()).map_err(Error::Json)
    }

    pub(crate) fn poll_read_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        if self.discarding {
            self.decoder.set_whole_frames(false);
            ready!(self.poll_discard(cx))?;
        }
        // The message is collected whole anyway: take each frame in one piece.
        self.decoder.set_whole_frames(true);
        loop {
            let (kind, payload, last) = ready!(self.poll_chunk(cx))?;
            if last && self.partial_kind.is_none() {
                return Poll::Ready(Ok(make_message(kind, payload)));
            }
            self.partial_kind = Some(kind);
            self.partial.extend_from_slice(&payload);
            if last {
                self.partial_kind = None;
                let whole = self.partial.split().freeze();
                return Poll::Ready(Ok(make_message(kind, whole)));
            }
        }
    }

    fn poll_message_start(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(MessageKind, Bytes, bool)>> {
        // Streaming: pieces as they arrive, in constant memory.
        self.decoder.set_whole_frames(false);
        if self.discarding {
            ready!(self.poll_discard(cx))?;
        }
        if let Some(kind) = self.partial_kind.take() {
            // A read_message was cancelled mid-message: hand its bytes to the reader.
            let so_far = self.partial.split().freeze();
            return Poll::Ready(Ok((kind, so_far, false)));
        }
        self.poll_chunk(cx)
    }

    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while self.discarding {
            let (_, _, last) = ready!(self.poll_chunk(cx))?;
            if last {
                self.discarding = false;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The next piece of data, after handling any control frames before it.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(MessageKind, Bytes, bool)>> {
        let result = self.poll_chunk_inner(cx);
        if self.reply_pending || self.ending.is_some() {
            // Never stay the flusher between polls: whoever waits to write takes over.
            self.shared.release(self.flush_id);
        }
        result
    }

    fn poll_chunk_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(MessageKind, Bytes, bool)>> {
        if let Some(e) = &self.sticky {
            return Poll::Ready(Err(e.to_error()));
        }
        if self.ending.is_some() {
            return self.poll_ending(cx);
        }
        if let Some((frame, give_up)) = self.shared.take_kick() {
            // A hub closed the connection for falling behind and queued the close
            // frame: get it out (until `give_up`), then end reads.
            self.ending = Some(Ending::new(Sticky::TooSlow(frame), give_up));
            return self.poll_ending(cx);
        }
        if self.deadline.poll_expired(cx) {
            return Poll::Ready(Err(Error::Timeout));
        }
        loop {
            if self.reply_pending {
                match self.shared.poll_flush_queue(cx, self.flush_id) {
                    Poll::Ready(Ok(())) => self.reply_pending = false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail_io(e))),
                    Poll::Pending => {
                        if self.shared.lock().queued_bytes() > MAX_UNSENT_REPLIES {
                            // Not reading until the replies drain; a keepalive
                            // timeout still ends the wait.
                            if let KeepaliveTurn::Dead(e) = self.poll_keepalive(cx) {
                                return Poll::Ready(Err(e));
                            }
                            self.shared.release_and_wait(self.flush_id, cx);
                            return Poll::Pending;
                        }
                    }
                }
            }
            match self.decoder.decode(&mut self.buf) {
                Err(e) => {
                    self.fail_protocol(e);
                    return self.poll_ending(cx);
                }
                Ok(Some(Incoming::Data {
                    kind,
                    payload,
                    last,
                })) => return Poll::Ready(Ok((kind, payload, last))),
                Ok(Some(Incoming::Ping(data))) => {
                    let r = self.run_handler(|h, ctx| h.on_ping(ctx, &data));
                    if let Err(e) = r {
                        return Poll::Ready(Err(e));
                    }
                    continue;
                }
                Ok(Some(Incoming::Pong(data))) => {
                    if let Some(heartbeat) = &mut self.heartbeat {
                        heartbeat.pong(&data);
                    }
                    let r = self.run_handler(|h, ctx| h.on_pong(ctx, &data));
                    if let Err(e) = r {
                        return Poll::Ready(Err(e));
                    }
                    continue;
                }
                Ok(Some(Incoming::Close(frame))) => {
                    let r = self.run_handler(|h, ctx| h.on_close(ctx, frame.as_ref()));
                    self.ending = Some(Ending::soon(Sticky::after_close(frame, &r)));
                    return self.poll_ending(cx);
                }
                Ok(None) => {}
            }
            match self.poll_fill(cx) {
                Poll::Pending => {
                    if self.heartbeat.is_none() {
                        return Poll::Pending;
                    }
                    match self.poll_keepalive(cx) {
                        // A ping was queued: the next read writes it (as driver).
                        KeepaliveTurn::Pinged => continue,
                        KeepaliveTurn::Idle => return Poll::Pending,
                        KeepaliveTurn::Dead(e) => return Poll::Ready(Err(e)),
                    }
                }
                Poll::Ready(Ok(0)) => {
                    let closed = Error::abnormal_closure();
                    self.sticky = Some(Box::new(Sticky::Closed(CloseFrame::new(
                        CloseCode::ABNORMAL,
                        "",
                    ))));
                    return Poll::Ready(Err(closed));
                }
                Poll::Ready(Ok(_)) => {
                    if let Some(heartbeat) = &mut self.heartbeat {
                        heartbeat.heard();
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail_io(e))),
            }
        }
    }

    /// Where the reader would wait: sends the keepalive ping that is due, or fails
    /// the connection when the peer stayed silent too long (the error to return).
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> KeepaliveTurn {
        let Some(heartbeat) = self.heartbeat.as_mut() else {
            return KeepaliveTurn::Idle;
        };
        match heartbeat.poll(cx) {
            Beat::Idle => KeepaliveTurn::Idle,
            Beat::Ping(payload) => {
                let mut g = self.shared.lock();
                if g.check_writable().is_err() {
                    return KeepaliveTurn::Idle; // closing: no more pings
                }
                let role = self.shared.role;
                g.push_frame(role, OpCode::Ping, true, false, PayloadRef::Slice(&payload));
                KeepaliveTurn::Pinged
            }
            Beat::Dead => KeepaliveTurn::Dead(self.fail_keepalive(cx)),
        }
    }

    /// Fails a connection whose peer did not answer a keepalive ping in time: one
    /// attempt to send close 1011 (a peer that is gone cannot be waited for), then
    /// the transport is dropped, which also ends writes waiting on it.
    fn fail_keepalive(&mut self, cx: &mut Context<'_>) -> Error {
        tracing::debug!("websocket: no answer to a keepalive ping in time, failing the connection");
        {
            let mut g = self.shared.lock();
            if g.check_writable().is_ok() {
                let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, KEEPALIVE_REASON);
                g.push_close(self.shared.role, &frame);
            }
        }
        let _ = self.shared.poll_flush_queue(cx, self.flush_id);
        self.shared.close_now();
        self.sticky = Some(Box::new(Sticky::KeepaliveTimeout));
        Error::KeepaliveTimeout
    }

    /// Reads more bytes. A connection with nothing buffered reads through the thread's
    /// scratch buffer and so holds no read buffer while idle; a frame larger than a
    /// read is read straight into a buffer of its size, so whole-frame payloads need
    /// no copy.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let missing = self
            .decoder
            .frame_remaining()
            .map_or(0, |r| r.saturating_sub(self.buf.len() as u64));
        let missing = usize::try_from(missing).unwrap_or(usize::MAX);
        if self.buf.is_empty() && missing < self.read_buffer_size {
            // Drop the old buffer first: what is still in use lives on in messages.
            self.buf = BytesMut::new();
            if self.large_reads > 0 {
                // Dropped again if nothing is there: idle connections hold no buffer.
                let mut fresh =
                    BytesMut::with_capacity(self.large_reads as usize + self.read_buffer_size);
                let n = ready!(self.shared.poll_read_into(cx, &mut fresh, self.flush_id))?;
                if n <= self.read_buffer_size {
                    self.large_reads = 0;
                }
                self.buf = fresh;
                return Poll::Ready(Ok(n));
            }
            let fresh =
                ready!(self
                    .shared
                    .poll_read_fresh(cx, self.read_buffer_size, self.flush_id))?;
            let n = fresh.len();
            self.buf = fresh;
            return Poll::Ready(Ok(n));
        }
        let spare = self.buf.capacity() - self.buf.len();
        if missing >= self.read_buffer_size {
            let frame = missing.saturating_add(self.buf.len());
            self.large_reads = if frame <= MAX_LARGE_READ {
                // Bounded by MAX_LARGE_READ, so it fits.
                u32::try_from(frame).unwrap_or(0)
            } else {
                0
            };
        }
        if missing > spare {
            // The rest of a large frame: room for all of it (bounded by the frame
            // limit, already checked) and a normal read more. The slack makes the read
            // that completes the frame a short one, which tells the runtime the socket
            // is drained, so the next read waits for readiness instead of making a
            // syscall that only returns WouldBlock.
            self.buf
                .reserve(missing.min(MAX_FRAME_RESERVE) + self.read_buffer_size);
        } else if spare < self.read_buffer_size / 4 {
            self.buf.reserve(self.read_buffer_size);
        }
        self.shared.poll_read_into(cx, &mut self.buf, self.flush_id)
    }

    fn fail_io(&mut self, e: io::Error) -> Error {
        self.sticky = Some(Box::new(Sticky::from_io(&e)));
        Error::from_io(e)
    }

    /// Fails the connection (§7.1.7): queue a close frame with the error's code.
    fn fail_protocol(&mut self, e: ProtocolError) {
        tracing::debug!(error = %e, "websocket: failing the connection");
        let mut g = self.shared.lock();
        if !g.close_sent {
            // The code comes from ProtocolError::close_code, always valid on the wire.
            g.push_close(self.shared.role, &e.close_frame());
        }
        drop(g);
        self.ending = Some(Ending::soon(Sticky::Protocol(e)));
    }

    /// Gets the last close frame out (bounded in time), then reports the ending error.
    fn poll_ending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(MessageKind, Bytes, bool)>> {
        let flushed = self.shared.poll_flush_queue(cx, self.flush_id);
        if flushed.is_pending() {
            let expired = self
                .ending
                .as_mut()
                .is_none_or(|ending| ending.deadline.poll_expired(cx));
            if !expired {
                return Poll::Pending;
            }
        }
        if self.shared.role == Role::Server {
            // §7.1.1: the server closes the TCP connection first. Best effort.
            let _ = self.shared.poll_shutdown(cx);
        }
        let sticky = self.ending.take().map_or_else(
            || Sticky::Closed(CloseFrame::new(CloseCode::ABNORMAL, "")),
            |ending| ending.sticky,
        );
        let err = sticky.to_error();
        self.sticky = Some(Box::new(sticky));
        Poll::Ready(Err(err))
    }

    fn run_handler(
        &mut self,
        f: impl FnOnce(&mut Handlers, &mut HandlerContext<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut deadline = self.deadline.get();
        // Allocates only if a handler sends something (a pong, a close).
        let mut replies = Vec::new();
        let mut ctx = HandlerContext {
            replies: &mut replies,
            read_deadline: &mut deadline,
        };
        let result = match &mut self.handlers {
            Some(handlers) => f(handlers, &mut ctx),
            None => f(&mut Handlers::default(), &mut ctx),
        };
        self.deadline.set(deadline);
        if !replies.is_empty() {
            let mut g = self.shared.lock();
            let role = self.shared.role;
            for reply in replies {
                if g.close_sent {
                    break; // nothing may follow a close frame
                }
                if let Some((opcode, payload)) = reply_frame(&reply) {
                    g.push_frame(role, opcode, true, false, PayloadRef::Shared(&payload));
                }
            }
            self.reply_pending = true;
        }
        result
    }
}

/// What keepalive did where the reader would wait.
enum KeepaliveTurn {
    Idle,
    Pinged,
    Dead(Error),
}

/// Why a connection's reads are ending, and until when its last close frame may
/// take to go out.
struct Ending {
    sticky: Sticky,
    deadline: Deadline,
}

impl Ending {
    /// Ending once the close frame is out, or after `give_up`.
    fn new(sticky: Sticky, give_up: Instant) -> Box<Ending> {
        let mut deadline = Deadline::default();
        deadline.set(Some(give_up));
        Box::new(Ending { sticky, deadline })
    }

    /// Ending within [`CLOSE_FLUSH_TIMEOUT`].
    fn soon(sticky: Sticky) -> Box<Ending> {
        Ending::new(sticky, Instant::now() + CLOSE_FLUSH_TIMEOUT)
    }
}

/// What a reader at rest keeps (see [`ReadHalf::into_rest`]): its limits and
/// keepalive schedule, and, in a box only when any is set, compression, the
/// application's handlers and a read deadline.
pub(crate) struct ReadRest {
    pub(crate) config: DecoderConfig,
    pub(crate) read_buffer_size: usize,
    /// Keepalive, when on: the sleeper's keeper steps it.
    pub(crate) nap: Option<Nap>,
    pub(crate) extra: Option<Box<ReadExtra>>,
}

/// The rarer part of a [`ReadRest`].
pub(crate) struct ReadExtra {
    /// With an inflater (otherwise the decoder is only its limits).
    decoder: Option<RestingDecoder>,
    handlers: Option<Box<Handlers>>,
    pub(crate) deadline: Option<Instant>,
}

impl ReadExtra {
    /// Whether the application set a ping or a pong handler (then a ping or pong
    /// that arrives while the connection sleeps wakes it, for the handler to run).
    pub(crate) fn has_control_handler(&self) -> bool {
        self.handlers
            .as_ref()
            .is_some_and(|h| h.ping.is_some() || h.pong.is_some())
    }
}

fn make_message(kind: MessageKind, payload: Bytes) -> Message {
    match kind {
        MessageKind::Text => Message::Text(Utf8Bytes::from_validated(payload)),
        MessageKind::Binary => Message::Binary(payload),
    }
}

/// Streams one message's payload as it arrives (gorilla's `NextReader`). Implements
/// [`AsyncRead`]; end of file is the end of the message. Control frames that arrive
/// meanwhile are handled by the connection's handlers.
pub struct MessageReader<'a, S> {
    half: &'a mut ReadHalf<S>,
    kind: MessageKind,
    current: Bytes,
    done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MessageReader<'_, S> {
    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The next piece of payload as it arrived (no copy); `None` at the end of the
    /// message.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        poll_fn(|cx| self.poll_next_chunk(cx)).await
    }

    fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        loop {
            if !self.current.is_empty() {
                return Poll::Ready(Ok(Some(std::mem::take(&mut self.current))));
            }
            if self.done {
                return Poll::Ready(Ok(None));
            }
            let (_, payload, last) = ready!(self.half.poll_chunk(cx))?;
            self.current = payload;
            self.done = last;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MessageReader<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.current.is_empty() {
                let n = this.current.len().min(out.remaining());
                out.put_slice(&this.current.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.half.poll_chunk(cx)) {
                Ok((_, payload, last)) => {
                    this.current = payload;
                    this.done = last;
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

impl<S> Drop for MessageReader<'_, S> {
    fn drop(&mut self) {
        if !self.done {
            self.half.discarding = true;
        }
    }
}
