//! WebSockets that stop reading, behind hyper's HTTP/2 server (`upgrade_hyper`) and
//! the axum extractor, while their clients flood them with tiny messages.
//!
//! hyper leaves a stream's DATA frames in h2's queue until the application reads the
//! upgraded stream, and h2 charges every queued frame under 256 bytes against a
//! per-connection budget of half the connection window (about 256 bytes per frame,
//! the frame's memory); past it h2 ends the whole connection with GOAWAY
//! ENHANCE_YOUR_CALM. hyper 1.12 does not let a server set that budget, so the
//! connection window is the knob: these tests show where the default settings hold
//! (any one stalled WebSocket, whatever its client sends) and that a larger window
//! keeps a connection alive under eight stalled ones, with memory still bounded by
//! the stream windows. Bounded by a timeout each.

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use yamabiko::http2::Http2Settings;
use yamabiko::upgrade::axum::WebSocketUpgrade;
use yamabiko::upgrade::hyper::HyperConn;
use yamabiko::{CloseCode, Conn, Dialer, Error, HttpVersion, MaybeTlsStream, Message, Upgrader};

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

/// Which entrance the server's WebSockets come through.
#[derive(Clone, Copy, Debug)]
enum Front {
    /// `Upgrader::upgrade_hyper` in a hyper service.
    Hyper,
    /// The axum extractor on a route that takes any method.
    Axum,
    /// The same route under `axum::serve`, with hyper's own HTTP/2 settings (the
    /// `settings` passed are not used).
    AxumServe,
}

/// The axum app of the tests: `/stall` and `/echo` through the extractor.
fn axum_app(go: watch::Receiver<bool>, done: mpsc::UnboundedSender<Drained>) -> axum::Router {
    let route = move |uri: http::Uri, ws: WebSocketUpgrade| {
        let (go, done) = (go.clone(), done.clone());
        async move {
            assert!(ws.is_http2(), "an HTTP/2 CONNECT");
            let path = uri.path().to_owned();
            ws.on_upgrade(move |conn| handle(path, conn, go, done))
        }
    };
    axum::Router::new()
        .route("/stall", axum::routing::any(route.clone()))
        .route("/echo", axum::routing::any(route))
}

/// What a stalled WebSocket's handler saw once it read.
#[derive(Debug)]
struct Drained {
    messages: usize,
    in_order: bool,
}

/// The server side of every WebSocket: `/stall` reads nothing until `go` turns true,
/// then reads to the end and reports; anything else echoes.
async fn handle(
    path: String,
    mut conn: HyperConn,
    mut go: watch::Receiver<bool>,
    done: mpsc::UnboundedSender<Drained>,
) {
    if path != "/stall" {
        while let Ok(msg) = conn.read_message().await {
            if conn.write_message(msg).await.is_err() {
                return;
            }
        }
        return;
    }
    let _ = go.wait_for(|go| *go).await;
    let mut messages = 0;
    let mut in_order = true;
    while let Ok(msg) = conn.read_message().await {
        // Tiny messages carry their index; empty ones carry nothing to check.
        if let Some(i) = std::str::from_utf8(msg.as_bytes())
            .ok()
            .and_then(|t| t.get(5..11))
            .and_then(|i| i.parse::<usize>().ok())
        {
            in_order &= i == messages;
        }
        messages += 1;
    }
    let _ = done.send(Drained { messages, in_order });
}

