//! Property tests of the sans-IO codec: any sequence of messages, fragmented any way,
//! with control frames between fragments, fed to the decoder in chunks of any size,
//! comes out identical. This is what catches incremental-parsing bugs.

use bytes::BytesMut;
use proptest::prelude::*;
use yamabiko::proto::encoder::encode_frame;
use yamabiko::proto::{Decoder, DecoderConfig, Incoming, MessageKind, OpCode, Role};

#[derive(Debug, Clone)]
struct Msg {
    kind: MessageKind,
    payload: Vec<u8>,
    /// Fragment boundaries as fractions of the payload, and whether a ping precedes each.
    cuts: Vec<(u16, bool)>,
}

fn msg() -> impl Strategy<Value = Msg> {
    let text = ".{0,300}".prop_map(|s: String| (MessageKind::Text, s.into_bytes()));
    let binary =
        proptest::collection::vec(any::<u8>(), 0..3000).prop_map(|b| (MessageKind::Binary, b));
    (
        prop_oneof![text, binary],
        proptest::collection::vec((any::<u16>(), any::<bool>()), 0..5),
    )
        .prop_map(|((kind, payload), cuts)| Msg {
            kind,
            payload,
            cuts,
        })
}

/// Encodes messages as a client would: masked, fragmented at the cuts, pings between.
fn encode(msgs: &[Msg], role_of_sender: Role) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mask = |i: usize| match role_of_sender {
        Role::Client => Some([(i * 7) as u8, 1, (i * 13) as u8, 3]),
        Role::Server => None,
    };
    let mut n = 0;
    for m in msgs {
        let len = m.payload.len();
        let mut points: Vec<usize> = m
            .cuts
            .iter()
            .map(|(c, _)| if len == 0 { 0 } else { *c as usize % (len + 1) })
            .collect();
        points.sort_unstable();
        points.push(len);
        let mut start = 0;
        for (i, end) in points.iter().copied().enumerate() {
            let opcode = if i == 0 {
                m.kind.opcode()
            } else {
                OpCode::Continuation
            };
            let fin = i == points.len() - 1;
            encode_frame(
                &mut out,
                opcode,
                fin,
                false,
                mask(n),
                &m.payload[start..end],
            );
            n += 1;
            if m.cuts.get(i).is_some_and(|c| c.1) && !fin {
                encode_frame(&mut out, OpCode::Ping, true, false, mask(n), b"between");
                n += 1;
            }
            start = end;
        }
    }
    out.to_vec()
}

fn decode(wire: &[u8], steps: &[usize], role: Role) -> Vec<(MessageKind, Vec<u8>)> {
    let mut d = Decoder::new(DecoderConfig {
        role,
        max_frame_size: 1 << 20,
        max_message_size: 1 << 20,
    });
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < wire.len() {
        let step = steps[i % steps.len()].max(1);
        i += 1;
        let end = (pos + step).min(wire.len());
        buf.extend_from_slice(&wire[pos..end]);
        pos = end;
        while let Some(item) = d.decode(&mut buf).expect("valid stream") {
            match item {
                Incoming::Data {
                    kind,
                    payload,
                    last,
                } => {
                    cur.extend_from_slice(&payload);
                    if last {
                        out.push((kind, std::mem::take(&mut cur)));
                    }
                }
                Incoming::Ping(p) => assert_eq!(&p[..], b"between"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(buf.is_empty());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fragmented_messages_in_random_chunks_roundtrip(
        msgs in proptest::collection::vec(msg(), 1..8),
        steps in proptest::collection::vec(1usize..700, 1..10),
        client_to_server in any::<bool>(),
    ) {
        let (sender, receiver) = if client_to_server {
            (Role::Client, Role::Server)
        } else {
            (Role::Server, Role::Client)
        };
        let wire = encode(&msgs, sender);
        let got = decode(&wire, &steps, receiver);
        let want: Vec<_> = msgs.iter().map(|m| (m.kind, m.payload.clone())).collect();
        prop_assert_eq!(got, want);
    }
}
