//! The one error type of the crate.

use crate::proto::close::InvalidClose;
use crate::proto::handshake::HandshakeError;
use crate::proto::{CloseCode, CloseFrame, ProtocolError};
use std::fmt;
use std::io;

/// Everything that can go wrong on a WebSocket connection.
///
/// Messages follow the Rust API guidelines: lowercase, no trailing punctuation, and
/// never the text of [`source()`](std::error::Error::source) again. A variant that
/// wraps another error prints a short context and the wrapped error's message, and its
/// `source()` continues *below* that error (the wrapped error's own source), so an
/// error-chain reporter prints each message once:
///
/// ```
/// use std::error::Error as _;
/// let e = yamabiko::Error::Handshake(yamabiko::proto::handshake::HandshakeError::OriginRejected);
/// assert_eq!(e.to_string(), "handshake failed: request origin not allowed");
/// assert!(e.source().is_none());
/// ```
///
/// To tell a connection that ended apart from other failures, match [`Error::Closed`]
/// (the peer's close frame, or code 1006 when the transport just ended) and
/// [`Error::AlreadyClosed`] (this side called `close`), or use [`is_close_error`].
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
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
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
    /// This side closed the connection with `close()` (from the connection, either
    /// half or a [`ControlHandle`](crate::ControlHandle)): the transport is gone, and
    /// every later read or write of any half or handle returns this.
    AlreadyClosed,
}

/// The marker inside the `io::Error` a transport closed with `close()` reports, so
/// that the drivers can turn it into [`Error::AlreadyClosed`].
#[derive(Debug)]
pub(crate) struct LocalClose;

impl fmt::Display for LocalClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection already closed")
    }
}

impl std::error::Error for LocalClose {}

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
    LocalClose,
}

impl Sticky {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Sticky::Closed(f) => Error::Closed(f.clone()),
            Sticky::TooSlow(f) => Error::TooSlow(f.clone()),
            Sticky::Protocol(p) => Error::Protocol(p.clone()),
            Sticky::Io(kind, msg) => Error::Io(io::Error::new(*kind, msg.clone())),
            Sticky::Handler(msg) => Error::InvalidInput(msg.clone()),
            Sticky::LocalClose => Error::AlreadyClosed,
        }
    }

    /// What a transport failure ends reads with.
    pub(crate) fn from_io(e: &io::Error) -> Sticky {
        if is_local_close(e) {
            Sticky::LocalClose
        } else {
            Sticky::Io(e.kind(), e.to_string())
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

/// `reunite` was given the halves of two different connections; they are given back
/// (`.0` the read half, `.1` the write half). Async and blocking halves alike. `?`
/// turns it into an [`Error::InvalidInput`] (dropping the halves).
pub struct ReuniteError<R, W>(pub R, pub W);

impl<R, W> fmt::Debug for ReuniteError<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl<R, W> fmt::Display for ReuniteError<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite the halves of two different connections")
    }
}

impl<R, W> std::error::Error for ReuniteError<R, W> {}

impl<R, W> From<ReuniteError<R, W>> for Error {
    fn from(e: ReuniteError<R, W>) -> Self {
        Error::InvalidInput(e.to_string())
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

    /// A transport error: [`Error::AlreadyClosed`] when the transport was closed with
    /// `close()`, [`Error::Io`] otherwise.
    pub(crate) fn from_io(e: io::Error) -> Error {
        if is_local_close(&e) {
            Error::AlreadyClosed
        } else {
            Error::Io(e)
        }
    }
}

fn is_local_close(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LocalClose>())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Handshake(e) => write!(f, "handshake failed: {e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Closed(c) => write!(f, "connection closed: {c}"),
            Error::CloseSent => f.write_str("close frame already sent"),
            Error::TooSlow(c) => write!(f, "closed as too slow: {c}"),
            Error::Timeout => f.write_str("deadline exceeded"),
            Error::InvalidInput(e) => write!(f, "invalid input: {e}"),
            #[cfg(feature = "json")]
            Error::Json(e) => write!(f, "json error: {e}"),
            Error::BadHandshake(r) => write!(f, "handshake refused: {r}"),
            Error::Tls(e) => write!(f, "tls error: {e}"),
            Error::Url(e) => write!(f, "invalid url: {e}"),
            Error::AlreadyClosed => f.write_str("connection already closed"),
        }
    }
}

impl std::error::Error for Error {
    /// Below the wrapped error, whose message `Display` already printed: the wrapped
    /// error's own source, if any.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => e.source(),
            Error::Handshake(e) => e.source(),
            Error::Protocol(e) => e.source(),
            #[cfg(feature = "json")]
            Error::Json(e) => e.source(),
            Error::Tls(e) => e.source(),
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
            Error::AlreadyClosed => io::Error::new(io::ErrorKind::NotConnected, e),
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

    /// The messages of an error and of everything below it, as an error-chain
    /// reporter prints them.
    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }

    #[derive(Debug)]
    struct Outer(io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("certificate store unreadable")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_chained_error_prints_each_message_once() {
        let root = io::Error::new(io::ErrorKind::NotFound, "no such file");
        let e = Error::Io(io::Error::other(Outer(root)));
        assert_eq!(
            chain(&e),
            ["i/o error: certificate store unreadable", "no such file"]
        );
        let e = Error::Handshake(HandshakeError::OriginRejected);
        assert_eq!(chain(&e), ["handshake failed: request origin not allowed"]);
        let e = Error::Protocol(ProtocolError::InvalidUtf8);
        assert_eq!(
            chain(&e),
            ["protocol error: invalid UTF-8 in text message or close reason"]
        );
    }

    #[test]
    fn messages_are_lowercase_without_trailing_punctuation() {
        let mut all = vec![
            Error::Io(io::Error::other("reset")),
            Error::Handshake(HandshakeError::BadKey),
            Error::Protocol(ProtocolError::ReservedBits),
            Error::Closed(CloseFrame::new(1001, "bye")),
            Error::CloseSent,
            Error::Timeout,
            Error::InvalidInput("control frame payload of 200 bytes exceeds 125".into()),
            Error::Tls(rustls::Error::HandshakeNotComplete),
            Error::Url("no host".into()),
            Error::AlreadyClosed,
        ];
        #[cfg(feature = "json")]
        all.push(Error::Json(
            serde_json::from_str::<u8>("x").expect_err("not JSON"),
        ));
        for e in &all {
            let text = e.to_string();
            let first = text.chars().next().expect("empty message");
            assert!(!first.is_uppercase(), "{text:?}");
            assert!(!text.ends_with(['.', '!', ':']), "{text:?}");
            assert!(!text.contains("websocket:"), "{text:?}");
        }
        assert_eq!(
            Error::Closed(CloseFrame::new(1001, "bye")).to_string(),
            "connection closed: 1001 (bye)"
        );
    }
}
