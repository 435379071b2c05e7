//! Incremental UTF-8 validation across fragments (RFC 6455 §8.1).
//!
//! A text message may be split anywhere, even inside a code point, so the validator
//! carries up to three bytes of an unfinished sequence from one chunk to the next. It
//! fails fast: as soon as the bytes seen can no longer be the start of valid UTF-8.

/// Validates a text message chunk by chunk, SIMD-accelerated by `simdutf8`.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The bytes are not (and cannot become) valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl std::fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any unfinished sequence (start of a new message).
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Validates the next chunk of the message.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]);
            let take = (need - have).min(chunk.len());
            self.pending[have..have + take].copy_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            let filled = have + take;
            match std::str::from_utf8(&self.pending[..filled]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still a valid prefix and the chunk is used up.
                    self.pending_len = filled as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // The tail is a valid but unfinished sequence (at most three bytes).
                let tail = &chunk[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// How many bytes at the end of what was fed so far form an unfinished character
    /// (0–3): a writer that must end a fragment on a character boundary holds them
    /// back.
    pub fn pending_len(&self) -> usize {
        usize::from(self.pending_len)
    }

    /// The message ended: any unfinished sequence is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// Length of the sequence a lead byte starts (1 for bytes that cannot lead: the
/// validator then reports them).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(bytes: &[u8]) {
        let expected = std::str::from_utf8(bytes).is_ok();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&bytes[..a]).is_ok()
                    && v.feed(&bytes[a..b]).is_ok()
                    && v.feed(&bytes[b..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, expected, "{bytes:x?} split at {a},{b}");
            }
        }
    }

    #[test]
    fn agrees_with_std_on_every_split() {
        let cases: &[&[u8]] = &[
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "κόσμε".as_bytes(),
            "\u{10FFFF}\u{FFFF}\u{800}".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xbf\xbf",
            b"\xf0\x9f\x98",
            b"\x80abc",
            b"abc\xff",
        ];
        for c in cases {
            check_all_splits(c);
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        // Autobahn 6.4.x: the error must show before the message ends.
        let mut v = Utf8Validator::new();
        assert!(v
            .feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")
            .is_ok());
        assert_eq!(v.feed(b"\xf4\x90"), Err(InvalidUtf8));
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xed").is_ok());
        assert_eq!(v.feed(b"\xa0"), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_sequence_at_end_is_an_error() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok\xe2\x82").is_ok());
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // finish() resets, so the validator can be reused.
        assert!(v.feed(b"fine").is_ok());
        assert!(v.finish().is_ok());
    }
}
