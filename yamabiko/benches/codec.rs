//! Micro-benchmarks of the protocol core: header codec, unmasking, UTF-8 validation and
//! a whole small-message decode. `cargo bench -p yamabiko --bench codec`.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use yamabiko::proto::encoder::encode_frame;
use yamabiko::proto::frame::{FrameHeader, MAX_HEADER_LEN};
use yamabiko::proto::mask::apply_mask;
use yamabiko::proto::utf8::Utf8Validator;
use yamabiko::proto::{Decoder, DecoderConfig, OpCode, Role};

fn header(c: &mut Criterion) {
    let h = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: OpCode::Binary,
        mask: Some([1, 2, 3, 4]),
        len: 70_000,
    };
    let mut bytes = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut bytes);
    let mut g = c.benchmark_group("header");
    g.bench_function("parse", |b| {
        b.iter(|| FrameHeader::parse(black_box(&bytes[..n])))
    });
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut out = [0u8; MAX_HEADER_LEN];
            black_box(&h).encode(&mut out)
        })
    });
    g.finish();
}

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [1024usize, 64 * 1024, 1 << 20] {
        let mut data = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}"), |b| {
            b.iter(|| apply_mask(black_box(&mut data), [0x37, 0xfa, 0x21, 0x3d], 1))
        });
    }
    g.finish();
}

/// A client's frame: header, then the payload copied and masked into the output.
fn encode_masked(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_masked");
    for size in [20usize, 64 * 1024] {
        let payload = vec![0x5au8; size];
        let mut out = BytesMut::with_capacity(size + MAX_HEADER_LEN);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{size}"), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(
                    &mut out,
                    OpCode::Binary,
                    true,
                    false,
                    Some([0x37, 0xfa, 0x21, 0x3d]),
                    black_box(&payload),
                );
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let text = "WebSocketではクライエントとサーバーのリアルタイム通信ができる. ascii text too! "
        .repeat(20_000);
    let bytes = text.as_bytes();
    let mut g = c.benchmark_group("utf8");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("incremental_64k_chunks", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            for chunk in bytes.chunks(65_521) {
                v.feed(black_box(chunk)).unwrap();
            }
            v.finish().unwrap();
        })
    });
    g.bench_function("std_from_utf8", |b| {
        b.iter(|| std::str::from_utf8(black_box(bytes)).unwrap().len())
    });
    g.finish();
}

fn decode_small(c: &mut Criterion) {
    let mut wire = BytesMut::new();
    for _ in 0..64 {
        encode_frame(
            &mut wire,
            OpCode::Text,
            true,
            false,
            Some([9, 8, 7, 6]),
            b"hello, world 20 byte",
        );
    }
    let wire = wire.freeze();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(64));
    g.bench_function("64_masked_20B_text_messages", |b| {
        b.iter(|| {
            let mut d = Decoder::new(DecoderConfig {
                role: Role::Server,
                max_frame_size: 1 << 24,
                max_message_size: 1 << 26,
            });
            let mut buf = BytesMut::from(&wire[..]);
            let mut n = 0;
            while let Some(item) = d.decode(&mut buf).unwrap() {
                black_box(item);
                n += 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, header, unmask, encode_masked, utf8, decode_small);
criterion_main!(benches);
