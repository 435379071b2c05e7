//! `yamabiko game-bench`: a load generator for the game server.
//!
//! N bot players connect over the library's [`Dialer`], join rooms of `room_size`
//! (`bench-0`, `bench-1`, …) and play like pages: one input per tick on a timer of
//! their own (random phase), reading every snapshot. Two windows are measured:
//! 1. everyone reading;
//! 2. the same, with one bot (in `bench-0`, on a socket with a small receive buffer)
//!    that stops reading — what a stalled page costs the server and the others.
//!
//! From the server (its `/stats`, sampled at both ends of a window): CPU µs per
//! player-tick and how busy it was, tick duration p50/p99 and start lateness
//! ("jitter") p50/p99, snapshots replaced in mailboxes (skipped for slow pages),
//! pages closed as too slow, RSS growth. From the bots: bytes received per player per
//! second, input→snapshot latency p50/p99 (send of input n to the first snapshot
//! acknowledging n), how often an input was applied at the next tick, snapshot
//! inter-arrival jitter, snapshots missed.
//!
//! The server should run with `--no-bots` (rooms of bench players only), ideally
//! pinned to its own core (`taskset -c 0 yamabiko game --threads 1 --no-bots`), the
//! generator on another (`taskset -c 1 yamabiko game-bench …`).

use crate::protocol::client::{encode_input, ClientMsg, Input};
use crate::protocol::server::{ServerMsg, SNAPSHOT, SNAPSHOT_HEADER, SNAPSHOT_RECORD};
use crate::stats::quantile;
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use yamabiko::{Dialer, Message};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The game socket, `ws://HOST:PORT/ws` (loopback unless `allow_remote`).
    pub url: String,
    /// Bot players.
    pub players: usize,
    /// Players per room (at most 16).
    pub room_size: usize,
    /// Each measuring window.
    pub duration: Duration,
    /// Warm-up before the first window.
    pub warmup: Duration,
    /// Also measure a window with one bot that stops reading.
    pub stall: bool,
    /// Length of that window: long enough for the stalled socket's buffers to fill
    /// (some seconds at 30 Hz) and the write deadline to pass.
    pub stall_duration: Duration,
    /// The stalled bot's socket receive buffer (small, so the server's side fills).
    pub stall_recv_buffer: usize,
    /// Connections opened at once while connecting.
    pub connect_parallel: usize,
    /// Bound on connecting everyone.
    pub connect_timeout: Duration,
    /// Prefix of the room names.
    pub room_prefix: String,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            url: "ws://127.0.0.1:8090/ws".into(),
            players: 64,
            room_size: 16,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            stall: true,
            stall_duration: Duration::from_secs(15),
            stall_recv_buffer: 4096,
            connect_parallel: 64,
            connect_timeout: Duration::from_secs(60),
            room_prefix: "bench".into(),
        }
    }
}

/// What one bot counts while measuring.
struct BotStats {
    latency: Histogram<u64>,
    interval_jitter: Histogram<u64>,
    next_tick: u64,
    later_tick: u64,
    missed: u64,
    bytes: u64,
    snapshots: u64,
}

impl BotStats {
    fn new() -> BotStats {
        BotStats {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            interval_jitter: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("histogram bounds"),
            next_tick: 0,
            later_tick: 0,
            missed: 0,
            bytes: 0,
            snapshots: 0,
        }
    }

    fn add(&mut self, o: &BotStats) {
        let _ = self.latency.add(&o.latency);
        let _ = self.interval_jitter.add(&o.interval_jitter);
        self.next_tick += o.next_tick;
        self.later_tick += o.later_tick;
        self.missed += o.missed;
        self.bytes += o.bytes;
        self.snapshots += o.snapshots;
    }
}

/// State shared by one bot's reader and writer.
struct Bot {
    slot: u8,
    /// Inputs sent and not yet acknowledged: (seq, sent at, last snapshot tick seen).
    pending: Mutex<VecDeque<(u32, Instant, u32)>>,
    last_tick: AtomicU32,
    stats: Mutex<BotStats>,
    /// Stop reading (the stalled bot).
    stall: AtomicBool,
}

struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    errors: AtomicU64,
    period: Duration,
}

/// Runs the benchmark; returns the report as JSON and as a table.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<(Value, String)> {
    if cfg.players == 0 || cfg.room_size == 0 || cfg.room_size > 16 {
        bail!("--players must be at least 1 and --room-size 1–16");
    }
    let addr = target(&cfg.url)?;
    let first = server_stats(addr)
        .await
        .context("reading the server's /stats")?;
    let hz = first["tick_hz"].as_u64().context("no tick_hz in /stats")? as u32;
    if first["bots"].as_u64().unwrap_or(0) > 0 {
        eprintln!("game-bench: the server has bots; start it with --no-bots for rooms of bench players only");
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let shared = Arc::new(Shared {
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
        period: Duration::from_secs(1) / hz,
    });

    // Connect and join, a few at a time. Bot 0 (room 0) is the one that may stall: its
    // socket has a small receive buffer.
    let connect_deadline = Instant::now() + cfg.connect_timeout;
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.connect_parallel.max(1)));
    let mut joining = JoinSet::new();
    for i in 0..cfg.players {
        let sem = sem.clone();
        let url = cfg.url.clone();
        let room = format!("{}-{}", cfg.room_prefix, i / cfg.room_size);
        let rcvbuf = (i == 0 && cfg.stall).then_some(cfg.stall_recv_buffer);
        joining.spawn(async move {
            let _permit = sem.acquire().await;
            (i, connect(addr, &url, &room, i, rcvbuf).await)
        });
    }
    let mut conns = Vec::with_capacity(cfg.players);
    while let Some(joined) = tokio::time::timeout_at(connect_deadline.into(), joining.join_next())
        .await
        .context("connecting took longer than --connect-timeout")?
    {
        let (i, result) = joined?;
        let (conn, slot) = result.with_context(|| format!("bot {i} could not join"))?;
        conns.push((i, conn, slot));
    }
    conns.sort_by_key(|c| c.0);

    let mut bots = Vec::with_capacity(cfg.players);
    let mut tasks = JoinSet::new();
    for (i, conn, slot) in conns {
        let bot = Arc::new(Bot {
            slot,
            pending: Mutex::new(VecDeque::new()),
            last_tick: AtomicU32::new(0),
            stats: Mutex::new(BotStats::new()),
            stall: AtomicBool::new(false),
        });
        bots.push(bot.clone());
        let (read, write) = conn.split();
        tasks.spawn(reader(read, bot.clone(), shared.clone()));
        tasks.spawn(writer(write, bot, shared.clone(), i as u64));
    }

    tokio::time::sleep(cfg.warmup).await;
    let mut windows = vec![];
    windows.push(window(addr, &bots, &shared, cfg.duration, "all reading", hz).await?);
    if cfg.stall {
        bots[0].stall.store(true, Ordering::SeqCst);
        // The stalled bot's own figures are not counted.
        windows.push(
            window(
                addr,
                &bots[1..],
                &shared,
                cfg.stall_duration,
                "one stalled",
                hz,
            )
            .await?,
        );
    }
    shared.stop.store(true, Ordering::SeqCst);
    // Writers leave their rooms on their next tick; readers are stopped after that.
    tokio::time::sleep(shared.period * 3).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}

    let rooms = cfg.players.div_ceil(cfg.room_size);
    let json = json!({
        "url": cfg.url,
        "players": cfg.players,
        "room_size": cfg.room_size,
        "rooms": rooms,
        "tick_hz": hz,
        "window_s": cfg.duration.as_secs_f64(),
        "stall_window_s": cfg.stall_duration.as_secs_f64(),
        "errors": shared.errors.load(Ordering::Relaxed),
        "windows": windows,
    });
    let table = table(&json);
    Ok((json, table))
}

