//! Reading and writing the protocol's fields, and the error every malformed message
//! becomes.

use super::close;
use std::fmt;

/// Why a message could not be decoded. Decoding never panics: every input is either a
/// message or one of these, and [`close_code`](Self::close_code) says how the server
/// closes a page that sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A message of zero bytes.
    Empty,
    /// The first byte names no message.
    UnknownType(u8),
    /// The message ends before its fields do.
    Truncated {
        /// The message being decoded.
        message: &'static str,
    },
    /// Bytes after the last field.
    TrailingBytes {
        /// The message being decoded.
        message: &'static str,
        /// How many.
        extra: usize,
    },
    /// A text field that is not UTF-8.
    BadUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A text field longer than allowed.
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit, in characters.
        max_chars: usize,
    },
    /// A text field with a control character (line breaks included).
    ControlCharacter {
        /// The field.
        field: &'static str,
    },
    /// A numeric field out of its range (a seat past 15, unknown flag bits…).
    BadValue {
        /// The field.
        field: &'static str,
        /// What it held.
        value: u32,
    },
    /// A protocol version this server does not speak.
    UnsupportedVersion(u8),
}

impl DecodeError {
    /// The WebSocket close code for a page that sent this.
    pub fn close_code(&self) -> u16 {
        match self {
            DecodeError::BadUtf8 { .. } => close::INVALID_TEXT,
            DecodeError::UnsupportedVersion(_) => close::UNSUPPORTED_VERSION,
            _ => close::BAD_MESSAGE,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => write!(f, "empty message"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            DecodeError::Truncated { message } => write!(f, "{message} message is truncated"),
            DecodeError::TrailingBytes { message, extra } => {
                write!(f, "{message} message has {extra} bytes too many")
            }
            DecodeError::BadUtf8 { field } => write!(f, "{field} is not UTF-8"),
            DecodeError::TooLong { field, max_chars } => {
                write!(f, "{field} is longer than {max_chars} characters")
            }
            DecodeError::ControlCharacter { field } => {
                write!(f, "{field} contains a control character")
            }
            DecodeError::BadValue { field, value } => write!(f, "{field} {value} is out of range"),
            DecodeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "protocol version {v} is not supported (this server speaks {})",
                    super::VERSION
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads fields off a message, front to back.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over the fields after the type byte.
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader { buf, message }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                message: self.message,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(self.u8()? as i8)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A seat number (0–15) or 255 for "none".
    pub(crate) fn seat(&mut self, field: &'static str) -> Result<Option<u8>, DecodeError> {
        match self.u8()? {
            255 => Ok(None),
            s if usize::from(s) < crate::sim::MAX_PLAYERS => Ok(Some(s)),
            s => Err(DecodeError::BadValue {
                field,
                value: u32::from(s),
            }),
        }
    }

    /// A text field: a length byte, then that many bytes of UTF-8 without control
    /// characters, at most `max_chars` characters.
    pub(crate) fn text(
        &mut self,
        field: &'static str,
        max_chars: usize,
    ) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8 { field })?;
        if text.chars().count() > max_chars {
            return Err(DecodeError::TooLong { field, max_chars });
        }
        if text.chars().any(char::is_control) {
            return Err(DecodeError::ControlCharacter { field });
        }
        Ok(text.to_owned())
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                message: self.message,
                extra: self.buf.len(),
            })
        }
    }
}

/// Appends fields to a message.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    /// A text field; the caller guarantees it is at most 255 bytes (names are
    /// checked on the way in), longer text is cut at a character boundary.
    fn put_text(&mut self, text: &str);
    fn put_seat(&mut self, seat: Option<u8>) {
        self.put_u8(seat.unwrap_or(255));
    }
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_text(&mut self, text: &str) {
        let mut end = text.len().min(255);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.push(end as u8);
        self.extend_from_slice(&text.as_bytes()[..end]);
    }
}
