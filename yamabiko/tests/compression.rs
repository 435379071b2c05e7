//! permessage-deflate (RFC 7692) over loopback TCP: negotiation between the `Dialer`
//! and the `Upgrader`, context takeover, window sizes, switching compression off per
//! connection, streaming writers, `PreparedMessage` broadcast, and the failures a
//! hostile peer can cause (decompression bombs, corrupt data, RSV1 where it is not
//! allowed). Raw clients built from the public sans-IO pieces check what is actually
//! on the wire (RSV1, frame sizes).
//!
//! Everything runs on 127.0.0.1 and every wait is bounded by a timeout.

mod common;

use bytes::BytesMut;
use common::{bounded, join, step, RawClient, RawFrame};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use yamabiko::proto::deflate::{
    client_offer, negotiate_client, Compressor, Decompressor, DeflateParams, InflateError,
};
use yamabiko::proto::encoder::encode_frame;
use yamabiko::proto::handshake::{build_request, generate_key, parse_response, validate_response};
use yamabiko::proto::{OpCode, ProtocolError, Role};
use yamabiko::{
    CloseCode, Conn, DeflateConfig, Dialer, Error, Message, MessageKind, PreparedMessage, Upgrader,
};

/// The decompression-bomb test measures this process's memory; it takes this lock for
/// writing so no other test of this file allocates meanwhile (they take it for
/// reading, and still run in parallel with each other).
static MEMORY_GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const CLOSE_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// A stream that counts the bytes that cross it
// ---------------------------------------------------------------------------------