/// Opens one bot's connection and joins; returns it with the bot's seat.
async fn connect(
    addr: SocketAddr,
    url: &str,
    room: &str,
    i: usize,
    rcvbuf: Option<usize>,
) -> anyhow::Result<(yamabiko::Conn<TcpStream>, u8)> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size as u32)?;
    }
    let tcp = socket.connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut conn, _) = Dialer::new().dial_with_stream(tcp, url).await?;
    let join = ClientMsg::Join {
        room: room.to_owned(),
        name: format!("b{i}"),
        spectate: false,
        token: None,
    };
    conn.write_message(Message::binary(join.encode())).await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), conn.read_message()).await??;
        match ServerMsg::decode(msg.as_bytes()) {
            Ok(ServerMsg::Welcome(w)) => match w.you {
                Some(slot) => return Ok((conn, slot)),
                None => bail!("joined without a seat"),
            },
            Ok(ServerMsg::Notice { text, .. }) => bail!("refused: {text}"),
            Ok(_) => {}
            Err(e) => bail!("bad message from the server: {e}"),
        }
    }
}

/// Reads snapshots: bytes, acknowledgements (latency), inter-arrival, gaps.
async fn reader(mut read: yamabiko::ReadHalf<TcpStream>, bot: Arc<Bot>, shared: Arc<Shared>) {
    let mut last_arrival: Option<Instant> = None;
    let mut last_tick: Option<u32> = None;
    let period_us = shared.period.as_micros() as i64;
    loop {
        if bot.stall.load(Ordering::Relaxed) {
            // Stop reading; keep the socket open.
            while !shared.stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            return;
        }
        let msg = match read.read_message().await {
            Ok(m) => m,
            Err(_) => {
                if !shared.stop.load(Ordering::Relaxed) {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        };
        let now = Instant::now();
        let bytes = msg.as_bytes();
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let Some((tick, ack)) = own_ack(bytes, bot.slot) else {
            continue;
        };
        bot.last_tick.store(tick, Ordering::Relaxed);
        let mut st = bot.stats.lock().unwrap_or_else(|e| e.into_inner());
        if measuring {
            // The frame header: 2 bytes, 4 from 126 bytes of payload on.
            st.bytes += bytes.len() as u64 + if bytes.len() < 126 { 2 } else { 4 };
            st.snapshots += 1;
            if let (Some(at), Some(t)) = (last_arrival, last_tick) {
                let gap = tick.wrapping_sub(t).max(1);
                st.missed += u64::from(gap - 1);
                let expect = period_us * i64::from(gap);
                let dev = ((now - at).as_micros() as i64 - expect).unsigned_abs();
                let _ = st.interval_jitter.record(dev.max(1));
            }
        }
        last_arrival = Some(now);
        last_tick = Some(tick);
        // Inputs up to the acknowledged one are answered by this snapshot (at most
        // 200 are pending, so the low 8 bits name one).
        let mut pending = bot.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = pending.iter().position(|e| e.0 as u8 == ack) {
            for (_, sent, seen_tick) in pending.drain(..=pos) {
                if measuring {
                    let us = (now - sent).as_micros() as u64;
                    let _ = st.latency.record(us.max(1));
                    if tick == seen_tick.wrapping_add(1) {
                        st.next_tick += 1;
                    } else {
                        st.later_tick += 1;
                    }
                }
            }
        }
    }
}

/// The tick of a snapshot and the ack of seat `slot` in it.
fn own_ack(bytes: &[u8], slot: u8) -> Option<(u32, u8)> {
    if bytes.len() < SNAPSHOT_HEADER || bytes[0] != SNAPSHOT {
        return None;
    }
    let tick = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let n = usize::from(bytes[7]);
    for r in 0..n {
        let at = SNAPSHOT_HEADER + r * SNAPSHOT_RECORD;
        let rec = bytes.get(at..at + SNAPSHOT_RECORD)?;
        if rec[0] & 0x0f == slot {
            return Some((tick, rec[7]));
        }
    }
    None
}

/// Sends one input per tick, on a timer of its own with a random phase; the stick
/// wanders.
async fn writer(
    mut write: yamabiko::WriteHalf<TcpStream>,
    bot: Arc<Bot>,
    shared: Arc<Shared>,
    seed: u64,
) {
    let phase = Duration::from_micros(seed.wrapping_mul(7919) % shared.period.as_micros() as u64);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, shared.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut seq = 0u32;
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let (mut dx, mut dy) = (0i8, 0i8);
    let mut buf = Vec::with_capacity(16);
    loop {
        ticker.tick().await;
        if shared.stop.load(Ordering::Relaxed) {
            // Give the seat up at once (not after the grace period), so a run that
            // follows does not count these players.
            let _ = write
                .write_message(Message::binary(ClientMsg::Leave.encode()))
                .await;
            return;
        }
        seq += 1;
        if seq.is_multiple_of(20) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            dx = (rng % 255) as i8;
            dy = ((rng >> 8) % 255) as i8;
        }
        let seen = bot.last_tick.load(Ordering::Relaxed);
        {
            let mut pending = bot.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.push_back((seq, Instant::now(), seen));
            // Never more than the 8-bit ack can tell apart.
            while pending.len() > 200 {
                pending.pop_front();
            }
        }
        buf.clear();
        encode_input(
            &Input {
                seq,
                dx,
                dy,
                view_tick: seen,
            },
            &mut buf,
        );
        if write
            .write_message(Message::binary(buf.clone()))
            .await
            .is_err()
        {
            if !shared.stop.load(Ordering::Relaxed) && !bot.stall.load(Ordering::Relaxed) {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    }
}

/// Measures one window over `bots`.
async fn window(
    addr: SocketAddr,
    bots: &[Arc<Bot>],
    shared: &Shared,
    duration: Duration,
    name: &str,
    hz: u32,
) -> anyhow::Result<Value> {
    for bot in bots {
        *bot.stats.lock().unwrap_or_else(|e| e.into_inner()) = BotStats::new();
    }
    let own0 = crate::stats::process_cpu_us();
    let s0 = server_stats(addr).await?;
    shared.measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let mut rss_max = s0["rss_bytes"].as_u64().unwrap_or(0);
    while started.elapsed() < duration {
        tokio::time::sleep((duration - started.elapsed()).min(Duration::from_millis(500))).await;
        if let Ok(s) = server_stats(addr).await {
            rss_max = rss_max.max(s["rss_bytes"].as_u64().unwrap_or(0));
        }
    }
    shared.measuring.store(false, Ordering::SeqCst);
    let secs = started.elapsed().as_secs_f64();
    let s1 = server_stats(addr).await?;
    let own1 = crate::stats::process_cpu_us();

    let mut all = BotStats::new();
    for bot in bots {
        all.add(&bot.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }
    let d = |k: &str| {
        s1[k]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(s0[k].as_u64().unwrap_or(0))
    };
    let cpu_us = d("cpu_us");
    let player_ticks = d("player_ticks");
    let hist = |k: &str| diff_pairs(&s0[k], &s1[k]);
    let (tick_us, late_us) = (hist("tick_us"), hist("tick_late_us"));
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let answered = all.next_tick + all.later_tick;
    Ok(json!({
        "name": name,
        "players_measured": bots.len(),
        "seconds": secs,
        "server_cpu_us_per_player_tick": if player_ticks > 0 { cpu_us as f64 / player_ticks as f64 } else { 0.0 },
        "server_busy": cpu_us as f64 / (secs * 1e6),
        "generator_busy": own1.saturating_sub(own0) as f64 / (secs * 1e6),
        "ticks": d("ticks"),
        "player_ticks": player_ticks,
        "tick_us": { "p50": quantile(&tick_us, 0.5), "p99": quantile(&tick_us, 0.99), "max": tick_us.last().map_or(0, |p| p.0) },
        "tick_late_us": { "p50": quantile(&late_us, 0.5), "p99": quantile(&late_us, 0.99), "max": late_us.last().map_or(0, |p| p.0) },
        "bytes_per_player_per_s": all.bytes as f64 / bots.len().max(1) as f64 / secs,
        // Bytes the server wrote per player per second (player_ticks / ticks-per-second
        // is the average number of players).
        "server_bytes_per_player_per_s": if player_ticks > 0 { d("bytes_out") as f64 * f64::from(hz) / player_ticks as f64 } else { 0.0 },
        "input_to_snapshot_ms": { "p50": ms(&all.latency, 0.5), "p99": ms(&all.latency, 0.99), "max": all.latency.max() as f64 / 1000.0 },
        "inputs_answered": answered,
        "applied_next_tick": if answered > 0 { all.next_tick as f64 / answered as f64 } else { 0.0 },
        "snapshot_interval_jitter_ms": { "p50": ms(&all.interval_jitter, 0.5), "p99": ms(&all.interval_jitter, 0.99) },
        "snapshots_received": all.snapshots,
        "snapshots_missed": all.missed,
        "snapshots_replaced_server": d("snapshots_replaced"),
        "slow_closed": d("slow_closed"),
        "inputs_dropped": d("inputs_dropped"),
        "rss_growth_bytes": rss_max.saturating_sub(s0["rss_bytes"].as_u64().unwrap_or(0)),
    }))
}

/// `[[floor, count], …]` of `b` minus those of `a`.
fn diff_pairs(a: &Value, b: &Value) -> Vec<(u64, u64)> {
    let read = |v: &Value| -> Vec<(u64, u64)> {
        v.as_array()
            .map(|arr| {
                arr.iter()
                    .filter_map(|p| Some((p[0].as_u64()?, p[1].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = read(a);
    read(b)
        .into_iter()
        .map(|(floor, n)| {
            let was = before.iter().find(|p| p.0 == floor).map_or(0, |p| p.1);
            (floor, n.saturating_sub(was))
        })
        .filter(|p| p.1 > 0)
        .collect()
}

fn target(url: &str) -> anyhow::Result<SocketAddr> {
    let uri: http::Uri = url.parse().context("bad URL")?;
    if uri.scheme_str() != Some("ws") {
        bail!("the URL must start with ws://");
    }
    let host = uri.host().context("the URL has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let ip: std::net::IpAddr = if host.eq_ignore_ascii_case("localhost") {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.parse().context("use an IP address or localhost")?
    };
    if !ip.is_loopback() {
        bail!("{ip} is not a loopback address");
    }
    Ok(SocketAddr::new(ip, port))
}

/// The server's `/stats`.
pub async fn server_stats(addr: SocketAddr) -> anyhow::Result<Value> {
    let fetch = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(format!("GET /stats HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut out = Vec::new();
        tcp.read_to_end(&mut out).await?;
        anyhow::Ok(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), fetch).await??;
    let text = String::from_utf8_lossy(&out);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    Ok(serde_json::from_str(body)?)
}

/// A row of the table: its name and how to show a window's value.
type Row<'a> = (&'a str, &'a dyn Fn(&Value) -> String);

fn table(r: &Value) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{} players in {} rooms of {}, {} Hz, {:.0} s windows",
        r["players"],
        r["rooms"],
        r["room_size"],
        r["tick_hz"],
        r["window_s"].as_f64().unwrap_or(0.0)
    );
    let windows = r["windows"].as_array().cloned().unwrap_or_default();
    let _ = write!(t, "{:<44}", "");
    for w in &windows {
        let _ = write!(t, "{:>16}", w["name"].as_str().unwrap_or(""));
    }
    t.push('\n');
    let rows: [Row; 14] = [
        ("server CPU µs per player-tick", &|w| {
            format!(
                "{:.2}",
                w["server_cpu_us_per_player_tick"].as_f64().unwrap_or(0.0)
            )
        }),
        ("server busy (share of one core)", &|w| {
            format!("{:.1}%", 100.0 * w["server_busy"].as_f64().unwrap_or(0.0))
        }),
        ("generator busy (share of one core)", &|w| {
            format!(
                "{:.1}%",
                100.0 * w["generator_busy"].as_f64().unwrap_or(0.0)
            )
        }),
        ("tick duration p50 / p99 (µs)", &|w| {
            format!("{} / {}", w["tick_us"]["p50"], w["tick_us"]["p99"])
        }),
        ("tick start lateness p50 / p99 (µs)", &|w| {
            format!(
                "{} / {}",
                w["tick_late_us"]["p50"], w["tick_late_us"]["p99"]
            )
        }),
        ("bytes per player per second (received)", &|w| {
            format!("{:.0}", w["bytes_per_player_per_s"].as_f64().unwrap_or(0.0))
        }),
        ("input→snapshot p50 / p99 (ms)", &|w| {
            format!(
                "{:.1} / {:.1}",
                w["input_to_snapshot_ms"]["p50"].as_f64().unwrap_or(0.0),
                w["input_to_snapshot_ms"]["p99"].as_f64().unwrap_or(0.0)
            )
        }),
        ("inputs applied at the next tick", &|w| {
            format!(
                "{:.1}%",
                100.0 * w["applied_next_tick"].as_f64().unwrap_or(0.0)
            )
        }),
        ("snapshot arrival jitter p99 (ms)", &|w| {
            format!(
                "{:.2}",
                w["snapshot_interval_jitter_ms"]["p99"]
                    .as_f64()
                    .unwrap_or(0.0)
            )
        }),
        ("snapshots missed by the measured bots", &|w| {
            format!("{}", w["snapshots_missed"])
        }),
        ("snapshots replaced (skipped, server)", &|w| {
            format!("{}", w["snapshots_replaced_server"])
        }),
        ("pages closed as too slow", &|w| {
            format!("{}", w["slow_closed"])
        }),
        ("server RSS growth (KiB)", &|w| {
            format!("{}", w["rss_growth_bytes"].as_u64().unwrap_or(0) / 1024)
        }),
        ("inputs dropped (server)", &|w| {
            format!("{}", w["inputs_dropped"])
        }),
    ];
    for (name, f) in rows {
        let _ = write!(t, "{name:<44}");
        for w in &windows {
            let _ = write!(t, "{:>16}", f(w));
        }
        t.push('\n');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::server::Snapshot;
    use crate::sim::State;

    #[test]
    fn finds_its_own_ack() {
        let mut state = State::new();
        state.add(2, 100, 100);
        state.add(5, 900, 900);
        state.players[5].as_mut().unwrap().ack = 0x1234;
        state.tick = 77;
        let mut bytes = Vec::new();
        Snapshot::encode_state(&state, &mut bytes);
        assert_eq!(own_ack(&bytes, 5), Some((77, 0x34)));
        assert_eq!(own_ack(&bytes, 2), Some((77, 0)));
        assert_eq!(own_ack(&bytes, 3), None);
        assert_eq!(own_ack(&bytes[..10], 5), None, "truncated");
        assert_eq!(own_ack(&[0x83, 0, 0, 0, 0, 0, 0, 0], 5), None);
    }

    #[test]
    fn histogram_differences() {
        let a = json!([[5, 2], [10, 1]]);
        let b = json!([[5, 3], [10, 1], [20, 4]]);
        assert_eq!(diff_pairs(&a, &b), vec![(5, 1), (20, 4)]);
    }

    #[test]
    fn only_loopback() {
        assert!(target("ws://127.0.0.1:9/ws").is_ok());
        assert!(target("ws://[::1]:9/ws").is_ok());
        assert!(target("ws://10.0.0.1:9/ws").is_err());
        assert!(target("http://127.0.0.1:9/ws").is_err());
    }
}
