//! Incoming frames → messages: the read half of the protocol state machine.
//!
//! The decoder takes bytes from the connection's read buffer and yields [`Incoming`]
//! items. Payloads are unmasked in place and handed out as `Bytes` slices of the read
//! buffer — no copy. A data frame's payload is yielded as soon as any of it has arrived,
//! so a message of any size streams through constant memory; control frames (≤125
//! bytes) are yielded whole and may arrive between the fragments of a message (§5.4).
//!
//! Everything the RFC requires of a receiver is checked here: masking direction (§5.1),
//! reserved bits and opcodes (§5.2), control frame rules (§5.5), fragmentation order
//! (§5.4), UTF-8 in text (§8.1), close payloads (§5.5.1), and the configured size limits.

use super::close::CloseFrame;
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{MessageKind, Role};
use bytes::{Bytes, BytesMut};

/// Limits and role of a decoder.
#[derive(Clone, Copy, Debug)]
pub struct DecoderConfig {
    /// Our role: a server requires masked frames, a client unmasked ones.
    pub role: Role,
    /// Largest frame payload accepted; larger → close 1009.
    pub max_frame_size: u64,
    /// Largest message accepted; larger → close 1009.
    pub max_message_size: u64,
}

/// One decoded item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A piece of a data message, in order. `last` marks the end of the message.
    /// For text, the pieces seen so far are a valid UTF-8 prefix, and at `last` the
    /// whole message is valid UTF-8 (a piece may end inside a code point).
    Data {
        /// Text or binary (the same for every piece of a message).
        kind: MessageKind,
        /// Unmasked payload bytes.
        payload: Bytes,
        /// Whether this piece ends the message.
        last: bool,
    },
    /// A ping with its application data.
    Ping(Bytes),
    /// A pong with its application data.
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    header: FrameHeader,
    remaining: u64,
    offset: usize,
}

#[derive(Debug, Clone, Copy)]
struct MessageInProgress {
    kind: MessageKind,
    size: u64,
}

/// The receiving protocol state machine. Feed it with [`Decoder::decode`].
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    utf8: Utf8Validator,
    closed: bool,
}

impl Decoder {
    /// A decoder at the start of a connection.
    pub fn new(config: DecoderConfig) -> Self {
        Decoder {
            config,
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            closed: false,
        }
    }

    /// Changes the message size limit (gorilla's `SetReadLimit`).
    pub fn set_max_message_size(&mut self, limit: u64) {
        self.config.max_message_size = limit;
    }

