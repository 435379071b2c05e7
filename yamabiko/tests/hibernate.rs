//! `Hibernator` over loopback: a connection put to sleep wakes, in a new task, when a
//! frame arrives and loses nothing (order, a large message read partly while asleep,
//! compression with context takeover, handlers, subprotocol); while asleep its
//! keepalive pings go out (masked from a client) and an unanswered one fails it; its
//! pings and pongs are handled without waking it (unless the application has a
//! handler for them); its read deadline wakes it; a connection not at rest is
//! refused and given back; and
//! `wake_all` wakes everyone.

mod common;

use common::{bounded, listener, step, RawClient};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use yamabiko::proto::OpCode;
use yamabiko::{Conn, Dialer, Error, Hibernator, Keepalive, Message, Upgrader};

/// How long a test server's connection waits for a message before it sleeps.
const QUIET: Duration = Duration::from_millis(40);

/// What the test servers report.
#[derive(Debug)]
enum Event {
    /// The connection was put to sleep.
    Slept,
    /// A read failed: the connection ended.
    Ended(Error),
}

/// Echoes; sleeps after [`QUIET`]; reports to `events`. Each wake runs this anew.
async fn serve(
    mut conn: Conn<TcpStream>,
    sleeps: Hibernator<TcpStream, mpsc::UnboundedSender<Event>>,
    events: mpsc::UnboundedSender<Event>,
) {
    loop {
        match tokio::time::timeout(QUIET, conn.read_message()).await {
            Ok(Ok(msg)) => {
                if conn.write_message(msg).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                let _ = events.send(Event::Ended(e));
                return;
            }
            Err(_) => match sleeps.hibernate(conn, events.clone()) {
                Ok(()) => {
                    let _ = events.send(Event::Slept);
                    return;
                }
                Err((back, _)) => conn = back,
            },
        }
    }
}

/// A message's text (the tests send only text).
fn text(m: &Message) -> Option<&str> {
    std::str::from_utf8(m.as_bytes()).ok()
}

type Sleeps = Hibernator<TcpStream, mpsc::UnboundedSender<Event>>;

/// A server for one connection, upgraded with `upgrader`, served by [`serve`].
async fn server(
    upgrader: Upgrader,
) -> (
    std::net::SocketAddr,
    Sleeps,
    mpsc::UnboundedReceiver<Event>,
    Arc<AtomicUsize>,
) {
    let (l, addr) = listener().await;
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = wakes.clone();
    let sleeps: Sleeps =
        Hibernator::new(move |conn, events: mpsc::UnboundedSender<Event>, sleeps| {
            counted.fetch_add(1, Ordering::SeqCst);
            serve(conn, sleeps, events)
        });
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = sleeps.clone();
    tokio::spawn(async move {
        let (tcp, _) = l.accept().await.expect("accept");
        let conn = upgrader.upgrade(tcp).await.expect("upgrade");
        serve(conn, handle, tx).await;
    });
    (addr, sleeps, rx, wakes)
}

/// Waits for the next event.
async fn next(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    step("a server event", events.recv()).await.expect("events")
}

/// Waits until the server's connection sleeps.
async fn asleep(events: &mut mpsc::UnboundedReceiver<Event>, sleeps: &Sleeps) {
    match next(events).await {
        Event::Slept => {}
        other => panic!("expected sleep, got {other:?}"),
    }
    assert_eq!(sleeps.len(), 1);
}

#[tokio::test]
async fn a_sleeping_connection_wakes_for_each_message_and_keeps_order() {
    bounded(async {
        let (addr, sleeps, mut events, wakes) = server(Upgrader::new().keepalive(None)).await;
        let mut client = Dialer::new().keepalive(None);
        let mut conn = step("dial", client_dial(&mut client, addr)).await;
        asleep(&mut events, &sleeps).await;
        for round in 0..3 {
            // A burst: it may arrive whole or in pieces, with the connection waking
            // once or several times; the echoes come back in order either way.
            for i in 0..20 {
                conn.queue_message(format!("{round}:{i}")).expect("queue");
            }
            conn.flush().await.expect("flush");
            for i in 0..20 {
                let m = step("echo", conn.read_message()).await.expect("echo");
                assert_eq!(text(&m), Some(format!("{round}:{i}").as_str()));
            }
            asleep(&mut events, &sleeps).await;
        }
        assert!(wakes.load(Ordering::SeqCst) >= 3, "woken {wakes:?} times");
    })
    .await;
}

async fn client_dial(
    dialer: &mut Dialer,
    addr: std::net::SocketAddr,
) -> Conn<yamabiko::MaybeTlsStream> {
    let (conn, _) = dialer.dial(&format!("ws://{addr}/")).await.expect("dial");
    conn
}

