//! permessage-deflate throughput: compress and decompress JSON-like messages.
//!
//! `cargo bench -p yamabiko --bench deflate -- --warm-up-time 1 --measurement-time 3`
//!
//! Throughput is in uncompressed bytes per second. Single messages are measured
//! without context takeover (each message stands alone, the common worst case); the
//! `stream` group sends many distinct small messages with context takeover, as a
//! chat or ticker feed does. Compression ratios are printed once at start-up.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use yamabiko::proto::deflate::{Compressor, Decompressor, DeflateParams};
use yamabiko::proto::Role;

/// Deterministic pseudo-random numbers (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// One JSON chat/ticker-like record.
fn record(rng: &mut Rng, out: &mut String) {
    const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    const ROOMS: &[&str] = &["general", "random", "dev", "ops", "announcements"];
    const WORDS: &[&str] = &[
        "the",
        "deploy",
        "is",
        "green",
        "again",
        "after",
        "rollback",
        "websocket",
        "latency",
        "p99",
        "looks",
        "fine",
        "on",
        "shard",
        "restart",
        "please",
        "thanks",
        "queue",
        "backlog",
    ];
    let id = rng.next() % 1_000_000;
    let ts = 1_700_000_000_000 + rng.next() % 10_000_000;
    let mut text = String::new();
    for i in 0..(3 + rng.next() % 12) {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(rng.pick(WORDS));
    }
    out.push_str(&format!(
        "{{\"id\":{id},\"ts\":{ts},\"user\":\"{}\",\"room\":\"{}\",\"text\":\"{text}\",\
         \"price\":{}.{:02},\"tags\":[\"{}\",\"{}\"],\"seen\":{}}}",
        rng.pick(USERS),
        rng.pick(ROOMS),
        rng.next() % 1000,
        rng.next() % 100,
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.next() % 2 == 1,
    ));
}

/// A JSON array of records, about `len` bytes long.
fn json(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut s = String::from("[");
    while s.len() < len {
        if s.len() > 1 {
            s.push(',');
        }
        record(&mut rng, &mut s);
    }
    s.push(']');
    s.into_bytes()
}

fn no_context() -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    }
}

fn compress_once(params: &DeflateParams, level: u32, msg: &[u8]) -> BytesMut {
    let mut c = Compressor::new(params, Role::Server, level);
    let mut out = BytesMut::new();
    c.compress_message(msg, &mut out).expect("compress");
    out
}

fn report_ratios(sizes: &[(&str, usize)]) {
    for &(name, len) in sizes {
        let msg = json(42, len);
        for level in [1, 6, 9] {
            let wire = compress_once(&no_context(), level, &msg);
            eprintln!(
                "ratio {name} level {level}: {} -> {} bytes ({:.1}%)",
                msg.len(),
                wire.len(),
                100.0 * wire.len() as f64 / msg.len() as f64
            );
        }
    }
    let small: Vec<Vec<u8>> = (0..256).map(|i| json(i + 1, 200)).collect();
    for level in [1, 6] {
        for (label, params) in [
            ("context", DeflateParams::default()),
            ("no-context", no_context()),
        ] {
            let mut c = Compressor::new(&params, Role::Server, level);
            let (mut raw, mut wire) = (0, 0);
            for m in &small {
                let mut out = BytesMut::new();
                c.compress_message(m, &mut out).expect("compress");
                raw += m.len();
                wire += out.len();
            }
            eprintln!(
                "ratio 256 x ~200 B messages, {label}, level {level}: {raw} -> {wire} bytes ({:.1}%)",
                100.0 * wire as f64 / raw as f64
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    let sizes = [("16KiB", 16 * 1024), ("1MiB", 1024 * 1024)];
    report_ratios(&sizes);

    let mut g = c.benchmark_group("compress");
    for &(name, len) in &sizes {
        let msg = json(42, len);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        for level in [1, 6] {
            let mut comp = Compressor::new(&no_context(), Role::Server, level);
            let mut out = BytesMut::with_capacity(msg.len());
            g.bench_with_input(
                BenchmarkId::new(format!("level{level}"), name),
                &msg,
                |b, msg| {
                    b.iter(|| {
                        out.clear();
                        comp.compress_message(black_box(msg), &mut out)
                            .expect("compress");
                        black_box(out.len())
                    })
                },
            );
        }
    }
    g.finish();

    let mut g = c.benchmark_group("decompress");
    for &(name, len) in &sizes {
        let msg = json(42, len);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        for level in [1, 6] {
            let wire = compress_once(&no_context(), level, &msg);
            let mut dec = Decompressor::new(&no_context(), Role::Client);
            let mut out = BytesMut::with_capacity(msg.len());
            g.bench_with_input(
                BenchmarkId::new(format!("level{level}"), name),
                &wire,
                |b, wire| {
                    b.iter(|| {
                        out.clear();
                        dec.decompress(black_box(wire), true, &mut out, 64 << 20)
                            .expect("inflate");
                        black_box(out.len())
                    })
                },
            );
        }
    }
    g.finish();

    // Many distinct small messages with context takeover, both directions of work.
    let small: Vec<Vec<u8>> = (0..256).map(|i| json(i + 1, 200)).collect();
    let total: usize = small.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("stream-256x200B");
    g.throughput(Throughput::Bytes(total as u64));
    let params = DeflateParams::default();
    g.bench_function("compress-level1-context", |b| {
        b.iter(|| {
            // A fresh connection per iteration, so every run sees the same data.
            let mut comp = Compressor::new(&params, Role::Server, 1);
            let mut out = BytesMut::with_capacity(512);
            for m in &small {
                out.clear();
                comp.compress_message(m, &mut out).expect("compress");
            }
            black_box(out.len())
        })
    });
    let mut comp = Compressor::new(&params, Role::Server, 1);
    let wires: Vec<BytesMut> = small
        .iter()
        .map(|m| {
            let mut out = BytesMut::new();
            comp.compress_message(m, &mut out).expect("compress");
            out
        })
        .collect();
    g.bench_function("decompress-context", |b| {
        b.iter(|| {
            let mut dec = Decompressor::new(&params, Role::Client);
            let mut out = BytesMut::with_capacity(512);
            for w in &wires {
                out.clear();
                dec.decompress(w, true, &mut out, 1 << 20).expect("inflate");
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
