//! The one error type of the crate.

use crate::proto::close::InvalidClose;
use crate::proto::handshake::HandshakeError;
use crate::proto::{CloseCode, CloseFrame, ProtocolError};
use std::fmt;
use std::io;

/// Everything that can go wrong on a WebSocket connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    Io(io::Error),
    /// The opening handshake failed (on a server, the HTTP error response was sent).
    Handshake(HandshakeError),
    /// The peer violated the protocol or a limit; the connection was failed with
    /// [`ProtocolError::close_code`].
    Protocol(ProtocolError),
    /// The connection is closed: the peer sent this close frame (code 1005 when it had
    /// no status), or the transport ended without one (code 1006). Every later read
    /// returns it again.
    Closed(CloseFrame),
    /// A close frame was already sent; no more data can be written.
    CloseSent,
    /// A [`Hub`](crate::Hub) closed the connection because it fell behind: its unsent
    /// bytes reached a subscription's bound under
    /// [`Overflow::Close`](crate::hub::Overflow::Close). Carries the close frame that
    /// was sent. Every later read returns it again.
    TooSlow(CloseFrame),
    /// The read or write deadline has passed.
    Timeout,
    /// The caller asked for something the protocol does not allow (e.g. a control
    /// payload over 125 bytes, or a close code that may not be sent).
    InvalidInput(String),
    /// JSON encoding or decoding failed.
    #[cfg(feature = "json")]
    Json(serde_json::Error),
    /// A client's handshake got another answer than `101 Switching Protocols`; it
    /// carries the status, headers and the start of the body (gorilla's
    /// `ErrBadHandshake`).
    BadHandshake(Box<crate::client::HandshakeResponse>),
    /// The TLS handshake failed: e.g. the certificate is for another name
    /// (`NotValidForName`) or from an untrusted issuer (`UnknownIssuer`).
    Tls(rustls::Error),
    /// The URL cannot be dialled: not `ws://` or `wss://`, no host, malformed.
    Url(String),
}

/// An error that every later read of a connection returns again (a connection's reads
/// end for good after a close frame, a protocol violation, a transport failure or a
/// failing handler). Shared by the async and the blocking drivers.
#[derive(Clone, Debug)]
pub(crate) enum Sticky {
    Closed(CloseFrame),
    TooSlow(CloseFrame),
    Protocol(ProtocolError),
    Io(io::ErrorKind, String),
    Handler(String),
}

impl Sticky {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Sticky::Closed(f) => Error::Closed(f.clone()),
            Sticky::TooSlow(f) => Error::TooSlow(f.clone()),
            Sticky::Protocol(p) => Error::Protocol(p.clone()),
            Sticky::Io(kind, msg) => Error::Io(io::Error::new(*kind, msg.clone())),
            Sticky::Handler(msg) => Error::InvalidInput(msg.clone()),
        }
    }

    /// What a close frame received (and answered by the close handler) ends reads with:
    /// its code, or 1005 when it had none; a failing handler's error instead.
    pub(crate) fn after_close(frame: Option<CloseFrame>, handled: &Result<()>) -> Sticky {
        match handled {
            Ok(()) => {
                Sticky::Closed(frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NO_STATUS, "")))
            }
            Err(e) => Sticky::Handler(e.to_string()),
        }
    }
}

/// Shorthand for `Result<T, yamabiko::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The close frame, for [`Error::Closed`].
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        match self {
            Error::Closed(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn abnormal_closure() -> Error {
        Error::Closed(CloseFrame::new(CloseCode::ABNORMAL, ""))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "websocket: i/o: {e}"),
            Error::Handshake(e) => write!(f, "websocket: handshake: {e}"),
            Error::Protocol(e) => write!(f, "websocket: protocol error: {e}"),
            Error::Closed(c) => write!(f, "websocket: close {c}"),
            Error::CloseSent => f.write_str("websocket: close sent"),
            Error::TooSlow(c) => write!(f, "websocket: closed as too slow ({c})"),
            Error::Timeout => f.write_str("websocket: deadline exceeded"),
            Error::InvalidInput(e) => write!(f, "websocket: {e}"),
            #[cfg(feature = "json")]
            Error::Json(e) => write!(f, "websocket: json: {e}"),
            Error::BadHandshake(r) => write!(f, "websocket: bad handshake: {r}"),
            Error::Tls(e) => write!(f, "websocket: tls: {e}"),
            Error::Url(e) => write!(f, "websocket: bad url: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Protocol(e) => Some(e),
            #[cfg(feature = "json")]
            Error::Json(e) => Some(e),
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<InvalidClose> for Error {
    fn from(e: InvalidClose) -> Self {
        Error::InvalidInput(e.to_string())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            Error::Timeout => io::Error::new(io::ErrorKind::TimedOut, e),
            Error::InvalidInput(_) => io::Error::new(io::ErrorKind::InvalidInput, e),
            other => io::Error::other(other),
        }
    }
}

/// Whether `err` is a close error ([`Error::Closed`]) with one of `codes` — gorilla's
/// `IsCloseError`.
pub fn is_close_error(err: &Error, codes: &[CloseCode]) -> bool {
    matches!(err, Error::Closed(f) if codes.contains(&f.code))
}

/// Whether `err` is a close error whose code is *not* in `expected` — gorilla's
/// `IsUnexpectedCloseError`, typically used to log abnormal disconnects:
/// `is_unexpected_close_error(&e, &[CloseCode::GOING_AWAY, CloseCode::NORMAL])`.
pub fn is_unexpected_close_error(err: &Error, expected: &[CloseCode]) -> bool {
    matches!(err, Error::Closed(f) if !expected.contains(&f.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_error_predicates() {
        let e = Error::Closed(CloseFrame::new(1001, "bye"));
        assert!(is_close_error(&e, &[CloseCode::GOING_AWAY]));
        assert!(!is_close_error(&e, &[CloseCode::NORMAL]));
        assert!(!is_unexpected_close_error(&e, &[CloseCode::GOING_AWAY]));
        assert!(is_unexpected_close_error(&e, &[CloseCode::NORMAL]));
        assert!(!is_close_error(&Error::Timeout, &[CloseCode::NORMAL]));
        assert!(!is_unexpected_close_error(&Error::Timeout, &[]));
        assert!(is_unexpected_close_error(
            &Error::abnormal_closure(),
            &[CloseCode::NORMAL]
        ));
    }
}
