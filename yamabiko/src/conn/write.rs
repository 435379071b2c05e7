//! The write half: frames messages and control frames into the shared write queue.

use super::deadline::{Deadline, IntoDeadline};
use super::shared::{FlushGuard, PayloadRef, Shared};
use crate::error::{Error, Result};
use crate::hub::Framing;
use crate::message::{Control, Message, Utf8Bytes};
use crate::proto::deflate::Compressor;
use crate::proto::utf8::Utf8Validator;
use crate::proto::{MessageKind, OpCode};
use crate::write_compression::WriteCompression;
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::io::AsyncWrite;

/// Above this many queued bytes, `Sink::poll_ready` waits for the transport.
const SINK_HIGH_WATER: usize = 64 * 1024;

/// The sending half of a connection. Obtained from [`Conn::split`](crate::Conn::split);
/// [`Conn`](crate::Conn) offers the same methods.
pub struct WriteHalf<S> {
    pub(crate) shared: Arc<Shared<S>>,
    deadline: Deadline,
    flush_id: u64,
    write_buffer_size: usize,
    /// Boxed: most connections never compress, and an idle one should be small.
    compression: Option<Box<WriteCompression>>,
}

impl<S> std::fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHalf")
            .field("role", &self.shared.role)
            .field("subprotocol", &self.shared.subprotocol)
            .field("compression", &self.compression.is_some())
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for ControlHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlHandle")
            .field("role", &self.shared.role)
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for MessageWriter<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageWriter")
            .field("kind", &self.kind)
            .field("buffered", &self.buf.len())
            .field("started", &self.started)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<S> WriteHalf<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>, write_buffer_size: usize) -> Self {
        let flush_id = shared.new_flush_id();
        WriteHalf {
            shared,
            deadline: Deadline::default(),
            flush_id,
            write_buffer_size: write_buffer_size.max(128),
            compression: None,
        }
    }

    pub(crate) fn set_compressor(&mut self, compressor: Compressor, threshold: usize) {
        self.compression = Some(Box::new(WriteCompression::new(compressor, threshold)));
    }

    /// Turns compression of outgoing messages on or off (gorilla's
    /// `EnableWriteCompression`); only has an effect when permessage-deflate was
    /// negotiated. Incoming compressed messages are always accepted.
    pub fn enable_write_compression(&mut self, enable: bool) {
        if let Some(c) = &mut self.compression {
            c.set_enabled(enable);
        }
    }

    /// Sets the deflate level (0–9) for the next messages (gorilla's
    /// `SetCompressionLevel`).
    pub fn set_compression_level(&mut self, level: u32) {
        if let Some(c) = &mut self.compression {
            c.set_level(level);
        }
    }

    /// Whether permessage-deflate was negotiated on this connection.
    pub fn compression_negotiated(&self) -> bool {
        self.compression.is_some()
    }

    /// How a hub frames messages for this connection (see [`Framing`]).
    pub(crate) fn framing(&self) -> Framing {
        if self.shared.role == crate::proto::Role::Client {
            return Framing::Masked;
        }
        match &self.compression {
            Some(c) if c.is_enabled() && c.settings().no_context_takeover() => Framing::Deflate {
                window_bits: c.settings().window_bits(),
                level: c.settings().level(),
                threshold: c.threshold(),
            },
            _ => Framing::Plain,
        }
    }

    /// The compressor to use for a message of `len` bytes, if any.
    fn compressor_for(&mut self, len: usize) -> Option<&mut Compressor> {
        self.compression.as_mut()?.for_message(len)
    }

    /// Queues a whole message, compressed when that applies.
    fn queue_whole(&mut self, message: Message) -> Result<()> {
        let opcode = message.kind().opcode();
        let payload = message.into_bytes();
        if let Some(compressor) = self.compressor_for(payload.len()) {
            let mut out = BytesMut::with_capacity(payload.len() / 2 + 64);
            compressor
                .compress_message(&payload, &mut out)
                .map_err(|e| Error::Io(io::Error::other(e)))?;
            let out = out.freeze();
            return self.queue_frame(opcode, true, true, PayloadRef::Owned(out));
        }
        self.queue_frame(opcode, true, false, PayloadRef::Owned(payload))
    }

    /// Sets the write deadline: once it passes, writes fail with [`Error::Timeout`] until
    /// it is moved or cleared (`None`). A frame that timed out half-written stays queued
    /// and goes out first on the next write, so the stream is never corrupted. Takes a
    /// `std` or a tokio instant ([`IntoDeadline`](crate::IntoDeadline)).
    pub fn set_write_deadline(&mut self, deadline: impl IntoDeadline) {
        self.deadline.set(deadline.into_deadline());
    }

    /// Closes the connection at once, without a close handshake (gorilla's `Close`),
    /// whatever other halves and handles share it: the peer sees the transport end
    /// now, and every read, write and control frame of this connection — this half,
    /// the read half, every [`ControlHandle`] — then fails with
    /// [`Error::AlreadyClosed`] (a read waiting in another task wakes up to it).
    /// Queued frames that were not written yet are dropped. For the close handshake,
    /// send a close frame first ([`write_control`](Self::write_control)).
    pub fn close(&self) {
        self.shared.close_now();
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.shared.subprotocol.as_deref()
    }

    /// A handle for sending control frames from other tasks (gorilla's `WriteControl`
    /// may be called concurrently with everything else).
    pub fn control_handle(&self) -> ControlHandle<S> {
        ControlHandle {
            shared: self.shared.clone(),
        }
    }

    /// Queues a whole data frame (no flush); fails after a close frame was sent.
    fn queue_frame(
        &self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: PayloadRef<'_>,
    ) -> Result<()> {
        let mut g = self.shared.lock();
        g.check_writable()?;
        g.push_frame(self.shared.role, opcode, fin, rsv1, payload);
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> WriteHalf<S> {
    /// Sends a whole message as one frame and waits until the transport took it.
    ///
    /// Cancel-safe at frame granularity: if the future is dropped, the frame is either
    /// not queued or queued whole and sent by a later write.
    pub async fn write_message(&mut self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        self.check_deadline()?;
        self.queue_whole(message)?;
        self.flush().await
    }

    /// Sends a text message (`write_message(Message::text(..))`): a `&str`, a `String`
    /// or [`Utf8Bytes`].
    pub async fn write_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.write_message(Message::Text(text.into())).await
    }

    /// Sends a binary message.
    pub async fn write_binary(&mut self, bytes: impl Into<Bytes>) -> Result<()> {
        self.write_message(Message::binary(bytes)).await
    }

    /// Sends `value` as a JSON text message (gorilla's `WriteJSON`).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn write_json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let text = serde_json::to_string(value).map_err(Error::Json)?;
        self.write_message(Message::text(text)).await
    }

    /// Queues a message without waiting for the transport; [`flush`](Self::flush) sends
    /// everything queued in as few system calls as possible. For bursts of small messages.
    pub fn queue_message(&mut self, message: impl Into<Message>) -> Result<()> {
        self.queue_whole(message.into())
    }

    /// Sends a [`PreparedMessage`](crate::PreparedMessage) (framed once for many
    /// connections) and waits until the transport took it.
    pub async fn write_prepared(&mut self, message: &crate::PreparedMessage) -> Result<()> {
        self.check_deadline()?;
        self.queue_prepared(message)?;
        self.flush().await
    }

    /// Queues a [`PreparedMessage`](crate::PreparedMessage) without waiting.
    pub fn queue_prepared(&mut self, message: &crate::PreparedMessage) -> Result<()> {
        let server = self.shared.role == crate::proto::Role::Server;
        let len = message.message().len();
        let frame = match self.compressor_for(len) {
            None if server => message.server_frame().clone(),
            Some(c) if server && c.no_context_takeover() => {
                // Same window size and level → same bytes: compress once for all.
                message
                    .compressed_server_frame(c.window_bits(), c.level())
                    .map_err(|e| Error::Io(io::Error::other(e)))?
            }
            _ => return self.queue_whole(message.message().clone()),
        };
        let mut g = self.shared.lock();
        g.check_writable()?;
        g.push_encoded(&frame);
        Ok(())
    }

    /// Waits until everything queued has been handed to the transport.
    pub async fn flush(&mut self) -> Result<()> {
        let guard = FlushGuard {
            shared: &self.shared,
            id: self.flush_id,
        };
        let deadline = &mut self.deadline;
        let result = poll_fn(|cx| {
            if deadline.poll_expired(cx) {
                return Poll::Ready(Err(Error::Timeout));
            }
            guard
                .shared
                .poll_flush_queue(cx, guard.id)
                .map_err(Error::from_io)
        })
        .await;
        drop(guard);
        result
    }

    /// Sends a control frame; see [`ControlHandle::write_control`].
    pub async fn write_control(&self, control: Control, deadline: impl IntoDeadline) -> Result<()> {
        self.control_handle().write_control(control, deadline).await
    }

    /// Starts a message written piece by piece (gorilla's `NextWriter`): bytes written
    /// to the returned writer go out as fragments whenever the write buffer fills, and
    /// [`MessageWriter::finish`] sends the final fragment.
    pub fn next_writer(&mut self, kind: MessageKind) -> MessageWriter<'_, S> {
        let capacity = self.write_buffer_size;
        let compress = self.compression.as_ref().is_some_and(|c| c.is_enabled());
        MessageWriter {
            half: self,
            kind,
            buf: BytesMut::with_capacity(capacity),
            capacity,
            started: false,
            flushing: false,
            finished: false,
            invalid: false,
            utf8: (kind == MessageKind::Text).then(Utf8Validator::new),
            compress,
        }
    }

    fn check_deadline(&self) -> Result<()> {
        match self.deadline.get() {
            Some(at) if Instant::now() >= at => Err(Error::Timeout),
            _ => Ok(()),
        }
    }

    fn poll_flush_with_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.deadline.poll_expired(cx) {
            return Poll::Ready(Err(Error::Timeout));
        }
        self.shared
            .poll_flush_queue(cx, self.flush_id)
            .map_err(Error::from_io)
    }
}

