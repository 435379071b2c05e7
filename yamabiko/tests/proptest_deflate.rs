//! Property tests of permessage-deflate (RFC 7692), sans-IO: any sequence of messages,
//! compressed under any agreed parameters (window bits 8–15, with and without context
//! takeover in either direction, any level), written in pieces of any size, split
//! into frames, and inflated frame by frame — whole or in output steps of any size —
//! comes out identical. With context takeover the later messages refer back into the
//! earlier ones, so a decompressor that loses or resets its window fails here.

use bytes::BytesMut;
use proptest::prelude::*;
use yamabiko::proto::deflate::{
    client_offer, negotiate_client, negotiate_server, Compressor, Decompressor, DeflateConfig,
};
use yamabiko::proto::Role;

/// Message payloads: compressible text-like bytes (a small alphabet with repeats, so
/// matches reach across messages) or arbitrary bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let words = proptest::collection::vec(
        prop_oneof![
            Just(&b"hello "[..]),
            Just(&b"world "[..]),
            Just(&b"{\"type\":\"post\",\"body\":\""[..]),
            Just(&b"\"}\n"[..]),
            Just(&b"yamabiko "[..]),
        ],
        0..400,
    )
    .prop_map(|w| w.concat());
    let bytes = proptest::collection::vec(any::<u8>(), 0..3000);
    let run = (any::<u8>(), 0usize..70_000).prop_map(|(b, n)| vec![b; n]);
    prop_oneof![4 => words, 2 => bytes, 1 => run]
}

#[derive(Debug, Clone)]
struct Case {
    config: DeflateConfig,
    /// The compressing side (the other side inflates).
    sender: Role,
    /// Messages, each with the cut points of the sender's writes.
    messages: Vec<(Vec<u8>, Vec<u16>)>,
    /// Output step sizes for `decompress_step`; empty: use `decompress`.
    steps: Vec<u16>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (0u32..=9, 8u8..=15, 8u8..=15, any::<bool>(), any::<bool>()),
        any::<bool>(),
        proptest::collection::vec(
            (payload(), proptest::collection::vec(any::<u16>(), 0..4)),
            1..6,
        ),
        prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(1u16..5000, 1..8)
        ],
    )
        .prop_map(
            |((level, sbits, cbits, snct, cnct), client_sends, messages, steps)| Case {
                config: DeflateConfig {
                    level,
                    server_max_window_bits: sbits,
                    client_max_window_bits: cbits,
                    server_no_context_takeover: snct,
                    client_no_context_takeover: cnct,
                    threshold: 0,
                },
                sender: if client_sends {
                    Role::Client
                } else {
                    Role::Server
                },
                messages,
                steps,
            },
        )
}

/// Compresses one message as the pieces between its cut points; each compressor call
/// makes one frame (the first would carry RSV1).
fn compress(tx: &mut Compressor, payload: &[u8], cuts: &[u16]) -> Vec<Vec<u8>> {
    let len = payload.len();
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| if len == 0 { 0 } else { *c as usize % (len + 1) })
        .collect();
    points.sort_unstable();
    points.push(len);
    let mut frames = Vec::new();
    let mut start = 0;
    for (i, end) in points.iter().copied().enumerate() {
        let mut out = BytesMut::new();
        let fin = i == points.len() - 1;
        tx.compress_chunk(&payload[start..end], fin, &mut out)
            .expect("compress");
        frames.push(out.to_vec());
        start = end;
    }
    frames
}

/// Inflates one message's frames, whole or in output steps; checks the limit holds.
fn inflate(rx: &mut Decompressor, frames: &[Vec<u8>], steps: &[u16], limit: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut step = 0;
    for (i, frame) in frames.iter().enumerate() {
        let fin = i == frames.len() - 1;
        if steps.is_empty() {
            rx.decompress(frame, fin, &mut out, limit).expect("inflate");
            continue;
        }
        let mut input = &frame[..];
        // Bounded: every call consumes input or produces output until finished.
        for _ in 0..1_000_000 {
            let max_out = usize::from(steps[step % steps.len()]);
            step += 1;
            let before = out.len();
            let p = rx
                .decompress_step(input, fin, &mut out, max_out, limit)
                .expect("inflate step");
            assert!(p.produced <= max_out);
            assert_eq!(out.len() - before, p.produced);
            input = &input[p.consumed..];
            if p.finished {
                break;
            }
        }
        assert!(input.is_empty(), "frame not consumed");
    }
    assert!(out.len() <= limit);
    out.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Negotiated in a real offer/answer exchange, then many messages round-trip.
    #[test]
    fn messages_round_trip_under_any_parameters(case in case()) {
        let offer = client_offer(&case.config);
        let (server_params, answer) = negotiate_server(&offer, &case.config)
            .expect("offer parses")
            .expect("offer accepted");
        let client_params = negotiate_client(&answer, &case.config)
            .expect("answer parses")
            .expect("answer accepts deflate");
        prop_assert_eq!(server_params, client_params);
        let params = server_params;
        prop_assert_eq!(
            params.server_no_context_takeover,
            case.config.server_no_context_takeover
        );
        prop_assert_eq!(
            params.client_no_context_takeover,
            case.config.client_no_context_takeover
        );

        let receiver = match case.sender {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let mut tx = Compressor::new(&params, case.sender, case.config.level);
        let mut rx = Decompressor::new(&params, receiver);
        for (payload, cuts) in &case.messages {
            let frames = compress(&mut tx, payload, cuts);
            // The limit is exactly the message size: reaching it is not exceeding it.
            let got = inflate(&mut rx, &frames, &case.steps, payload.len());
            prop_assert_eq!(got.len(), payload.len());
            prop_assert!(got == *payload, "message changed in the round trip");
        }
    }

    /// A limit one byte below the message size always fails with MessageTooLarge and
    /// never hands out more than the limit.
    #[test]
    fn the_limit_is_never_exceeded(
        (payload, cuts) in (payload(), proptest::collection::vec(any::<u16>(), 0..4)),
        level in 0u32..=9,
    ) {
        prop_assume!(!payload.is_empty());
        let params = yamabiko::proto::deflate::DeflateParams::default();
        let mut tx = Compressor::new(&params, Role::Client, level);
        let mut rx = Decompressor::new(&params, Role::Server);
        let frames = compress(&mut tx, &payload, &cuts);
        let limit = payload.len() - 1;
        let mut out = BytesMut::new();
        let mut failed = false;
        for (i, frame) in frames.iter().enumerate() {
            match rx.decompress(frame, i == frames.len() - 1, &mut out, limit) {
                Ok(()) => {}
                Err(yamabiko::proto::deflate::InflateError::MessageTooLarge { limit: l }) => {
                    prop_assert_eq!(l, limit);
                    failed = true;
                    break;
                }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
            }
            prop_assert!(out.len() <= limit);
        }
        prop_assert!(failed, "a message over the limit was accepted");
        prop_assert!(out.len() <= limit);
    }
}
