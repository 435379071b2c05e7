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
        assert!(matches!(conn.read_message().await, Err(Error::KeepaliveTimeout)));
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
        assert_eq!(close.close_code(), Some(yamabiko::CloseCode::INTERNAL_ERROR));
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
