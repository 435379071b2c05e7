//! Codec tests: RFC 7692 vectors, round trips in both roles, window limits checked
//! by an independent DEFLATE decoder, and decompression bombs.

use super::*;
use crate::proto::{ProtocolError, Role};
use bytes::BytesMut;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// A small, slow, independent DEFLATE decoder (RFC 1951), after the structure of
// zlib's puff.c. It keeps the whole history, so it can tell how far back every
// match reaches: the check that a stream respects an agreed window.
// ---------------------------------------------------------------------------------

struct RefInflate {
    out: Vec<u8>,
    max_distance: usize,
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize, // in bits
}

impl BitReader<'_> {
    fn bit(&mut self) -> u32 {
        let byte = self.data[self.pos / 8];
        let b = (byte >> (self.pos % 8)) & 1;
        self.pos += 1;
        u32::from(b)
    }
    fn bits(&mut self, n: u32) -> u32 {
        (0..n).fold(0, |acc, i| acc | (self.bit() << i))
    }
    fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }
}

struct Huffman {
    counts: [u16; 16],
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Huffman {
        let mut counts = [0u16; 16];
        for &l in lengths {
            counts[l as usize] += 1;
        }
        counts[0] = 0;
        let mut symbols = Vec::new();
        for len in 1..16u8 {
            for (sym, &l) in lengths.iter().enumerate() {
                if l == len {
                    symbols.push(sym as u16);
                }
            }
        }
        Huffman { counts, symbols }
    }
    fn decode(&self, r: &mut BitReader<'_>) -> u16 {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= r.bit() as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                return self.symbols[(index + code - first) as usize];
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        panic!("bad Huffman code");
    }
}

const LBASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEXT: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DBASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DEXT: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

impl RefInflate {
    fn new() -> RefInflate {
        RefInflate {
            out: Vec::new(),
            max_distance: 0,
        }
    }

    /// Decodes blocks until the input ends on a block boundary (as it does after a
    /// sync flush) or a final block ends. Returns the bytes this call produced.
    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        let start = self.out.len();
        let mut r = BitReader { data, pos: 0 };
        while r.pos.div_ceil(8) < data.len() {
            let last = r.bit();
            match r.bits(2) {
                0 => {
                    r.align();
                    let len = r.bits(16);
                    let nlen = r.bits(16);
                    assert_eq!(len, !nlen & 0xffff, "stored block length check");
                    for _ in 0..len {
                        let b = r.bits(8) as u8;
                        self.out.push(b);
                    }
                }
                1 => {
                    let mut l = [0u8; 288];
                    l[..144].fill(8);
                    l[144..256].fill(9);
                    l[256..280].fill(7);
                    l[280..].fill(8);
                    self.codes(&mut r, &Huffman::new(&l), &Huffman::new(&[5; 30]));
                }
                2 => {
                    let nlen = r.bits(5) as usize + 257;
                    let ndist = r.bits(5) as usize + 1;
                    let ncode = r.bits(4) as usize + 4;
                    const ORDER: [usize; 19] = [
                        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                    ];
                    let mut cl = [0u8; 19];
                    for &o in &ORDER[..ncode] {
                        cl[o] = r.bits(3) as u8;
                    }
                    let clh = Huffman::new(&cl);
                    let mut lengths = Vec::new();
                    while lengths.len() < nlen + ndist {
                        match clh.decode(&mut r) {
                            s @ 0..=15 => lengths.push(s as u8),
                            16 => {
                                let prev = *lengths.last().expect("repeat without previous");
                                for _ in 0..3 + r.bits(2) {
                                    lengths.push(prev);
                                }
                            }
                            17 => {
                                let n = 3 + r.bits(3) as usize;
                                lengths.resize(lengths.len() + n, 0);
                            }
                            _ => {
                                let n = 11 + r.bits(7) as usize;
                                lengths.resize(lengths.len() + n, 0);
                            }
                        }
                    }
                    let lit = Huffman::new(&lengths[..nlen]);
                    let dist = Huffman::new(&lengths[nlen..]);
                    self.codes(&mut r, &lit, &dist);
                }
                _ => panic!("reserved block type"),
            }
            if last == 1 {
                break;
            }
        }
        self.out[start..].to_vec()
    }

    fn codes(&mut self, r: &mut BitReader<'_>, lit: &Huffman, dist: &Huffman) {
        loop {
            let sym = lit.decode(r) as usize;
            if sym < 256 {
                self.out.push(sym as u8);
            } else if sym == 256 {
                return;
            } else {
                let i = sym - 257;
                let len = LBASE[i] as usize + r.bits(u32::from(LEXT[i])) as usize;
                let d = dist.decode(r) as usize;
                let distance = DBASE[d] as usize + r.bits(u32::from(DEXT[d])) as usize;
                assert!(distance <= self.out.len(), "distance beyond the start");
                self.max_distance = self.max_distance.max(distance);
                for _ in 0..len {
                    let b = self.out[self.out.len() - distance];
                    self.out.push(b);
                }
            }
        }
    }
}

