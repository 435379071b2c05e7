//! A chat room: every message a client sends goes to every client (gorilla/websocket's
//! chat example, in yamabiko). The page and the socket are served by this one program
//! on one port.
//!
//! ```sh
//! cargo run -p yamabiko --example chat            # then open http://127.0.0.1:8080 twice
//! cargo run -p yamabiko --example chat -- 127.0.0.1:9000
//! ```
//!
//! `hub.rs` keeps the room on the library's pub/sub hub; `client.rs` runs each
//! connection's read and write pumps. README.md says what it shows.

mod client;
mod hub;

use hub::Hub;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use yamabiko::http::{header, Method, Response, StatusCode};
use yamabiko::{is_websocket_upgrade, write_http_response, Keepalive, Upgrader};

/// The page, served at `/`.
const HOME: &str = include_str!("home.html");

/// The room's timing and limits (gorilla's constants).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time a close frame to a client dropped as too slow gets to go out.
    pub write_wait: Duration,
    /// Time allowed, after a keepalive ping, to read the pong (or anything) from the peer.
    pub pong_wait: Duration,
    /// How often keepalive pings go out.
    pub ping_period: Duration,
    /// Largest message a client may send; larger ones close its connection (1009).
    pub max_message_size: usize,
    /// Unsent bytes a client may have before the hub closes it as too slow (1013).
    pub max_queued: usize,
}

impl Default for Settings {
    fn default() -> Self {
        let pong_wait = Duration::from_secs(60);
        Settings {
            write_wait: Duration::from_secs(10),
            pong_wait,
            ping_period: pong_wait * 9 / 10,
            max_message_size: 512,
            // 256 messages of the largest size.
            max_queued: 256 * 512,
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    println!(
        "chat: open http://{} in two windows",
        listener.local_addr()?
    );
    let settings = Settings::default();
    let hub = Hub::new(settings.max_queued, settings.write_wait);
    serve(listener, hub, settings).await
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, hub: Hub, settings: Settings) -> std::io::Result<()> {
    // The default origin check refuses pages of other sites (cross-site WebSocket
    // hijacking): only this server's own page may connect from a browser.
    let upgrader = Upgrader::new()
        .read_buffer_size(1024)
        .write_buffer_size(1024)
        .max_message_size(settings.max_message_size)
        // The library pings and notices a silent peer: no hand-written ping loop.
        .keepalive(Keepalive::new(settings.ping_period, settings.pong_wait));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let upgrader = upgrader.clone();
        let hub = hub.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, upgrader, hub, settings).await {
                eprintln!("chat: {e}");
            }
        });
    }
}

/// One TCP connection: the page, the socket, or a 404.
async fn handle(
    mut tcp: TcpStream,
    upgrader: Upgrader,
    hub: Hub,
    settings: Settings,
) -> yamabiko::Result<()> {
    let (request, leftover) = upgrader.read_request(&mut tcp).await?;
    let path = request.uri().path();
    if path == "/ws" && is_websocket_upgrade(&request) {
        // A refused request (e.g. a foreign origin) gets its HTTP error here.
        let conn = upgrader.upgrade_request(tcp, &request, leftover).await?;
        let ending = client::run(conn, hub, settings).await;
        if ending != hub::Ending::Closed {
            eprintln!("chat: a client left: {ending:?}");
        }
        return Ok(());
    }
    let response = match (request.method(), path) {
        (&Method::GET, "/") => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(HOME),
        (&Method::GET, _) => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body("not found\n"),
        _ => Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET")
            .body("method not allowed\n"),
    };
    let mut response = response.expect("static headers are valid");
    // One request per connection keeps this server simple; browsers reconnect.
    let close = header::HeaderValue::from_static("close");
    response.headers_mut().insert(header::CONNECTION, close);
    write_http_response(&mut tcp, &response).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
