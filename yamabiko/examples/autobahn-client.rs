//! Runs every case of an Autobahn fuzzing server as an echo client, the standard way:
//! `/getCaseCount`, then `/runCase?case=N&agent=yamabiko` for each case, then
//! `/updateReports?agent=yamabiko`.
//!
//! ```text
//! kosoku -m fuzzingserver 127.0.0.1:9001 &
//! cargo run --release -p yamabiko --example autobahn-client -- ws://127.0.0.1:9001
//! ```
//!
//! The verdicts are in the fuzzing server's report (`reports/servers/index.json`).
//!
//! With `AUTOBAHN_HTTP2=1` in the environment the cases run over HTTP/2 (RFC 8441,
//! prior knowledge for `ws://`), all on one shared connection — through a proxy that
//! turns them into HTTP/1.1 upgrades for the fuzzing server
//! (`scripts/autobahn-client-h2.sh`).

use std::time::Duration;
use yamabiko::{CloseCode, Dialer, Error};

const AGENT: &str = "yamabiko";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_string());
    let base = base.trim_end_matches('/');
    // Autobahn sends 16 MiB messages in single frames (case 9.x.6): room for them.
    let dialer = Dialer::new()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .handshake_timeout(Duration::from_secs(30))
        // Offer permessage-deflate so the 12.* and 13.* cases run. The offer carries
        // `client_no_context_takeover`: cases 13.2, 13.5 and 13.6 play a server that asks
        // for it, which Autobahn allows only when the client offered it (RFC 7692
        // §7.1.1.2). Every message is compressed (threshold 0), as the cases expect.
        .compression(Some(yamabiko::DeflateConfig {
            threshold: 0,
            client_no_context_takeover: true,
            ..Default::default()
        }));
    let dialer = if std::env::var_os("AUTOBAHN_HTTP2").is_some_and(|v| v == "1") {
        dialer.http_version(yamabiko::HttpVersion::Http2)
    } else {
        dialer
    };

    let count = case_count(&dialer, base).await?;
    println!("{count} cases");
    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={AGENT}");
        match run_case(&dialer, &url).await {
            // Failing the connection is the expected end of many fuzzing cases.
            Ok(()) | Err(Error::Protocol(_)) => {}
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    let url = format!("{base}/updateReports?agent={AGENT}");
    let (conn, _) = dialer.dial(&url).await?;
    // The server writes the reports, then closes.
    drain(conn).await;
    println!("reports updated");
    Ok(())
}

/// `/getCaseCount` answers with one text message: the number of cases.
async fn case_count(dialer: &Dialer, base: &str) -> Result<u32, Box<dyn std::error::Error>> {
    let (mut conn, _) = dialer.dial(&format!("{base}/getCaseCount")).await?;
    let msg = conn.read_message().await?;
    let count = std::str::from_utf8(msg.as_bytes())?.trim().parse()?;
    drain(conn).await;
    Ok(count)
}

/// Echoes every message until the case ends (the server closes, or the connection
/// fails, which is how the fuzzing cases end).
async fn run_case(dialer: &Dialer, url: &str) -> yamabiko::Result<()> {
    let (mut conn, _) = dialer.dial(url).await?;
    loop {
        let msg = match conn.read_message().await {
            Ok(m) => m,
            Err(Error::Closed(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        conn.write_message(msg).await?;
    }
}

/// Reads until the server's close (answered by the default close handler), bounded.
async fn drain(mut conn: yamabiko::Conn<yamabiko::MaybeTlsStream>) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while conn.read_message().await.is_ok() {}
    })
    .await;
    let _ = conn
        .close_with(CloseCode::NORMAL, "", Duration::from_secs(1))
        .await;
}
