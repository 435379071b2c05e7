//! `yamabiko echo`: echoes every message back, on the public API only.
//!
//! Limits: at most `--max-conns` connections at once (more are answered
//! `503 Service Unavailable`), the upgrader's 10 s handshake timeout, and an optional
//! `--idle-timeout`; keepalive pings every `--ping-interval` (20 s; 0 = off) and a
//! connection silent for `--ping-timeout` after one is failed (1011). On Ctrl-C or SIGTERM the server stops accepting, closes every
//! connection with 1001 (going away), waits up to [`SHUTDOWN_GRACE`] for the close
//! handshakes, and exits 0.

use clap::Args;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use yamabiko::{CloseCode, Conn, Control, Error, Hibernator, Message, Upgrader};

use crate::echo_broadcast::{broadcast_loop, parse_close_code, Broadcast, OnSlow};
use crate::limits::{parse_duration_or_zero, shutdown_signal, ConnLimit, ConnPermit};
use std::sync::Arc;

/// How long a shutting-down server waits for its close handshakes (and an idle
/// connection's close handshake may take) before dropping the connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Options of `yamabiko echo`.
#[derive(Args, Debug)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_frame_size: usize,
    /// Run on a single-threaded runtime (for benchmarks pinned to one core).
    #[arg(long)]
    single_thread: bool,
    /// Refuse permessage-deflate offers (accepted by default).
    #[arg(long)]
    no_compression: bool,
    /// With compression, messages shorter than this many bytes are sent uncompressed.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    compression_threshold: usize,
    /// Serve wss:// with this PEM certificate chain (leaf first); needs --tls-key.
    /// ALPN offers h2 and http/1.1: WebSockets come as HTTP/1.1 upgrades or as
    /// HTTP/2 extended CONNECTs (RFC 8441), several on one connection.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Most connections served at once (including those still in their handshake);
    /// beyond it new ones get `503 Service Unavailable`. 0 = no limit.
    #[arg(long, default_value_t = 10000, value_name = "N")]
    max_conns: usize,
    /// Close a connection (code 1001) that sends no message or ping for this long:
    /// seconds, or with a unit (500ms, 30s, 2m). 0 = never.
    #[arg(long, default_value = "0", value_name = "SECS", value_parser = parse_duration_or_zero)]
    idle_timeout: Duration,
    /// Keepalive: ping every connection this often while it is idle (seconds, or with
    /// a unit: 500ms, 20s). 0 = keepalive off.
    #[arg(long, default_value = "20s", value_name = "SECS", value_parser = parse_duration_or_zero)]
    ping_interval: Duration,
    /// Keepalive: fail a connection (close 1011) from which nothing arrives within
    /// this long of a ping.
    #[arg(long, default_value = "20s", value_name = "SECS", value_parser = parse_duration_or_zero)]
    ping_timeout: Duration,
    /// Serve on the blocking API, one thread per connection (at most --max-conns);
    /// works with --tls-cert/--tls-key too.
    #[arg(long, conflicts_with = "single_thread")]
    blocking: bool,
    /// Also accept cleartext HTTP/2 with prior knowledge (h2c) on ws://: a
    /// connection that starts with the HTTP/2 preface gets WebSockets over HTTP/2.
    #[arg(long, conflicts_with = "blocking")]
    h2c: bool,
    /// Broadcast instead of echo: every text or binary message from any connection
    /// goes, unchanged, to every open connection (the sender too), through a hub.
    #[arg(long, conflicts_with = "blocking")]
    broadcast: bool,
    /// With --broadcast: the most unsent bytes a connection may have before
    /// --on-slow applies to the next message.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_queued: usize,
    /// With --broadcast: what happens to a message that would take a connection over
    /// --max-queued.
    #[arg(long, value_enum, default_value = "close")]
    on_slow: OnSlow,
    /// With --on-slow close: the close code (1008 policy violation, 1013 try again later).
    #[arg(long, default_value = "1008", value_parser = parse_close_code)]
    slow_close_code: u16,
    /// With --on-slow close: how long a closed connection may take to receive what
    /// was queued and the close frame before it is dropped.
    #[arg(long, default_value = "5s", value_name = "SECS", value_parser = parse_duration_or_zero)]
    slow_grace: Duration,
    /// Put a ws:// echo connection to sleep (yamabiko::Hibernator: no task, a few
    /// hundred bytes) once no message has arrived from it for this long (up to twice
    /// as long), and at once after its handshake if its client has sent nothing yet;
    /// it wakes when the next message arrives (pings and pongs are answered asleep).
    /// 0 = never (every connection keeps its task).
    #[arg(long, default_value = "1s", value_name = "SECS", value_parser = parse_duration_or_zero)]
    hibernate_after: Duration,
}

