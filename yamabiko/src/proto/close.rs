//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;
use std::fmt;

/// A close status code (§7.4.1). Any `u16` can be held; [`CloseCode::is_valid_on_wire`]
/// says whether it may be sent or received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported locally when a close frame carried no code; never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported locally when the connection dropped without a close frame; never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with the message type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: unexpected condition on the server.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway got an invalid response upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: reported locally when the TLS handshake failed; never sent.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether the code may appear in a close frame: 1000–1003, 1007–1014 and the
    /// registered/private ranges 3000–4999. Everything else is a protocol error.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

/// Largest close reason: 125 bytes of control payload minus the two-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// A close frame's status code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The UTF-8 reason, at most 123 bytes.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with a code and reason.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<String>) -> Self {
        CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }
    }

    /// Parses a received close payload (§5.5.1). `Ok(None)` for an empty payload, which
    /// callers report as code 1005.
    pub fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = simdutf8::basic::from_utf8(reason)
                    .map_err(|_| ProtocolError::InvalidUtf8)?
                    .to_owned();
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// Appends the wire payload (code, then reason) to `out`. Fails with the code or
    /// reason that may not be sent.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), InvalidClose> {
        if !self.code.is_valid_on_wire() {
            return Err(InvalidClose::Code(self.code));
        }
        if self.reason.len() > MAX_REASON_LEN {
            return Err(InvalidClose::ReasonTooLong(self.reason.len()));
        }
        out.extend_from_slice(&self.code.0.to_be_bytes());
        out.extend_from_slice(self.reason.as_bytes());
        Ok(())
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.reason)
        }
    }
}

/// A close frame we were asked to send that the RFC does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidClose {
    /// The code is reserved or out of range (e.g. 1005, 1006, 999, 5000).
    Code(CloseCode),
    /// The reason is longer than 123 bytes.
    ReasonTooLong(usize),
}

impl fmt::Display for InvalidClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidClose::Code(c) => write!(f, "close code {c} may not be sent"),
            InvalidClose::ReasonTooLong(n) => {
                write!(f, "close reason of {n} bytes exceeds {MAX_REASON_LEN}")
            }
        }
    }
}

impl std::error::Error for InvalidClose {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_ranges() {
        let valid: Vec<u16> = (0..6000)
            .filter(|&c| CloseCode(c).is_valid_on_wire())
            .collect();
        let mut expected: Vec<u16> = (1000..=1003).chain(1007..=1014).collect();
        expected.extend(3000..=4999);
        assert_eq!(valid, expected);
    }

    #[test]
    fn parse_payloads() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
        assert_eq!(
            CloseFrame::parse(&[0x03]),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xE8, b'o', b'k']),
            Ok(Some(CloseFrame::new(1000, "ok")))
        );
        assert_eq!(
            CloseFrame::parse(&1005u16.to_be_bytes()),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xE8, 0xff]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn encode_checks_code_and_reason() {
        let mut out = Vec::new();
        CloseFrame::new(4000, "bye").encode(&mut out).unwrap();
        assert_eq!(out, [0x0F, 0xA0, b'b', b'y', b'e']);
        assert_eq!(
            CloseFrame::new(1006, "").encode(&mut Vec::new()),
            Err(InvalidClose::Code(CloseCode(1006)))
        );
        assert_eq!(
            CloseFrame::new(1000, "x".repeat(124)).encode(&mut Vec::new()),
            Err(InvalidClose::ReasonTooLong(124))
        );
    }
}
