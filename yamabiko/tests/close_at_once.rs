//! `close()` ends the transport at once, async and blocking, over loopback — from the
//! connection while a `ControlHandle` lives, from a write half while the read half
//! waits in another task or thread, from a handle while a write is blocked on a peer
//! that does not read — and whatever shared the connection then fails with
//! `Error::AlreadyClosed`.

mod common;

use common::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use yamabiko::{CloseCode, Control, Dialer, Error, Upgrader};

/// Longer than any of these tests may take: a close that waits for the handle or the
/// other half to go away would show as this long.
const HELD: Duration = Duration::from_secs(8);
/// How soon the peer must see the end.
const PROMPT: Duration = Duration::from_secs(2);

/// The peer's view of a connection closed without a close frame: the end of the
/// stream (1006), or a reset when the closing side still had unread bytes (pongs).
fn ended_abnormally(e: &Error) -> bool {
    match e {
        Error::Closed(f) => f.code == CloseCode::ABNORMAL,
        Error::Io(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        _ => false,
    }
}

#[tokio::test]
async fn async_close_is_at_once_while_a_control_handle_lives() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            let handle = conn.control_handle();
            // A pinger that holds the handle far longer than the test.
            let pinger = tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    let sent = handle
                        .write_control(Control::ping("beat"), Some(Instant::now() + HELD))
                        .await;
                    if let Err(e) = sent {
                        return (e, handle.is_closed());
                    }
                    assert!(started.elapsed() < HELD, "the pinger never failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            conn.close();
            pinger.await.unwrap()
        })
        .await;
        let mut client = connect(addr).await;
        let started = Instant::now();
        let end = step("the end", client.read_message()).await;
        assert!(ended_abnormally(end.as_ref().unwrap_err()), "{end:?}");
        assert!(
            started.elapsed() < PROMPT,
            "closed after {:?}",
            started.elapsed()
        );
        let (err, closed) = join(server).await.expect("upgrade");
        assert!(matches!(err, Error::AlreadyClosed), "{err:?}");
        assert!(closed);
    })
    .await
}

#[tokio::test]
async fn async_write_half_close_wakes_the_reader() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            let (mut read, mut write) = conn.split();
            // The client sends nothing: this read waits until the close.
            let reader = tokio::spawn(async move { read.read_message().await });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(write.peer_addr().is_ok());
            write.close();
            let read_end = step("the reader", reader).await.unwrap();
            let write_end = write.write_text("too late").await;
            (read_end, write_end, write.peer_addr().is_err())
        })
        .await;
        let mut client = connect(addr).await;
        let end = step("the end", client.read_message()).await;
        assert!(ended_abnormally(end.as_ref().unwrap_err()), "{end:?}");
        let (read_end, write_end, no_addr) = join(server).await.expect("upgrade");
        assert!(
            matches!(read_end, Err(Error::AlreadyClosed)),
            "{read_end:?}"
        );
        assert!(
            matches!(write_end, Err(Error::AlreadyClosed)),
            "{write_end:?}"
        );
        assert!(no_addr, "an address after close");
    })
    .await
}

#[tokio::test]
async fn async_handle_close_cuts_off_a_blocked_write() {
    bounded(async {
        let (addr, server) = serve_one(Upgrader::new(), |conn| async move {
            let handle = conn.control_handle();
            let (mut read, mut write) = conn.split();
            let reader = tokio::spawn(async move { read.read_message().await });
            // The client never reads: after a few MiB this write waits on TCP.
            let writer = tokio::spawn(async move {
                let chunk = yamabiko::bytes::Bytes::from(vec![7u8; 1 << 20]);
                for _ in 0..256 {
                    write.write_binary(chunk.clone()).await?;
                }
                Ok::<_, Error>(())
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!writer.is_finished(), "the peer took 256 MiB");
            handle.close();
            let write_end = step("the writer", writer).await.unwrap();
            let read_end = step("the reader", reader).await.unwrap();
            (write_end, read_end)
        })
        .await;
        let client = connect(addr).await; // never reads
        let (write_end, read_end) = join(server).await.expect("upgrade");
        assert!(
            matches!(write_end, Err(Error::AlreadyClosed)),
            "{write_end:?}"
        );
        assert!(
            matches!(read_end, Err(Error::AlreadyClosed)),
            "{read_end:?}"
        );
        drop(client);
    })
    .await
}

/// A blocking server for one connection running `f`; its result comes back on the
/// channel.
fn blocking_server<T: Send + 'static>(
    f: impl FnOnce(yamabiko::blocking::Conn<std::net::TcpStream>) -> T + Send + 'static,
) -> (std::net::SocketAddr, mpsc::Receiver<T>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = Upgrader::new().upgrade_blocking(tcp).unwrap();
        let _ = tx.send(f(conn));
    });
    (addr, rx)
}