/// Connections asleep, each with its place under --max-conns.
type Sleeps = Hibernator<TcpStream, ConnPermit>;

/// Runs the echo server until interrupted.
pub fn run(args: EchoArgs) -> anyhow::Result<()> {
    if args.blocking {
        return crate::echo_blocking::run(crate::echo_blocking::Options {
            listen: args.listen,
            upgrader: upgrader(&args),
            max_conns: args.max_conns,
            idle_timeout: args.idle_timeout,
            tls: match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
                _ => None,
            },
        });
    }
    let runtime = if args.single_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args))
}

/// The upgrader both modes use.
fn upgrader(args: &EchoArgs) -> Upgrader {
    Upgrader::new()
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_frame_size)
        // An echo server is a test target: accept pages from any origin.
        .check_origin(|_| true)
        .compression((!args.no_compression).then(|| yamabiko::DeflateConfig {
            threshold: args.compression_threshold,
            ..Default::default()
        }))
        .keepalive(
            (!args.ping_interval.is_zero())
                .then(|| yamabiko::Keepalive::new(args.ping_interval, args.ping_timeout)),
        )
}

async fn serve(args: EchoArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let upgrader = upgrader(&args);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    tracing::info!(addr = %listener.local_addr()?, scheme, "echo server listening");
    let limit = ConnLimit::new(args.max_conns);
    let idle = args.idle_timeout;
    let broadcast = args.broadcast.then(|| {
        Arc::new(Broadcast::new(
            args.max_queued,
            args.on_slow,
            args.slow_close_code,
            args.slow_grace,
        ))
    });
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let sleeps = (!args.hibernate_after.is_zero() && broadcast.is_none()).then(|| {
        let (shutdown, tracker) = (shutdown.clone(), tracker.clone());
        let after = args.hibernate_after;
        Sleeps::new(move |conn, permit, sleeps| {
            let peer = conn
                .with_stream(|tcp| tcp.peer_addr().ok())
                .flatten()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let napping = Napping { sleeps, after };
            tracker.track_future(serve_napping(
                conn,
                permit,
                peer,
                idle,
                shutdown.clone(),
                napping,
                false,
            ))
        })
    });
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("signal received, shutting down");
            shutdown.cancel();
        }
    });
    while let Some((tcp, peer, permit)) =
        crate::limits::accept_admitted(&listener, &limit, &shutdown).await
    {
        let upgrader = upgrader.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let broadcast = broadcast.clone();
        // Boxed: a TLS session is large, and plain connections should not pay for
        // it (or for HTTP/2) in every task.
        type Boxed = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
        let task = match tls {
            None if args.h2c => Either::Right(Box::pin(echo_h2c(
                upgrader, tcp, peer, idle, broadcast, shutdown, permit,
            )) as Boxed),
            None => Either::Left(echo(
                upgrader,
                tcp,
                peer,
                idle,
                broadcast,
                shutdown,
                permit,
                sleeps.clone().map(|sleeps| Napping {
                    sleeps,
                    after: args.hibernate_after,
                }),
            )),
            Some(acceptor) => Either::Right(Box::pin(echo_tls(
                acceptor, upgrader, tcp, peer, idle, broadcast, shutdown, permit,
            )) as Boxed),
        };
        tracker.spawn(task);
    }
    drop(listener);
    if let Some(sleeps) = sleeps {
        // Woken, the sleepers see the shutdown and close as the others do; each is
        // tracked from the moment it leaves the hibernator. (Again until none is
        // left: one may have been on its way to sleep when the signal came.)
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while !sleeps.is_empty() && tokio::time::Instant::now() < until {
            sleeps.wake_all();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tracker.close();
    tracing::info!(connections = limit.live(), "closing connections (1001)");
    // Each connection gives its close handshake SHUTDOWN_GRACE; allow a little more.
    let grace = SHUTDOWN_GRACE + Duration::from_millis(500);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("some connections did not close in time");
    }
    Ok(())
}