/// What a writer keeps while its connection sleeps (see [`WriteHalf::into_rest`]):
/// its fragment size, and a write deadline and compression in a box when set.
pub(crate) struct WriteRest {
    pub(crate) write_buffer_size: usize,
    pub(crate) extra: Option<Box<WriteExtra>>,
}

/// The rarer part of a [`WriteRest`]: a write deadline, compression.
pub(crate) type WriteExtra = (Option<Instant>, Option<Box<WriteCompression>>);

impl<S> WriteHalf<S> {
    /// The writer's settings; the connection's queue must be empty (the shared
    /// state's `is_at_rest`), and there is no message half written (that needs
    /// a [`MessageWriter`], which borrows the half).
    pub(crate) fn into_rest(mut self) -> WriteRest {
        let deadline = self.deadline.get();
        let compression = self.compression.take();
        WriteRest {
            write_buffer_size: self.write_buffer_size,
            extra: (deadline.is_some() || compression.is_some())
                .then(|| Box::new((deadline, compression))),
        }
    }

    /// A writer again.
    pub(crate) fn from_rest(shared: Arc<Shared<S>>, rest: WriteRest) -> Self {
        let mut write = WriteHalf::new(shared, rest.write_buffer_size);
        if let Some(extra) = rest.extra {
            let (deadline, compression) = *extra;
            write.deadline.set(deadline);
            write.compression = compression;
        }
        write
    }
}

