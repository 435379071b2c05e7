//! The command server over loopback, with real processes: lines both ways, the socket
//! closed when the process ends, the process ended when the socket goes (stdin closed,
//! or killed after the grace period). Run by `cargo test`; needs `sh` and `cat`.

use super::*;
use std::net::SocketAddr;
use tokio::time::timeout;
use yamabiko::{Dialer, MaybeTlsStream, Message};

const WAIT: Duration = Duration::from_secs(10);

async fn start(command: &[&str]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut settings = Settings::new(command.iter().map(|s| s.to_string()).collect());
    settings.grace = Duration::from_millis(300);
    tokio::spawn(serve(listener, settings));
    addr
}

async fn dial(addr: SocketAddr) -> Conn<MaybeTlsStream> {
    Dialer::new()
        .dial(&format!("ws://{addr}/ws"))
        .await
        .unwrap()
        .0
}

async fn read(conn: &mut Conn<MaybeTlsStream>) -> yamabiko::Result<Message> {
    timeout(WAIT, conn.read_message())
        .await
        .expect("an answer in time")
}

/// Whether process `pid` still exists (a zombie counts: it was not reaped).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The process id a test command printed first.
fn printed_pid(line: Message) -> u32 {
    let text = std::str::from_utf8(line.as_bytes()).expect("text");
    text.trim().parse().expect("a process id")
}

async fn wait_until_gone(pid: u32) {
    let deadline = Instant::now() + WAIT;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn lines_go_both_ways() {
    let addr = start(&["cat"]).await;
    let mut conn = dial(addr).await;
    conn.write_text("hello").await.unwrap();
    assert_eq!(read(&mut conn).await.unwrap(), Message::text("hello"));
    conn.write_text("héllo, wörld").await.unwrap();
    assert_eq!(
        read(&mut conn).await.unwrap(),
        Message::text("héllo, wörld")
    );
}

#[tokio::test]
async fn the_socket_is_closed_when_the_process_ends() {
    let addr = start(&["sh", "-c", "echo one; echo two"]).await;
    let mut conn = dial(addr).await;
    assert_eq!(read(&mut conn).await.unwrap(), Message::text("one"));
    assert_eq!(read(&mut conn).await.unwrap(), Message::text("two"));
    match read(&mut conn).await {
        Err(Error::Closed(frame)) => {
            assert_eq!(frame.code, CloseCode::NORMAL);
            assert_eq!(frame.reason, "process exited");
        }
        other => panic!("expected the close, got {other:?}"),
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_process_ends_when_the_socket_goes() {
    // `cat` ends by itself once its stdin is closed.
    let addr = start(&["sh", "-c", "echo $$; exec cat"]).await;
    let mut conn = dial(addr).await;
    let pid = printed_pid(read(&mut conn).await.unwrap());
    assert!(alive(pid));
    drop(conn); // the page went away without a close frame
    wait_until_gone(pid).await;

    // `sleep` ignores its stdin: it is killed after the grace period.
    let addr = start(&["sh", "-c", "echo $$; exec sleep 600"]).await;
    let mut conn = dial(addr).await;
    let pid = printed_pid(read(&mut conn).await.unwrap());
    assert!(alive(pid));
    conn.close_with(CloseCode::GOING_AWAY, "", WAIT)
        .await
        .unwrap();
    wait_until_gone(pid).await;
}

#[tokio::test]
async fn the_page_is_served() {
    use tokio::io::AsyncWriteExt as _;
    let addr = start(&["cat"]).await;
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
