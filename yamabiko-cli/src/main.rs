//! The `yamabiko` command: programs built on the yamabiko library's public API.

/// mimalloc instead of the system allocator: it keeps small objects of one size together
/// with no per-object header, which matters most for idle connections (bench/idle-memory.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Runs [`return_freed_memory_promptly`] before `main`, before the first allocation:
/// mimalloc reserves its first arena then, and whether an arena is committed at once is
/// decided when it is reserved (set in `main`, the option came too late: 672-949 bytes
/// per idle connection instead of 560-589).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = {
    extern "C" fn set() {
        return_freed_memory_promptly();
    }
    set
};

/// Tells mimalloc to commit its arenas as they are used rather than all at once, and to
/// give freed pages back to the system after 10 ms instead of 1 s. With its defaults,
/// the pages freed after a burst (say 10,000 handshakes) stayed in the resident memory
/// of a server whose connections then all sleep (bench/idle-memory.sh: 885-1,101 bytes
/// per idle connection at 10,000 connections instead of 560-589). A delay of 0 was
/// smaller still but gave each 1 MiB message's pages back before the next one was
/// read: echoing 1 MiB messages took twice the CPU.
fn return_freed_memory_promptly() {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table, which may be
    // set at any time, before mimalloc's own initialisation too; both numbers are options
    // of the mimalloc built here (see the constants).
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

/// How long mimalloc keeps a freed page before giving it back (mimalloc 2's default).
const PURGE_DELAY_MS: std::os::raw::c_long = 10;

/// `mi_option_arena_eager_commit`, its place in `mi_option_e` in mimalloc.h (the same in
/// mimalloc 2 and 3; libmimalloc-sys names only some options).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in mimalloc.h.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

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
    #[cfg(not(target_os = "linux"))]
    return_freed_memory_promptly();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The options are set before `main` (the test harness's `main` here; elsewhere than
    /// Linux they are set by `main` itself, which a test does not run).
    #[cfg(target_os = "linux")]
    #[test]
    fn allocator_options_are_set_before_main() {
        // SAFETY: reading an option is always allowed.
        let options = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!(options, (0, PURGE_DELAY_MS));
    }
}