impl<S> Drop for WriteHalf<S> {
    fn drop(&mut self) {
        self.shared.release(self.flush_id);
    }
}

/// A cloneable handle that sends control frames (close, ping, pong) while other tasks
/// read and write — gorilla's `WriteControl`, safe to call concurrently.
pub struct ControlHandle<S> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl<S> Clone for ControlHandle<S> {
    fn clone(&self) -> Self {
        ControlHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S> ControlHandle<S> {
    /// Closes the connection at once, as [`WriteHalf::close`]: for the task that
    /// decides a connection must end (a failed ping, a shutdown) while other tasks
    /// read and write it; they wake up to [`Error::AlreadyClosed`].
    pub fn close(&self) {
        self.shared.close_now();
    }

    /// Whether the connection was closed with `close` (by any half or handle).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl<S: AsyncWrite + Unpin> ControlHandle<S> {
    /// Sends a control frame, between the fragments of a message being written if need
    /// be, and waits until the transport took it or `deadline` passes. Payloads are
    /// limited to 125 bytes (a close reason to 123); after a close frame nothing more
    /// can be sent ([`Error::CloseSent`]).
    ///
    /// Cancel-safe: if the future is dropped, the frame is either not queued or queued
    /// whole and sent by a later write.
    pub async fn write_control(&self, control: Control, deadline: impl IntoDeadline) -> Result<()> {
        let deadline = deadline.into_deadline();
        let role = self.shared.role;
        let (opcode, payload) = control.frame()?;
        if matches!(deadline, Some(at) if Instant::now() >= at) {
            return Err(Error::Timeout);
        }
        {
            let mut g = self.shared.lock();
            g.check_writable()?;
            g.push_frame(role, opcode, true, false, PayloadRef::Shared(&payload));
        }
        let guard = FlushGuard {
            shared: &self.shared,
            id: self.shared.new_flush_id(),
        };
        let mut timer = Deadline::default();
        timer.set(deadline);
        let result = poll_fn(|cx| {
            if timer.poll_expired(cx) {
                return Poll::Ready(Err(Error::Timeout));
            }
            guard
                .shared
                .poll_flush_queue(cx, guard.id)
                .map_err(Error::from_io)
        })
        .await;
        drop(guard);
        result
    }
}

/// Writes one message piece by piece (gorilla's `NextWriter`). Implements
/// [`AsyncWrite`]; [`finish`](Self::finish) (or `shutdown`) sends the final fragment.
///
/// Text written through it is checked incrementally to be UTF-8, and invalid UTF-8
/// never reaches the wire: a fragment goes out only up to the last whole character
/// (an unfinished one waits for the next write), and the write that supplies invalid
/// bytes — or `finish`, for a message that ends inside a character — fails with
/// [`io::ErrorKind::InvalidData`] (`finish`: [`Error::InvalidInput`]). The message
/// then ends there: if fragments went out already, a final fragment with the valid
/// bytes written before is queued (and sent with the next write or flush of the
/// connection), otherwise nothing is sent. The connection stays usable.
///
/// Dropping the writer without `finish`: if no fragment was sent yet, the message is
/// discarded; otherwise the buffered bytes (whole characters only) are queued as the
/// final fragment, so the stream stays valid.
pub struct MessageWriter<'a, S> {
    half: &'a mut WriteHalf<S>,
    kind: MessageKind,
    buf: BytesMut,
    capacity: usize,
    started: bool,
    flushing: bool,
    finished: bool,
    /// The text was not valid UTF-8: the message was ended early, `finish` fails.
    invalid: bool,
    utf8: Option<Utf8Validator>,
    compress: bool,
}

impl<S> MessageWriter<'_, S> {
    /// Queues the buffered bytes as a fragment. A text fragment that is not the last
    /// keeps an unfinished character back for the next one, so that every fragment on
    /// the wire ends on a character boundary.
    fn emit(&mut self, fin: bool) -> Result<()> {
        let opcode = if self.started {
            OpCode::Continuation
        } else {
            self.kind.opcode()
        };
        let held = match &self.utf8 {
            Some(v) if !fin => v.pending_len(),
            _ => 0,
        };
        let mut payload = self.buf.split_to(self.buf.len() - held).freeze();
        let compressor = self.half.compression.as_mut().map(|c| c.compressor());
        let rsv1 = match compressor {
            Some(c) if self.compress => {
                let mut out = BytesMut::with_capacity(payload.len() / 2 + 64);
                c.compress_chunk(&payload, fin, &mut out)
                    .map_err(|e| Error::Io(io::Error::other(e)))?;
                payload = out.freeze();
                !self.started
            }
            _ => false,
        };
        self.half
            .queue_frame(opcode, fin, rsv1, PayloadRef::Owned(payload))?;
        self.started = true;
        if self.buf.capacity() < self.capacity {
            self.buf.reserve(self.capacity);
        }
        Ok(())
    }

