//! A file on a web page, kept up to date: the page shows the file's content, and
//! whenever the file changes the new content is pushed to it (gorilla/websocket's
//! filewatch example, in yamabiko). The file is polled.
//!
//! ```sh
//! cargo run -p yamabiko --example filewatch -- notes.txt     # http://127.0.0.1:8080
//! echo "edited" >> notes.txt                                  # the page follows
//! ```
//!
//! README.md says what it shows.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use yamabiko::http::{header, Method, Response, StatusCode};
use yamabiko::{is_websocket_upgrade, write_http_response, Conn, Control, Upgrader};

const HOME: &str = include_str!("home.html");

/// The file and the connection's timing.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The file to show.
    pub path: PathBuf,
    /// How often the file is checked for changes.
    pub poll_period: Duration,
    /// Time allowed to write a message (or a ping) to the peer.
    pub write_wait: Duration,
    /// Time allowed to read the next pong (or anything) from the peer.
    pub pong_wait: Duration,
    /// How often pings go out; less than `pong_wait`.
    pub ping_period: Duration,
    /// Most bytes of the file shown; the rest is cut off.
    pub max_file_size: u64,
}

impl Settings {
    /// gorilla's timing (with a faster poll), for `path`.
    pub fn new(path: PathBuf) -> Self {
        let pong_wait = Duration::from_secs(60);
        Settings {
            path,
            poll_period: Duration::from_secs(1),
            write_wait: Duration::from_secs(10),
            pong_wait,
            ping_period: pong_wait * 9 / 10,
            max_file_size: 1 << 20,
        }
    }
}

/// What the page receives: the file's content, or why it cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Update {
    /// The content (invalid UTF-8 replaced), and whether it was cut at the size limit.
    Content { text: String, truncated: bool },
    /// The file cannot be read.
    Error { message: String },
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(path), addr) = (args.next(), args.next()) else {
        eprintln!("usage: filewatch FILE [HOST:PORT]");
        std::process::exit(2);
    };
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("filewatch: {path} at http://{}", listener.local_addr()?);
    serve(listener, Settings::new(path.into())).await
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: TcpListener, settings: Settings) -> std::io::Result<()> {
    let upgrader = Upgrader::new().max_message_size(512); // the page sends nothing
    loop {
        let (tcp, _) = listener.accept().await?;
        let upgrader = upgrader.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(tcp, upgrader, settings).await {
                eprintln!("filewatch: {e}");
            }
        });
    }
}

async fn handle(
    mut tcp: TcpStream,
    upgrader: Upgrader,
    settings: Settings,
) -> yamabiko::Result<()> {
    let (request, leftover) = upgrader.read_request(&mut tcp).await?;
    if request.uri().path() == "/ws" && is_websocket_upgrade(&request) {
        let conn = upgrader.upgrade_request(tcp, &request, leftover).await?;
        return watch(conn, &settings).await;
    }
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(HOME),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body("not found\n"),
    };
    let mut response = response.expect("static headers are valid");
    let close = header::HeaderValue::from_static("close");
    response.headers_mut().insert(header::CONNECTION, close);
    write_http_response(&mut tcp, &response).await?;
    Ok(())
}

/// Sends the file's content now and after every change, until the page goes.
pub async fn watch(conn: Conn<TcpStream>, settings: &Settings) -> yamabiko::Result<()> {
    let (mut read, mut write) = conn.split();
    // The page sends nothing, but someone must read: that is where pongs and the
    // close frame are handled (and a vanished page is noticed by the read deadline).
    read.set_read_deadline(Instant::now() + settings.pong_wait);
    let pong_wait = settings.pong_wait;
    read.set_pong_handler(move |ctx, _| {
        ctx.set_read_deadline(Instant::now() + pong_wait);
        Ok(())
    });
    let reader = tokio::spawn(async move { while read.read_message().await.is_ok() {} });
    tokio::pin!(reader);

    let mut poll = tokio::time::interval(settings.poll_period); // first tick: now
    let start = tokio::time::Instant::now() + settings.ping_period;
    let mut ping = tokio::time::interval_at(start, settings.ping_period);
    let mut seen: Option<(Stamp, Update)> = None;
    let result = loop {
        tokio::select! {
            _ = poll.tick() => {
                let stamp = stamp(&settings.path).await;
                if seen.as_ref().is_some_and(|(s, _)| *s == stamp && stamp.is_some()) {
                    continue; // unchanged since the last look
                }
                let update = load(&settings.path, settings.max_file_size).await;
                let changed = !matches!(&seen, Some((_, u)) if *u == update);
                seen = Some((stamp, update.clone()));
                if changed {
                    write.set_write_deadline(Instant::now() + settings.write_wait);
                    if let Err(e) = write.write_json(&update).await {
                        break Err(e);
                    }
                }
            }
            _ = ping.tick() => {
                let deadline = Instant::now() + settings.write_wait;
                if let Err(e) = write.write_control(Control::ping(""), deadline).await {
                    break Err(e);
                }
            }
            _ = &mut reader => break Ok(()), // the page went away or closed
        }
    };
    write.close();
    result
}

/// What tells a change without reading the file: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

async fn stamp(path: &Path) -> Stamp {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The file's content, at most `max` bytes of it.
async fn load(path: &Path, max: u64) -> Update {
    use tokio::io::AsyncReadExt;
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            return Update::Error {
                message: format!("{}: {e}", path.display()),
            }
        }
    };
    let mut bytes = Vec::new();
    // One byte more than shown tells whether there was more.
    if let Err(e) = file.take(max + 1).read_to_end(&mut bytes).await {
        return Update::Error {
            message: format!("{}: {e}", path.display()),
        };
    }
    let truncated = bytes.len() as u64 > max;
    bytes.truncate(max as usize);
    Update::Content {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        truncated,
    }
}

#[cfg(test)]
mod tests;
