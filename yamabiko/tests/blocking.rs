//! The blocking driver over loopback: client ↔ server, deadlines firing, split halves in
//! two threads, write_control from another thread, handlers, streaming, compression,
//! wss through rustls' StreamOwned, refused handshakes. Every wait is bounded.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};
use yamabiko::blocking::Conn;
use yamabiko::{CloseCode, Control, Dialer, Error, Message, MessageKind, Upgrader};

const WAIT: Duration = Duration::from_secs(10);

/// A blocking echo server on a thread per connection, for up to `conns` connections.
fn echo_server(upgrader: Upgrader, conns: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for tcp in listener.incoming().take(conns) {
            let Ok(tcp) = tcp else { return };
            let upgrader = upgrader.clone();
            thread::spawn(move || {
                let Ok(mut conn) = upgrader.upgrade_blocking(tcp) else {
                    return;
                };
                conn.set_read_deadline(Some(Instant::now() + WAIT));
                while let Ok(msg) = conn.read_message() {
                    if conn.write_message(msg).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn dial(addr: SocketAddr) -> Conn<yamabiko::blocking::BlockingStream> {
    let (mut conn, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    conn.set_read_deadline(Some(Instant::now() + WAIT));
    conn.set_write_deadline(Some(Instant::now() + WAIT));
    conn
}

#[test]
fn client_and_server_round_trip_text_binary_json_and_subprotocol() {
    let addr = echo_server(Upgrader::new().subprotocols(["b", "a"]), 1);
    let (mut conn, response) = Dialer::new()
        .subprotocols(["a", "b"])
        .dial_blocking(&format!("ws://{addr}/chat"))
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(conn.subprotocol(), Some("b"));
    conn.set_read_deadline(Some(Instant::now() + WAIT));
    conn.write_text("héllo").unwrap();
    assert_eq!(conn.read_message().unwrap(), Message::text("héllo"));
    conn.write_binary(vec![0u8, 1, 2, 255]).unwrap();
    assert_eq!(
        conn.read_message().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    conn.write_binary(big.clone()).unwrap();
    assert_eq!(conn.read_message().unwrap().as_bytes(), &big[..]);
    conn.write_json(&serde_json::json!({"n": 1})).unwrap();
    let v: serde_json::Value = conn.read_json().unwrap();
    assert_eq!(v["n"], 1);
    conn.close_with(CloseCode::NORMAL, "bye", WAIT).unwrap();
}

#[test]
fn read_deadline_fires_and_reading_resumes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut conn = Upgrader::new().upgrade_blocking(tcp).unwrap();
        // Speak only when told.
        if rx.recv_timeout(WAIT).is_ok() {
            conn.write_text("late").unwrap();
        }
        let _ = rx.recv_timeout(WAIT);
    });
    let mut conn = dial(addr);
    let started = Instant::now();
    conn.set_read_deadline(Some(Instant::now() + Duration::from_millis(200)));
    assert!(matches!(conn.read_message(), Err(Error::Timeout)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // A passed deadline fails at once; a new one lets the read go on.
    assert!(matches!(conn.read_message(), Err(Error::Timeout)));
    tx.send(()).unwrap();
    conn.set_read_deadline(Some(Instant::now() + WAIT));
    assert_eq!(conn.read_message().unwrap(), Message::text("late"));
}

#[test]
fn write_deadline_fires_when_the_peer_does_not_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let _conn = Upgrader::new().upgrade_blocking(tcp).unwrap();
        // Never reads: hold the connection open until the test ends.
        let _ = rx.recv_timeout(WAIT);
    });
    let mut conn = dial(addr);
    let chunk = vec![7u8; 1 << 20];
    let mut fired = false;
    // Bounded: the socket buffers fill after a few MiB.
    for _ in 0..256 {
        conn.set_write_deadline(Some(Instant::now() + Duration::from_millis(200)));
        match conn.write_binary(chunk.clone()) {
            Ok(()) => continue,
            Err(Error::Timeout) => {
                fired = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(fired, "the write deadline never fired");
    // The connection is still usable for control frames from elsewhere (queued).
    drop(tx);
}

#[test]
fn split_halves_in_two_threads_with_write_control_from_a_third() {
    let addr = echo_server(Upgrader::new(), 1);
    let mut conn = dial(addr);
    let pongs = Arc::new(AtomicUsize::new(0));
    let counted = pongs.clone();
    conn.set_pong_handler(move |_, data| {
        assert_eq!(&data[..], b"beat");
        counted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    });
    let control = conn.control_handle();
    let (mut read, mut write) = conn.split();
    const N: usize = 200;
    let writer = thread::spawn(move || {
        for i in 0..N {
            write.write_text(format!("message {i}")).unwrap();
        }
        write
    });
    let pinger = thread::spawn(move || {
        for _ in 0..20 {
            control
                .write_control(Control::ping("beat"), Some(Instant::now() + WAIT))
                .unwrap();
            thread::sleep(Duration::from_millis(2));
        }
    });
    let reader = thread::spawn(move || {
        for i in 0..N {
            assert_eq!(
                read.read_message().unwrap(),
                Message::text(format!("message {i}"))
            );
        }
        read
    });
    let write = writer.join().unwrap();
    pinger.join().unwrap();
    let mut read = reader.join().unwrap();
    // The pongs arrive with or before the last echoes; read until all 20 are in.
    let deadline = Instant::now() + WAIT;
    let mut write = write;
    while pongs.load(Ordering::SeqCst) < 20 && Instant::now() < deadline {
        write.write_text("more").unwrap();
        read.read_message().unwrap();
    }
    assert_eq!(pongs.load(Ordering::SeqCst), 20);
    let conn = Conn::reunite(read, write).expect("same connection");
    conn.close_with(CloseCode::NORMAL, "", WAIT).unwrap();
}

#[test]
fn handlers_have_gorilla_defaults_and_can_be_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut conn = Upgrader::new().upgrade_blocking(tcp).unwrap();
        conn.set_read_deadline(Some(Instant::now() + WAIT));
        let pinged = Arc::new(AtomicUsize::new(0));
        let seen = pinged.clone();
        conn.set_ping_handler(move |ctx, data| {
            seen.fetch_add(1, Ordering::SeqCst);
            ctx.send(Control::pong(format!(
                "re:{}",
                String::from_utf8_lossy(data)
            )));
            Ok(())
        });
        let msg = conn.read_message().unwrap();
        assert_eq!(pinged.load(Ordering::SeqCst), 1);
        conn.write_message(msg).unwrap();
        // The default close handler echoes the code; reads then report it.
        match conn.read_message() {
            Err(Error::Closed(f)) => assert_eq!(f.code, CloseCode(4001)),
            other => panic!("expected a close, got {other:?}"),
        }
    });
    let mut conn = dial(addr);
    let (tx, rx) = mpsc::channel();
    conn.set_pong_handler(move |_, data| {
        let _ = tx.send(data.clone());
        Ok(())
    });
    conn.write_control(Control::ping("x"), None).unwrap();
    conn.write_text("after the ping").unwrap();
    assert_eq!(
        conn.read_message().unwrap(),
        Message::text("after the ping")
    );
    assert_eq!(&rx.recv_timeout(WAIT).unwrap()[..], b"re:x");
    conn.close_with(4001, "done", WAIT).unwrap();
    server.join().unwrap();
}

#[test]
fn streaming_reader_and_writer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut conn = Upgrader::new()
            .write_buffer_size(1000)
            .upgrade_blocking(tcp)
            .unwrap();
        conn.set_read_deadline(Some(Instant::now() + WAIT));
        let mut reader = conn.next_reader().unwrap();
        assert_eq!(reader.kind(), MessageKind::Text);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        drop(reader);
        let mut writer = conn.next_writer(MessageKind::Text);
        for line in text.lines() {
            writer.write_all(line.to_uppercase().as_bytes()).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        writer.finish().unwrap();
        // A reader dropped early discards the rest of its message.
        let mut partial = conn.next_reader().unwrap();
        let mut four = [0u8; 4];
        partial.read_exact(&mut four).unwrap();
        drop(partial);
        let next = conn.read_message().unwrap();
        conn.write_message(next).unwrap();
    });
    let (mut conn, _) = Dialer::new()
        .write_buffer_size(512)
        .dial_blocking(&format!("ws://{addr}"))
        .unwrap();
    conn.set_read_deadline(Some(Instant::now() + WAIT));
    let mut writer = conn.next_writer(MessageKind::Text);
    let mut expected = String::new();
    for i in 0..2000 {
        let line = format!("line {i} µ\n");
        writer.write_all(line.as_bytes()).unwrap();
        expected.push_str(&line.to_uppercase());
    }
    writer.finish().unwrap();
    let mut reader = conn.next_reader().unwrap();
    let mut chunks = 0;
    let mut got = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        chunks += 1;
        got.extend_from_slice(&chunk);
    }
    drop(reader);
    assert!(chunks > 1, "the echo came in fragments");
    assert_eq!(String::from_utf8(got).unwrap(), expected);
    conn.write_binary(vec![1u8; 100_000]).unwrap();
    conn.write_text("next").unwrap();
    assert_eq!(conn.read_message().unwrap(), Message::text("next"));
    server.join().unwrap();
}

