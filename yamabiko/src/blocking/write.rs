//! The blocking write half: frames messages (compressed when agreed) and control
//! frames into the shared sender, then writes them within the write deadline.

use super::shared::Shared;
use super::transport::Transport;
use crate::conn::IntoDeadline;
use crate::error::{Error, Result};
use crate::message::{Control, Message, Utf8Bytes};
use crate::proto::deflate::Compressor;
use crate::proto::utf8::Utf8Validator;
use crate::proto::{MessageKind, OpCode, Role};
use crate::write_compression::WriteCompression;
use bytes::{Bytes, BytesMut};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

/// The sending half of a blocking connection; see [`Conn::split`](super::Conn::split).
pub struct WriteHalf<S> {
    pub(crate) shared: Arc<Shared<S>>,
    deadline: Option<Instant>,
    write_buffer_size: usize,
    subprotocol: Option<String>,
    /// Boxed: most connections never compress.
    compression: Option<Box<WriteCompression>>,
}

impl<S> std::fmt::Debug for WriteHalf<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::WriteHalf")
            .field("role", &self.shared.role)
            .field("subprotocol", &self.subprotocol)
            .field("compression", &self.compression.is_some())
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for ControlHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::ControlHandle")
            .field("role", &self.shared.role)
            .field("closed", &self.shared.is_closed())
            .finish_non_exhaustive()
    }
}

