//! `yamabiko serve`: the realtime bulletin board (掲示板).
//!
//! One binary serves the page (assets embedded at compile time) and its WebSocket
//! endpoint `/ws` on one port, and keeps threads and posts in SQLite. New posts appear
//! in every open tab without a reload; a post is acknowledged to its author only once
//! it is committed.
//!
//! * [`protocol`]: the JSON messages and their validation;
//! * [`store`] / [`sqlite`]: storage behind the [`store::Storage`] trait;
//! * [`hub`]: fan-out to connections behind the [`hub::FanOut`] trait;
//! * [`server`]: HTTP + WebSocket, the reader and writer task of each connection;
//! * [`ratelimit`]: the per-connection post limit.

pub mod hub;
pub mod protocol;
pub mod ratelimit;
pub mod server;
pub mod sqlite;
pub mod store;

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
    /// SQLite database file, created on first start.
    #[arg(long, default_value = "yamabiko.db")]
    db: PathBuf,
    /// How often to ping each connection (e.g. 20s, 500ms).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    ping_interval: Duration,
    /// Drop a connection silent (no pong, no message) for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// A write taking longer marks the client too slow (close 1008).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// Most connections (page loads and WebSockets) served at once; beyond it new
    /// ones get `503 Service Unavailable`. 0 = no limit.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_conns: usize,
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
    let store = sqlite::SqliteStore::open(&args.db)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", args.db.display()))?;
    tracing::info!(db = %args.db.display(), "database ready (SQLite, WAL)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "board listening");
        // The first line on stdout is the address (tests and scripts read it).
        let mut out = std::io::stdout();
        writeln!(out, "yamabiko board listening on http://{addr}/")?;
        out.flush()?;

        let hub = Arc::new(hub::Hub::new());
        let fanout = Arc::new(hub::LocalFanOut::new(hub.clone()));
        let timing = server::Timing {
            ping_period: args.ping_interval,
            pong_wait: args.idle_timeout,
            write_wait: args.write_timeout,
        };
        let board = Arc::new(server::Board::new(Arc::new(store), fanout, hub, timing));
        let shutdown = CancellationToken::new();
        tokio::spawn(signal_shutdown(shutdown.clone()));
        let limit = crate::limits::ConnLimit::new(args.max_conns);
        server::serve(listener, board, shutdown, limit).await?;
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
