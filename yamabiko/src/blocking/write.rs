//! The blocking write half: frames messages (compressed when agreed) and control
//! frames into the shared sender, then writes them within the write deadline.

use super::shared::Shared;
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::message::{Control, Message};
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
    pub fn set_write_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The subprotocol agreed in the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// A handle for sending control frames from other threads.
    pub fn control_handle(&self) -> ControlHandle<S> {
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
        if g.close_sent {
            return Err(Error::CloseSent);
        }
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

    /// Sends a text message.
    pub fn write_text(&mut self, text: impl Into<String>) -> Result<()> {
        self.write_message(Message::text(text.into()))
    }

    /// Sends a binary message.
    pub fn write_binary(&mut self, bytes: impl Into<Bytes>) -> Result<()> {
        self.write_message(Message::binary(bytes))
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
            if g.close_sent {
                return Err(Error::CloseSent);
            }
            g.push_encoded(&frame);
        }
        self.flush()
    }

    /// Writes whatever is queued (a frame left half-written by a timeout).
    pub fn flush(&mut self) -> Result<()> {
        self.shared.lock().flush(self.deadline)
    }

    /// Sends a control frame; see [`ControlHandle::write_control`].
    pub fn write_control(&self, control: Control, deadline: Option<Instant>) -> Result<()> {
        self.control_handle().write_control(control, deadline)
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

impl<S: Transport> ControlHandle<S> {
    /// Sends a control frame, between the fragments of a message being written if need
    /// be, and returns when the transport took it or `deadline` passed. Payloads are
    /// limited to 125 bytes (a close reason to 123); after a close frame nothing more
    /// can be sent ([`Error::CloseSent`]).
    pub fn write_control(&self, control: Control, deadline: Option<Instant>) -> Result<()> {
        let (opcode, payload) = control.frame()?;
        if matches!(deadline, Some(at) if Instant::now() >= at) {
            return Err(Error::Timeout);
        }
        let mut g = self.shared.lock();
        if g.close_sent {
            return Err(Error::CloseSent);
        }
        g.push_frame(self.shared.role, opcode, true, false, &payload);
        g.flush(deadline)
    }
}

/// Writes one message piece by piece (gorilla's `NextWriter`). Implements [`Write`];
/// [`finish`](Self::finish) sends the final fragment.
///
/// Text is checked incrementally to be UTF-8. Dropped without `finish`: if no fragment
/// was sent yet the message is discarded, otherwise the buffered bytes go out as the
/// final fragment so that the stream stays valid.
pub struct MessageWriter<'a, S: Transport> {
    half: &'a mut WriteHalf<S>,
    kind: MessageKind,
    buf: BytesMut,
    capacity: usize,
    started: bool,
    finished: bool,
    utf8: Option<Utf8Validator>,
    compress: bool,
}

impl<S: Transport> MessageWriter<'_, S> {
    /// Queues the buffered bytes as a fragment and writes it out.
    fn emit(&mut self, fin: bool) -> Result<()> {
        let opcode = if self.started {
            OpCode::Continuation
        } else {
            self.kind.opcode()
        };
        let mut payload = self.buf.split().freeze();
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

    /// Sends the final fragment; returns when the transport took the message.
    pub fn finish(mut self) -> Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if let Some(v) = &mut self.utf8 {
            if v.finish().is_err() {
                return Err(Error::InvalidInput(
                    "text message is not valid UTF-8".into(),
                ));
            }
        }
        self.emit(true)
    }
}

impl<S: Transport> Write for MessageWriter<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "websocket: message already finished",
            ));
        }
        if self.buf.len() >= self.capacity {
            self.emit(false)?;
        }
        let n = (self.capacity - self.buf.len()).min(data.len());
        if let Some(v) = &mut self.utf8 {
            if v.feed(&data[..n]).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "websocket: text message is not valid UTF-8",
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
            self.finished = true;
            let _ = self.emit(true);
        }
    }
}