/// Bytes read from and written to a [`Counted`] stream.
#[derive(Clone, Default, Debug)]
struct Counters {
    read: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl Counters {
    fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

/// Wraps a transport and counts the bytes it carries in each direction.
struct Counted<S> {
    inner: S,
    counters: Counters,
}

impl<S> Counted<S> {
    fn new(inner: S) -> (Self, Counters) {
        let counters = Counters::default();
        let stream = Counted {
            inner,
            counters: counters.clone(),
        };
        (stream, counters)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.counters.read.fetch_add(n as u64, Ordering::Relaxed);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &result {
            self.counters
                .written
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type ServerConn = Conn<Counted<TcpStream>>;
type ClientConn = Conn<Counted<TcpStream>>;

// ---------------------------------------------------------------------------------
// Servers and clients
// ---------------------------------------------------------------------------------

/// Accepts one connection, counts its bytes, upgrades it and runs `handler` on it.
async fn serve_one<F, Fut, R>(
    upgrader: Upgrader,
    handler: F,
) -> (SocketAddr, JoinHandle<(R, Counters)>)
where
    F: FnOnce(ServerConn) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send,
    R: Send + 'static,
{
    let (l, addr) = common::listener().await;
    let task = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.expect("accept");
        let (stream, counters) = Counted::new(tcp);
        let conn = upgrader.upgrade(stream).await.expect("server upgrade");
        (handler(conn).await, counters)
    });
    (addr, task)
}

/// What an echo server saw.
#[derive(Debug)]
struct Echoed {
    negotiated: bool,
    messages: usize,
    end: Error,
}

/// Echoes every message until reading fails.
async fn echo(mut conn: ServerConn) -> Echoed {
    let negotiated = conn.compression_negotiated();
    let mut messages = 0;
    // Bounded by the tests' message counts; the client ends it by closing.
    for _ in 0..100_000 {
        match conn.read_message().await {
            Ok(m) => {
                messages += 1;
                if let Err(e) = conn.write_message(m).await {
                    return Echoed {
                        negotiated,
                        messages,
                        end: e,
                    };
                }
            }
            Err(end) => {
                return Echoed {
                    negotiated,
                    messages,
                    end,
                }
            }
        }
    }
    panic!("echo server: too many messages");
}

async fn echo_server(upgrader: Upgrader) -> (SocketAddr, JoinHandle<(Echoed, Counters)>) {
    serve_one(upgrader, echo).await
}

/// Dials `addr` with `dialer` over a counted TCP stream.
async fn dial(dialer: &Dialer, addr: SocketAddr) -> (ClientConn, http::Response<()>, Counters) {
    let tcp = step("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let (stream, counters) = Counted::new(tcp);
    let (conn, response) = step(
        "client handshake",
        dialer.dial_with_stream(stream, &format!("ws://{addr}/")),
    )
    .await
    .expect("client handshake");
    (conn, response, counters)
}

/// The `Sec-WebSocket-Extensions` tokens of a response, split on `;` and trimmed.
fn extension_params(response: &http::Response<()>) -> Vec<String> {
    response
        .headers()
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Sends `msg`, reads the echo and checks it.
async fn round_trip(conn: &mut ClientConn, msg: Message) {
    step("write", conn.write_message(msg.clone()))
        .await
        .expect("write");
    let back = step("echo", conn.read_message()).await.expect("read echo");
    assert_eq!(back.kind(), msg.kind(), "kind of the echo");
    assert!(
        back.as_bytes() == msg.as_bytes(),
        "echo differs: {} bytes sent, {} back",
        msg.len(),
        back.len()
    );
}

/// Closes the client and checks that the echo server ended with the client's close.
async fn finish(conn: ClientConn, server: JoinHandle<(Echoed, Counters)>) -> (Echoed, Counters) {
    step(
        "close handshake",
        conn.close_with(CloseCode::NORMAL, "bye", CLOSE_WAIT),
    )
    .await
    .expect("close handshake");
    let (echoed, counters) = join(server).await;
    match &echoed.end {
        Error::Closed(f) => assert_eq!(f.code, CloseCode::NORMAL, "server end"),
        e => panic!("echo server ended with {e:?}"),
    }
    (echoed, counters)
}

/// A raw client that negotiated permessage-deflate and compresses and inflates with
/// the sans-IO codec, so tests see and shape the exact frames.
struct DeflateClient {
    raw: RawClient,
    params: DeflateParams,
    tx: Compressor,
    rx: Decompressor,
}

impl DeflateClient {
    /// Connects, offers `client_offer(cfg)` and requires the server to accept.
    async fn connect(addr: SocketAddr, cfg: &DeflateConfig) -> DeflateClient {
        let (raw, params) = Self::handshake(addr, Some(&client_offer(cfg)), cfg).await;
        let params = params.expect("the server accepted permessage-deflate");
        DeflateClient {
            raw,
            params,
            tx: Compressor::new(&params, Role::Client, cfg.level),
            rx: Decompressor::new(&params, Role::Client),
        }
    }

    /// The handshake with `offer` in `Sec-WebSocket-Extensions`; returns the agreed
    /// parameters (`None`: the server declined).
    async fn handshake(
        addr: SocketAddr,
        offer: Option<&str>,
        cfg: &DeflateConfig,
    ) -> (RawClient, Option<DeflateParams>) {
        let mut tcp = step("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        let key = generate_key();
        let request = build_request(
            &addr.to_string(),
            "/",
            &key,
            &[],
            offer,
            &http::HeaderMap::new(),
        );
        let mut buf = BytesMut::with_capacity(1024);
        let response = step("raw handshake", async {
            tcp.write_all(&request).await.expect("write request");
            loop {
                if let Some((r, used)) = parse_response(&buf, 8192).expect("valid response") {
                    let _ = buf.split_to(used);
                    return r;
                }
                let n = tcp.read_buf(&mut buf).await.expect("read response");
                assert_ne!(n, 0, "server closed during the handshake");
            }
        })
        .await;
        validate_response(&response, &key, &[], offer.is_some()).expect("valid 101");
        let answer = response
            .headers()
            .get_all("sec-websocket-extensions")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let params = negotiate_client(&answer, cfg).expect("acceptable extension answer");
        (RawClient { tcp, buf }, params)
    }

    /// Sends `payload` compressed by `self.tx` as `fragments` masked frames (RSV1 on
    /// the first).
    async fn send_compressed(&mut self, opcode: OpCode, payload: &[u8], fragments: usize) {
        let wire = compressed_frames(&mut self.tx, opcode, payload, fragments);
        self.raw.send_raw(&wire).await;
    }

    /// Reads the frames of the next data message; returns them with the message
    /// (inflated when the first frame had RSV1).
    async fn recv_message(&mut self) -> (Vec<RawFrame>, Vec<u8>) {
        let mut frames = Vec::new();
        // Bounded: the tests' messages have at most a few thousand fragments.
        for _ in 0..10_000 {
            let f = self.raw.recv_frame().await;
            assert!(
                !f.header.opcode.is_control(),
                "unexpected control frame {f:?}"
            );
            let fin = f.header.fin;
            frames.push(f);
            if fin {
                let compressed = frames[0].header.rsv1;
                let mut message = BytesMut::new();
                for (i, f) in frames.iter().enumerate() {
                    if compressed {
                        let last = i == frames.len() - 1;
                        self.rx
                            .decompress(&f.payload, last, &mut message, 1 << 30)
                            .expect("server data inflates");
                    } else {
                        message.extend_from_slice(&f.payload);
                    }
                }
                return (frames, message.to_vec());
            }
        }
        panic!("message with too many fragments");
    }
}

/// Compresses `payload` with `tx` into `fragments` masked client frames, RSV1 on the
/// first only.
fn compressed_frames(
    tx: &mut Compressor,
    opcode: OpCode,
    payload: &[u8],
    fragments: usize,
) -> Vec<u8> {
    let piece = payload.len().div_ceil(fragments.max(1)).max(1);
    let pieces: Vec<&[u8]> = if payload.is_empty() {
        vec![&[][..]]
    } else {
        payload.chunks(piece).collect()
    };
    let mut wire = BytesMut::new();
    for (i, p) in pieces.iter().enumerate() {
        let fin = i == pieces.len() - 1;
        let mut out = BytesMut::new();
        tx.compress_chunk(p, fin, &mut out).expect("compress");
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        encode_frame(
            &mut wire,
            op,
            fin,
            i == 0,
            Some([0x5a, 0x17, 0xc3, 0x08]),
            &out,
        );
    }
    wire.to_vec()
}

/// A raw masked frame with RSV1 set.
fn rsv1_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    encode_frame(
        &mut wire,
        opcode,
        fin,
        true,
        Some([0x01, 0x02, 0x03, 0x04]),
        payload,
    );
    wire.to_vec()
}

// ---------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------

/// Highly repetitive text (compresses to a small fraction).
fn repetitive_text(len: usize) -> String {
    const LINE: &str = "The quick brown fox jumps over the lazy dog; 0123456789.\n";
    LINE.chars().cycle().take(len).collect()
}

/// JSON-like text that differs from message to message.
fn chat_line(i: usize) -> String {
    format!(
        "{{\"id\":{i},\"user\":\"user-{}\",\"room\":\"lobby\",\"text\":\"message number {i}, \
         which says much the same as the one before it\",\"ts\":{}}}",
        i % 7,
        1_700_000_000 + i * 13
    )
}

/// Pseudo-random bytes (xorshift): DEFLATE cannot shrink them on their own.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A `block_len`-byte noise block repeated to `len` bytes: compressible only by a
/// window of more than `block_len` bytes.
fn repeated_noise(block_len: usize, len: usize, seed: u64) -> Vec<u8> {
    let block = noise(block_len, seed);
    block.iter().copied().cycle().take(len).collect()
}

fn compression(f: impl FnOnce(&mut DeflateConfig)) -> DeflateConfig {
    let mut c = DeflateConfig::default();
    f(&mut c);
    c
}

// ---------------------------------------------------------------------------------
// Negotiation and round trips
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn round_trip_compressed_both_ways() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new().enable_compression(true)).await;
        let dialer = Dialer::new().enable_compression(true);
        let (mut conn, response, client_bytes) = dial(&dialer, addr).await;
        assert!(conn.compression_negotiated(), "client side");
        assert_eq!(
            extension_params(&response).first().map(String::as_str),
            Some("permessage-deflate")
        );

        let big = repetitive_text(1 << 20);
        round_trip(&mut conn, Message::text(big.clone())).await;
        // Small and empty messages, text and binary, on the same compressed stream.
        round_trip(&mut conn, Message::text("hi")).await;
        round_trip(&mut conn, Message::text("")).await;
        round_trip(&mut conn, Message::binary(noise(100_000, 1))).await;
        round_trip(&mut conn, Message::binary(Vec::new())).await;
        round_trip(&mut conn, Message::text(big)).await;

        let (echoed, server_bytes) = finish(conn, server).await;
        assert!(echoed.negotiated, "server side");
        assert_eq!(echoed.messages, 6);
        // 2 MiB of text and 100 kB of noise went each way.
        let limit = 100_000 + 200_000;
        assert!(
            server_bytes.read() < limit,
            "server read {} bytes: the client did not compress",
            server_bytes.read()
        );
        assert!(
            server_bytes.written() < limit,
            "server wrote {} bytes: it did not compress",
            server_bytes.written()
        );
        assert_eq!(client_bytes.written(), server_bytes.read());
        assert_eq!(client_bytes.read(), server_bytes.written());
    })
    .await;
}

#[tokio::test]
async fn context_takeover_on_and_off() {
    let _gate = MEMORY_GATE.read().await;
    // (client preferences, server preferences, server keeps its window, client keeps
    // its window)
    let cases = [
        (
            DeflateConfig::default(),
            DeflateConfig::default(),
            true,
            true,
        ),
        (
            compression(|c| c.server_no_context_takeover = true),
            DeflateConfig::default(),
            false,
            true,
        ),
        (
            DeflateConfig::default(),
            compression(|c| c.client_no_context_takeover = true),
            true,
            false,
        ),
        (
            compression(|c| c.client_no_context_takeover = true),
            compression(|c| c.server_no_context_takeover = true),
            false,
            false,
        ),
    ];
    bounded(async {
        for (i, (client_cfg, server_cfg, server_takeover, client_takeover)) in
            cases.into_iter().enumerate()
        {
            let (addr, server) = echo_server(Upgrader::new().compression(Some(server_cfg))).await;
            let dialer = Dialer::new().compression(Some(client_cfg));
            let (mut conn, response, bytes) = dial(&dialer, addr).await;
            assert!(conn.compression_negotiated(), "case {i}");
            let params = extension_params(&response);
            assert_eq!(
                params.iter().any(|p| p == "server_no_context_takeover"),
                !server_takeover,
                "case {i}: {params:?}"
            );
            assert_eq!(
                params.iter().any(|p| p == "client_no_context_takeover"),
                !client_takeover,
                "case {i}: {params:?}"
            );

            // Many messages: chat lines in between, and the same 2 KiB of noise 100
            // times, which only a kept window can shrink.
            let repeated = Message::binary(noise(2048, 7));
            let mut noise_bytes = (0u64, 0u64); // (written, read) for the noise
            for n in 0..100 {
                round_trip(&mut conn, Message::text(chat_line(n))).await;
                let (w, r) = (bytes.written(), bytes.read());
                round_trip(&mut conn, repeated.clone()).await;
                noise_bytes.0 += bytes.written() - w;
                noise_bytes.1 += bytes.read() - r;
            }
            let (echoed, _) = finish(conn, server).await;
            assert_eq!(echoed.messages, 200, "case {i}");

            // 100 × 2 KiB = 200 KiB of noise each way.
            for (dir, bytes, takeover) in [
                ("client to server", noise_bytes.0, client_takeover),
                ("server to client", noise_bytes.1, server_takeover),
            ] {
                if takeover {
                    assert!(
                        bytes < 40_000,
                        "case {i}, {dir}: {bytes} bytes with takeover"
                    );
                } else {
                    assert!(
                        bytes > 200_000,
                        "case {i}, {dir}: {bytes} bytes without takeover"
                    );
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn window_bits_8_9_and_15() {
    let _gate = MEMORY_GATE.read().await;
    let both = |bits: u8| {
        compression(|c| {
            c.server_max_window_bits = bits;
            c.client_max_window_bits = bits;
        })
    };
    // (client preferences, server preferences, agreed window bits client to server,
    // server to client)
    let cases = [
        (both(8), both(8), 8u8, 8u8),
        (both(9), both(9), 9, 9),
        (both(15), both(15), 15, 15),
        // Only the server asks for small windows, in both directions.
        (DeflateConfig::default(), both(9), 9, 9),
        // Only the client asks, for the server's window.
        (
            compression(|c| c.server_max_window_bits = 9),
            DeflateConfig::default(),
            15,
            9,
        ),
        // Only the client limits its own window.
        (
            compression(|c| c.client_max_window_bits = 9),
            DeflateConfig::default(),
            9,
            15,
        ),
    ];
    bounded(async {
        for (i, (client_cfg, server_cfg, up, down)) in cases.into_iter().enumerate() {
            let (addr, server) = echo_server(Upgrader::new().compression(Some(server_cfg))).await;
            let (mut conn, response, bytes) =
                dial(&Dialer::new().compression(Some(client_cfg)), addr).await;
            assert!(conn.compression_negotiated());
            let params = extension_params(&response);
            for (p, bits) in [
                ("server_max_window_bits", down),
                ("client_max_window_bits", up),
            ] {
                if bits < 15 {
                    assert!(
                        params.contains(&format!("{p}={bits}")),
                        "case {i}: {params:?}"
                    );
                }
            }

            // A 4 KiB block repeated: only a 32 KiB window finds the repeats.
            let msg = Message::binary(repeated_noise(4096, 64 * 1024, i as u64));
            let (w, r) = (bytes.written(), bytes.read());
            round_trip(&mut conn, msg).await;
            let (w, r) = (bytes.written() - w, bytes.read() - r);
            for (dir, bytes, bits) in [("up", w, up), ("down", r, down)] {
                if bits == 15 {
                    assert!(bytes < 8192, "case {i} {dir}: {bytes} bytes with 15 bits");
                } else {
                    assert!(
                        bytes > 60_000,
                        "case {i} {dir}: {bytes} bytes with {bits} bits"
                    );
                }
            }
            // Repeats at distances around the window size, and many messages with
            // context takeover across them.
            for (n, block) in [100usize, 250, 300, 511, 600, 1000, 20_000]
                .iter()
                .enumerate()
            {
                let len = block * 5 + 77;
                round_trip(
                    &mut conn,
                    Message::binary(repeated_noise(*block, len, n as u64)),
                )
                .await;
                round_trip(&mut conn, Message::text(chat_line(n))).await;
                round_trip(&mut conn, Message::text(repetitive_text(len))).await;
            }
            let (echoed, _) = finish(conn, server).await;
            assert_eq!(echoed.messages, 22);
        }
    })
    .await;
}

#[tokio::test]
async fn server_without_compression_declines_the_offer() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new()).await;
        let dialer = Dialer::new().enable_compression(true);
        let (mut conn, response, _) = dial(&dialer, addr).await;
        assert!(!conn.compression_negotiated());
        assert!(
            response.headers().get("sec-websocket-extensions").is_none(),
            "{response:?}"
        );
        let big = repetitive_text(256 * 1024);
        round_trip(&mut conn, Message::text(big.clone())).await;
        round_trip(&mut conn, Message::text("small")).await;
        let (echoed, bytes) = finish(conn, server).await;
        assert!(!echoed.negotiated);
        assert!(bytes.read() > big.len() as u64);
        assert!(bytes.written() > big.len() as u64);
    })
    .await;
}

#[tokio::test]
async fn client_without_offer_gets_no_compression() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new().enable_compression(true)).await;
        let (mut conn, response, _) = dial(&Dialer::new(), addr).await;
        assert!(!conn.compression_negotiated());
        assert!(response.headers().get("sec-websocket-extensions").is_none());
        let big = repetitive_text(256 * 1024);
        round_trip(&mut conn, Message::text(big.clone())).await;
        let (echoed, bytes) = finish(conn, server).await;
        assert!(!echoed.negotiated);
        assert!(bytes.read() > big.len() as u64);
        assert!(bytes.written() > big.len() as u64, "the server compressed");

        // The same with a raw client: no offer, no RSV1.
        let (addr, server) = serve_one(
            Upgrader::new().enable_compression(true),
            |mut c| async move {
                c.write_message(Message::text(repetitive_text(10_000)))
                    .await
            },
        )
        .await;
        let mut raw = RawClient::connect(addr).await;
        let f = raw.recv_frame().await;
        assert!(!f.header.rsv1);
        assert_eq!(f.payload, repetitive_text(10_000).as_bytes());
        join(server).await.0.expect("server write");
    })
    .await;
}

