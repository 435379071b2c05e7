//! The blocking read half: transport bytes → [`Decoder`] → messages, running the
//! control handlers on the way — the same decoder and handlers as the async driver.

use super::shared::{is_timeout, timeout_until, Shared};
use super::transport::Transport;
use crate::conn::handlers::{reply_frame, HandlerContext, Handlers};
use crate::conn::IntoDeadline;
use crate::error::{Error, Result, Sticky};
use crate::message::{Control, Message, Utf8Bytes};
use crate::proto::{CloseCode, CloseFrame, Decoder, Incoming, MessageKind, OpCode, Role};
use bytes::{Bytes, BytesMut};
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a failing or closing connection tries to get its last close frame out.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// A reader without a handle of its own (TLS) reads in slices this long, letting
/// writers take the lock in between.
const SHARED_READ_SLICE: Duration = Duration::from_millis(20);

/// The receiving half of a blocking connection; see [`Conn::split`](super::Conn::split).
pub struct ReadHalf<S> {
    pub(crate) shared: Arc<Shared<S>>,
    /// A duplicate handle to read from without the write lock, when the transport has
    /// one ([`Transport::duplicate`]).
    own: Option<S>,
    /// The read timeout last given to `own` (`None`: not known).
    own_timeout: Option<Option<Duration>>,
    buf: BytesMut,
    read_buffer_size: usize,
    decoder: Decoder,
    handlers: Handlers,
    deadline: Option<Instant>,
    replies: Vec<Control>,
    sticky: Option<Sticky>,
    partial: BytesMut,
    partial_kind: Option<MessageKind>,
    discarding: bool,
    subprotocol: Option<String>,
}

impl<S> std::fmt::Debug for ReadHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::ReadHalf")
            .field("role", &self.shared.role)
            .field("subprotocol", &self.subprotocol)
            .field("buffered", &self.buf.len())
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for MessageReader<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::MessageReader")
            .field("kind", &self.kind)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S> ReadHalf<S> {
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        own: Option<S>,
        decoder: Decoder,
        read_buffer_size: usize,
        leftover: BytesMut,
        subprotocol: Option<String>,
    ) -> Self {
        ReadHalf {
            shared,
            own,
            own_timeout: None,
            buf: leftover,
            read_buffer_size: read_buffer_size.max(256),
            decoder,
            handlers: Handlers::default(),
            deadline: None,
            replies: Vec::new(),
            sticky: None,
            partial: BytesMut::new(),
            partial_kind: None,
            discarding: false,
            subprotocol,
        }
    }

    /// Sets the read deadline: once it passes, reads fail with [`Error::Timeout`] until it
    /// is moved or cleared (`None`). It becomes the socket's read timeout before every
    /// read; a timed-out read loses nothing and reading can resume. Takes a `std` or a
    /// tokio instant ([`IntoDeadline`]).
    pub fn set_read_deadline(&mut self, deadline: impl IntoDeadline) {
        self.deadline = deadline.into_deadline();
    }

    /// Closes the connection at once, as [`WriteHalf::close`](super::WriteHalf::close).
    pub fn close(&self) {
        self.shared.close_now();
    }

    /// The largest message accepted; a larger one fails the connection with close 1009.
    pub fn set_read_limit(&mut self, bytes: usize) {
        self.decoder.set_max_message_size(bytes as u64);
    }

    /// Replaces the close handler (see [`CloseHandler`](crate::CloseHandler)).
    pub fn set_close_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, Option<&CloseFrame>) -> Result<()> + Send + 'static,
    ) {
        self.handlers.close = Some(Box::new(h));
    }

    /// Replaces the ping handler (see [`PingHandler`](crate::PingHandler)).
    pub fn set_ping_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send + 'static,
    ) {
        self.handlers.ping = Some(Box::new(h));
    }

    /// Replaces the pong handler (see [`PongHandler`](crate::PongHandler)).
    pub fn set_pong_handler(
        &mut self,
        h: impl FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send + 'static,
    ) {
        self.handlers.pong = Some(Box::new(h));
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    pub(crate) fn set_decompressor(&mut self, inflater: crate::proto::deflate::Decompressor) {
        self.decoder.set_decompressor(inflater);
    }
}

