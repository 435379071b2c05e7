//! The invariants the fuzz targets assert, shared by the libFuzzer targets in `fuzz/`
//! (which include this file by path) and by `tests/fuzz_corpus_replay.rs` (which runs
//! every file of the minimised corpora through the same functions under `cargo test`).
//!
//! Each `check_*` function takes arbitrary bytes and panics when an invariant breaks:
//!
//! * [`check_frame_decoder`]: the sans-IO [`Decoder`] fed in arbitrary chunks, both
//!   roles, small limits: every error has a close code valid on the wire, no data
//!   piece or message exceeds the limits, text is valid UTF-8, and the outcome does
//!   not depend on how the bytes were chunked.
//! * [`check_handshake_request`]: `parse_request` + `validate_request` +
//!   `is_same_origin` + `Upgrader::negotiate`: every error response parses back with
//!   its status; every accepted request gets a 101 a client accepts.
//! * [`check_handshake_response`]: `parse_response` + `validate_response`.
//! * [`check_deflate`]: `Sec-WebSocket-Extensions` negotiation (both sides) and
//!   bounded inflate: output never exceeds the limit; compress → inflate round-trips.
//! * [`check_conn`]: a server `Conn` over an in-memory duplex after a real handshake,
//!   fed arbitrary client bytes, echoing what it reads: what it writes back is valid
//!   frames, exactly the echo of what a reference decoder reads from the same bytes,
//!   ending in a close with the right code.
//!
//! Nothing here touches the network; every loop is bounded by the input length.

#![allow(dead_code)] // each fuzz target uses one function

use bytes::BytesMut;
use std::time::Duration;
use yamabiko::proto::deflate::{
    client_offer, negotiate_client, negotiate_server, Compressor, Decompressor, DeflateConfig,
    DeflateParams, InflateError,
};
use yamabiko::proto::handshake::{
    accept_key, build_response, is_same_origin, parse_request, parse_response, validate_request,
    validate_response, HandshakeError,
};
use yamabiko::proto::{CloseCode, CloseFrame, Decoder, DecoderConfig, Incoming, MessageKind};
use yamabiko::{Role, Upgrader};

/// A tiny deterministic generator (xorshift) so one input decides its own chunking.
struct Rng(u64);

