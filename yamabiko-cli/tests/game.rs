//! `yamabiko game` and `yamabiko game-bench` as commands: the server starts, serves the
//! page and `/stats`, and the load generator runs against it and reports.

mod common;

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: &str, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

#[tokio::test]
async fn game_serves_and_game_bench_measures_it() {
    let (_server, addr) = common::spawn_logging_addr(
        &[
            "game",
            "--listen",
            "127.0.0.1:0",
            "--no-bots",
            "--tick-hz",
            "60",
        ],
        Duration::from_secs(20),
    )
    .await;
    assert!(get(&addr, "/").await.contains("鬼ごっこ"));
    assert!(get(&addr, "/healthz").await.ends_with("ok\n"));
    let out = tokio::process::Command::new(common::BIN)
        .args([
            "game-bench",
            &format!("ws://{addr}/ws"),
            "--players",
            "6",
            "--room-size",
            "3",
            "--warmup",
            "0.5",
            "--duration",
            "1",
            "--stall-duration",
            "1",
            "--json",
        ])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("game-bench finishes")
        .expect("game-bench runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["players"], 6);
    assert_eq!(report["rooms"], 2);
    assert_eq!(report["tick_hz"], 60);
    assert_eq!(report["errors"], 0);
    let windows = report["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0]["players_measured"], 6);
    assert_eq!(
        windows[1]["players_measured"], 5,
        "the stalled bot is not counted"
    );
    for w in windows {
        assert!(w["snapshots_received"].as_u64().unwrap() > 0);
        assert!(w["inputs_answered"].as_u64().unwrap() > 0);
        assert!(w["player_ticks"].as_u64().unwrap() > 0);
        // 3 circles: 8 + 3 × 8 bytes and a 2-byte header, 60 times a second.
        let bytes = w["bytes_per_player_per_s"].as_f64().unwrap();
        assert!(bytes > 1000.0 && bytes < 3000.0, "{bytes}");
    }
    // Wrong arguments are refused before anything runs.
    let bad = tokio::process::Command::new(common::BIN)
        .args(["game", "--tick-hz", "5", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("20..=120"));
}