    /// Ends the message early (invalid text, or the writer dropped): drops the
    /// unfinished character at the end of the buffer (`held` bytes) and, if fragments
    /// went out, queues the rest as the final fragment; otherwise the message is
    /// dropped unsent.
    fn end_early(&mut self, held: usize) {
        self.buf.truncate(self.buf.len() - held.min(self.buf.len()));
        self.utf8 = None; // what is left is whole characters
        if self.started {
            // Fails only after a close frame, when nothing may follow anyway.
            let _ = self.emit(true);
        }
        self.buf = BytesMut::new();
        self.finished = true;
    }

    /// Ends the message early because its text is not valid UTF-8.
    fn end_invalid(&mut self, held: usize) {
        self.end_early(held);
        self.invalid = true;
    }

    fn invalid_text() -> Error {
        Error::InvalidInput("text message is not valid UTF-8".into())
    }
}

impl<S: AsyncWrite + Unpin> MessageWriter<'_, S> {
    /// Sends the final fragment and waits until the transport took the message. For
    /// text that ends inside a character (or after a write that was refused as
    /// invalid UTF-8), the message is ended with the valid part and this returns
    /// [`Error::InvalidInput`] once that is written.
    pub async fn finish(mut self) -> Result<()> {
        poll_fn(|cx| self.poll_finish(cx)).await
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.finished {
            if self.flushing {
                ready!(self.half.poll_flush_with_deadline(cx))?;
                self.flushing = false;
            }
            let unfinished = self.utf8.as_ref().map_or(0, Utf8Validator::pending_len);
            if unfinished > 0 {
                self.end_invalid(unfinished);
            } else {
                self.emit(true)?;
                self.finished = true;
            }
        }
        ready!(self.half.poll_flush_with_deadline(cx))?;
        if self.invalid {
            return Poll::Ready(Err(Self::invalid_text()));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MessageWriter<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.invalid {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "text message is not valid UTF-8",
            )));
        }
        if this.finished {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "message already finished",
            )));
        }
        loop {
            if this.flushing {
                ready!(this.half.poll_flush_with_deadline(cx))?;
                this.flushing = false;
            }
            let space = this.capacity.saturating_sub(this.buf.len());
            if space == 0 {
                this.emit(false)?;
                this.flushing = true;
                continue;
            }
            let n = space.min(data.len());
            if let Some(v) = &mut this.utf8 {
                let held = v.pending_len();
                if v.feed(&data[..n]).is_err() {
                    this.end_invalid(held);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message is not valid UTF-8",
                    )));
                }
            }
            this.buf.extend_from_slice(&data[..n]);
            return Poll::Ready(Ok(n));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.flushing {
            ready!(this.half.poll_flush_with_deadline(cx))?;
            this.flushing = false;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_finish(cx).map_err(io::Error::from)
    }
}

