//! The Dialer over loopback: round trips against the Upgrader, and every way a server
//! (or the network) can refuse or misbehave. Each test is bounded by a timeout.

use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use yamabiko::proto::handshake::{self, HandshakeError};
use yamabiko::proto::{Decoder, DecoderConfig, Incoming, Role};
use yamabiko::{CloseCode, Dialer, Error, Message, Upgrader};

const TEST_TIMEOUT: Duration = Duration::from_secs(20);

async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test took too long")
}

/// An echo server on the Upgrader; each accepted request's path, Host and
/// Authorization go to `seen`.
async fn echo_server(
    upgrader: Upgrader,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<http::Request<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(serve_echo(listener, upgrader, tx));
    (addr, rx)
}

async fn serve_echo(
    listener: TcpListener,
    upgrader: Upgrader,
    seen: tokio::sync::mpsc::Sender<http::Request<()>>,
) {
    for _ in 0..32 {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let upgrader = upgrader.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let Ok((mut conn, request)) = upgrader.upgrade_with_request(tcp).await else {
                return;
            };
            let _ = seen.send(request).await;
            for _ in 0..1000 {
                let Ok(msg) = conn.read_message().await else {
                    return;
                };
                if conn.write_message(msg).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A server that reads one request and answers with whatever `answer` makes of the
/// client's key; then keeps the connection open for `hold`, sending `after` first.
async fn scripted_server(
    answer: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
) -> (SocketAddr, oneshot::Receiver<(TcpStream, BytesMut)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let (request, rest) = read_request(&mut tcp).await;
        let key = request
            .headers()
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        tcp.write_all(&answer(&key)).await.unwrap();
        let _ = tx.send((tcp, rest));
    });
    (addr, rx)
}

async fn read_request(tcp: &mut TcpStream) -> (http::Request<()>, BytesMut) {
    let mut buf = BytesMut::new();
    loop {
        if let Some((req, used)) = handshake::parse_request(&buf, 8192).unwrap() {
            let _ = buf.split_to(used);
            return (req, buf);
        }
        assert!(tcp.read_buf(&mut buf).await.unwrap() > 0, "client hung up");
    }
}

fn switching(key: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        handshake::accept_key(key.as_bytes())
    )
    .into_bytes()
}

#[tokio::test]
async fn round_trip_against_the_upgrader() {
    bounded(async {
        let (addr, mut seen) = echo_server(Upgrader::new().subprotocols(["chat"])).await;
        let url = format!("ws://{addr}/room/1?user=ann&x=%20y");
        let (mut conn, response) = Dialer::new()
            .subprotocols(["superchat", "chat"])
            .header(
                http::header::ORIGIN,
                http::HeaderValue::from_str(&format!("http://{addr}")).unwrap(),
            )
            .header(
                http::header::COOKIE,
                http::HeaderValue::from_static("session=abc"),
            )
            .dial(&url)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(conn.subprotocol(), Some("chat"));
        assert_eq!(conn.peer_addr().unwrap(), addr);
        assert!(conn.local_addr().unwrap().ip().is_loopback());

        let request = seen.recv().await.unwrap();
        assert_eq!(request.uri(), "/room/1?user=ann&x=%20y");
        let host = request.headers()["host"].to_str().unwrap();
        assert_eq!(host, addr.to_string(), "non-default port goes into Host");
        assert_eq!(request.headers()["cookie"], "session=abc");
        assert!(request.headers().get("authorization").is_none());

        conn.write_text("hello").await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text("hello"));
        let big: Bytes = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        conn.write_binary(big.clone()).await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::Binary(big));
        conn.close_with(CloseCode::NORMAL, "bye", Duration::from_secs(5))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn url_credentials_become_basic_auth() {
    bounded(async {
        let (addr, mut seen) = echo_server(Upgrader::new()).await;
        let url = format!("ws://ann:s%40cret@{addr}/");
        let (conn, _) = Dialer::new().dial(&url).await.unwrap();
        let request = seen.recv().await.unwrap();
        // base64("ann:s@cret")
        assert_eq!(request.headers()["authorization"], "Basic YW5uOnNAY3JldA==");
        conn.close();
    })
    .await;
}

#[tokio::test]
async fn bytes_after_the_response_are_the_first_frames() {
    bounded(async {
        // 101 and a text frame "hi" in one write.
        let (addr, _held) = scripted_server(|key| {
            let mut out = switching(key, "");
            out.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
            out
        })
        .await;
        let (mut conn, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text("hi"));
    })
    .await;
}

fn bad_handshake(result: yamabiko::Result<impl Sized>) -> Box<yamabiko::HandshakeResponse> {
    match result {
        Err(Error::BadHandshake(r)) => r,
        Err(e) => panic!("expected BadHandshake, got {e:?}"),
        Ok(_) => panic!("expected BadHandshake, got a connection"),
    }
}

#[tokio::test]
async fn status_200_is_a_bad_handshake_with_the_body() {
    bounded(async {
        let (addr, _held) = scripted_server(|_| {
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nnot websocket"
                .to_vec()
        })
        .await;
        let started = Instant::now();
        let r = bad_handshake(Dialer::new().dial(&format!("ws://{addr}/")).await);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(&r.body()[..], b"not websocket");
        // The connection stays open, but Content-Length said when the body ended.
        assert!(started.elapsed() < Duration::from_millis(900));
    })
    .await;
}

#[tokio::test]
async fn redirect_is_a_typed_error_with_location() {
    bounded(async {
        let (addr, _held) = scripted_server(|_| {
            b"HTTP/1.1 302 Found\r\nLocation: ws://elsewhere.example/\r\nContent-Length: 5\r\n\r\nmoved"
                .to_vec()
        })
        .await;
        let err = Dialer::new()
            .dial(&format!("ws://{addr}/"))
            .await
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("302"), "{text}");
        assert!(text.contains("ws://elsewhere.example/"), "{text}");
        let r = bad_handshake(Err::<(), _>(err));
        assert_eq!(r.status(), http::StatusCode::FOUND);
        assert_eq!(r.headers()["location"], "ws://elsewhere.example/");
        assert_eq!(&r.body()[..], b"moved");
        let response = r.into_response();
        assert_eq!(response.body().len(), 5);
    })
    .await;
}

