//! Incoming frames → messages: the read half of the protocol state machine.
//!
//! The decoder takes bytes from the connection's read buffer and yields [`Incoming`]
//! items. Payloads are unmasked in place and handed out as `Bytes` slices of the read
//! buffer — no copy. By default a data frame's payload is yielded as soon as any of it
//! has arrived, so a message of any size streams through constant memory; with
//! [`Decoder::set_whole_frames`] an uncompressed frame is yielded once it is complete,
//! as one slice (unmasked and UTF-8-checked in place as its bytes arrive, so errors
//! are still found early). Control frames (≤125 bytes) are yielded whole and may
//! arrive between the fragments of a message (§5.4).
//!
//! Everything the RFC requires of a receiver is checked here: masking direction (§5.1),
//! reserved bits and opcodes (§5.2), control frame rules (§5.5), fragmentation order
//! (§5.4), UTF-8 in text (§8.1), close payloads (§5.5.1), and the configured size limits.

use super::close::CloseFrame;
use super::deflate::Decompressor;
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{MessageKind, Role};
use bytes::{Buf, Bytes, BytesMut};

/// Most bytes one inflate step yields, so a compressed message also streams in
/// bounded pieces.
const INFLATE_CHUNK: usize = 64 * 1024;

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
    /// Payload bytes not yet yielded (some may wait in the buffer, see `scanned`).
    remaining: u64,
    /// Payload bytes already yielded: the mask position of the buffer's first byte.
    offset: usize,
    /// Bytes at the front of the buffer already unmasked and checked, waiting for the
    /// rest of the frame (whole-frame mode).
    scanned: usize,
}

#[derive(Debug, Clone, Copy)]
struct MessageInProgress {
    kind: MessageKind,
    size: u64,
    /// RSV1 was set on the first frame: the payload is deflated (RFC 7692 §6.1).
    compressed: bool,
}

/// Compressed payload received but not yet inflated.
#[derive(Debug)]
struct PendingInflate {
    input: Bytes,
    /// This input ends the message.
    fin: bool,
}

/// What a [`Decoder`] between messages holds: its limits and its inflater (whose
/// window a context-takeover connection must keep).
#[derive(Debug)]
pub struct RestingDecoder {
    config: DecoderConfig,
    inflater: Option<Box<Decompressor>>,
    whole_frames: bool,
}

impl RestingDecoder {
    /// The limits and role.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Whether it inflates (permessage-deflate). Without, it is only its limits and
    /// its frame mode ([`Decoder::set_whole_frames`]).
    pub fn has_inflater(&self) -> bool {
        self.inflater.is_some()
    }
}