impl<S: Transport> ReadHalf<S> {
    /// Reads the next whole data message, running control handlers on the way. After a
    /// timeout nothing is lost: a partly received message is kept and continued.
    /// Memory: at most the read limit per message.
    pub fn read_message(&mut self) -> Result<Message> {
        self.finish_discard()?;
        // Bounded by the message: each round consumes a piece of it.
        loop {
            let (kind, payload, last) = self.next_piece()?;
            if last && self.partial_kind.is_none() {
                return Ok(make_message(kind, payload));
            }
            self.partial_kind = Some(kind);
            self.partial.extend_from_slice(&payload);
            if last {
                self.partial_kind = None;
                return Ok(make_message(kind, self.partial.split().freeze()));
            }
        }
    }

    /// Reads the next message and decodes it as JSON (gorilla's `ReadJSON`).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn read_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let msg = self.read_message()?;
        serde_json::from_slice(msg.as_bytes()).map_err(Error::Json)
    }

    /// Starts reading the next data message piece by piece (gorilla's `NextReader`): the
    /// reader yields its payload as frames arrive, in constant memory. Dropping it early
    /// discards the rest of the message.
    pub fn next_reader(&mut self) -> Result<MessageReader<'_, S>> {
        self.finish_discard()?;
        let (kind, current, done) = match self.partial_kind.take() {
            // A read_message timed out mid-message: hand its bytes to the reader.
            Some(kind) => (kind, self.partial.split().freeze(), false),
            None => self.next_piece()?,
        };
        Ok(MessageReader {
            half: self,
            kind,
            current,
            done,
        })
    }

    fn finish_discard(&mut self) -> Result<()> {
        while self.discarding {
            let (_, _, last) = self.next_piece()?;
            self.discarding = !last;
        }
        Ok(())
    }

    /// The next piece of data, after handling the control frames before it.
    pub(crate) fn next_piece(&mut self) -> Result<(MessageKind, Bytes, bool)> {
        if let Some(e) = &self.sticky {
            return Err(e.to_error());
        }
        // Bounded by the deadline (each transport read is), or blocking by design.
        loop {
            match self.decoder.decode(&mut self.buf) {
                Err(e) => {
                    tracing::debug!(error = %e, "websocket: failing the connection");
                    let mut payload = Vec::with_capacity(125);
                    // The code comes from ProtocolError::close_code: valid on the wire.
                    let _ = e.close_frame().encode(&mut payload);
                    self.end(Some(payload), Sticky::Protocol(e));
                    return Err(self.sticky_error());
                }
                Ok(Some(Incoming::Data {
                    kind,
                    payload,
                    last,
                })) => return Ok((kind, payload, last)),
                Ok(Some(Incoming::Ping(data))) => {
                    self.run_handler(|h, ctx| h.on_ping(ctx, &data))?;
                    continue;
                }
                Ok(Some(Incoming::Pong(data))) => {
                    self.run_handler(|h, ctx| h.on_pong(ctx, &data))?;
                    continue;
                }
                Ok(Some(Incoming::Close(frame))) => {
                    let r = self.call_handler(|h, ctx| h.on_close(ctx, frame.as_ref()));
                    self.end(None, Sticky::after_close(frame, &r));
                    return Err(self.sticky_error());
                }
                Ok(None) => {}
            }
            self.fill()?;
        }
    }

    fn sticky_error(&self) -> Error {
        self.sticky
            .as_ref()
            .map_or_else(Error::abnormal_closure, Sticky::to_error)
    }

    /// Reads more bytes from the transport, by the read deadline.
    fn fill(&mut self) -> Result<()> {
        let start = self.buf.len();
        loop {
            let timeout = timeout_until(self.deadline)?;
            self.buf.resize(start + self.read_buffer_size, 0);
            let result = match &mut self.own {
                Some(io) => {
                    let set = if self.own_timeout == Some(timeout) {
                        Ok(())
                    } else {
                        self.own_timeout = Some(timeout);
                        io.set_read_timeout(timeout)
                    };
                    set.and_then(|()| io.read(&mut self.buf[start..]))
                }
                None => {
                    let mut g = self.shared.lock();
                    let slice = timeout.map_or(SHARED_READ_SLICE, |t| t.min(SHARED_READ_SLICE));
                    match g.io.as_mut() {
                        Some(io) => io
                            .set_read_timeout(Some(slice))
                            .and_then(|()| io.read(&mut self.buf[start..])),
                        None => Ok(0), // closed: reported below
                    }
                }
            };
            self.buf.truncate(start + *result.as_ref().unwrap_or(&0));
            if self.shared.is_closed() && !matches!(result, Ok(n) if n > 0) {
                // `close` shut the transport down under this read.
                self.sticky = Some(Sticky::LocalClose);
                return Err(Error::AlreadyClosed);
            }
            match result {
                Ok(0) => {
                    self.sticky = Some(Sticky::Closed(CloseFrame::new(CloseCode::ABNORMAL, "")));
                    return Err(Error::abnormal_closure());
                }
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) && (self.deadline.is_some() || self.own.is_none()) => {
                    if self.own.is_none() {
                        std::thread::yield_now(); // let a waiting writer in
                    }
                }
                Err(e) => {
                    self.sticky = Some(Sticky::Io(e.kind(), e.to_string()));
                    return Err(Error::Io(e));
                }
            }
        }
    }

    /// Ends reading: sends `close` (a failure's close frame) unless a close frame went
    /// out already, writes what is queued (bounded in time), and as the server closes
    /// the TCP connection first (§7.1.1).
    fn end(&mut self, close: Option<Vec<u8>>, sticky: Sticky) {
        let role = self.shared.role;
        let mut g = self.shared.lock();
        if let Some(payload) = close {
            if !g.close_sent {
                g.push_frame(role, OpCode::Close, true, false, &payload);
            }
        }
        let _ = g.flush(Some(Instant::now() + CLOSE_FLUSH_TIMEOUT));
        if let Some(io) = g.io.as_mut().filter(|_| role == Role::Server) {
            let _ = io.shutdown_write();
        }
        drop(g);
        self.sticky = Some(sticky);
    }

    fn call_handler(
        &mut self,
        f: impl FnOnce(&mut Handlers, &mut HandlerContext<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut deadline = self.deadline;
        let mut ctx = HandlerContext {
            replies: &mut self.replies,
            read_deadline: &mut deadline,
        };
        let result = f(&mut self.handlers, &mut ctx);
        self.deadline = deadline;
        if !self.replies.is_empty() {
            let role = self.shared.role;
            let mut g = self.shared.lock();
            for reply in self.replies.drain(..) {
                if g.close_sent {
                    break; // nothing may follow a close frame
                }
                if let Some((opcode, payload)) = reply_frame(&reply) {
                    g.push_frame(role, opcode, true, false, &payload);
                }
            }
        }
        result
    }

    /// Runs a ping or pong handler and writes its replies within the read deadline (a
    /// reply that times out stays queued for the next write).
    fn run_handler(
        &mut self,
        f: impl FnOnce(&mut Handlers, &mut HandlerContext<'_>) -> Result<()>,
    ) -> Result<()> {
        let result = self.call_handler(f);
        let flushed = self.shared.lock().flush(self.deadline);
        match &flushed {
            Err(Error::Io(e)) => self.sticky = Some(Sticky::Io(e.kind(), e.to_string())),
            Err(Error::AlreadyClosed) => self.sticky = Some(Sticky::LocalClose),
            _ => {}
        }
        flushed.and(result)
    }
}

fn make_message(kind: MessageKind, payload: Bytes) -> Message {
    match kind {
        MessageKind::Text => Message::Text(Utf8Bytes::from_validated(payload)),
        MessageKind::Binary => Message::Binary(payload),
    }
}

/// Streams one message's payload as it arrives (gorilla's `NextReader`). Implements
/// [`Read`]; end of file is the end of the message. Control frames that arrive
/// meanwhile are handled by the connection's handlers.
pub struct MessageReader<'a, S> {
    half: &'a mut ReadHalf<S>,
    kind: MessageKind,
    current: Bytes,
    done: bool,
}

impl<S: Transport> MessageReader<'_, S> {
    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The next piece of payload as it arrived (no copy); `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        // Bounded by the message: each round consumes a piece of it.
        loop {
            if !self.current.is_empty() {
                return Ok(Some(std::mem::take(&mut self.current)));
            }
            if self.done {
                return Ok(None);
            }
            let (_, payload, last) = self.half.next_piece()?;
            self.current = payload;
            self.done = last;
        }
    }
}

impl<S: Transport> Read for MessageReader<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        match self.next_chunk()? {
            Some(mut chunk) => {
                let n = chunk.len().min(out.len());
                out[..n].copy_from_slice(&chunk.split_to(n));
                self.current = chunk;
                Ok(n)
            }
            None => Ok(0),
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