/// Decodes a sequence of compressed messages (as sent, tail stripped) of one
/// direction with the reference decoder; a reset between messages without context
/// takeover shows up as the history being dropped.
fn reference_decode(messages: &[BytesMut], context_takeover: bool) -> (Vec<Vec<u8>>, usize) {
    let mut r = RefInflate::new();
    let mut max_distance = 0;
    let mut out = Vec::new();
    for m in messages {
        if !context_takeover {
            max_distance = max_distance.max(r.max_distance);
            r = RefInflate::new();
        }
        let mut data = m.to_vec();
        data.extend_from_slice(&[0, 0, 0xff, 0xff]);
        out.push(r.feed(&data));
    }
    (out, max_distance.max(r.max_distance))
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: sbits,
        client_max_window_bits: cbits,
    }
}

fn other(role: Role) -> Role {
    match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

/// Deterministic text-like data: words from a small vocabulary, with numbers.
fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "websocket",
        "message",
        "frame",
        "deflate",
        "window",
        "context",
        "server",
        "client",
        "{\"id\":",
        "\"name\":",
        "\"value\":",
        "}",
        "[",
        "],",
        "yamabiko",
        "echo",
    ];
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        if s % 5 == 1 {
            out.extend_from_slice((s % 100_000).to_string().as_bytes());
        } else {
            out.extend_from_slice(WORDS[(s % WORDS.len() as u64) as usize].as_bytes());
        }
        out.push(b' ');
    }
    out.truncate(len);
    out
}

/// Deterministic incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn compress(c: &mut Compressor, msg: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    c.compress_message(msg, &mut out).unwrap();
    out
}