#[test]
fn invalid_text_from_a_writer_is_refused() {
    let addr = echo_server(Upgrader::new(), 1);
    let mut conn = dial(addr);
    let mut writer = conn.next_writer(MessageKind::Text);
    assert!(writer.write_all(&[0xff, 0xfe]).is_err());
}

#[test]
fn compression_round_trip_both_ways() {
    let addr = echo_server(Upgrader::new().enable_compression(true), 1);
    let (mut conn, response) = Dialer::new()
        .enable_compression(true)
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    assert!(response.headers().contains_key("sec-websocket-extensions"));
    assert!(conn.compression_negotiated());
    conn.set_read_deadline(Some(Instant::now() + WAIT));
    let text = "{\"board\": \"yamabiko\", \"posts\": [1, 2, 3]}\n".repeat(5000);
    for _ in 0..3 {
        conn.write_text(text.clone()).unwrap();
        assert_eq!(conn.read_message().unwrap(), Message::text(text.clone()));
    }
    let mut writer = conn.next_writer(MessageKind::Binary);
    for i in 0..100u32 {
        writer.write_all(&i.to_be_bytes().repeat(300)).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(conn.read_message().unwrap().len(), 100 * 4 * 300);
    conn.close_with(CloseCode::NORMAL, "", WAIT).unwrap();
}

#[test]
fn protocol_violation_closes_with_its_code() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut conn = Upgrader::new().upgrade_blocking(tcp).unwrap();
        conn.set_read_deadline(Some(Instant::now() + WAIT));
        let first = conn.read_message();
        assert!(
            matches!(first, Err(Error::Protocol(ref e)) if e.close_code() == CloseCode::PROTOCOL_ERROR),
            "{first:?}"
        );
        // Sticky: every later read says the same.
        assert!(matches!(conn.read_message(), Err(Error::Protocol(_))));
    });
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    // An unmasked text frame from a client: a protocol error (§5.1).
    tcp.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let mut all = Vec::new();
    let _ = tcp.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 101"));
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    let frame = &all[head_end..];
    assert_eq!(frame[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1002);
    server.join().unwrap();
}