impl<S: Transport> std::fmt::Debug for MessageWriter<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::MessageWriter")
            .field("kind", &self.kind)
            .field("buffered", &self.buf.len())
            .field("started", &self.started)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<S> WriteHalf<S> {
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        write_buffer_size: usize,
        subprotocol: Option<String>,
    ) -> Self {
        WriteHalf {
            shared,
            deadline: None,
            write_buffer_size: write_buffer_size.max(128),
            subprotocol,
            compression: None,
        }
    }

    pub(crate) fn set_compressor(&mut self, compressor: Compressor, threshold: usize) {
        self.compression = Some(Box::new(WriteCompression::new(compressor, threshold)));
    }

    /// Sets the write deadline: once it passes, writes fail with [`Error::Timeout`] until
    /// it is moved or cleared (`None`). It becomes the socket's write timeout; a frame
    /// that timed out half-written stays queued and goes out first on the next write.
    /// Takes a `std` or a tokio instant ([`IntoDeadline`]).
    pub fn set_write_deadline(&mut self, deadline: impl IntoDeadline) {
        self.deadline = deadline.into_deadline();
    }

    /// Closes the connection at once, without a close handshake (gorilla's `Close`),
    /// whatever other halves and handles share it: a read or a write blocked in
    /// another thread returns now, and every later call of this connection — this
    /// half, the read half, every [`ControlHandle`] — fails with
    /// [`Error::AlreadyClosed`]. (Over a [`Transport`] without a
    /// [`shutdown_handle`](Transport::shutdown_handle), a blocked call is not cut
    /// short.) For the close handshake, send a close frame first.
    pub fn close(&self) {
        self.shared.close_now();
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    fn handle(&self) -> ControlHandle<S> {
        ControlHandle {
            shared: self.shared.clone(),
        }
    }

    /// Turns compression of outgoing messages on or off (when negotiated).
    pub fn enable_write_compression(&mut self, enable: bool) {
        if let Some(c) = &mut self.compression {
            c.set_enabled(enable);
        }
    }

    /// Sets the deflate level (0–9) for the next messages.
    pub fn set_compression_level(&mut self, level: u32) {
        if let Some(c) = &mut self.compression {
            c.set_level(level);
        }
    }

    /// Whether permessage-deflate was negotiated on this connection.
    pub fn compression_negotiated(&self) -> bool {
        self.compression.is_some()
    }

    fn compressor_for(&mut self, len: usize) -> Option<&mut Compressor> {
        self.compression.as_mut()?.for_message(len)
    }

    /// Queues one frame; fails after a close frame was sent.
    fn queue_frame(&self, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Result<()> {
        let mut g = self.shared.lock();
        g.check_writable()?;
        g.push_frame(self.shared.role, opcode, fin, rsv1, payload);
        Ok(())
    }

    /// Queues a whole message as one frame, compressed when that applies.
    fn queue_whole(&mut self, message: &Message) -> Result<()> {
        let opcode = message.kind().opcode();
        let payload = message.as_bytes();
        if let Some(compressor) = self.compressor_for(payload.len()) {
            let mut out = BytesMut::with_capacity(payload.len() / 2 + 64);
            compressor
                .compress_message(payload, &mut out)
                .map_err(|e| Error::Io(io::Error::other(e)))?;
            return self.queue_frame(opcode, true, true, &out);
        }
        self.queue_frame(opcode, true, false, payload)
    }
}

impl<S: Transport> WriteHalf<S> {
    /// Sends a whole message as one frame; returns when the transport took it.
    pub fn write_message(&mut self, message: impl Into<Message>) -> Result<()> {
        if matches!(self.deadline, Some(at) if Instant::now() >= at) {
            return Err(Error::Timeout);
        }
        self.queue_whole(&message.into())?;
        self.flush()
    }

    /// Sends a text message: a `&str`, a `String` or [`Utf8Bytes`].
    pub fn write_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<()> {
        self.write_message(Message::Text(text.into()))
    }

    /// Sends a binary message.
    pub fn write_binary(&mut self, bytes: impl Into<Bytes>) -> Result<()> {
        self.write_message(Message::binary(bytes))
    }

    /// Sends `value` as a JSON text message (gorilla's `WriteJSON`).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn write_json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let text = serde_json::to_string(value).map_err(Error::Json)?;
        self.write_message(Message::text(text))
    }

    /// A handle for sending control frames (and closing) from other threads.
    pub fn control_handle(&self) -> ControlHandle<S> {
        self.shared.prepare_close();
        self.handle()
    }

    /// Sends a [`PreparedMessage`](crate::PreparedMessage): a server connection writes
    /// the frame encoded once (and, without context takeover, compressed once).
    pub fn write_prepared(&mut self, message: &crate::PreparedMessage) -> Result<()> {
        let server = self.shared.role == Role::Server;
        let frame = match self.compressor_for(message.message().len()) {
            None if server => message.server_frame().clone(),
            Some(c) if server && c.no_context_takeover() => message
                .compressed_server_frame(c.window_bits(), c.level())
                .map_err(|e| Error::Io(io::Error::other(e)))?,
            _ => return self.write_message(message.message().clone()),
        };
        {
            let mut g = self.shared.lock();
            g.check_writable()?;
            g.push_encoded(&frame);
        }
        self.flush()
    }

    /// Writes whatever is queued (a frame left half-written by a timeout).
    pub fn flush(&mut self) -> Result<()> {
        self.shared.lock().flush(self.deadline)
    }

    /// Sends a control frame; see [`ControlHandle::write_control`].
    pub fn write_control(&self, control: Control, deadline: impl IntoDeadline) -> Result<()> {
        self.handle().write_control(control, deadline)
    }

    /// Starts a message written piece by piece (gorilla's `NextWriter`): bytes written
    /// go out as fragments whenever the write buffer fills, and
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
            finished: false,
            invalid: false,
            utf8: (kind == MessageKind::Text).then(Utf8Validator::new),
            compress,
        }
    }
}

