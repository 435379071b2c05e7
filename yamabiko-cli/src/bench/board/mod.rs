//! `yamabiko bench --board URL`: a load generator for the bulletin board
//! (`yamabiko serve`), speaking its protocol.
//!
//! V **viewers** ([`viewer`]) spread over T threads of the board open their thread
//! and receive its posts; P **posters** ([`poster`]) post at a total rate, or as fast
//! as the server answers with a bound on posts in flight, each within the server's
//! per-connection post limit (the load is spread over enough connections). Both
//! reconnect the way the page does. Every received post is checked (each viewer must
//! get every acknowledged post of its thread once, in order); at the end the run's
//! posts are read back and compared with the acks ([`audit`]).
//!
//! The run: create the threads → connect the viewers (server memory measured before
//! and after) → connect the posters → warm up → the measuring window (server and
//! generator CPU measured; optionally a reconnect storm: every viewer dropped at
//! once) → stop posting and wait for the last answers and deliveries → audit →
//! report (a table, or JSON with `--json`). It exits non-zero when anything was lost,
//! duplicated, out of order or unanswered (with `--faults`, refusals and dropped
//! connections are expected and only reported).

mod audit;
mod ledger;
mod link;
mod poster;
mod viewer;
mod wire;

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use ledger::Ledger;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use yamabiko::{Dialer, Message};

/// Options of `yamabiko bench --board`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Board load (with --board; URL is the board's ws://HOST/ws)")]
pub struct BoardOpts {
    /// Viewers: connections that open a thread and receive its posts.
    #[arg(long, default_value_t = 100)]
    viewers: usize,
    /// Threads created for the run; viewer i watches thread i mod T, posts go round-robin.
    #[arg(long, default_value_t = 1, value_name = "T")]
    board_threads: usize,
    /// Poster connections (default: enough for the rate within the post limit,
    /// 3 per post/s; 500 with --saturate).
    #[arg(long, value_name = "P")]
    posters: Option<usize>,
    /// Total posts per second (0: no posts, e.g. to measure idle viewers' memory).
    #[arg(long, default_value_t = 10.0, value_name = "R")]
    post_rate: f64,
    /// Post as fast as the server answers, at most --posts-in-flight at a time.
    #[arg(long)]
    saturate: bool,
    /// With --saturate: posts in flight in all.
    #[arg(long, default_value_t = 64, value_name = "N")]
    posts_in_flight: usize,
    /// Another instance of the same board (repeat): viewers and posters are spread
    /// over all, and move to the next one when they reconnect.
    #[arg(long, value_name = "URL")]
    also_url: Vec<String>,
    /// Another server process (repeat) whose CPU and memory count with --server-pid's.
    #[arg(long, value_name = "PID")]
    also_server_pid: Vec<u32>,
    /// Characters per post body.
    #[arg(long, default_value_t = 100, value_name = "CHARS")]
    body_size: usize,
    /// A post with no answer (ack or error) after this many seconds is hung.
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    post_timeout: f64,
    /// Drop every viewer's connection at once this many seconds into the window; they
    /// reconnect as the page does (reports the time until all are back and live).
    #[arg(long, value_name = "SECS")]
    storm_at: Option<f64>,
    /// Faults are being injected: refused posts and dropped connections are reported,
    /// not failures (losses, duplicates, disorder and hung posts still are).
    #[arg(long)]
    faults: bool,
    /// Skip reading every post back at the end.
    #[arg(long)]
    no_audit: bool,
    /// Write this file when the measuring window opens (fault scripts time their
    /// faults from it).
    #[arg(long, value_name = "PATH")]
    ready_file: Option<std::path::PathBuf>,
}

/// The options `bench` has for every kind of target.
pub struct Common {
    /// The board's WebSocket URL.
    pub url: String,
    /// Measuring window, seconds.
    pub duration: f64,
    /// Warm-up, seconds.
    pub warmup: f64,
    /// JSON output.
    pub json: bool,
    /// Bound on connecting everybody, seconds.
    pub connect_timeout: f64,
    /// Bound on the last answers and deliveries after the window, seconds.
    pub drain_timeout: f64,
    /// Allow non-loopback targets.
    pub allow_remote: bool,
    /// Runtime threads.
    pub threads: usize,
    /// The server's PID (CPU and memory).
    pub server_pid: Option<u32>,
}