/// Completes the TLS handshake (bounded in time), then echoes.
#[allow(clippy::too_many_arguments)]
async fn echo_tls(
    acceptor: tokio_rustls::TlsAcceptor,
    upgrader: Upgrader,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    idle: Duration,
    broadcast: Option<Arc<Broadcast>>,
    shutdown: CancellationToken,
    permit: ConnPermit,
) {
    let accepted = tokio::select! {
        _ = shutdown.cancelled() => return,
        a = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)) => a,
    };
    match accepted {
        Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
            let Some(transport) = transport(stream.get_ref().0, peer, true) else {
                return;
            };
            crate::echo_http2::serve(
                stream, upgrader, transport, idle, broadcast, shutdown, permit,
            )
            .await
        }
        Ok(Ok(stream)) => {
            echo(
                upgrader, stream, peer, idle, broadcast, shutdown, permit, None,
            )
            .await
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// A cleartext connection: HTTP/2 with prior knowledge if it starts with the
/// preface, else HTTP/1.1.
async fn echo_h2c(
    upgrader: Upgrader,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    idle: Duration,
    broadcast: Option<Arc<Broadcast>>,
    shutdown: CancellationToken,
    permit: ConnPermit,
) {
    let h2 = tokio::select! {
        _ = shutdown.cancelled() => return,
        h2 = crate::http2_server::starts_with_preface(&tcp, Duration::from_secs(10)) => h2,
    };
    match h2 {
        Some(true) => {
            let Some(transport) = transport(&tcp, peer, false) else {
                return;
            };
            crate::echo_http2::serve(tcp, upgrader, transport, idle, broadcast, shutdown, permit)
                .await
        }
        Some(false) => echo(upgrader, tcp, peer, idle, broadcast, shutdown, permit, None).await,
        None => {}
    }
}

/// Where an HTTP/2 connection runs; `None` (and a log line) if the socket is gone.
fn transport(
    tcp: &tokio::net::TcpStream,
    peer: SocketAddr,
    tls: bool,
) -> Option<crate::http2_server::Transport> {
    match tcp.local_addr() {
        Ok(local) => Some(crate::http2_server::Transport { local, peer, tls }),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "no local address");
            None
        }
    }
}

/// Upgrades `stream` (TCP or TLS) and echoes (see [`echo_loop`]), or broadcasts
/// (see [`broadcast_loop`]).
///
/// A plain function returning the task, so that the task holds little besides the
/// connection — a connection's memory is mostly this future. The handshake runs
/// boxed and its memory is freed before the echo starts; arguments of an `async fn`
/// would stay in the future for its whole life.
#[allow(clippy::too_many_arguments)]
fn echo<S>(
    upgrader: Upgrader,
    stream: S,
    peer: SocketAddr,
    idle: Duration,
    broadcast: Option<Arc<Broadcast>>,
    shutdown: CancellationToken,
    permit: ConnPermit,
    napping: Option<Napping<S>>,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrading = Box::pin(upgrade(upgrader, stream, peer, shutdown.clone()));
    async move {
        // No named Option<Conn> here: it would keep a second connection-sized slot.
        let conn = {
            let upgrading = upgrading;
            match upgrading.await {
                Some(conn) => conn,
                None => return,
            }
        };
        match napping {
            Some(napping) => serve_napping(conn, permit, peer, idle, shutdown, napping, true).await,
            None => {
                let _permit = permit;
                serve_conn(conn, peer, idle, broadcast.as_deref(), shutdown).await;
            }
        }
    }
}