// ---------------------------------------------------------------------------------
// Per-connection switches, on the wire
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn write_compression_switch_and_level_on_the_wire() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let text = repetitive_text(20_000);
        let sent = text.clone();
        let (addr, server) = serve_one(
            Upgrader::new().enable_compression(true),
            |mut c| async move {
                assert!(c.compression_negotiated());
                c.enable_write_compression(false);
                c.write_text(sent.clone()).await?;
                c.enable_write_compression(true);
                c.write_text(sent.clone()).await?;
                c.set_compression_level(9);
                c.write_text(sent.clone()).await?;
                c.set_compression_level(0);
                c.write_text(sent.clone()).await?;
                c.set_compression_level(9);
                c.write_text("short").await?; // below the 64-byte threshold
                c.write_binary(noise(5000, 3)).await?;
                // Switched off, compressed messages from the peer are still read.
                c.enable_write_compression(false);
                let m = c.read_message().await?;
                c.write_message(m).await?;
                let end = c.read_message().await;
                Ok::<_, Error>(end)
            },
        )
        .await;
        let mut client = DeflateClient::connect(addr, &DeflateConfig::default()).await;

        let (frames, msg) = client.recv_message().await;
        assert!(!frames[0].header.rsv1, "compression switched off");
        assert_eq!(frames[0].payload.len(), text.len());
        assert_eq!(msg, text.as_bytes());

        let (frames, msg) = client.recv_message().await;
        assert!(frames[0].header.rsv1, "compression switched on");
        assert!(frames[0].payload.len() < text.len() / 5);
        assert_eq!(msg, text.as_bytes());

        let (frames, msg) = client.recv_message().await;
        assert!(frames[0].header.rsv1, "level 9");
        assert_eq!(msg, text.as_bytes());

        let (frames, msg) = client.recv_message().await;
        assert!(frames[0].header.rsv1, "level 0");
        // Level 0 stores: no smaller than the text itself.
        assert!(frames[0].payload.len() >= text.len(), "level 0 compressed");
        assert_eq!(msg, text.as_bytes());

        let (frames, msg) = client.recv_message().await;
        assert!(!frames[0].header.rsv1, "below the threshold");
        assert_eq!(msg, b"short");

        let (frames, msg) = client.recv_message().await;
        assert!(frames[0].header.rsv1, "binary, level 9");
        assert_eq!(msg, noise(5000, 3));

        client
            .send_compressed(OpCode::Text, text.as_bytes(), 3)
            .await;
        let (frames, msg) = client.recv_message().await;
        assert!(!frames[0].header.rsv1, "echo with compression off");
        assert_eq!(msg, text.as_bytes());

        client.raw.send_close(1000, b"").await;
        let f = client.raw.recv_frame().await;
        assert_eq!(f.close_code(), Some(CloseCode::NORMAL));
        let (end, _) = join(server).await;
        assert!(matches!(end, Ok(Err(Error::Closed(_)))), "{end:?}");
        assert!(!client.params.server_no_context_takeover);
    })
    .await;
}