fn secs(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{name} must be ≥ 0 seconds"))
}

/// Runs the board load and prints its report; fails if the run found problems.
pub fn run(common: Common, opts: &BoardOpts) -> anyhow::Result<()> {
    let mut urls = vec![common.url.clone()];
    urls.extend(opts.also_url.iter().cloned());
    for u in &urls {
        super::check_target(u, common.allow_remote)?;
    }
    if opts.board_threads == 0 {
        bail!("--board-threads must be at least 1");
    }
    if !(1..=2000).contains(&opts.body_size) {
        bail!("--body-size must be 1..=2000 characters (the board's limit)");
    }
    if !opts.post_rate.is_finite() || opts.post_rate < 0.0 {
        bail!("--post-rate must be ≥ 0");
    }
    if opts.saturate && opts.posts_in_flight == 0 {
        bail!("--posts-in-flight must be at least 1");
    }
    let runtime = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads)
            .enable_all()
            .build()?
    };
    let report = runtime.block_on(load(&common, opts, urls))?;
    // Tasks still winding down (bounded waits elapsed) are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    if common.json {
        println!("{}", serde_json::to_string(&report.json)?);
    } else {
        println!("{}", report.table);
    }
    if !report.problems.is_empty() {
        bail!("{}", report.problems.join("; "));
    }
    Ok(())
}

struct Report {
    json: serde_json::Value,
    table: String,
    problems: Vec<String>,
}

/// Creates `n` threads, `limit` per connection (the post limit), and returns their ids.
async fn create_threads(
    url: &str,
    dialer: &Dialer,
    run: u32,
    n: usize,
    deadline: Instant,
) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(n);
    let mut conn_no = 0u32;
    while ids.len() < n {
        let mut conn = timeout_at(deadline, link::dial(dialer, url))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {url} timed out"))?
            .map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?;
        let mut limit = 5usize;
        let mut sent = 0usize;
        let mut waiting = 0usize;
        loop {
            while sent < limit && ids.len() + waiting < n {
                let tag = wire::Tag {
                    run,
                    poster: wire::SETUP_POSTER - conn_no,
                    seq: sent as u32,
                };
                let title = format!("bench {run:08x} thread {}", ids.len() + waiting + 1);
                let stamp = wire::Stamp { sent_ns: 0, via: 0 };
                let msg = wire::new_thread(&title, &tag.body(stamp, 40), &tag.client_id());
                conn.write_message(Message::text(msg)).await?;
                sent += 1;
                waiting += 1;
            }
            if waiting == 0 {
                break;
            }
            let msg = timeout_at(deadline, conn.read_message())
                .await
                .map_err(|_| anyhow::anyhow!("creating threads timed out"))??;
            let Message::Text(text) = msg else { continue };
            let Some(m) = wire::parse(text.as_str()) else {
                continue;
            };
            match m.kind.as_ref() {
                "hello" => {
                    if let Some(l) = m.limits {
                        limit = (l.posts as usize).max(1);
                    }
                }
                "ack" => {
                    let id = m.thread.map(|t| t.id).context("ack without its thread")?;
                    ids.push(id);
                    waiting -= 1;
                }
                "error" => bail!(
                    "creating a thread was refused: {} ({})",
                    m.message.as_deref().unwrap_or("?"),
                    m.code.as_deref().unwrap_or("?")
                ),
                _ => {}
            }
        }
        conn_no += 1;
    }
    Ok(ids)
}

fn pids(common: &Common, opts: &BoardOpts) -> Vec<u32> {
    common
        .server_pid
        .iter()
        .chain(opts.also_server_pid.iter())
        .copied()
        .collect()
}

/// Summed CPU ticks of `pids` (None if any is unreadable).
fn cpu_of(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| super::cpu_ticks(p)).sum()
}

/// Summed resident memory of `pids`.
fn rss_of(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| super::rss_bytes(p)).sum()
}

/// Viewers that were live and lost it, over time: (start, end) of each episode, in
/// seconds since the window opened, and the most viewers down at once.
#[derive(Clone, Debug)]
struct Episode {
    start_s: f64,
    end_s: Option<f64>,
    most_down: i64,
}

