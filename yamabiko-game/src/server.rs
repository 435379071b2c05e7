//! The HTTP and WebSocket server: the page's files, `/stats`, and the game socket
//! `/ws`, on one port.

use crate::assets;
use crate::connection::{self, Context, Timing};
use crate::lobby::Lobby;
use crate::room::RoomConfig;
use crate::sim::Params;
use crate::stats::Stats;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use yamabiko::Upgrader;

/// Everything `yamabiko game` can be told.
#[derive(Clone, Debug)]
pub struct GameConfig {
    /// Simulation ticks per second (20–120).
    pub tick_hz: u32,
    /// Whether bots fill empty seats.
    pub bots: bool,
    /// Circles a room is filled to with bots.
    pub bot_fill: usize,
    /// Most connections (page loads and sockets) at once; more get 503. 0: no limit.
    pub max_conns: usize,
    /// Most rooms at once.
    pub max_rooms: usize,
    /// How long a disconnected player keeps the seat.
    pub grace: Duration,
    /// How long a room without people lives on.
    pub linger: Duration,
    /// Keep-alive and write deadlines.
    pub timing: Timing,
    /// The kernel send buffer of each game socket, in bytes (`SO_SNDBUF`; Linux
    /// doubles it); 0 leaves the system's default, which grows to megabytes. Kept small
    /// so that a page that cannot keep up is given fresh snapshots (latest wins in the
    /// mailbox) rather than seconds-old ones queued in the kernel, and so that a
    /// stalled page holds little memory.
    pub send_buffer: usize,
}

impl Default for GameConfig {
    fn default() -> Self {
        GameConfig {
            tick_hz: 30,
            bots: true,
            bot_fill: 6,
            max_conns: 10_000,
            max_rooms: 1_000,
            grace: Duration::from_secs(15),
            linger: Duration::from_secs(10),
            timing: Timing::default(),
            send_buffer: SEND_BUFFER,
        }
    }
}

/// Default of [`GameConfig::send_buffer`]: 16 KiB (32 KiB in the kernel on Linux),
/// two seconds of a 16-player room's snapshots at 30 Hz.
pub const SEND_BUFFER: usize = 16 * 1024;

/// Serves the game on `listener` until `shutdown` fires.
///
/// ```no_run
/// # async fn run() -> anyhow::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// yamabiko_game::serve(listener, yamabiko_game::GameConfig::default(), shutdown).await?;
/// # Ok(()) }
/// ```
pub async fn serve(
    listener: TcpListener,
    config: GameConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let params = Params::for_tick_hz(config.tick_hz)?;
    let stats = Arc::new(Stats::default());
    let lobby = Lobby::new(
        RoomConfig {
            params,
            bots: config.bots,
            bot_fill: config.bot_fill,
            grace: config.grace,
            linger: config.linger,
        },
        config.max_rooms,
        stats.clone(),
        shutdown.clone(),
    );
    let ctx = Arc::new(Context {
        lobby,
        stats,
        timing: config.timing,
        tick_hz: config.tick_hz,
        shutdown: shutdown.clone(),
        send_buffer: config.send_buffer,
    });
    // Compression off: snapshots are small and new every tick. Same-origin pages only
    // (the library's default origin check).
    let upgrader = Upgrader::new()
        .enable_compression(false)
        .max_message_size(crate::protocol::MAX_CLIENT_MESSAGE)
        .max_frame_size(crate::protocol::MAX_CLIENT_MESSAGE)
        .handshake_timeout(Duration::from_secs(10));
    let limit = Arc::new(Semaphore::new(if config.max_conns == 0 {
        Semaphore::MAX_PERMITS
    } else {
        config.max_conns
    }));
    let next_id = Arc::new(AtomicU64::new(1));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (mut tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Nagle off: a snapshot goes out the moment it is written.
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracker.spawn(async move {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    tcp.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                )
                .await;
            });
            continue;
        };
        let ctx = ctx.clone();
        let upgrader = upgrader.clone();
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tracker.spawn(async move {
            handle_tcp(ctx, upgrader, tcp, peer, id).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    Ok(())
}

async fn handle_tcp(
    ctx: Arc<Context>,
    upgrader: Upgrader,
    mut tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
) {
    let read = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        r = upgrader.read_request(&mut tcp) => r,
    };
    let (request, leftover) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad or no request");
            return;
        }
    };
    if request.uri().path() != "/ws" {
        serve_http(&ctx, &mut tcp, &request).await;
        return;
    }
    if ctx.send_buffer > 0 {
        if let Err(e) = socket2::SockRef::from(&tcp).set_send_buffer_size(ctx.send_buffer) {
            tracing::debug!(error = %e, "SO_SNDBUF not set");
        }
    }
    match upgrader.upgrade_request(tcp, &request, leftover).await {
        Ok(conn) => connection::run(ctx, conn, id).await,
        Err(e) => tracing::info!(%peer, error = %e, "websocket handshake refused"),
    }
}

/// Answers a plain HTTP request and closes the connection.
async fn serve_http(ctx: &Context, tcp: &mut TcpStream, request: &http::Request<()>) {
    let method = request.method();
    let path = request.uri().path();
    let stats_body;
    let (status, content_type, body): (&str, &str, &[u8]) =
        if method != http::Method::GET && method != http::Method::HEAD {
            (
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                b"method not allowed\n",
            )
        } else if path == "/stats" {
            stats_body = ctx
                .stats
                .to_json(ctx.tick_hz, ctx.lobby.census())
                .to_string();
            ("200 OK", "application/json", stats_body.as_bytes())
        } else if path == "/healthz" {
            ("200 OK", "text/plain; charset=utf-8", b"ok\n")
        } else if let Some(asset) = assets::find(path) {
            ("200 OK", asset.content_type, asset.body)
        } else {
            ("404 Not Found", "text/plain; charset=utf-8", b"not found\n")
        };
    let head = format!(
        "HTTP/1.1 {status}\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n\
         Cache-Control: no-cache\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'self'; connect-src 'self'; img-src 'self' data:; \
         style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
         {}\
         Connection: close\r\n\r\n",
        body.len(),
        if status.starts_with("405") {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        },
    );
    let write = async {
        tcp.write_all(head.as_bytes()).await?;
        if method != http::Method::HEAD {
            tcp.write_all(body).await?;
        }
        tcp.shutdown().await
    };
    match tokio::time::timeout(Duration::from_secs(10), write).await {
        Ok(Ok(())) => tracing::debug!(path, status, "http"),
        Ok(Err(e)) => tracing::debug!(error = %e, "http response failed"),
        Err(_) => tracing::debug!("http response timed out"),
    }
}
