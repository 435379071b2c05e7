//! Keepalive over loopback (async API): a half-open path between client and server is
//! noticed by both sides, a silent peer gets close 1011, data counts as an answer,
//! latency is measured, and nothing is sent when it is off.

mod common;

use common::halfopen::{HalfOpenProxy, Side};
use common::{bounded, listener, step, RawClient};
use std::time::{Duration, Instant};
use yamabiko::proto::OpCode;
use yamabiko::{Dialer, Error, Keepalive, Upgrader};

fn keepalive(interval_ms: u64, timeout_ms: u64) -> Keepalive {
    Keepalive::new(
        Duration::from_millis(interval_ms),
        Duration::from_millis(timeout_ms),
    )
}

#[tokio::test]
async fn a_half_open_path_is_noticed_by_both_sides_and_both_let_go() {
    bounded(async {
        let (l, addr) = listener().await;
        // The server reads until its connection fails and reports how and when.
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.expect("accept");
            let upgrader = Upgrader::new().keepalive(keepalive(1000, 1000));
            let mut conn = upgrader.upgrade(tcp).await.expect("upgrade");
            let end = loop {
                match conn.read_message().await {
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            };
            (end, Instant::now(), conn.latency())
        });
        let proxy = HalfOpenProxy::start(addr).await;
        let dialer = Dialer::new().keepalive(keepalive(1000, 1000));
        let url = format!("ws://{}/", proxy.addr);
        let (mut conn, _) = step("dial", dialer.dial(&url)).await.expect("dial");

        // Idle but alive: pings go both ways and are answered; nothing ends.
        let idle = tokio::time::timeout(Duration::from_millis(2500), conn.read_message()).await;
        assert!(idle.is_err(), "the connection ended while idle: {idle:?}");
        let latency = conn.latency().expect("a ping was answered");
        assert!(latency < Duration::from_secs(1), "{latency:?}");

        proxy.freeze();
        let frozen = Instant::now();
        let end = step("the client's read", conn.read_message()).await;
        let noticed = frozen.elapsed();
        assert!(
            matches!(end, Err(Error::KeepaliveTimeout)),
            "client read: {end:?}"
        );
        // Between one timeout and an interval plus a timeout (some slack for a busy
        // machine).
        assert!(
            noticed >= Duration::from_millis(900) && noticed < Duration::from_millis(3000),
            "client noticed after {noticed:?}"
        );
        // Every later read says the same.
        assert!(matches!(
            conn.read_message().await,
            Err(Error::KeepaliveTimeout)
        ));
        // And writes find the transport gone.
        assert!(matches!(
            conn.write_text("late").await,
            Err(Error::AlreadyClosed)
        ));

        let (server_end, server_at, server_latency) = common::join(server).await;
        assert!(
            matches!(server_end, Error::KeepaliveTimeout),
            "server read: {server_end:?}"
        );
        let server_noticed = server_at.duration_since(frozen);
        assert!(
            server_noticed >= Duration::from_millis(900)
                && server_noticed < Duration::from_millis(3000),
            "server noticed after {server_noticed:?}"
        );
        assert!(server_latency.is_some(), "the server measured a round trip");
        // Both dropped their transports: the proxy saw each socket close, while
        // the connection object still exists (the client's `conn` is alive here).
        let limit = Duration::from_secs(1);
        let server_closed = proxy.wait_closed(Side::Server, limit).await;
        let client_closed = proxy.wait_closed(Side::Client, limit).await;
        assert!(server_closed.is_some(), "the server kept its socket open");
        assert!(client_closed.is_some(), "the client kept its socket open");
        drop(conn);
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_never_answers_is_pinged_then_closed_with_1011() {
    bounded(async {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.expect("accept");
            let upgrader = Upgrader::new().keepalive(keepalive(200, 300));
            let mut conn = upgrader.upgrade(tcp).await.expect("upgrade");
            let started = Instant::now();
            let end = conn.read_message().await;
            (end, started.elapsed())
        });
        let mut raw = RawClient::connect(addr).await;
        // Pings with a 4-byte payload, each one different, until the server gives up.
        let first = raw.recv_frame().await;
        assert_eq!(first.header.opcode, OpCode::Ping, "{first:?}");
        assert_eq!(first.payload.len(), 4);
        let mut pings = 1;
        let close = loop {
            let f = raw.recv_frame().await;
            match f.header.opcode {
                OpCode::Ping => {
                    assert_ne!(f.payload, first.payload, "the same payload twice");
                    pings += 1;
                }
                OpCode::Close => break f,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(
            close.close_code(),
            Some(yamabiko::CloseCode::INTERNAL_ERROR)
        );
        assert_eq!(&close.payload[2..], b"keepalive ping timeout");
        // 300 ms after the first ping, one more ping at most in between.
        assert!(pings <= 2, "{pings} pings");
        raw.expect_eof().await;
        let (end, after) = common::join(server).await;
        assert!(matches!(end, Err(Error::KeepaliveTimeout)), "{end:?}");
        assert!(
            after >= Duration::from_millis(480) && after < Duration::from_millis(2000),
            "{after:?}"
        );
        assert_eq!(
            std::io::Error::from(Error::KeepaliveTimeout).kind(),
            std::io::ErrorKind::TimedOut
        );
    })
    .await;
}

#[tokio::test]
async fn anything_from_the_peer_answers_a_ping() {
    bounded(async {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.expect("accept");
            let upgrader = Upgrader::new().keepalive(keepalive(200, 200));
            let mut conn = upgrader.upgrade(tcp).await.expect("upgrade");
            let mut received = 0;
            loop {
                match conn.read_message().await {
                    Ok(_) => received += 1,
                    Err(e) => return (received, e),
                }
            }
        });
        // A peer that never answers a ping, but talks every 100 ms for 1.5 s.
        let mut raw = RawClient::connect(addr).await;
        for i in 0..15 {
            raw.send(OpCode::Text, true, format!("message {i}").as_bytes())
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        raw.send_close(1000, b"").await;
        let (received, end) = common::join(server).await;
        assert_eq!(received, 15);
        assert!(
            yamabiko::is_close_error(&end, &[yamabiko::CloseCode::NORMAL]),
            "{end:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn with_keepalive_off_nothing_is_sent_and_it_can_be_turned_on_later() {
    bounded(async {
        let (l, addr) = listener().await;
        let (turn_on, on) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.expect("accept");
            let mut conn = Upgrader::new()
                .keepalive(None)
                .upgrade(tcp)
                .await
                .expect("upgrade");
            let quiet = tokio::time::timeout(Duration::from_millis(800), conn.read_message()).await;
            assert!(quiet.is_err(), "{quiet:?}");
            assert_eq!(conn.latency(), None);
            on.await.expect("told to turn it on");
            conn.set_keepalive(keepalive(100, 1000));
            let _ = tokio::time::timeout(Duration::from_millis(800), conn.read_message()).await;
            conn.latency()
        });
        let mut raw = RawClient::connect(addr).await;
        let silence = tokio::time::timeout(Duration::from_millis(600), raw.recv()).await;
        assert!(silence.is_err(), "a frame with keepalive off: {silence:?}");
        turn_on.send(()).expect("server waits");
        let ping = raw.recv_frame().await;
        assert_eq!(ping.header.opcode, OpCode::Ping);
        raw.send(OpCode::Pong, true, &ping.payload).await;
        let latency = common::join(server).await;
        assert!(latency.is_some(), "the pong was measured");
    })
    .await;
}

/// The blocking API: the same half-open path, a thread per side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_a_half_open_path_is_noticed_by_both_sides_and_both_let_go() {
    bounded(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let upgrader = Upgrader::new().keepalive(keepalive(1000, 1000));
            let mut conn = upgrader.upgrade_blocking(tcp).expect("upgrade");
            let end = loop {
                match conn.read_message() {
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            };
            (end, Instant::now(), conn.latency())
        });
        let proxy = HalfOpenProxy::start(addr).await;
        let url = format!("ws://{}/", proxy.addr);
        let (idle_tx, idle_rx) = std::sync::mpsc::channel();
        let (freeze_tx, freeze_rx) = std::sync::mpsc::channel::<Instant>();
        let client = std::thread::spawn(move || {
            let dialer = Dialer::new().keepalive(keepalive(1000, 1000));
            let (mut conn, _) = dialer.dial_blocking(&url).expect("dial");
            // Idle but alive for 2.5 s: pings both ways, answered.
            conn.set_read_deadline(Instant::now() + Duration::from_millis(2500));
            let idle = conn.read_message();
            idle_tx.send((idle, conn.latency())).expect("test waits");
            let frozen = freeze_rx.recv().expect("frozen");
            conn.set_read_deadline(None);
            let end = conn.read_message();
            let noticed = frozen.elapsed();
            let again = conn.read_message();
            (end, noticed, again)
        });
        let (idle, latency) = tokio::task::spawn_blocking(move || idle_rx.recv())
            .await
            .expect("join")
            .expect("the client reports");
        assert!(matches!(idle, Err(Error::Timeout)), "idle: {idle:?}");
        assert!(latency.is_some(), "the client measured a round trip");
        proxy.freeze();
        let frozen = Instant::now();
        freeze_tx.send(frozen).expect("client waits");
        let (end, noticed, again) = tokio::task::spawn_blocking(move || client.join())
            .await
            .expect("join")
            .expect("client thread");
        assert!(
            matches!(end, Err(Error::KeepaliveTimeout)),
            "client: {end:?}"
        );
        assert!(matches!(again, Err(Error::KeepaliveTimeout)), "{again:?}");
        assert!(
            noticed >= Duration::from_millis(900) && noticed < Duration::from_millis(3000),
            "client noticed after {noticed:?}"
        );
        let (server_end, server_at, server_latency) =
            tokio::task::spawn_blocking(move || server.join())
                .await
                .expect("join")
                .expect("server thread");
        assert!(
            matches!(server_end, Error::KeepaliveTimeout),
            "server: {server_end:?}"
        );
        let server_noticed = server_at.duration_since(frozen);
        assert!(
            server_noticed >= Duration::from_millis(900)
                && server_noticed < Duration::from_millis(3000),
            "server noticed after {server_noticed:?}"
        );
        assert!(server_latency.is_some(), "the server measured a round trip");
        let limit = Duration::from_secs(1);
        assert!(proxy.wait_closed(Side::Server, limit).await.is_some());
        assert!(proxy.wait_closed(Side::Client, limit).await.is_some());
    })
    .await;
}