#[tokio::test]
async fn streaming_writer_compresses_across_fragments() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let text = repetitive_text(200_000);
        let bin = noise(50_000, 9);
        let (t, b) = (text.clone(), bin.clone());
        let upgrader = Upgrader::new()
            .enable_compression(true)
            .write_buffer_size(4096);
        let (addr, server) = serve_one(upgrader, |mut c| async move {
            let mut w = c.next_writer(MessageKind::Text);
            for chunk in t.as_bytes().chunks(1000) {
                w.write_all(chunk).await?;
            }
            w.finish().await?;
            let mut w = c.next_writer(MessageKind::Binary);
            for chunk in b.chunks(3000) {
                w.write_all(chunk).await?;
            }
            w.finish().await?;
            // A streamed message of one (final) fragment, below the threshold.
            let mut w = c.next_writer(MessageKind::Text);
            w.write_all(b"ok").await?;
            w.finish().await?;
            Ok::<_, Error>(c.read_message().await)
        })
        .await;
        let mut client = DeflateClient::connect(addr, &DeflateConfig::default()).await;
        for (expected, kind) in [
            (text.as_bytes(), OpCode::Text),
            (&bin[..], OpCode::Binary),
            (b"ok", OpCode::Text),
        ] {
            let (frames, msg) = client.recv_message().await;
            assert_eq!(frames[0].header.opcode, kind);
            assert!(frames[0].header.rsv1, "RSV1 on the first frame");
            for f in &frames[1..] {
                assert_eq!(f.header.opcode, OpCode::Continuation);
                assert!(!f.header.rsv1, "RSV1 on a continuation frame");
            }
            if expected.len() > 4096 {
                assert!(frames.len() > 2, "{} frames", frames.len());
            }
            assert_eq!(msg, expected);
        }
        client.raw.send_close(1000, b"").await;
        let _ = client.raw.recv_frame().await;
        let (end, _) = join(server).await;
        assert!(matches!(end, Ok(Err(Error::Closed(_)))), "{end:?}");

        // And from a client (masked, client compressor) to an echo server.
        let (addr, server) = echo_server(Upgrader::new().enable_compression(true)).await;
        let dialer = Dialer::new()
            .enable_compression(true)
            .write_buffer_size(1024);
        let (mut conn, _, bytes) = dial(&dialer, addr).await;
        for _ in 0..3 {
            let mut w = conn.next_writer(MessageKind::Text);
            for chunk in text.as_bytes().chunks(777) {
                step("stream write", w.write_all(chunk))
                    .await
                    .expect("write");
            }
            step("finish", w.finish()).await.expect("finish");
            let back = step("echo", conn.read_message()).await.expect("echo");
            assert!(back.as_bytes() == text.as_bytes());
        }
        assert!(bytes.written() < 3 * text.len() as u64 / 5);
        finish(conn, server).await;
    })
    .await;
}