#[test]
fn refused_origin_is_a_403_for_the_blocking_dialer() {
    let addr = echo_server(Upgrader::new(), 1);
    let err = Dialer::new()
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("https://evil.example"),
        )
        .dial_blocking(&format!("ws://{addr}/"))
        .expect_err("refused");
    match err {
        Error::BadHandshake(r) => {
            assert_eq!(r.status(), 403);
            assert!(!r.body().is_empty());
        }
        other => panic!("expected a 403, got {other}"),
    }
}

#[test]
fn async_client_and_blocking_server_agree() {
    let addr = echo_server(Upgrader::new().enable_compression(true), 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut conn, _) = Dialer::new()
            .enable_compression(true)
            .dial(&format!("ws://{addr}/"))
            .await
            .unwrap();
        for size in [0usize, 10, 70_000] {
            let msg = Message::binary(vec![3u8; size]);
            conn.write_message(msg.clone()).await.unwrap();
            let echoed = tokio::time::timeout(WAIT, conn.read_message())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(echoed, msg);
        }
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    });
}

/// A self-signed certificate for 127.0.0.1: (PEM, DER, key).
fn certificate() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    (certified.cert.pem(), certified.cert.der().clone(), key)
}

#[test]
fn wss_through_rustls_stream_owned() {
    let (pem, der, key) = certificate();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let session = rustls::ServerConnection::new(config).unwrap();
        let tls = rustls::StreamOwned::new(session, tcp);
        let mut conn = Upgrader::new().upgrade_blocking(tls).unwrap();
        conn.set_read_deadline(Some(Instant::now() + WAIT));
        while let Ok(msg) = conn.read_message() {
            conn.write_message(msg).unwrap();
        }
    });
    let (conn, _) = Dialer::new()
        .add_root_certificates_pem(pem.as_bytes())
        .unwrap()
        .dial_blocking(&format!("wss://{addr}/"))
        .unwrap();
    assert_eq!(conn.with_stream(|s| s.is_tls()), Some(true));
    let control = conn.control_handle();
    let (mut read, mut write) = conn.split();
    read.set_read_deadline(Some(Instant::now() + WAIT));
    // TLS halves take turns under a lock; both directions still make progress.
    let writer = thread::spawn(move || {
        for i in 0..50 {
            write.write_text(format!("secret {i}")).unwrap();
        }
        control
            .write_control(Control::ping("p"), Some(Instant::now() + WAIT))
            .unwrap();
        write
    });
    for i in 0..50 {
        assert_eq!(
            read.read_message().unwrap(),
            Message::text(format!("secret {i}"))
        );
    }
    let write = writer.join().unwrap();
    let conn = Conn::reunite(read, write).expect("same connection");
    conn.close_with(CloseCode::NORMAL, "", WAIT).unwrap();
    server.join().unwrap();
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

