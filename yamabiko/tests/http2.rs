//! WebSockets over HTTP/2 (RFC 8441), yamabiko against yamabiko over loopback: a
//! hyper HTTP/2 server with `Upgrader::upgrade_hyper` (cleartext with prior
//! knowledge, and TLS with ALPN) and the `Dialer`. Messages, streaming, compression,
//! ping/pong, the close handshake, RST_STREAM, refusals on one stream among others,
//! many WebSockets on one connection with one slow reader, and the fallback to
//! HTTP/1.1. Raw h2 peers (the h2 crate) check what the wire carries. Each test is
//! bounded by a timeout.

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use yamabiko::http2::Http2Settings;
use yamabiko::proto::handshake::HandshakeError;
use yamabiko::upgrade::hyper::error_response;
use yamabiko::{
    CloseCode, Control, DeflateConfig, Dialer, Error, HttpVersion, MaybeTlsStream, Message,
    MessageKind, Upgrader,
};

const WAIT: Duration = Duration::from_secs(30);

async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, body)
        .await
        .expect("test took too long")
}

async fn step<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(10), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// How the test server speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// HTTP/2 with extended CONNECT (and HTTP/1.1 for TLS clients that pick it).
    Http2,
    /// HTTP/2 whose SETTINGS do not enable extended CONNECT (HTTP/1.1 works).
    Http2WithoutConnect,
}

/// What the server's WebSocket handlers saw, for the tests to check.
#[derive(Default)]
struct Seen {
    /// How each WebSocket on a path ended: "closed CODE" or "io".
    ended: Mutex<HashMap<String, Vec<String>>>,
    /// Bytes the `/flood` handler has written so far.
    flooded: AtomicU64,
    /// Pongs the `/ping` handler received.
    pongs: Mutex<Vec<Bytes>>,
    /// Versions of the upgrade requests, in order.
    versions: Mutex<Vec<http::Version>>,
}

impl Seen {
    fn ended(&self, path: &str) -> Vec<String> {
        self.ended
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    async fn wait_ended(&self, path: &str, n: usize) -> Vec<String> {
        step("the server's WebSocket to end", async {
            loop {
                let e = self.ended(path);
                if e.len() >= n {
                    return e;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

struct Server {
    addr: SocketAddr,
    /// TCP connections accepted.
    accepted: Arc<AtomicUsize>,
    seen: Arc<Seen>,
    cert_pem: Option<String>,
}

/// The size of each `/flood` message, and how many it sends.
const FLOOD_MESSAGE: usize = 16 * 1024;
const FLOOD_COUNT: usize = 256;

async fn server_ws(path: String, upgrading: yamabiko::upgrade::hyper::Upgrading, seen: Arc<Seen>) {
    let Ok(mut conn) = upgrading.await else {
        return;
    };
    let end = |e: Error| match e {
        Error::Closed(f) => format!("closed {}", f.code.0),
        Error::Io(e) => format!("io {:?}", e.kind()),
        other => format!("{other}"),
    };
    let result: Result<(), Error> = async {
        match path.as_str() {
            "/echo" => loop {
                let msg = conn.read_message().await?;
                conn.write_message(msg).await?;
            },
            "/stream" => loop {
                // Echo each message fragment by fragment, through the streaming API.
                let mut reader = conn.next_reader().await?;
                let kind = reader.kind();
                let mut data = Vec::new();
                reader.read_to_end(&mut data).await?;
                drop(reader);
                let mut writer = conn.next_writer(kind);
                for piece in data.chunks(1000) {
                    writer.write_all(piece).await?;
                }
                writer.finish().await?;
            },
            "/ping" => {
                let seen2 = seen.clone();
                conn.set_pong_handler(move |_, data| {
                    seen2.pongs.lock().unwrap().push(data.clone());
                    Ok(())
                });
                conn.write_control(Control::ping("from the server"), None)
                    .await?;
                loop {
                    let msg = conn.read_message().await?;
                    conn.write_message(msg).await?;
                }
            }
            "/flood" => {
                for i in 0..FLOOD_COUNT {
                    let msg = vec![(i % 251) as u8; FLOOD_MESSAGE];
                    conn.write_binary(msg).await?;
                    seen.flooded
                        .fetch_add(FLOOD_MESSAGE as u64, Ordering::Relaxed);
                }
                loop {
                    conn.read_message().await?;
                }
            }
            "/tinyflood" => {
                for i in 0..TINY_COUNT {
                    conn.write_text(format!("tiny {i}")).await?;
                }
                loop {
                    conn.read_message().await?;
                }
            }
            "/sink" => {
                // Reads nothing for a while, then everything.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                loop {
                    conn.read_message().await?;
                }
            }
            _ => Ok(()),
        }
    }
    .await;
    let line = match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => end(e),
    };
    seen.ended
        .lock()
        .unwrap()
        .entry(path)
        .or_default()
        .push(line);
}

async fn handle(
    mut req: hyper::Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/page" {
        return Ok(hyper::Response::new(Full::new(Bytes::from_static(b"page"))));
    }
    seen.versions.lock().unwrap().push(req.version());
    let upgrader = Upgrader::new()
        .subprotocols(["chat", "superchat"])
        .compression(Some(DeflateConfig {
            threshold: 0,
            ..Default::default()
        }))
        .max_message_size(8 << 20);
    match upgrader.upgrade_hyper(&mut req) {
        Ok((response, upgrading)) => {
            tokio::spawn(server_ws(path, upgrading, seen));
            Ok(response)
        }
        Err(e) => Ok(error_response(&e)),
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, as PEM and key.
fn certificate() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    (certified.cert.pem(), certified.cert.der().clone(), key)
}

fn tls_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Serves one connection: HTTP/2 (with or without extended CONNECT) or HTTP/1.1.
async fn serve_connection<I>(io: I, h2: bool, mode: Mode, seen: Arc<Seen>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, seen.clone()));
    if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        Http2Settings::default().configure_hyper(&mut builder);
        if mode == Mode::Http2WithoutConnect {
            // The same windows, but a plain HTTP/2 server.
            builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        }
        let _ = builder.serve_connection(TokioIo::new(io), service).await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades()
            .await;
    }
}

/// A cleartext server that speaks HTTP/2 with prior knowledge only.
async fn h2c_server(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Seen::default());
    tokio::spawn({
        let accepted = accepted.clone();
        let seen = seen.clone();
        async move {
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_connection(tcp, true, mode, seen.clone()));
            }
        }
    });
    Server {
        addr,
        accepted,
        seen,
        cert_pem: None,
    }
}

