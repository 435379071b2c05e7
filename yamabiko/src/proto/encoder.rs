//! Outgoing frames: header plus (masked) payload (RFC 6455 §5.2, §5.3).

use super::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use super::mask::extend_masked;
use bytes::{BufMut, BytesMut};

/// Builds a frame header. `mask` is `Some` for client frames.
pub fn header(
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    mask: Option<[u8; 4]>,
    len: usize,
) -> FrameHeader {
    FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
        len: len as u64,
    }
}

/// Appends the header of a frame to `out`.
pub fn encode_header(out: &mut BytesMut, h: &FrameHeader) {
    let mut bytes = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut bytes);
    out.put_slice(&bytes[..n]);
}

/// Appends a whole frame — header, then the payload masked with `mask` if given — to
/// `out`, copying the payload once.
pub fn encode_frame(
    out: &mut BytesMut,
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let h = header(opcode, fin, rsv1, mask, payload.len());
    out.reserve(MAX_HEADER_LEN + payload.len());
    encode_header(out, &h);
    match mask {
        Some(key) => extend_masked(out, payload, key),
        None => out.put_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frame_matches_rfc_example() {
        let mut out = BytesMut::new();
        encode_frame(
            &mut out,
            OpCode::Text,
            true,
            false,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            b"Hello",
        );
        assert_eq!(
            &out[..],
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn unmasked_frame_matches_rfc_example() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, OpCode::Continuation, true, false, None, b"lo");
        assert_eq!(&out[..], &[0x80, 0x02, b'l', b'o']);
    }
}