#[tokio::test]
async fn control_frames_between_compressed_fragments() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let (addr, server) = echo_server(Upgrader::new().enable_compression(true)).await;
        let mut c = DeflateClient::connect(addr, &DeflateConfig::default()).await;
        let text = repetitive_text(30_000);
        for round in 0..3 {
            let mut wire = BytesMut::new();
            let pieces: Vec<&[u8]> = text.as_bytes().chunks(10_000).collect();
            for (i, p) in pieces.iter().enumerate() {
                let fin = i == pieces.len() - 1;
                let mut out = BytesMut::new();
                c.tx.compress_chunk(p, fin, &mut out).expect("compress");
                let op = if i == 0 {
                    OpCode::Text
                } else {
                    OpCode::Continuation
                };
                encode_frame(&mut wire, op, fin, i == 0, Some([3, 1, 4, 1]), &out);
                if !fin {
                    let ping = format!("ping {round}.{i}");
                    encode_frame(
                        &mut wire,
                        OpCode::Ping,
                        true,
                        false,
                        Some([2, 7, 1, 8]),
                        ping.as_bytes(),
                    );
                }
            }
            c.raw.send_raw(&wire).await;
            for i in 0..pieces.len() - 1 {
                let pong = c.raw.recv_frame().await;
                assert_eq!(pong.header.opcode, OpCode::Pong);
                assert_eq!(pong.payload, format!("ping {round}.{i}").as_bytes());
            }
            let (frames, msg) = c.recv_message().await;
            assert!(frames[0].header.rsv1);
            assert_eq!(msg, text.as_bytes());
        }
        c.raw.send_close(1000, b"").await;
        let close = c.raw.recv_frame().await;
        assert_eq!(close.close_code(), Some(CloseCode::NORMAL));
        let (echoed, _) = join(server).await;
        assert_eq!(echoed.messages, 3);
    })
    .await;
}

// ---------------------------------------------------------------------------------
// PreparedMessage
// ---------------------------------------------------------------------------------

/// Accepts `n` connections (counting each one's bytes), sends every message to every
/// connection with `write_prepared`, then closes them all with the close handshake.
/// Connection `level9` (by accept order) compresses at level 9.
async fn broadcast_server(
    upgrader: Upgrader,
    n: usize,
    level9: Option<usize>,
    messages: Vec<PreparedMessage>,
) -> (SocketAddr, JoinHandle<Vec<(bool, Counters)>>) {
    let (l, addr) = common::listener().await;
    let task = tokio::spawn(async move {
        let mut conns = Vec::new();
        for i in 0..n {
            let (tcp, _) = l.accept().await.expect("accept");
            let (stream, counters) = Counted::new(tcp);
            let mut conn = upgrader.upgrade(stream).await.expect("upgrade");
            if level9 == Some(i) {
                conn.set_compression_level(9);
            }
            conns.push((conn, counters));
        }
        for m in &messages {
            for (conn, _) in &mut conns {
                conn.write_prepared(m).await.expect("write_prepared");
            }
        }
        let mut out = Vec::new();
        for (conn, counters) in conns {
            let negotiated = conn.compression_negotiated();
            conn.close_with(CloseCode::NORMAL, "", CLOSE_WAIT)
                .await
                .expect("close handshake");
            out.push((negotiated, counters));
        }
        out
    });
    (addr, task)
}

/// Reads messages until the close, answering it.
async fn read_all(mut conn: ClientConn) -> Vec<Message> {
    let mut got = Vec::new();
    for _ in 0..100 {
        match conn.read_message().await {
            Ok(m) => got.push(m),
            Err(Error::Closed(f)) => {
                assert_eq!(f.code, CloseCode::NORMAL);
                return got;
            }
            Err(e) => panic!("client read: {e:?}"),
        }
    }
    panic!("too many messages");
}

#[tokio::test]
async fn prepared_message_broadcast_mixed_connections() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let big = Message::text(repetitive_text(300_000));
        let lines = Message::text((0..1500).map(chat_line).collect::<Vec<_>>().join("\n"));
        let small = Message::binary(vec![7u8; 30]);
        let big_prepared = PreparedMessage::new(big.clone());
        let messages = vec![
            big_prepared.clone(),
            PreparedMessage::new(small.clone()),
            PreparedMessage::new(lines.clone()),
            big_prepared, // the same prepared message again: served from its cache
        ];
        let expected = [big.clone(), small.clone(), lines.clone(), big.clone()];
        let total: u64 = expected.iter().map(|m| m.len() as u64).sum();

        // Server without context takeover: 4 compressing clients (one at level 9),
        // 2 that did not offer compression. Then a server with context takeover.
        let no_takeover = compression(|c| c.server_no_context_takeover = true);
        for (upgrader, takeover) in [
            (Upgrader::new().compression(Some(no_takeover)), false),
            (Upgrader::new().enable_compression(true), true),
        ] {
            let offers = [true, true, false, true, false, true];
            let (addr, server) =
                broadcast_server(upgrader, offers.len(), Some(1), messages.clone()).await;
            let mut clients = Vec::new();
            for offer in offers {
                // Connect in order, so the server's accept order matches `offers`.
                let (conn, _, _) = dial(&Dialer::new().enable_compression(offer), addr).await;
                assert_eq!(conn.compression_negotiated(), offer);
                clients.push(tokio::spawn(read_all(conn)));
            }
            for (i, c) in clients.into_iter().enumerate() {
                let got = join(c).await;
                assert_eq!(got.len(), expected.len(), "client {i}");
                for (g, e) in got.iter().zip(&expected) {
                    assert_eq!(g.kind(), e.kind(), "client {i}");
                    assert!(g.as_bytes() == e.as_bytes(), "client {i}: wrong message");
                }
            }
            for (i, (negotiated, bytes)) in join(server).await.into_iter().enumerate() {
                assert_eq!(negotiated, offers[i], "connection {i}");
                if negotiated {
                    assert!(
                        bytes.written() < total / 5,
                        "connection {i} (takeover {takeover}): {} bytes",
                        bytes.written()
                    );
                } else {
                    assert!(bytes.written() > total, "connection {i}");
                }
            }
        }
    })
    .await;
}