impl Rng {
    fn new(seed: &[u8]) -> Rng {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for &b in seed {
            s = (s ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
        Rng(s | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `1..=max`.
    fn size(&mut self, max: usize) -> usize {
        1 + (self.next() % max.max(1) as u64) as usize
    }
}

// ---------------------------------------------------------------------------------
// frame_decoder
// ---------------------------------------------------------------------------------

/// What a decoder made of a byte stream, independent of chunking.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Message(MessageKind, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseFrame>),
    Error(yamabiko::ProtocolError),
}

/// Largest piece the decoder yields while inflating a compressed message.
const INFLATE_PIECE: u64 = 64 * 1024;

/// Feeds `wire` to a fresh decoder (inflating under `deflate` if given) in pieces
/// whose sizes come from `sizes`, checking every item against the limits; returns
/// the chunking-independent events, and whether a message was left unfinished.
fn decode_all(
    config: DecoderConfig,
    deflate: Option<DeflateParams>,
    wire: &[u8],
    mut sizes: impl FnMut() -> usize,
) -> (Vec<Event>, bool) {
    let mut decoder = Decoder::new(config);
    if let Some(params) = deflate {
        decoder.set_decompressor(Decompressor::new(&params, config.role));
    }
    // Inflated pieces are cut at INFLATE_PIECE, uncompressed ones at the frame limit.
    let max_piece = if deflate.is_some() {
        config.max_frame_size.max(INFLATE_PIECE)
    } else {
        config.max_frame_size
    };
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut message: Option<(MessageKind, Vec<u8>)> = None;
    let mut rest = wire;
    // Every item consumes at least one byte or ends a message, and inflating under
    // these limits yields no more pieces than that, so the number of items is bounded.
    let mut budget = 2 * wire.len() + 2;
    while !rest.is_empty() {
        let n = sizes().min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let item = match decoder.decode(&mut buf) {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => {
                    assert!(
                        e.close_code().is_valid_on_wire(),
                        "{e:?} maps to close code {} which may not be sent",
                        e.close_code()
                    );
                    events.push(Event::Error(e));
                    return (events, false);
                }
            };
            budget = budget
                .checked_sub(1)
                .expect("the decoder yields more items than there are bytes");
            match item {
                Incoming::Data {
                    kind,
                    payload,
                    last,
                } => {
                    assert!(
                        payload.len() as u64 <= max_piece,
                        "a data piece of {} bytes passed {max_piece}",
                        payload.len(),
                    );
                    let (k, bytes) = message.get_or_insert_with(|| (kind, Vec::new()));
                    assert_eq!(*k, kind, "the kind changed inside a message");
                    bytes.extend_from_slice(&payload);
                    assert!(
                        bytes.len() as u64 <= config.max_message_size,
                        "a message of {} bytes passed max_message_size {}",
                        bytes.len(),
                        config.max_message_size
                    );
                    if last {
                        let (k, bytes) = message.take().unwrap_or((kind, Vec::new()));
                        if k == MessageKind::Text {
                            assert!(
                                std::str::from_utf8(&bytes).is_ok(),
                                "a text message that is not UTF-8 was accepted"
                            );
                        }
                        events.push(Event::Message(k, bytes));
                    }
                    assert_eq!(decoder.in_message(), message.is_some());
                }
                Incoming::Ping(d) => {
                    assert!(d.len() <= 125, "ping of {} bytes", d.len());
                    events.push(Event::Ping(d.to_vec()));
                }
                Incoming::Pong(d) => {
                    assert!(d.len() <= 125, "pong of {} bytes", d.len());
                    events.push(Event::Pong(d.to_vec()));
                }
                Incoming::Close(frame) => {
                    if let Some(f) = &frame {
                        assert!(f.code.is_valid_on_wire(), "close code {} accepted", f.code);
                        assert!(f.reason.len() <= 123);
                    }
                    assert!(decoder.is_closed());
                    events.push(Event::Close(frame));
                    // Nothing after a close frame is read.
                    assert_eq!(decoder.decode(&mut buf), Ok(None));
                    return (events, false);
                }
            }
        }
    }
    (events, message.is_some())
}

/// Decoder limits and role from the first bytes of a fuzz input.
fn decoder_config(head: [u8; 3]) -> DecoderConfig {
    DecoderConfig {
        role: if head[0] & 1 == 0 {
            Role::Server
        } else {
            Role::Client
        },
        // 0..=1020 and 0..=4080: small enough that inputs hit them.
        max_frame_size: u64::from(head[1]) * 4,
        max_message_size: u64::from(head[2]) * 16,
    }
}

/// permessage-deflate parameters from flag bits (both directions alike).
fn deflate_params(flags: u8) -> DeflateParams {
    let bits = 8 + (flags & 7);
    DeflateParams {
        server_no_context_takeover: flags & 8 != 0,
        client_no_context_takeover: flags & 8 != 0,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    }
}

/// The `frame_decoder` target. Input: a flags byte (bit 0: role; bit 1: inflate
/// permessage-deflate messages; bits 2–5: its parameters), frame limit, message
/// limit, chunking seed, then the wire bytes.
pub fn check_frame_decoder(data: &[u8]) {
    let [a, b, c, seed, wire @ ..] = data else {
        return;
    };
    let config = decoder_config([*a, *b, *c]);
    let deflate = (a & 2 != 0).then(|| deflate_params(a >> 2));
    let max_piece = usize::from(seed % 64) + 1;
    let mut rng = Rng::new(data);
    let (chunked, _) = decode_all(config, deflate, wire, || rng.size(max_piece));
    let (whole, _) = decode_all(config, deflate, wire, || usize::MAX);
    let (bytewise, _) = decode_all(config, deflate, wire, || 1);
    assert_same_outcome(&chunked, &whole, deflate.is_some());
    assert_same_outcome(&bytewise, &whole, deflate.is_some());
}

/// Two decodings of the same bytes in different chunks must agree. Exactly, without
/// compression. With it, the events before a failure must agree but the error may
/// differ: when a compressed text message is both corrupt (or too large) and not
/// UTF-8, which is noticed first depends on how much was inflated per step. Either
/// way the connection fails; only the code (1007 or 1009) and reason may differ.
fn assert_same_outcome(a: &[Event], b: &[Event], compressed: bool) {
    let failed = |e: &[Event]| matches!(e.last(), Some(Event::Error(_)));
    if compressed && failed(a) && failed(b) {
        assert_eq!(
            a[..a.len() - 1],
            b[..b.len() - 1],
            "the outcome depends on the chunking"
        );
    } else {
        assert_eq!(a, b, "the outcome depends on the chunking");
    }
}

// ---------------------------------------------------------------------------------
// handshake_request / handshake_response
// ---------------------------------------------------------------------------------

/// An error response a server writes must be a well-formed HTTP response with the
/// error's status and a body of exactly Content-Length bytes.
fn assert_error_response_parses(e: &HandshakeError) {
    let bytes = e.to_http_response();
    let (resp, head_len) = match parse_response(&bytes, 64 * 1024) {
        Ok(Some(r)) => r,
        other => panic!("error response for {e:?} does not parse: {other:?}"),
    };
    assert_eq!(resp.status().as_u16(), e.status(), "status of {e:?}");
    let len: usize = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    assert_eq!(bytes.len() - head_len, len, "body length of {e:?}");
    let body = &bytes[head_len..];
    assert!(body.ends_with(b"\n") && !body[..body.len() - 1].contains(&b'\n'));
}

/// The `handshake_request` target: the input is what a client sent.
pub fn check_handshake_request(data: &[u8]) {
    for limit in [8192, 64] {
        let parsed = parse_request(data, limit);
        let (req, used) = match parsed {
            Ok(Some(r)) => r,
            Ok(None) => {
                assert!(data.len() < limit, "no verdict on {limit}+ bytes");
                continue;
            }
            Err(e) => {
                assert_error_response_parses(&e);
                continue;
            }
        };
        assert!(used <= data.len() && used <= limit, "head length {used}");
        // The head alone parses to the same length (it does not depend on what follows).
        match parse_request(&data[..used], limit) {
            Ok(Some((_, n))) => assert_eq!(n, used),
            other => panic!("the head alone parses differently: {other:?}"),
        }
        let _ = is_same_origin(&req);
        match validate_request(&req) {
            Err(e) => assert_error_response_parses(&e),
            Ok(offer) => {
                // What we would answer must satisfy a client that sent this key.
                let accept = accept_key(offer.key.as_bytes());
                let response =
                    build_response(&accept, None, None, &yamabiko::http::HeaderMap::new());
                let (resp, n) = match parse_response(&response, 8192) {
                    Ok(Some(r)) => r,
                    other => panic!("our 101 does not parse: {other:?}"),
                };
                assert_eq!(n, response.len());
                assert_eq!(validate_response(&resp, &offer.key, &[], false), Ok(None));
            }
        }
        let upgrader = Upgrader::new()
            .subprotocols(["chat", "superchat"])
            .enable_compression(true);
        match upgrader.negotiate(&req) {
            Err(e) => assert_error_response_parses(&e),
            Ok(negotiated) => {
                let offer = validate_request(&req).expect("negotiate accepted an invalid request");
                let (resp, _) = match parse_response(&negotiated.response, 8192) {
                    Ok(Some(r)) => r,
                    other => panic!("the 101 of negotiate does not parse: {other:?}"),
                };
                let compressed = negotiated.deflate.is_some();
                assert_eq!(
                    validate_response(&resp, &offer.key, &offer.protocols, compressed),
                    Ok(negotiated.subprotocol)
                );
            }
        }
    }
}

/// The `handshake_response` target: the input is what a server answered. The first
/// byte chooses which subprotocols and extensions the client offered.
pub fn check_handshake_response(data: &[u8]) {
    let [flags, wire @ ..] = data else {
        return;
    };
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    let protocols: Vec<String> = match flags & 3 {
        0 => vec![],
        1 => vec!["chat".into()],
        _ => vec!["chat".into(), "superchat".into()],
    };
    let offered_extensions = flags & 4 != 0;
    for limit in [8192, 64] {
        let (resp, used) = match parse_response(wire, limit) {
            Ok(Some(r)) => r,
            Ok(None) => {
                assert!(wire.len() < limit, "no verdict on {limit}+ bytes");
                continue;
            }
            Err(_) => continue,
        };
        assert!(used <= wire.len() && used <= limit);
        if let Ok(Some(p)) = validate_response(&resp, KEY, &protocols, offered_extensions) {
            assert!(protocols.contains(&p), "unoffered subprotocol {p}");
        }
        if offered_extensions {
            let joined = resp
                .headers()
                .get_all("sec-websocket-extensions")
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            let _ = negotiate_client(&joined, &DeflateConfig::default());
        }
    }
}

// ---------------------------------------------------------------------------------
// deflate
// ---------------------------------------------------------------------------------

fn deflate_config(flags: u8, bits: u8) -> DeflateConfig {
    DeflateConfig {
        level: u32::from(flags >> 4) % 10,
        server_max_window_bits: 8 + (bits & 7),
        client_max_window_bits: 8 + ((bits >> 3) & 7),
        server_no_context_takeover: flags & 1 != 0,
        client_no_context_takeover: flags & 2 != 0,
        threshold: 0,
    }
}

/// Negotiation: any header text, both sides. What a server accepts, a client with
/// the default offer understands the same way.
fn check_negotiation(flags: u8, bits: u8, text: &str) {
    let cfg = deflate_config(flags, bits);
    if let Ok(Some((params, response))) = negotiate_server(text, &cfg) {
        for b in [params.server_max_window_bits, params.client_max_window_bits] {
            assert!((8..=15).contains(&b), "window bits {b} agreed");
        }
        assert!(params.server_max_window_bits <= cfg.server_max_window_bits);
        assert!(params.client_max_window_bits <= cfg.client_max_window_bits);
        // The response is a single well-formed extension a client can parse.
        let _ = negotiate_client(&response, &DeflateConfig::default());
    }
    if let Ok(Some(params)) = negotiate_client(text, &cfg) {
        for b in [params.server_max_window_bits, params.client_max_window_bits] {
            assert!((8..=15).contains(&b), "window bits {b} agreed");
        }
        assert!(params.server_max_window_bits <= cfg.server_max_window_bits);
        assert!(params.client_max_window_bits <= cfg.client_max_window_bits);
    }
}

/// The `deflate` target. Input: a mode byte, flags, window bits, a limit byte, then
/// either an extension header (mode bit 0 clear) or frames of compressed data
/// separated by the two bytes `0xff 0x00` ... (mode bit 0 set).
pub fn check_deflate(data: &[u8]) {
    let [mode, flags, bits, limit_byte, rest @ ..] = data else {
        return;
    };
    if mode & 1 == 0 {
        check_negotiation(*flags, *bits, &String::from_utf8_lossy(rest));
        return;
    }
    let params = DeflateParams {
        server_no_context_takeover: flags & 1 != 0,
        client_no_context_takeover: flags & 2 != 0,
        server_max_window_bits: 8 + (bits & 7),
        client_max_window_bits: 8 + ((bits >> 3) & 7),
    };
    let role = if mode & 2 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let limit = usize::from(*limit_byte) * 64 + (usize::from(mode >> 4) << 10);
    check_inflate(&params, role, limit, mode & 4 != 0, rest);
    if mode & 8 != 0 {
        check_deflate_round_trip(&params, role, *flags, rest);
    }
}

/// Splits `rest` into messages (separator `ff 00 00`) and each message into frames
/// (separator `ff 00 01`) and inflates them with `limit`, checking the bound. With
/// `stepwise`, uses `decompress_step` with a small output window.
fn check_inflate(params: &DeflateParams, role: Role, limit: usize, stepwise: bool, rest: &[u8]) {
    let mut d = Decompressor::new(params, role);
    let mut max_out = 1 + rest.len() % 97;
    for message in split_on(rest, &[0xff, 0x00, 0x00]) {
        let frames = split_on(message, &[0xff, 0x00, 0x01]);
        let last = frames.len() - 1;
        let mut out = BytesMut::new();
        let mut failed = false;
        for (i, frame) in frames.into_iter().enumerate() {
            let fin = i == last;
            let result = if stepwise {
                inflate_stepwise(&mut d, frame, fin, &mut out, &mut max_out, limit)
            } else {
                d.decompress(frame, fin, &mut out, limit)
            };
            assert!(
                out.len() <= limit,
                "inflated {} bytes with a limit of {limit}",
                out.len()
            );
            match result {
                Ok(()) => assert_eq!(d.message_len(), if fin { 0 } else { out.len() }),
                Err(InflateError::MessageTooLarge { limit: l }) => {
                    assert_eq!(l, limit);
                    failed = true;
                }
                Err(InflateError::Corrupt(_)) => failed = true,
            }
            if failed {
                break;
            }
        }
        if failed {
            // The connection would be failed; a real peer gets no further messages.
            return;
        }
    }
}

fn inflate_stepwise(
    d: &mut Decompressor,
    mut input: &[u8],
    fin: bool,
    out: &mut BytesMut,
    max_out: &mut usize,
    limit: usize,
) -> Result<(), InflateError> {
    // Each round consumes input or produces output, and output is capped by limit.
    for _ in 0..=(input.len() + limit + 2) {
        let before = out.len();
        let p = d.decompress_step(input, fin, out, *max_out, limit)?;
        assert!(
            p.produced <= *max_out,
            "step produced {} > {max_out}",
            p.produced
        );
        assert_eq!(out.len() - before, p.produced);
        assert!(p.consumed <= input.len());
        input = &input[p.consumed..];
        *max_out = 1 + (*max_out * 7 + 3) % 61;
        if p.finished {
            assert!(
                input.is_empty(),
                "finished with {} bytes unread",
                input.len()
            );
            return Ok(());
        }
    }
    panic!("decompress_step made no progress");
}

fn split_on<'a>(mut data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(i) = data.windows(sep.len()).position(|w| w == sep) {
        parts.push(&data[..i]);
        data = &data[i + sep.len()..];
    }
    parts.push(data);
    parts
}

