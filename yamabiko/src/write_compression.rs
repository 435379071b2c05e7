//! The sending side's permessage-deflate policy, one for both drivers (async and
//! blocking): compress a message when compression was agreed, is switched on, and
//! the message reaches the threshold.

use crate::proto::deflate::Compressor;

/// A connection's compressor and the switches that decide when it is used.
pub(crate) struct WriteCompression {
    compressor: Compressor,
    enabled: bool,
    threshold: usize,
}

impl WriteCompression {
    /// Compression agreed in the handshake: on, for messages of `threshold` bytes or more.
    pub(crate) fn new(compressor: Compressor, threshold: usize) -> Self {
        WriteCompression {
            compressor,
            enabled: true,
            threshold,
        }
    }

    /// gorilla's `EnableWriteCompression`.
    pub(crate) fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// gorilla's `SetCompressionLevel`, clamped to 0–9.
    pub(crate) fn set_level(&mut self, level: u32) {
        self.compressor.set_level(level.min(9));
    }

    /// Whether messages are compressed at all now (streamed ones ignore the threshold:
    /// their size is not known up front).
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The compressor for a whole message of `len` bytes, if it is to be compressed.
    pub(crate) fn for_message(&mut self, len: usize) -> Option<&mut Compressor> {
        (self.enabled && len >= self.threshold).then_some(&mut self.compressor)
    }

    /// Messages shorter than this go out uncompressed.
    pub(crate) fn threshold(&self) -> usize {
        self.threshold
    }

    /// The compressor's settings, without using it.
    pub(crate) fn settings(&self) -> &Compressor {
        &self.compressor
    }

    /// The compressor, for a streamed message that started compressed.
    pub(crate) fn compressor(&mut self) -> &mut Compressor {
        &mut self.compressor
    }
}
