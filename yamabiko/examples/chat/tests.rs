//! The chat server over loopback: two clients see each other's messages, the page is
//! served, foreign origins are refused, and a client that stops reading is closed by the
//! hub at its bound while the other keeps receiving. Run by `cargo test`.

use super::*;
use hub::Stats;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use yamabiko::http::HeaderValue;
use yamabiko::{CloseCode, Dialer, Error, Message};

const WAIT: Duration = Duration::from_secs(10);

async fn start(settings: Settings) -> (SocketAddr, Hub) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Hub::new(settings.max_queued, settings.write_wait);
    tokio::spawn(serve(listener, hub.clone(), settings));
    (addr, hub)
}

/// Polls the hub until `done` holds (bounded).
async fn wait_for(hub: &Hub, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = hub.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "still {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn read(conn: &mut yamabiko::Conn<yamabiko::MaybeTlsStream>) -> Message {
    timeout(WAIT, conn.read_message())
        .await
        .expect("a message in time")
        .expect("a message")
}

#[tokio::test]
async fn two_clients_see_each_others_messages() {
    let (addr, hub) = start(Settings::default()).await;
    let url = format!("ws://{addr}/ws");
    let (mut alice, _) = Dialer::new().dial(&url).await.unwrap();
    let (mut bob, _) = Dialer::new().dial(&url).await.unwrap();
    wait_for(&hub, |s| s.clients == 2).await;

    alice.write_text("hello from alice").await.unwrap();
    assert_eq!(read(&mut bob).await, Message::text("hello from alice"));
    assert_eq!(read(&mut alice).await, Message::text("hello from alice"));
    bob.write_text("hi alice, bob here").await.unwrap();
    assert_eq!(read(&mut alice).await, Message::text("hi alice, bob here"));
    assert_eq!(read(&mut bob).await, Message::text("hi alice, bob here"));

    // Over the limit: the sender's connection is failed with 1009, the room goes on.
    alice.write_text("x".repeat(600)).await.unwrap();
    let end = timeout(WAIT, alice.read_message()).await.unwrap();
    assert!(
        matches!(&end, Err(Error::Closed(f)) if f.code == CloseCode::MESSAGE_TOO_BIG),
        "{end:?}"
    );
    wait_for(&hub, |s| s.clients == 1).await;
    bob.write_text("still here").await.unwrap();
    assert_eq!(read(&mut bob).await, Message::text("still here"));
}

#[tokio::test]
async fn the_page_is_served_and_foreign_origins_are_refused() {
    let (addr, _hub) = start(Settings::default()).await;
    for (path, status) in [("/", "200 OK"), ("/missing", "404 Not Found")] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        // The server closes after one response: read to the end.
        timeout(WAIT, tcp.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{response}"
        );
        if path == "/" {
            assert!(response.contains("new WebSocket("), "{response}");
        }
    }

    let url = format!("ws://{addr}/ws");
    let foreign = Dialer::new()
        .header(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        )
        .dial(&url)
        .await;
    match foreign {
        Err(Error::BadHandshake(r)) => assert_eq!(r.status(), StatusCode::FORBIDDEN),
        other => panic!("a foreign origin got {:?}", other.map(|_| ())),
    }
    let own = HeaderValue::from_str(&format!("http://{addr}")).unwrap();
    let same = Dialer::new().header(header::ORIGIN, own).dial(&url).await;
    assert!(same.is_ok(), "the page's own origin was refused");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_while_the_other_gets_everything() {
    const N: usize = 128;
    const SIZE: usize = 60 * 1024;
    let settings = Settings {
        write_wait: Duration::from_millis(300),
        max_message_size: 64 * 1024,
        // Well below what is sent: the sleepy client goes over it.
        max_queued: 1 << 20,
        ..Settings::default()
    };
    let (addr, hub) = start(settings).await;
    let url = format!("ws://{addr}/ws");

    // A client with a small receive window that never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (mut sleepy, _) = Dialer::new().dial_with_stream(tcp, &url).await.unwrap();
    let (busy, _) = Dialer::new().dial(&url).await.unwrap();
    wait_for(&hub, |s| s.clients == 2).await;

    // The busy client reads everything the room says, while it talks: at most
    // `IN_FLIGHT` messages ahead of what it has read back, so that its own queue stays
    // well under the bound however the tasks are scheduled.
    const IN_FLIGHT: usize = 8;
    let window = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let (mut busy_read, mut busy_write) = busy.split();
    let read_window = window.clone();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let message = timeout(WAIT, busy_read.read_message())
                .await
                .expect("the busy client was held back")
                .expect("a message");
            if message == Message::text("after") {
                return got;
            }
            got.push(message.into_bytes());
            read_window.add_permits(1);
        }
    });
    for i in 0..N {
        window.acquire().await.unwrap().forget();
        busy_write.write_binary(vec![i as u8; SIZE]).await.unwrap();
    }

    // More than the kernel buffers of the sleepy client and its bound hold: the hub
    // closes it, and nobody waits for it meanwhile.
    let stats = wait_for(&hub, |s| s.clients == 1).await;
    assert_eq!(stats.dropped, 1, "{stats:?}");

    busy_write.write_text("after").await.unwrap();
    let got = timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(got.len(), N);
    for (i, message) in got.iter().enumerate() {
        assert!(message.len() == SIZE && message.iter().all(|&b| b == i as u8));
    }

    // The sleepy client finds its connection ended after what got through.
    let mut received = 0;
    let end = loop {
        match timeout(WAIT, sleepy.read_message()).await.expect("the end") {
            Ok(_) => received += 1,
            Err(e) => break e,
        }
    };
    assert!(received < N, "the sleepy client got everything");
    assert!(!matches!(end, Error::Timeout), "{end:?}");
}

