//! The realtime bulletin board (掲示板) of `yamabiko serve`, as a library on
//! yamabiko's public API: the `yamabiko` command only parses its options and calls
//! [`run`].
//!
//! One process serves the page (assets embedded at compile time) and its WebSocket
//! endpoint `/ws` on one port, and keeps threads and posts in SQLite (or PostgreSQL,
//! `--database`). New posts appear in every open tab without a reload; a post is
//! acknowledged to its author only once it is committed. Several servers can share
//! one PostgreSQL database and pass events to each other over Redis (`--redis`).
//!
//! * [`protocol`]: the JSON messages and their validation;
//! * [`store`] / [`sqlite`] / [`postgres`]: storage behind the [`store::Storage`] trait;
//! * [`hub`]: this server's connections and presence; [`order`]: in-order delivery of
//!   each thread's posts into the hub;
//! * [`broker`]: fan-out between servers over Redis, behind the [`hub::FanOut`] trait;
//! * [`server`]: HTTP + WebSocket, the task of each connection; [`https`]: the same
//!   over TLS, with HTTP/2 (the page and its WebSocket on one connection, RFC 8441);
//! * [`ratelimit`]: the per-connection post limit;
//! * [`limits`]: the cap on live connections and the shutdown signal; [`tls`]: the
//!   certificate and key loading; [`http2_server`]: an HTTP/2 connection's requests
//!   (all three shared with the command's other servers).
//!
//! A board on SQLite, served on a free port, and a page's first message from it:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use yamabiko_board::{hub, limits, order, server, sqlite, store::Storage};
//!
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! let dir = std::env::temp_dir().join(format!("yamabiko-board-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store: Arc<dyn Storage> = Arc::new(sqlite::SqliteStore::open(&dir.join("board.db"))?);
//! let hub = Arc::new(hub::Hub::new(Duration::from_secs(10)));
//! let ordered = Arc::new(order::Ordered::new(store.clone(), hub.clone()));
//! let fanout = Arc::new(hub::SingleServer); // one instance: no Redis
//! let timing = server::Timing::default();
//! let board = Arc::new(server::Board::new(store, fanout, hub, ordered, timing));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("ws://{}/ws", listener.local_addr()?);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let limit = limits::ConnLimit::new(100);
//! let serving = tokio::spawn(server::serve(listener, board, shutdown.clone(), limit, None));
//!
//! let (mut page, _) = yamabiko::Dialer::new().dial(&url).await?;
//! let hello: serde_json::Value = serde_json::from_slice(page.read_message().await?.as_bytes())?;
//! assert_eq!(hello["type"], "hello");
//! shutdown.cancel();
//! serving.await??;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```

pub mod broker;
pub mod http2_server;
pub mod https;
pub mod hub;
pub mod limits;
pub mod order;
pub mod postgres;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod sqlite;
pub mod store;
pub mod tls;

use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Options of `yamabiko serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// SQLite database file, created on first start (the default storage).
    #[arg(long, default_value = "yamabiko.db")]
    db: PathBuf,
    /// Keep posts in PostgreSQL instead of SQLite, e.g.
    /// postgres://user:password@127.0.0.1:5432/board (schema created on start).
    /// Needed to run several servers on one board.
    #[arg(long, value_name = "URL", conflicts_with = "db")]
    database: Option<String>,
    /// Pass posts and presence between servers over Redis pub/sub, e.g.
    /// redis://127.0.0.1:6379/ (without it, events stay in this process).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Prefix of the Redis channels and keys (boards sharing a Redis need their own).
    #[arg(long, default_value = "yamabiko", value_name = "PREFIX")]
    redis_prefix: String,
    /// How often to ping each connection (e.g. 20s, 500ms).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    ping_interval: Duration,
    /// Drop a connection silent (no pong, no message) for this long after a ping.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// How long a ping or a close frame may take to go out, and how long a client
    /// closed as too slow (over 1 MiB unsent: close 1008) gets to take what was
    /// queued before it is dropped.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// Most connections (page loads and WebSockets) served at once; beyond it new
    /// ones get `503 Service Unavailable`. 0 = no limit.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_conns: usize,
    /// Serve over HTTPS with this PEM certificate chain (leaf first); needs
    /// --tls-key. ALPN offers h2 and http/1.1: a browser loads the page over HTTP/2
    /// and opens its WebSocket inside the same connection.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// Parses `250ms`, `20s` or `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 20s or 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    if d.is_zero() {
        return Err("duration must be positive".into());
    }
    Ok(d)
}

/// Runs the board until interrupted (Ctrl-C or SIGTERM).
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store: Arc<dyn store::Storage> = match &args.database {
            Some(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    anyhow::bail!("--database takes a postgres:// URL (SQLite: --db FILE)");
                }
                let store = postgres::PgStore::connect(url)
                    .await
                    .map_err(|e| anyhow::anyhow!("opening the PostgreSQL database: {e}"))?;
                tracing::info!("database ready (PostgreSQL)");
                Arc::new(store)
            }
            None => {
                let store = sqlite::SqliteStore::open(&args.db)
                    .map_err(|e| anyhow::anyhow!("opening {}: {e}", args.db.display()))?;
                tracing::info!(db = %args.db.display(), "database ready (SQLite, WAL)");
                Arc::new(store)
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        let hub = Arc::new(hub::Hub::new(args.write_timeout));
        tokio::spawn(hub::run_presence(hub.clone(), shutdown.clone()));
        let ordered = Arc::new(order::Ordered::new(store.clone(), hub.clone()));
        let redis = match &args.redis {
            Some(url) => Some(broker::start(
                url,
                &args.redis_prefix,
                hub.clone(),
                ordered.clone(),
                shutdown.clone(),
            )?),
            None => None,
        };
        let fanout: Arc<dyn hub::FanOut> = match &redis {
            Some(r) => r.clone(),
            None => Arc::new(hub::SingleServer),
        };
        if args.redis.is_some() && args.database.is_none() {
            tracing::warn!(
                "--redis without --database: every instance must use the same SQLite \
                 file, which only works for instances on one machine; use PostgreSQL"
            );
        }
        let timing = server::Timing {
            ping_period: args.ping_interval,
            pong_wait: args.idle_timeout,
            write_wait: args.write_timeout,
        };
        let board = Arc::new(server::Board::new(store, fanout, hub, ordered, timing));
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, scheme, "board listening");
        // The first line on stdout is the address (tests and scripts read it).
        let mut out = std::io::stdout();
        writeln!(out, "yamabiko board listening on {scheme}://{addr}/")?;
        out.flush()?;

        let limit = crate::limits::ConnLimit::new(args.max_conns);
        server::serve(listener, board.clone(), shutdown, limit, tls).await?;
        if board.http2_websockets() > 0 {
            tracing::info!(
                count = board.http2_websockets(),
                "WebSockets served over HTTP/2 (extended CONNECT)"
            );
        }
        if let Some(redis) = redis {
            redis.finish().await;
        }
        Ok(())
    })
}

/// Fires `shutdown` on Ctrl-C or SIGTERM.
async fn signal_shutdown(shutdown: CancellationToken) {
    crate::limits::shutdown_signal().await;
    tracing::info!("signal received");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
