//! The game's wire protocol: binary WebSocket messages, little-endian, the first byte
//! naming the message. `docs/game.md` describes every message byte by byte.
//!
//! * [`client`]: page → server (lobby, join, leave, input);
//! * [`server`]: server → page (welcome, snapshot, roster and tag events, lobby list,
//!   notices);
//! * `codec`: the byte reader and writer both use, and [`DecodeError`] — every
//!   malformed message is one of its variants, each with the close code the server
//!   answers it with.

pub mod client;
mod codec;
pub mod server;

pub use codec::DecodeError;

/// Protocol version, carried by the page's first message and the welcome. A page
/// speaking another version is closed with [`close::UNSUPPORTED_VERSION`].
pub const VERSION: u8 = 1;

/// Longest player name, in characters (names are also at most [`MAX_NAME_BYTES`]).
pub const MAX_NAME_CHARS: usize = 16;
/// Longest player name, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 24;
/// Longest room name, in UTF-8 bytes.
pub const MAX_ROOM_BYTES: usize = 96;
/// Largest message a page may send, in bytes (a join with the longest names).
pub const MAX_CLIENT_MESSAGE: usize = 256;
/// Length of a reconnection token.
pub const TOKEN_LEN: usize = 16;

/// A reconnection token: given in the welcome, presented again to get the seat back.
pub type Token = [u8; TOKEN_LEN];

/// WebSocket close codes the server uses.
pub mod close {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A text message: the protocol is binary (RFC 6455 §7.4.1, "cannot accept").
    pub const TEXT_NOT_ACCEPTED: u16 = 1003;
    /// A name or room name that is not UTF-8.
    pub const INVALID_TEXT: u16 = 1007;
    /// The page did not take its messages within the write deadline.
    pub const TOO_SLOW: u16 = 1008;
    /// A message too short, too long, of unknown type, or with a bad field.
    pub const BAD_MESSAGE: u16 = 4000;
    /// The first message spoke another protocol version.
    pub const UNSUPPORTED_VERSION: u16 = 4001;
    /// A message out of place: an input before joining, a second join.
    pub const OUT_OF_ORDER: u16 = 4002;
    /// Another connection presented this seat's token and took it over.
    pub const TAKEN_OVER: u16 = 4003;
    /// Far more messages than the tick rate calls for.
    pub const TOO_MANY_MESSAGES: u16 = 4004;
}
