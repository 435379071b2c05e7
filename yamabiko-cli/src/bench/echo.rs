//! The echo load: `--conns` connections, `--inflight` messages in flight on each,
//! every echo checked and timed.

use super::{clock_ticks, cpu_ticks, secs, BenchArgs, Report};
use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout_at, Instant};
use yamabiko::{Dialer, Message, ReadHalf, WriteHalf};

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

pub(super) async fn load(args: &BenchArgs) -> anyhow::Result<Report> {
    let connect_timeout = secs("connect-timeout", args.connect_timeout)?;
    let warmup = secs("warmup", args.warmup)?;
    let duration = secs("duration", args.duration)?;
    let drain = secs("drain-timeout", args.drain_timeout)?;
    let limit = args.size.max(1 << 20) + 1024;
    // A fresh dialer has its own (empty) set of HTTP/2 connections; its clones
    // share them.
    let new_dialer = || {
        let dialer = Dialer::new()
            .handshake_timeout(connect_timeout)
            .max_message_size(limit)
            .max_frame_size(limit);
        if args.http2 {
            dialer
                .http_version(yamabiko::HttpVersion::Http2)
                .share_http2_connections(args.streams_per_conn > 1)
        } else {
            dialer
        }
    };
    let dialer = new_dialer();
    let pattern = Arc::new(Pattern::new(args.size, args.text));
    let counters = Arc::new(Counters::default());

    // Connect, a bounded number at a time, the whole phase bounded in time.
    let connect_deadline = Instant::now() + connect_timeout;
    let gate = Arc::new(Semaphore::new(64));
    let mut dials = JoinSet::new();
    // Over HTTP/2 each group of --streams-per-conn WebSockets gets a dialer of its
    // own (clones share their connections), dialled one after the other so the
    // group shares one connection.
    let group = if args.http2 { args.streams_per_conn } else { 1 };
    let mut left = args.conns;
    while left > 0 {
        let n = left.min(group);
        left -= n;
        let dialer = if args.http2 {
            new_dialer()
        } else {
            dialer.clone()
        };
        let url = args.url.clone();
        let gate = gate.clone();
        dials.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut opened = Vec::with_capacity(n);
            for _ in 0..n {
                opened.push(dialer.dial(&url).await?);
            }
            Ok::<_, yamabiko::Error>(opened)
        });
    }
    let mut conns = Vec::with_capacity(args.conns);
    while let Some(joined) = timeout_at(connect_deadline, dials.join_next())
        .await
        .map_err(|_| anyhow::anyhow!("connecting took longer than {connect_timeout:?}"))?
    {
        let opened = joined?.with_context(|| format!("connecting to {}", args.url))?;
        conns.extend(opened.into_iter().map(|(conn, _)| conn));
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
        "http2": args.http2,
        "streams_per_conn": args.streams_per_conn,
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
        "{} conns × {} in flight, {} B {} messages, {:.1} s window{}",
        args.conns,
        args.inflight,
        args.size,
        if args.text { "text" } else { "binary" },
        secs,
        if args.http2 {
            format!(", over HTTP/2 ({} per connection)", args.streams_per_conn)
        } else {
            String::new()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