#[tokio::test]
async fn a_large_message_arriving_while_asleep_is_whole() {
    bounded(async {
        let (addr, sleeps, mut events, _) = server(Upgrader::new().keepalive(None)).await;
        let mut conn = step(
            "dial",
            client_dial(&mut Dialer::new().keepalive(None), addr),
        )
        .await;
        asleep(&mut events, &sleeps).await;
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        conn.write_message(big.clone()).await.expect("send");
        let m = step("echo", conn.read_message()).await.expect("echo");
        assert_eq!(m.as_bytes(), &big[..]);
    })
    .await;
}

#[tokio::test]
async fn compression_handlers_and_subprotocol_survive_sleep() {
    bounded(async {
        let upgrader = Upgrader::new()
            .keepalive(None)
            .enable_compression(true)
            .subprotocols(["chat"]);
        let (l, addr) = listener().await;
        let pings = Arc::new(AtomicUsize::new(0));
        let seen = pings.clone();
        let (tx, mut events) = mpsc::unbounded_channel();
        let sleeps: Sleeps = Hibernator::new(
            move |conn: Conn<TcpStream>, events: mpsc::UnboundedSender<Event>, sleeps| {
                assert_eq!(conn.subprotocol(), Some("chat"));
                serve(conn, sleeps, events)
            },
        );
        let handle = sleeps.clone();
        tokio::spawn(async move {
            let (tcp, _) = l.accept().await.expect("accept");
            let mut conn = upgrader.upgrade(tcp).await.expect("upgrade");
            conn.set_ping_handler(move |ctx, data| {
                seen.fetch_add(1, Ordering::SeqCst);
                ctx.send(yamabiko::Control::Pong(data.clone()));
                Ok(())
            });
            serve(conn, handle, tx).await;
        });
        let mut dialer = Dialer::new()
            .keepalive(None)
            .enable_compression(true)
            .subprotocols(["chat"]);
        let mut conn = step("dial", client_dial(&mut dialer, addr)).await;
        assert!(conn.compression_negotiated());
        // Repetitive text, so that with context takeover the later messages refer
        // back to the earlier ones across the sleeps.
        let words = "the same words again and again; ".repeat(40);
        for round in 0..3 {
            asleep(&mut events, &sleeps).await;
            conn.write_message(format!("{round} {words}"))
                .await
                .expect("send");
            let m = step("echo", conn.read_message()).await.expect("echo");
            assert_eq!(text(&m), Some(format!("{round} {words}").as_str()));
        }
        asleep(&mut events, &sleeps).await;
        conn.write_control(
            yamabiko::Control::Ping("hi".into()),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .expect("ping");
        conn.write_message("after the ping").await.expect("send");
        let m = step("echo", conn.read_message()).await.expect("echo");
        assert_eq!(text(&m), Some("after the ping"));
        assert_eq!(
            pings.load(Ordering::SeqCst),
            1,
            "the handler set before sleeping ran"
        );
    })
    .await;
}

#[tokio::test]
async fn keepalive_pings_go_out_while_asleep_and_answers_keep_it_alive() {
    bounded(async {
        let ka = Keepalive::new(Duration::from_millis(60), Duration::from_millis(400));
        let (addr, sleeps, mut events, wakes) = server(Upgrader::new().keepalive(ka)).await;
        let mut raw = RawClient::connect(addr).await;
        asleep(&mut events, &sleeps).await;
        // Answer every ping for a while: the connection stays, pinged while asleep.
        let until = Instant::now() + Duration::from_millis(600);
        let mut pings = 0;
        while Instant::now() < until {
            let f = raw.recv_frame().await;
            assert_eq!(f.header.opcode, OpCode::Ping);
            pings += 1;
            raw.send(OpCode::Pong, true, &f.payload).await;
        }
        assert!(pings >= 4, "{pings} pings in 600 ms at a 60 ms interval");
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "pongs are taken asleep");
        assert_eq!(sleeps.len(), 1);
        // A ping from the peer is answered asleep too.
        raw.send(OpCode::Ping, true, b"are you there").await;
        let f = loop {
            let f = raw.recv_frame().await;
            if f.header.opcode != OpCode::Ping {
                break f;
            }
            raw.send(OpCode::Pong, true, &f.payload).await;
        };
        assert_eq!(f.header.opcode, OpCode::Pong);
        assert_eq!(f.payload, b"are you there");
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "a ping is answered asleep");
        // A message wakes it.
        raw.send(OpCode::Text, true, b"still here").await;
        let f = loop {
            let f = raw.recv_frame().await;
            if f.header.opcode != OpCode::Ping {
                break f;
            }
        };
        assert_eq!(f.payload, b"still here");
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        drop(sleeps);
    })
    .await;
}

