//! Shared by the CLI's integration tests: start the built `yamabiko` binary on a free
//! loopback port and learn the address from its log.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_yamabiko");

/// Starts `yamabiko ARGS` (killed on drop) with an info-level log on stderr and
/// returns it with the first `127.0.0.1:PORT` the log names, waiting at most `wait`.
/// The rest of the log is drained, so the server never blocks on a full pipe.
pub async fn spawn_logging_addr(args: &[&str], wait: Duration) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn yamabiko {args:?}: {e}"));
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(wait, async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .unwrap_or_else(|| panic!("yamabiko {args:?} exited before listening"));
            if let Some(i) = line.find("127.0.0.1:") {
                let port: String = line[i + 10..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                return format!("127.0.0.1:{port}");
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("yamabiko {args:?} did not say where it listens"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}
