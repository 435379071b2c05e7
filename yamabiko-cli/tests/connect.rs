//! `yamabiko connect` in a pipe, against `yamabiko echo` (ws:// and wss://) and
//! against small servers written here. Every child process is killed on drop and
//! every wait is bounded.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use yamabiko::{CloseCode, Control, Upgrader};

mod common;
use common::BIN;
const WAIT: Duration = Duration::from_secs(20);

/// Starts `yamabiko echo` on a free port; returns the child and its address.
async fn start_echo(extra: &[&str]) -> (Child, String) {
    let mut args = vec!["echo", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    common::spawn_logging_addr(&args, WAIT).await
}

/// Runs `yamabiko connect ARGS` with `input` on stdin, bounded in time.
async fn connect(args: &[&str], input: &str) -> Output {
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
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("yamabiko connect did not exit")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("yamabiko-connect-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn echo_hi_in_a_pipe() {
    let (_echo, addr) = start_echo(&[]).await;
    let out = connect(&[&format!("ws://{addr}/")], "hi\n").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    let input = "one\ntwo\n/ping pp\n//close is text\n\nthree\n";
    let out = connect(&[&format!("ws://{addr}/")], input).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\n/close is text\n\nthree\n");
    assert!(
        text(&out.stderr).contains("pong \"pp\""),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn close_command_with_a_code() {
    let (_echo, addr) = start_echo(&[]).await;
    let out = connect(
        &[&format!("ws://{addr}/")],
        "first\n/close 4000 bye\nnever sent\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("never sent"));
}

#[tokio::test]
async fn wss_round_trip_with_ca() {
    let dir = scratch_dir("wss");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let (_echo, addr) = start_echo(&["--tls-cert", cert, "--tls-key", key]).await;
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("wss://localhost:{port}/");
    let out = connect(&[&url, "--ca", cert], "secure hello\n").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "secure hello\n");

    // Without the CA the certificate is refused, clearly.
    let out = connect(&[&url], "x\n").await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A one-connection server that sends `binary`, then closes with `code`.
async fn sending_server(binary: &'static [u8], code: u16) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (mut conn, request) = Upgrader::new()
            .subprotocols(["v1"])
            .upgrade_with_request(tcp)
            .await
            .unwrap();
        assert_eq!(request.headers()["x-token"], "abc");
        assert_eq!(conn.subprotocol(), Some("v1"));
        conn.write_binary(binary).await.unwrap();
        let frame = Control::close(CloseCode(code), "server done");
        let control = conn.control_handle();
        control.write_control(frame, None).await.unwrap();
        let _ = tokio::time::timeout(WAIT, conn.read_message()).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_as_hex_or_to_a_file_and_server_close() {
    let addr = sending_server(b"\xde\xad\xbe\xef", 1000).await;
    let url = format!("ws://{addr}/");
    let args = [url.as_str(), "-H", "X-Token: abc", "--subprotocol", "v1"];
    // stdin stays open: the server's close ends the session.
    let mut child = Command::new(BIN)
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "deadbeef\n");

    let dir = scratch_dir("binary");
    let file = dir.join("out.bin");
    std::fs::write(&file, b"old:").unwrap();
    let addr = sending_server(b"\x00\x01\x02", 1000).await;
    let url = format!("ws://{addr}/");
    let out = connect(
        &[
            &url,
            "-H",
            "X-Token: abc",
            "-p",
            "v1",
            "--binary-file",
            file.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(std::fs::read(&file).unwrap(), b"old:\x00\x01\x02");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abnormal_server_close_is_a_failure() {
    let addr = sending_server(b"x", 1011).await;
    let url = format!("ws://{addr}/");
    let mut child = Command::new(BIN)
        .args(["connect", &url, "-H", "X-Token: abc", "-p", "v1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("1011"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn refused_connection_and_bad_url_fail() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = connect(&[&format!("ws://127.0.0.1:{port}/")], "").await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("refused"),
        "{}",
        text(&out.stderr)
    );

    let out = connect(&["http://127.0.0.1:1/"], "").await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("scheme"),
        "{}",
        text(&out.stderr)
    );
}

/// A server on `listener` that sends `name` to each connection and holds it open.
/// Aborting the task kills it and its connections.
fn naming_server(listener: TcpListener, name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            conns.spawn(async move {
                let Ok(mut conn) = Upgrader::new().upgrade(tcp).await else {
                    return;
                };
                if conn.write_text(name).await.is_ok() {
                    // Hold it (and answer pings) until the peer or the test ends it.
                    while conn.read_message().await.is_ok() {}
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_comes_back_after_a_server_restart_and_says_so() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = naming_server(listener, "first");
    let mut child = Command::new(BIN)
        .args(["connect", "--reconnect", &format!("ws://{addr}/")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take().unwrap(); // held open: the client keeps going
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("a line")
            .unwrap()
            .as_deref(),
        Some("first")
    );
    server.abort();
    let _ = server.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = naming_server(TcpListener::bind(addr).await.unwrap(), "second");
    assert_eq!(
        tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("a line")
            .unwrap()
            .as_deref(),
        Some("second")
    );
    child.kill().await.unwrap();
    server.abort();
    let mut said = String::new();
    tokio::time::timeout(WAIT, stderr.read_to_string(&mut said))
        .await
        .expect("stderr ends")
        .unwrap();
    assert!(said.contains("connection lost"), "{said}");
    assert!(
        said.contains(&format!("reconnected to ws://{addr}/")),
        "{said}"
    );
}

#[tokio::test]
async fn reconnect_stops_on_a_403() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = Upgrader::new().read_request(&mut tcp).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ngo away")
                .await;
        }
    });
    let out = connect(&["--reconnect", &format!("ws://{addr}/")], "").await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("403"), "{err}");
    assert!(err.contains("go away"), "{err}");
}