/// The blocking API: a writer thread blocked on a peer that reads nothing is freed
/// when the reading thread's keepalive gives up.
#[test]
fn blocking_keepalive_frees_a_writer_blocked_on_a_silent_peer() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    // The peer: a raw TCP connection with a valid handshake, then silence.
    let peer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        let key = yamabiko::proto::handshake::generate_key();
        let request = yamabiko::proto::handshake::build_request(
            &addr.to_string(),
            "/",
            &key,
            &[],
            None,
            &http::HeaderMap::new(),
        );
        tcp.write_all(&request).expect("request");
        let mut head = [0u8; 1];
        let mut seen = Vec::new();
        while !seen.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut head).expect("response");
            seen.push(head[0]);
        }
        // Hold the socket, read nothing, until the server has given up.
        std::thread::sleep(Duration::from_secs(2));
        tcp
    });
    let (tcp, _) = listener.accept().expect("accept");
    let conn = Upgrader::new()
        .keepalive(keepalive(300, 300))
        .upgrade_blocking(tcp)
        .expect("upgrade");
    let (mut read, mut write) = conn.split();
    let writer = std::thread::spawn(move || {
        let chunk = vec![7u8; 64 * 1024];
        // Bounded: the kernel buffers fill within a few dozen megabytes at most.
        for _ in 0..10_000 {
            if let Err(e) = write.write_binary(chunk.clone()) {
                return e;
            }
        }
        panic!("the writer was never stopped");
    });
    let started = Instant::now();
    let end = read.read_message();
    assert!(matches!(end, Err(Error::KeepaliveTimeout)), "{end:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let blocked = writer.join().expect("writer thread");
    assert!(matches!(blocked, Error::AlreadyClosed), "{blocked:?}");
    drop(peer.join().expect("peer thread"));
}