/// Where a quiet echo connection sleeps, and after how long.
pub(crate) struct Napping<S> {
    sleeps: Hibernator<S, ConnPermit>,
    after: Duration,
}

/// Echoes like [`serve_conn`], and hands the connection (with its permit) to the
/// hibernator when it is quiet — at once if `fresh` and nothing has arrived yet;
/// the hibernator starts this again, in a new task, when the next frame comes. A
/// plain function returning the task, as [`serve_conn`].
#[allow(clippy::manual_async_fn)]
fn serve_napping<S>(
    mut conn: Conn<S>,
    mut permit: ConnPermit,
    peer: SocketAddr,
    idle: Duration,
    shutdown: CancellationToken,
    napping: Napping<S>,
    fresh: bool,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let mut quiet = Quiet {
            after: napping.after,
            at_once: fresh,
        };
        loop {
            let reason = match echo_loop(&mut conn, peer, idle, &shutdown, Some(quiet)).await {
                Ended::Gone => return,
                Ended::Close(reason) => reason,
                // Shutting down: closed like the others rather than put to sleep.
                Ended::Quiet if shutdown.is_cancelled() => "server shutting down",
                Ended::Quiet => match napping.sleeps.hibernate(conn, permit) {
                    Ok(()) => return,
                    // Not at rest (a frame half arrived): go on awake.
                    Err((back, p)) => {
                        (conn, permit) = (back, p);
                        quiet.at_once = false;
                        continue;
                    }
                },
            };
            close_going_away(conn, peer, reason).await;
            return;
        }
    }
}

/// Echoes (or broadcasts) on an upgraded connection until it ends, or closes it with
/// 1001 (idle, shutdown).
///
/// A plain function returning the task, like [`echo`]: an `async fn` would keep its
/// arguments and the body's own binding of the connection as two slots in its future
/// (about 400 more bytes in every idle connection, measured with 10,000).
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve_conn<'a, S>(
    mut conn: Conn<S>,
    peer: SocketAddr,
    idle: Duration,
    broadcast: Option<&'a Broadcast>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let reason = match broadcast {
            None => match echo_loop(&mut conn, peer, idle, &shutdown, None).await {
                Ended::Close(reason) => Some(reason),
                Ended::Gone | Ended::Quiet => None,
            },
            Some(b) => broadcast_loop(&mut conn, b, peer, idle, &shutdown).await,
        };
        if let Some(reason) = reason {
            close_going_away(conn, peer, reason).await;
        }
    }
}

/// Closes with 1001 and `reason` (idle, shutdown), within [`SHUTDOWN_GRACE`].
async fn close_going_away<S>(mut conn: Conn<S>, peer: SocketAddr, reason: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.set_read_deadline(None);
    match Box::pin(conn.close_with(CloseCode::GOING_AWAY, reason, SHUTDOWN_GRACE)).await {
        Ok(()) => tracing::debug!(%peer, reason, "closed"),
        Err(e) => tracing::debug!(%peer, reason, error = %e, "close handshake incomplete"),
    }
}

/// The handshake, or `None` (logged) if it failed or the server is shutting down.
async fn upgrade<S>(
    upgrader: Upgrader,
    stream: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) -> Option<Conn<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let upgraded = tokio::select! {
        _ = shutdown.cancelled() => return None,
        r = upgrader.upgrade(stream) => r,
    };
    upgraded
        .inspect_err(|e| tracing::debug!(%peer, error = %e, "handshake failed"))
        .ok()
}

