//! Messages as the application sees them.

use crate::proto::{CloseFrame, MessageKind, OpCode};
use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// Bytes known to be valid UTF-8: the payload of a text message, shared with the read
/// buffer rather than copied into a `String`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Checks `bytes` and wraps them.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, simdutf8::basic::Utf8Error> {
        simdutf8::basic::from_utf8(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps bytes the protocol decoder has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor establishes that the bytes are valid UTF-8
        // (`try_from_bytes` and the `From` impls check or inherit it; `from_validated` is
        // only called on text the decoder's UTF-8 validator accepted), and the bytes are
        // immutable afterwards. Skipping a second validation pass matters for large text
        // messages (see benches/codec.rs, "utf8"). Tested by `utf8_bytes_roundtrip`.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the UTF-8 guarantee.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

/// Copies the text (a few bytes for the usual literal; pass a `String` to hand over a
/// large text without a copy).
impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        Utf8Bytes::from(s.as_str())
    }
}

impl From<Box<str>> for Utf8Bytes {
    fn from(s: Box<str>) -> Self {
        Utf8Bytes::from(String::from(s))
    }
}

impl From<std::borrow::Cow<'_, str>> for Utf8Bytes {
    fn from(s: std::borrow::Cow<'_, str>) -> Self {
        match s {
            std::borrow::Cow::Borrowed(s) => Utf8Bytes::from(s),
            std::borrow::Cow::Owned(s) => Utf8Bytes::from(s),
        }
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A data message: gorilla's `TextMessage` / `BinaryMessage` with their payload.
///
/// The usual forms convert into a message, so `write_message` takes them as they are:
/// text from `&str` (borrowed for any lifetime; copied), `&String`, `String`,
/// `Cow<str>` and [`Utf8Bytes`]; binary from `&[u8]`, `&[u8; N]` (both copied),
/// `Vec<u8>`, [`Bytes`] and `BytesMut`. Owned buffers are taken without a copy.
///
/// ```
/// use yamabiko::{bytes::Bytes, Message};
/// let line = String::from("hello");
/// assert_eq!(Message::from(line.as_str()), Message::text("hello")); // any &str
/// assert_eq!(Message::from(&line), Message::text("hello"));
/// assert_eq!(Message::from(b"\x00\x01"), Message::binary(vec![0, 1]));
/// assert_eq!(Message::from(&[0u8, 1][..]), Message::binary(Bytes::from_static(&[0, 1])));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Message::Binary(bytes.into())
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload as `Bytes` (cheap: no copy).
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The payload as shared `Bytes`.
    pub(crate) fn payload(&self) -> &Bytes {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::text(s)
    }
}

impl From<&String> for Message {
    fn from(s: &String) -> Self {
        Message::text(s)
    }
}

impl From<std::borrow::Cow<'_, str>> for Message {
    fn from(s: std::borrow::Cow<'_, str>) -> Self {
        Message::text(s)
    }
}

impl From<Utf8Bytes> for Message {
    fn from(t: Utf8Bytes) -> Self {
        Message::Text(t)
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Self {
        Message::binary(v)
    }
}

impl From<&[u8]> for Message {
    fn from(b: &[u8]) -> Self {
        Message::Binary(Bytes::copy_from_slice(b))
    }
}

impl<const N: usize> From<&[u8; N]> for Message {
    fn from(b: &[u8; N]) -> Self {
        Message::Binary(Bytes::copy_from_slice(b))
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

impl From<bytes::BytesMut> for Message {
    fn from(b: bytes::BytesMut) -> Self {
        Message::Binary(b.freeze())
    }
}

/// A control message for [`write_control`](crate::Conn::write_control): close, ping or
/// pong, with at most 125 bytes of payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// A close frame. `None` sends a close frame without a status code.
    Close(Option<CloseFrame>),
    /// A ping with application data.
    Ping(Bytes),
    /// A pong with application data.
    Pong(Bytes),
}

impl Control {
    /// A close frame with a code and reason.
    pub fn close(code: impl Into<crate::CloseCode>, reason: impl Into<String>) -> Self {
        Control::Close(Some(CloseFrame::new(code, reason)))
    }

    /// A ping.
    pub fn ping(data: impl Into<Bytes>) -> Self {
        Control::Ping(data.into())
    }

    /// A pong.
    pub fn pong(data: impl Into<Bytes>) -> Self {
        Control::Pong(data.into())
    }

    /// The opcode and payload of this control frame (§5.5): at most 125 bytes, a close
    /// code that may be sent and a reason of at most 123 bytes, or an
    /// [`Error::InvalidInput`](crate::Error::InvalidInput). Shared by every driver's
    /// `write_control`.
    pub(crate) fn frame(&self) -> crate::Result<(OpCode, Bytes)> {
        let (opcode, payload) = match self {
            Control::Ping(d) => (OpCode::Ping, d.clone()),
            Control::Pong(d) => (OpCode::Pong, d.clone()),
            Control::Close(frame) => {
                let mut payload = Vec::new();
                if let Some(f) = frame {
                    f.encode(&mut payload)?;
                }
                (OpCode::Close, Bytes::from(payload))
            }
        };
        if payload.len() > 125 {
            return Err(crate::Error::InvalidInput(format!(
                "control frame payload of {} bytes exceeds 125",
                payload.len()
            )));
        }
        Ok((opcode, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bytes_roundtrip() {
        let t = Utf8Bytes::try_from_bytes(Bytes::from_static("héllo wörld".as_bytes())).unwrap();
        assert_eq!(t.as_str(), "héllo wörld");
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(b"\xff")).is_err());
        let m = Message::text(String::from("abc"));
        assert_eq!(m.kind(), MessageKind::Text);
        assert_eq!(m.into_bytes(), Bytes::from_static(b"abc"));
    }
}