fn inflate(d: &mut Decompressor, wire: &[u8]) -> Result<BytesMut, InflateError> {
    let mut out = BytesMut::new();
    d.decompress(wire, true, &mut out, usize::MAX)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------
// RFC 7692 §7.2.3 examples
// ---------------------------------------------------------------------------------

const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
const HELLO_AGAIN: [u8; 5] = [0xf2, 0x00, 0x11, 0x00, 0x00];

#[test]
fn rfc_hello_compresses_to_the_example() {
    for level in [1, 6, 9] {
        let mut c = Compressor::new(&DeflateParams::default(), Role::Server, level);
        assert_eq!(&compress(&mut c, b"Hello")[..], &HELLO, "level {level}");
    }
}

#[test]
fn rfc_hello_inflates() {
    for role in [Role::Server, Role::Client] {
        let mut d = Decompressor::new(&DeflateParams::default(), role);
        assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
    }
}

#[test]
fn rfc_context_takeover_example() {
    // §7.2.3.2: the second "Hello" refers back into the first.
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
    assert_eq!(&inflate(&mut d, &HELLO_AGAIN).unwrap()[..], b"Hello");
    // Our compressor, with context takeover, sends the second one just as short.
    let mut c = Compressor::new(&DeflateParams::default(), Role::Server, 1);
    let first = compress(&mut c, b"Hello");
    let second = compress(&mut c, b"Hello");
    assert_eq!(&first[..], &HELLO);
    assert!(second.len() < first.len(), "{second:02x?}");
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    assert_eq!(&inflate(&mut d, &first).unwrap()[..], b"Hello");
    assert_eq!(&inflate(&mut d, &second).unwrap()[..], b"Hello");
}

#[test]
fn rfc_context_takeover_is_refused_when_not_agreed() {
    // The server agreed not to use context takeover, so its second "Hello" must not
    // refer to the first; the client resets and rejects the reference.
    let p = params(true, false, 15, 15);
    let mut d = Decompressor::new(&p, Role::Client);
    assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
    let err = inflate(&mut d, &HELLO_AGAIN).unwrap_err();
    assert!(matches!(err, InflateError::Corrupt(_)), "{err:?}");
    assert_eq!(ProtocolError::from(err).close_code().0, 1007);
    // And the decompressor is usable again afterwards.
    assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
}

#[test]
fn rfc_stored_fragmented_and_final_block_examples() {
    let p = DeflateParams::default();
    let mut d = Decompressor::new(&p, Role::Server);
    // §7.2.3.3: no compression.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(&inflate(&mut d, &stored).unwrap()[..], b"Hello");
    // §7.2.3.1 fragmented into two frames.
    let mut out = BytesMut::new();
    d.decompress(&HELLO[..3], false, &mut out, 100).unwrap();
    d.decompress(&HELLO[3..], true, &mut out, 100).unwrap();
    assert_eq!(&out[..], b"Hello");
    // §7.2.3.5: BFINAL set; the next message starts a new stream.
    let fin = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(&inflate(&mut d, &fin).unwrap()[..], b"Hello");
    assert_eq!(&inflate(&mut d, &fin).unwrap()[..], b"Hello");
    assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
    // §7.2.3.4: two DEFLATE blocks in one message.
    let two_blocks = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let mut d = Decompressor::new(&p, Role::Server);
    assert_eq!(&inflate(&mut d, &two_blocks).unwrap()[..], b"Hello");
}

// ---------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------

/// Sends `messages` from `role` under `p` and checks the peer gets them back, that the
/// reference decoder agrees, and that no match reaches past the agreed window.
fn round_trip(p: &DeflateParams, role: Role, level: u32, messages: &[Vec<u8>]) -> Vec<usize> {
    let mut c = Compressor::new(p, role, level);
    let mut d = Decompressor::new(p, other(role));
    let (bits, nct) = match role {
        Role::Server => (p.server_max_window_bits, p.server_no_context_takeover),
        Role::Client => (p.client_max_window_bits, p.client_no_context_takeover),
    };
    let mut wires = Vec::new();
    for m in messages {
        let wire = compress(&mut c, m);
        let back = inflate(&mut d, &wire).unwrap();
        assert_eq!(&back[..], &m[..]);
        wires.push(wire);
    }
    let (decoded, max_distance) = reference_decode(&wires, !nct);
    for (got, want) in decoded.iter().zip(messages) {
        assert_eq!(got, want);
    }
    assert!(
        max_distance <= 1 << bits,
        "distance {max_distance} exceeds 2^{bits} ({p:?}, {role:?}, level {level})"
    );
    wires.iter().map(|w| w.len()).collect()
}

#[test]
fn round_trips_both_roles_with_and_without_context_takeover() {
    let mut messages: Vec<Vec<u8>> = (0..40)
        .map(|i| text(i, [0, 1, 10, 100, 1000, 5000][i as usize % 6]))
        .collect();
    messages.push(noise(7, 3000));
    messages.push(text(99, 70_000)); // more than one stored block and window
    messages.push(Vec::new());
    for role in [Role::Server, Role::Client] {
        for nct in [false, true] {
            for level in [0, 1, 6, 9] {
                let p = params(nct, nct, 15, 15);
                round_trip(&p, role, level, &messages);
            }
        }
    }
}

#[test]
fn all_window_sizes_respect_their_limit() {
    // Text with repeats at all distances: the compressor would love to reach far.
    let long = text(5, 40_000);
    let repeats: Vec<Vec<u8>> = (0..4)
        .map(|i| long[i * 1000..i * 1000 + 6000].to_vec())
        .collect();
    for bits in 8..=15u8 {
        for level in [1, 4, 6, 9] {
            for nct in [false, true] {
                for role in [Role::Server, Role::Client] {
                    let p = params(nct, nct, bits, bits);
                    round_trip(&p, role, level, &repeats);
                }
            }
        }
    }
}

#[test]
fn window_bits_8_uses_zlib_9_and_stays_within_256() {
    let p = params(false, false, 8, 8);
    let c = Compressor::new(&p, Role::Server, 1);
    let d = Decompressor::new(&p, Role::Client);
    assert_eq!((c.window_bits(), d.window_bits()), (9, 9));
    // Long runs of data repeating at distances just above and below 256.
    let mut msg = Vec::new();
    for i in 0..200u32 {
        msg.extend_from_slice(&text(u64::from(i % 3), 300));
    }
    let mut c = Compressor::new(&p, Role::Server, 9);
    let wires = vec![compress(&mut c, &msg), compress(&mut c, &msg)];
    let (decoded, max_distance) = reference_decode(&wires, true);
    assert_eq!(decoded, vec![msg.clone(), msg]);
    assert!(max_distance <= 250, "max distance {max_distance}");
    assert!(
        max_distance > 200,
        "test data did not exercise long matches"
    );
}

#[test]
fn context_takeover_makes_repeats_smaller() {
    let msg = text(3, 2000);
    let msgs = vec![msg.clone(), msg.clone(), msg.clone()];
    for role in [Role::Server, Role::Client] {
        let with = round_trip(&DeflateParams::default(), role, 1, &msgs);
        assert!(with[1] * 5 < with[0], "{with:?}");
        assert!(with[2] * 5 < with[0], "{with:?}");
        let without = round_trip(&params(true, true, 15, 15), role, 1, &msgs);
        assert_eq!(without[0], without[1]);
        assert_eq!(without[1], without[2]);
        assert_eq!(with[0], without[0]);
    }
}

#[test]
fn only_our_direction_resets() {
    // Server resets, client keeps its window: the client's repeats shrink, the
    // server's do not.
    let p = params(true, false, 15, 15);
    let msg = text(4, 1000);
    let msgs = vec![msg.clone(), msg];
    let server = round_trip(&p, Role::Server, 1, &msgs);
    let client = round_trip(&p, Role::Client, 1, &msgs);
    assert_eq!(server[0], server[1]);
    assert!(client[1] * 10 < client[0]);
    assert!(Compressor::new(&p, Role::Server, 1).no_context_takeover());
    assert!(!Compressor::new(&p, Role::Client, 1).no_context_takeover());
    assert!(Decompressor::new(&p, Role::Client).no_context_takeover());
    assert!(!Decompressor::new(&p, Role::Server).no_context_takeover());
}

#[test]
fn empty_messages() {
    for nct in [false, true] {
        let p = params(nct, nct, 15, 15);
        let mut c = Compressor::new(&p, Role::Client, 1);
        let mut d = Decompressor::new(&p, Role::Server);
        // First message, after another one, and twice in a row.
        for msg in [&b""[..], b"Hello", b"", b"", b"Hello", b""] {
            let wire = compress(&mut c, msg);
            if msg.is_empty() {
                assert_eq!(&wire[..], &[0x00], "§7.2.3.6");
            }
            assert_eq!(&inflate(&mut d, &wire).unwrap()[..], msg);
        }
        // A peer that sends the empty message as no bytes at all, over two frames.
        let mut out = BytesMut::new();
        d.decompress(&[], false, &mut out, 10).unwrap();
        d.decompress(&[], true, &mut out, 10).unwrap();
        assert!(out.is_empty());
        let wire = compress(&mut c, b"still in step");
        assert_eq!(&inflate(&mut d, &wire).unwrap()[..], b"still in step");
    }
}

#[test]
fn streaming_compression_matches() {
    let msg = text(11, 50_000);
    for nct in [false, true] {
        let p = params(nct, nct, 15, 15);
        let mut c = Compressor::new(&p, Role::Server, 1);
        let mut d = Decompressor::new(&p, Role::Client);
        for round in 0..3 {
            // Write in uneven pieces, each piece's output as one frame.
            let mut frames = Vec::new();
            let mut rest = &msg[..];
            let mut size = 1;
            while !rest.is_empty() {
                let n = size.min(rest.len());
                let mut out = BytesMut::new();
                c.compress_chunk(&rest[..n], false, &mut out).unwrap();
                frames.push(out);
                rest = &rest[n..];
                size *= 3;
            }
            let mut out = BytesMut::new();
            c.compress_chunk(&[], true, &mut out).unwrap();
            frames.push(out);
            let mut back = BytesMut::new();
            for (i, f) in frames.iter().enumerate() {
                d.decompress(f, i + 1 == frames.len(), &mut back, usize::MAX)
                    .unwrap();
            }
            assert_eq!(&back[..], &msg[..], "round {round}");
        }
    }
}

#[test]
fn set_level_between_messages() {
    let mut c = Compressor::new(&DeflateParams::default(), Role::Client, 1);
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
    let msg = text(12, 20_000);
    let mut sizes = Vec::new();
    for level in [1, 9, 0, 6, 42, 1] {
        c.set_level(level);
        assert_eq!(c.level(), level.min(9));
        // A message that differs from the last, so context does not hide the level.
        let m = text(level.into(), 20_000);
        let wire = compress(&mut c, &m);
        sizes.push(wire.len());
        assert_eq!(&inflate(&mut d, &wire).unwrap()[..], &m[..]);
        let wire = compress(&mut c, &msg);
        assert_eq!(&inflate(&mut d, &wire).unwrap()[..], &msg[..]);
    }
    assert!(sizes[2] > 20_000, "level 0 stores: {sizes:?}");
    assert!(sizes[1] < sizes[0], "level 9 beats level 1: {sizes:?}");
    // A level set mid-message applies from the next message.
    let mut out = BytesMut::new();
    c.compress_chunk(b"abc", false, &mut out).unwrap();
    c.set_level(0);
    c.compress_chunk(b"abc", true, &mut out).unwrap();
    assert_eq!(&inflate(&mut d, &out).unwrap()[..], b"abcabc");
    let wire = compress(&mut c, &msg);
    assert!(wire.len() > msg.len());
    assert_eq!(&inflate(&mut d, &wire).unwrap()[..], &msg[..]);
}

#[test]
fn compressor_reset_keeps_peer_in_step() {
    let mut c = Compressor::new(&DeflateParams::default(), Role::Server, 1);
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let msg = text(13, 3000);
    assert_eq!(
        &inflate(&mut d, &compress(&mut c, &msg)).unwrap()[..],
        &msg[..]
    );
    c.reset();
    assert_eq!(
        &inflate(&mut d, &compress(&mut c, &msg)).unwrap()[..],
        &msg[..]
    );
    assert_eq!(
        &inflate(&mut d, &compress(&mut c, &msg)).unwrap()[..],
        &msg[..]
    );
}

#[test]
fn corrupt_data_is_1007() {
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
    for bad in [
        &[0xffu8, 0xff, 0xff][..],
        &[0x07],
        &[0x00, 0x05, 0x00, 0x00, 0x00, 0x48],
    ] {
        let err = inflate(&mut d, bad).unwrap_err();
        assert!(
            matches!(err, InflateError::Corrupt(_)),
            "{bad:02x?}: {err:?}"
        );
        assert_eq!(
            ProtocolError::from(err.clone()),
            ProtocolError::InvalidCompressedData
        );
        assert!(err.to_string().contains("invalid compressed data"));
        // Usable again after the error.
        assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
    }
    // A reference to data the decompressor never saw (no context kept).
    let mut d = Decompressor::new(&params(false, true, 15, 15), Role::Server);
    assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
    assert!(matches!(
        inflate(&mut d, &HELLO_AGAIN),
        Err(InflateError::Corrupt(_))
    ));
}

// ---------------------------------------------------------------------------------
// Limits and bombs
// ---------------------------------------------------------------------------------

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }
    fn zeros(&mut self, mut bits: u64) {
        while bits > 0 && self.n != 0 {
            self.put(0, 1);
            bits -= 1;
        }
        let n = self.out.len() + (bits / 8) as usize;
        self.out.resize(n, 0);
        self.put(0, (bits % 8) as u32);
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
        self.out
    }
}

