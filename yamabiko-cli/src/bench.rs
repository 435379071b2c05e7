//! `yamabiko bench URL`: a load generator for any WebSocket echo server.
//!
//! Opens `--conns` connections, keeps `--inflight` messages in flight on each (a
//! writer task and a reader task per connection), checks every echo byte for byte
//! and records round-trip latency in an HDR histogram. `--idle N` instead opens N
//! idle connections and holds them, to measure a server's memory per connection.
//!
//! Every phase is bounded in time: connecting (`--connect-timeout`), warm-up,
//! measuring (`--duration`) and draining the last echoes (`--drain-timeout`).
//!
//! `--board` loads the bulletin board (`yamabiko serve`) instead: see [`board`].

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};
use yamabiko::{Dialer, Message, ReadHalf, WriteHalf};

mod board;

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
    /// Load a `yamabiko serve` board (URL: ws://HOST/ws) with viewers and posters.
    #[arg(long)]
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
    if args.conns == 0 || args.inflight == 0 {
        bail!("--conns and --inflight must be at least 1");
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
        Some(n) => runtime.block_on(idle(&args, n))?,
        None => runtime.block_on(load(&args))?,
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

/// Payloads: a fixed pseudo-random ASCII body whose first bytes carry the message's
/// sequence number, so each message differs and the check is one `memcmp`.
struct Pattern {
    base: Vec<u8>,
    text: bool,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Pattern {
    fn new(size: usize, text: bool) -> Pattern {
        let mut x: u32 = 0x9e37_79b9;
        let base = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b'a' + (x % 26) as u8
            })
            .collect();
        Pattern { base, text }
    }

    fn header(&self, seq: u64) -> ([u8; 16], usize) {
        let mut h = [0u8; 16];
        if self.text {
            let n = self.base.len().min(16);
            for (i, b) in h.iter_mut().enumerate().take(n) {
                *b = HEX[((seq >> (4 * i)) & 15) as usize];
            }
            (h, n)
        } else {
            let n = self.base.len().min(8);
            h[..8].copy_from_slice(&seq.to_le_bytes());
            (h, n)
        }
    }

    fn make(&self, seq: u64) -> Message {
        let mut body = self.base.clone();
        let (h, n) = self.header(seq);
        body[..n].copy_from_slice(&h[..n]);
        if self.text {
            // The body is ASCII by construction.
            match String::from_utf8(body) {
                Ok(s) => Message::text(s),
                Err(e) => Message::binary(e.into_bytes()),
            }
        } else {
            Message::binary(body)
        }
    }

    fn check(&self, seq: u64, msg: &Message) -> bool {
        if matches!(msg, Message::Text(_)) != self.text {
            return false;
        }
        let got = msg.as_bytes();
        let (h, n) = self.header(seq);
        got.len() == self.base.len() && got[..n] == h[..n] && got[n..] == self.base[n..]
    }
}

const MEASURE: u8 = 1;
const DRAIN: u8 = 2;

#[derive(Default)]
struct Counters {
    /// 0 while warming up, then `MEASURE`, then `DRAIN`.
    phase: AtomicU8,
    msgs: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
    lost: AtomicU64,
}

/// Everything a connection's two tasks share.
struct ConnState {
    permits: Semaphore,
    sent_at: Mutex<VecDeque<Instant>>,
}