/// A cleartext HTTP/2 server (prior knowledge) on hyper's `http2::Builder` with
/// `settings`, its WebSockets coming through `front`. Returns its address and how
/// many TCP connections it accepted.
async fn hyper_h2c_server(
    front: Front,
    settings: Http2Settings,
    go: watch::Receiver<bool>,
    done: mpsc::UnboundedSender<Drained>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    if let Front::AxumServe = front {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        tokio::spawn(async move { axum::serve(listener, axum_app(go, done)).await });
        return (addr, accepted);
    }
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            settings.configure_hyper(&mut builder);
            let (go, done) = (go.clone(), done.clone());
            match front {
                Front::Hyper => {
                    let service = hyper::service::service_fn(move |mut req| {
                        let (go, done) = (go.clone(), done.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let (response, upgrading) = Upgrader::new()
                                .upgrade_hyper::<Incoming, http_body_util::Empty<bytes::Bytes>>(
                                    &mut req,
                                )
                                .expect("a WebSocket request");
                            tokio::spawn(async move {
                                if let Ok(conn) = upgrading.await {
                                    handle(path, conn, go, done).await;
                                }
                            });
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    tokio::spawn(builder.serve_connection(TokioIo::new(tcp), service));
                }
                Front::Axum => {
                    let service = TowerToHyperService::new(axum_app(go, done));
                    tokio::spawn(builder.serve_connection(TokioIo::new(tcp), service));
                }
                Front::AxumServe => unreachable!("served above"),
            }
        }
    });
    (addr, accepted)
}

fn h2c_dialer() -> Dialer {
    Dialer::new().http_version(HttpVersion::Http2)
}

async fn round_trip(conn: &mut Conn<MaybeTlsStream>, text: &str) {
    conn.write_text(text).await.expect("write");
    let back = step("an echo", conn.read_message()).await.expect("echo");
    assert_eq!(back, Message::text(text));
}

/// 20 bytes: which WebSocket and which message. A DATA frame of 26 with the header
/// and mask of a client's WebSocket frame.
fn tiny(stream: usize, i: usize) -> String {
    format!("s{stream:02}-m{i:06}-tiny....")
}

/// Waits (bounded) until `sent` stops growing: the writers hit the flow-control
/// windows and their send buffers.
async fn until_stuck(sent: &[Arc<AtomicUsize>]) -> usize {
    let total = || sent.iter().map(|n| n.load(Ordering::SeqCst)).sum::<usize>();
    let mut last = usize::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = total();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the writers never stopped");
}