/// Compressing the input's pieces as messages under `params` and inflating them in
/// the other role gives them back.
fn check_deflate_round_trip(params: &DeflateParams, receiver: Role, flags: u8, rest: &[u8]) {
    let sender = match receiver {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut tx = Compressor::new(params, sender, u32::from(flags >> 4) % 10);
    let mut rx = Decompressor::new(params, receiver);
    for message in split_on(rest, &[0xff, 0x00, 0x00]) {
        let mut wire = BytesMut::new();
        let mut frames = Vec::new();
        let pieces = split_on(message, &[0xff, 0x00, 0x01]);
        let last = pieces.len() - 1;
        for (i, piece) in pieces.iter().enumerate() {
            let start = wire.len();
            tx.compress_chunk(piece, i == last, &mut wire)
                .expect("compressing failed");
            frames.push(start..wire.len());
        }
        let expected: Vec<u8> = pieces.concat();
        let mut out = BytesMut::new();
        let last = frames.len() - 1;
        for (i, range) in frames.into_iter().enumerate() {
            rx.decompress(&wire[range], i == last, &mut out, expected.len())
                .expect("inflating our own compressed message failed");
        }
        assert_eq!(&out[..], &expected[..], "round trip changed the message");
    }
}

// ---------------------------------------------------------------------------------
// conn
// ---------------------------------------------------------------------------------

/// Limits of the server `Conn` in [`check_conn`] (small, so inputs reach them).
pub const CONN_MAX_FRAME: usize = 512;
/// See [`CONN_MAX_FRAME`].
pub const CONN_MAX_MESSAGE: usize = 1024;

const CONN_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The `conn` target: a valid upgrade request followed by the input, written to a
/// server `Conn` (through `Upgrader::upgrade`, compression enabled) that echoes every
/// message. The first input byte chooses the client's permessage-deflate offer
/// (bit 0: offer it; bits 1–7: its parameters); the rest is what the client sends.
pub fn check_conn(data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Nothing in a healthy run waits on a timer: everything is in memory and the
        // client reads while it writes. A hang is a bug.
        match tokio::time::timeout(Duration::from_secs(5), run_conn(data)).await {
            Ok(()) => {}
            Err(_) => panic!("the server connection hung"),
        }
    });
}