#[tokio::test]
async fn a_client_behind_its_queue_is_dropped_by_the_hub() {
    let settings = Settings {
        write_wait: Duration::from_secs(30),
        max_message_size: 64 * 1024,
        max_queued: 8 * 60 * 1024,
        ..Settings::default()
    };
    let (addr, hub) = start(settings).await;
    let url = format!("ws://{addr}/ws");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (_sleepy, _) = Dialer::new().dial_with_stream(tcp, &url).await.unwrap();
    let (mut busy, _) = Dialer::new().dial(&url).await.unwrap();
    wait_for(&hub, |s| s.clients == 2).await;
    // The busy client waits for each message to come back before it sends the next,
    // so its own queue never holds more than one. The hub never waits: the sleepy
    // client's queue passes its bound and it is closed long before any deadline.
    let started = Instant::now();
    for i in 0..128u8 {
        busy.write_binary(vec![i; 60 * 1024]).await.unwrap();
        assert_eq!(read(&mut busy).await.into_bytes()[0], i);
    }
    let stats = wait_for(&hub, |s| s.clients == 1).await;
    assert_eq!(stats.dropped, 1, "{stats:?}");
    assert!(started.elapsed() < WAIT);
    busy.write_text("after").await.unwrap();
    assert_eq!(read(&mut busy).await, Message::text("after"));
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_dropped_by_the_keepalive() {
    let settings = Settings {
        ping_period: Duration::from_millis(200),
        pong_wait: Duration::from_millis(300),
        ..Settings::default()
    };
    let (addr, hub) = start(settings).await;
    let url = format!("ws://{addr}/ws");
    // Never reads, so never answers a ping (a client answers pings as it reads).
    let (mut silent, _) = Dialer::new().dial(&url).await.unwrap();
    // Reads all along: its reads answer every ping.
    let (mut awake, _) = Dialer::new().dial(&url).await.unwrap();
    let awake_reader = tokio::spawn(async move {
        let got = timeout(WAIT, awake.read_message()).await;
        (awake, got)
    });
    wait_for(&hub, |s| s.clients == 2).await;
    let started = Instant::now();
    let stats = wait_for(&hub, |s| s.read_timeouts == 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.clients, 1, "{stats:?}");
    // Several ping periods later the reading client is still in the room.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hub.stats().clients, 1);
    assert!(!awake_reader.is_finished(), "the awake client's read ended");
    awake_reader.abort();
    // What the silent client finds when it reads at last: pings, then close 1011 —
    // or a broken pipe, if answering one of those pings finds the socket gone first.
    // (Pings are answered inside the read, not returned.)
    let end = match timeout(WAIT, silent.read_message()).await.expect("the end") {
        Ok(m) => panic!("a message: {m:?}"),
        Err(e) => e,
    };
    match end {
        Error::Closed(frame) => assert_eq!(frame.code, CloseCode::INTERNAL_ERROR),
        Error::Io(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
}
