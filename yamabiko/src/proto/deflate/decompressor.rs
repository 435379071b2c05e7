//! Decompressing incoming messages (RFC 7692 §7.2.2), bounded by a size limit.

use super::compressor::{SYNC_TAIL, ZLIB_MIN_WINDOW_BITS};
use super::negotiate::DeflateParams;
use crate::proto::{ProtocolError, Role};
use bytes::BytesMut;
use flate2::{Decompress, FlushDecompress, Status};
use std::fmt;

/// Why an incoming compressed message was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The payload is not valid DEFLATE data, or refers back to data this end does
    /// not have (such as a previous message when context takeover was not agreed).
    /// Close with 1007.
    Corrupt(String),
    /// The message inflates to more than the limit. Close with 1009.
    MessageTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InflateError::Corrupt(why) => write!(f, "invalid compressed data: {why}"),
            InflateError::MessageTooLarge { limit } => {
                write!(f, "message inflates to more than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for InflateError {}

impl From<InflateError> for ProtocolError {
    fn from(e: InflateError) -> ProtocolError {
        match e {
            InflateError::Corrupt(_) => ProtocolError::InvalidCompressedData,
            InflateError::MessageTooLarge { limit } => ProtocolError::MessageTooLarge {
                limit: limit as u64,
            },
        }
    }
}

/// What one [`Decompressor::decompress_step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of `input` used; call again with the rest.
    pub consumed: usize,
    /// Bytes appended to `out`.
    pub produced: usize,
    /// All of `input` was used and no output is pending. With `fin`, the message is
    /// complete and the decompressor is ready for the next one. When `false`, call
    /// again (with `&input[consumed..]`, possibly empty) once there is room.
    pub finished: bool,
}

/// Inflates the compressed messages one end receives, under the agreed
/// [`DeflateParams`], never producing more than a limit per message.
///
/// Feed it the (unmasked) payload of every frame of a message whose first frame had
/// RSV1 set, in order, with `fin` on the last frame. At the end of the message the
/// `00 00 ff ff` removed by the sender is appended (§7.2.2). With context takeover
/// the sliding window is kept for the next message; with no context takeover for the
/// peer's direction the decompressor is reset, so a peer that breaks the agreement
/// gets [`InflateError::Corrupt`].
///
/// A message made of empty payloads inflates to the empty message without touching
/// the stream (some senders compress the empty message to nothing). A sender that
/// ends a message with a final block (BFINAL, §7.2.3.5) is supported: what follows
/// the final block in that message is ignored, and the next message starts a new
/// stream.
///
/// Memory: the inflate state plus a window of `2^window_bits` bytes (about 40 KiB
/// with 15-bit windows). Window bits 8 are inflated with a 9-bit window, which accepts
/// every valid 8-bit stream.
pub struct Decompressor {
    inflate: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
    /// Bytes produced in the current message.
    produced: usize,
    /// Compressed bytes received in the current message.
    received: usize,
    /// How much of [`SYNC_TAIL`] has been fed in the current message.
    tail_fed: usize,
    /// The peer ended the stream with a final block in this message.
    stream_ended: bool,
    /// The last inflate call filled its output, so more may be waiting in zlib.
    pending: bool,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("produced", &self.produced)
            .finish()
    }
}

/// First output chunk of [`Decompressor::decompress`]; later ones double.
const FIRST_CHUNK: usize = 4096;
/// Largest output chunk of [`Decompressor::decompress`] (each is zero-filled first).
const MAX_CHUNK: usize = 1 << 20;

impl Decompressor {
    /// A decompressor for the messages `role` receives: a server inflates under the
    /// `client_*` parameters, a client under the `server_*` ones.
    pub fn new(params: &DeflateParams, role: Role) -> Decompressor {
        let (bits, no_context_takeover) = match role {
            Role::Server => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
        };
        let window_bits = bits.clamp(ZLIB_MIN_WINDOW_BITS, 15);
        Decompressor {
            inflate: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            no_context_takeover,
            produced: 0,
            received: 0,
            tail_fed: 0,
            stream_ended: false,
            pending: false,
        }
    }

    /// The zlib window used for inflating (9..=15).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the decompressor is reset after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Bytes inflated so far in the current message.
    pub fn message_len(&self) -> usize {
        self.produced
    }

    /// Inflates one frame's payload completely, appending to `out`.
    ///
    /// Fails with [`InflateError::MessageTooLarge`] as soon as the message would
    /// exceed `limit` bytes in total (all its frames counted): at most `limit` bytes
    /// are ever produced, and output grows in bounded chunks as it is produced,
    /// never by the (unknowable) inflated size up front. On error `out` holds what
    /// was produced before it; the connection should be failed.
    pub fn decompress(
        &mut self,
        mut input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), InflateError> {
        let mut chunk = FIRST_CHUNK
            .max(input.len().saturating_mul(4))
            .min(MAX_CHUNK);
        // Bounded: each round consumes input or produces output (decompress_step
        // errors otherwise), and output is capped by `limit`.
        loop {
            let p = self.decompress_step(input, fin, out, chunk, limit)?;
            input = &input[p.consumed..];
            if p.finished {
                return Ok(());
            }
            chunk = (chunk * 2).min(MAX_CHUNK);
        }
    }