/// The client's permessage-deflate wishes from a flags byte (`None`: no offer).
fn conn_deflate_offer(flags: u8) -> Option<DeflateConfig> {
    (flags & 1 != 0).then(|| DeflateConfig {
        level: 1,
        server_max_window_bits: if flags & 2 != 0 {
            8 + ((flags >> 4) & 7)
        } else {
            15
        },
        client_max_window_bits: if flags & 4 != 0 {
            8 + ((flags >> 5) & 7)
        } else {
            15
        },
        server_no_context_takeover: flags & 8 != 0,
        client_no_context_takeover: flags & 0x80 != 0,
        threshold: 0,
    })
}

async fn run_conn(data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let [flags, data @ ..] = data else {
        return;
    };
    let offer = conn_deflate_offer(*flags);
    let (mut client, server_io) = tokio::io::duplex(4096);
    let server = async move {
        let upgrader = Upgrader::new()
            .max_message_size(CONN_MAX_MESSAGE)
            .max_frame_size(CONN_MAX_FRAME)
            .read_buffer_size(256)
            .write_buffer_size(256)
            .enable_compression(true);
        let mut conn = match upgrader.upgrade(server_io).await {
            Ok(c) => c,
            Err(e) => panic!("a valid handshake was refused: {e}"),
        };
        // Bounded: each message read consumes input bytes.
        loop {
            match conn.read_message().await {
                Ok(msg) => {
                    assert!(
                        msg.len() <= CONN_MAX_MESSAGE,
                        "message of {} bytes",
                        msg.len()
                    );
                    if let Err(e) = conn.write_message(msg).await {
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
    };
    let extensions = match &offer {
        Some(cfg) => format!("Sec-WebSocket-Extensions: {}\r\n", client_offer(cfg)),
        None => String::new(),
    };
    let request = format!(
        "GET /fuzz HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {CONN_KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n{extensions}\r\n"
    );
    let client_io = async move {
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let write = async {
            wr.write_all(request.as_bytes()).await?;
            wr.write_all(data).await?;
            wr.shutdown().await
        };
        let read = async {
            let mut out = Vec::new();
            rd.read_to_end(&mut out).await.map(|_| out)
        };
        let (_, out) = tokio::join!(write, read);
        // The server may close before reading everything: writes can fail, reads not.
        out.expect("reading what the server wrote")
    };
    let (server_end, output) = tokio::join!(server, client_io);
    check_conn_output(data, offer.as_ref(), &server_end, &output);
}

/// What the server wrote must be: the 101 response, then exactly the replies a
/// reference decoder predicts from the client's bytes — the echo of each message, a
/// pong per ping, the close echo or the close for the protocol error — and nothing
/// after a close.
fn check_conn_output(
    input: &[u8],
    offer: Option<&DeflateConfig>,
    server_end: &yamabiko::Error,
    output: &[u8],
) {
    let (resp, head_len) = match parse_response(output, 8192) {
        Ok(Some(r)) => r,
        other => panic!("no 101 from the server: {other:?}"),
    };
    assert_eq!(
        validate_response(&resp, CONN_KEY, &[], offer.is_some()),
        Ok(None)
    );
    // Our offers are always acceptable: the server must agree to compression, on
    // terms the client accepts.
    let deflate = offer.map(|cfg| {
        let answer = resp
            .headers()
            .get("sec-websocket-extensions")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match negotiate_client(answer, cfg) {
            Ok(Some(params)) => params,
            other => panic!(
                "offer {:?} answered {answer:?}: {other:?}",
                client_offer(cfg)
            ),
        }
    });
    let frames = &output[head_len..];

    let server_config = DecoderConfig {
        role: Role::Server,
        max_frame_size: CONN_MAX_FRAME as u64,
        max_message_size: CONN_MAX_MESSAGE as u64,
    };
    let (client_events, _) = decode_all(server_config, deflate, input, || usize::MAX);
    let mut expected = Vec::new();
    let failed = matches!(client_events.last(), Some(Event::Error(_)));
    for event in client_events {
        match event {
            Event::Message(kind, bytes) => expected.push(Event::Message(kind, bytes)),
            Event::Ping(d) => expected.push(Event::Pong(d)),
            Event::Pong(_) => {}
            Event::Close(frame) => {
                // The default close handler echoes the code without the reason.
                expected.push(Event::Close(frame.map(|f| CloseFrame::new(f.code, ""))));
            }
            Event::Error(e) => {
                expected.push(Event::Close(Some(CloseFrame::new(
                    e.close_code(),
                    truncated(&e.to_string()),
                ))));
            }
        }
    }

    let client_config = DecoderConfig {
        role: Role::Client,
        max_frame_size: u64::MAX >> 1,
        max_message_size: u64::MAX >> 1,
    };
    let (got, unfinished) = decode_all(client_config, deflate, frames, || usize::MAX);
    assert!(!unfinished, "the server left a message unfinished");
    if let Some(Event::Error(e)) = got.last() {
        panic!("the server wrote an invalid frame ({e}): {got:?}");
    }
    let failing_close = |e: &[Event]| matches!(e.last(), Some(Event::Close(Some(_))));
    if failed && deflate.is_some() && failing_close(&got) && failing_close(&expected) {
        // The server read other chunks than the reference did: with compression the
        // error it found first may differ (see assert_same_outcome); it still failed.
        assert_eq!(
            got[..got.len() - 1],
            expected[..expected.len() - 1],
            "the server's replies differ from the prediction"
        );
    } else {
        assert_eq!(
            got, expected,
            "the server's replies differ from the prediction"
        );
    }
    let close_sent = matches!(got.last(), Some(Event::Close(_)));
    if let Some(Event::Close(Some(f))) = got.last() {
        assert!(f.code.is_valid_on_wire());
    }
    // The error the server's reads ended with agrees with what it sent.
    match server_end {
        yamabiko::Error::Protocol(e) => {
            assert!(close_sent, "protocol error {e} without a close frame");
        }
        yamabiko::Error::Closed(f) if f.code == CloseCode::ABNORMAL => {
            assert!(!close_sent, "a close frame sent on a plain EOF");
        }
        yamabiko::Error::Closed(_) => assert!(close_sent, "a peer's close was not echoed"),
        other => panic!("unexpected end of the server loop: {other:?}"),
    }
}

fn truncated(reason: &str) -> String {
    let mut r = reason.to_owned();
    r.truncate(123);
    r
}
