//! The `yamabiko` command: programs built on the yamabiko library's public API.

mod bench;
mod connect;
mod echo;
mod echo_blocking;
mod echo_broadcast;
mod echo_http2;
mod game;

use clap::{Parser, Subcommand};
// The connection cap and shutdown signal live with the board, shared by every server here.
use yamabiko_board::ServeArgs;
use yamabiko_board::{http2_server, limits, tls};

/// yamabiko — WebSocket toolkit.
#[derive(Parser)]
#[command(name = "yamabiko", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a WebSocket echo server (text and binary, any size up to the limits).
    Echo(echo::EchoArgs),
    /// Connect to a WebSocket server: stdin lines out as text, messages received to stdout.
    Connect(connect::ConnectArgs),
    /// Run the realtime bulletin board (web page + WebSocket; SQLite, or PostgreSQL and Redis).
    Serve(ServeArgs),
    /// Load an echo server: throughput, round-trip latency, every echo checked.
    Bench(bench::BenchArgs),
    /// Run 鬼ごっこ, the realtime multiplayer tag game (web page + WebSocket).
    Game(game::GameArgs),
    /// Load the game server with bot players: CPU per player-tick, tick timing,
    /// bytes, input latency, and the cost of a page that stops reading.
    GameBench(game::GameBenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Echo(args) => echo::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Serve(args) => yamabiko_board::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Game(args) => game::run(args),
        Command::GameBench(args) => game::bench(args),
    }
}