    /// Inflates from `input` (one frame's payload, or what is left of it) appending
    /// at most `max_out` bytes to `out`: the building block of a streaming reader
    /// that hands out a message in pieces of bounded size.
    ///
    /// `limit` caps the whole message as in [`Decompressor::decompress`]. Call it
    /// again with `&input[progress.consumed..]` until `progress.finished`; then feed
    /// the next frame, or, if `fin` was set, the message is done. `max_out == 0` is
    /// allowed (nothing happens unless the limit has been reached).
    pub fn decompress_step(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_out: usize,
        limit: usize,
    ) -> Result<Progress, InflateError> {
        let result = self.step(input, fin, out, max_out, limit);
        if result.is_err() {
            // The stream is unusable; leave a clean state behind regardless.
            self.reset();
        }
        result
    }

    fn step(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max_out: usize,
        limit: usize,
    ) -> Result<Progress, InflateError> {
        self.received += input.len();
        let remaining = limit.saturating_sub(self.produced);
        let room = max_out.min(remaining);
        let start = out.len();
        out.resize(start + room, 0);
        let result = self.inflate_into(input, fin, &mut out[start..]);
        let written = match &result {
            Ok((_, w, _)) => *w,
            Err((w, _)) => *w,
        };
        out.truncate(start + written);
        self.produced += written;
        let (mut consumed, _, mut exhausted) = result.map_err(|(_, e)| e)?;

        if !exhausted && written == remaining {
            // At the limit with more to inflate: is there more output? Probe with one
            // byte of space that is never handed out.
            let mut probe = [0u8; 1];
            let (more_consumed, probed, now_exhausted) = self
                .inflate_into(&input[consumed..], fin, &mut probe)
                .map_err(|(_, e)| e)?;
            if probed > 0 {
                return Err(InflateError::MessageTooLarge { limit });
            }
            consumed += more_consumed;
            exhausted = now_exhausted;
        }
        // The received bytes of this call were counted up front; undo for the part
        // not consumed, which the caller passes again.
        self.received -= input.len() - consumed;

        if exhausted && fin {
            self.end_message();
        }
        Ok(Progress {
            consumed,
            produced: written,
            finished: exhausted,
        })
    }

    /// Inflates into `buf`. Returns (input consumed, bytes written, exhausted), where
    /// exhausted means all input (and, with `fin`, the tail) was used and nothing is
    /// pending inside zlib. On error, the bytes written before it.
    fn inflate_into(
        &mut self,
        input: &[u8],
        fin: bool,
        buf: &mut [u8],
    ) -> Result<(usize, usize, bool), (usize, InflateError)> {
        let mut consumed = 0;
        let mut written = 0;
        // Bounded: each round consumes input or produces output, or returns.
        loop {
            if self.stream_ended {
                // After a final block the rest of this message is ignored.
                self.pending = false;
                return Ok((input.len(), written, true));
            }
            let (src, is_tail): (&[u8], bool) = if consumed < input.len() {
                (&input[consumed..], false)
            } else if fin && self.received > 0 && self.tail_fed < SYNC_TAIL.len() {
                (&SYNC_TAIL[self.tail_fed..], true)
            } else if self.pending {
                // The last call filled its output: zlib may hold more (say, the rest
                // of a long match) without needing any input.
                (&[], false)
            } else {
                return Ok((consumed, written, true));
            };
            if written == buf.len() {
                return Ok((consumed, written, false));
            }
            let in_before = self.inflate.total_in();
            let out_before = self.inflate.total_out();
            let status = self
                .inflate
                .decompress(src, &mut buf[written..], FlushDecompress::Sync);
            let c = (self.inflate.total_in() - in_before) as usize;
            let w = (self.inflate.total_out() - out_before) as usize;
            if is_tail {
                self.tail_fed += c;
            } else {
                consumed += c;
            }
            written += w;
            match status {
                Err(e) => return Err((written, InflateError::Corrupt(e.to_string()))),
                Ok(Status::StreamEnd) => self.stream_ended = true,
                Ok(_) => {}
            }
            self.pending = written == buf.len();
            if self.pending {
                return Ok((consumed, written, false));
            }
            if c == 0 && w == 0 && !src.is_empty() && !self.stream_ended {
                // Input and output space were both available: zlib would have used
                // one of them unless the data is broken.
                return Err((
                    written,
                    InflateError::Corrupt("inflate made no progress".into()),
                ));
            }
        }
    }

    fn end_message(&mut self) {
        if self.no_context_takeover || self.stream_ended {
            self.inflate.reset(false);
        }
        self.produced = 0;
        self.received = 0;
        self.tail_fed = 0;
        self.stream_ended = false;
        self.pending = false;
    }

    /// Abandons the current message and drops the sliding window. Only useful after
    /// an error, or to reuse the decompressor for a new connection.
    pub fn reset(&mut self) {
        self.stream_ended = true;
        self.end_message();
    }
}