/// A TLS server offering `alpn`; `h2` connections get HTTP/2, others HTTP/1.1.
async fn tls_server(mode: Mode, alpn: &[&[u8]]) -> Server {
    let (pem, der, key) = certificate();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(der, key, alpn));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Seen::default());
    tokio::spawn({
        let accepted = accepted.clone();
        let seen = seen.clone();
        async move {
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    serve_connection(tls, h2, mode, seen).await;
                });
            }
        }
    });
    Server {
        addr,
        accepted,
        seen,
        cert_pem: Some(pem),
    }
}

fn h2c_dialer() -> Dialer {
    Dialer::new().http_version(HttpVersion::Http2)
}

fn tls_dialer(server: &Server) -> Dialer {
    Dialer::new()
        .add_root_certificates_pem(server.cert_pem.as_ref().unwrap().as_bytes())
        .unwrap()
}

fn is_http2(conn: &yamabiko::Conn<MaybeTlsStream>) -> bool {
    conn.with_stream(|s| s.is_http2()).unwrap_or(false)
}

#[tokio::test]
async fn h2c_messages_streaming_and_subprotocol() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let dialer = h2c_dialer().subprotocols(["superchat", "chat"]);
        let (mut conn, response) = dialer
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert!(response.headers().get("sec-websocket-accept").is_none());
        assert!(is_http2(&conn));
        // The server's preference among the offered ones.
        assert_eq!(conn.subprotocol(), Some("chat"));
        assert_eq!(conn.peer_addr().unwrap(), server.addr);
        for msg in [
            Message::text("hello over h2"),
            Message::binary(vec![7u8; 1 << 20]),
            Message::text("é".repeat(50_000)),
            Message::binary(Vec::new()),
        ] {
            conn.write_message(msg.clone()).await.unwrap();
            assert_eq!(conn.read_message().await.unwrap(), msg);
        }
        conn.close_with(CloseCode::NORMAL, "bye", WAIT)
            .await
            .unwrap();
        assert_eq!(server.seen.wait_ended("/echo", 1).await, ["closed 1000"]);
        assert_eq!(
            server.seen.versions.lock().unwrap().as_slice(),
            [http::Version::HTTP_2]
        );

        // Streaming both ways: fragments out, fragments back.
        let (mut conn, _) = h2c_dialer()
            .write_buffer_size(700)
            .dial(&format!("ws://{}/stream", server.addr))
            .await
            .unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut writer = conn.next_writer(MessageKind::Binary);
        for piece in payload.chunks(3333) {
            writer.write_all(piece).await.unwrap();
        }
        writer.finish().await.unwrap();
        let mut reader = conn.next_reader().await.unwrap();
        assert_eq!(reader.kind(), MessageKind::Binary);
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        drop(reader);
        assert_eq!(back, payload);
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn compression_and_ping_pong_over_h2() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let (mut conn, response) = h2c_dialer()
            .enable_compression(true)
            .dial(&format!("ws://{}/ping", server.addr))
            .await
            .unwrap();
        assert!(conn.compression_negotiated());
        assert!(response
            .headers()
            .get("sec-websocket-extensions")
            .is_some_and(|v| v.to_str().unwrap().starts_with("permessage-deflate")));
        // The server's ping is answered by the default handler inside this read; our
        // ping is answered by the server's.
        let (tx, mut rx) = mpsc::unbounded_channel();
        conn.set_pong_handler(move |_, data| {
            let _ = tx.send(data.clone());
            Ok(())
        });
        conn.write_control(Control::ping("from the client"), None)
            .await
            .unwrap();
        let text = "compressible ".repeat(10_000);
        conn.write_text(text.clone()).await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text(text));
        assert_eq!(&rx.recv().await.unwrap()[..], b"from the client");
        step("the server's pong", async {
            while server.seen.pongs.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(
            &server.seen.pongs.lock().unwrap()[0][..],
            b"from the server"
        );
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn deadlines_and_read_limit_over_h2() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let (mut conn, _) = h2c_dialer()
            .max_message_size(1000)
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .unwrap();
        conn.set_read_deadline(Some(Instant::now() + Duration::from_millis(100)));
        assert!(matches!(conn.read_message().await, Err(Error::Timeout)));
        conn.set_read_deadline(None);
        // Echoed back larger than our limit: we fail the connection with 1009.
        conn.write_binary(vec![1u8; 5000]).await.unwrap();
        match conn.read_message().await {
            Err(Error::Protocol(e)) => assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG),
            other => panic!("expected 1009, got {other:?}"),
        }
        assert_eq!(server.seen.wait_ended("/echo", 1).await, ["closed 1009"]);
    })
    .await;
}

