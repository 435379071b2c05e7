//! The opening handshake over loopback TCP: origin checks, extra headers, the request
//! handed to the application, HTTP errors for bad requests, and stalled clients.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use yamabiko::proto::handshake::HandshakeError;
use yamabiko::{Config, Error, Message, Upgrader};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A well-formed upgrade request with `extra` header lines (each ending in CRLF).
fn request(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
}

/// Sends `bytes` on a fresh connection and reads the whole response (the server closes
/// the connection after an error response; a 101 response is followed by nothing, so
/// for those only the head is read).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> (http::Response<()>, String) {
    let mut tcp = step("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    tcp.write_all(bytes).await.expect("write");
    read_http_response(&mut tcp).await
}

/// Asserts an HTTP error response with `status` and a one-line body.
fn assert_refused(response: &http::Response<()>, body: &str, status: u16) {
    assert_eq!(response.status().as_u16(), status, "body: {body}");
    assert_eq!(body.lines().count(), 1, "one-line reason: {body:?}");
    assert!(body.ends_with('\n'));
    let len: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, body.len());
}

/// Runs an upgrader on one connection, then closes the connection at once (so the
/// 101 response is followed by EOF). Returns the upgrade outcome.
async fn upgrade_once(
    upgrader: Upgrader,
) -> (SocketAddr, tokio::task::JoinHandle<Result<(), Error>>) {
    serve_one(upgrader, |conn| async move { conn.close() }).await
}

fn handshake_error(r: Result<(), Error>) -> HandshakeError {
    match r {
        Err(Error::Handshake(e)) => e,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn default_origin_check() {
    bounded(async {
        // Cross-origin: 403.
        let (addr, server) = upgrade_once(Upgrader::new()).await;
        let (resp, body) = exchange(
            addr,
            request(addr, "Origin: http://evil.example\r\n").as_bytes(),
        )
        .await;
        assert_refused(&resp, &body, 403);
        assert_eq!(
            handshake_error(join(server).await),
            HandshakeError::OriginRejected
        );
        // Same origin (scheme aside, host and port equal to Host): accepted.
        let (addr, server) = upgrade_once(Upgrader::new()).await;
        let origin = format!("Origin: https://{addr}\r\n");
        let (resp, _) = exchange(addr, request(addr, &origin).as_bytes()).await;
        assert_eq!(resp.status().as_u16(), 101);
        join(server).await.expect("same origin");
        // Same host, other port: another origin.
        let (addr, server) = upgrade_once(Upgrader::new()).await;
        let origin = format!("Origin: http://{}:1\r\n", addr.ip());
        let (resp, body) = exchange(addr, request(addr, &origin).as_bytes()).await;
        assert_refused(&resp, &body, 403);
        handshake_error(join(server).await);
        // No Origin (not a browser): accepted.
        let (addr, server) = upgrade_once(Upgrader::new()).await;
        let (resp, _) = exchange(addr, request(addr, "").as_bytes()).await;
        assert_eq!(resp.status().as_u16(), 101);
        join(server).await.expect("no origin");
    })
    .await
}

#[tokio::test]
async fn custom_origin_check() {
    bounded(async {
        let allow = || {
            Upgrader::new().check_origin(|req| {
                req.headers()
                    .get("origin")
                    .is_some_and(|o| o == "https://board.example")
            })
        };
        let (addr, server) = upgrade_once(allow()).await;
        let (resp, _) = exchange(
            addr,
            request(addr, "Origin: https://board.example\r\n").as_bytes(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 101);
        join(server).await.expect("allowed origin");
        // The closure replaces the default entirely: even the same origin is refused.
        for same_origin in [true, false] {
            let (addr, server) = upgrade_once(allow()).await;
            let origin = match same_origin {
                true => format!("Origin: http://{addr}\r\n"),
                false => String::new(),
            };
            let (resp, body) = exchange(addr, request(addr, &origin).as_bytes()).await;
            assert_refused(&resp, &body, 403);
            assert_eq!(
                handshake_error(join(server).await),
                HandshakeError::OriginRejected
            );
        }
    })
    .await
}

#[tokio::test]
async fn extra_response_headers_and_request_access() {
    bounded(async {
        let upgrader = Upgrader::new()
            .response_header(
                http::header::SET_COOKIE,
                http::HeaderValue::from_static("session=abc"),
            )
            .response_header(
                http::HeaderName::from_static("x-served-by"),
                http::HeaderValue::from_static("yamabiko"),
            );
        let (listener, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let (mut conn, req) = upgrader.upgrade_with_request(tcp).await?;
            let msg = conn.read_message().await?;
            Ok::<_, Error>((req, msg))
        });
        let mut extra = http::HeaderMap::new();
        extra.insert("cookie", http::HeaderValue::from_static("theme=dark"));
        let (mut client, hs) = connect_with(addr, &Config::default(), &[], &extra)
            .await
            .expect("connect");
        assert_eq!(hs.response.headers()["set-cookie"], "session=abc");
        assert_eq!(hs.response.headers()["x-served-by"], "yamabiko");
        client.write_text("hi").await.unwrap();
        let (req, msg) = join(server).await.expect("server");
        assert_eq!(msg, Message::text("hi"));
        assert_eq!(req.uri().path(), "/");
        assert_eq!(req.headers()["cookie"], "theme=dark");
    })
    .await
}

/// An accept loop serving every connection concurrently (bounded to `max` of them);
/// reports each connection's outcome on the channel.
fn accept_loop(
    listener: tokio::net::TcpListener,
    upgrader: Upgrader,
    max: usize,
) -> mpsc::UnboundedReceiver<Result<(), Error>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for _ in 0..max {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (upgrader, tx) = (upgrader.clone(), tx.clone());
            tokio::spawn(async move {
                let outcome = async {
                    let mut conn = upgrader.upgrade(tcp).await?;
                    loop {
                        let m = conn.read_message().await?;
                        conn.write_message(m).await?;
                    }
                };
                let _ = tx.send(outcome.await);
            });
        }
    });
    rx
}

