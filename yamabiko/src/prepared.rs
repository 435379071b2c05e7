//! Messages framed once and sent to many connections (gorilla's `PreparedMessage`).

use crate::message::Message;
use crate::proto::encoder::encode_frame;
use crate::proto::MessageKind;
use bytes::{Bytes, BytesMut};

/// A message whose frame is encoded once, for broadcasting the same message to many
/// connections: each server connection then only queues a reference to the encoded
/// frame (large frames are not even copied). Client connections, which must mask every
/// frame with a fresh key, encode it themselves.
///
/// ```
/// let prepared = yamabiko::PreparedMessage::new("hello, everyone");
/// assert_eq!(prepared.message().as_bytes(), b"hello, everyone");
/// ```
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    message: Message,
    server_frame: Bytes,
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
}