/// Two raw clients on a server without context takeover get byte-identical
/// compressed frames (the shared cache); a third at level 9 gets its own.
#[tokio::test]
async fn prepared_message_compressed_frame_is_shared() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let text = repetitive_text(50_000);
        let prepared = PreparedMessage::new(Message::text(text.clone()));
        let cfg = compression(|c| c.server_no_context_takeover = true);
        let upgrader = Upgrader::new().compression(Some(cfg.clone()));
        let (addr, server) = broadcast_server(upgrader, 3, Some(2), vec![prepared]).await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(DeflateClient::connect(addr, &cfg).await);
        }
        let mut payloads = Vec::new();
        for mut c in clients {
            assert!(c.params.server_no_context_takeover);
            let (frames, msg) = c.recv_message().await;
            assert_eq!(frames.len(), 1);
            assert!(frames[0].header.rsv1);
            assert_eq!(msg, text.as_bytes());
            payloads.push(frames[0].payload.clone());
            // Answer the close.
            let close = c.raw.recv_frame().await;
            assert_eq!(close.close_code(), Some(CloseCode::NORMAL));
            c.raw.send_close(1000, b"").await;
        }
        assert_eq!(payloads[0], payloads[1], "same level, same frame");
        let levels = join(server).await;
        assert_eq!(levels.len(), 3);
    })
    .await;
}

// ---------------------------------------------------------------------------------
// Hostile peers
// ---------------------------------------------------------------------------------

/// This process's resident set size in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS")
}

/// Samples the RSS every millisecond on its own thread until dropped; reports the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 60 s of samples.
            for _ in 0..60_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler thread");
        }
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `inflated` bytes of zeros compressed by `tx` as one message, fed 64 KiB at a time
/// (the zeros are never held whole).
fn compressed_zeros(tx: &mut Compressor, inflated: usize) -> Vec<u8> {
    let zeros = vec![0u8; 64 * 1024];
    let pieces = inflated.div_ceil(zeros.len());
    let mut out = BytesMut::new();
    for i in 0..pieces {
        tx.compress_chunk(&zeros, i == pieces - 1, &mut out)
            .expect("compress");
    }
    out.to_vec()
}

/// A raw DEFLATE stream, written bit by bit, that inflates to at least `inflated`
/// zeros at DEFLATE's best ratio (about 1032:1): one dynamic Huffman block in which
/// "length 258, distance 1" costs two bits, both zero.
fn hand_made_bomb(inflated: usize) -> Vec<u8> {
    /// An LSB-first bit writer, as DEFLATE packs its bits (RFC 1951 §3.1.1).
    struct Bits {
        out: Vec<u8>,
        acc: u32,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, bits: u32) {
            self.acc |= value << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code goes out most significant bit first.
        fn code(&mut self, code: u32, len: u32) {
            let reversed = code.reverse_bits() >> (32 - len);
            self.put(reversed, len);
        }
    }
    let mut b = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    b.put(0, 1); // BFINAL = 0
    b.put(2, 2); // BTYPE = 2, dynamic Huffman codes
    b.put(29, 5); // HLIT: 286 literal/length codes
    b.put(0, 5); // HDIST: 1 distance code
    b.put(14, 4); // HCLEN: 18 code length codes
                  // Code length code lengths in RFC 1951 order 16, 17, 18, 0, 8, 7, 9, 6, 10, 5,
                  // 11, 4, 12, 3, 13, 2, 14, 1: symbol 18 (a run of zeros) gets 1 bit, lengths 1
                  // and 2 get 2 bits. Canonical codes: 18 = 0, 1 = 10, 2 = 11.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        b.put(len, 3);
    }
    let (len1, len2, zeros) = ((0b10, 2), (0b11, 2), (0, 1));
    // Literal/length code lengths: 0 → 2 bits, 1..=255 none, 256 (end of block,
    // which zlib requires to exist) → 2 bits, 257..=284 none, 285 (length 258) → 1
    // bit. Then the single distance code 0 (distance 1) → 1 bit.
    b.code(len2.0, len2.1);
    b.code(zeros.0, zeros.1);
    b.put(138 - 11, 7);
    b.code(zeros.0, zeros.1);
    b.put(117 - 11, 7);
    b.code(len2.0, len2.1);
    b.code(zeros.0, zeros.1);
    b.put(28 - 11, 7);
    b.code(len1.0, len1.1);
    b.code(len1.0, len1.1);
    // Canonical codes: 285 = 0, literal 0 = 10, end of block = 11; distance 0 = 0.
    b.code(0b10, 2); // one literal zero
    b.put(0, 8 - b.n % 8); // then only "285, distance 0": zero bits
    let mut stream = b.out;
    let pairs_per_byte = 4; // 4 × 258 bytes for every zero byte
    let bytes = inflated.div_ceil(258 * pairs_per_byte);
    stream.resize(stream.len() + bytes, 0);
    stream
}

/// Cuts a compressed message into `fragments` masked frames, RSV1 on the first only.
fn bomb_frames(compressed: &[u8], fragments: usize) -> Vec<u8> {
    let piece = compressed.len().div_ceil(fragments).max(1);
    let chunks: Vec<&[u8]> = compressed.chunks(piece).collect();
    let mut wire = BytesMut::new();
    for (i, c) in chunks.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        encode_frame(
            &mut wire,
            op,
            i == chunks.len() - 1,
            i == 0,
            Some([9, 8, 7, 6]),
            c,
        );
    }
    wire.to_vec()
}

