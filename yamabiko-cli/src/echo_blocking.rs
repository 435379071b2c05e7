//! `yamabiko echo --blocking`: the echo server on yamabiko's blocking API, one thread
//! per connection (gorilla's model literally).
//!
//! Threads are bounded by `--max-conns`: a connection beyond it is answered
//! `503 Service Unavailable` by the accepting thread and closed. Each connection
//! thread has a small stack; its memory is the stack plus the connection's buffers.
//! `--tls-cert` / `--tls-key` serve wss:// through rustls' `StreamOwned`. Ctrl-C or
//! SIGTERM ends the process (no graceful close in this mode).

use crate::limits::{ConnLimit, ConnPermit};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use yamabiko::blocking::Transport;
use yamabiko::{CloseCode, Control, Error, Upgrader};

/// Stack size of a connection thread: the echo loop needs little.
const THREAD_STACK: usize = 256 * 1024;

/// What `yamabiko echo` passes on to the blocking server.
pub struct Options {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The upgrader (limits, compression, origin policy) shared with the async mode.
    pub upgrader: Upgrader,
    /// Most connections (threads) at once; 0 = no limit.
    pub max_conns: usize,
    /// Close a connection idle this long (1001); zero = never.
    pub idle_timeout: Duration,
    /// Serve wss:// with this configuration (rustls `StreamOwned` over the TCP stream;
    /// the TLS handshake runs within the upgrader's handshake timeout).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Runs the blocking echo server until the process is stopped.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let listener = TcpListener::bind(opts.listen)?;
    let scheme = if opts.tls.is_some() { "wss" } else { "ws" };
    tracing::info!(addr = %listener.local_addr()?, scheme, mode = "blocking", "echo server listening");
    let limit = ConnLimit::new(opts.max_conns);
    // Runs until the process is stopped; each round accepts one connection or backs off.
    loop {
        let (tcp, peer) = match listener.accept() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(permit) = limit.try_acquire() else {
            tracing::debug!(%peer, "too many connections, refusing (503)");
            refuse(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let upgrader = opts.upgrader.clone();
        let idle = opts.idle_timeout;
        let tls = opts.tls.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("echo {peer}"))
            .stack_size(THREAD_STACK)
            .spawn(move || match tls {
                None => echo(upgrader, tcp, peer, idle, permit),
                Some(config) => match rustls::ServerConnection::new(config) {
                    Ok(session) => {
                        let stream = rustls::StreamOwned::new(session, tcp);
                        echo(upgrader, stream, peer, idle, permit)
                    }
                    Err(e) => tracing::warn!(%peer, error = %e, "TLS session"),
                },
            });
        if let Err(e) = spawned {
            tracing::warn!(%peer, error = %e, "cannot start a connection thread");
        }
    }
}

/// Upgrades and echoes until the connection ends or is idle for `idle`.
fn echo<S: Transport>(
    upgrader: Upgrader,
    stream: S,
    peer: SocketAddr,
    idle: Duration,
    _permit: ConnPermit,
) {
    let mut conn = match upgrader.upgrade_blocking(stream) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            return;
        }
    };
    let deadline = move || (!idle.is_zero()).then(|| Instant::now() + idle);
    if !idle.is_zero() {
        // A ping counts as activity: answer it (the default) and move the deadline.
        conn.set_ping_handler(move |ctx, data| {
            ctx.send(Control::Pong(data.clone()));
            ctx.set_read_deadline(deadline());
            Ok(())
        });
    }
    // Bounded by the connection: it ends on close, error or idle timeout.
    loop {
        conn.set_read_deadline(deadline());
        let result = conn.read_message().and_then(|msg| conn.write_message(msg));
        match result {
            Ok(()) => {}
            Err(Error::Timeout) => {
                conn.set_read_deadline(None);
                let _ = conn.close_with(
                    CloseCode::GOING_AWAY,
                    "idle timeout",
                    Duration::from_secs(5),
                );
                return;
            }
            Err(e) => {
                if yamabiko::is_unexpected_close_error(
                    &e,
                    &[CloseCode::NORMAL, CloseCode::GOING_AWAY],
                ) {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
        }
    }
}

/// Answers a connection over the limit with 503, spending at most 100 ms on it.
fn refuse(mut tcp: TcpStream) {
    let body = "server busy: too many connections, try again later\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Retry-After: 1\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = tcp.write_all(response.as_bytes());
    let _ = tcp.shutdown(std::net::Shutdown::Write);
}