/// Floods `stalled` WebSockets on one HTTP/2 connection with `per` messages each
/// (`message(s, i)`) while their server side does not read, next to three echoing
/// ones; returns whether the echoing ones and the connection lived. When they did,
/// also checks that the writers stopped at the windows (bounded memory) and that,
/// once the server reads, every message arrives in order.
async fn flood(
    front: Front,
    settings: Http2Settings,
    stalled: usize,
    per: usize,
    message: fn(usize, usize) -> String,
) -> bool {
    let (go_tx, go) = watch::channel(false);
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let (addr, accepted) = hyper_h2c_server(front, settings, go, done_tx).await;
    let dialer = h2c_dialer();
    let mut others = Vec::new();
    for _ in 0..3 {
        let (conn, _) = dialer.dial(&format!("ws://{addr}/echo")).await.unwrap();
        others.push(conn);
    }
    let sent: Vec<_> = (0..stalled)
        .map(|_| Arc::new(AtomicUsize::new(0)))
        .collect();
    let mut writers = tokio::task::JoinSet::new();
    for (s, count) in sent.iter().enumerate() {
        let (mut conn, _) = dialer.dial(&format!("ws://{addr}/stall")).await.unwrap();
        let count = count.clone();
        writers.spawn(async move {
            for i in 0..per {
                conn.write_text(message(s, i)).await?;
                count.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, Error>(conn)
        });
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one HTTP/2 connection");
    let stuck = until_stuck(&sent).await;

    // Did the connection live through it?
    for (n, other) in others.iter_mut().enumerate() {
        other.write_text(format!("other {n}")).await.ok();
        match step("an echo", other.read_message()).await {
            Ok(m) => assert_eq!(m, Message::text(format!("other {n}"))),
            Err(_) => return false,
        }
    }
    // The writers stopped at the windows: what the server holds unread is bounded.
    assert!(stuck < stalled * per, "every message went out unread");
    for n in &sent {
        let n = n.load(Ordering::SeqCst);
        assert!(n > 1_000 && n < per, "a writer sent {n} of {per}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (n, other) in others.iter_mut().enumerate() {
        round_trip(other, &format!("still here {n}")).await;
    }

    // Reading now frees the writers and delivers everything, in order.
    go_tx.send(true).unwrap();
    while let Some(joined) = step("a writer", writers.join_next()).await {
        let conn = joined.unwrap().expect("every message went out");
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    }
    for _ in 0..stalled {
        let drained = step("a stalled WebSocket's report", done.recv())
            .await
            .unwrap();
        assert!(drained.in_order, "{drained:?}");
        assert_eq!(drained.messages, per);
    }
    for other in others.iter_mut() {
        round_trip(other, "the end").await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "still one connection");
    true
}

/// The smallest WebSocket message a client can send: empty, a 6-byte frame (header
/// and mask), its own DATA frame — the most frames a stream window can hold.
fn empty(_: usize, _: usize) -> String {
    String::new()
}

/// One stalled WebSocket cannot end the connection with the default settings,
/// whatever its client sends: its 128 KiB window holds at most 21,846 frames of
/// 6 bytes, charged 250 each (5.2 MiB), under the 8 MiB budget (half the 16 MiB
/// connection window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_h2_one_stalled_websocket_among_several_harms_no_other() {
    bounded(async {
        let lived = flood(Front::Hyper, Http2Settings::default(), 1, 60_000, empty).await;
        assert!(lived, "the connection ended");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_h2_one_stalled_websocket_among_several_harms_no_other() {
    bounded(async {
        let lived = flood(Front::Axum, Http2Settings::default(), 1, 60_000, empty).await;
        assert!(lived, "the connection ended");
    })
    .await;
}

/// The budget's edge: seven stalled WebSockets whose windows fill with 26-byte frames
/// (5,041 each, charged 230: 8.1 MiB in all) stay under the default 8 MiB; eight do
/// not (the ignored reproduction below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_h2_seven_stalled_websockets_stay_within_the_default_budget() {
    bounded(async {
        let lived = flood(Front::Hyper, Http2Settings::default(), 7, 12_000, tiny).await;
        assert!(lived, "the connection ended");
    })
    .await;
}

/// Eight stalled WebSockets whose windows fill with 26-byte frames (5,041 each,
/// charged 230: 9.3 MiB in all) need a budget above the default 8 MiB; a 64 MiB
/// connection window gives 32 MiB. What the server holds is still bounded by the
/// stream windows (8 × 128 KiB of payload) and the budget (the frames' overhead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_h2_eight_stalled_websockets_live_with_a_larger_connection_window() {
    bounded(async {
        let settings = Http2Settings {
            connection_window: 64 << 20,
            ..Http2Settings::default()
        };
        assert!(flood(Front::Hyper, settings.clone(), 8, 12_000, tiny).await);
        assert!(flood(Front::Axum, settings, 8, 12_000, tiny).await);
    })
    .await;
}

/// The weakness, reproduced: with the default settings, eight stalled WebSockets
/// flooded with tiny messages exhaust h2's small-frame budget and hyper's server ends
/// the whole connection (GOAWAY ENHANCE_YOUR_CALM), the echoing WebSockets with it.
/// Deterministic (the stream windows fix how many frames wait) and quick; ignored
/// because it shows a limit of hyper 1.12, not behaviour we want:
/// `cargo test -p yamabiko --test http2_hyper_stall -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reproduces hyper's connection-wide GOAWAY; see the module docs"]
async fn hyper_h2_eight_stalled_websockets_end_the_connection_with_default_settings() {
    bounded(async {
        let lived = flood(Front::Hyper, Http2Settings::default(), 8, 12_000, tiny).await;
        assert!(!lived, "the connection lived: has hyper fixed it?");
    })
    .await;
}

/// `axum::serve` keeps hyper's own HTTP/2 settings: 1 MiB windows and so a 512 KiB
/// budget, which some 2,100 empty messages into one stalled WebSocket exhaust — the
/// connection ends with every WebSocket on it. Ignored for the same reason as the
/// one above; serve the `Router` with `configure_hyper` instead (the axum tests
/// above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "reproduces hyper's connection-wide GOAWAY under axum::serve's defaults"]
async fn axum_serve_one_stalled_websocket_ends_the_connection() {
    bounded(async {
        let lived = flood(Front::AxumServe, Http2Settings::default(), 1, 60_000, empty).await;
        assert!(!lived, "the connection lived: has hyper or axum changed?");
    })
    .await;
}
