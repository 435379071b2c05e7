//! An axum router with a yamabiko echo route: `GET /` is the echo socket (the
//! Autobahn TestSuite connects to the root, see scripts/autobahn-axum.sh) — and so is
//! `CONNECT /` over HTTP/2 (RFC 8441; `axum::serve` enables extended CONNECT) —,
//! `GET /page` a page that talks to it, and `GET /health` plain text.
//!
//! `cargo run -p yamabiko --example axum [ADDR]` (default 127.0.0.1:3000), then open
//! http://127.0.0.1:3000/page.

use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use yamabiko::upgrade::axum::WebSocketUpgrade;
use yamabiko::DeflateConfig;

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>yamabiko + axum</title>
<pre id="log"></pre>
<script>
  const ws = new WebSocket(`ws://${location.host}/`);
  const log = (line) => (document.getElementById("log").textContent += line + "\n");
  ws.onopen = () => ws.send("hello from the page");
  ws.onmessage = (e) => log("echo: " + e.data);
</script>
"#;

/// Echoes every message. Compression on, with threshold 0 like `yamabiko echo`:
/// an echo answers a compressed message compressed (Autobahn's 12.* and 13.* cases
/// expect that).
async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.compression(Some(DeflateConfig {
        threshold: 0,
        ..Default::default()
    }))
    // A test target: pages from any origin may connect.
    .check_origin(|_| true)
    .on_upgrade(|mut conn| async move {
        while let Ok(msg) = conn.read_message().await {
            if conn.write_message(msg).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let app = Router::new()
        // HTTP/1.1 upgrades are GETs, HTTP/2 WebSockets CONNECTs: route both.
        .route("/", get(echo).connect(echo))
        .route("/page", get(|| async { Html(PAGE) }))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("ws://{}/ (page: /page)", listener.local_addr()?);
    axum::serve(listener, app).await
}