    /// The current limits.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Whether a data message has started and not yet ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Whether a close frame has been decoded (nothing after it is read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Decodes the next item from the front of `buf`, consuming the bytes it used.
    /// `Ok(None)`: more bytes are needed. After an error the connection must be failed
    /// with the error's close code; the decoder is not to be used again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        if self.closed {
            return Ok(None);
        }
        loop {
            if let Some(frame) = self.frame {
                return self.data_payload(frame, buf);
            }
            let Some((header, header_len)) = FrameHeader::parse(buf)? else {
                return Ok(None);
            };
            self.check_header(&header)?;
            if header.opcode.is_control() {
                // Control payloads are ≤125 bytes (checked): wait for the whole frame.
                let total = header_len + header.len as usize;
                if buf.len() < total {
                    return Ok(None);
                }
                let _ = buf.split_to(header_len);
                let mut payload = buf.split_to(header.len as usize);
                if let Some(key) = header.mask {
                    apply_mask(&mut payload, key, 0);
                }
                return self.control(header.opcode, payload.freeze()).map(Some);
            }
            let _ = buf.split_to(header_len);
            self.start_data_frame(header)?;
            let frame = FrameInProgress {
                header,
                remaining: header.len,
                offset: 0,
            };
            if header.len == 0 {
                if header.fin {
                    return self.finish_message(Bytes::new()).map(Some);
                }
                continue; // an empty fragment: nothing to yield
            }
            self.frame = Some(frame);
        }
    }

    /// §5.1, §5.2, §5.5 and the size limits, checked before any payload is read.
    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        if h.rsv1 || h.rsv2 || h.rsv3 {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.config.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.len > 125 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
            return Ok(());
        }
        match (h.opcode, self.message) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation)
            }
            _ => {}
        }
        if h.len > self.config.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                limit: self.config.max_frame_size,
            });
        }
        let so_far = self.message.map_or(0, |m| m.size);
        if so_far.saturating_add(h.len) > self.config.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                limit: self.config.max_message_size,
            });
        }
        Ok(())
    }

    fn start_data_frame(&mut self, h: FrameHeader) -> Result<(), ProtocolError> {
        let kind = match h.opcode {
            OpCode::Text => MessageKind::Text,
            OpCode::Binary => MessageKind::Binary,
            _ => {
                if let Some(m) = self.message.as_mut() {
                    m.size += h.len;
                }
                return Ok(());
            }
        };
        self.utf8.reset();
        self.message = Some(MessageInProgress { kind, size: h.len });
        Ok(())
    }

    fn data_payload(
        &mut self,
        mut frame: FrameInProgress,
        buf: &mut BytesMut,
    ) -> Result<Option<Incoming>, ProtocolError> {
        let available = (buf.len() as u64).min(frame.remaining) as usize;
        if available == 0 {
            return Ok(None);
        }
        let mut chunk = buf.split_to(available);
        if let Some(key) = frame.header.mask {
            apply_mask(&mut chunk, key, frame.offset);
        }
        frame.remaining -= available as u64;
        frame.offset += available;
        let kind = self.message.map_or(MessageKind::Binary, |m| m.kind);
        if kind == MessageKind::Text {
            self.utf8
                .feed(&chunk)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if frame.remaining > 0 {
            self.frame = Some(frame);
            return Ok(Some(Incoming::Data {
                kind,
                payload: chunk.freeze(),
                last: false,
            }));
        }
        self.frame = None;
        if frame.header.fin {
            return self.finish_message(chunk.freeze()).map(Some);
        }
        Ok(Some(Incoming::Data {
            kind,
            payload: chunk.freeze(),
            last: false,
        }))
    }

    fn finish_message(&mut self, payload: Bytes) -> Result<Incoming, ProtocolError> {
        let kind = self.message.take().map_or(MessageKind::Binary, |m| m.kind);
        if kind == MessageKind::Text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(Incoming::Data {
            kind,
            payload,
            last: true,
        })
    }

    fn control(&mut self, opcode: OpCode, payload: Bytes) -> Result<Incoming, ProtocolError> {
        Ok(match opcode {
            OpCode::Ping => Incoming::Ping(payload),
            OpCode::Pong => Incoming::Pong(payload),
            _ => {
                let frame = CloseFrame::parse(&payload)?;
                self.closed = true;
                Incoming::Close(frame)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::encoder::encode_frame;
    use crate::proto::CloseCode;

    fn server() -> Decoder {
        Decoder::new(DecoderConfig {
            role: Role::Server,
            max_frame_size: 1 << 20,
            max_message_size: 1 << 21,
        })
    }

    fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(&mut out, opcode, fin, false, Some([9, 8, 7, 6]), payload);
        out.to_vec()
    }

    /// Feeds `wire` in pieces of `step` bytes, collecting items until an error.
    fn run(d: &mut Decoder, wire: &[u8], step: usize) -> Result<Vec<Incoming>, ProtocolError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(item) = d.decode(&mut buf)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Joins data pieces into whole messages.
    fn messages(items: &[Incoming]) -> Vec<(MessageKind, Vec<u8>)> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for item in items {
            if let Incoming::Data {
                kind,
                payload,
                last,
            } = item
            {
                cur.extend_from_slice(payload);
                if *last {
                    out.push((*kind, std::mem::take(&mut cur)));
                }
            }
        }
        out
    }

    #[test]
    fn fragmented_text_with_interleaved_ping_in_any_chunking() {
        let mut wire = masked(OpCode::Text, false, "Hel".as_bytes());
        wire.extend(masked(OpCode::Ping, true, b"p"));
        wire.extend(masked(OpCode::Continuation, false, "lo, µ".as_bytes()));
        wire.extend(masked(OpCode::Continuation, true, "ö!".as_bytes()));
        for step in 1..wire.len() {
            let items = run(&mut server(), &wire, step).unwrap();
            assert_eq!(
                messages(&items),
                vec![(MessageKind::Text, "Hello, µö!".as_bytes().to_vec())],
                "step {step}"
            );
            assert!(items.contains(&Incoming::Ping(Bytes::from_static(b"p"))));
        }
    }

    #[test]
    fn empty_messages_and_fragments() {
        let mut wire = masked(OpCode::Binary, true, b"");
        wire.extend(masked(OpCode::Text, false, b""));
        wire.extend(masked(OpCode::Continuation, false, b""));
        wire.extend(masked(OpCode::Continuation, true, b""));
        let items = run(&mut server(), &wire, 1).unwrap();
        assert_eq!(
            messages(&items),
            vec![(MessageKind::Binary, vec![]), (MessageKind::Text, vec![])]
        );
    }

    fn first_error(wire: &[u8]) -> ProtocolError {
        run(&mut server(), wire, wire.len()).unwrap_err()
    }

    #[test]
    fn protocol_violations() {
        let mut unmasked = BytesMut::new();
        encode_frame(&mut unmasked, OpCode::Text, true, false, None, b"x");
        assert_eq!(first_error(&unmasked), ProtocolError::UnmaskedFrame);

        let mut client = Decoder::new(DecoderConfig {
            role: Role::Client,
            ..*server().config()
        });
        assert_eq!(
            run(&mut client, &masked(OpCode::Text, true, b"x"), 100).unwrap_err(),
            ProtocolError::MaskedFrame
        );

        let mut rsv = masked(OpCode::Text, true, b"x");
        rsv[0] |= 0x20;
        assert_eq!(first_error(&rsv), ProtocolError::ReservedBits);

        let mut reserved = masked(OpCode::Text, true, b"x");
        reserved[0] = 0x83;
        assert_eq!(first_error(&reserved), ProtocolError::ReservedOpcode(3));

        assert_eq!(
            first_error(&masked(OpCode::Ping, true, &[0; 126])),
            ProtocolError::ControlFrameTooLong
        );
        assert_eq!(
            first_error(&masked(OpCode::Ping, false, b"x")),
            ProtocolError::FragmentedControlFrame
        );
        assert_eq!(
            first_error(&masked(OpCode::Continuation, true, b"x")),
            ProtocolError::UnexpectedContinuation
        );
        let mut twice = masked(OpCode::Text, false, b"a");
        twice.extend(masked(OpCode::Binary, true, b"b"));
        assert_eq!(first_error(&twice), ProtocolError::ExpectedContinuation);

        assert_eq!(
            first_error(&masked(OpCode::Text, true, b"\xff")),
            ProtocolError::InvalidUtf8
        );
        assert_eq!(
            first_error(&masked(OpCode::Close, true, &[0x03, 0xE8, 0xC0])),
            ProtocolError::InvalidUtf8
        );
        assert_eq!(
            first_error(&masked(OpCode::Close, true, &999u16.to_be_bytes())),
            ProtocolError::InvalidCloseCode(999)
        );
        assert_eq!(
            first_error(&masked(OpCode::Close, true, &[1])),
            ProtocolError::InvalidClosePayload
        );
    }

    #[test]
    fn limits_fail_on_the_header_without_buffering_the_payload() {
        let mut d = Decoder::new(DecoderConfig {
            role: Role::Server,
            max_frame_size: 100,
            max_message_size: 150,
        });
        // Only the header of a huge frame is needed to refuse it.
        let header = [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut buf = BytesMut::from(&header[..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge { limit: 100 })
        );
        let mut d = Decoder::new(*d.config());
        let mut wire = masked(OpCode::Binary, false, &[0; 100]);
        wire.extend(masked(OpCode::Continuation, true, &[0; 51]));
        assert_eq!(
            run(&mut d, &wire, 7).unwrap_err(),
            ProtocolError::MessageTooLarge { limit: 150 }
        );
        assert_eq!(
            ProtocolError::MessageTooLarge { limit: 1 }.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
    }

    #[test]
    fn close_frames_and_nothing_after() {
        let mut wire = masked(OpCode::Close, true, &[0x03, 0xE8, b'b', b'y', b'e']);
        wire.extend(masked(OpCode::Text, true, b"ignored"));
        let mut d = server();
        let items = run(&mut d, &wire, 3).unwrap();
        assert_eq!(
            items,
            vec![Incoming::Close(Some(CloseFrame::new(1000, "bye")))]
        );
        assert!(d.is_closed());
        let items = run(&mut server(), &masked(OpCode::Close, true, b""), 1).unwrap();
        assert_eq!(items, vec![Incoming::Close(None)]);
    }

    #[test]
    fn large_frame_streams_in_pieces() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let wire = masked(OpCode::Binary, true, &payload);
        let items = run(&mut server(), &wire, 4096).unwrap();
        assert!(items.len() > 20);
        assert_eq!(messages(&items), vec![(MessageKind::Binary, payload)]);
    }
}
