//! One hyper 1 server for a page and a WebSocket: `GET /` serves a small page whose
//! script connects to `/ws`, an echo socket upgraded with `Upgrader::upgrade_hyper`.
//!
//! `cargo run -p yamabiko --example hyper [ADDR]` (default 127.0.0.1:3000), then open
//! http://127.0.0.1:3000/ in a browser.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use yamabiko::upgrade::hyper::error_response;
use yamabiko::Upgrader;

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>yamabiko + hyper</title>
<input id="text" value="hello"> <button id="send">send</button>
<pre id="log"></pre>
<script>
  const ws = new WebSocket(`ws://${location.host}/ws`);
  const log = (line) => (document.getElementById("log").textContent += line + "\n");
  ws.onopen = () => log("connected");
  ws.onmessage = (e) => log("echo: " + e.data);
  ws.onclose = (e) => log("closed " + e.code);
  document.getElementById("send").onclick = () => ws.send(document.getElementById("text").value);
</script>
"#;

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/ws" {
        let mut page = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
        page.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return Ok(page);
    }
    // The same Upgrader as for raw streams: origin check, subprotocols, compression.
    let upgrader = Upgrader::new().enable_compression(true);
    match upgrader.upgrade_hyper(&mut req) {
        Ok((response, upgrading)) => {
            tokio::spawn(async move {
                let Ok(mut conn) = upgrading.await else {
                    return;
                };
                while let Ok(msg) = conn.read_message().await {
                    if conn.write_message(msg).await.is_err() {
                        break;
                    }
                }
            });
            Ok(response)
        }
        // 400, 403 (foreign origin), 405, 426 with their headers.
        Err(e) => Ok(error_response(&e)),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("http://{}/", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service_fn(handle))
                // Without this hyper never hands the connection over.
                .with_upgrades()
                .await;
        });
    }
}
