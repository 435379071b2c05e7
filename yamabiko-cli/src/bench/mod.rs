//! `yamabiko bench URL`: a load generator for any WebSocket echo or broadcast server.
//!
//! Three modes, one file each:
//! * [`echo`] (the default): opens `--conns` connections, keeps `--inflight` messages
//!   in flight on each (a writer task and a reader task per connection), checks every
//!   echo byte for byte and records round-trip latency in an HDR histogram;
//! * [`broadcast`] (`--broadcast`): `--subscribers` connections to a broadcast server,
//!   one of which publishes, at a fixed `--rate` or with `--inflight` messages in
//!   flight; every delivery is checked, timed and counted;
//! * [`idle`] (`--idle N`): opens N idle connections and holds them, to measure a
//!   server's memory per connection;
//! * [`board`] (`--board`): viewers and posters on the bulletin board
//!   (`yamabiko serve`), speaking its protocol.
//!
//! Every phase is bounded in time: connecting (`--connect-timeout`), warm-up,
//! measuring (`--duration`) and draining the last echoes (`--drain-timeout`).

mod board;
mod broadcast;
mod echo;
mod idle;

use anyhow::{bail, Context};
use clap::Args;
use std::net::IpAddr;
use std::time::Duration;

/// Options of `yamabiko bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The echo server to load (`ws://host:port/path`).
    url: String,
    /// Number of connections.
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Payload size of every message, in bytes.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Messages kept in flight on each connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Length of the measuring window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before measuring, in seconds (echoes then are checked, not counted).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Send text messages (ASCII payload) instead of binary ones.
    #[arg(long)]
    text: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Bound on opening all connections, in seconds.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Bound on waiting for the last echoes after the window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// Allow targets outside loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Open this many idle connections and hold them (memory per connection).
    #[arg(long, value_name = "N")]
    idle: Option<usize>,
    /// With --idle: how long to hold the connections, in seconds.
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// Runtime threads (1 = single-threaded runtime, for pinning to one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Linux: also report this server process's CPU per message (utime+stime over
    /// the window) or, with --idle, its RSS growth per connection.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Load a broadcast server (`yamabiko echo --broadcast`: every message goes to
    /// every connection): --subscribers connections, one of them publishing,
    /// saturating (--inflight messages not yet received by everyone) or at --rate.
    #[arg(long, conflicts_with = "idle")]
    broadcast: bool,
    /// With --broadcast: connections that receive every message (the publisher is
    /// one of them).
    #[arg(long, default_value_t = 100, value_name = "S")]
    subscribers: usize,
    /// With --broadcast: publish this many messages per second (fixed-rate mode)
    /// instead of keeping --inflight messages in flight.
    #[arg(long, value_name = "MSGS_PER_S")]
    rate: Option<f64>,
    /// With --broadcast: also open this many connections that never read (stalled
    /// subscribers; not counted in --subscribers).
    #[arg(long, default_value_t = 0, value_name = "N")]
    stalled: usize,
    /// Open the WebSockets over HTTP/2 (RFC 8441): prior knowledge (h2c) for ws://,
    /// ALPN h2 for wss:// (echo load only).
    #[arg(long, conflicts_with_all = ["idle", "broadcast"])]
    http2: bool,
    /// With --http2: how many WebSockets share one HTTP/2 connection (1 = a
    /// connection each).
    #[arg(long, default_value_t = 1, value_name = "N", requires = "http2")]
    streams_per_conn: usize,
    /// Load a `yamabiko serve` board (URL: ws://HOST/ws) with viewers and posters.
    #[arg(long, conflicts_with_all = ["idle", "broadcast"])]
    board: bool,
    #[command(flatten)]
    board_opts: board::BoardOpts,
}

/// Runs the load generator and prints its report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.board {
        let common = board::Common {
            url: args.url.clone(),
            duration: args.duration,
            warmup: args.warmup,
            json: args.json,
            connect_timeout: args.connect_timeout,
            drain_timeout: args.drain_timeout,
            allow_remote: args.allow_remote,
            threads: args.threads,
            server_pid: args.server_pid,
        };
        return board::run(common, &args.board_opts);
    }
    check_target(&args.url, args.allow_remote)?;
    if args.size == 0 && args.idle.is_none() {
        bail!("--size must be at least 1");
    }
    if args.conns == 0 || args.inflight == 0 || args.streams_per_conn == 0 {
        bail!("--conns, --inflight and --streams-per-conn must be at least 1");
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let report = match args.idle {
        Some(n) => runtime.block_on(idle::idle(&args, n))?,
        None if args.broadcast => runtime.block_on(broadcast::load(&args))?,
        None => runtime.block_on(echo::load(&args))?,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report.json)?);
    } else {
        println!("{}", report.table);
    }
    if report.errors > 0 {
        bail!("{} errors", report.errors);
    }
    Ok(())
}

/// What a run prints: JSON or a table, and whether it failed.
struct Report {
    json: serde_json::Value,
    table: String,
    errors: u64,
}

fn secs(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{name} must be ≥ 0 seconds"))
}

/// Refuses targets outside loopback unless `allow_remote`.
pub(crate) fn check_target(url: &str, allow_remote: bool) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse().context("bad URL")?;
    match uri.scheme_str() {
        Some("ws") | Some("wss") => {}
        _ => bail!("the URL must start with ws:// or wss://"),
    }
    let host = uri.host().context("the URL has no host")?;
    if allow_remote || is_loopback(host) {
        Ok(())
    } else {
        bail!("{host} is not a loopback address; pass --allow-remote to load it anyway")
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// utime + stime of `pid`, in clock ticks (Linux `/proc/PID/stat`).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident set size of `pid`, in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets() {
        assert!(check_target("ws://127.0.0.1:9001/", false).is_ok());
        assert!(check_target("ws://127.3.2.1/", false).is_ok());
        assert!(check_target("ws://localhost:80/x", false).is_ok());
        assert!(check_target("ws://[::1]:9001/", false).is_ok());
        assert!(check_target("ws://10.0.0.1:9001/", false).is_err());
        assert!(check_target("ws://example.com/", false).is_err());
        assert!(check_target("ws://example.com/", true).is_ok());
        assert!(check_target("http://127.0.0.1/", false).is_err());
    }
}