/// The halves keep JSON and the addresses; halves of different connections come back
/// in an error that `?` turns into a `yamabiko::Error`.
#[test]
fn blocking_halves_keep_json_addresses_and_reunite_with_question_mark() {
    let addr = echo_server(Upgrader::new(), 2);
    let (mut read, mut write) = dial(addr).split();
    assert_eq!(read.peer_addr().unwrap(), addr);
    assert_eq!(write.peer_addr().unwrap(), addr);
    assert_eq!(read.local_addr().unwrap(), write.local_addr().unwrap());
    write.write_json(&Point { x: 1, y: -2 }).unwrap();
    assert_eq!(read.read_json::<Point>().unwrap(), Point { x: 1, y: -2 });

    let (read_b, write_b) = dial(addr).split();
    fn put_back<S>(
        read: yamabiko::blocking::ReadHalf<S>,
        write: yamabiko::blocking::WriteHalf<S>,
    ) -> yamabiko::Result<Conn<S>> {
        Ok(Conn::reunite(read, write)?)
    }
    let err = put_back(read, write_b).map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let conn = Conn::reunite(read_b, write).expect_err("different connections");
    let yamabiko::ReuniteError(read_b, _write) = conn;
    drop(read_b);
}

/// One port for a page and a socket on the blocking API, without hand-written HTTP.
#[test]
fn blocking_server_answers_pages_and_upgrades_on_one_port() {
    use yamabiko::http::{header, Response, StatusCode};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let upgrader = Upgrader::new();
        for tcp in listener.incoming().take(2) {
            let mut tcp = tcp.unwrap();
            let (request, leftover) = upgrader.read_request_blocking(&mut tcp).unwrap();
            if yamabiko::is_websocket_upgrade(&request) {
                let mut conn = upgrader
                    .upgrade_request_blocking(tcp, &request, leftover)
                    .unwrap();
                conn.write_text(request.uri().path()).unwrap();
            } else {
                let page = Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .header(header::CONNECTION, "close")
                    .body(format!("no page at {}\n", request.uri().path()))
                    .unwrap();
                yamabiko::blocking::write_http_response(&mut tcp, &page).unwrap();
            }
        }
    });
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    write!(tcp, "GET /page HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert_eq!(
        response,
        "HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 17\r\n\r\nno page at /page\n"
    );
    let (mut conn, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/socket"))
        .unwrap();
    conn.set_read_deadline(Instant::now() + WAIT);
    assert_eq!(conn.read_message().unwrap(), Message::text("/socket"));
}