async fn load(args: &BenchArgs) -> anyhow::Result<Report> {
    let connect_timeout = secs("connect-timeout", args.connect_timeout)?;
    let warmup = secs("warmup", args.warmup)?;
    let duration = secs("duration", args.duration)?;
    let drain = secs("drain-timeout", args.drain_timeout)?;
    let limit = args.size.max(1 << 20) + 1024;
    let dialer = Dialer::new()
        .handshake_timeout(connect_timeout)
        .max_message_size(limit)
        .max_frame_size(limit);
    let pattern = Arc::new(Pattern::new(args.size, args.text));
    let counters = Arc::new(Counters::default());

    // Connect, a bounded number at a time, the whole phase bounded in time.
    let connect_deadline = Instant::now() + connect_timeout;
    let gate = Arc::new(Semaphore::new(64));
    let mut dials = JoinSet::new();
    for _ in 0..args.conns {
        let dialer = dialer.clone();
        let url = args.url.clone();
        let gate = gate.clone();
        dials.spawn(async move {
            let _permit = gate.acquire_owned().await;
            dialer.dial(&url).await
        });
    }
    let mut conns = Vec::with_capacity(args.conns);
    while let Some(joined) = timeout_at(connect_deadline, dials.join_next())
        .await
        .map_err(|_| anyhow::anyhow!("connecting took longer than {connect_timeout:?}"))?
    {
        let (conn, _) = joined?.with_context(|| format!("connecting to {}", args.url))?;
        conns.push(conn);
    }

    let empty = Histogram::<u64>::new_with_bounds(100, 60_000_000_000, 3)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let measure_start = start + warmup;
    let measure_end = measure_start + duration;
    let hard_deadline = measure_end + drain;
    let mut tasks = JoinSet::new();
    let mut readers = JoinSet::new();
    for conn in conns {
        let (read, mut write) = conn.split();
        write.set_write_deadline(Some(hard_deadline.into_std()));
        let state = Arc::new(ConnState {
            permits: Semaphore::new(args.inflight),
            sent_at: Mutex::new(VecDeque::with_capacity(args.inflight)),
        });
        let (done_tx, done_rx) = watch::channel(None);
        tasks.spawn(writer(
            write,
            state.clone(),
            pattern.clone(),
            stop_rx.clone(),
            done_tx,
            counters.clone(),
        ));
        readers.spawn(reader(
            read,
            state,
            pattern.clone(),
            done_rx,
            empty.clone(),
            hard_deadline,
            counters.clone(),
        ));
    }

    let progress = if std::io::stderr().is_terminal() && !args.json {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
        pb
    } else {
        ProgressBar::hidden()
    };
    // Warm-up, then the window, with a progress line.
    let mut last = (Instant::now(), 0u64);
    let tick = Duration::from_millis(250);
    loop {
        let now = Instant::now();
        if now >= measure_start {
            break;
        }
        sleep_until((now + tick).min(measure_start)).await;
        progress.set_message("warming up");
        progress.tick();
    }
    let cpu_start = args.server_pid.and_then(cpu_ticks);
    let own_start = cpu_ticks(std::process::id());
    counters.phase.store(MEASURE, Ordering::SeqCst);
    let window_start = Instant::now();
    while Instant::now() < measure_end {
        sleep_until((Instant::now() + tick).min(measure_end)).await;
        let now = Instant::now();
        let msgs = counters.msgs.load(Ordering::Relaxed);
        let rate = (msgs - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
        last = (now, msgs);
        progress.set_message(format!(
            "{msgs} msgs, {rate:.0} msgs/s, {} errors",
            counters.errors.load(Ordering::Relaxed)
        ));
        progress.tick();
    }
    counters.phase.store(DRAIN, Ordering::SeqCst);
    let window = window_start.elapsed();
    let cpu_end = args.server_pid.and_then(cpu_ticks);
    let own_end = cpu_ticks(std::process::id());
    progress.finish_and_clear();
    let _ = stop_tx.send(true);

    // Drain: writers stop, readers wait for what is still in flight.
    let mut sent = 0u64;
    while let Some(joined) = timeout_at(hard_deadline + Duration::from_secs(1), tasks.join_next())
        .await
        .unwrap_or(None)
    {
        match joined {
            Ok(n) => sent += n,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tasks.abort_all();
    let mut hist = empty;
    while let Some(joined) = timeout_at(hard_deadline + Duration::from_secs(2), readers.join_next())
        .await
        .unwrap_or(None)
    {
        match joined {
            Ok(h) => hist.add(h)?,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if !readers.is_empty() {
        counters
            .errors
            .fetch_add(readers.len() as u64, Ordering::Relaxed);
        readers.abort_all();
    }

    let msgs = counters.msgs.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let secs = window.as_secs_f64().max(1e-9);
    let rate = msgs as f64 / secs;
    let mbps = rate * args.size as f64 / 1e6;
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let server_cpu_us = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) if msgs > 0 => Some((b - a) as f64 * 1e6 / clock_ticks() / msgs as f64),
        _ => None,
    };
    // How busy each side was: a generator near 1.0 (one core) limits the rate, and
    // then msgs/s says more about the generator than about the server.
    let busy = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clock_ticks() / secs),
        _ => None,
    };
    let server_busy = busy(cpu_start, cpu_end);
    let generator_busy = busy(own_start, own_end);
    let json = serde_json::json!({
        "url": args.url,
        "conns": args.conns,
        "size": args.size,
        "inflight": args.inflight,
        "text": args.text,
        "duration_s": secs,
        "messages": msgs,
        "messages_sent_total": sent,
        "msgs_per_s": rate,
        "mb_per_s": mbps,
        "latency_us": {
            "p50": us(0.5), "p99": us(0.99), "p99_9": us(0.999), "max": hist.max() as f64 / 1000.0
        },
        "errors": errors,
        "mismatches": counters.mismatches.load(Ordering::Relaxed),
        "lost": counters.lost.load(Ordering::Relaxed),
        "server_cpu_us_per_msg": server_cpu_us,
        "server_busy": server_busy,
        "generator_busy": generator_busy,
    });
    let mut table = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        table,
        "{} conns × {} in flight, {} B {} messages, {:.1} s window",
        args.conns,
        args.inflight,
        args.size,
        if args.text { "text" } else { "binary" },
        secs
    );
    let _ = writeln!(table, "  messages     {msgs:>14}");
    let _ = writeln!(table, "  msgs/s       {rate:>14.0}");
    let _ = writeln!(table, "  MB/s         {mbps:>14.2}");
    let _ = writeln!(table, "  latency p50  {:>11.1} µs", us(0.5));
    let _ = writeln!(table, "  latency p99  {:>11.1} µs", us(0.99));
    let _ = writeln!(table, "  latency p99.9{:>11.1} µs", us(0.999));
    if let Some(g) = generator_busy {
        let _ = writeln!(table, "  generator    {:>11.0} % of a core", g * 100.0);
    }
    if let Some(c) = server_cpu_us {
        let _ = writeln!(table, "  server CPU   {c:>11.2} µs/msg");
    }
    if let Some(b) = server_busy {
        let _ = writeln!(table, "  server       {:>11.0} % of a core", b * 100.0);
    }
    let _ = write!(
        table,
        "  errors       {errors:>14} (mismatched {}, lost {})",
        counters.mismatches.load(Ordering::Relaxed),
        counters.lost.load(Ordering::Relaxed)
    );
    Ok(Report {
        json,
        table,
        errors,
    })
}