/// A message (tail stripped, as sent) inflating to `1 + 258 * repeats` zero bytes at
/// DEFLATE's best ratio: one dynamic block where "length 258" and "distance 1" have
/// 1-bit codes, so each 258 bytes cost two zero bits.
fn bomb(repeats: u64) -> Vec<u8> {
    let mut w = BitWriter {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    w.put(0, 1); // not final
    w.put(2, 2); // dynamic Huffman
    w.put(29, 5); // HLIT: 286 literal/length codes
    w.put(0, 5); // HDIST: 1 distance code
    w.put(14, 4); // HCLEN: 18 code length codes
                  // Code length code lengths in RFC 1951 order 16,17,18,0,8,7,9,6,10,5,11,4,12,3,
                  // 13,2,14,1: symbol 18 gets 1 bit, symbols 2 and 1 get 2 bits.
    for cl in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        w.put(cl, 3);
    }
    // Canonical code length codes: 18 -> 0, 1 -> 10, 2 -> 11.
    let (len1, len2, zeros) = ((0b10, 2), (0b11, 2), (0b0, 1));
    w.code(len2.0, len2.1); // literal 0: 2 bits
    w.code(zeros.0, zeros.1);
    w.put(138 - 11, 7); // literals 1..=138 unused
    w.code(zeros.0, zeros.1);
    w.put(117 - 11, 7); // literals 139..=255 unused
    w.code(len2.0, len2.1); // 256 end of block: 2 bits
    w.code(zeros.0, zeros.1);
    w.put(28 - 11, 7); // lengths 257..=284 unused
    w.code(len1.0, len1.1); // 285 (length 258): 1 bit
    w.code(len1.0, len1.1); // distance code 0 (distance 1): 1 bit
                            // Canonical literal/length codes: 285 -> 0, 0 -> 10, 256 -> 11; distance 0 -> 0.
    w.code(0b10, 2); // literal 0
    w.zeros(2 * repeats); // (length 258, distance 1) pairs
    w.code(0b11, 2); // end of block
    w.put(0, 3); // sync flush: empty stored block header; its 00 00 ff ff is stripped
    w.finish()
}