#[tokio::test]
async fn garbage_request_gets_400_and_server_keeps_serving() {
    bounded(async {
        let (listener, addr) = listener().await;
        let mut outcomes = accept_loop(listener, Upgrader::new(), 10);
        // A client that stalls mid-request holds its own task only.
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();

        let (resp, body) = exchange(addr, b"\x00\x01\x02 this is not HTTP\r\n\r\n").await;
        assert_refused(&resp, &body, 400);
        let (resp, body) = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_refused(&resp, &body, 400);
        let (resp, body) = exchange(addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await;
        assert_refused(&resp, &body, 400);
        for _ in 0..3 {
            let e = step("outcome", outcomes.recv()).await.expect("outcome");
            assert!(matches!(e, Err(Error::Handshake(_))), "{e:?}");
        }

        // Everyone else is still served.
        for i in 0..3 {
            let mut client = connect(addr).await;
            client.write_text(format!("still here {i}")).await.unwrap();
            let echo = step("echo", client.read_message()).await.unwrap();
            assert_eq!(echo, Message::text(format!("still here {i}")));
            client.close();
        }
        drop(stalled);
    })
    .await
}

/// A request builder, the status it gets and the error the server reports.
type BadRequest = (fn(SocketAddr) -> String, u16, HandshakeError);

#[tokio::test]
async fn bad_requests_get_http_errors() {
    bounded(async {
        let cases: Vec<BadRequest> = vec![
            (
                |a| request(a, "").replace("GET", "POST"),
                405,
                HandshakeError::MethodNotAllowed,
            ),
            (
                |a| request(a, "").replace("HTTP/1.1", "HTTP/1.0"),
                400,
                HandshakeError::HttpVersion,
            ),
            (
                |a| request(a, "").replace("Upgrade: websocket\r\n", ""),
                400,
                HandshakeError::NoUpgradeWebsocket,
            ),
            (
                |a| request(a, "").replace("Connection: Upgrade", "Connection: close"),
                400,
                HandshakeError::NoConnectionUpgrade,
            ),
            (
                |a| request(a, "").replace("Version: 13", "Version: 8"),
                426,
                HandshakeError::UnsupportedVersion,
            ),
            (
                |a| request(a, "").replace(KEY, "c2hvcnQ="),
                400,
                HandshakeError::BadKey,
            ),
            (
                |a| request(a, "").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
                400,
                HandshakeError::BadKey,
            ),
        ];
        for (make, status, expected) in cases {
            let (addr, server) = upgrade_once(Upgrader::new()).await;
            let (resp, body) = exchange(addr, make(addr).as_bytes()).await;
            assert_refused(&resp, &body, status);
            match status {
                426 => assert_eq!(resp.headers()["sec-websocket-version"], "13"),
                405 => assert_eq!(resp.headers()["allow"], "GET"),
                _ => {}
            }
            assert_eq!(handshake_error(join(server).await), expected);
        }
    })
    .await
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    bounded(async {
        // Exactly the limit, without the end of the head: refused after reading it all.
        let (addr, server) = upgrade_once(Upgrader::new().max_header_bytes(4096)).await;
        let mut head = request(addr, "").into_bytes();
        head.truncate(head.len() - 2);
        head.extend_from_slice(b"X-Padding: ");
        head.resize(4096, b'a');
        let (resp, body) = exchange(addr, &head).await;
        assert_refused(&resp, &body, 431);
        assert_eq!(
            handshake_error(join(server).await),
            HandshakeError::HeadersTooLarge
        );
        // Too many header lines: 431 too.
        let (addr, server) = upgrade_once(Upgrader::new()).await;
        let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
        let (resp, body) = exchange(addr, request(addr, &many).as_bytes()).await;
        assert_refused(&resp, &body, 431);
        assert_eq!(
            handshake_error(join(server).await),
            HandshakeError::HeadersTooLarge
        );
    })
    .await
}

#[tokio::test]
async fn stalled_handshake_times_out() {
    bounded(async {
        for sent in [&b""[..], b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg"] {
            let timeout = Duration::from_millis(300);
            let (addr, server) = upgrade_once(Upgrader::new().handshake_timeout(timeout)).await;
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let start = Instant::now();
            tcp.write_all(sent).await.unwrap();
            let r = join(server).await;
            let took = start.elapsed();
            assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
            assert!(took >= Duration::from_millis(250), "gave up after {took:?}");
            assert!(took < Duration::from_secs(5), "gave up after {took:?}");
            // The server dropped the connection.
            let mut rest = Vec::new();
            let n = step(
                "EOF",
                tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut rest),
            )
            .await
            .expect("read");
            assert_eq!(n, 0);
        }
    })
    .await
}