impl<S> Drop for MessageWriter<'_, S> {
    fn drop(&mut self) {
        if self.started && !self.finished {
            // End the message with whole characters only.
            let unfinished = self.utf8.as_ref().map_or(0, Utf8Validator::pending_len);
            self.end_early(unfinished);
        }
        // A flush cut short must not leave this half the flusher: control frames from
        // other tasks would wait for it.
        self.half.shared.release(self.half.flush_id);
    }
}

// Sink support lives here because it shares the queue discipline.
impl<S: AsyncWrite + Unpin> WriteHalf<S> {
    pub(crate) fn poll_sink_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.shared.lock().queued_bytes() < SINK_HIGH_WATER {
            return Poll::Ready(Ok(()));
        }
        self.poll_flush_with_deadline(cx)
    }

    pub(crate) fn sink_send(&mut self, message: Message) -> Result<()> {
        self.queue_message(message)
    }

    pub(crate) fn poll_sink_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_flush_with_deadline(cx)
    }

    pub(crate) fn poll_sink_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        {
            let mut g = self.shared.lock();
            if !g.close_sent {
                let role = self.shared.role;
                let payload = crate::proto::CloseCode::NORMAL.0.to_be_bytes();
                g.push_frame(
                    role,
                    OpCode::Close,
                    true,
                    false,
                    PayloadRef::Slice(&payload),
                );
            }
        }
        self.poll_flush_with_deadline(cx)
    }
}