async fn load(common: &Common, opts: &BoardOpts, urls: Vec<String>) -> anyhow::Result<Report> {
    let connect_timeout = secs("connect-timeout", common.connect_timeout)?;
    let warmup = secs("warmup", common.warmup)?;
    let duration = secs("duration", common.duration)?;
    let drain = secs("drain-timeout", common.drain_timeout)?;
    let post_timeout = secs("post-timeout", opts.post_timeout)?;
    let storm_at = opts.storm_at.map(|s| secs("storm-at", s)).transpose()?;
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let dialer = Dialer::new()
        .handshake_timeout(connect_timeout.min(Duration::from_secs(10)))
        .max_message_size(16 << 20)
        .max_frame_size(16 << 20);
    let run = fastrand::u32(..);
    let pids = pids(common, opts);
    let started = Instant::now();

    // ---- Threads.
    let setup_deadline = started + connect_timeout;
    let thread_ids =
        create_threads(&urls[0], &dialer, run, opts.board_threads, setup_deadline).await?;
    let ledger = Arc::new(Ledger::new(&thread_ids, opts.viewers));

    // ---- Viewers.
    sleep(Duration::from_millis(300)).await;
    let rss_before = rss_of(&pids);
    let stop = CancellationToken::new();
    let (storm_tx, storm_rx) = watch::channel(0u64);
    let viewer_plan = Arc::new(viewer::ViewerPlan {
        urls: urls.clone(),
        dialer: dialer.clone(),
        ledger: ledger.clone(),
        stop: stop.clone(),
        gate: Arc::new(Semaphore::new(128)),
    });
    let mut viewers = JoinSet::new();
    let mut viewer_ready = Vec::with_capacity(opts.viewers);
    for i in 0..opts.viewers {
        let (tx, rx) = oneshot::channel();
        viewer_ready.push(rx);
        viewers.spawn(viewer::run(i, viewer_plan.clone(), storm_rx.clone(), tx));
    }
    let viewers_live = wait_ready(viewer_ready, setup_deadline).await;
    ledger.setup_over.store(true, Ordering::SeqCst);
    let viewers_open_s = started.elapsed().as_secs_f64();
    // Let the server settle before reading its memory.
    sleep(Duration::from_secs(1)).await;
    let rss_viewers = rss_of(&pids);

    // ---- Posters.
    let posters_n = match opts.posters {
        Some(p) => p,
        None if opts.saturate => 500,
        None => (opts.post_rate * 3.0).ceil() as usize,
    };
    let posters_n = if opts.post_rate == 0.0 && !opts.saturate {
        0
    } else {
        posters_n.max(1)
    };
    let pace = if opts.saturate {
        poster::Pace::Saturate(Arc::new(Semaphore::new(opts.posts_in_flight)))
    } else if opts.post_rate > 0.0 {
        poster::Pace::Rate {
            interval_ns: (1e9 / opts.post_rate).max(1.0) as u64,
            next: AtomicU64::new(0),
            start_ns: AtomicU64::new(0),
        }
    } else {
        poster::Pace::Idle
    };
    let go = CancellationToken::new();
    let stop_posting = CancellationToken::new();
    let stop_posters = CancellationToken::new();
    let poster_plan = Arc::new(poster::PosterPlan {
        urls: urls.clone(),
        dialer: dialer.clone(),
        ledger: ledger.clone(),
        run,
        body_size: opts.body_size,
        post_timeout,
        pace,
        next_thread: AtomicUsize::new(0),
        go: go.clone(),
        stop_posting: stop_posting.clone(),
        stop: stop_posters.clone(),
        gate: Arc::new(Semaphore::new(64)),
    });
    let mut posters = JoinSet::new();
    let mut poster_ready = Vec::with_capacity(posters_n);
    for i in 0..posters_n {
        let (tx, rx) = oneshot::channel();
        poster_ready.push(rx);
        posters.spawn(poster::run(i, poster_plan.clone(), tx));
    }
    let posters_connected = wait_ready(poster_ready, Instant::now() + connect_timeout).await;

    // ---- Monitor, every 10 ms: episodes of viewers down, and (saturating) the time
    // the in-flight bound was full and the acks that came meanwhile.
    let episodes = Arc::new(std::sync::Mutex::new(Vec::<Episode>::new()));
    let saturated = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let bound = match &poster_plan.pace {
        poster::Pace::Saturate(s) => Some(s.clone()),
        _ => None,
    };
    let window_origin = Arc::new(std::sync::OnceLock::<Instant>::new());
    let monitor = {
        let ledger = ledger.clone();
        let episodes = episodes.clone();
        let origin = window_origin.clone();
        let stop = stop.clone();
        let saturated = saturated.clone();
        let stop_posting = stop_posting.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut open: Option<Episode> = None;
            let mut last = (
                Instant::now(),
                ledger.counters.acked.load(Ordering::Relaxed),
                false,
            );
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let now = Instant::now();
                let acked = ledger.counters.acked.load(Ordering::Relaxed);
                let full = bound.as_ref().is_some_and(|b| b.available_permits() == 0)
                    && !stop_posting.is_cancelled();
                if full && last.2 {
                    saturated
                        .0
                        .fetch_add((now - last.0).as_nanos() as u64, Ordering::Relaxed);
                    saturated.1.fetch_add(acked - last.1, Ordering::Relaxed);
                }
                last = (now, acked, full);
                let down = ledger.not_live.load(Ordering::Relaxed);
                let at = origin.get().map_or(0.0, |o| {
                    Instant::now().saturating_duration_since(*o).as_secs_f64()
                });
                match (&mut open, down > 0) {
                    (None, true) => {
                        open = Some(Episode {
                            start_s: at,
                            end_s: None,
                            most_down: down,
                        })
                    }
                    (Some(e), true) => e.most_down = e.most_down.max(down),
                    (Some(e), false) => {
                        e.end_s = Some(at);
                        if let (Some(e), Ok(mut all)) = (open.take(), episodes.lock()) {
                            all.push(e);
                        }
                    }
                    (None, false) => {}
                }
            }
            if let (Some(e), Ok(mut all)) = (open, episodes.lock()) {
                all.push(e);
            }
        })
    };

    // ---- Warm-up and the window.
    if let poster::Pace::Rate { start_ns, .. } = &poster_plan.pace {
        start_ns.store(ledger.clock.now_ns(), Ordering::SeqCst);
    }
    go.cancel();
    sleep(warmup).await;
    let cpu_start = cpu_of(&pids);
    let own_start = super::cpu_ticks(std::process::id());
    let window_start = Instant::now();
    let _ = window_origin.set(window_start);
    ledger.window.open(ledger.clock.now_ns());
    if let Some(path) = &opts.ready_file {
        std::fs::write(path, "window open\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let acked_before = ledger.counters.acked.load(Ordering::Relaxed);
    let window_end = window_start + duration;
    if let Some(at) = storm_at.filter(|a| *a < duration) {
        sleep_until(window_start + at).await;
        storm_tx.send_modify(|g| *g += 1);
    }
    sleep_until(window_end).await;
    ledger.window.close(ledger.clock.now_ns());
    let window = window_start.elapsed();
    let cpu_end = cpu_of(&pids);
    let own_end = super::cpu_ticks(std::process::id());
    let rss_end = rss_of(&pids);
    stop_posting.cancel();

    // ---- Drain: posters get their last answers, viewers their last posts.
    let drain_deadline = Instant::now() + drain.max(post_timeout);
    while timeout_at(drain_deadline, posters.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    stop_posters.cancel();
    let posters_stuck = posters.len();
    posters.abort_all();
    let viewer_deadline = Instant::now() + drain;
    while Instant::now() < viewer_deadline
        && (ledger.behind() > 0 || ledger.not_live.load(Ordering::Relaxed) > 0)
    {
        sleep(Duration::from_millis(20)).await;
    }
    let drained_s = (Instant::now() - window_end).as_secs_f64();
    let still_down = ledger.not_live.load(Ordering::Relaxed);
    let behind = ledger.behind();
    stop.cancel();
    drop(storm_tx);
    let _ = monitor.await;
    let viewer_deadline = Instant::now() + Duration::from_secs(5);
    while timeout_at(viewer_deadline, viewers.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    viewers.abort_all();

    // ---- Audit.
    let audit = if opts.no_audit {
        None
    } else {
        Some(
            audit::run(
                &urls,
                &dialer,
                &ledger,
                run,
                Instant::now() + connect_timeout,
            )
            .await,
        )
    };

    let ctx = ReportInput {
        common,
        run,
        opts,
        urls: &urls,
        ledger: &ledger,
        viewers_live,
        viewers_open_s,
        posters_n,
        posters_connected,
        posters_stuck,
        window,
        acked_before,
        cpu: cpu_start.zip(cpu_end),
        own: own_start.zip(own_end),
        rss: (rss_before, rss_viewers, rss_end),
        drained_s,
        saturated: (
            saturated.0.load(Ordering::Relaxed) as f64 / 1e9,
            saturated.1.load(Ordering::Relaxed),
        ),
        still_down,
        behind,
        episodes: episodes.lock().map(|e| e.clone()).unwrap_or_default(),
        storm_at,
        audit,
        nofile,
    };
    Ok(report(ctx))
}

/// Waits for every `ready` signal until `deadline`; returns how many came.
async fn wait_ready(ready: Vec<oneshot::Receiver<()>>, deadline: Instant) -> usize {
    let mut n = 0;
    for rx in ready {
        if matches!(timeout_at(deadline, rx).await, Ok(Ok(()))) {
            n += 1;
        }
    }
    n
}

struct ReportInput<'a> {
    common: &'a Common,
    run: u32,
    opts: &'a BoardOpts,
    urls: &'a [String],
    ledger: &'a Ledger,
    viewers_live: usize,
    viewers_open_s: f64,
    posters_n: usize,
    posters_connected: usize,
    posters_stuck: usize,
    window: Duration,
    acked_before: u64,
    cpu: Option<(u64, u64)>,
    own: Option<(u64, u64)>,
    rss: (Option<u64>, Option<u64>, Option<u64>),
    drained_s: f64,
    /// Seconds the in-flight bound was full, and the acks meanwhile.
    saturated: (f64, u64),
    still_down: i64,
    behind: usize,
    episodes: Vec<Episode>,
    storm_at: Option<Duration>,
    audit: Option<audit::Audit>,
    nofile: u64,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    h.max() as f64 / 1000.0
}

fn report(x: ReportInput<'_>) -> Report {
    let l = x.ledger;
    let c = &l.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let secs = x.window.as_secs_f64().max(1e-9);
    let acked = l.acked.lock().map(|a| a.clone()).unwrap_or_default();
    let acked_in_window = acked
        .iter()
        .filter(|a| l.window.contains(a.sent_ns))
        .count();
    let acked_per_s = acked_in_window as f64 / secs;
    let ack_h = l.ack_latency.merged();
    let del_h = l.delivery_latency.merged();
    let cross_h = l.cross_latency.merged();

    // Post → every viewer of its thread; and deliveries missing.
    let mut all_h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures"));
    let mut incomplete = 0u64;
    for a in &acked {
        let t = &l.threads[a.thread];
        let want = t.viewers.load(Ordering::Relaxed);
        if want == 0 || !l.window.contains(a.sent_ns) {
            continue;
        }
        let got = t.slots.with(a.no, |s| {
            (
                s.count.load(Ordering::Relaxed),
                s.last_ns.load(Ordering::Relaxed),
            )
        });
        match got {
            Some((n, last)) if n >= want => {
                let _ = all_h.record((last.saturating_sub(a.sent_ns) / 1000).clamp(1, 600_000_000));
            }
            _ => incomplete += 1,
        }
    }
    let mut lost_deliveries = 0u64;
    for m in &l.marks {
        if !m.counted.load(Ordering::Relaxed) {
            continue;
        }
        let have = m.last_no.load(Ordering::Relaxed);
        lost_deliveries += acked
            .iter()
            .filter(|a| a.thread == m.thread && a.no > have)
            .count() as u64;
    }
    let deliveries = get(&c.deliveries);
    let window_deliveries = get(&c.window_deliveries);
    let ticks = super::clock_ticks();
    let server_cpu_s = x.cpu.map(|(a, b)| b.saturating_sub(a) as f64 / ticks);
    let own_cpu_s = x.own.map(|(a, b)| b.saturating_sub(a) as f64 / ticks);
    let per = |cpu: Option<f64>, n: u64| cpu.filter(|_| n > 0).map(|s| s * 1e6 / n as f64);
    let (rss_before, rss_viewers, rss_end) = x.rss;
    let bytes_per_viewer = match (rss_before, rss_viewers) {
        (Some(a), Some(b)) if x.viewers_live > 0 => {
            Some((b as f64 - a as f64) / x.viewers_live as f64)
        }
        _ => None,
    };
    let refusals = l.refusals.lock().map(|m| m.clone()).unwrap_or_default();
    let refusal_texts = l
        .refusal_texts
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let close_codes = l.close_codes.lock().map(|m| m.clone()).unwrap_or_default();
    let closed_1008 = close_codes.get(&1008).copied().unwrap_or(0);
    let storm = x.storm_at.map(|at| {
        let at_s = at.as_secs_f64();
        let ep = x
            .episodes
            .iter()
            .find(|e| e.start_s + 0.05 >= at_s && e.start_s <= at_s + 1.0);
        serde_json::json!({
            "at_s": at_s,
            "viewers_dropped": ep.map(|e| e.most_down),
            "all_back_live_s": ep.and_then(|e| e.end_s.map(|end| end - at_s)),
        })
    });
    let episodes: Vec<serde_json::Value> = x
        .episodes
        .iter()
        .map(|e| {
            serde_json::json!({
                "start_s": e.start_s,
                "end_s": e.end_s,
                "most_down": e.most_down,
                "all_back_live_s": e.end_s.map(|end| end - e.start_s),
            })
        })
        .collect();
    let still_down = x.still_down;
    let poster_capacity = x.posters_connected as f64 * 5.0 / 10.0;

    // What makes the run fail.
    let mut problems = Vec::new();
    let mut check = |bad: bool, what: String| {
        if bad {
            problems.push(what);
        }
    };
    check(
        x.viewers_live < x.opts.viewers,
        format!(
            "only {} of {} viewers connected",
            x.viewers_live, x.opts.viewers
        ),
    );
    check(
        x.posters_connected < x.posters_n,
        format!(
            "only {} of {} posters connected",
            x.posters_connected, x.posters_n
        ),
    );
    check(
        lost_deliveries > 0,
        format!("{lost_deliveries} deliveries lost (acknowledged posts some viewer never got)"),
    );
    check(
        get(&c.duplicates) > 0,
        format!("{} duplicate deliveries", get(&c.duplicates)),
    );
    check(
        get(&c.gaps) > 0,
        format!("{} posts delivered out of order", get(&c.gaps)),
    );
    check(
        get(&c.early) > 0,
        format!(
            "{} live posts reached a viewer before its thread's reply",
            get(&c.early)
        ),
    );
    check(
        get(&c.mismatched) > 0,
        format!(
            "{} posts seen with different ids by different viewers",
            get(&c.mismatched)
        ),
    );
    check(
        get(&c.hung) > 0,
        format!(
            "{} posts got no answer within {:?}",
            get(&c.hung),
            x.opts.post_timeout
        ),
    );
    check(
        get(&c.rate_limited) + get(&c.too_many_requests) > 0,
        format!(
            "{} posts refused by the rate limits",
            get(&c.rate_limited) + get(&c.too_many_requests)
        ),
    );
    check(
        closed_1008 > 0,
        format!("{closed_1008} connections closed by the server as too slow (1008)"),
    );
    check(
        still_down > 0,
        format!("{still_down} viewers not back live at the end"),
    );
    check(
        x.posters_stuck > 0,
        format!("{} posters did not finish", x.posters_stuck),
    );
    check(
        x.posters_n > 0 && get(&c.acked) == 0,
        "no post was acknowledged".to_string(),
    );
    if !x.opts.faults {
        check(
            get(&c.refused) > 0,
            format!("{} posts refused: {refusal_texts:?}", get(&c.refused)),
        );
        check(
            get(&c.disconnects) > 0,
            format!(
                "{} connections dropped: codes {close_codes:?}",
                get(&c.disconnects)
            ),
        );
    }
    if let Some(a) = &x.audit {
        check(
            a.failed.is_some(),
            format!("audit failed: {}", a.failed.clone().unwrap_or_default()),
        );
        check(
            a.lost > 0,
            format!("audit: {} acknowledged posts lost", a.lost),
        );
        check(
            a.duplicated > 0,
            format!("audit: {} posts stored twice", a.duplicated),
        );
        check(
            a.numbering > 0,
            format!("audit: {} breaks in post numbering", a.numbering),
        );
        check(
            a.mismatched > 0,
            format!(
                "audit: {} posts stored with another id than viewers got",
                a.mismatched
            ),
        );
    }

    let json = serde_json::json!({
        "mode": "board",
        "urls": x.urls,
        "run": format!("{:08x}", x.run),
        "viewers": x.opts.viewers,
        "viewers_connected": x.viewers_live,
        "viewers_open_s": x.viewers_open_s,
        "board_threads": x.opts.board_threads,
        "posters": x.posters_n,
        "posters_connected": x.posters_connected,
        "poster_capacity_per_s": poster_capacity,
        "post_rate": if x.opts.saturate { None } else { Some(x.opts.post_rate) },
        "saturate": x.opts.saturate,
        "posts_in_flight": x.opts.saturate.then_some(x.opts.posts_in_flight),
        "duration_s": secs,
        "posts": {
            "sent": get(&c.posts_sent),
            "acked": get(&c.acked),
            "acked_in_window": acked_in_window,
            "acked_per_s": acked_per_s,
            "acked_during_window_by_arrival": get(&c.acked).saturating_sub(x.acked_before),
            "saturated_s": x.saturated.0,
            "acked_per_s_saturated": (x.saturated.0 > 0.0).then(|| x.saturated.1 as f64 / x.saturated.0),
            "ack_ms": {"p50": ms(&ack_h, 0.5), "p99": ms(&ack_h, 0.99), "max": max_ms(&ack_h)},
            "refused": get(&c.refused),
            "refusals": refusals,
            "refusal_messages": refusal_texts,
            "refusal_max_ms": get(&c.refusal_max_ns) as f64 / 1e6,
            "rate_limited": get(&c.rate_limited),
            "too_many_requests": get(&c.too_many_requests),
            "hung": get(&c.hung),
            "resent": get(&c.resent),
            "late": get(&c.late),
        },
        "delivery": {
            "deliveries": deliveries,
            "deliveries_in_window": window_deliveries,
            "deliveries_per_s": window_deliveries as f64 / secs,
            "ms": {"p50": ms(&del_h, 0.5), "p99": ms(&del_h, 0.99), "p99_9": ms(&del_h, 0.999), "max": max_ms(&del_h)},
            "all_viewers_ms": {"p50": ms(&all_h, 0.5), "p99": ms(&all_h, 0.99), "max": max_ms(&all_h)},
            "cross_instance_ms": (x.urls.len() > 1).then(|| serde_json::json!({
                "deliveries": cross_h.len(),
                "p50": ms(&cross_h, 0.5), "p99": ms(&cross_h, 0.99), "max": max_ms(&cross_h),
            })),
            "posts_not_at_every_viewer": incomplete,
            "lost": lost_deliveries,
            "duplicates": get(&c.duplicates),
            "out_of_order": get(&c.gaps),
            "early": get(&c.early),
            "mismatched": get(&c.mismatched),
            "presence_msgs": get(&c.presence),
            "presence_per_viewer_s": get(&c.presence) as f64 / x.viewers_live.max(1) as f64 / secs,
            "viewer_errors": get(&c.viewer_errors),
            "unparsable": get(&c.unparsable),
        },
        "connections": {
            "disconnects": get(&c.disconnects),
            "close_codes": close_codes.iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
            "closed_1008": closed_1008,
            "reconnects": get(&c.reconnects),
            "connect_failures": get(&c.connect_failures),
            "episodes": episodes,
            "storm": storm,
            "still_down": still_down,
            "viewers_behind_at_end": x.behind,
            "drained_s": x.drained_s,
        },
        "server": {
            "pids": pids(x.common, x.opts),
            "busy": server_cpu_s.map(|s| s / secs),
            "cpu_us_per_delivery": per(server_cpu_s, window_deliveries),
            "cpu_us_per_acked_post": per(server_cpu_s, acked_in_window as u64),
            "rss_before_viewers": rss_before,
            "rss_with_viewers": rss_viewers,
            "rss_end": rss_end,
            "bytes_per_viewer": bytes_per_viewer,
        },
        "generator_busy": own_cpu_s.map(|s| s / secs),
        "nofile_limit": x.nofile,
        "audit": x.audit.as_ref().map(audit::Audit::json),
        "problems": problems,
    });

    let mut t = String::new();
    let _ = writeln!(
        t,
        "board: {} viewers ({} connected in {:.1} s) over {} thread(s), {} posters ({}), {:.1} s window, {} instance(s)",
        x.opts.viewers,
        x.viewers_live,
        x.viewers_open_s,
        x.opts.board_threads,
        x.posters_n,
        if x.opts.saturate {
            format!("saturating, {} in flight", x.opts.posts_in_flight)
        } else {
            format!("{} posts/s", x.opts.post_rate)
        },
        secs,
        x.urls.len()
    );
    let _ = writeln!(
        t,
        "  posts        {:>8} acked ({:.0}/s in the window), ack p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        get(&c.acked),
        acked_per_s,
        ms(&ack_h, 0.5),
        ms(&ack_h, 0.99),
        max_ms(&ack_h)
    );
    if x.saturated.0 > 0.0 {
        let _ = writeln!(
            t,
            "               {:.0} acked/s while {} posts were in flight ({:.1} s of the run)",
            x.saturated.1 as f64 / x.saturated.0,
            x.opts.posts_in_flight,
            x.saturated.0
        );
    }
    let _ = writeln!(
        t,
        "               refused {} {:?} (slowest refusal {:.0} ms), rate-limited {}, hung {}, re-sent {}, late {}",
        get(&c.refused),
        refusals,
        get(&c.refusal_max_ns) as f64 / 1e6,
        get(&c.rate_limited) + get(&c.too_many_requests),
        get(&c.hung),
        get(&c.resent),
        get(&c.late)
    );
    let _ = writeln!(
        t,
        "  delivery     {:>8} ({:.0}/s), p50 {:.1} ms p99 {:.1} ms max {:.1} ms; to every viewer p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        deliveries,
        window_deliveries as f64 / secs,
        ms(&del_h, 0.5),
        ms(&del_h, 0.99),
        max_ms(&del_h),
        ms(&all_h, 0.5),
        ms(&all_h, 0.99),
        max_ms(&all_h)
    );
    if x.urls.len() > 1 {
        let _ = writeln!(
            t,
            "               between instances: {} deliveries, p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            cross_h.len(),
            ms(&cross_h, 0.5),
            ms(&cross_h, 0.99),
            max_ms(&cross_h)
        );
    }
    let _ = writeln!(
        t,
        "  checks       lost {lost_deliveries}, duplicates {}, out of order {}, early {}, mismatched {}; presence msgs {} ({:.2}/viewer/s)",
        get(&c.duplicates),
        get(&c.gaps),
        get(&c.early),
        get(&c.mismatched),
        get(&c.presence),
        get(&c.presence) as f64 / x.viewers_live.max(1) as f64 / secs
    );
    let _ = writeln!(
        t,
        "  connections  {} dropped {:?}, {} reconnects, {} failed dials; still down {still_down}",
        get(&c.disconnects),
        close_codes,
        get(&c.reconnects),
        get(&c.connect_failures)
    );
    for e in &x.episodes {
        let _ = writeln!(
            t,
            "               {} viewers down at {:.2} s, all back live {}",
            e.most_down,
            e.start_s,
            e.end_s.map_or("never".to_string(), |end| format!(
                "after {:.2} s",
                end - e.start_s
            ))
        );
    }
    if let Some(s) = server_cpu_s {
        let _ = writeln!(
            t,
            "  server CPU   {:.0} % of a core; {} µs per delivery, {} µs per acked post",
            s / secs * 100.0,
            per(Some(s), window_deliveries).map_or("-".into(), |v| format!("{v:.2}")),
            per(Some(s), acked_in_window as u64).map_or("-".into(), |v| format!("{v:.1}"))
        );
    }
    if let Some(b) = bytes_per_viewer {
        let _ = writeln!(t, "  server RSS   {:.0} bytes per connected viewer", b);
    }
    if let Some(g) = own_cpu_s {
        let _ = writeln!(t, "  generator    {:.0} % of a core", g / secs * 100.0);
    }
    if let Some(a) = &x.audit {
        let _ = writeln!(
            t,
            "  audit        acked {}, found {}, lost {}, duplicated {}, unacknowledged {}, numbering errors {}{}",
            a.acked,
            a.found,
            a.lost,
            a.duplicated,
            a.unacknowledged,
            a.numbering,
            a.failed.as_ref().map_or(String::new(), |f| format!(" — FAILED: {f}"))
        );
    }
    if problems.is_empty() {
        let _ = write!(t, "  result       ok");
    } else {
        let _ = write!(
            t,
            "  result       {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        );
    }
    Report {
        json,
        table: t,
        problems,
    }
}
