//! `--broadcast`: loads a broadcast server, one where every message received from
//! any connection goes to every connection (`yamabiko echo --broadcast`, and the
//! peers in `bench/`).
//!
//! `--subscribers` S connections are opened and handshaken; the first one also
//! publishes. Each message carries its sequence number and its send time (ns since
//! the run started). Every connection reads every message and checks it: the
//! numbers must come one after another (a gap counts as lost deliveries, a repeat or
//! a step back as a mismatch) and the filler must be intact. Two modes:
//!
//! * saturating (default): at most `--inflight` W messages in flight, i.e. not yet
//!   received by all S; the next is sent when one has reached everyone;
//! * fixed rate (`--rate R`): R messages per second, in batches as the timer allows.
//!
//! Before the run a few marked sync messages go out until every connection has seen
//! one, so that the server has surely subscribed everyone (some servers register a
//! connection after its handshake, asynchronously). After the window, the publisher
//! stops and the readers wait (at most `--drain-timeout`) for everything published:
//! expected deliveries = published × S, and whatever did not arrive is reported lost.
//!
//! `--stalled N` adds N connections that never read, with a small receive buffer:
//! the run then reports whether the server closed them and how its memory grew.

use super::{clock_ticks, cpu_ticks, rss_bytes, secs, BenchArgs, Report};
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};
use yamabiko::{Conn, Dialer, Message, ReadHalf, WriteHalf};

/// Messages whose fan-out is tracked at once (a slot each, reused after this many).
const RING: usize = 1 << 20;
/// Set in the sequence number of a sync message.
const SYNC: u64 = 1 << 63;
/// At most this many messages are queued before one flush.
const MAX_BATCH: u64 = 256;

const MEASURE: u8 = 1;
const DRAIN: u8 = 2;

/// Message layout: sequence number and send time, then filler from a fixed pattern.
struct Layout {
    base: Vec<u8>,
    text: bool,
}

impl Layout {
    fn new(size: usize, text: bool) -> anyhow::Result<Layout> {
        let header = if text { 32 } else { 16 };
        if size < header {
            bail!("--broadcast needs --size of at least {header} (sequence number and send time)");
        }
        let mut x: u32 = 0x2545_f491;
        let base = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b'a' + (x % 26) as u8
            })
            .collect();
        Ok(Layout { base, text })
    }

    fn header_len(&self) -> usize {
        if self.text {
            32
        } else {
            16
        }
    }

    fn make(&self, seq: u64, sent_ns: u64) -> Message {
        let mut body = self.base.clone();
        if self.text {
            let hex = format!("{seq:016x}{sent_ns:016x}");
            body[..32].copy_from_slice(hex.as_bytes());
            match String::from_utf8(body) {
                Ok(s) => Message::text(s),
                Err(e) => Message::binary(e.into_bytes()),
            }
        } else {
            body[..8].copy_from_slice(&seq.to_le_bytes());
            body[8..16].copy_from_slice(&sent_ns.to_le_bytes());
            Message::binary(body)
        }
    }

    /// The sequence number and send time of a well-formed message.
    fn read(&self, msg: &Message) -> Option<(u64, u64)> {
        if matches!(msg, Message::Text(_)) != self.text {
            return None;
        }
        let b = msg.as_bytes();
        let h = self.header_len();
        if b.len() != self.base.len() || b[h..] != self.base[h..] {
            return None;
        }
        if self.text {
            let s = std::str::from_utf8(&b[..32]).ok()?;
            let seq = u64::from_str_radix(&s[..16], 16).ok()?;
            let sent = u64::from_str_radix(&s[16..], 16).ok()?;
            Some((seq, sent))
        } else {
            let seq = u64::from_le_bytes(b[..8].try_into().ok()?);
            let sent = u64::from_le_bytes(b[8..16].try_into().ok()?);
            Some((seq, sent))
        }
    }
}

/// One message's fan-out: how many subscribers still have to receive it.
#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    remaining: AtomicU32,
}

/// Everything the publisher and the readers share.
struct Run {
    start: std::time::Instant,
    layout: Layout,
    subscribers: u32,
    slots: Box<[Slot]>,
    /// Saturating mode: a permit per message that may be in flight.
    permits: Semaphore,
    /// 0 while syncing and warming up, then `MEASURE`, then `DRAIN`.
    phase: AtomicU8,
    synced: AtomicU64,
    /// Messages the publisher has queued.
    published: AtomicU64,
    /// Deliveries received (all phases) and in the window.
    received: AtomicU64,
    received_window: AtomicU64,
    lost_gaps: AtomicU64,
    mismatches: AtomicU64,
    ring_overruns: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    fanout: Mutex<Histogram<u64>>,
}

