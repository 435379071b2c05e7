//! The sans-IO protocol core: everything RFC 6455 and RFC 7692 say about bytes, and
//! nothing about sockets, async runtimes or clocks — a public API on purpose, in the
//! manner of python-websockets: bring your own I/O.
//!
//! yamabiko's own connections are drivers of this core: the async [`Conn`](crate::Conn)
//! and the blocking [`blocking::Conn`](crate::blocking::Conn) feed received bytes to a
//! [`Decoder`] and ask [`encoder`] for the bytes to send, and the [`Upgrader`](crate::Upgrader)
//! and [`Dialer`](crate::Dialer) parse and build the handshake with [`handshake`]. Because
//! the drivers own no protocol logic, they cannot disagree about the protocol — and a
//! program with an event loop of its own (mio, io_uring, a game's frame loop, a test
//! harness) can be a driver too.
//!
//! | module | what it does |
//! |---|---|
//! | [`handshake`] | the HTTP/1.1 opening handshake, both sides: parse and check a request, build the `101` or the HTTP error; build a request, parse and check the response |
//! | [`decoder`] | received bytes → [`Incoming`] items: pieces of data messages (unmasked, UTF-8-checked, within the size limits), pings, pongs, close — or a [`ProtocolError`] that knows its close code |
//! | [`encoder`] | frames to send, masked for a client |
//! | [`deflate`] | permessage-deflate: negotiation and the per-message codec (bounded inflation) |
//! | [`close`], [`frame`], [`mask`], [`utf8`], [`error`] | the pieces: close codes and frames, frame headers, masking, incremental UTF-8, violations |
//!
//! What a driver adds is policy: when to read and write, deadlines, buffering, and
//! what to answer — gorilla's defaults are a pong carrying the ping's data, and a close
//! frame with the peer's code (then, for a server, closing the TCP connection first,
//! §7.1.1). A client masks every frame with a fresh random key (§5.3); the drivers use
//! `rand`'s CSPRNG. These items follow semantic versioning like the rest of the crate.
//!
//! `examples/sans-io` is a whole echo server on `std::net::TcpStream` and threads,
//! built from this module alone, with tests. In short, a message through the core:
//!
//! ```
//! use yamabiko::bytes::BytesMut;
//! use yamabiko::proto::{encoder, Decoder, DecoderConfig, Incoming, MessageKind, OpCode, Role};
//!
//! // A client sends a masked text frame...
//! let mut wire = BytesMut::new();
//! encoder::encode_frame(&mut wire, OpCode::Text, true, false, Some([1, 2, 3, 4]), b"hi");
//! // ...and the server's decoder turns the bytes it read into a message.
//! let mut server = Decoder::new(DecoderConfig {
//!     role: Role::Server,
//!     max_frame_size: 1 << 20,
//!     max_message_size: 1 << 20,
//! });
//! match server.decode(&mut wire)? {
//!     Some(Incoming::Data { kind, payload, last }) => {
//!         assert_eq!((kind, &payload[..], last), (MessageKind::Text, &b"hi"[..], true));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! // An unmasked client frame is a violation, answered with close 1002.
//! encoder::encode_frame(&mut wire, OpCode::Text, true, false, None, b"hi");
//! let violation = server.decode(&mut wire).unwrap_err();
//! assert_eq!(violation.close_code(), yamabiko::CloseCode::PROTOCOL_ERROR);
//! # Ok::<(), yamabiko::ProtocolError>(())
//! ```

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
pub use decoder::{Decoder, DecoderConfig, Incoming, RestingDecoder};
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