/// Reads frames from `rd` until a close frame; returns its code.
async fn read_close_code(rd: &mut tokio::net::tcp::OwnedReadHalf, mut buf: BytesMut) -> u16 {
    step("close frame", async {
        loop {
            if let Some((h, used)) = yamabiko::proto::FrameHeader::parse(&buf).expect("frame") {
                let total = used + h.len as usize;
                if buf.len() >= total {
                    let frame = buf.split_to(total);
                    if h.opcode == OpCode::Close {
                        return u16::from_be_bytes([frame[used], frame[used + 1]]);
                    }
                    continue;
                }
            }
            let n = rd.read_buf(&mut buf).await.expect("read");
            assert_ne!(n, 0, "connection ended without a close frame");
        }
    })
    .await
}

#[tokio::test]
async fn decompression_bomb_is_stopped_at_the_limit() {
    // Nothing else in this file allocates while the memory is measured.
    let _gate = MEMORY_GATE.write().await;
    const LIMIT: usize = 1 << 20;
    bounded(async {
        // 1 GiB in one frame, read whole; then 8 MiB made by the Compressor in 16
        // fragments of 512 KiB each (only their sum is over the limit), streamed.
        let one_gib = hand_made_bomb(1 << 30);
        assert!(one_gib.len() < 1_100_000, "{} bytes", one_gib.len());
        {
            // It is valid DEFLATE: our own decompressor stops it at 2 MiB of zeros.
            let mut rx = Decompressor::new(&DeflateParams::default(), Role::Server);
            let mut out = BytesMut::new();
            let e = rx.decompress(&one_gib, true, &mut out, 2 << 20);
            assert!(
                matches!(e, Err(InflateError::MessageTooLarge { .. })),
                "{e:?}"
            );
            assert!(out.len() <= 2 << 20 && out.iter().all(|&b| b == 0));
        }
        let mut tx = Compressor::new(&DeflateParams::default(), Role::Client, 9);
        let eight_mib = compressed_zeros(&mut tx, 8 << 20);
        assert!(eight_mib.len() < 16 << 10, "{} bytes", eight_mib.len());

        for (compressed, fragments, streaming) in [(one_gib, 1, false), (eight_mib, 16, true)] {
            let upgrader = Upgrader::new()
                .enable_compression(true)
                .max_message_size(LIMIT);
            let (addr, server) = serve_one(upgrader, move |mut c| async move {
                if !streaming {
                    return c.read_message().await.map(|m| m.len());
                }
                // Read piece by piece, discarding: the limit still counts the whole.
                let mut r = c.next_reader().await?;
                let mut total = 0;
                // Bounded: the limit ends the message after 1 MiB of chunks.
                for _ in 0..1_000_000 {
                    match r.next_chunk().await? {
                        Some(chunk) => total += chunk.len(),
                        None => return Ok(total),
                    }
                }
                panic!("no end to the message");
            })
            .await;
            let client = DeflateClient::connect(addr, &DeflateConfig::default()).await;
            let wire = bomb_frames(&compressed, fragments);
            drop(compressed);
            let RawClient { tcp, buf } = client.raw;
            let (mut rd, mut wr) = tcp.into_split();

            let sampler = RssSampler::start();
            let before = rss();
            let started = Instant::now();
            // Write and read at once: the server stops reading long before the end.
            let writer = tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), wr.write_all(&wire)).await;
                wr
            });
            let code = read_close_code(&mut rd, buf).await;
            let elapsed = started.elapsed();
            let (result, bytes) = join(server).await;
            let peak = sampler.peak();
            drop(join(writer).await);
            assert_eq!(code, 1009);
            match result {
                Err(Error::Protocol(ProtocolError::MessageTooLarge { .. })) => {}
                other => panic!("server read: {other:?}"),
            }
            let grew = peak.saturating_sub(before);
            eprintln!(
                "bomb ({fragments} fragments): close 1009 after {elapsed:?}, server read {} \
                 bytes, RSS grew {} KiB",
                bytes.read(),
                grew / 1024
            );
            assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
            assert!(
                grew < 6 * LIMIT as u64,
                "RSS grew by {grew} bytes for a {LIMIT}-byte limit"
            );
        }
    })
    .await;
}

/// A raw server: performs the handshake with `upgrader` (returning whether
/// compression was agreed), writes `wire` (unmasked server frames) and returns the
/// close code the client answers with.
async fn raw_server(upgrader: Upgrader, wire: Vec<u8>) -> (SocketAddr, JoinHandle<(bool, u16)>) {
    let (l, addr) = common::listener().await;
    let task = tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.expect("accept");
        let (request, leftover) = upgrader.read_request(&mut tcp).await.expect("request");
        assert!(leftover.is_empty());
        let agreed = upgrader.negotiate(&request).expect("negotiate");
        tcp.write_all(&agreed.response).await.expect("101");
        let (mut rd, mut wr) = tcp.into_split();
        let writer = tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), wr.write_all(&wire)).await;
            wr
        });
        let mut buf = BytesMut::new();
        let code = step("the client's close frame", async {
            loop {
                if let Some((h, used)) = yamabiko::proto::FrameHeader::parse(&buf).expect("frame") {
                    let total = used + h.len as usize;
                    if buf.len() >= total {
                        let frame = buf.split_to(total);
                        if h.opcode == OpCode::Close {
                            let key = h.mask.expect("client frames are masked");
                            return u16::from_be_bytes([
                                frame[used] ^ key[0],
                                frame[used + 1] ^ key[1],
                            ]);
                        }
                        continue;
                    }
                }
                let n = rd.read_buf(&mut buf).await.expect("read");
                assert_ne!(n, 0, "the client closed without a close frame");
            }
        })
        .await;
        drop(join(writer).await);
        (agreed.deflate.is_some(), code)
    });
    (addr, task)
}

/// One unmasked server frame.
fn server_frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, opcode, true, rsv1, None, payload);
    wire.to_vec()
}

