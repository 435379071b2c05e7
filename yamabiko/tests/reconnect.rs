//! The reconnecting client over loopback, async and blocking: a server killed and
//! started again on the same port gets its client back within the backoff, which keeps
//! receiving; a server that answers 403 stops the client with that error.

mod common;

use common::bounded;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use yamabiko::reconnect::Backoff;
use yamabiko::{Dialer, Error, Message, Upgrader};

/// Short delays for the tests: 100 ms doubling to 400 ms.
fn backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        stable_after: Duration::from_secs(30),
    }
}

/// How long the server stays down.
const DOWN: Duration = Duration::from_millis(600);

/// A server on `listener` that sends each connection `"{name} 0"`, `"{name} 1"`, …
/// every 20 ms. Aborting the task kills it: the listener and every connection go.
fn ticker(listener: TcpListener, name: &'static str) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            conns.spawn(async move {
                let Ok(mut conn) = Upgrader::new().upgrade(tcp).await else {
                    return;
                };
                for i in 0..10_000u32 {
                    if conn.write_text(format!("{name} {i}")).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    })
}

/// Binds a port, starts the first ticker on it.
async fn first_server() -> (JoinHandle<()>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    (ticker(listener, "first"), addr)
}

/// Kills the server, waits [`DOWN`], starts the second one on the same port.
async fn restart(server: JoinHandle<()>, addr: SocketAddr) -> (JoinHandle<()>, Instant) {
    server.abort();
    let _ = server.await;
    tokio::time::sleep(DOWN).await;
    let listener = TcpListener::bind(addr)
        .await
        .expect("bind the same port again");
    (ticker(listener, "second"), Instant::now())
}

/// A server that answers every request with 403, counting them.
async fn forbidding() -> (Arc<AtomicUsize>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = vec![0u8; 4096];
                let _ = tcp.read(&mut head).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
                    .await;
            });
        }
    });
    (count, addr)
}

fn text(message: Message) -> String {
    match message {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn assert_forbidden(e: &Error) {
    match e {
        Error::BadHandshake(response) => assert_eq!(response.status(), 403),
        other => panic!("expected the 403, got {other:?}"),
    }
}

#[tokio::test]
async fn a_restarted_server_gets_its_client_back_within_the_backoff() {
    bounded(async {
        let (server, addr) = first_server().await;
        let mut client = Dialer::new()
            .reconnecting(format!("ws://{addr}/"))
            .backoff(backoff());
        let (mut conn, _) = client.next().await.expect("a connection").expect("dial");
        assert_eq!(text(conn.read_message().await.expect("first")), "first 0");
        assert_eq!(text(conn.read_message().await.expect("second")), "first 1");
        let (server, up_at) = restart(server, addr).await;
        let end = loop {
            match conn.read_message().await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        client.ended(&end);
        let (mut conn, _) = client.next().await.expect("a connection").expect("redial");
        // Dialed at most one full delay (400 ms) after the server came back.
        let back_after = up_at.elapsed();
        assert!(back_after < Duration::from_millis(800), "{back_after:?}");
        for i in 0..3 {
            let got = text(conn.read_message().await.expect("from the second server"));
            assert_eq!(got, format!("second {i}"));
        }
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn a_403_stops_the_reconnecting_client_with_that_error() {
    bounded(async {
        let (count, addr) = forbidding().await;
        let mut client = Dialer::new()
            .reconnecting(format!("ws://{addr}/"))
            .backoff(backoff());
        let end = client.next().await.expect("an answer");
        assert_forbidden(&end.expect_err("403 is fatal"));
        assert!(client.next().await.is_none(), "nothing after a fatal error");
        assert_eq!(count.load(Ordering::SeqCst), 1, "dialed once");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_a_restarted_server_gets_its_client_back_within_the_backoff() {
    bounded(async {
        let (server, addr) = first_server().await;
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let (up_tx, up_rx) = std::sync::mpsc::channel::<Instant>();
        let client = tokio::task::spawn_blocking(move || {
            let mut client = Dialer::new()
                .reconnecting_blocking(format!("ws://{addr}/"))
                .backoff(backoff());
            let (mut conn, _) = client.next().expect("a connection").expect("dial");
            let first = [
                text(conn.read_message().expect("first")),
                text(conn.read_message().expect("second")),
            ];
            first_tx.send(first).expect("the test waits");
            let end = loop {
                match conn.read_message() {
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            };
            client.ended(&end);
            let (mut conn, _) = client.next().expect("a connection").expect("redial");
            let back_after = up_rx.recv().expect("the restart time").elapsed();
            let again: Vec<String> = (0..3)
                .map(|_| text(conn.read_message().expect("from the second server")))
                .collect();
            (back_after, again)
        });
        let first = first_rx.await.expect("the client reports");
        assert_eq!(first, ["first 0".to_string(), "first 1".to_string()]);
        let (server, up_at) = restart(server, addr).await;
        up_tx.send(up_at).expect("the client waits");
        let (back_after, again) = common::join(client).await;
        assert!(back_after < Duration::from_millis(800), "{back_after:?}");
        assert_eq!(again, ["second 0", "second 1", "second 2"]);
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_a_403_stops_the_reconnecting_client_with_that_error() {
    bounded(async {
        let (count, addr) = forbidding().await;
        let (end, after) = tokio::task::spawn_blocking(move || {
            let mut client = Dialer::new()
                .reconnecting_blocking(format!("ws://{addr}/"))
                .backoff(backoff());
            let end = client.next().expect("an answer");
            (end, client.next().is_none())
        })
        .await
        .expect("client thread");
        assert_forbidden(&end.expect_err("403 is fatal"));
        assert!(after, "nothing after a fatal error");
        assert_eq!(count.load(Ordering::SeqCst), 1, "dialed once");
    })
    .await;
}
