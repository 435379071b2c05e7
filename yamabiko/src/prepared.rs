//! Messages framed once and sent to many connections (gorilla's `PreparedMessage`).

use crate::message::Message;
use crate::proto::deflate::{CompressError, Compressor, DeflateParams};
use crate::proto::encoder::encode_frame;
use crate::proto::{MessageKind, Role};
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Mutex};

/// A message whose frame is encoded once, for broadcasting the same message to many
/// connections: each server connection then only queues a reference to the encoded
/// frame (large frames are not even copied). Client connections, which must mask every
/// frame with a fresh key, encode it themselves.
///
/// With permessage-deflate, the compressed frame is made once per distinct setting
/// (window size, level) and shared by every connection that compresses each message
/// on its own (`server_no_context_takeover`). Connections with context takeover keep a
/// window that differs per connection, so they compress the message themselves.
///
/// ```
/// let prepared = yamabiko::PreparedMessage::new("hello, everyone");
/// assert_eq!(prepared.message().as_bytes(), b"hello, everyone");
/// ```
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    message: Message,
    server_frame: Bytes,
    compressed: Arc<Mutex<Vec<CompressedFrame>>>,
}

#[derive(Debug)]
struct CompressedFrame {
    window_bits: u8,
    level: u32,
    frame: Bytes,
}

impl PreparedMessage {
    /// Frames `message` for server-to-client delivery.
    pub fn new(message: impl Into<Message>) -> Self {
        let message = message.into();
        let mut out = BytesMut::new();
        encode_frame(
            &mut out,
            message.kind().opcode(),
            true,
            false,
            None,
            message.as_bytes(),
        );
        PreparedMessage {
            message,
            server_frame: out.freeze(),
            compressed: Arc::default(),
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.message.kind()
    }

    /// The unmasked, uncompressed frame as sent by a server.
    pub(crate) fn server_frame(&self) -> &Bytes {
        &self.server_frame
    }

    /// The frame compressed without context takeover at this window size and level,
    /// made on first use.
    pub(crate) fn compressed_server_frame(
        &self,
        window_bits: u8,
        level: u32,
    ) -> Result<Bytes, CompressError> {
        let mut cache = self.compressed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache
            .iter()
            .find(|c| c.window_bits == window_bits && c.level == level)
        {
            return Ok(hit.frame.clone());
        }
        let params = DeflateParams {
            server_no_context_takeover: true,
            server_max_window_bits: window_bits,
            ..DeflateParams::default()
        };
        let mut compressor = Compressor::new(&params, Role::Server, level);
        let mut payload = BytesMut::new();
        compressor.compress_message(self.message.as_bytes(), &mut payload)?;
        let mut frame = BytesMut::new();
        encode_frame(
            &mut frame,
            self.message.kind().opcode(),
            true,
            true,
            None,
            &payload,
        );
        let frame = frame.freeze();
        cache.push(CompressedFrame {
            window_bits,
            level,
            frame: frame.clone(),
        });
        Ok(frame)
    }
}
