//! The sans-IO protocol core: everything RFC 6455 says about bytes, and nothing about
//! sockets, async runtimes or clocks.
//!
//! The async [`Conn`](crate::Conn) driver feeds received bytes to a [`Decoder`] and
//! asks [`encoder`] for the bytes to send; the handshake is parsed and built by
//! [`handshake`]. Because the drivers own no protocol logic, they cannot disagree
//! about the protocol.

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use decoder::{Decoder, DecoderConfig, Incoming};
pub use error::ProtocolError;
pub use frame::{FrameHeader, OpCode};

/// Which end of the connection we are: it decides who masks (RFC 6455 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: receives masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: sends masked frames, receives unmasked ones.
    Client,
}

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

impl MessageKind {
    /// The opcode that starts a message of this kind.
    pub fn opcode(self) -> OpCode {
        match self {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        }
    }
}
