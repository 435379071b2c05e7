//! Protocol violations by the peer, each with the close code it is answered with.

use super::close::{CloseCode, CloseFrame, MAX_REASON_LEN};
use std::fmt;

/// The peer broke RFC 6455 (or a configured limit). Every variant maps to the close code
/// the connection is failed with (§7.1.7, §7.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode the RFC reserves (0x3–0x7, 0xB–0xF). 1002.
    ReservedOpcode(u8),
    /// RSV1/2/3 set without an extension that defines them. 1002.
    ReservedBits,
    /// A client frame without a mask (§5.1). 1002.
    UnmaskedFrame,
    /// A server frame with a mask (§5.1). 1002.
    MaskedFrame,
    /// A control frame with more than 125 bytes of payload (§5.5). 1002.
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5). 1002.
    FragmentedControlFrame,
    /// A continuation frame with no message in progress (§5.4). 1002.
    UnexpectedContinuation,
    /// A new Text/Binary frame while a fragmented message is in progress (§5.4). 1002.
    ExpectedContinuation,
    /// A 64-bit payload length with its most significant bit set (§5.2). 1002.
    InvalidLength,
    /// A text message or close reason that is not valid UTF-8 (§8.1). 1007.
    InvalidUtf8,
    /// A close frame with a one-byte payload (§5.5.1). 1002.
    InvalidClosePayload,
    /// A close code that may not appear on the wire (§7.4). 1002.
    InvalidCloseCode(u16),
    /// A frame larger than the configured maximum frame size. 1009.
    FrameTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// A message larger than the configured maximum message (read limit). 1009.
    MessageTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// Compressed data that does not inflate (RFC 7692 §7.2.2). 1007.
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code this violation is answered with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The close frame a driver sends when failing the connection for this violation
    /// (§7.1.7): [`close_code`](Self::close_code) with the description as reason, cut to
    /// the 123 bytes a close reason may hold.
    pub fn close_frame(&self) -> CloseFrame {
        let mut reason = self.to_string();
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        CloseFrame::new(self.close_code(), reason)
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::ReservedBits => f.write_str("reserved bits set"),
            ProtocolError::UnmaskedFrame => f.write_str("client frame not masked"),
            ProtocolError::MaskedFrame => f.write_str("server frame masked"),
            ProtocolError::ControlFrameTooLong => {
                f.write_str("control frame longer than 125 bytes")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            ProtocolError::InvalidLength => f.write_str("invalid 64-bit payload length"),
            ProtocolError::InvalidUtf8 => {
                f.write_str("invalid UTF-8 in text message or close reason")
            }
            ProtocolError::InvalidClosePayload => f.write_str("close frame with 1-byte payload"),
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            ProtocolError::FrameTooLarge { limit } => write!(f, "frame larger than {limit} bytes"),
            ProtocolError::MessageTooLarge { limit } => {
                write!(f, "message larger than {limit} bytes")
            }
            ProtocolError::InvalidCompressedData => f.write_str("invalid compressed data"),
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant: a message in the API guidelines' style, short enough to be the
    /// close reason as it is (123 bytes), and the right close code.
    #[test]
    fn every_violation_has_a_plain_message_and_its_code() {
        let all = [
            (ProtocolError::ReservedOpcode(0x3), 1002),
            (ProtocolError::ReservedBits, 1002),
            (ProtocolError::UnmaskedFrame, 1002),
            (ProtocolError::MaskedFrame, 1002),
            (ProtocolError::ControlFrameTooLong, 1002),
            (ProtocolError::FragmentedControlFrame, 1002),
            (ProtocolError::UnexpectedContinuation, 1002),
            (ProtocolError::ExpectedContinuation, 1002),
            (ProtocolError::InvalidLength, 1002),
            (ProtocolError::InvalidUtf8, 1007),
            (ProtocolError::InvalidClosePayload, 1002),
            (ProtocolError::InvalidCloseCode(999), 1002),
            (ProtocolError::FrameTooLarge { limit: u64::MAX }, 1009),
            (ProtocolError::MessageTooLarge { limit: u64::MAX }, 1009),
            (ProtocolError::InvalidCompressedData, 1007),
        ];
        for (e, code) in all {
            let text = e.to_string();
            assert!(
                text.starts_with(|c: char| c.is_ascii_lowercase()),
                "{text:?}"
            );
            assert!(!text.ends_with(['.', '!', ':']), "{text:?}");
            assert!(text.len() <= MAX_REASON_LEN, "{text:?}");
            assert_eq!(e.close_code(), CloseCode(code), "{text:?}");
            assert_eq!(e.close_frame().reason, text);
            assert!(std::error::Error::source(&e).is_none());
        }
    }
}