#[tokio::test]
async fn reset_stream_reads_as_1006_on_both_sides() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        // Our RST_STREAM(CANCEL): the server's Conn reads 1006.
        let dialer = h2c_dialer();
        let (conn, _) = dialer
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .unwrap();
        let (mut other, _) = dialer
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .unwrap();
        match conn.into_inner() {
            Some(MaybeTlsStream::Http2(mut stream)) => stream.reset(),
            _ => panic!("expected an HTTP/2 stream"),
        }
        assert_eq!(server.seen.wait_ended("/echo", 1).await, ["closed 1006"]);
        // The other WebSocket on the connection goes on.
        other.write_text("still here").await.unwrap();
        assert_eq!(
            other.read_message().await.unwrap(),
            Message::text("still here")
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);

        // The server's RST_STREAM(CANCEL): our Conn reads 1006.
        let addr = reset_server().await;
        let (mut conn, _) = h2c_dialer().dial(&format!("ws://{addr}/")).await.unwrap();
        match conn.read_message().await {
            Err(Error::Closed(f)) => assert_eq!(f.code, CloseCode::ABNORMAL),
            other => panic!("expected 1006, got {other:?}"),
        }
        assert!(conn.write_text("gone").await.is_err());
    })
    .await;
}

/// A raw h2 server that accepts one extended CONNECT, answers 200 and resets it.
async fn reset_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::Builder::new()
            .enable_connect_protocol()
            .handshake::<_, Bytes>(tcp)
            .await
            .unwrap();
        // Accepting drives the connection; each stream is handled in a task.
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            assert_eq!(req.method(), http::Method::CONNECT);
            assert_eq!(
                req.extensions()
                    .get::<h2::ext::Protocol>()
                    .map(|p| p.as_str()),
                Some("websocket")
            );
            tokio::spawn(async move {
                let mut send = respond
                    .send_response(http::Response::new(()), false)
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                send.send_reset(h2::Reason::CANCEL);
            });
        }
    });
    addr
}

