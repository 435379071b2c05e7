//! Payload masking (RFC 6455 §5.3): XOR with a repeating four-byte key.
//!
//! The key is expanded to a 64-byte pattern so the inner loop is a fixed-size XOR the
//! compiler turns into SIMD instructions; no `unsafe` needed.

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into the payload (so a
/// payload can be unmasked chunk by chunk as it arrives). Masking twice unmasks.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    if buf.len() < 64 {
        // Small payloads (most chat-sized messages): building the 64-byte pattern
        // would cost more than the XOR itself, so go a word at a time.
        apply_mask_words(buf, key);
        return;
    }
    let pattern = pattern(key);
    let mut chunks = buf.chunks_exact_mut(64);
    for chunk in &mut chunks {
        for (b, k) in chunk.iter_mut().zip(pattern.iter()) {
            *b ^= k;
        }
    }
    apply_mask_words(chunks.into_remainder(), key);
}

/// Appends `src` masked with `key` (from key byte 0) to `out`: one pass over the
/// payload instead of a copy followed by [`apply_mask`], for a client's frames.
pub fn extend_masked(out: &mut bytes::BytesMut, src: &[u8], key: [u8; 4]) {
    // Blocks of a few cache lines: masked on the stack, then appended.
    const BLOCK: usize = 512;
    out.reserve(src.len());
    let mut blocks = src.chunks_exact(BLOCK);
    if src.len() >= BLOCK {
        let pattern = pattern(key);
        let mut block = [0u8; BLOCK];
        for chunk in &mut blocks {
            for (dst, src) in block.chunks_exact_mut(64).zip(chunk.chunks_exact(64)) {
                for ((d, s), k) in dst.iter_mut().zip(src).zip(pattern.iter()) {
                    *d = s ^ k;
                }
            }
            out.extend_from_slice(&block);
        }
    }
    // The rest (all of a small payload): copied, then masked where it landed. Whole
    // blocks are a multiple of four bytes, so the key is not rotated.
    let start = out.len();
    out.extend_from_slice(blocks.remainder());
    apply_mask(&mut out[start..], key, 0);
}

/// The key repeated to 64 bytes: one SIMD-width XOR operand.
fn pattern(key: [u8; 4]) -> [u8; 64] {
    let mut pattern = [0u8; 64];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = key[i & 3];
    }
    pattern
}

/// Eight bytes at a time, then the tail byte by byte; `buf` starts at key byte 0.
fn apply_mask_words(buf: &mut [u8], key: [u8; 4]) {
    // The key repeated twice, in memory order whatever the endianness.
    let k = u64::from(u32::from_ne_bytes(key));
    let wide = k | (k << 32);
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        let x = u64::from_ne_bytes(bytes) ^ wide;
        w.copy_from_slice(&x.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The key as seen from `offset` bytes into the payload.
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn matches_bytewise_definition_for_all_lengths_and_offsets() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..300 {
            for offset in 0..4 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn extend_masked_matches_bytewise_definition() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in (0..1100).chain([4096, 65_537]) {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
            let mut out = bytes::BytesMut::from(&b"hdr"[..]);
            extend_masked(&mut out, &data, key);
            let mut slow = data.clone();
            naive(&mut slow, key, 0);
            assert_eq!(&out[..3], b"hdr");
            assert_eq!(&out[3..], &slow[..], "len {len}");
        }
    }

    #[test]
    fn chunked_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let mut off = 0;
        for size in [1, 3, 7, 64, 65, 200, 660] {
            apply_mask(&mut pieces[off..off + size], key, off);
            off += size;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn rfc_hello_example() {
        let mut hello = *b"Hello";
        apply_mask(&mut hello, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(hello, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
