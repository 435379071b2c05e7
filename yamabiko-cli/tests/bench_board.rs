//! `yamabiko bench --board` against `yamabiko serve` (SQLite, free loopback port): a
//! short paced run must deliver every acknowledged post to every viewer of its thread
//! once, in order, and the audit must find every acknowledged post. Children are
//! killed on drop and every wait is bounded.

mod common;

use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Runs `yamabiko bench --board ARGS --json`, bounded in time; returns its exit
/// success and JSON report.
async fn bench(args: &[&str]) -> (bool, serde_json::Value) {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(common::BIN)
            .args(["bench", "--board"])
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("bench finished in time")
    .expect("bench ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bench printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

fn temp_db(test: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "yamabiko-bench-board-{}-{test}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("board.db").to_string_lossy().into_owned()
}

#[tokio::test]
async fn every_acknowledged_post_reaches_every_viewer_once_in_order() {
    let db = temp_db("paced");
    let (server, addr) = common::spawn_logging_addr(
        &["serve", "--listen", "127.0.0.1:0", "--db", &db],
        Duration::from_secs(20),
    )
    .await;
    let pid = server.id().expect("pid").to_string();
    let url = format!("ws://{addr}/ws");
    let (ok, r) = bench(&[
        &url,
        "--viewers",
        "40",
        "--board-threads",
        "2",
        "--post-rate",
        "20",
        "--warmup",
        "0.5",
        "--duration",
        "2",
        "--server-pid",
        &pid,
    ])
    .await;
    assert!(ok, "{r:#}");
    assert_eq!(r["problems"], serde_json::json!([]), "{r:#}");
    assert_eq!(r["viewers_connected"], 40);
    let acked = r["posts"]["acked"].as_u64().unwrap();
    assert!(acked >= 20, "posts were acknowledged: {r:#}");
    // 20 viewers per thread, posts round-robin over the two threads.
    assert_eq!(
        r["delivery"]["deliveries"].as_u64().unwrap(),
        acked * 20,
        "{r:#}"
    );
    for field in ["lost", "duplicates", "out_of_order", "early", "mismatched"] {
        assert_eq!(r["delivery"][field], 0, "{field}: {r:#}");
    }
    let audit = &r["audit"];
    assert_eq!(audit["acked"].as_u64(), Some(acked), "{r:#}");
    assert_eq!(audit["found"].as_u64(), Some(acked), "{r:#}");
    assert_eq!(
        (audit["lost"].as_u64(), audit["duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(r["posts"]["rate_limited"], 0);
    assert!(r["server"]["bytes_per_viewer"].as_f64().is_some(), "{r:#}");
    assert!(r["delivery"]["ms"]["p99"].as_f64().unwrap() > 0.0);
    drop(server);
    let _ = std::fs::remove_dir_all(std::path::Path::new(&db).parent().unwrap());
}

#[tokio::test]
async fn idle_viewers_only_report_memory() {
    let db = temp_db("idle");
    let (server, addr) = common::spawn_logging_addr(
        &["serve", "--listen", "127.0.0.1:0", "--db", &db],
        Duration::from_secs(20),
    )
    .await;
    let pid = server.id().expect("pid").to_string();
    let url = format!("ws://{addr}/ws");
    let (ok, r) = bench(&[
        &url,
        "--viewers",
        "30",
        "--post-rate",
        "0",
        "--warmup",
        "0",
        "--duration",
        "0.5",
        "--server-pid",
        &pid,
    ])
    .await;
    assert!(ok, "{r:#}");
    assert_eq!(r["posters"], 0);
    assert_eq!(r["posts"]["sent"], 0);
    assert_eq!(r["viewers_connected"], 30);
    assert!(r["server"]["rss_with_viewers"].as_u64().is_some(), "{r:#}");
    drop(server);
    let _ = std::fs::remove_dir_all(std::path::Path::new(&db).parent().unwrap());
}