impl Run {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq as usize) % RING]
    }
}

pub(super) async fn load(args: &BenchArgs) -> anyhow::Result<Report> {
    let connect_timeout = secs("connect-timeout", args.connect_timeout)?;
    let warmup = secs("warmup", args.warmup)?;
    let duration = secs("duration", args.duration)?;
    let drain = secs("drain-timeout", args.drain_timeout)?;
    let layout = Layout::new(args.size, args.text)?;
    if args.subscribers == 0 {
        bail!("--subscribers must be at least 1");
    }
    if let Some(r) = args.rate {
        if !(r > 0.0 && r.is_finite()) {
            bail!("--rate must be a positive number of messages per second");
        }
    }
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let wanted = (args.subscribers + args.stalled) as u64 + 64;
    if nofile > 0 && nofile < wanted {
        bail!("{wanted} file descriptors needed, the limit is {nofile}");
    }
    let limit = args.size.max(1 << 20) + 1024;
    let dialer = Dialer::new()
        .handshake_timeout(connect_timeout)
        .max_message_size(limit)
        .max_frame_size(limit);

    if args.url.starts_with("wss:") {
        bail!("--broadcast supports ws:// only");
    }
    let addr = tcp_addr(&args.url).await?;
    // Connect everyone, a bounded number at a time, the whole phase bounded in time.
    let connect_deadline = Instant::now() + connect_timeout;
    let gate = Arc::new(Semaphore::new(128));
    let mut dials = JoinSet::new();
    for i in 0..args.subscribers + args.stalled {
        let dialer = dialer.clone();
        let url = args.url.clone();
        let gate = gate.clone();
        let stalled = i >= args.subscribers;
        dials.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            if stalled {
                // A small window, so that the server's socket fills soon.
                socket.set_recv_buffer_size(4096)?;
            }
            let tcp = socket.connect(addr).await?;
            tcp.set_nodelay(true)?;
            let (conn, _) = dialer.dial_with_stream(tcp, &url).await?;
            anyhow::Ok((i, conn))
        });
    }
    let mut conns: Vec<Option<Conn<TcpStream>>> = (0..args.subscribers).map(|_| None).collect();
    let mut stalled = Vec::with_capacity(args.stalled);
    while let Some(joined) = timeout_at(connect_deadline, dials.join_next())
        .await
        .map_err(|_| anyhow::anyhow!("connecting took longer than {connect_timeout:?}"))?
    {
        let (i, conn) = joined?.with_context(|| format!("connecting to {}", args.url))?;
        if i < args.subscribers {
            conns[i] = Some(conn);
        } else {
            stalled.push(conn);
        }
    }
    let mut conns: Vec<_> = conns.into_iter().flatten().collect();

    let histogram = Histogram::<u64>::new_with_bounds(100, 60_000_000_000, 3)?;
    let inflight = args.inflight.max(1);
    let run = Arc::new(Run {
        start: std::time::Instant::now(),
        layout,
        subscribers: args.subscribers as u32,
        slots: (0..RING).map(|_| Slot::default()).collect(),
        permits: Semaphore::new(inflight),
        phase: AtomicU8::new(0),
        synced: AtomicU64::new(0),
        published: AtomicU64::new(0),
        received: AtomicU64::new(0),
        received_window: AtomicU64::new(0),
        lost_gaps: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        ring_overruns: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latency: Mutex::new(histogram.clone()),
        fanout: Mutex::new(histogram),
    });

    // Readers, and the publisher on the first connection's write half.
    let (total_tx, total_rx) = watch::channel(None::<u64>);
    let (stop_tx, stop_rx) = watch::channel(false);
    let first = conns.remove(0);
    let (first_read, mut write) = first.split();
    let mut readers = JoinSet::new();
    readers.spawn(reader(
        Receiver::Half(first_read),
        run.clone(),
        total_rx.clone(),
    ));
    for conn in conns {
        readers.spawn(reader(Receiver::Whole(conn), run.clone(), total_rx.clone()));
    }

    // Sync: marked messages until every reader has seen one.
    let sync_deadline = Instant::now() + connect_timeout;
    let mut k = 0u64;
    while run.synced.load(Ordering::Acquire) < args.subscribers as u64 {
        if Instant::now() >= sync_deadline {
            bail!(
                "only {} of {} connections received the sync messages within {connect_timeout:?}: \
                 is this a broadcast server?",
                run.synced.load(Ordering::Acquire),
                args.subscribers
            );
        }
        let msg = run.layout.make(SYNC | k, run.now_ns());
        k += 1;
        write
            .write_message(msg)
            .await
            .context("sending a sync message")?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let rss_start = args.server_pid.and_then(rss_bytes);
    let started = Instant::now();
    let measure_start = started + warmup;
    let measure_end = measure_start + duration;
    let hard_deadline = measure_end + drain;
    write.set_write_deadline(Some(hard_deadline.into_std()));
    let mode = match args.rate {
        Some(r) => Mode::Rate(r),
        None => Mode::Saturating,
    };
    let publisher = tokio::spawn(publisher(write, run.clone(), mode, stop_rx));

    let progress = if std::io::stderr().is_terminal() && !args.json {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}")?);
        pb
    } else {
        ProgressBar::hidden()
    };
    let tick = Duration::from_millis(250);
    while Instant::now() < measure_start {
        sleep_until((Instant::now() + tick).min(measure_start)).await;
        progress.set_message("warming up");
        progress.tick();
    }
    let cpu_start = args.server_pid.and_then(cpu_ticks);
    let own_start = cpu_ticks(std::process::id());
    run.phase.store(MEASURE, Ordering::SeqCst);
    let window_start = Instant::now();
    let published_at_start = run_published(&run);
    let mut last = (Instant::now(), 0u64);
    while Instant::now() < measure_end {
        sleep_until((Instant::now() + tick).min(measure_end)).await;
        let now = Instant::now();
        let got = run.received_window.load(Ordering::Relaxed);
        let rate = (got - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
        last = (now, got);
        progress.set_message(format!("{got} deliveries, {rate:.0}/s"));
        progress.tick();
    }
    run.phase.store(DRAIN, Ordering::SeqCst);
    let window = window_start.elapsed();
    let cpu_end = args.server_pid.and_then(cpu_ticks);
    let own_end = cpu_ticks(std::process::id());
    let published_in_window = run_published(&run).saturating_sub(published_at_start);
    progress.finish_and_clear();
    let _ = stop_tx.send(true);

    // Drain: the publisher stops; the readers wait for everything it published.
    let published = match timeout_at(hard_deadline, publisher).await {
        Ok(Ok(Ok(n))) => n,
        Ok(Ok(Err(n))) => {
            run.errors.fetch_add(1, Ordering::Relaxed);
            n
        }
        Ok(Err(_)) | Err(_) => {
            run.errors.fetch_add(1, Ordering::Relaxed);
            run_published(&run)
        }
    };
    let _ = total_tx.send(Some(published));
    while let Some(joined) = timeout_at(hard_deadline + Duration::from_secs(1), readers.join_next())
        .await
        .unwrap_or(None)
    {
        match joined {
            Ok(()) => {}
            Err(_) => {
                run.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if !readers.is_empty() {
        // Readers still waiting at the deadline: what they did not get is lost.
        run.errors
            .fetch_add(readers.len() as u64, Ordering::Relaxed);
        readers.abort_all();
    }
    let rss_end = args.server_pid.and_then(rss_bytes);
    let stalled_closed = check_stalled(stalled).await;

    let expected = published * args.subscribers as u64;
    let received = run.received.load(Ordering::Relaxed);
    let lost = expected.saturating_sub(received);
    let mismatches = run.mismatches.load(Ordering::Relaxed);
    let mut errors = run.errors.load(Ordering::Relaxed) + mismatches;
    if lost > 0 {
        errors += 1;
    }
    let deliveries = run.received_window.load(Ordering::Relaxed);
    let secs = window.as_secs_f64().max(1e-9);
    let rate = deliveries as f64 / secs;
    let latency = lock(&run.latency).clone();
    let fanout = lock(&run.fanout).clone();
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let server_cpu_us = match (cpu_start, cpu_end) {
        (Some(a), Some(b)) if deliveries > 0 => {
            Some((b - a) as f64 * 1e6 / clock_ticks() / deliveries as f64)
        }
        _ => None,
    };
    let busy = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / clock_ticks() / secs),
        _ => None,
    };
    let server_busy = busy(cpu_start, cpu_end);
    let generator_busy = busy(own_start, own_end);
    let rss_growth = match (rss_start, rss_end) {
        (Some(a), Some(b)) => Some(b as i64 - a as i64),
        _ => None,
    };
    let mode_name = match args.rate {
        Some(r) => format!("{r} msgs/s"),
        None => format!("saturating, {inflight} in flight"),
    };
    let json = serde_json::json!({
        "url": args.url,
        "mode": "broadcast",
        "subscribers": args.subscribers,
        "stalled": args.stalled,
        "size": args.size,
        "text": args.text,
        "rate": args.rate,
        "inflight": if args.rate.is_some() { None } else { Some(inflight) },
        "duration_s": secs,
        "published": published,
        "published_in_window": published_in_window,
        "publish_rate": published_in_window as f64 / secs,
        "deliveries_expected": expected,
        "deliveries_received": received,
        "lost": lost,
        "deliveries": deliveries,
        "deliveries_per_s": rate,
        "msgs_per_s": rate,
        "latency_us": {
            "p50": us(&latency, 0.5), "p99": us(&latency, 0.99), "max": latency.max() as f64 / 1000.0
        },
        "fanout_us": {
            "p50": us(&fanout, 0.5), "p99": us(&fanout, 0.99), "max": fanout.max() as f64 / 1000.0
        },
        "errors": errors,
        "mismatches": mismatches,
        "ring_overruns": run.ring_overruns.load(Ordering::Relaxed),
        "server_cpu_us_per_delivery": server_cpu_us,
        "server_cpu_us_per_msg": server_cpu_us,
        "server_busy": server_busy,
        "generator_busy": generator_busy,
        "server_rss_growth": rss_growth,
        "stalled_closed_by_server": stalled_closed,
    });
    let mut table = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        table,
        "broadcast: {} subscribers ({mode_name}), {} B {} messages, {:.1} s window",
        args.subscribers,
        args.size,
        if args.text { "text" } else { "binary" },
        secs
    );
    let _ = writeln!(
        table,
        "  published        {published:>12} ({published_in_window} in the window)"
    );
    let _ = writeln!(
        table,
        "  deliveries       {received:>12} of {expected} expected, {lost} lost"
    );
    let _ = writeln!(table, "  deliveries/s     {rate:>12.0}");
    let _ = writeln!(
        table,
        "  latency          p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        us(&latency, 0.5),
        us(&latency, 0.99),
        latency.max() as f64 / 1000.0
    );
    let _ = writeln!(
        table,
        "  fan-out done     p50 {:.1} µs, p99 {:.1} µs (publish → last subscriber)",
        us(&fanout, 0.5),
        us(&fanout, 0.99)
    );
    if let Some(g) = generator_busy {
        let _ = writeln!(table, "  generator        {:>9.0} % of a core", g * 100.0);
    }
    if let Some(c) = server_cpu_us {
        let _ = writeln!(table, "  server CPU       {c:>9.3} µs/delivery");
    }
    if let Some(b) = server_busy {
        let _ = writeln!(table, "  server           {:>9.0} % of a core", b * 100.0);
    }
    if args.stalled > 0 {
        let _ = writeln!(
            table,
            "  stalled          {} of {} closed by the server; server RSS grew {}",
            stalled_closed,
            args.stalled,
            rss_growth.map_or("?".to_string(), |b| format!("{b} bytes"))
        );
    }
    let _ = write!(
        table,
        "  errors           {errors:>12} (mismatched {mismatches})"
    );
    Ok(Report {
        json,
        table,
        errors,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Messages published so far.
fn run_published(run: &Run) -> u64 {
    run.published.load(Ordering::Relaxed)
}

/// The socket address of a `ws://` URL.
async fn tcp_addr(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let uri: http::Uri = url.parse()?;
    let host = uri.host().context("no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .context("the host has no address")?;
    Ok(addr)
}

enum Mode {
    Saturating,
    Rate(f64),
}

/// Publishes until told to stop; returns how many messages it sent (`Err` with the
/// count if writing failed).
async fn publisher<S>(
    mut write: WriteHalf<S>,
    run: Arc<Run>,
    mode: Mode,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seq = 0u64;
    let begin = Instant::now();
    loop {
        let batch = match mode {
            Mode::Saturating => {
                let permit = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    p = run.permits.acquire() => p,
                };
                let Ok(permit) = permit else { break };
                permit.forget();
                let mut batch = 1;
                while batch < MAX_BATCH {
                    match run.permits.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            batch += 1;
                        }
                        Err(_) => break,
                    }
                }
                batch
            }
            Mode::Rate(rate) => {
                if *stop.borrow() {
                    break;
                }
                let due = (begin.elapsed().as_secs_f64() * rate) as u64 + 1;
                if due <= seq {
                    let next = begin + Duration::from_secs_f64(seq as f64 / rate);
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => break,
                        _ = sleep_until(next) => {}
                    }
                    continue;
                }
                (due - seq).min(MAX_BATCH)
            }
        };
        // One flush sends the batch: one timestamp serves all of it.
        let now = run.now_ns();
        for _ in 0..batch {
            let slot = run.slot(seq);
            if slot.remaining.load(Ordering::Relaxed) != 0 {
                // A message RING ago has still not reached everyone.
                run.ring_overruns.fetch_add(1, Ordering::Relaxed);
            }
            slot.seq.store(seq, Ordering::Relaxed);
            slot.remaining.store(run.subscribers, Ordering::Release);
            if write.queue_message(run.layout.make(seq, now)).is_err() {
                run.published.store(seq, Ordering::Relaxed);
                return Err(seq);
            }
            seq += 1;
        }
        run.published.store(seq, Ordering::Relaxed);
        if write.flush().await.is_err() {
            return Err(seq);
        }
    }
    Ok(seq)
}