#[test]
fn bomb_generator_is_valid() {
    let wire = bomb(1000);
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
    let out = inflate(&mut d, &wire).unwrap();
    assert_eq!(out.len(), 1 + 258 * 1000);
    assert!(out.iter().all(|&b| b == 0));
    let (decoded, _) = reference_decode(&[BytesMut::from(&wire[..])], true);
    assert_eq!(decoded[0].len(), out.len());
    // And the decompressor is in step for a following message.
    assert_eq!(&inflate(&mut d, &HELLO).unwrap()[..], b"Hello");
}

#[test]
fn gigabyte_bomb_stops_at_the_limit() {
    // 1 GiB of zeros in ~1 MiB of compressed data, sent as 16 KiB frames.
    let repeats = (1u64 << 30) / 258;
    let wire = bomb(repeats);
    assert!(wire.len() < 1_100_000, "{}", wire.len());
    let limit = 1 << 20;
    let started = Instant::now();
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
    let mut out = BytesMut::new();
    let mut result = Ok(());
    let frames: Vec<&[u8]> = wire.chunks(16 * 1024).collect();
    for (i, frame) in frames.iter().enumerate() {
        result = d.decompress(frame, i + 1 == frames.len(), &mut out, limit);
        assert!(out.len() <= limit);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(InflateError::MessageTooLarge { limit }));
    assert_eq!(out.len(), limit, "everything up to the limit was produced");
    assert!(out.capacity() <= 3 * limit, "capacity {}", out.capacity());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        ProtocolError::from(InflateError::MessageTooLarge { limit })
            .close_code()
            .0,
        1009
    );
}

