//! Connection limits, the idle timeout and graceful shutdown of `yamabiko echo` and
//! `yamabiko serve`, on the built binary: each test starts its own server on a free
//! loopback port, talks to it with `yamabiko::Dialer`, and kills it by PID at the end
//! (on drop). Every wait is bounded.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use yamabiko::{CloseCode, Conn, Dialer, Error, MaybeTlsStream, Message};

mod common;
use common::BIN;
/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(15);
/// How long a server may take from SIGTERM to exit: its 5 s grace for close
/// handshakes, plus slack for a loaded machine.
const EXIT_WITHIN: Duration = Duration::from_secs(9);

type Client = Conn<MaybeTlsStream>;

/// A server process, killed (by PID) when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    /// `yamabiko echo --listen 127.0.0.1:0 EXTRA`; the address comes from its log.
    async fn echo(extra: &[&str]) -> Server {
        let mut args = vec!["echo", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (child, addr) = common::spawn_logging_addr(&args, WAIT).await;
        Server { child, addr }
    }

    /// `yamabiko serve --listen LISTEN --db DB EXTRA`; the address is its first line.
    async fn serve(db: &std::path::Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", listen, "--db"])
            .arg(db)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn yamabiko serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("serve did not start in time")
            .expect("read stdout")
            .expect("serve exited before listening");
        let addr = line
            .trim()
            .strip_prefix("yamabiko board listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, addr }
    }

    /// Sends SIGTERM.
    fn terminate(&self) {
        let pid = self.child.id().expect("server still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for the process to exit, at most `within`.
    async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("the server did not exit within {within:?}"),
        }
    }
}

async fn dial(url: &str) -> yamabiko::Result<Client> {
    match tokio::time::timeout(WAIT, Dialer::new().dial(url)).await {
        Ok(r) => r.map(|(conn, _)| conn),
        Err(_) => panic!("dialling {url} timed out"),
    }
}

async fn read(conn: &mut Client) -> yamabiko::Result<Message> {
    match tokio::time::timeout(WAIT, conn.read_message()).await {
        Ok(r) => r,
        Err(_) => panic!("timed out waiting for a message"),
    }
}

async fn echo_round_trip(conn: &mut Client, text: &str) {
    conn.write_message(Message::text(text.to_owned()))
        .await
        .expect("write");
    let got = read(conn).await.expect("echo");
    assert_eq!(got.as_bytes(), text.as_bytes());
}

/// Reads (skipping messages) until the connection is closed; returns the close code.
async fn close_code(conn: &mut Client) -> CloseCode {
    for _ in 0..10_000 {
        match read(conn).await {
            Ok(_) => continue,
            Err(Error::Closed(frame)) => return frame.code,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    }
    panic!("no close frame");
}

/// Asserts that dialling `url` is refused with 503.
async fn assert_refused_503(url: &str) {
    match dial(url).await {
        Err(Error::BadHandshake(resp)) => {
            assert_eq!(resp.status().as_u16(), 503, "{resp}");
            let body = String::from_utf8_lossy(resp.body());
            assert!(body.contains("too many connections"), "{body:?}");
        }
        Ok(_) => panic!("a connection beyond --max-conns was accepted"),
        Err(e) => panic!("expected 503, got {e}"),
    }
}

/// Dials until a connection is accepted (the server frees a slot asynchronously).
async fn dial_when_free(url: &str) -> Client {
    let start = Instant::now();
    loop {
        match dial(url).await {
            Ok(c) => return c,
            Err(Error::BadHandshake(_)) if start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("dial: {e}"),
        }
    }
}

// ---------------------------------------------------------------- echo

#[tokio::test]
async fn echo_max_conns_refuses_with_503_while_others_work() {
    let server = Server::echo(&["--max-conns", "2"]).await;
    let url = format!("ws://{}/", server.addr);
    let mut a = dial(&url).await.expect("first client");
    let mut b = dial(&url).await.expect("second client");
    assert_refused_503(&url).await;
    echo_round_trip(&mut a, "still served").await;
    echo_round_trip(&mut b, "me too").await;
    // A closed connection frees its slot.
    a.close_with(CloseCode::NORMAL, "", WAIT)
        .await
        .expect("close handshake");
    let mut c = dial_when_free(&url).await;
    echo_round_trip(&mut c, "third, after a slot freed").await;
    assert_refused_503(&url).await;
}

#[tokio::test]
async fn echo_sigterm_closes_every_connection_with_1001_and_exits_0() {
    let mut server = Server::echo(&[]).await;
    let url = format!("ws://{}/", server.addr);
    let mut a = dial(&url).await.expect("client a");
    let mut b = dial(&url).await.expect("client b");
    // A client that never reads again: its close handshake cannot complete, and the
    // server must exit anyway once its grace period is over.
    let deaf = dial(&url).await.expect("deaf client");
    // A TCP connection that never finishes its handshake.
    let mut half = TcpStream::connect(&server.addr).await.expect("connect");
    half.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
    echo_round_trip(&mut a, "before").await;
    echo_round_trip(&mut b, "before").await;

    let t0 = Instant::now();
    server.terminate();
    assert_eq!(close_code(&mut a).await, CloseCode::GOING_AWAY);
    assert_eq!(close_code(&mut b).await, CloseCode::GOING_AWAY);
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(WAIT, half.read_to_end(&mut rest)).await;
    assert!(eof.is_ok(), "the half-open connection was not dropped");
    // No new connections once shutting down.
    let status = server.exit_status(EXIT_WITHIN).await;
    assert!(status.success(), "exit status {status}");
    assert!(t0.elapsed() < EXIT_WITHIN);
    assert!(TcpStream::connect(&server.addr).await.is_err());
    drop(deaf);
}

#[tokio::test]
async fn echo_sleeping_connections_wake_for_messages_and_get_1001_on_sigterm() {
    let mut server = Server::echo(&["--hibernate-after", "200ms"]).await;
    let url = format!("ws://{}/", server.addr);
    let mut a = dial(&url).await.expect("client a");
    let mut b = dial(&url).await.expect("client b");
    // Quiet past --hibernate-after (up to twice it): both sleep, and wake per message.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        echo_round_trip(&mut a, &format!("a {round}")).await;
        echo_round_trip(&mut b, &format!("b {round}")).await;
    }
    // Asleep when the signal comes: woken, they are closed like the others.
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.terminate();
    assert_eq!(close_code(&mut a).await, CloseCode::GOING_AWAY);
    assert_eq!(close_code(&mut b).await, CloseCode::GOING_AWAY);
    let status = server.exit_status(EXIT_WITHIN).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn echo_idle_timeout_closes_silent_connections_only() {
    let server = Server::echo(&["--idle-timeout", "1"]).await;
    let url = format!("ws://{}/", server.addr);
    let mut idle = dial(&url).await.expect("idle client");
    let mut busy = dial(&url).await.expect("busy client");
    let t0 = Instant::now();
    // The busy client talks every 300 ms for 2.4 s, well past the idle timeout.
    for i in 0..8 {
        echo_round_trip(&mut busy, &format!("message {i}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(t0.elapsed() > Duration::from_secs(2));
    assert_eq!(close_code(&mut idle).await, CloseCode::GOING_AWAY);
    echo_round_trip(&mut busy, "still here").await;
}

#[tokio::test]
async fn echo_keepalive_fails_a_peer_that_never_answers_its_pings() {
    let server = Server::echo(&["--ping-interval", "200ms", "--ping-timeout", "300ms"]).await;
    let url = format!("ws://{}/", server.addr);
    let mut deaf = dial(&url).await.expect("deaf client");
    deaf.set_ping_handler(|_, _| Ok(())); // reads, but never answers a ping
    let mut live = dial(&url).await.expect("live client");
    let t0 = Instant::now();
    let (code, ()) = tokio::join!(close_code(&mut deaf), async {
        // Reading lets the default handler answer the pings meanwhile.
        let _ = tokio::time::timeout(Duration::from_millis(1500), live.read_message()).await;
    });
    assert_eq!(code, CloseCode::INTERNAL_ERROR);
    let after = t0.elapsed();
    assert!(
        after >= Duration::from_millis(450) && after < Duration::from_secs(3),
        "{after:?}"
    );
    echo_round_trip(&mut live, "still here").await;
}

#[tokio::test]
async fn echo_help_documents_the_defaults() {
    let out = Command::new(BIN)
        .args(["echo", "--help"])
        .output()
        .await
        .expect("run echo --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--max-conns",
        "--idle-timeout",
        "--ping-interval",
        "--ping-timeout",
        "--hibernate-after",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.contains("[default: 10000]"), "{help}");
    assert!(help.contains("[default: 0]"), "{help}");
}

// ---------------------------------------------------------------- serve

fn temp_db(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "yamabiko-limits-{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("board.db")
}

async fn recv_json(conn: &mut Client) -> Value {
    let msg = read(conn).await.expect("read");
    serde_json::from_slice(msg.as_bytes()).expect("JSON")
}

async fn expect_type(conn: &mut Client, kind: &str) -> Value {
    for _ in 0..1000 {
        let v = recv_json(conn).await;
        if v["type"] == kind {
            return v;
        }
    }
    panic!("no {kind} message");
}

async fn board_client(url: &str) -> Client {
    let mut c = dial(url).await.expect("board websocket");
    expect_type(&mut c, "hello").await;
    c
}

#[tokio::test]
async fn serve_max_conns_refuses_with_503() {
    let db = temp_db("maxconns");
    let server = Server::serve(&db, "127.0.0.1:0", &["--max-conns", "2"]).await;
    let url = format!("ws://{}/ws", server.addr);
    let mut a = board_client(&url).await;
    let _b = board_client(&url).await;
    assert_refused_503(&url).await;
    // Plain HTTP counts too.
    let mut tcp = TcpStream::connect(&server.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    // The connected clients still work.
    a.write_message(Message::text(json!({"type":"list_threads"}).to_string()))
        .await
        .expect("write");
    expect_type(&mut a, "threads").await;
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}

#[tokio::test]
async fn serve_sigterm_closes_with_1001_keeps_posts_and_exits_0() {
    let db = temp_db("sigterm");
    let mut server = Server::serve(&db, "127.0.0.1:0", &[]).await;
    let url = format!("ws://{}/ws", server.addr);
    let mut a = board_client(&url).await;
    let mut b = board_client(&url).await;
    let body = "written just before the shutdown";
    a.write_message(Message::text(
        json!({"type":"new_thread","title":"graceful","name":"","body":body,"client_id":"g1"})
            .to_string(),
    ))
    .await
    .expect("write");
    let ack = expect_type(&mut a, "ack").await;
    let thread = ack["thread"]["id"].as_i64().expect("thread id");

    server.terminate();
    assert_eq!(close_code(&mut a).await, CloseCode::GOING_AWAY);
    assert_eq!(close_code(&mut b).await, CloseCode::GOING_AWAY);
    let status = server.exit_status(EXIT_WITHIN).await;
    assert!(status.success(), "exit status {status}");

    // Everything acknowledged is on disk: a new server on the same database has it.
    let server = Server::serve(&db, "127.0.0.1:0", &[]).await;
    let mut c = board_client(&format!("ws://{}/ws", server.addr)).await;
    c.write_message(Message::text(
        json!({"type":"open_thread","thread_id":thread}).to_string(),
    ))
    .await
    .expect("write");
    let opened = expect_type(&mut c, "thread").await;
    assert_eq!(opened["posts"][0]["body"], body, "{opened}");
    drop(server);
    let _ = std::fs::remove_dir_all(db.parent().expect("dir"));
}
