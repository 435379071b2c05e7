//! The pub/sub hub over real loopback connections: order per subscriber, the three
//! slow-consumer policies, subscribing and unsubscribing while others publish, a
//! stalled subscriber that must not hold anyone up, and that deliveries pending
//! together go out in one write.
//!
//! Every server connection here runs the usual reader loop (`read_message` until it
//! fails): the hub's flusher writes deliveries, and the reader goes on with those that
//! found the socket full.

mod common;

use bytes::Bytes;
use common::{bounded, client_handshake, connect, listener, step};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use yamabiko::hub::{Backpressure, Hub};
use yamabiko::{CloseCode, Conn, Error, Message, Role, Upgrader};

/// Topic of most tests.
const ROOM: &str = "room";

/// A server whose every connection subscribes to [`ROOM`] with the backpressure
/// `policy` gives for its number (0, 1, …), and reads until its connection ends; the
/// read error of connection `i` arrives on the returned channel as `(i, error)`.
async fn room_server(
    hub: Hub,
    policy: impl Fn(usize) -> Backpressure + Send + 'static,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<(usize, Error)>,
) {
    let (l, addr) = listener().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for i in 0.. {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let hub = hub.clone();
            let tx = tx.clone();
            let backpressure = policy(i);
            tokio::spawn(async move {
                let Ok(mut conn) = Upgrader::new().upgrade(tcp).await else {
                    return;
                };
                let subscription = hub.subscribe(ROOM.to_string(), &conn, backpressure);
                let error = loop {
                    match conn.read_message().await {
                        Ok(_) => continue,
                        Err(e) => break e,
                    }
                };
                drop(subscription);
                let _ = tx.send((i, error));
            });
        }
    });
    (addr, rx)
}

/// Waits until `topic` has `n` subscribers.
async fn subscribers(hub: &Hub, n: usize) {
    step("subscriptions", async {
        while hub.subscribers(ROOM) != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Message `i`: its number, then `len - 8` filler bytes.
fn numbered(i: u64, len: usize) -> Message {
    let mut v = vec![(i % 251) as u8; len.max(8)];
    v[..8].copy_from_slice(&i.to_be_bytes());
    Message::binary(v)
}

fn number(m: &Message) -> u64 {
    u64::from_be_bytes(m.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// A client that completed the handshake and then reads nothing (a receive buffer
/// of a few KiB, so that the server's socket fills soon).
async fn stalled_client(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = step("connect", socket.connect(addr))
        .await
        .expect("connect");
    step(
        "handshake",
        client_handshake(&mut tcp, addr, &[], &http::HeaderMap::new()),
    )
    .await
    .expect("handshake");
    tcp
}

#[tokio::test]
async fn every_subscriber_gets_every_message_in_order() {
    bounded(async {
        let hub = Hub::new();
        let (addr, _) = room_server(hub.clone(), |_| Backpressure::default()).await;
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(connect(addr).await);
        }
        subscribers(&hub, 8).await;
        const N: u64 = 2000;
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    for i in 0..N {
                        let m = c.read_message().await.expect("message");
                        assert_eq!(number(&m), i, "out of order");
                        assert_eq!(m, numbered(i, 100 + (i as usize % 300)));
                    }
                })
            })
            .collect();
        for i in 0..N {
            let p = hub.publish(ROOM, numbered(i, 100 + (i as usize % 300)));
            assert_eq!(p.queued, 8);
            if i % 16 == 0 {
                // Let the connections write now and then (a real publisher waits
                // for input between messages).
                tokio::task::yield_now().await;
            }
        }
        for r in readers {
            step("reader", r).await.expect("reader");
        }
        let stats = hub.stats();
        assert_eq!(stats.delivered, 8 * N);
        assert_eq!(stats.dropped, 0);
        assert_eq!(stats.subscriptions, 8);
    })
    .await
}

#[tokio::test]
async fn large_messages_are_shared_and_arrive_whole() {
    bounded(async {
        let hub = Hub::new();
        let (addr, _) = room_server(hub.clone(), |_| Backpressure::default()).await;
        let mut a = connect(addr).await;
        let mut b = connect(addr).await;
        subscribers(&hub, 2).await;
        for i in 0..20 {
            hub.publish(ROOM, numbered(i, 100_000));
            tokio::task::yield_now().await;
        }
        for i in 0..20 {
            assert_eq!(
                step("a", a.read_message()).await.unwrap(),
                numbered(i, 100_000)
            );
            assert_eq!(
                step("b", b.read_message()).await.unwrap(),
                numbered(i, 100_000)
            );
        }
    })
    .await
}