/// Sends while the run lasts, up to the in-flight limit, batching what is ready into
/// one flush. Returns how many messages it sent.
async fn writer<S>(
    mut write: WriteHalf<S>,
    state: Arc<ConnState>,
    pattern: Arc<Pattern>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<Option<u64>>,
    counters: Arc<Counters>,
) -> u64
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seq = 0u64;
    loop {
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            p = state.permits.acquire() => p,
        };
        let Ok(permit) = permit else { break };
        permit.forget();
        let mut batch = 1;
        while let Ok(p) = state.permits.try_acquire() {
            p.forget();
            batch += 1;
        }
        let mut failed = false;
        // One flush sends the whole batch, so one timestamp serves all of it.
        let now = Instant::now();
        for _ in 0..batch {
            let msg = pattern.make(seq);
            if let Ok(mut q) = state.sent_at.lock() {
                q.push_back(now);
            }
            if write.queue_message(msg).is_err() {
                failed = true;
                break;
            }
            seq += 1;
        }
        if failed || write.flush().await.is_err() {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    let _ = done.send(Some(seq));
    seq
}

/// Receives and checks echoes until the writer is done and all its messages came
/// back, or the hard deadline passes. Returns its latency histogram.
async fn reader<S>(
    mut read: ReadHalf<S>,
    state: Arc<ConnState>,
    pattern: Arc<Pattern>,
    mut done: watch::Receiver<Option<u64>>,
    mut hist: Histogram<u64>,
    hard_deadline: Instant,
    counters: Arc<Counters>,
) -> Histogram<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut received = 0u64;
    let mut total: Option<u64> = None;
    let hard_stop = sleep_until(hard_deadline);
    tokio::pin!(hard_stop);
    loop {
        if total.is_some_and(|t| received >= t) {
            break;
        }
        let msg = tokio::select! {
            biased;
            m = read.read_message() => m,
            changed = done.changed(), if total.is_none() => {
                match changed {
                    Ok(()) => total = *done.borrow(),
                    // The writer is gone without saying: count what it sent as lost.
                    Err(_) => total = Some(received),
                }
                continue;
            }
            _ = &mut hard_stop => {
                let sent = state.sent_at.lock().map(|q| q.len() as u64).unwrap_or(0);
                counters.lost.fetch_add(sent.max(1), Ordering::Relaxed);
                counters.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        let msg = match msg {
            Ok(m) => m,
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
        };
        let sent_at = state.sent_at.lock().ok().and_then(|mut q| q.pop_front());
        let Some(sent_at) = sent_at else {
            // An echo of nothing we sent.
            counters.mismatches.fetch_add(1, Ordering::Relaxed);
            counters.errors.fetch_add(1, Ordering::Relaxed);
            break;
        };
        if !pattern.check(received, &msg) {
            counters.mismatches.fetch_add(1, Ordering::Relaxed);
            counters.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        received += 1;
        state.permits.add_permits(1);
        if counters.phase.load(Ordering::Relaxed) == MEASURE {
            let rtt = sent_at.elapsed().as_nanos().min(60_000_000_000) as u64;
            let _ = hist.record(rtt.max(100));
            counters.msgs.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Unblock a writer waiting for permits: it stops on the stop signal anyway.
    state.permits.close();
    hist
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

/// `--idle N`: opens N connections, holds them, reports how many opened.
async fn idle(args: &BenchArgs, n: usize) -> anyhow::Result<Report> {
    let connect_timeout = secs("connect-timeout", args.connect_timeout)?;
    let hold = secs("hold", args.hold)?;
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let uri: http::Uri = args.url.parse()?;
    let host = uri.host().unwrap_or("127.0.0.1");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    if uri.scheme_str() == Some("wss") {
        bail!("--idle supports ws:// only");
    }
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .context("the host has no address")?;
    // Past one source address's ephemeral ports, spread over 127.0.0.2, .3, …
    let spread = n > 20_000 && matches!(addr.ip(), IpAddr::V4(v4) if v4.is_loopback());
    let dialer = Dialer::new().handshake_timeout(connect_timeout);
    let rss_before = args.server_pid.and_then(rss_bytes);
    let started = Instant::now();
    let deadline = started + connect_timeout;
    let gate = Arc::new(Semaphore::new(256));
    let mut dials = JoinSet::new();
    for i in 0..n {
        let dialer = dialer.clone();
        let url = args.url.clone();
        let gate = gate.clone();
        dials.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if spread {
                let third = (2 + i / 20_000 / 254) as u8;
                let fourth = (2 + (i / 20_000) % 254) as u8;
                socket.bind(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, third, fourth)),
                    0,
                ))?;
            }
            let tcp: TcpStream = socket.connect(addr).await?;
            let (conn, _) = dialer.dial_with_stream(tcp, &url).await?;
            anyhow::Ok(conn)
        });
    }
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0u64;
    let mut first_error = None;
    loop {
        match timeout_at(deadline, dials.join_next()).await {
            Ok(Some(Ok(Ok(conn)))) => conns.push(conn),
            Ok(Some(Ok(Err(e)))) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Ok(Some(Err(_))) => failed += 1,
            Ok(None) => break,
            Err(_) => {
                failed += dials.len() as u64;
                first_error.get_or_insert_with(|| "timed out".to_string());
                dials.abort_all();
                break;
            }
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    // Let the server settle before reading its memory.
    tokio::time::sleep(Duration::from_secs(1).min(hold)).await;
    let rss_after = args.server_pid.and_then(rss_bytes);
    tokio::time::sleep(hold.saturating_sub(Duration::from_secs(1))).await;
    let opened = conns.len();
    drop(conns);
    let per_conn = match (rss_before, rss_after) {
        (Some(a), Some(b)) if opened > 0 => Some((b as f64 - a as f64) / opened as f64),
        _ => None,
    };
    let json = serde_json::json!({
        "url": args.url,
        "idle_requested": n,
        "idle_opened": opened,
        "failed": failed,
        "first_error": first_error,
        "open_seconds": open_secs,
        "nofile_limit": nofile,
        "server_rss_before": rss_before,
        "server_rss_after": rss_after,
        "server_bytes_per_conn": per_conn,
        "errors": failed,
    });
    let mut table = format!(
        "idle: {opened} of {n} connections opened in {open_secs:.1} s, held {:.0} s ({failed} failed)",
        hold.as_secs_f64()
    );
    if let Some(e) = &first_error {
        table.push_str(&format!("\n  first error: {e}"));
    }
    if let Some(b) = per_conn {
        table.push_str(&format!(
            "\n  server RSS growth: {b:.0} bytes per connection"
        ));
    }
    Ok(Report {
        json,
        table,
        errors: failed,
    })
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

    #[test]
    fn patterns_check_exactly() {
        for text in [false, true] {
            for size in [1, 7, 8, 20, 4096] {
                let p = Pattern::new(size, text);
                let m = p.make(12345);
                assert!(p.check(12345, &m));
                assert!(!p.check(12346, &m));
                let mut bytes = m.as_bytes().to_vec();
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                assert!(!p.check(12345, &Message::binary(bytes)));
            }
        }
    }
}