#[tokio::test]
async fn dialer_fails_bad_compressed_data_from_a_server() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let compressing = Upgrader::new().enable_compression(true);
        let cases = [
            // A bomb: 1 GiB of zeros against a 1 MiB limit.
            (
                compressing.clone(),
                server_frame(OpCode::Binary, true, &hand_made_bomb(1 << 30)),
                1009,
            ),
            // Not DEFLATE.
            (
                compressing.clone(),
                server_frame(OpCode::Binary, true, &[0xff; 16]),
                1007,
            ),
            // RSV1 although the server declined compression.
            (
                Upgrader::new(),
                server_frame(OpCode::Text, true, b"\x4a\x04\x00"),
                1002,
            ),
        ];
        for (upgrader, wire, expected) in cases {
            let (addr, server) = raw_server(upgrader, wire).await;
            let dialer = Dialer::new()
                .enable_compression(true)
                .max_message_size(1 << 20);
            let (mut conn, _, _) = dial(&dialer, addr).await;
            let started = Instant::now();
            let err = step("client read", conn.read_message())
                .await
                .expect_err("the client must fail");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "took {:?}",
                started.elapsed()
            );
            let (agreed, code) = join(server).await;
            assert_eq!(agreed, conn.compression_negotiated());
            assert_eq!(code, expected, "client error {err:?}");
            drop(conn);
        }
    })
    .await;
}

#[tokio::test]
async fn corrupt_compressed_data_is_1007() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let upgrader = Upgrader::new().enable_compression(true);

        // Not DEFLATE at all: 0xff starts a block of the reserved type 3.
        let (addr, server) = echo_server(upgrader.clone()).await;
        let mut c = DeflateClient::connect(addr, &DeflateConfig::default()).await;
        c.raw
            .send_raw(&rsv1_frame(OpCode::Binary, true, &[0xff; 16]))
            .await;
        c.raw.expect_close(1007).await;
        let (echoed, _) = join(server).await;
        assert!(
            matches!(
                echoed.end,
                Error::Protocol(ProtocolError::InvalidCompressedData)
            ),
            "{:?}",
            echoed.end
        );

        // Valid DEFLATE that inflates to invalid UTF-8 in a text message.
        let (addr, server) = echo_server(upgrader.clone()).await;
        let mut c = DeflateClient::connect(addr, &DeflateConfig::default()).await;
        let mut bad = repetitive_text(1000).into_bytes();
        bad.extend_from_slice(&[0xc3, 0x28]);
        c.send_compressed(OpCode::Text, &bad, 2).await;
        c.raw.expect_close(1007).await;
        let (echoed, _) = join(server).await;
        assert!(
            matches!(echoed.end, Error::Protocol(ProtocolError::InvalidUtf8)),
            "{:?}",
            echoed.end
        );

        // A client that agreed to client_no_context_takeover but refers back to its
        // previous message anyway.
        let no_takeover = compression(|c| c.client_no_context_takeover = true);
        let (addr, server) = echo_server(Upgrader::new().compression(Some(no_takeover))).await;
        let mut c = DeflateClient::connect(addr, &DeflateConfig::default()).await;
        assert!(c.params.client_no_context_takeover);
        let cheating = DeflateParams {
            client_no_context_takeover: false,
            ..c.params
        };
        c.tx = Compressor::new(&cheating, Role::Client, 1);
        let payload = noise(1024, 5);
        c.send_compressed(OpCode::Binary, &payload, 1).await;
        let (_, msg) = c.recv_message().await;
        assert_eq!(msg, payload);
        c.send_compressed(OpCode::Binary, &payload, 1).await;
        c.raw.expect_close(1007).await;
        let (echoed, _) = join(server).await;
        assert_eq!(echoed.messages, 1);
        assert!(
            matches!(
                echoed.end,
                Error::Protocol(ProtocolError::InvalidCompressedData)
            ),
            "{:?}",
            echoed.end
        );
    })
    .await;
}

#[tokio::test]
async fn rsv1_without_negotiated_compression_is_1002() {
    let _gate = MEMORY_GATE.read().await;
    bounded(async {
        let mut compressed = BytesMut::new();
        let mut tx = Compressor::new(&DeflateParams::default(), Role::Client, 1);
        tx.compress_message(repetitive_text(500).as_bytes(), &mut compressed)
            .expect("compress");

        // The server does not do compression; the client did not offer it.
        for server_compression in [false, true] {
            let upgrader = Upgrader::new().enable_compression(server_compression);
            let (addr, server) = echo_server(upgrader).await;
            let mut raw = RawClient::connect(addr).await;
            raw.send_raw(&rsv1_frame(OpCode::Text, true, &compressed))
                .await;
            raw.expect_close(1002).await;
            let (echoed, _) = join(server).await;
            assert!(!echoed.negotiated);
            assert!(
                matches!(echoed.end, Error::Protocol(ProtocolError::ReservedBits)),
                "{:?}",
                echoed.end
            );
        }

        // The client offered, the server does not do compression: declined.
        let (addr, server) = echo_server(Upgrader::new()).await;
        let offer = client_offer(&DeflateConfig::default());
        let (mut raw, params) =
            DeflateClient::handshake(addr, Some(&offer), &DeflateConfig::default()).await;
        assert_eq!(params, None);
        raw.send_raw(&rsv1_frame(OpCode::Binary, true, &compressed))
            .await;
        raw.expect_close(1002).await;
        join(server).await;

        // Negotiated, but RSV1 on a control frame or a continuation frame.
        let upgrader = Upgrader::new().enable_compression(true);
        let (addr, server) = echo_server(upgrader.clone()).await;
        let mut c = DeflateClient::connect(addr, &DeflateConfig::default()).await;
        c.raw.send_raw(&rsv1_frame(OpCode::Ping, true, b"")).await;
        c.raw.expect_close(1002).await;
        join(server).await;

        let (addr, server) = echo_server(upgrader).await;
        let mut c = DeflateClient::connect(addr, &DeflateConfig::default()).await;
        let mut out = BytesMut::new();
        c.tx.compress_chunk(b"first half, ", false, &mut out)
            .expect("compress");
        let mut wire = BytesMut::new();
        encode_frame(
            &mut wire,
            OpCode::Text,
            false,
            true,
            Some([1, 2, 3, 4]),
            &out,
        );
        out.clear();
        c.tx.compress_chunk(b"second half", true, &mut out)
            .expect("compress");
        encode_frame(
            &mut wire,
            OpCode::Continuation,
            true,
            true,
            Some([1, 2, 3, 4]),
            &out,
        );
        c.raw.send_raw(&wire).await;
        c.raw.expect_close(1002).await;
        let (echoed, _) = join(server).await;
        assert_eq!(echoed.messages, 0);
    })
    .await;
}