/// A writer task blocked on a peer that reads nothing is freed when the reader's
/// keepalive gives up.
#[tokio::test]
async fn keepalive_frees_a_writer_blocked_on_a_silent_peer() {
    bounded(async {
        let (l, addr) = listener().await;
        let peer = tokio::spawn(async move {
            // Connects, then neither reads nor writes for 2 s.
            let raw = RawClient::connect(addr).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            raw
        });
        let (tcp, _) = l.accept().await.expect("accept");
        let conn = Upgrader::new()
            .keepalive(keepalive(300, 300))
            .upgrade(tcp)
            .await
            .expect("upgrade");
        let (mut read, mut write) = conn.split();
        let writer = tokio::spawn(async move {
            let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
            // Bounded: the kernel buffers fill within a few dozen megabytes at most.
            for _ in 0..10_000 {
                if let Err(e) = write.write_binary(chunk.clone()).await {
                    return e;
                }
            }
            panic!("the writer was never stopped");
        });
        let started = Instant::now();
        let end = read.read_message().await;
        assert!(matches!(end, Err(Error::KeepaliveTimeout)), "{end:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let blocked = common::join(writer).await;
        assert!(matches!(blocked, Error::AlreadyClosed), "{blocked:?}");
        drop(common::join(peer).await);
    })
    .await;
}