/// When an echo connection counts as quiet enough to sleep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quiet {
    /// No message arrived for this long (to twice as long).
    after: Duration,
    /// Or nothing is there at the first look (a fresh connection).
    at_once: bool,
}

/// How [`echo_loop`] ended.
enum Ended {
    /// The connection ended (logged).
    Gone,
    /// To be closed with 1001 and this reason (idle timeout, shutdown).
    Close(&'static str),
    /// Quiet (see [`Quiet`]): to be put to sleep.
    Quiet,
}

/// Echoes until the connection ends, it is idle for `idle` (unless zero), `shutdown`
/// fires, or (given `quiet`) it is quiet enough to sleep.
async fn echo_loop<S>(
    conn: &mut Conn<S>,
    peer: SocketAddr,
    idle: Duration,
    shutdown: &CancellationToken,
    quiet: Option<Quiet>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = move || (!idle.is_zero()).then(|| Instant::now() + idle);
    if !idle.is_zero() {
        // A ping counts as activity: answer it (the default) and move the deadline.
        conn.set_ping_handler(move |ctx, data| {
            ctx.send(Control::Pong(data.clone()));
            ctx.set_read_deadline(deadline());
            Ok(())
        });
    }
    // read_message and flush are cancel-safe: dropping them in select! loses nothing,
    // and a half-written frame is finished before the close frame.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let mut at_once = quiet.is_some_and(|q| q.at_once);
    let after = quiet.map(|q| q.after);
    // Quiet when a whole period of the timer passed without a message (so after
    // `after` to twice that): a flag per message instead of a clock reading.
    let mut heard = false;
    let nap = tokio::time::sleep(after.unwrap_or(Duration::ZERO));
    tokio::pin!(nap);
    let reason = loop {
        if !idle.is_zero() {
            conn.set_read_deadline(deadline());
        }
        let msg = tokio::select! {
            biased;
            r = conn.read_message() => match r {
                Ok(m) => m,
                Err(Error::Timeout) => break "idle timeout",
                Err(e) => {
                    log_end(peer, &e);
                    return Ended::Gone;
                }
            },
            _ = &mut cancelled => break "server shutting down",
            _ = std::future::ready(()), if at_once => return Ended::Quiet,
            _ = &mut nap, if after.is_some() => {
                if !std::mem::take(&mut heard) {
                    return Ended::Quiet;
                }
                nap.as_mut().reset(tokio::time::Instant::now() + after.unwrap_or_default());
                continue;
            }
        };
        at_once = false;
        heard = true;
        // Echo every message that is already here, then flush them all at once: one
        // write system call for a burst of small messages instead of one each.
        let mut batch = msg.len();
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            if let Err(e) = conn.queue_message(msg) {
                log_end(peer, &e);
                return Ended::Gone;
            }
            if batch >= MAX_BATCH_BYTES || !conn.has_buffered_input() {
                break;
            }
            next = tokio::select! {
                biased;
                // On an error, send what is queued first; the next read reports it again.
                r = conn.read_message() => r.ok(),
                _ = std::future::ready(()) => None,
            };
            batch += next.as_ref().map_or(0, Message::len);
        }
        let flushed = tokio::select! {
            biased;
            r = conn.flush() => r,
            _ = &mut cancelled => break "server shutting down",
        };
        if let Err(e) = flushed {
            log_end(peer, &e);
            return Ended::Gone;
        }
    };
    Ended::Close(reason)
}

/// Echoes queued without a flush stop at this many payload bytes.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Logs the end of a connection when it was not a normal close.
pub(crate) fn log_end(peer: SocketAddr, e: &Error) {
    if yamabiko::is_unexpected_close_error(e, &[CloseCode::NORMAL, CloseCode::GOING_AWAY]) {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