#[tokio::test]
async fn error_body_is_bounded_and_not_waited_for_forever() {
    bounded(async {
        // No Content-Length, a large body, and the connection stays open.
        let (addr, _held) = scripted_server(|_| {
            let mut out = b"HTTP/1.1 403 Forbidden\r\n\r\n".to_vec();
            out.extend(std::iter::repeat_n(b'x', 5000));
            out
        })
        .await;
        let r = bad_handshake(Dialer::new().dial(&format!("ws://{addr}/")).await);
        assert_eq!(r.status(), 403);
        assert_eq!(r.body().len(), yamabiko::client::MAX_ERROR_BODY);

        // A short body, no length, connection left open: whatever came within the wait.
        let (addr, _held) =
            scripted_server(|_| b"HTTP/1.1 404 Not Found\r\n\r\nnope".to_vec()).await;
        let started = Instant::now();
        let r = bad_handshake(Dialer::new().dial(&format!("ws://{addr}/")).await);
        assert_eq!(r.status(), 404);
        assert_eq!(&r.body()[..], b"nope");
        assert!(started.elapsed() < Duration::from_secs(3));
    })
    .await;
}

#[tokio::test]
async fn wrong_accept_key_is_refused() {
    bounded(async {
        let (addr, _held) = scripted_server(|_| switching("not the key", "")).await;
        match Dialer::new().dial(&format!("ws://{addr}/")).await {
            Err(Error::Handshake(HandshakeError::BadAccept)) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn missing_upgrade_headers_are_refused() {
    bounded(async {
        let (addr, _held) = scripted_server(|key| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                handshake::accept_key(key.as_bytes())
            )
            .into_bytes()
        })
        .await;
        match Dialer::new().dial(&format!("ws://{addr}/")).await {
            Err(Error::Handshake(HandshakeError::ResponseNotUpgrade)) => {}
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn unrequested_subprotocol_is_refused() {
    bounded(async {
        // Nothing offered, one chosen.
        let (addr, _held) =
            scripted_server(|key| switching(key, "Sec-WebSocket-Protocol: chat\r\n")).await;
        match Dialer::new().dial(&format!("ws://{addr}/")).await {
            Err(Error::Handshake(HandshakeError::UnrequestedSubprotocol(p))) => {
                assert_eq!(p, "chat")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Offered one, another chosen.
        let (addr, _held) =
            scripted_server(|key| switching(key, "Sec-WebSocket-Protocol: mqtt\r\n")).await;
        match Dialer::new()
            .subprotocols(["chat"])
            .dial(&format!("ws://{addr}/"))
            .await
        {
            Err(Error::Handshake(HandshakeError::UnrequestedSubprotocol(p))) => {
                assert_eq!(p, "mqtt")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn unrequested_extension_is_refused() {
    bounded(async {
        let (addr, _held) = scripted_server(|key| {
            switching(key, "Sec-WebSocket-Extensions: x-unknown; level=3\r\n")
        })
        .await;
        match Dialer::new().dial(&format!("ws://{addr}/")).await {
            Err(Error::Handshake(HandshakeError::UnrequestedExtension(e))) => {
                assert!(e.contains("x-unknown"), "{e}")
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn masked_frame_from_the_server_fails_with_1002() {
    bounded(async {
        // 101, then a masked text frame "hi" (mask key 1,2,3,4): servers must not mask.
        let (addr, held) = scripted_server(|key| {
            let mut out = switching(key, "");
            let key = [1u8, 2, 3, 4];
            out.extend_from_slice(&[0x81, 0x82]);
            out.extend_from_slice(&key);
            out.extend(b"hi".iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
            out
        })
        .await;
        let (mut conn, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
        match conn.read_message().await {
            Err(Error::Protocol(e)) => assert_eq!(e.close_code(), CloseCode::PROTOCOL_ERROR),
            other => panic!("{other:?}"),
        }
        // The client told the server why, in a masked close frame with 1002.
        let (mut tcp, mut buf) = held.await.unwrap();
        let mut decoder = Decoder::new(DecoderConfig {
            role: Role::Server,
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
        });
        let close = loop {
            if let Some(item) = decoder.decode(&mut buf).unwrap() {
                break item;
            }
            assert!(tcp.read_buf(&mut buf).await.unwrap() > 0, "no close frame");
        };
        match close {
            Incoming::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::PROTOCOL_ERROR),
            other => panic!("{other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn other_schemes_are_refused() {
    bounded(async {
        for url in [
            "http://127.0.0.1:1/",
            "https://127.0.0.1:1/",
            "ftp://127.0.0.1/",
            "not a url",
            "ws://",
            "wss://:443/",
        ] {
            match Dialer::new().dial(url).await {
                Err(Error::Url(msg)) => assert!(!msg.is_empty()),
                other => panic!("{url}: {:?}", other.map(|_| ())),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn dns_failure_is_an_io_error_not_a_hang() {
    bounded(async {
        // RFC 2606: .invalid never resolves.
        let started = Instant::now();
        let result = Dialer::new()
            .handshake_timeout(Duration::from_secs(8))
            .dial("ws://no-such-host.invalid/")
            .await;
        match result {
            Err(Error::Io(e)) => assert!(e.to_string().contains("no-such-host.invalid"), "{e}"),
            // A resolver that cannot answer at all: still bounded by the timeout.
            Err(Error::Timeout) => assert!(started.elapsed() < Duration::from_secs(10)),
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn connection_refused_is_an_io_error() {
    bounded(async {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        match Dialer::new().dial(&format!("ws://127.0.0.1:{port}/")).await {
            Err(Error::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                assert!(e.to_string().contains(&port.to_string()), "{e}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = tokio::spawn(async move {
            // Accept and sit on the connection.
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(15)).await;
            drop(tcp);
        });
        let started = Instant::now();
        let result = Dialer::new()
            .handshake_timeout(Duration::from_millis(300))
            .dial(&format!("ws://{addr}/"))
            .await;
        assert!(
            matches!(result, Err(Error::Timeout)),
            "{:?}",
            result.map(|_| ())
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(3),
            "{took:?}"
        );
        holder.abort();
    })
    .await;
}

#[tokio::test]
async fn a_server_that_hangs_up_is_an_eof_error() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = read_request(&mut tcp).await;
        });
        match Dialer::new().dial(&format!("ws://{addr}/")).await {
            Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn ipv6_literal() {
    bounded(async {
        let listener = match TcpListener::bind("[::1]:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("skipping: cannot bind [::1]: {e}");
                return;
            }
        };
        let addr = listener.local_addr().unwrap();
        let (tx, mut seen) = tokio::sync::mpsc::channel(4);
        tokio::spawn(serve_echo(listener, Upgrader::new(), tx));
        let url = format!("ws://[::1]:{}/v6", addr.port());
        let (mut conn, _) = Dialer::new().dial(&url).await.unwrap();
        let request = seen.recv().await.unwrap();
        assert_eq!(request.headers()["host"], format!("[::1]:{}", addr.port()));
        conn.write_text("six").await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text("six"));
        assert!(conn.peer_addr().unwrap().is_ipv6());
    })
    .await;
}

/// A tiny HTTP CONNECT proxy: checks the request, connects, answers 200 and relays.
/// Sends the CONNECT request head it saw to `seen`.
async fn connect_proxy(refuse: bool) -> (SocketAddr, oneshot::Receiver<http::Request<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let (request, rest) = read_request(&mut client).await;
        assert_eq!(request.method(), http::Method::CONNECT);
        assert!(rest.is_empty());
        let authority = request.uri().to_string();
        let _ = tx.send(request);
        if refuse {
            let _ = client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        }
        let mut upstream = TcpStream::connect(authority.as_str()).await.unwrap();
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    (addr, rx)
}

#[tokio::test]
async fn through_a_connect_proxy() {
    bounded(async {
        let (server, mut seen) = echo_server(Upgrader::new()).await;
        let (proxy, connect_seen) = connect_proxy(false).await;
        let (mut conn, _) = Dialer::new()
            .proxy(format!("http://user:pw@{proxy}"))
            .dial(&format!("ws://{server}/via-proxy"))
            .await
            .unwrap();
        conn.write_text("tunnelled").await.unwrap();
        assert_eq!(
            conn.read_message().await.unwrap(),
            Message::text("tunnelled")
        );
        assert_eq!(conn.peer_addr().unwrap(), proxy);

        let connect = connect_seen.await.unwrap();
        assert_eq!(connect.uri().to_string(), server.to_string());
        assert_eq!(connect.headers()["host"], server.to_string());
        // base64("user:pw")
        assert_eq!(
            connect.headers()["proxy-authorization"],
            "Basic dXNlcjpwdw=="
        );
        assert_eq!(seen.recv().await.unwrap().uri(), "/via-proxy");
    })
    .await;
}

#[tokio::test]
async fn a_refusing_proxy_is_a_clear_error() {
    bounded(async {
        let (proxy, _) = connect_proxy(true).await;
        match Dialer::new()
            .proxy(format!("http://{proxy}"))
            .dial("ws://127.0.0.1:9/")
            .await
        {
            Err(Error::Io(e)) => assert!(e.to_string().contains("407"), "{e}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        match Dialer::new()
            .proxy("socks5://127.0.0.1:1080")
            .dial("ws://127.0.0.1:9/")
            .await
        {
            Err(Error::Url(e)) => assert!(e.contains("socks5"), "{e}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    })
    .await;
}

#[tokio::test]
async fn dial_with_stream_over_an_in_memory_pipe() {
    bounded(async {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let (mut conn, request) = Upgrader::new()
                .upgrade_with_request(server_io)
                .await
                .unwrap();
            assert_eq!(request.uri(), "/pipe?q=1");
            assert_eq!(request.headers()["host"], "pipe.example");
            let msg = conn.read_message().await.unwrap();
            conn.write_message(msg).await.unwrap();
            let _ = conn.read_message().await;
        });
        let (mut conn, response) = Dialer::new()
            .dial_with_stream(client_io, "ws://pipe.example/pipe?q=1")
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        conn.write_text("piped").await.unwrap();
        assert_eq!(conn.read_message().await.unwrap(), Message::text("piped"));
        conn.close_with(CloseCode::NORMAL, "", Duration::from_secs(5))
            .await
            .unwrap();
        server.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn dial_with_stream_is_bounded_by_the_handshake_timeout() {
    bounded(async {
        let (client_io, _server_io) = tokio::io::duplex(1024);
        let result = Dialer::new()
            .handshake_timeout(Duration::from_millis(200))
            .dial_with_stream(client_io, "ws://silent.example/")
            .await;
        assert!(matches!(result, Err(Error::Timeout)));
    })
    .await;
}

#[tokio::test]
async fn limits_apply_to_the_client() {
    bounded(async {
        let (addr, _) = echo_server(Upgrader::new()).await;
        let (mut conn, _) = Dialer::new()
            .max_message_size(1000)
            .dial(&format!("ws://{addr}/"))
            .await
            .unwrap();
        conn.write_binary(vec![7u8; 2000]).await.unwrap();
        match conn.read_message().await {
            Err(Error::Protocol(e)) => assert_eq!(e.close_code(), CloseCode::MESSAGE_TOO_BIG),
            other => panic!("{other:?}"),
        }
    })
    .await;
}
