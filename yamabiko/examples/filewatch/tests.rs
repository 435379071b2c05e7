//! The filewatch server over loopback: the content arrives at once, and again after
//! every change; a missing file is reported and picked up again when it comes back.
//! Run by `cargo test`.

use super::*;
use std::net::SocketAddr;
use tokio::time::timeout;
use yamabiko::{Dialer, MaybeTlsStream};

const WAIT: Duration = Duration::from_secs(10);

/// A fresh file name in the system's temporary directory.
fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("yamabiko-filewatch-{}-{name}", std::process::id()))
}

async fn start(path: PathBuf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut settings = Settings::new(path);
    settings.poll_period = Duration::from_millis(20);
    tokio::spawn(serve(listener, settings));
    addr
}

async fn next(conn: &mut Conn<MaybeTlsStream>) -> Update {
    timeout(WAIT, conn.read_json())
        .await
        .expect("an update in time")
        .unwrap()
}

/// Reads updates until `want` arrives: a write is not atomic, so a poll may catch the
/// file half-written and send that first.
async fn until(conn: &mut Conn<MaybeTlsStream>, want: impl Fn(&Update) -> bool) {
    for _ in 0..10 {
        if want(&next(conn).await) {
            return;
        }
    }
    panic!("the update never came");
}

fn content(text: &str) -> Update {
    Update::Content {
        text: text.into(),
        truncated: false,
    }
}

#[tokio::test]
async fn changes_are_pushed_to_the_page() {
    let path = temp_file("changes");
    std::fs::write(&path, "first version\n").unwrap();
    let addr = start(path.clone()).await;
    let (mut conn, _) = Dialer::new()
        .dial(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    assert_eq!(next(&mut conn).await, content("first version\n"));

    std::fs::write(&path, "second version, longer\n").unwrap();
    until(&mut conn, |u| *u == content("second version, longer\n")).await;

    std::fs::remove_file(&path).unwrap();
    until(&mut conn, |u| matches!(u, Update::Error { .. })).await;

    std::fs::write(&path, "back again\n").unwrap();
    until(&mut conn, |u| *u == content("back again\n")).await;
    std::fs::remove_file(&path).unwrap();
    conn.close_with(yamabiko::CloseCode::NORMAL, "", WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_large_file_is_cut_at_the_limit() {
    let path = temp_file("large");
    std::fs::write(&path, vec![b'x'; 2 << 20]).unwrap();
    let addr = start(path.clone()).await;
    let (mut conn, _) = Dialer::new()
        .dial(&format!("ws://{addr}/ws"))
        .await
        .unwrap();
    match next(&mut conn).await {
        Update::Content { text, truncated } => {
            assert_eq!(text.len(), 1 << 20);
            assert!(truncated);
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn the_page_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = start(temp_file("page")).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    timeout(WAIT, tcp.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("new WebSocket("));
}
