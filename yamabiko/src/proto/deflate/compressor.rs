//! Compressing outgoing messages (RFC 7692 §7.2.1).

use super::negotiate::DeflateParams;
use crate::proto::Role;
use bytes::BytesMut;
use flate2::{Compress, Compression, FlushCompress, Status};
use std::fmt;

/// The four octets a sync flush ends with, removed before sending (§7.2.1).
pub(crate) const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window zlib's deflate supports (RFC 7692 allows 8).
pub(crate) const ZLIB_MIN_WINDOW_BITS: u8 = 9;

/// The internal compressor failed. This does not happen with valid use of zlib; the
/// connection should be closed (1011, internal error), since the peer's decompressor
/// can no longer be kept in step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressError(String);

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deflate failed: {}", self.0)
    }
}

impl std::error::Error for CompressError {}

/// Compresses the messages one end sends, under the agreed [`DeflateParams`].
///
/// Output is raw DEFLATE, each message ended by a sync flush whose trailing
/// `00 00 ff ff` is removed; the frames carrying it get RSV1 on the first frame.
/// With context takeover the sliding window is kept from one message to the next,
/// so repeated content costs only a back-reference; without it (the
/// `*_no_context_takeover` parameter for our direction) the compressor is reset after
/// every message.
///
/// A compressor with context takeover must see every message that is sent
/// compressed, in order, and nothing else: a message sent uncompressed (below the
/// size threshold, or with compression switched off for it) simply bypasses it.
///
/// Memory: zlib's deflate state is about `2^(window_bits + 2)` bytes plus 128 KiB of
/// hash tables (about 256 KiB with 15-bit windows), held for the compressor's life.
///
/// Window bits 8: zlib cannot deflate with a 256-byte window, so a 512-byte window
/// is used. zlib only emits matches up to `window − 262` bytes back, 250 here, which
/// a peer limited to a 256-byte window inflates correctly.
pub struct Compressor {
    deflate: Compress,
    window_bits: u8,
    no_context_takeover: bool,
    level: u32,
    /// A level set while a message was being streamed, applied at the next message.
    pending_level: Option<u32>,
    /// A message has been started with [`Compressor::compress_chunk`] and not ended.
    in_message: bool,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("level", &self.level)
            .field("in_message", &self.in_message)
            .finish()
    }
}

fn clamp_level(level: u32) -> u32 {
    level.min(9)
}

impl Compressor {
    /// A compressor for the messages `role` sends: a server compresses under the
    /// `server_*` parameters, a client under the `client_*` ones. `level` is zlib's
    /// 0–9 (above 9 counts as 9).
    pub fn new(params: &DeflateParams, role: Role, level: u32) -> Compressor {
        let (bits, no_context_takeover) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
        };
        // flate2 panics outside 9..=15; see the type's docs for why 9 serves 8.
        let window_bits = bits.clamp(ZLIB_MIN_WINDOW_BITS, 15);
        let level = clamp_level(level);
        Compressor {
            deflate: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            window_bits,
            no_context_takeover,
            level,
            pending_level: None,
            in_message: false,
        }
    }

    /// The zlib window actually used (9..=15; 9 when 8 was agreed).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the compressor is reset after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// The compression level in effect for the next message.
    pub fn level(&self) -> u32 {
        self.pending_level.unwrap_or(self.level)
    }

    /// Changes the compression level (0–9, above 9 counts as 9), like gorilla's
    /// `SetCompressionLevel`. Takes effect with the next message; the sliding window
    /// is kept.
    pub fn set_level(&mut self, level: u32) {
        let level = clamp_level(level);
        if level == self.level {
            self.pending_level = None;
        } else {
            self.pending_level = Some(level);
        }
    }

    /// Compresses a whole message, appending the payload to send (RSV1 set) to `out`.
    ///
    /// An empty message compresses to the single octet `0x00` (§7.2.3.6).
    pub fn compress_message(
        &mut self,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), CompressError> {
        self.compress_chunk(payload, true, out)
    }

    /// Compresses one piece of a message that is written in several calls (a
    /// streaming writer), appending compressed bytes to `out`. Pass `fin = true` with
    /// the last piece (which may be empty). Pieces before the last may produce no
    /// output at all: zlib buffers up to a block; everything comes out with the last.
    /// Each call's output can go out as one frame (RSV1 on the first frame only).
    ///
    /// If a message is abandoned midway (the connection failed), call
    /// [`Compressor::reset`] before compressing anything else.
    pub fn compress_chunk(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
    ) -> Result<(), CompressError> {
        if !self.in_message {
            self.start_message();
            self.in_message = true;
        }
        let start = out.len();
        let flush = if fin {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let result = self.deflate_into(input, flush, out);
        if let Err(e) = result {
            out.truncate(start);
            self.reset();
            return Err(e);
        }
        if fin {
            if out[start..].ends_with(&SYNC_TAIL) {
                out.truncate(out.len() - SYNC_TAIL.len());
            }
            if out.len() == start {
                // zlib emits nothing for a sync flush right after another one with no
                // input in between. The receiver appends 00 00 ff ff and needs a block
                // header before it: an empty stored block, as §7.2.3.6 shows.
                out.extend_from_slice(&[0x00]);
            }
            self.in_message = false;
            if self.no_context_takeover {
                self.deflate.reset();
            }
        }
        Ok(())
    }

    /// Drops the sliding window and any partly compressed message. The next message
    /// references nothing sent before, which a peer's decompressor always accepts.
    pub fn reset(&mut self) {
        self.deflate.reset();
        self.in_message = false;
    }

    fn start_message(&mut self) {
        if let Some(level) = self.pending_level.take() {
            // Between messages everything has been flushed, so zlib can switch
            // levels without output space; if it cannot, start afresh.
            if self.deflate.set_level(Compression::new(level)).is_err() {
                self.deflate = Compress::new_with_window_bits(
                    Compression::new(level),
                    false,
                    self.window_bits,
                );
            }
            self.level = level;
        }
    }

    /// Runs deflate over all of `input` with `flush`, growing `out` as needed.
    fn deflate_into(
        &mut self,
        mut input: &[u8],
        flush: FlushCompress,
        out: &mut BytesMut,
    ) -> Result<(), CompressError> {
        // Bounded: every round either consumes input or fills the output space it was
        // given; a round that does neither ends the loop.
        loop {
            // Room for the whole input if it barely compresses, plus block overhead;
            // zlib wants more than 6 bytes free for a flush.
            let room = (input.len() + input.len() / 8 + 64).min(256 * 1024);
            let start = out.len();
            out.resize(start + room, 0);
            let in_before = self.deflate.total_in();
            let out_before = self.deflate.total_out();
            let status = self.deflate.compress(input, &mut out[start..], flush);
            let consumed = (self.deflate.total_in() - in_before) as usize;
            let produced = (self.deflate.total_out() - out_before) as usize;
            out.truncate(start + produced);
            let status = status.map_err(|e| CompressError(e.to_string()))?;
            input = &input[consumed.min(input.len())..];
            if input.is_empty() && produced < room {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                return match status {
                    // Nothing left to do for this flush.
                    Status::BufError if input.is_empty() => Ok(()),
                    _ => Err(CompressError("deflate made no progress".into())),
                };
            }
        }
    }
}