/// The receiving protocol state machine. Feed it with [`Decoder::decode`].
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    frame: Option<FrameInProgress>,
    message: Option<MessageInProgress>,
    utf8: Utf8Validator,
    closed: bool,
    /// Boxed: most connections never compress, and an idle one should be small.
    inflater: Option<Box<Decompressor>>,
    inflating: Option<PendingInflate>,
    whole_frames: bool,
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
            inflater: None,
            inflating: None,
            whole_frames: false,
        }
    }

    /// Enables permessage-deflate: RSV1 on a message's first frame now means
    /// "compressed", and such messages are inflated (bounded by the message limit).
    pub fn set_decompressor(&mut self, inflater: Decompressor) {
        self.inflater = Some(Box::new(inflater));
    }

    /// Changes the message size limit (gorilla's `SetReadLimit`).
    pub fn set_max_message_size(&mut self, limit: u64) {
        self.config.max_message_size = limit;
    }

    /// The current limits.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Yield each uncompressed data frame whole (one `Bytes`) instead of piece by
    /// piece as it arrives. For callers that collect whole messages anyway: a frame
    /// read into one buffer needs no copy. Can be switched at any time.
    pub fn set_whole_frames(&mut self, whole: bool) {
        self.whole_frames = whole;
    }

    /// Payload bytes of the current data frame not yet yielded, counting those
    /// already in the buffer: a hint for how much to read next. `None` between frames.
    pub fn frame_remaining(&self) -> Option<u64> {
        self.frame.map(|f| f.remaining)
    }

    /// Whether a data message has started and not yet ended.
    pub fn in_message(&self) -> bool {
        self.message.is_some()
    }

    /// Whether compressed input already taken from the buffer still has output to give
    /// (the next `decode` may yield data without new bytes).
    pub fn has_pending_output(&self) -> bool {
        self.inflating.is_some()
    }

    /// Whether a close frame has been decoded (nothing after it is read).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether nothing is in progress: no frame or message started, no inflate
    /// pending, no close decoded. Such a decoder is only its settings and its
    /// inflater, which [`into_resting`](Self::into_resting) keeps.
    pub fn is_at_rest(&self) -> bool {
        self.frame.is_none() && self.message.is_none() && self.inflating.is_none() && !self.closed
    }

    /// The settings and inflater of a decoder [at rest](Self::is_at_rest), for a
    /// connection kept in as little memory as possible while it waits; the decoder
    /// itself back if something is in progress.
    #[allow(clippy::result_large_err)] // itself back, unchanged
    pub fn into_resting(self) -> Result<RestingDecoder, Decoder> {
        if !self.is_at_rest() {
            return Err(self);
        }
        Ok(RestingDecoder {
            config: self.config,
            inflater: self.inflater,
            whole_frames: self.whole_frames,
        })
    }

    /// The decoder [`into_resting`](Self::into_resting) put away.
    pub fn from_resting(resting: RestingDecoder) -> Decoder {
        Decoder {
            inflater: resting.inflater,
            whole_frames: resting.whole_frames,
            ..Decoder::new(resting.config)
        }
    }

    /// Decodes the next item from the front of `buf`, consuming the bytes it used.
    /// `Ok(None)`: more bytes are needed. After an error the connection must be failed
    /// with the error's close code; the decoder is not to be used again.
    #[inline]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        // Asked after every message with nothing left: answer without the call.
        if self.closed || (buf.is_empty() && self.inflating.is_none()) {
            return Ok(None);
        }
        self.decode_more(buf)
    }

    fn decode_more(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            if self.inflating.is_some() {
                if let Some(item) = self.inflate_step()? {
                    return Ok(Some(item));
                }
                if self.inflating.is_some() {
                    continue;
                }
            }
            if let Some(frame) = self.frame {
                match self.data_payload(frame, buf)? {
                    Some(item) => return Ok(Some(item)),
                    // A compressed frame may inflate to nothing yet: go on with the
                    // pending input or the next frame.
                    None if self.inflating.is_some() || self.frame.is_none() => continue,
                    None => return Ok(None),
                }
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
                buf.advance(header_len);
                let mut payload = take_front(buf, header.len as usize);
                if let Some(key) = header.mask {
                    apply_mask(&mut payload, key, 0);
                }
                return self.control(header.opcode, payload.freeze()).map(Some);
            }
            buf.advance(header_len);
            self.start_data_frame(header)?;
            let frame = FrameInProgress {
                header,
                remaining: header.len,
                offset: 0,
                scanned: 0,
            };
            if header.len == 0 {
                if self.message.is_some_and(|m| m.compressed) {
                    self.inflating = Some(PendingInflate {
                        input: Bytes::new(),
                        fin: header.fin,
                    });
                    continue;
                }
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
        // RFC 7692 §6: with permessage-deflate, RSV1 marks the first frame of a
        // compressed message; on anything else it stays reserved.
        let rsv1_ok = self.inflater.is_some() && matches!(h.opcode, OpCode::Text | OpCode::Binary);
        if (h.rsv1 && !rsv1_ok) || h.rsv2 || h.rsv3 {
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
        let compressed = h.rsv1 || self.message.is_some_and(|m| m.compressed);
        // A compressed message is limited by its inflated size instead (inflate_step).
        if !compressed && so_far.saturating_add(h.len) > self.config.max_message_size {
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
        self.message = Some(MessageInProgress {
            kind,
            size: h.len,
            compressed: h.rsv1,
        });
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
        let compressed = self.message.is_some_and(|m| m.compressed);
        let kind = self.message.map_or(MessageKind::Binary, |m| m.kind);
        // Compressed text is checked after inflating.
        let check_utf8 = kind == MessageKind::Text && !compressed;
        if self.whole_frames && !compressed && (available as u64) < frame.remaining {
            // Not all here yet: unmask and check what is new, in place, and wait.
            if available > frame.scanned {
                self.scan(&frame, &mut buf[frame.scanned..available], check_utf8)?;
                frame.scanned = available;
            }
            self.frame = Some(frame);
            return Ok(None);
        }
        let mut chunk = take_front(buf, available);
        self.scan(&frame, &mut chunk[frame.scanned..], check_utf8)?;
        frame.scanned = 0;
        frame.remaining -= available as u64;
        frame.offset += available;
        let frame_done = frame.remaining == 0;
        self.frame = (!frame_done).then_some(frame);
        if compressed {
            self.inflating = Some(PendingInflate {
                input: chunk.freeze(),
                fin: frame_done && frame.header.fin,
            });
            return self.inflate_step();
        }
        if frame_done && frame.header.fin {
            return self.finish_message(chunk.freeze()).map(Some);
        }
        Ok(Some(Incoming::Data {
            kind,
            payload: chunk.freeze(),
            last: false,
        }))
    }

    /// Unmasks `bytes`, which start `frame.scanned` bytes past the frame's unyielded
    /// part, and feeds them to the UTF-8 check when asked.
    fn scan(
        &mut self,
        frame: &FrameInProgress,
        bytes: &mut [u8],
        check_utf8: bool,
    ) -> Result<(), ProtocolError> {
        if let Some(key) = frame.header.mask {
            apply_mask(bytes, key, frame.offset + frame.scanned);
        }
        if check_utf8 {
            self.utf8
                .feed(bytes)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Inflates pending compressed input, at most [`INFLATE_CHUNK`] bytes of output at a
    /// time. `Ok(None)` when the input is used up without output (more frames needed).
    fn inflate_step(&mut self) -> Result<Option<Incoming>, ProtocolError> {
        let (Some(mut pending), Some(inflater)) = (self.inflating.take(), self.inflater.as_mut())
        else {
            return Ok(None);
        };
        let limit = usize::try_from(self.config.max_message_size).unwrap_or(usize::MAX);
        let mut out = BytesMut::with_capacity(INFLATE_CHUNK.min(pending.input.len() * 4 + 64));
        let kind = self.message.map_or(MessageKind::Binary, |m| m.kind);
        let more = loop {
            let room = INFLATE_CHUNK - out.len();
            let progress = match inflater.decompress_step(
                &pending.input,
                pending.fin,
                &mut out,
                room,
                limit,
            ) {
                Ok(p) => p,
                Err(e) => {
                    // Report the first fault in stream order: text inflated before
                    // the failure is checked first, whatever the chunking was.
                    if kind == MessageKind::Text && self.utf8.feed(&out).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    return Err(e.into());
                }
            };
            pending.input.advance(progress.consumed);
            if progress.finished {
                break false;
            }
            if out.len() >= INFLATE_CHUNK {
                break true;
            }
            if progress.consumed == 0 && progress.produced == 0 {
                // No progress with room to spare: the stream cannot go on.
                return Err(ProtocolError::InvalidCompressedData);
            }
        };
        let last = pending.fin && !more;
        if more {
            self.inflating = Some(pending);
        }
        if kind == MessageKind::Text {
            self.utf8
                .feed(&out)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        if last {
            return self.finish_message(out.freeze()).map(Some);
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Incoming::Data {
            kind,
            payload: out.freeze(),
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

/// The first `n` bytes of `buf`, without copying. Taking the whole buffer hands over
/// its allocation as is; a split would first have to make it shareable.
fn take_front(buf: &mut BytesMut, n: usize) -> BytesMut {
    if n == buf.len() {
        std::mem::take(buf)
    } else {
        buf.split_to(n)
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
    fn whole_frames_yield_each_frame_in_one_piece_whatever_the_chunking() {
        let text = "ab\u{e9}cd\u{1F600}".repeat(40);
        let mut wire = masked(OpCode::Text, false, &text.as_bytes()[..100]);
        wire.extend(masked(OpCode::Continuation, true, &text.as_bytes()[100..]));
        for step in [1, 3, 7, 64, 1000] {
            let mut d = server();
            d.set_whole_frames(true);
            let items = run(&mut d, &wire, step).unwrap();
            assert_eq!(items.len(), 2, "step {step}: one item per frame");
            assert_eq!(
                messages(&items),
                vec![(MessageKind::Text, text.as_bytes().to_vec())]
            );
        }
    }

    #[test]
    fn whole_frames_still_fail_fast_on_invalid_utf8() {
        let mut payload = vec![b'a'; 1000];
        payload[10] = 0xff;
        let wire = masked(OpCode::Text, true, &payload);
        let mut d = server();
        d.set_whole_frames(true);
        let mut buf = BytesMut::from(&wire[..40]); // the frame is far from complete
        assert_eq!(d.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn switching_from_whole_frames_to_pieces_mid_frame_loses_nothing() {
        let payload: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
        let wire = masked(OpCode::Binary, true, &payload);
        let mut d = server();
        d.set_whole_frames(true);
        let mut buf = BytesMut::from(&wire[..200]);
        assert_eq!(d.decode(&mut buf), Ok(None)); // waits, unmasked in place
        assert_eq!(d.frame_remaining(), Some(500));
        d.set_whole_frames(false);
        let mut items = Vec::new();
        while let Some(item) = d.decode(&mut buf).unwrap() {
            items.push(item);
        }
        buf.extend_from_slice(&wire[200..]);
        while let Some(item) = d.decode(&mut buf).unwrap() {
            items.push(item);
        }
        assert_eq!(items.len(), 2);
        assert_eq!(messages(&items), vec![(MessageKind::Binary, payload)]);
        assert_eq!(d.frame_remaining(), None);
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

#[cfg(test)]
mod deflate_tests {
    use super::*;
    use crate::proto::deflate::{Compressor, Decompressor, DeflateParams};
    use crate::proto::encoder::encode_frame;

    /// A compressed message fragmented into small frames inflates whole, whatever its
    /// size relative to the inflate step.
    #[test]
    fn compressed_fragmented_messages_of_awkward_sizes() {
        let params = DeflateParams::default();
        for size in [65_535usize, 65_536, 65_537, 131_072, 200_000] {
            for frag in [16usize, 256, 1024, 4096, 1 << 20] {
                let text: Vec<u8> = (0..size)
                    .map(|i| b"{\"key\": [1, 2, 3], \"name\": \"yamabiko\"}\n"[i % 39])
                    .collect();
                let mut tx = Compressor::new(&params, Role::Client, 9);
                let mut z = BytesMut::new();
                tx.compress_message(&text, &mut z).unwrap();
                let mut wire = BytesMut::new();
                let pieces: Vec<&[u8]> = z.chunks(frag).collect();
                for (i, p) in pieces.iter().enumerate() {
                    let op = if i == 0 {
                        OpCode::Text
                    } else {
                        OpCode::Continuation
                    };
                    encode_frame(
                        &mut wire,
                        op,
                        i + 1 == pieces.len(),
                        i == 0,
                        Some([1, 2, 3, 4]),
                        p,
                    );
                }
                let mut d = Decoder::new(DecoderConfig {
                    role: Role::Server,
                    max_frame_size: 1 << 24,
                    max_message_size: 1 << 26,
                });
                d.set_decompressor(Decompressor::new(&params, Role::Server));
                let mut got = Vec::new();
                let mut done = false;
                let mut buf = BytesMut::new();
                // Whole stream at once: the decoder must not stop while complete frames
                // remain buffered (it once did after an inflate step with no output).
                let step = if frag <= 256 { wire.len() } else { 4096 };
                for chunk in wire.chunks(step) {
                    buf.extend_from_slice(chunk);
                    let mut guard = 0;
                    while let Some(item) = d.decode(&mut buf).unwrap() {
                        guard += 1;
                        assert!(guard < 10_000, "decoder loops");
                        if let Incoming::Data { payload, last, .. } = item {
                            got.extend_from_slice(&payload);
                            done |= last;
                        }
                    }
                }
                assert!(done, "size {size} frag {frag}: message not finished");
                assert_eq!(got.len(), text.len(), "size {size} frag {frag}");
                assert!(got == text);
            }
        }
    }
}