/// Publishes 1 KiB messages (yielding after each, so healthy connections keep up)
/// until `done` says so; returns how many.
async fn publish_until(hub: &Hub, mut done: impl FnMut(&yamabiko::hub::Published) -> bool) -> u64 {
    for i in 0..200_000u64 {
        let p = hub.publish(ROOM, numbered(i, 1024));
        if i % 4 == 0 {
            tokio::task::yield_now().await;
        }
        if done(&p) {
            return i + 1;
        }
    }
    panic!("the stalled subscriber never reached its bound");
}

#[tokio::test]
async fn drop_newest_skips_a_stalled_subscriber_and_nobody_else() {
    bounded(async {
        const BOUND: usize = 64 * 1024;
        let hub = Hub::new();
        let (addr, _) = room_server(hub.clone(), |i| {
            if i == 0 {
                Backpressure::drop_newest(BOUND)
            } else {
                Backpressure::default()
            }
        })
        .await;
        let stalled = stalled_client(addr).await;
        subscribers(&hub, 1).await;
        let mut healthy = connect(addr).await;
        subscribers(&hub, 2).await;
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        let reader = tokio::spawn(async move {
            let mut next = 0;
            loop {
                match healthy.read_message().await {
                    Ok(m) => {
                        assert_eq!(number(&m), next, "the healthy subscriber lost a message");
                        next += 1;
                        count.store(next as usize, Ordering::Relaxed);
                    }
                    Err(e) => panic!("healthy subscriber: {e}"),
                }
            }
        });
        // Until the stalled one has dropped 100 messages.
        let mut dropped = 0;
        let sent = publish_until(&hub, |p| {
            dropped += p.dropped;
            dropped >= 100
        })
        .await;
        let stats = hub.stats();
        assert_eq!(stats.dropped, 100);
        assert_eq!(stats.closed_slow, 0);
        // The stalled connection's queue stays within its bound; the healthy one has
        // at most the last few messages not yet written.
        assert!(
            stats.queued_bytes <= (BOUND + 8 * 1024) as u64,
            "queued {} bytes",
            stats.queued_bytes
        );
        step("healthy subscriber", async {
            while received.load(Ordering::Relaxed) < sent as usize {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        reader.abort();
        // The stalled one, reading at last, gets everything up to where its queue
        // was full, and none of the 100 after.
        let mut conn = Conn::from_raw(
            stalled,
            Role::Client,
            &Default::default(),
            Default::default(),
        );
        for i in 0..sent - 100 {
            let m = step("stalled, reading", conn.read_message()).await.unwrap();
            assert_eq!(number(&m), i);
        }
        let more = tokio::time::timeout(Duration::from_millis(200), conn.read_message()).await;
        assert!(more.is_err(), "a dropped message arrived: {more:?}");
    })
    .await
}

#[tokio::test]
async fn latest_wins_keeps_only_the_newest_state_per_key() {
    bounded(async {
        const BOUND: usize = 16 * 1024;
        let hub = Hub::new();
        let (addr, _) = room_server(hub.clone(), |_| Backpressure::latest_wins(BOUND)).await;
        let stalled = stalled_client(addr).await;
        subscribers(&hub, 1).await;
        // Fill the connection until messages are held back.
        let filled = publish_until(&hub, |p| p.held > 0).await;
        // Now two kinds of state, 50 versions each (larger than the room left, so
        // none fits): only the last of each may wait.
        for version in 0..50u64 {
            for key in [1u64, 2] {
                let state = format!("key {key} version {version:<2}").repeat(100);
                let p = hub.publish_state(ROOM, key, state);
                assert_eq!(p.queued + p.held, 1);
            }
        }
        let stats = hub.stats();
        // Every plain publish after the first held one replaced it; every state
        // version after the first of its key replaced the one before.
        assert_eq!(stats.dropped, 2 * 49);
        let mut conn = Conn::from_raw(
            stalled,
            Role::Client,
            &Default::default(),
            Default::default(),
        );
        let mut plain = Vec::new();
        let mut states = Vec::new();
        while states.len() < 2 {
            match step("reading", conn.read_message()).await.unwrap() {
                Message::Binary(b) => plain.push(number(&Message::Binary(b))),
                Message::Text(t) => states.push(t.as_str().to_owned()),
            }
        }
        // The plain messages in order, ending with the last one published.
        assert!(plain.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(plain.last(), Some(&(filled - 1)));
        assert_eq!(
            states,
            [
                "key 1 version 49".repeat(100),
                "key 2 version 49".repeat(100)
            ]
        );
    })
    .await
}

#[tokio::test]
async fn close_policy_closes_a_stalled_subscriber_after_its_grace() {
    bounded(async {
        const BOUND: usize = 32 * 1024;
        let hub = Hub::new();
        let policy = Backpressure::close(
            BOUND,
            CloseCode::TRY_AGAIN_LATER,
            Duration::from_millis(300),
        );
        let (addr, mut ended) = room_server(hub.clone(), move |_| policy.clone()).await;
        let _stalled = stalled_client(addr).await;
        subscribers(&hub, 1).await;
        let mut closed = 0;
        publish_until(&hub, |p| {
            closed += p.closed;
            closed > 0
        })
        .await;
        // Unsubscribed at once; the reader ends after the grace with TooSlow.
        assert_eq!(hub.subscribers(ROOM), 0);
        assert_eq!(hub.stats().closed_slow, 1);
        let (_, error) = step("the reader to end", ended.recv()).await.unwrap();
        match error {
            Error::TooSlow(frame) => assert_eq!(frame.code, CloseCode::TRY_AGAIN_LATER),
            other => panic!("expected TooSlow, got {other}"),
        }
    })
    .await
}

#[tokio::test]
async fn close_policy_sends_what_was_queued_then_the_close_frame() {
    bounded(async {
        const BOUND: usize = 32 * 1024;
        let hub = Hub::new();
        let policy =
            Backpressure::close(BOUND, CloseCode::POLICY_VIOLATION, Duration::from_secs(10));
        let (addr, _) = room_server(hub.clone(), move |_| policy.clone()).await;
        let stalled = stalled_client(addr).await;
        subscribers(&hub, 1).await;
        let mut closed = 0;
        let sent = publish_until(&hub, |p| {
            closed += p.closed;
            closed > 0
        })
        .await;
        // The subscriber wakes up within the grace: it gets an unbroken prefix of
        // the messages, then the close frame.
        let mut conn = Conn::from_raw(
            stalled,
            Role::Client,
            &Default::default(),
            Default::default(),
        );
        let mut next = 0;
        let error = loop {
            match step("reading", conn.read_message()).await {
                Ok(m) => {
                    assert_eq!(number(&m), next);
                    next += 1;
                }
                Err(e) => break e,
            }
        };
        assert!(next < sent, "the message that overflowed was not sent");
        assert!(
            yamabiko::is_close_error(&error, &[CloseCode::POLICY_VIOLATION]),
            "got {error}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_and_unsubscribing_while_others_publish() {
    bounded(async {
        let hub = Hub::new();
        let (addr, _) = room_server(hub.clone(), |_| Backpressure::default()).await;
        // A steady subscriber that must see an unbroken sequence throughout.
        let mut steady = connect(addr).await;
        subscribers(&hub, 1).await;
        const N: u64 = 3000;
        let publisher = {
            let hub = hub.clone();
            tokio::spawn(async move {
                for i in 0..N {
                    hub.publish(ROOM, numbered(i, 64));
                    if i % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        // Meanwhile, connections come and go, and subscriptions to other topics are
        // taken and dropped on a hub clone from several tasks.
        let churn = (0..4).map(|t| {
            let hub = hub.clone();
            tokio::spawn(async move {
                for round in 0..50 {
                    let mut c = connect(addr).await;
                    if round % 5 == 0 {
                        // Read a little, or nothing: both must be fine.
                        let _ =
                            tokio::time::timeout(Duration::from_millis(2), c.read_message()).await;
                    }
                    drop(c);
                    let _ = hub.subscribers(ROOM);
                    let _ = hub.stats();
                    if t == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        });
        let churn: Vec<_> = churn.collect();
        for i in 0..N {
            let m = step("steady subscriber", steady.read_message())
                .await
                .unwrap();
            assert_eq!(number(&m), i);
        }
        step("publisher", publisher).await.unwrap();
        for c in churn {
            step("churn", c).await.unwrap();
        }
        // Only the steady subscriber is left.
        step("departures", async {
            while hub.subscribers(ROOM) != 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_never_blocks_publishing() {
    bounded(async {
        let hub = Hub::new();
        // The stalled one may hold 1 MiB (default policy: close, 5 s grace).
        let (addr, _) = room_server(hub.clone(), |_| Backpressure::default()).await;
        let _stalled = stalled_client(addr).await;
        subscribers(&hub, 1).await;
        let mut healthy = connect(addr).await;
        subscribers(&hub, 2).await;
        // 20 MiB at the stalled one, published from another thread while the
        // healthy one reads; each publish returns at once whatever the stalled one does.
        let publisher = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let mut slowest = Duration::ZERO;
                for i in 0..20_000u64 {
                    let start = std::time::Instant::now();
                    hub.publish(ROOM, numbered(i, 1024));
                    slowest = slowest.max(start.elapsed());
                    if i % 64 == 0 {
                        // Give the healthy reader's task time to write.
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                slowest
            })
        };
        for i in 0..20_000u64 {
            let m = step("healthy subscriber", healthy.read_message())
                .await
                .unwrap();
            assert_eq!(number(&m), i);
        }
        let slowest = publisher.join().expect("publisher");
        // Generous: a publish is a few locks and copies; it never waits for a socket.
        assert!(
            slowest < Duration::from_secs(1),
            "a publish took {slowest:?}"
        );
    })
    .await
}

/// Static check: a hub and its subscriptions can be held across `.await` in spawned
/// tasks, and its methods are plain functions (nothing of it is held across an await).
#[test]
fn hub_and_subscriptions_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Hub>();
    send_sync::<Hub<u64>>();
    send_sync::<yamabiko::hub::Subscription>();
    fn send<T: Send>(_: T) {}
    send(async {
        let hub: Hub<()> = Hub::new();
        tokio::task::yield_now().await;
        hub.publish(&(), "x");
        tokio::task::yield_now().await;
    });
}

/// A transport that counts the writes that reach it.
struct CountingIo<S> {
    inner: S,
    writes: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn messages_pending_together_go_out_in_one_write() {
    bounded(async {
        let writes = Arc::new(AtomicUsize::new(0));
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        let server_io = CountingIo {
            inner: server_io,
            writes: writes.clone(),
        };
        let config = yamabiko::Config::default();
        let mut server = Conn::from_raw(server_io, Role::Server, &config, Default::default());
        let mut client = Conn::from_raw(client_io, Role::Client, &config, Default::default());
        let hub: Hub<()> = Hub::new();
        let _subscription = hub.subscribe((), &server, Backpressure::default());
        let reader = tokio::spawn(async move { while server.read_message().await.is_ok() {} });
        // Let the reader start and wait for input.
        tokio::task::yield_now().await;
        // 100 messages published without the reader running in between ...
        for i in 0..100 {
            hub.publish(&(), numbered(i, 64));
        }
        for i in 0..100 {
            assert_eq!(
                step("message", client.read_message()).await.unwrap(),
                numbered(i, 64)
            );
        }
        // ... are one write.
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        // And one published after the reader went back to waiting is one more.
        hub.publish(&(), numbered(100, 64));
        step("message", client.read_message()).await.unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 2);
        reader.abort();
    })
    .await
}

#[tokio::test]
async fn client_connections_and_compressing_ones_can_subscribe() {
    bounded(async {
        // A client connection subscribed to a hub: its frames are masked, and the
        // server reads them as usual.
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let config = yamabiko::Config::default();
        let mut server = Conn::from_raw(server_io, Role::Server, &config, Default::default());
        let mut client = Conn::from_raw(client_io, Role::Client, &config, Default::default());
        let hub: Hub<()> = Hub::new();
        let _s = hub.subscribe((), &client, Backpressure::default());
        hub.publish(&(), Message::binary(Bytes::from_static(b"from the hub")));
        let client_task = tokio::spawn(async move { while client.read_message().await.is_ok() {} });
        assert_eq!(
            step("masked delivery", server.read_message())
                .await
                .unwrap(),
            Message::binary(Bytes::from_static(b"from the hub"))
        );
        client_task.abort();

        // Compressing servers without context takeover share one compressed frame;
        // with context takeover they get the message uncompressed. Both decode.
        for no_context_takeover in [true, false] {
            let upgrader = Upgrader::new().compression(Some(yamabiko::DeflateConfig {
                server_no_context_takeover: no_context_takeover,
                ..Default::default()
            }));
            let hub = Hub::new();
            let (addr, _) = {
                let (l, addr) = listener().await;
                let hub = hub.clone();
                tokio::spawn(async move {
                    for _ in 0..2 {
                        let (tcp, _) = l.accept().await.unwrap();
                        let upgrader = upgrader.clone();
                        let hub = hub.clone();
                        tokio::spawn(async move {
                            let mut conn = upgrader.upgrade(tcp).await.unwrap();
                            assert!(conn.compression_negotiated());
                            let _s =
                                hub.subscribe(ROOM.to_string(), &conn, Backpressure::default());
                            while conn.read_message().await.is_ok() {}
                        });
                    }
                });
                (addr, ())
            };
            let dialer = yamabiko::Dialer::new().compression(Some(Default::default()));
            let url = format!("ws://{addr}/");
            let (mut a, _) = step("dial", dialer.dial(&url)).await.unwrap();
            let (mut b, _) = step("dial", dialer.dial(&url)).await.unwrap();
            subscribers(&hub, 2).await;
            let text = "compress me ".repeat(200);
            hub.publish(ROOM, text.clone());
            for c in [&mut a, &mut b] {
                let m = step("compressed delivery", c.read_message()).await.unwrap();
                assert_eq!(m, Message::text(text.clone()));
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_control_handle_subscribes_a_connection_another_task_owns() {
    bounded(async {
        // The server connection belongs to its reader task; another task (a game room,
        // say) subscribes it through a ControlHandle and publishes to it.
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let config = yamabiko::Config::default();
        let mut server = Conn::from_raw(server_io, Role::Server, &config, Default::default());
        let mut client = Conn::from_raw(client_io, Role::Client, &config, Default::default());
        let handle = server.control_handle();
        let reader = tokio::spawn(async move { while server.read_message().await.is_ok() {} });
        let hub: Hub<()> = Hub::new();
        let room = {
            let hub = hub.clone();
            tokio::spawn(async move {
                let subscription = hub.subscribe((), &handle, Backpressure::default());
                hub.publish(&(), "one");
                hub.publish(&(), Message::binary(Bytes::from_static(b"two")));
                subscription
            })
        };
        let subscription = step("room", room).await.unwrap();
        assert_eq!(
            step("first", client.read_message()).await.unwrap(),
            Message::text("one")
        );
        assert_eq!(
            step("second", client.read_message()).await.unwrap(),
            Message::binary(Bytes::from_static(b"two"))
        );
        drop(subscription);
        assert_eq!(hub.publish(&(), "three").queued, 0);

        // A client connection's handle: frames masked, read by the server as usual.
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        let mut server = Conn::from_raw(server_io, Role::Server, &config, Default::default());
        let mut client = Conn::from_raw(client_io, Role::Client, &config, Default::default());
        let _s = hub.subscribe((), &client.control_handle(), Backpressure::default());
        hub.publish(&(), "masked");
        let client_task = tokio::spawn(async move { while client.read_message().await.is_ok() {} });
        assert_eq!(
            step("masked", server.read_message()).await.unwrap(),
            Message::text("masked")
        );
        client_task.abort();
        reader.abort();
    })
    .await
}

/// A server connection subscribed to `hub`'s one topic and its client, over a pipe;
/// the server's reader runs in a task that counts its polls, and its transport counts
/// its writes.
async fn counted_subscriber(
    hub: &Hub<()>,
) -> (
    Conn<tokio::io::DuplexStream>,
    yamabiko::hub::Subscription<()>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let writes = Arc::new(AtomicUsize::new(0));
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let server_io = CountingIo {
        inner: server_io,
        writes: writes.clone(),
    };
    let config = yamabiko::Config::default();
    let mut server = Conn::from_raw(server_io, Role::Server, &config, Default::default());
    let client = Conn::from_raw(client_io, Role::Client, &config, Default::default());
    let subscription = hub.subscribe((), &server, Backpressure::default());
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = polls.clone();
    let reader = tokio::spawn(async move {
        std::future::poll_fn(|cx| {
            counted.fetch_add(1, Ordering::Relaxed);
            use std::future::Future as _;
            let read = std::pin::pin!(server.read_message());
            read.poll(cx).map(|_| ())
        })
        .await
    });
    // Let the reader start and wait for input.
    tokio::task::yield_now().await;
    (client, subscription, writes, polls, reader)
}

#[tokio::test]
async fn a_cork_writes_a_batch_once_per_subscriber_from_the_publisher() {
    bounded(async {
        let hub: Hub<()> = Hub::new();
        let (mut client, _subscription, writes, polls, reader) = counted_subscriber(&hub).await;
        let before = polls.load(Ordering::Relaxed);
        {
            let mut cork = hub.cork();
            for i in 0..50 {
                assert_eq!(cork.publish(&(), numbered(i, 64)).queued, 1);
            }
            // Nothing written before the cork goes.
            assert_eq!(writes.load(Ordering::Relaxed), 0);
        }
        // Written at once, by this task, in one write.
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        for i in 0..50 {
            assert_eq!(
                step("message", client.read_message()).await.unwrap(),
                numbered(i, 64)
            );
        }
        tokio::task::yield_now().await;
        assert_eq!(
            polls.load(Ordering::Relaxed),
            before,
            "the subscriber's task ran"
        );
        reader.abort();
    })
    .await
}

#[tokio::test]
async fn the_flusher_writes_deliveries_without_waking_the_subscribers_tasks() {
    bounded(async {
        let hub: Hub<()> = Hub::new();
        let mut subscribers = Vec::new();
        for _ in 0..3 {
            subscribers.push(counted_subscriber(&hub).await);
        }
        let before: Vec<usize> = subscribers
            .iter()
            .map(|s| s.3.load(Ordering::Relaxed))
            .collect();
        // Published in a row: queued at once, written later by the flusher ...
        for i in 0..50 {
            assert_eq!(hub.publish(&(), numbered(i, 64)).queued, 3);
        }
        for (_, _, writes, _, _) in &subscribers {
            assert_eq!(
                writes.load(Ordering::Relaxed),
                0,
                "written before the flusher ran"
            );
        }
        for (client, _, writes, _, _) in &mut subscribers {
            for i in 0..50 {
                assert_eq!(
                    step("message", client.read_message()).await.unwrap(),
                    numbered(i, 64)
                );
            }
            // ... one write per subscriber for all 50.
            assert_eq!(writes.load(Ordering::Relaxed), 1);
        }
        tokio::task::yield_now().await;
        for (s, before) in subscribers.iter().zip(before) {
            assert_eq!(
                s.3.load(Ordering::Relaxed),
                before,
                "a subscriber's task ran"
            );
        }
        for s in subscribers {
            s.4.abort();
        }
    })
    .await
}

#[tokio::test]
async fn a_publish_from_a_thread_without_a_runtime_wakes_the_readers_to_write() {
    bounded(async {
        let hub: Hub<()> = Hub::new();
        let (mut client, _subscription, writes, _, reader) = counted_subscriber(&hub).await;
        let publisher = hub.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                publisher.publish(&(), numbered(i, 64));
            }
        })
        .join()
        .expect("publishing thread");
        for i in 0..20 {
            assert_eq!(
                step("message", client.read_message()).await.unwrap(),
                numbered(i, 64)
            );
        }
        assert!(writes.load(Ordering::Relaxed) >= 1);
        reader.abort();
    })
    .await
}

/// One thread runs one runtime after another: the flusher started in one is gone
/// with it — even one that never ran — and the next gets its own. Deliveries still
/// waiting for a flusher when its runtime shuts down are left to the readers, which
/// go with it.
#[test]
fn a_thread_gets_a_new_flusher_when_its_runtime_is_replaced() {
    let hub: Hub<()> = Hub::new();
    for round in 0..4u64 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(bounded(async {
            let (mut client, _subscription, _, _, reader) = counted_subscriber(&hub).await;
            if round == 0 {
                // The flusher this starts is dropped before it is ever polled.
                hub.publish(&(), numbered(999, 64));
                return;
            }
            for i in 0..10 {
                hub.publish(&(), numbered(round * 100 + i, 64));
            }
            for i in 0..10 {
                assert_eq!(
                    step("message", client.read_message()).await.unwrap(),
                    numbered(round * 100 + i, 64)
                );
            }
            // Left waiting for the flusher when the runtime goes.
            hub.publish(&(), numbered(999, 64));
            reader.abort();
        }));
        drop(runtime);
    }
}