/// A cloneable, thread-safe handle that sends control frames (close, ping, pong) while
/// other threads read and write — gorilla's `WriteControl`.
pub struct ControlHandle<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for ControlHandle<S> {
    fn clone(&self) -> Self {
        ControlHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S> ControlHandle<S> {
    /// Closes the connection at once, as [`WriteHalf::close`]: a read or a write
    /// blocked in another thread returns with [`Error::AlreadyClosed`].
    pub fn close(&self) {
        self.shared.close_now();
    }

    /// Whether the connection was closed with `close` (by any half or handle).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl<S: Transport> ControlHandle<S> {
    /// Sends a control frame, between the fragments of a message being written if need
    /// be, and returns when the transport took it or `deadline` passed. Payloads are
    /// limited to 125 bytes (a close reason to 123); after a close frame nothing more
    /// can be sent ([`Error::CloseSent`]).
    pub fn write_control(&self, control: Control, deadline: impl IntoDeadline) -> Result<()> {
        let deadline = deadline.into_deadline();
        let (opcode, payload) = control.frame()?;
        if matches!(deadline, Some(at) if Instant::now() >= at) {
            return Err(Error::Timeout);
        }
        let mut g = self.shared.lock();
        g.check_writable()?;
        g.push_frame(self.shared.role, opcode, true, false, &payload);
        g.flush(deadline)
    }
}

/// Writes one message piece by piece (gorilla's `NextWriter`). Implements [`Write`];
/// [`finish`](Self::finish) sends the final fragment.
///
/// Text is checked incrementally to be UTF-8, and invalid UTF-8 never reaches the
/// wire: a fragment goes out only up to the last whole character, and the write that
/// supplies invalid bytes — or `finish`, for a message that ends inside a character —
/// fails ([`io::ErrorKind::InvalidData`]; `finish`: [`Error::InvalidInput`]). The
/// message then ends there: if fragments went out already, a final fragment with the
/// valid bytes written before is sent, otherwise nothing is. The connection stays
/// usable.
///
/// Dropped without `finish`: if no fragment was sent yet the message is discarded,
/// otherwise the buffered bytes (whole characters only) go out as the final fragment
/// so that the stream stays valid.
pub struct MessageWriter<'a, S: Transport> {
    half: &'a mut WriteHalf<S>,
    kind: MessageKind,
    buf: BytesMut,
    capacity: usize,
    started: bool,
    finished: bool,
    /// The text was not valid UTF-8: the message was ended early, `finish` fails.
    invalid: bool,
    utf8: Option<Utf8Validator>,
    compress: bool,
}

impl<S: Transport> MessageWriter<'_, S> {
    /// Queues the buffered bytes as a fragment and writes it out. A text fragment that
    /// is not the last keeps an unfinished character back for the next one.
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
        let mut rsv1 = false;
        if let Some(c) = self.half.compression.as_mut().filter(|_| self.compress) {
            let mut out = BytesMut::with_capacity(payload.len() / 2 + 64);
            c.compressor()
                .compress_chunk(&payload, fin, &mut out)
                .map_err(|e| Error::Io(io::Error::other(e)))?;
            payload = out.freeze();
            rsv1 = !self.started;
        }
        self.half.queue_frame(opcode, fin, rsv1, &payload)?;
        self.started = true;
        self.half.flush()
    }

    /// Ends the message early (invalid text, or the writer dropped): drops the
    /// unfinished character at the end of the buffer (`held` bytes) and, if fragments
    /// went out, sends the rest as the final fragment; otherwise nothing is sent.
    fn end_early(&mut self, held: usize) -> Result<()> {
        self.finished = true;
        self.buf.truncate(self.buf.len() - held.min(self.buf.len()));
        self.utf8 = None; // what is left is whole characters
        if self.started {
            return self.emit(true);
        }
        Ok(())
    }

    fn invalid_text() -> Error {
        Error::InvalidInput("text message is not valid UTF-8".into())
    }

    /// Sends the final fragment; returns when the transport took the message. For text
    /// that ends inside a character (or after a write that was refused as invalid
    /// UTF-8), the message is ended with the valid part and this returns
    /// [`Error::InvalidInput`].
    pub fn finish(mut self) -> Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<()> {
        if self.invalid {
            return Err(Self::invalid_text());
        }
        if self.finished {
            return Ok(());
        }
        let unfinished = self.utf8.as_ref().map_or(0, Utf8Validator::pending_len);
        if unfinished > 0 {
            self.invalid = true;
            self.end_early(unfinished)?;
            return Err(Self::invalid_text());
        }
        self.finished = true;
        self.emit(true)
    }
}

impl<S: Transport> Write for MessageWriter<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.invalid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "text message is not valid UTF-8",
            ));
        }
        if self.finished {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "message already finished",
            ));
        }
        if self.buf.len() >= self.capacity {
            self.emit(false)?;
        }
        let n = (self.capacity - self.buf.len()).min(data.len());
        if let Some(v) = &mut self.utf8 {
            let held = v.pending_len();
            if v.feed(&data[..n]).is_err() {
                self.invalid = true;
                // The error to report is the invalid text; a failure to send the
                // message's end shows on the next write of the connection.
                let _ = self.end_early(held);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "text message is not valid UTF-8",
                ));
            }
        }
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    /// Nothing to do: a fragment goes out whenever the buffer fills. Use
    /// [`finish`](MessageWriter::finish) to end the message.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Transport> Drop for MessageWriter<'_, S> {
    fn drop(&mut self) {
        if self.started && !self.finished {
            let unfinished = self.utf8.as_ref().map_or(0, Utf8Validator::pending_len);
            let _ = self.end_early(unfinished);
        }
    }
}
