//! The frame header codec (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! ```

use super::error::ProtocolError;

/// Longest possible header: 2 + 8 (64-bit length) + 4 (mask key).
pub const MAX_HEADER_LEN: usize = 14;

/// A frame opcode the RFC defines (§5.2). Reserved opcodes are a [`ProtocolError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: first frame of a text message.
    Text,
    /// 0x2: first frame of a binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes the low four bits of the first header byte.
    pub fn from_u8(bits: u8) -> Result<OpCode, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The four-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1: "compressed" under permessage-deflate (RFC 7692 §6).
    pub rsv1: bool,
    /// RSV2: no extension here defines it.
    pub rsv2: bool,
    /// RSV3: no extension here defines it.
    pub rsv3: bool,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`. `Ok(None)` means more bytes are needed;
    /// otherwise returns the header and how many bytes it took. Never allocates.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let opcode = OpCode::from_u8(b0 & 0x0F)?;
        let masked = b1 & 0x80 != 0;
        let (len, mut pos) = match b1 & 0x7F {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                // §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            let Some(bytes) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        let header = FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            len,
        };
        Ok(Some((header, pos)))
    }

    /// Writes the header into `out` with the shortest length encoding; returns its size.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7)
            | (u8::from(self.rsv1) << 6)
            | (u8::from(self.rsv2) << 5)
            | (u8::from(self.rsv3) << 4)
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = if self.len < 126 {
            out[1] = mask_bit | self.len as u8;
            2
        } else if self.len <= u64::from(u16::MAX) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.len.to_be_bytes());
            10
        };
        if let Some(key) = self.mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(h: FrameHeader) {
        let mut out = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut out);
        assert_eq!(FrameHeader::parse(&out[..n]).unwrap(), Some((h, n)));
        for cut in 0..n {
            assert_eq!(FrameHeader::parse(&out[..cut]).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn lengths_roundtrip_in_shortest_form() {
        for (len, size) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (1 << 40, 10),
        ] {
            let h = FrameHeader {
                fin: true,
                rsv1: false,
                rsv2: false,
                rsv3: false,
                opcode: OpCode::Binary,
                mask: None,
                len,
            };
            let mut out = [0u8; MAX_HEADER_LEN];
            assert_eq!(h.encode(&mut out), size, "len {len}");
            roundtrip(h);
            roundtrip(FrameHeader {
                mask: Some([1, 2, 3, 4]),
                ..h
            });
        }
    }

    #[test]
    fn all_opcodes_and_bits_roundtrip() {
        for op in [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ] {
            for bits in 0..16u8 {
                roundtrip(FrameHeader {
                    fin: bits & 1 != 0,
                    rsv1: bits & 2 != 0,
                    rsv2: bits & 4 != 0,
                    rsv3: bits & 8 != 0,
                    opcode: op,
                    mask: None,
                    len: 3,
                });
            }
        }
    }

    #[test]
    fn rfc_examples() {
        // §5.7: a single-frame unmasked text message "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x05]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.len, n), (true, OpCode::Text, 5, 2));
        // §5.7: masked "Hello".
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d])
            .unwrap()
            .unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // §5.7: 256 bytes binary in a single unmasked frame.
        let (h, _) = FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!(h.len, 256);
    }

    #[test]
    fn reserved_opcodes_and_length_msb_are_errors() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
        let mut buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(FrameHeader::parse(&buf), Err(ProtocolError::InvalidLength));
        buf[2] = 0x7F;
        assert!(FrameHeader::parse(&buf).unwrap().is_some());
    }
}