#[test]
fn ten_kib_bomb_fails_in_the_first_frame() {
    let wire = bomb(10 * 1024 * 4); // ~10 KiB inflating to ~10 MiB
    assert!(wire.len() < 10_400, "{}", wire.len());
    let limit = 64 * 1024;
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let mut out = BytesMut::new();
    let err = d.decompress(&wire, true, &mut out, limit).unwrap_err();
    assert_eq!(err, InflateError::MessageTooLarge { limit });
    assert!(out.len() <= limit);
    // The streaming step API stops the same way, in bounded pieces.
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    let mut input = &wire[..];
    let mut total = 0;
    let err = loop {
        let mut piece = BytesMut::new();
        let result = d.decompress_step(input, true, &mut piece, 4096, limit);
        assert!(piece.len() <= 4096);
        total += piece.len();
        match result {
            Ok(p) => {
                assert_eq!(piece.len(), p.produced);
                input = &input[p.consumed..];
                assert!(!p.finished);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err, InflateError::MessageTooLarge { limit });
    assert_eq!(total, limit);
}

#[test]
fn limit_counts_the_whole_message_and_is_exact() {
    let msg = text(21, 10_000);
    let mut c = Compressor::new(&DeflateParams::default(), Role::Client, 1);
    let wire = compress(&mut c, &msg);
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
    // Exactly at the limit: accepted, also when split across frames.
    let mut out = BytesMut::new();
    let half = wire.len() / 2;
    d.decompress(&wire[..half], false, &mut out, msg.len())
        .unwrap();
    assert!(d.message_len() <= msg.len());
    d.decompress(&wire[half..], true, &mut out, msg.len())
        .unwrap();
    assert_eq!(&out[..], &msg[..]);
    assert_eq!(d.message_len(), 0, "reset for the next message");
    // One byte less: refused, in whichever frame crosses it.
    let mut c = Compressor::new(&DeflateParams::default(), Role::Client, 1);
    let wire = compress(&mut c, &msg);
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
    let mut out = BytesMut::new();
    let limit = msg.len() - 1;
    let r1 = d.decompress(&wire[..half], false, &mut out, limit);
    let r2 = r1.and_then(|()| d.decompress(&wire[half..], true, &mut out, limit));
    assert_eq!(r2, Err(InflateError::MessageTooLarge { limit }));
    assert!(out.len() <= limit);
}

#[test]
fn step_api_hands_out_bounded_pieces() {
    let msgs: Vec<Vec<u8>> = (0..4).map(|i| text(30 + i, 30_000)).collect();
    let mut c = Compressor::new(&DeflateParams::default(), Role::Server, 6);
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    for msg in &msgs {
        let wire = compress(&mut c, msg);
        let frames: Vec<&[u8]> = wire.chunks(777).collect();
        let mut back = Vec::new();
        let mut calls = 0;
        for (i, frame) in frames.iter().enumerate() {
            let fin = i + 1 == frames.len();
            let mut input = *frame;
            loop {
                calls += 1;
                assert!(calls < 10_000);
                let mut piece = BytesMut::new();
                let p = d
                    .decompress_step(input, fin, &mut piece, 1000, usize::MAX)
                    .unwrap();
                assert!(piece.len() <= 1000);
                back.extend_from_slice(&piece);
                input = &input[p.consumed..];
                if p.finished {
                    assert!(input.is_empty());
                    break;
                }
            }
        }
        assert_eq!(&back, msg);
    }
}

#[test]
fn step_api_drains_output_pending_after_the_last_input() {
    // A tiny input holding a lot of output: zlib takes in all of it (and the tail)
    // long before the output is out.
    let msg = vec![0u8; 10_000];
    let mut c = Compressor::new(&DeflateParams::default(), Role::Client, 9);
    let wire = compress(&mut c, &msg);
    assert!(wire.len() < 200, "{}", wire.len());
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Server);
    for _ in 0..2 {
        let mut input = &wire[..];
        let mut back = Vec::new();
        for calls in 0.. {
            assert!(calls < 100);
            let mut piece = BytesMut::new();
            let p = d
                .decompress_step(input, true, &mut piece, 1000, 10_000)
                .unwrap();
            back.extend_from_slice(&piece);
            input = &input[p.consumed..];
            if p.finished {
                break;
            }
        }
        assert_eq!(back.len(), msg.len());
        assert_eq!(d.message_len(), 0);
    }
}

#[test]
fn step_api_with_one_byte_frames() {
    let msg = [vec![0u8; 5000], text(40, 5000), vec![7u8; 3000]].concat();
    let mut c = Compressor::new(&DeflateParams::default(), Role::Server, 9);
    let mut d = Decompressor::new(&DeflateParams::default(), Role::Client);
    for _ in 0..2 {
        let wire = compress(&mut c, &msg);
        let mut back = Vec::new();
        for (i, byte) in wire.iter().enumerate() {
            let fin = i + 1 == wire.len();
            let mut input = std::slice::from_ref(byte);
            for calls in 0.. {
                assert!(calls < 100);
                let mut piece = BytesMut::new();
                let p = d
                    .decompress_step(input, fin, &mut piece, 512, msg.len())
                    .unwrap();
                assert!(piece.len() <= 512);
                back.extend_from_slice(&piece);
                input = &input[p.consumed..];
                if p.finished {
                    break;
                }
            }
        }
        assert_eq!(back, msg);
    }
}