/// A raw extended CONNECT on an h2 client connection: (status, stream halves).
async fn raw_connect(
    sr: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
    headers: &[(&str, &str)],
) -> (http::StatusCode, h2::SendStream<Bytes>, h2::RecvStream) {
    let mut b = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}{path}"));
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let mut req = b.body(()).unwrap();
    if let Some(p) = protocol {
        req.extensions_mut().insert(h2::ext::Protocol::from(p));
    }
    let mut ready = sr.clone().ready().await.unwrap();
    let (resp, send) = ready.send_request(req, false).unwrap();
    let resp = step("a response", resp).await.unwrap();
    let status = resp.status();
    (status, send, resp.into_body())
}

/// An h2 client connection that has seen the server's SETTINGS.
async fn raw_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sr, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    step("the server's SETTINGS", async {
        while !sr.is_extended_connect_protocol_enabled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    sr
}

/// A masked client frame.
fn client_frame(opcode: yamabiko::proto::OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    yamabiko::proto::encoder::encode_frame(
        &mut out,
        opcode,
        true,
        false,
        Some([1, 2, 3, 4]),
        payload,
    );
    out.freeze()
}

/// Reads the next server frame (small, unmasked): (opcode byte, payload).
async fn server_frame(recv: &mut h2::RecvStream, buf: &mut BytesMut) -> Option<(u8, Vec<u8>)> {
    loop {
        if buf.len() >= 2 && buf.len() >= 2 + usize::from(buf[1] & 0x7f) {
            let len = usize::from(buf[1] & 0x7f);
            assert!(len < 126, "test frames are small");
            let frame = buf.split_to(2 + len);
            return Some((frame[0], frame[2..].to_vec()));
        }
        match step("a frame", recv.data()).await {
            Some(Ok(data)) => {
                let _ = recv.flow_control().release_capacity(data.len());
                buf.extend_from_slice(&data);
            }
            _ => return None,
        }
    }
}

#[tokio::test]
async fn refusals_go_on_their_stream_only_and_close_ends_with_end_stream() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let addr = server.addr;
        let mut sr = raw_client(addr).await;
        let v13 = [("sec-websocket-version", "13")];
        // A good WebSocket first; it must survive the refusals below.
        let (status, mut send, mut recv) =
            raw_connect(&mut sr, addr, "/echo", Some("websocket"), &v13).await;
        assert_eq!(status, 200);

        let (status, ..) = raw_connect(&mut sr, addr, "/echo", Some("chat-over-h2"), &v13).await;
        assert_eq!(status, 400, "wrong :protocol");
        let (status, ..) = raw_connect(&mut sr, addr, "/echo", Some("websocket"), &[]).await;
        assert_eq!(status, 426, "no version");
        let (status, ..) = raw_connect(
            &mut sr,
            addr,
            "/echo",
            Some("websocket"),
            &[
                ("sec-websocket-version", "13"),
                ("origin", "https://evil.example"),
            ],
        )
        .await;
        assert_eq!(status, 403, "foreign origin");
        let (status, ..) = raw_connect(
            &mut sr,
            addr,
            "/echo",
            Some("websocket"),
            &[("sec-websocket-version", "8")],
        )
        .await;
        assert_eq!(status, 426, "version 8");

        // The good stream echoes, then closes in order: our close, its close, then
        // END_STREAM (not RST_STREAM).
        use yamabiko::proto::OpCode;
        let mut buf = BytesMut::new();
        send.send_data(client_frame(OpCode::Text, b"ping?"), false)
            .unwrap();
        assert_eq!(
            server_frame(&mut recv, &mut buf).await,
            Some((0x81, b"ping?".to_vec()))
        );
        send.send_data(client_frame(OpCode::Close, &[0x03, 0xe8]), false)
            .unwrap();
        assert_eq!(
            server_frame(&mut recv, &mut buf).await,
            Some((0x88, vec![0x03, 0xe8]))
        );
        // After its close frame the server ends the stream: data() gives None, not a
        // reset error.
        loop {
            match step("END_STREAM", recv.data()).await {
                None => break,
                // END_STREAM may come on an empty DATA frame.
                Some(Ok(data)) if data.is_empty() => {}
                Some(other) => panic!("expected END_STREAM, got {other:?}"),
            }
        }
        assert!(recv.is_end_stream());
        // Our END_STREAM; the server may already have cancelled its half-open
        // stream (h2 does once the server drops it), so this may find it closed.
        let _ = send.send_data(Bytes::new(), true);
        assert_eq!(server.seen.wait_ended("/echo", 1).await, ["closed 1000"]);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn websockets_share_a_connection_and_a_slow_reader_stalls_only_itself() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let dialer = h2c_dialer();
        let url = |p: &str| format!("ws://{}{p}", server.addr);
        // The server floods this one; we do not read it for a while.
        let (mut slow, _) = dialer.dial(&url("/flood")).await.unwrap();
        let mut others = Vec::new();
        for _ in 0..8 {
            others.push(dialer.clone().dial(&url("/echo")).await.unwrap().0);
        }
        // One TCP connection for all nine.
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        let local = slow.local_addr().unwrap();
        assert!(others.iter().all(|c| c.local_addr().unwrap() == local));

        // The others echo promptly while the flood waits for our reads.
        let started = Instant::now();
        for round in 0..50u32 {
            for (i, conn) in others.iter_mut().enumerate() {
                let msg = Message::text(format!("{round}/{i}"));
                conn.write_message(msg.clone()).await.unwrap();
                assert_eq!(step("an echo", conn.read_message()).await.unwrap(), msg);
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The flood is held back by flow control: what the server got to write is
        // bounded by the stream window, the send buffer and a few queued messages —
        // not the 4 MiB it wants to send.
        let flooded = server.seen.flooded.load(Ordering::Relaxed);
        assert!(flooded < 1 << 20, "the server wrote {flooded} bytes ahead");
        assert!(flooded < (FLOOD_COUNT * FLOOD_MESSAGE) as u64);

        // Reading it now delivers everything, intact and in order.
        for i in 0..FLOOD_COUNT {
            match step("a flood message", slow.read_message()).await.unwrap() {
                Message::Binary(b) => {
                    assert_eq!(b.len(), FLOOD_MESSAGE);
                    assert!(b.iter().all(|&x| x == (i % 251) as u8), "message {i}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for conn in others {
            conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
        }
        slow.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_server_that_does_not_read_makes_our_writer_wait_with_bounded_memory() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let dialer = h2c_dialer();
        let (mut sink, _) = dialer
            .dial(&format!("ws://{}/sink", server.addr))
            .await
            .unwrap();
        let (mut echo, _) = dialer
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .unwrap();
        // Write into the stream the server does not read until writes stop making
        // progress (the write deadline fires).
        let chunk = vec![3u8; 16 * 1024];
        let mut written = 0usize;
        sink.set_write_deadline(Some(Instant::now() + Duration::from_millis(700)));
        loop {
            match sink.write_binary(chunk.clone()).await {
                Ok(()) => written += chunk.len(),
                Err(Error::Timeout) => break,
                Err(e) => panic!("unexpected {e}"),
            }
            assert!(written < 8 << 20, "writes never waited");
        }
        assert!(
            written < 1 << 20,
            "{written} bytes went out before writes waited"
        );
        // Meanwhile the other WebSocket is unaffected.
        echo.write_text("unaffected").await.unwrap();
        assert_eq!(
            echo.read_message().await.unwrap(),
            Message::text("unaffected")
        );
        echo.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn tls_alpn_h2_and_the_fallbacks_to_http1() {
    bounded(async {
        // ALPN h2 with extended CONNECT: Auto takes HTTP/2.
        let server = tls_server(Mode::Http2, &[b"h2", b"http/1.1"]).await;
        let url = format!("wss://localhost:{}/echo", server.addr.port());
        let dialer = tls_dialer(&server);
        let (mut conn, response) = dialer.dial(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(is_http2(&conn));
        assert_eq!(conn.with_stream(|s| s.is_tls()), Some(true));
        conn.write_text("over h2 and TLS").await.unwrap();
        assert_eq!(
            conn.read_message().await.unwrap(),
            Message::text("over h2 and TLS")
        );
        // A second dial shares the connection.
        let (mut second, _) = dialer.dial(&url).await.unwrap();
        second.write_text("shared").await.unwrap();
        assert_eq!(
            second.read_message().await.unwrap(),
            Message::text("shared")
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        // Without sharing, its own connection.
        let (third, _) = dialer
            .clone()
            .share_http2_connections(false)
            .dial(&url)
            .await
            .unwrap();
        assert!(is_http2(&third));
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        // Forced HTTP/1.1 on the same server.
        let (mut h1, response) = dialer
            .clone()
            .http_version(HttpVersion::Http1)
            .dial(&url)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        assert!(!is_http2(&h1));
        h1.write_text("over 1.1").await.unwrap();
        assert_eq!(h1.read_message().await.unwrap(), Message::text("over 1.1"));

        // ALPN http/1.1 only: Auto goes on over HTTP/1.1 on the same connection;
        // forced HTTP/2 fails.
        let server = tls_server(Mode::Http2, &[b"http/1.1"]).await;
        let url = format!("wss://localhost:{}/echo", server.addr.port());
        let (conn, response) = tls_dialer(&server).dial(&url).await.unwrap();
        assert_eq!(response.status(), 101);
        assert!(!is_http2(&conn));
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        let err = tls_dialer(&server)
            .http_version(HttpVersion::Http2)
            .dial(&url)
            .await
            .expect_err("no h2");
        assert!(
            matches!(err, Error::Handshake(HandshakeError::NoExtendedConnect)),
            "{err}"
        );

        // h2 without extended CONNECT: Auto dials again over HTTP/1.1, and remembers.
        let server = tls_server(Mode::Http2WithoutConnect, &[b"h2", b"http/1.1"]).await;
        let url = format!("wss://localhost:{}/echo", server.addr.port());
        let dialer = tls_dialer(&server);
        let (mut conn, response) = dialer.dial(&url).await.unwrap();
        assert_eq!(response.status(), 101);
        assert!(!is_http2(&conn));
        conn.write_text("fell back").await.unwrap();
        assert_eq!(
            conn.read_message().await.unwrap(),
            Message::text("fell back")
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        let (conn, _) = dialer.dial(&url).await.unwrap();
        assert!(!is_http2(&conn));
        assert_eq!(
            server.accepted.load(Ordering::SeqCst),
            3,
            "went straight to HTTP/1.1"
        );
        let err = tls_dialer(&server)
            .http_version(HttpVersion::Http2)
            .dial(&url)
            .await
            .expect_err("no extended CONNECT");
        assert!(
            matches!(err, Error::Handshake(HandshakeError::NoExtendedConnect)),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn refused_origin_over_h2_is_a_bad_handshake_with_its_status() {
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let err = h2c_dialer()
            .header(
                http::header::ORIGIN,
                http::HeaderValue::from_static("https://evil.example"),
            )
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .expect_err("refused");
        match err {
            Error::BadHandshake(r) => {
                assert_eq!(r.status(), 403);
                assert_eq!(&r.body()[..], b"request origin not allowed\n");
            }
            other => panic!("expected 403, got {other}"),
        }
        // The connection stays usable for the next WebSocket.
        let (mut conn, _) = h2c_dialer()
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .unwrap();
        conn.write_text("after a refusal").await.unwrap();
        assert_eq!(
            conn.read_message().await.unwrap(),
            Message::text("after a refusal")
        );
    })
    .await;
}

mod axum_route {
    use super::*;
    use axum::response::Response;
    use axum::routing::any;
    use axum::Router;
    use yamabiko::upgrade::axum::WebSocketUpgrade;

    async fn echo(ws: WebSocketUpgrade) -> Response {
        let version = if ws.is_http2() { "h2" } else { "h1" };
        ws.protocols(["chat"])
            .enable_compression(true)
            .on_upgrade(move |mut conn| async move {
                let _ = conn.write_text(version).await;
                while let Ok(msg) = conn.read_message().await {
                    if conn.write_message(msg).await.is_err() {
                        break;
                    }
                }
            })
    }

    /// One axum route takes an HTTP/1.1 GET upgrade and an HTTP/2 CONNECT.
    #[tokio::test]
    async fn one_route_serves_http1_get_and_http2_connect() {
        bounded(async {
            let app = Router::new().route("/ws", any(echo));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            for (version, expect) in [(HttpVersion::Http1, "h1"), (HttpVersion::Http2, "h2")] {
                let (mut conn, _) = Dialer::new()
                    .http_version(version)
                    .subprotocols(["chat"])
                    .enable_compression(true)
                    .dial(&format!("ws://{addr}/ws"))
                    .await
                    .unwrap();
                assert_eq!(conn.subprotocol(), Some("chat"));
                assert!(conn.compression_negotiated());
                assert_eq!(conn.read_message().await.unwrap(), Message::text(expect));
                conn.write_text("echo").await.unwrap();
                assert_eq!(conn.read_message().await.unwrap(), Message::text("echo"));
                conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
            }
            // An HTTP/2 CONNECT without a version gets 426 on its stream.
            let mut sr = raw_client(addr).await;
            let (status, ..) = raw_connect(&mut sr, addr, "/ws", Some("websocket"), &[]).await;
            assert_eq!(status, 426);
            let (status, ..) = raw_connect(
                &mut sr,
                addr,
                "/ws",
                Some("websocket"),
                &[("sec-websocket-version", "13")],
            )
            .await;
            assert_eq!(status, 200);
        })
        .await;
    }
}

/// Tiny messages the `/tinyflood` handler sends, each in a DATA frame of its own.
const TINY_COUNT: usize = 15_000;

#[tokio::test]
async fn tiny_messages_into_client_streams_nobody_reads() {
    // Each unread stream can be sent a window's worth of 12-byte frames, some
    // 11,000; in h2's own queue six such streams would pass its budget for queued
    // small frames (half the connection window) and it would end the connection. Our
    // streams move frames out of h2's queue as they arrive, so nothing happens to
    // the other WebSocket, and nothing is lost.
    bounded(async {
        let server = h2c_server(Mode::Http2).await;
        let dialer = h2c_dialer();
        let mut floods = Vec::new();
        for _ in 0..6 {
            floods.push(
                dialer
                    .dial(&format!("ws://{}/tinyflood", server.addr))
                    .await
                    .unwrap()
                    .0,
            );
        }
        let (mut echo, _) = dialer
            .dial(&format!("ws://{}/echo", server.addr))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        echo.write_text("unaffected").await.unwrap();
        assert_eq!(
            echo.read_message().await.unwrap(),
            Message::text("unaffected")
        );
        for conn in &mut floods {
            for i in 0..TINY_COUNT {
                let msg = step("a tiny message", conn.read_message()).await.unwrap();
                assert_eq!(msg, Message::text(format!("tiny {i}")));
            }
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn our_close_handshake_ends_with_end_stream() {
    // A raw h2 server: answers our close frame with its own and reports how our side
    // of the stream ended — END_STREAM, not RST_STREAM.
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::Builder::new()
                .enable_connect_protocol()
                .handshake::<_, Bytes>(tcp)
                .await
                .unwrap();
            let Some(Ok((req, mut respond))) = conn.accept().await else {
                return;
            };
            tokio::spawn(async move { while conn.accept().await.is_some() {} });
            let mut send = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            let mut recv = req.into_body();
            let mut seen = Vec::new();
            // Our client's close frame: masked, opcode 8, code 1000 (6 + 2 bytes).
            while seen.len() < 8 {
                match recv.data().await {
                    Some(Ok(d)) => {
                        let _ = recv.flow_control().release_capacity(d.len());
                        seen.extend_from_slice(&d);
                    }
                    other => {
                        let _ = tx.send(format!("no close frame: {other:?}"));
                        return;
                    }
                }
            }
            assert_eq!(seen[0], 0x88, "a close frame");
            send.send_data(Bytes::from_static(&[0x88, 0x02, 0x03, 0xe8]), false)
                .unwrap();
            let end = loop {
                match recv.data().await {
                    None => break "END_STREAM".to_owned(),
                    Some(Ok(d)) if d.is_empty() => {}
                    Some(other) => break format!("{other:?}"),
                }
            };
            let _ = send.send_data(Bytes::new(), true);
            let _ = tx.send(end);
        });
        let (conn, _) = h2c_dialer().dial(&format!("ws://{addr}/")).await.unwrap();
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
        assert_eq!(
            step("the server's verdict", rx).await.unwrap(),
            "END_STREAM"
        );
    })
    .await;
}
