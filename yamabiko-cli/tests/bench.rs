//! `yamabiko bench` against `yamabiko echo` on a free loopback port: a short load run
//! and an idle run must report zero errors. Children are killed by PID on drop and
//! every wait is bounded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_yamabiko");

/// A child process killed (by its PID, through `Child::kill`) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `yamabiko echo` on a free port; returns it and its `ws://` URL.
fn start_echo() -> (Killed, String) {
    start_echo_with(&[])
}

/// Starts `yamabiko echo EXTRA...` on a free port; returns it and its `ws://` URL.
fn start_echo_with(extra: &[&str]) -> (Killed, String) {
    let mut child = Command::new(BIN)
        .args(["echo", "--listen", "127.0.0.1:0", "--single-thread"])
        .args(extra)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining the log so the server never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("127.0.0.1:") {
                let port: String = line[i + 10..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                let _ = tx.send(format!("ws://127.0.0.1:{port}/"));
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("echo did not say where it listens");
    (child, url)
}

/// Runs `yamabiko bench ARGS --json`, bounded in time; returns its JSON report.
fn bench(args: &[&str]) -> serde_json::Value {
    let child = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
        // SAFETY-free fallback: ask the OS to end our own child by PID.
        let _ = Command::new("kill").arg(pid.to_string()).status();
        panic!("yamabiko bench did not finish in 60 s");
    };
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn load_run_has_no_errors() {
    let (_echo, url) = start_echo();
    let report = bench(&[
        &url,
        "--conns",
        "4",
        "--inflight",
        "4",
        "--size",
        "100",
        "--warmup",
        "0.5",
        "--duration",
        "1.5",
    ]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["latency_us"]["p50"].as_f64().unwrap() > 0.0,
        "{report}"
    );
}

#[test]
fn text_and_large_messages_are_checked() {
    let (_echo, url) = start_echo();
    let report = bench(&[
        &url,
        "--conns",
        "2",
        "--size",
        "70000",
        "--text",
        "--warmup",
        "0.2",
        "--duration",
        "1",
    ]);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["messages"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn idle_connections_open() {
    let (echo, url) = start_echo();
    let pid = echo.0.id().to_string();
    let report = bench(&[&url, "--idle", "50", "--hold", "1", "--server-pid", &pid]);
    assert_eq!(report["idle_opened"], 50, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
}

#[test]
fn remote_targets_are_refused() {
    let out = Command::new(BIN)
        .args(["bench", "ws://192.0.2.1:9/", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

#[test]
fn broadcast_runs_count_every_delivery() {
    let (echo, url) = start_echo_with(&["--broadcast"]);
    let pid = echo.0.id().to_string();
    let common = [
        "--broadcast",
        "--subscribers",
        "20",
        "--size",
        "64",
        "--warmup",
        "0.3",
        "--duration",
        "1",
        "--server-pid",
        &pid,
    ];
    for mode in [
        &["--inflight", "4"][..],
        &["--rate", "500"][..],
        &["--text", "--inflight", "2"][..],
    ] {
        let args: Vec<&str> = std::iter::once(url.as_str())
            .chain(common.iter().copied())
            .chain(mode.iter().copied())
            .collect();
        let report = bench(&args);
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["lost"], 0, "{report}");
        let published = report["published"].as_u64().unwrap();
        assert!(published > 0, "{report}");
        assert_eq!(
            report["deliveries_received"].as_u64().unwrap(),
            published * 20,
            "{report}"
        );
        assert!(
            report["fanout_us"]["p99"].as_f64().unwrap() > 0.0,
            "{report}"
        );
    }
}

#[test]
fn broadcast_with_a_stalled_subscriber_reports_its_closing() {
    let (echo, url) = start_echo_with(&[
        "--broadcast",
        // Room for a burst of 8 messages of 8 KiB (all published before the
        // connections' readers run), not for a subscriber that reads nothing.
        "--max-queued",
        "262144",
        "--on-slow",
        "close",
        "--slow-grace",
        "200ms",
    ]);
    let pid = echo.0.id().to_string();
    let report = bench(&[
        &url,
        "--broadcast",
        "--subscribers",
        "5",
        "--stalled",
        "1",
        "--size",
        "8192",
        "--inflight",
        "8",
        "--warmup",
        "0.3",
        "--duration",
        "1.5",
        "--server-pid",
        &pid,
    ]);
    // The others lost nothing; the stalled one was closed.
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["stalled_closed_by_server"], 1, "{report}");
}