fn blocking_client(
    addr: std::net::SocketAddr,
) -> yamabiko::blocking::Conn<yamabiko::blocking::BlockingStream> {
    let (mut conn, _) = Dialer::new()
        .dial_blocking(&format!("ws://{addr}/"))
        .unwrap();
    conn.set_read_deadline(Some(Instant::now() + HELD));
    conn
}

#[test]
fn blocking_close_is_at_once_while_a_control_handle_lives() {
    let (addr, done) = blocking_server(|conn| {
        let handle = conn.control_handle();
        let pinger = std::thread::spawn(move || {
            let started = Instant::now();
            loop {
                if let Err(e) = handle.write_control(Control::ping("beat"), Instant::now() + HELD) {
                    return e;
                }
                assert!(started.elapsed() < HELD, "the pinger never failed");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        conn.close();
        pinger.join().unwrap()
    });
    let mut client = blocking_client(addr);
    let started = Instant::now();
    let end = client.read_message();
    assert!(ended_abnormally(end.as_ref().unwrap_err()), "{end:?}");
    assert!(
        started.elapsed() < PROMPT,
        "closed after {:?}",
        started.elapsed()
    );
    let err = done.recv_timeout(HELD).unwrap();
    assert!(matches!(err, Error::AlreadyClosed), "{err:?}");
}

#[test]
fn blocking_write_half_close_wakes_the_reader() {
    let (addr, done) = blocking_server(|conn| {
        let (mut read, mut write) = conn.split();
        // No read deadline: only the close can end this read.
        let reader = std::thread::spawn(move || read.read_message());
        std::thread::sleep(Duration::from_millis(100));
        write.close();
        let started = Instant::now();
        let read_end = reader.join().unwrap();
        (read_end, started.elapsed(), write.write_text("too late"))
    });
    let mut client = blocking_client(addr);
    let end = client.read_message();
    assert!(ended_abnormally(end.as_ref().unwrap_err()), "{end:?}");
    let (read_end, took, write_end) = done.recv_timeout(HELD).unwrap();
    assert!(
        matches!(read_end, Err(Error::AlreadyClosed)),
        "{read_end:?}"
    );
    assert!(took < PROMPT, "the reader woke after {took:?}");
    assert!(
        matches!(write_end, Err(Error::AlreadyClosed)),
        "{write_end:?}"
    );
}

#[test]
fn blocking_handle_close_cuts_off_a_blocked_write() {
    let (addr, done) = blocking_server(|conn| {
        let handle = conn.control_handle();
        let (_read, mut write) = conn.split();
        // No write deadline, and the client never reads: this write blocks on TCP.
        let writer = std::thread::spawn(move || {
            let chunk = vec![7u8; 1 << 20];
            for _ in 0..256 {
                write.write_binary(chunk.clone())?;
            }
            Ok::<_, Error>(())
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!writer.is_finished(), "the peer took 256 MiB");
        handle.close();
        let started = Instant::now();
        (writer.join().unwrap(), started.elapsed())
    });
    let client = blocking_client(addr); // never reads
    let (write_end, took) = done.recv_timeout(HELD).unwrap();
    assert!(
        matches!(write_end, Err(Error::AlreadyClosed)),
        "{write_end:?}"
    );
    assert!(took < PROMPT, "the writer returned after {took:?}");
    drop(client);
}