#[tokio::test]
async fn an_unanswered_ping_while_asleep_fails_the_connection() {
    bounded(async {
        let ka = Keepalive::new(Duration::from_millis(50), Duration::from_millis(150));
        let (addr, _sleeps, mut events, _) = server(Upgrader::new().keepalive(ka)).await;
        let mut raw = RawClient::connect(addr).await;
        let started = Instant::now();
        // Read pings and never answer: a 1011 close, then the end.
        let code = loop {
            let f = step("a frame", raw.recv_frame()).await;
            if f.header.opcode == OpCode::Close {
                break f.close_code();
            }
            assert_eq!(f.header.opcode, OpCode::Ping);
        };
        assert_eq!(code.map(|c| c.0), Some(1011));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        loop {
            match next(&mut events).await {
                Event::Slept => continue,
                Event::Ended(e) => {
                    assert!(matches!(e, Error::KeepaliveTimeout), "{e:?}");
                    break;
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_client_pings_masked_while_asleep() {
    bounded(async {
        // The server is a plain echo with its own keepalive off: a ping from the
        // client that was not masked would fail it (1002).
        let (addr, server) = common::echo_server(Upgrader::new().keepalive(None)).await;
        let sleeps: Hibernator<yamabiko::MaybeTlsStream, mpsc::UnboundedSender<Message>> =
            Hibernator::new(
                |mut conn: Conn<_>, tx: mpsc::UnboundedSender<Message>, sleeps| async move {
                    match tokio::time::timeout(QUIET, conn.read_message()).await {
                        Ok(Ok(m)) => {
                            let _ = tx.send(m);
                            let _ = sleeps.hibernate(conn, tx);
                        }
                        Ok(Err(_)) => {}
                        Err(_) => {
                            let _ = sleeps.hibernate(conn, tx);
                        }
                    }
                },
            );
        let ka = Keepalive::new(Duration::from_millis(40), Duration::from_millis(500));
        let (conn, _) = step(
            "dial",
            Dialer::new().keepalive(ka).dial(&format!("ws://{addr}/")),
        )
        .await
        .expect("dial");
        let (tx, mut rx) = mpsc::unbounded_channel();
        assert!(sleeps.hibernate(conn, tx).is_ok());
        // Pings for a while; the server's pongs are taken without waking the client.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(rx.try_recv().is_err());
        assert!(
            !server.is_finished(),
            "the echo server failed a ping from a sleeping client"
        );
    })
    .await;
}

#[tokio::test]
async fn a_read_deadline_wakes_a_sleeping_connection() {
    bounded(async {
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sleeps: Hibernator<TcpStream, mpsc::UnboundedSender<Result<Message, Error>>> =
            Hibernator::new(
                |mut conn: Conn<TcpStream>, tx: mpsc::UnboundedSender<_>, _| async move {
                    let r = conn.read_message().await;
                    let _ = tx.send(r);
                },
            );
        let handle = sleeps.clone();
        tokio::spawn(async move {
            let (tcp, _) = l.accept().await.expect("accept");
            let mut conn = Upgrader::new()
                .keepalive(None)
                .upgrade(tcp)
                .await
                .expect("upgrade");
            conn.set_read_deadline(Instant::now() + Duration::from_millis(150));
            handle
                .hibernate(conn, tx)
                .map_err(|_| "not at rest")
                .expect("hibernate");
        });
        let started = Instant::now();
        let _client = step(
            "dial",
            client_dial(&mut Dialer::new().keepalive(None), addr),
        )
        .await;
        let r = step("the woken read", rx.recv()).await.expect("result");
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(started.elapsed() >= Duration::from_millis(140));
        assert!(sleeps.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_connection_not_at_rest_is_given_back() {
    bounded(async {
        let (l, addr) = listener().await;
        let server = tokio::spawn(async move {
            let (tcp, _) = l.accept().await.expect("accept");
            let conn = Upgrader::new()
                .keepalive(None)
                .upgrade(tcp)
                .await
                .expect("upgrade");
            let sleeps: Hibernator<TcpStream> = Hibernator::new(|_, (), _| async {});
            // A control handle holds the connection's shared state.
            let control = conn.control_handle();
            let (mut conn, ()) = sleeps.hibernate(conn, ()).expect_err("a handle is alive");
            drop(control);
            // Something queued and not yet written.
            conn.queue_message("unsent").expect("queue");
            let (mut conn, ()) = sleeps.hibernate(conn, ()).expect_err("a message is queued");
            conn.flush().await.expect("flush");
            // A message that arrived and was not read yet.
            let m = conn.read_message().await.expect("first");
            assert_eq!(text(&m), Some("one"));
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (conn, ()) = match sleeps.hibernate(conn, ()) {
                Err(back) => back,
                Ok(()) => panic!("slept with a frame half read or waiting"),
            };
            // Given back unchanged: it reads on.
            let mut conn = conn;
            let m = conn.read_message().await.expect("second");
            assert_eq!(text(&m), Some("two"));
            conn.write_message("done").await.expect("reply");
        });
        let mut client = step(
            "dial",
            client_dial(&mut Dialer::new().keepalive(None), addr),
        )
        .await;
        let m = step("unsent", client.read_message()).await.expect("unsent");
        assert_eq!(text(&m), Some("unsent"));
        client.queue_message("one").expect("q");
        client.queue_message("two").expect("q");
        client.flush().await.expect("flush");
        let m = step("done", client.read_message()).await.expect("done");
        assert_eq!(text(&m), Some("done"));
        common::join(server).await;
    })
    .await;
}

#[tokio::test]
async fn wake_all_wakes_every_sleeper() {
    bounded(async {
        let (l, addr) = listener().await;
        let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
        let sleeps: Hibernator<TcpStream, usize> =
            Hibernator::new(move |conn: Conn<TcpStream>, n, _| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(n);
                    drop(conn);
                }
            });
        let handle = sleeps.clone();
        tokio::spawn(async move {
            for n in 0..5 {
                let (tcp, _) = l.accept().await.expect("accept");
                let conn = Upgrader::new().upgrade(tcp).await.expect("upgrade");
                handle
                    .hibernate(conn, n)
                    .map_err(|_| "not at rest")
                    .expect("hibernate");
            }
        });
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(step("dial", client_dial(&mut Dialer::new(), addr)).await);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while sleeps.len() < 5 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sleeps.len(), 5);
        sleeps.wake_all();
        let mut woken = Vec::new();
        for _ in 0..5 {
            woken.push(step("woken", rx.recv()).await.expect("woken"));
        }
        woken.sort_unstable();
        assert_eq!(woken, vec![0, 1, 2, 3, 4]);
        assert!(sleeps.is_empty());
        // Their tasks dropped them: each client sees its connection end.
        for mut c in clients {
            assert!(step("end", c.read_message()).await.is_err());
        }
    })
    .await;
}

#[tokio::test]
async fn a_close_from_the_peer_while_asleep_gets_its_answer() {
    bounded(async {
        let (addr, sleeps, mut events, wakes) = server(Upgrader::new().keepalive(None)).await;
        let conn = step(
            "dial",
            client_dial(&mut Dialer::new().keepalive(None), addr),
        )
        .await;
        asleep(&mut events, &sleeps).await;
        let closed = conn.close_with(yamabiko::CloseCode::NORMAL, "bye", Duration::from_secs(5));
        step("the close handshake", closed).await.expect("answered");
        match next(&mut events).await {
            Event::Ended(Error::Closed(frame)) => {
                assert_eq!(frame.code, yamabiko::CloseCode::NORMAL);
                assert_eq!(frame.reason, "bye");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert!(sleeps.is_empty());
    })
    .await;
}

/// A runtime of its own, for the test below.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Puts one connection to sleep in `sleeps` on the current runtime; returns the
/// client's side.
async fn one_asleep(sleeps: &Hibernator<TcpStream>) -> Conn<yamabiko::MaybeTlsStream> {
    let (l, addr) = listener().await;
    let handle = sleeps.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.expect("accept");
        let conn = Upgrader::new()
            .keepalive(None)
            .upgrade(tcp)
            .await
            .expect("upgrade");
        handle
            .hibernate(conn, ())
            .map_err(|_| "not at rest")
            .expect("hibernate");
    });
    let client = step(
        "dial",
        client_dial(&mut Dialer::new().keepalive(None), addr),
    )
    .await;
    common::join(server).await;
    client
}

#[test]
fn a_runtime_that_shuts_down_lets_the_next_one_start_a_keeper() {
    let sleeps: Hibernator<TcpStream> =
        Hibernator::new(|mut conn: Conn<TcpStream>, (), _| async move {
            if let Ok(m) = conn.read_message().await {
                let _ = conn.write_message(m).await;
            }
        });
    // The first runtime puts a connection to sleep and shuts down, keeper and all.
    let first = runtime();
    let _gone = first.block_on(bounded(one_asleep(&sleeps)));
    drop(first);
    assert!(sleeps.is_empty(), "the dead runtime's sleepers are let go");
    // A second runtime: a new keeper, and its sleeper wakes for a message.
    runtime().block_on(bounded(async {
        let mut client = one_asleep(&sleeps).await;
        client
            .write_message("after the first runtime")
            .await
            .expect("send");
        let m = step("echo", client.read_message()).await.expect("echo");
        assert_eq!(text(&m), Some("after the first runtime"));
    }));
}
