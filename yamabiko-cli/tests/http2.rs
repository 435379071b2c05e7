//! The command's servers over HTTP/2 (RFC 8441): `yamabiko echo` with TLS (ALPN h2
//! and http/1.1) and with `--h2c`, `yamabiko connect --http2`, and the board over
//! HTTPS (`serve --tls-cert`), whose log says when a WebSocket came as an HTTP/2
//! extended CONNECT. Children are killed on drop; every wait is bounded.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use yamabiko::{CloseCode, Dialer, HttpVersion, Message};

mod common;
use common::BIN;
const WAIT: Duration = Duration::from_secs(20);

/// A self-signed certificate for localhost in a scratch directory: (dir, cert, key).
fn certificate(name: &str) -> (PathBuf, String, String) {
    let dir = std::env::temp_dir().join(format!("yamabiko-h2-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let s = |p: PathBuf| p.to_str().unwrap().to_owned();
    (dir, s(cert), s(key))
}

fn dialer(cert: &str) -> Dialer {
    Dialer::new()
        .add_root_certificates_pem(&std::fs::read(cert).unwrap())
        .unwrap()
}

fn is_http2(conn: &yamabiko::Conn<yamabiko::MaybeTlsStream>) -> bool {
    conn.with_stream(|s| s.is_http2()).unwrap_or(false)
}

async fn echo_round(conn: &mut yamabiko::Conn<yamabiko::MaybeTlsStream>, text: &str) {
    conn.write_text(text.to_owned()).await.unwrap();
    let reply = tokio::time::timeout(WAIT, conn.read_message()).await;
    assert_eq!(reply.unwrap().unwrap(), Message::text(text.to_owned()));
}

#[tokio::test]
async fn echo_over_tls_takes_http2_and_http1_and_h2c_with_prior_knowledge() {
    let (dir, cert, key) = certificate("echo");
    let (_echo, addr) = common::spawn_logging_addr(
        &[
            "echo",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        WAIT,
    )
    .await;
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("wss://localhost:{port}/");
    let d = dialer(&cert);
    let (mut a, response) = d.dial(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(is_http2(&a));
    let (mut b, _) = d.dial(&url).await.unwrap();
    assert_eq!(
        a.local_addr().unwrap(),
        b.local_addr().unwrap(),
        "one connection"
    );
    echo_round(&mut a, "first over h2").await;
    echo_round(&mut b, "second over h2").await;
    let (mut h1, response) = d
        .clone()
        .http_version(HttpVersion::Http1)
        .dial(&url)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    echo_round(&mut h1, "over 1.1").await;
    for conn in [a, b, h1] {
        conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    }

    // `connect --http2` over TLS.
    let out = run_connect(&["--http2", "--ca", &cert, &url], "via connect\n").await;
    assert_eq!(out, "via connect\n");

    let (_h2c, addr) =
        common::spawn_logging_addr(&["echo", "--listen", "127.0.0.1:0", "--h2c"], WAIT).await;
    let (mut conn, _) = Dialer::new()
        .http_version(HttpVersion::Http2)
        .dial(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert!(is_http2(&conn));
    echo_round(&mut conn, "h2c").await;
    // The same port still takes HTTP/1.1.
    let (mut conn, _) = Dialer::new().dial(&format!("ws://{addr}/")).await.unwrap();
    assert!(!is_http2(&conn));
    echo_round(&mut conn, "h1 on the h2c port").await;
    let out = run_connect(&["--http2", &format!("ws://{addr}/")], "h2c via connect\n").await;
    assert_eq!(out, "h2c via connect\n");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `yamabiko connect ARGS` with `input`; returns its stdout (asserting success).
async fn run_connect(args: &[&str], input: &str) -> String {
    let mut child = Command::new(BIN)
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("connect did not exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `yamabiko serve` with TLS; returns the child, its address and its log lines.
async fn start_board(
    db: &str,
    cert: &str,
    key: &str,
) -> (Child, String, mpsc::UnboundedReceiver<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
        .args(["--tls-cert", cert, "--tls-key", key])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, out.next_line())
        .await
        .expect("serve did not start")
        .unwrap()
        .expect("serve printed nothing");
    let addr = first
        .split("https://")
        .nth(1)
        .expect("an https:// address")
        .trim_end_matches('/')
        .to_owned();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, addr, rx)
}

#[tokio::test]
async fn the_board_over_https_serves_its_websocket_inside_http2() {
    let (dir, cert, key) = certificate("board");
    let db = dir.join("board.db");
    let (_board, addr, mut log) = start_board(db.to_str().unwrap(), &cert, &key).await;
    let port = addr.rsplit(':').next().unwrap();
    let origin = format!("https://localhost:{port}");
    let (mut conn, response) = dialer(&cert)
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_str(&origin).unwrap(),
        )
        .dial(&format!("wss://localhost:{port}/ws"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(is_http2(&conn));
    let hello = tokio::time::timeout(WAIT, conn.read_message())
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(hello.as_bytes()).contains("\"hello\""),
        "{hello:?}"
    );
    tokio::time::timeout(WAIT, async {
        while let Some(line) = log.recv().await {
            if line.contains("connected") && line.contains("HTTP/2 extended CONNECT") {
                return;
            }
        }
        panic!("the server's log ended");
    })
    .await
    .expect("the log names the HTTP/2 WebSocket");
    // A foreign origin is refused on its stream with 403.
    let err = dialer(&cert)
        .header(
            http::header::ORIGIN,
            http::HeaderValue::from_static("https://evil.example"),
        )
        .dial(&format!("wss://localhost:{port}/ws"))
        .await
        .expect_err("refused");
    match err {
        yamabiko::Error::BadHandshake(r) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {other}"),
    }
    conn.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// Twenty bytes that say which WebSocket sent it and its place in the sequence.
fn tiny(stream: usize, i: usize) -> String {
    format!("s{stream:02}-m{i:06}-tiny....")
}

/// Clients that send floods of tiny messages and stop reading the echoes make the
/// server's WebSockets stop reading too (their echoes wait for credit). Each one
/// must stall only itself: the HTTP/2 connection they share lives, another
/// WebSocket on it keeps echoing, the writers stop at the flow-control windows
/// (what the server holds is bounded), and once the clients read, every echo
/// arrives in order. (hyper's HTTP/2 server ended the whole connection here with
/// GOAWAY ENHANCE_YOUR_CALM: some 40,000 tiny frames waited in h2's queues.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_h2c_survives_websockets_whose_clients_stop_reading() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const FLOODED: usize = 8;
    // More than the windows and send buffers on the way hold (about 22,000 per
    // WebSocket), so every writer has to stop.
    const PER: usize = 30_000;
    let (_h2c, addr) =
        common::spawn_logging_addr(&["echo", "--listen", "127.0.0.1:0", "--h2c"], WAIT).await;
    let dialer = Dialer::new().http_version(HttpVersion::Http2);
    let url = format!("ws://{addr}/");
    let sent: Arc<Vec<AtomicUsize>> = Arc::new((0..FLOODED).map(|_| AtomicUsize::new(0)).collect());
    let mut readers = Vec::new();
    let mut writers = tokio::task::JoinSet::new();
    for s in 0..FLOODED {
        let (conn, _) = dialer.dial(&url).await.unwrap();
        assert!(is_http2(&conn));
        let (read, mut write) = conn.split();
        readers.push(read);
        let sent = sent.clone();
        writers.spawn(async move {
            for i in 0..PER {
                write.write_text(tiny(s, i)).await?;
                sent[s].fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, yamabiko::Error>(write)
        });
    }
    let (mut other, _) = dialer.dial(&url).await.unwrap();
    assert!(is_http2(&other));

    // Wait (bounded) until the writers make no more progress.
    let total = || sent.iter().map(|n| n.load(Ordering::SeqCst)).sum::<usize>();
    let mut last = usize::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = total();
        if now == last {
            break;
        }
        last = now;
    }
    let stuck = total();
    assert_eq!(last, stuck, "the writers never stopped");
    for (s, n) in sent.iter().enumerate() {
        let n = n.load(Ordering::SeqCst);
        assert!(n > 5_000 && n < PER, "WebSocket {s} sent {n} of {PER}");
    }
    for round in 0..20 {
        echo_round(&mut other, &format!("other {round}")).await;
    }

    // Reading now brings every echo, in order, and frees the writers.
    let mut reading = tokio::task::JoinSet::new();
    for (s, mut read) in readers.into_iter().enumerate() {
        reading.spawn(async move {
            for i in 0..PER {
                let msg = read.read_message().await.unwrap();
                assert_eq!(msg, Message::text(tiny(s, i)), "WebSocket {s}");
            }
            read
        });
    }
    let drained = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = reading.join_next().await {
            r.unwrap();
        }
        while let Some(w) = writers.join_next().await {
            w.unwrap().unwrap();
        }
    })
    .await;
    assert!(drained.is_ok(), "the echoes did not all arrive");
    echo_round(&mut other, "the end").await;
    other.close_with(CloseCode::NORMAL, "", WAIT).await.unwrap();
}
