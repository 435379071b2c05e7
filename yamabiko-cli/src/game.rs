//! `yamabiko game` and `yamabiko game-bench`: argument parsing only; the game lives in
//! the `yamabiko-game` crate.

use crate::limits::parse_duration_or_zero;
use clap::{ArgAction, Args};
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use yamabiko_game::{GameConfig, Timing};

/// Options of `yamabiko game`.
#[derive(Args, Debug)]
pub struct GameArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Simulation ticks per second (20–120).
    #[arg(long, default_value_t = 30, value_name = "HZ")]
    tick_hz: u32,
    /// Bots fill empty seats so one person can play alone (`--bots false` or
    /// `--no-bots` for rooms of people only).
    #[arg(long, default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    bots: bool,
    /// Same as `--bots false`.
    #[arg(long, conflicts_with = "bots")]
    no_bots: bool,
    /// Circles a room is filled to with bots.
    #[arg(long, default_value_t = 6, value_name = "N")]
    bot_fill: usize,
    /// How long a disconnected player keeps the seat (e.g. 15s).
    #[arg(long, default_value = "15s", value_parser = parse_duration_or_zero)]
    grace: Duration,
    /// A write taking longer marks the page too slow (close 1008).
    #[arg(long, default_value = "3s", value_parser = parse_duration_or_zero)]
    write_timeout: Duration,
    /// Most connections (page loads and sockets) at once; more get 503. 0 = no limit.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_conns: usize,
    /// Most rooms at once.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    max_rooms: usize,
    /// Kernel send buffer of each game socket in bytes (SO_SNDBUF; 0 = the system's
    /// default): small, so a page that falls behind gets fresh snapshots.
    #[arg(long, default_value_t = yamabiko_game::server::SEND_BUFFER, value_name = "BYTES")]
    send_buffer: usize,
    /// Runtime threads: 0 = one per core, 1 = a single-threaded runtime (to pin the
    /// server to one core for measurements).
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
}

/// Runs the game server until Ctrl-C or SIGTERM.
pub fn run(args: GameArgs) -> anyhow::Result<()> {
    let config = GameConfig {
        tick_hz: args.tick_hz,
        bots: args.bots && !args.no_bots,
        bot_fill: args.bot_fill,
        max_conns: args.max_conns,
        max_rooms: args.max_rooms,
        grace: args.grace,
        send_buffer: args.send_buffer,
        timing: Timing {
            write_timeout: args.write_timeout,
            ..Timing::default()
        },
        ..GameConfig::default()
    };
    yamabiko_game::sim::Params::for_tick_hz(config.tick_hz)?;
    let runtime = runtime(args.threads)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.listen))?;
        let addr = listener.local_addr()?;
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            crate::limits::shutdown_signal().await;
            on_signal.cancel();
        });
        tracing::info!(%addr, "game listening");
        // The first line on stdout is the address (tests and scripts read it).
        let mut out = std::io::stdout();
        writeln!(out, "yamabiko game listening on http://{addr}/")?;
        out.flush()?;
        yamabiko_game::serve(listener, config, shutdown).await
    })
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

/// Options of `yamabiko game-bench`.
#[derive(Args, Debug)]
pub struct GameBenchArgs {
    /// The game server's socket (start it with `--no-bots`).
    #[arg(default_value = "ws://127.0.0.1:8090/ws")]
    url: String,
    /// Bot players.
    #[arg(long, default_value_t = 64, value_name = "N")]
    players: usize,
    /// Players per room (1–16).
    #[arg(long, default_value_t = 16, value_name = "N")]
    room_size: usize,
    /// Each measuring window, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    duration: f64,
    /// Warm-up before the first window, in seconds.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    warmup: f64,
    /// Skip the second window (one bot that stops reading).
    #[arg(long)]
    no_stall: bool,
    /// Length of the second window, in seconds: long enough for the stalled socket's
    /// buffers to fill and the write deadline to pass.
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    stall_duration: f64,
    /// Receive buffer of the bot that stalls, in bytes.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    stall_recv_buffer: usize,
    /// Bound on connecting all players, in seconds.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    connect_timeout: f64,
    /// Prefix of the room names (rooms are PREFIX-0, PREFIX-1, …).
    #[arg(long, default_value = "bench", value_name = "PREFIX")]
    room_prefix: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Runtime threads (1 = single-threaded, to pin the generator to one core).
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,
}

/// Runs the game load generator and prints its report.
pub fn bench(args: GameBenchArgs) -> anyhow::Result<()> {
    let secs = |name: &str, v: f64| {
        Duration::try_from_secs_f64(v)
            .map_err(|_| anyhow::anyhow!("--{name} must be a number of seconds ≥ 0"))
    };
    let config = yamabiko_game::bench::BenchConfig {
        url: args.url,
        players: args.players,
        room_size: args.room_size,
        duration: secs("duration", args.duration)?,
        warmup: secs("warmup", args.warmup)?,
        stall: !args.no_stall,
        stall_duration: secs("stall-duration", args.stall_duration)?,
        stall_recv_buffer: args.stall_recv_buffer,
        connect_timeout: secs("connect-timeout", args.connect_timeout)?,
        room_prefix: args.room_prefix,
        ..yamabiko_game::bench::BenchConfig::default()
    };
    let runtime = runtime(args.threads.max(1))?;
    let (json, table) = runtime.block_on(yamabiko_game::bench::run(config))?;
    if args.json {
        println!("{json}");
    } else {
        print!("{table}");
    }
    if json["errors"].as_u64().unwrap_or(0) > 0 {
        anyhow::bail!("{} errors", json["errors"]);
    }
    Ok(())
}
