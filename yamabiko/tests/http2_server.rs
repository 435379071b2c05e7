//! The HTTP/2 server entrance on the h2 crate (`yamabiko::http2::ServerConnection`)
//! against the `Dialer` over loopback: WebSockets, pages and refusals on one
//! connection; a flood of tiny messages into twelve WebSockets whose server side does
//! not read, which must leave the connection and its other WebSockets working with
//! the unread data bounded by the stream windows; `close()` at once on an HTTP/2
//! WebSocket while a `ControlHandle` lives (our entrance, hyper's, and the client);
//! and hub subscribers over HTTP/2.
//!
//! Every wait is bounded by a timeout.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use yamabiko::http2::{H2Stream, Http2Settings, ServerConnection};
use yamabiko::hub::{Backpressure, Hub, Overflow};
use yamabiko::{CloseCode, Conn, Control, Dialer, Error, HttpVersion, Message, Upgrader};

const WAIT: Duration = Duration::from_secs(60);

async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, body)
        .await
        .expect("test took too long")
}

async fn step<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A cleartext HTTP/2 server (prior knowledge) on [`ServerConnection`]: every
/// WebSocket goes to `handler` with its path, `/page` is a page, anything else 404.
/// Returns the address and the number of TCP connections accepted.
async fn h2c_server<F, Fut>(handler: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(String, Conn<H2Stream>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        for _ in 0..16 {
            let Ok((tcp, peer)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                let local = tcp.local_addr().unwrap();
                let mut conn = ServerConnection::handshake(tcp, &Http2Settings::default())
                    .await
                    .unwrap();
                conn.set_transport_info(local, peer, false);
                let upgrader = Upgrader::new();
                while let Some(Ok(request)) = conn.accept().await {
                    let path = request.head().uri().path().to_owned();
                    if request.is_websocket() {
                        if let Ok(ws) = request.upgrade(&upgrader) {
                            tokio::spawn(handler.clone()(path, ws));
                        }
                    } else if path == "/page" {
                        let page = http::Response::builder()
                            .header("content-type", "text/plain")
                            .header("connection", "close")
                            .body(Bytes::from_static(b"a page\n"))
                            .unwrap();
                        request.respond(page).unwrap();
                    } else {
                        let missing = http::Response::builder()
                            .status(404)
                            .body(Bytes::new())
                            .unwrap();
                        request.respond(missing).unwrap();
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Echoes until the connection ends.
async fn echo(mut conn: Conn<H2Stream>) {
    while let Ok(msg) = conn.read_message().await {
        if conn.write_message(msg).await.is_err() {
            return;
        }
    }
}

fn h2c_dialer() -> Dialer {
    Dialer::new().http_version(HttpVersion::Http2)
}

async fn round_trip(conn: &mut Conn<yamabiko::MaybeTlsStream>, text: &str) {
    conn.write_text(text).await.expect("write");
    let back = step("an echo", conn.read_message()).await.expect("echo");
    assert_eq!(back, Message::text(text));
}

/// The peer's view of a stream ended without a close frame: 1006, or a reset.
fn ended_abnormally(e: &Error) -> bool {
    match e {
        Error::Closed(f) => f.code == CloseCode::ABNORMAL,
        Error::Io(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        _ => false,
    }
}

#[tokio::test]
async fn websockets_pages_and_refusals_share_a_connection() {
    bounded(async {
        let (addr, accepted) = h2c_server(|_, conn| echo(conn)).await;
        let dialer = h2c_dialer();
        let (mut a, response) = dialer.dial(&format!("ws://{addr}/a")).await.unwrap();
        assert_eq!(response.status(), 200);
        let (mut b, _) = dialer.dial(&format!("ws://{addr}/b")).await.unwrap();
        round_trip(&mut a, "one").await;
        round_trip(&mut b, "two").await;
        assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());

        // A foreign origin is refused with 403 on its own stream.
        let refused = dialer
            .clone()
            .header(
                http::header::ORIGIN,
                http::HeaderValue::from_static("https://evil.example"),
            )
            .dial(&format!("ws://{addr}/c"))
            .await
            .expect_err("refused");
        match refused {
            Error::BadHandshake(r) => {
                assert_eq!(r.status(), 403);
                assert_eq!(&r.body()[..], b"request origin not allowed\n");
            }
            other => panic!("expected a 403, got {other}"),
        }

        // A page on the same server, over a raw h2 client.
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sr, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut ready = sr.ready().await.unwrap();
        let request = http::Request::get(format!("http://{addr}/page"))
            .body(())
            .unwrap();
        let (response, _) = ready.send_request(request, true).unwrap();
        let response = step("the page", response).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("connection").is_none());
        let mut body = response.into_body();
        let mut page = Vec::new();
        while let Some(chunk) = step("the page's body", body.data()).await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            page.extend_from_slice(&chunk);
        }
        assert_eq!(page, b"a page\n");

        // The WebSockets went on through all that, on one connection.
        round_trip(&mut a, "three").await;
        round_trip(&mut b, "four").await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the dialer's and the raw one"
        );
        a.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
        b.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    })
    .await;
}

/// WebSockets whose server side does not read in the flood test.
const STALLED: usize = 12;
/// Tiny messages into each of them: 12 × 3,361 = 40,332, each its own DATA frame of
/// 26 bytes (20 of payload). In h2's own queue 40,328 of them were enough for h2 to
/// end the connection (GOAWAY ENHANCE_YOUR_CALM, its budget for queued small frames
/// being half the connection window); 3,361 × 26 bytes fit in a stream's window.
const TINY_PER_STREAM: usize = 3_361;

fn tiny(stream: usize, i: usize) -> String {
    // 20 bytes.
    format!("s{stream:02}-m{i:06}-tiny....")
}

/// What the server-side handlers of the flood test report.
#[derive(Debug)]
struct Drained {
    messages: usize,
    in_order: bool,
}

/// A server whose `/stall` WebSockets read nothing until `go` turns true, then read
/// everything and report on `done`; `/echo` echoes.
async fn stalling_server(
    go: watch::Receiver<bool>,
    done: mpsc::UnboundedSender<Drained>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    h2c_server(move |path, mut conn| {
        let mut go = go.clone();
        let done = done.clone();
        async move {
            if path != "/stall" {
                return echo(conn).await;
            }
            let _ = go.wait_for(|go| *go).await;
            let mut messages = 0;
            let mut in_order = true;
            let mut stream = None;
            while let Ok(msg) = conn.read_message().await {
                let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
                let s = text.get(1..3).and_then(|s| s.parse::<usize>().ok());
                stream = stream.or(s);
                in_order &= s.is_some() && s == stream;
                if let Some(i) = text.get(5..11).and_then(|i| i.parse::<usize>().ok()) {
                    in_order &= i == messages;
                }
                messages += 1;
            }
            let _ = done.send(Drained { messages, in_order });
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tiny_messages_into_stalled_websockets_harms_no_other() {
    bounded(async {
        let (go_tx, go) = watch::channel(false);
        let (done_tx, mut done) = mpsc::unbounded_channel();
        let (addr, accepted) = stalling_server(go, done_tx).await;
        let dialer = h2c_dialer();
        let mut stalled = Vec::new();
        for _ in 0..STALLED {
            let (conn, _) = dialer.dial(&format!("ws://{addr}/stall")).await.unwrap();
            stalled.push(conn);
        }
        let (mut other, _) = dialer.dial(&format!("ws://{addr}/echo")).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one HTTP/2 connection");

        // The flood: every stalled WebSocket gets its tiny messages at once.
        let mut floods = tokio::task::JoinSet::new();
        for (s, mut conn) in stalled.into_iter().enumerate() {
            floods.spawn(async move {
                for i in 0..TINY_PER_STREAM {
                    conn.write_text(tiny(s, i)).await?;
                }
                Ok::<_, Error>((s, conn))
            });
        }
        let mut stalled: Vec<_> = (0..STALLED).map(|_| None).collect();
        while let Some(joined) = step("the flood", floods.join_next()).await {
            let (s, conn) = joined.unwrap().expect("every tiny message went out");
            stalled[s] = Some(conn);
        }
        let mut stalled: Vec<_> = stalled.into_iter().flatten().collect();

        // The connection lives, and the other WebSocket works, now and a moment later.
        for round in 0..20 {
            round_trip(&mut other, &format!("other {round}")).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        round_trip(&mut other, "still here").await;
        let (mut late, _) = dialer.dial(&format!("ws://{addr}/echo")).await.unwrap();
        round_trip(&mut late, "a new stream too").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "still one connection");

        // What the server holds unread is bounded: a stalled WebSocket's writer gets
        // no credit past its stream window (128 KiB, of which 87,386 bytes are used),
        // so 2,000 more messages (52,000 bytes) cannot all go out.
        let sent = Arc::new(AtomicUsize::new(0));
        let mut more = stalled.pop().unwrap();
        let count = sent.clone();
        let writer = tokio::spawn(async move {
            for i in TINY_PER_STREAM..TINY_PER_STREAM + 2_000 {
                more.write_text(tiny(STALLED - 1, i)).await?;
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, Error>(more)
        });
        // Wait until the writer makes no more progress.
        let mut last = usize::MAX;
        step("the writer to stop", async {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let now = sent.load(Ordering::SeqCst);
                if now == last {
                    return;
                }
                last = now;
            }
        })
        .await;
        let window_left = (128 * 1024 - TINY_PER_STREAM * 26) / 26;
        assert!(!writer.is_finished(), "2,000 more messages went out");
        assert_eq!(
            sent.load(Ordering::SeqCst),
            window_left,
            "more messages than the stream window allows"
        );
        round_trip(&mut other, "unaffected by the blocked writer").await;

        // Reading now delivers everything, in order, and frees the blocked writer.
        go_tx.send(true).unwrap();
        let more = step("the blocked writer", writer).await.unwrap().unwrap();
        stalled.push(more);
        for conn in stalled {
            conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
        }
        let mut total = 0;
        for _ in 0..STALLED {
            let drained = step("a stalled WebSocket's report", done.recv())
                .await
                .unwrap();
            assert!(drained.in_order, "{drained:?}");
            total += drained.messages;
        }
        assert_eq!(total, STALLED * TINY_PER_STREAM + 2_000);
        round_trip(&mut other, "the end").await;
    })
    .await;
}

#[tokio::test]
async fn close_at_once_over_h2_while_a_control_handle_lives() {
    bounded(async {
        // The server closes `/closer` WebSockets 100 ms in, while a pinger holds a
        // ControlHandle far longer; the pinger's error comes back on `pinger_end`.
        let (pinger_tx, mut pinger_end) = mpsc::unbounded_channel();
        let (addr, _) = h2c_server(move |path, conn| {
            let pinger_tx = pinger_tx.clone();
            async move {
                if path != "/closer" {
                    return echo(conn).await;
                }
                let handle = conn.control_handle();
                let pinger = tokio::spawn(async move {
                    loop {
                        let deadline = Instant::now() + Duration::from_secs(30);
                        if let Err(e) = handle
                            .write_control(Control::ping("beat"), Some(deadline))
                            .await
                        {
                            return (e, handle.is_closed());
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
                conn.close();
                let _ = pinger_tx.send(pinger.await.unwrap());
            }
        })
        .await;
        let dialer = h2c_dialer();
        let (mut other, _) = dialer.dial(&format!("ws://{addr}/echo")).await.unwrap();
        let (mut closed, _) = dialer.dial(&format!("ws://{addr}/closer")).await.unwrap();
        let started = Instant::now();
        let end = step("the end of the stream", closed.read_message()).await;
        assert!(ended_abnormally(end.as_ref().unwrap_err()), "{end:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let (err, is_closed) = step("the pinger", pinger_end.recv()).await.unwrap();
        assert!(matches!(err, Error::AlreadyClosed), "{err:?}");
        assert!(is_closed);
        // The connection's other stream goes on.
        round_trip(&mut other, "after the close").await;

        // The client side: close() on a dialled HTTP/2 WebSocket while its handle
        // lives ends that stream at once for the server, and only that stream.
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let (addr, _) = h2c_server(move |path, mut conn| {
            let seen_tx = seen_tx.clone();
            async move {
                if path != "/watch" {
                    return echo(conn).await;
                }
                let started = Instant::now();
                let end = conn.read_message().await;
                let _ = seen_tx.send((end, started.elapsed()));
            }
        })
        .await;
        let (mut other, _) = dialer.dial(&format!("ws://{addr}/echo")).await.unwrap();
        let (watched, _) = dialer.dial(&format!("ws://{addr}/watch")).await.unwrap();
        let handle = watched.control_handle();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        watched.close();
        assert!(handle.is_closed());
        let (end, _) = step("the server's read", seen.recv()).await.unwrap();
        assert!(ended_abnormally(end.as_ref().unwrap_err()), "{end:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let sent = handle
            .write_control(Control::ping("too late"), Some(Instant::now() + WAIT))
            .await;
        assert!(matches!(sent, Err(Error::AlreadyClosed)), "{sent:?}");
        round_trip(&mut other, "the other stream goes on").await;
    })
    .await;
}

#[tokio::test]
async fn close_at_once_over_hyper_h2_while_a_control_handle_lives() {
    // The same through hyper's HTTP/2 server and `upgrade_hyper`.
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (pinger_tx, mut pinger_end) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |mut req| {
                let pinger_tx = pinger_tx.clone();
                async move {
                    let closer = req.uri().path() == "/closer";
                    let (response, upgrading) = Upgrader::new()
                        .upgrade_hyper::<_, Full<Bytes>>(&mut req)
                        .unwrap();
                    tokio::spawn(async move {
                        let Ok(mut conn) = upgrading.await else {
                            return;
                        };
                        if !closer {
                            while let Ok(msg) = conn.read_message().await {
                                if conn.write_message(msg).await.is_err() {
                                    return;
                                }
                            }
                            return;
                        }
                        let handle = conn.control_handle();
                        let pinger = tokio::spawn(async move {
                            loop {
                                let deadline = Instant::now() + Duration::from_secs(30);
                                let ping = Control::ping("beat");
                                if let Err(e) = handle.write_control(ping, Some(deadline)).await {
                                    return e;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        });
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        conn.close();
                        let _ = pinger_tx.send(pinger.await.unwrap());
                    });
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            Http2Settings::default().configure_hyper(&mut builder);
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
        let dialer = h2c_dialer();
        let (mut other, _) = dialer.dial(&format!("ws://{addr}/echo")).await.unwrap();
        let (mut closed, _) = dialer.dial(&format!("ws://{addr}/closer")).await.unwrap();
        let started = Instant::now();
        let end = step("the end of the stream", closed.read_message()).await;
        assert!(ended_abnormally(end.as_ref().unwrap_err()), "{end:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let err = step("the pinger", pinger_end.recv()).await.unwrap();
        assert!(matches!(err, Error::AlreadyClosed), "{err:?}");
        round_trip(&mut other, "after the close").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_subscribers_over_h2_receive_publishes() {
    // Three WebSockets on one HTTP/2 connection subscribe to a room: two read, one
    // never does. The readers get every publish in order; the stalled one, bounded
    // at 256 KiB, is closed as too slow without holding the others up.
    bounded(async {
        let hub: Hub<&'static str> = Hub::new();
        let (ended_tx, mut ended) = mpsc::unbounded_channel();
        let server_hub = hub.clone();
        let (addr, _) = h2c_server(move |path, mut conn| {
            let hub = server_hub.clone();
            let ended_tx = ended_tx.clone();
            async move {
                let backpressure = if path == "/stalled" {
                    Backpressure {
                        max_queued: 256 * 1024,
                        overflow: Overflow::Close {
                            code: CloseCode::POLICY_VIOLATION,
                            reason: "too slow",
                            grace: Duration::from_millis(300),
                        },
                    }
                } else {
                    Backpressure {
                        max_queued: 64 << 20,
                        ..Backpressure::default()
                    }
                };
                let subscription = hub.subscribe("room", &conn, backpressure);
                // The reader loop is what writes the hub's deliveries.
                let end = loop {
                    if let Err(e) = conn.read_message().await {
                        break e;
                    }
                };
                drop(subscription);
                let _ = ended_tx.send((path, end));
            }
        })
        .await;
        let dialer = h2c_dialer();
        let mut readers = Vec::new();
        for _ in 0..2 {
            readers.push(dialer.dial(&format!("ws://{addr}/room")).await.unwrap().0);
        }
        let (stalled, _) = dialer.dial(&format!("ws://{addr}/stalled")).await.unwrap();
        step("three subscribers", async {
            while hub.subscribers("room") != 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        const N: u64 = 2_000;
        let readers: Vec<_> = readers
            .into_iter()
            .map(|mut conn| {
                tokio::spawn(async move {
                    for i in 0..N {
                        let m = step("a publish", conn.read_message()).await.unwrap();
                        let text = String::from_utf8_lossy(m.as_bytes()).into_owned();
                        assert_eq!(text.split(':').next(), Some(&*i.to_string()));
                    }
                    conn
                })
            })
            .collect();
        for i in 0..N {
            hub.publish("room", Message::text(format!("{i}:{}", "x".repeat(1000))));
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for reader in readers {
            let conn = step("a reader", reader).await.unwrap();
            conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
        }
        // The stalled subscriber was closed for being too slow (its close frame
        // waits behind what it never read; the server ends it after the grace).
        let mut ends = Vec::new();
        for _ in 0..3 {
            ends.push(step("the subscribers' ends", ended.recv()).await.unwrap());
        }
        let (_, end) = ends.iter().find(|(path, _)| path == "/stalled").unwrap();
        assert!(matches!(end, Error::TooSlow(_)), "{end:?}");
        drop(stalled);
    })
    .await;
}