/// A subscriber's connection, whole or the read half of the publisher's.
enum Receiver<S> {
    Whole(Conn<S>),
    Half(ReadHalf<S>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Receiver<S> {
    async fn read_message(&mut self) -> yamabiko::Result<Message> {
        match self {
            Receiver::Whole(c) => c.read_message().await,
            Receiver::Half(r) => r.read_message().await,
        }
    }
}

/// Receives and checks every message until it has all `total` the publisher sent
/// (told once it stopped), or its connection ends (what it missed is counted lost
/// from the totals).
async fn reader<S>(mut conn: Receiver<S>, run: Arc<Run>, mut total: watch::Receiver<Option<u64>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = 0u64;
    let mut synced = false;
    let mut want: Option<u64> = None;
    loop {
        if want.is_some_and(|t| next >= t) {
            return;
        }
        let msg = tokio::select! {
            biased;
            m = conn.read_message() => m,
            changed = total.changed(), if want.is_none() => {
                match changed {
                    Ok(()) => want = *total.borrow(),
                    Err(_) => return,
                }
                continue;
            }
        };
        let Ok(msg) = msg else {
            run.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = run.now_ns();
        let Some((seq, sent)) = run.layout.read(&msg) else {
            run.mismatches.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if seq & SYNC != 0 {
            if !synced {
                synced = true;
                run.synced.fetch_add(1, Ordering::AcqRel);
            }
            continue;
        }
        if seq < next {
            // A repeat, or out of order.
            run.mismatches.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if seq > next {
            // Skipped messages: lost for this subscriber.
            run.lost_gaps.fetch_add(seq - next, Ordering::Relaxed);
            for missed in next..seq {
                finish(&run, missed, None);
            }
        }
        next = seq + 1;
        run.received.fetch_add(1, Ordering::Relaxed);
        let measuring = run.phase.load(Ordering::Relaxed) == MEASURE;
        if measuring {
            run.received_window.fetch_add(1, Ordering::Relaxed);
            let _ = lock(&run.latency).record(now.saturating_sub(sent).max(100));
        }
        finish(&run, seq, Some((now.saturating_sub(sent), measuring)));
    }
}

/// Counts one subscriber done with message `seq`; the last one records the fan-out
/// time (`Some` when it received it) and frees an in-flight permit.
fn finish(run: &Run, seq: u64, took: Option<(u64, bool)>) {
    let slot = run.slot(seq);
    if slot.seq.load(Ordering::Acquire) != seq {
        run.ring_overruns.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if slot.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        if let Some((ns, true)) = took {
            let _ = lock(&run.fanout).record(ns.max(100));
        }
        run.permits.add_permits(1);
    }
}

/// Whether the server closed each stalled connection: reads what it sent them until
/// the end of the stream (closed) or until nothing more comes (still open).
async fn check_stalled(stalled: Vec<Conn<TcpStream>>) -> usize {
    let mut closed = 0;
    for conn in stalled {
        let Some(tcp) = conn.into_inner() else {
            continue;
        };
        let mut buf = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tokio::time::timeout(Duration::from_millis(200), tcp.readable()).await {
                    Err(_) => return false, // nothing more: still open
                    Ok(Err(_)) => return true,
                    Ok(Ok(())) => match tcp.try_read(&mut buf) {
                        Ok(0) => return true,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return true,
                    },
                }
            }
        })
        .await
        .unwrap_or(false);
        if ended {
            closed += 1;
        }
    }
    closed
}
