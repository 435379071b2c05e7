//! The server's counters, served as JSON at `/stats` for the load generator and for
//! anyone curious. All counters only grow; a reader takes two samples and subtracts.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts of durations in buckets: 1 µs wide up to 1 ms, 100 µs wide up to 100 ms,
/// then one bucket for everything longer. Recording is one atomic add.
#[derive(Debug)]
pub struct DurationHistogram {
    buckets: Box<[AtomicU64]>,
}

const FINE: u64 = 1_000;
const COARSE_STEP: u64 = 100;
const COARSE_END: u64 = 100_000;
const BUCKETS: usize = (FINE + (COARSE_END - FINE) / COARSE_STEP + 1) as usize;

impl Default for DurationHistogram {
    fn default() -> Self {
        DurationHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl DurationHistogram {
    /// The bucket of `us` microseconds.
    fn bucket(us: u64) -> usize {
        if us < FINE {
            us as usize
        } else if us < COARSE_END {
            (FINE + (us - FINE) / COARSE_STEP) as usize
        } else {
            BUCKETS - 1
        }
    }

    /// The smallest value in a bucket, in microseconds.
    pub fn bucket_floor(bucket: usize) -> u64 {
        let b = bucket as u64;
        if b < FINE {
            b
        } else {
            FINE + (b - FINE) * COARSE_STEP
        }
    }

    /// Counts one duration.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[Self::bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The non-empty buckets as `[[floor_us, count], …]`.
    pub fn to_json(&self) -> Value {
        let pairs: Vec<Value> = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| json!([Self::bucket_floor(i), n]))
            })
            .collect();
        Value::Array(pairs)
    }
}

/// The value at quantile `q` (0–1) of `[[floor_us, count], …]` pairs (the bucket's
/// floor), or 0 when empty.
pub fn quantile(pairs: &[(u64, u64)], q: f64) -> u64 {
    let total: u64 = pairs.iter().map(|p| p.1).sum();
    if total == 0 {
        return 0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for &(floor, n) in pairs {
        seen += n;
        if seen >= rank {
            return floor;
        }
    }
    pairs.last().map_or(0, |p| p.0)
}

/// Everything `/stats` reports.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Room ticks simulated.
    pub ticks: AtomicU64,
    /// Sum over room ticks of the seats taken (a player-tick is one circle for one tick).
    pub player_ticks: AtomicU64,
    /// Snapshots put into mailboxes.
    pub snapshots: AtomicU64,
    /// Snapshots replaced in a mailbox before they were sent (skipped by a slow page).
    pub snapshots_replaced: AtomicU64,
    /// Events queued into mailboxes.
    pub events: AtomicU64,
    /// Connections closed because they did not keep up (write deadline or full queue).
    pub slow_closed: AtomicU64,
    /// Bytes of WebSocket frames handed to sockets.
    pub bytes_out: AtomicU64,
    /// Frames handed to sockets.
    pub frames_out: AtomicU64,
    /// Inputs received.
    pub inputs: AtomicU64,
    /// Inputs dropped because the player's queue was full.
    pub inputs_dropped: AtomicU64,
    /// Connections closed for a malformed or out-of-place message.
    pub bad_messages: AtomicU64,
    /// How long each room tick took (simulation, encoding, fan-out).
    pub tick_duration: DurationHistogram,
    /// How late each room tick started against its schedule.
    pub tick_lateness: DurationHistogram,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            connections: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            player_ticks: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            snapshots_replaced: AtomicU64::new(0),
            events: AtomicU64::new(0),
            slow_closed: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            inputs: AtomicU64::new(0),
            inputs_dropped: AtomicU64::new(0),
            bad_messages: AtomicU64::new(0),
            tick_duration: DurationHistogram::default(),
            tick_lateness: DurationHistogram::default(),
        }
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// This process's user + system CPU time, in microseconds.
pub fn process_cpu_us() -> u64 {
    // SAFETY: getrusage only writes the struct we pass, which is plain old data and
    // zero-initialised.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage
    };
    let us = |t: libc::timeval| (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// This process's resident set size in bytes (Linux), or 0.
pub fn process_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl Stats {
    /// The counters as JSON, with the room census passed in by the caller.
    pub fn to_json(&self, tick_hz: u32, census: Census) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "tick_hz": tick_hz,
            "rooms": census.rooms,
            "players": census.players,
            "bots": census.bots,
            "spectators": census.spectators,
            "connections": get(&self.connections),
            "ticks": get(&self.ticks),
            "player_ticks": get(&self.player_ticks),
            "snapshots": get(&self.snapshots),
            "snapshots_replaced": get(&self.snapshots_replaced),
            "events": get(&self.events),
            "slow_closed": get(&self.slow_closed),
            "bytes_out": get(&self.bytes_out),
            "frames_out": get(&self.frames_out),
            "inputs": get(&self.inputs),
            "inputs_dropped": get(&self.inputs_dropped),
            "bad_messages": get(&self.bad_messages),
            "cpu_us": process_cpu_us(),
            "rss_bytes": process_rss_bytes(),
            "tick_us": self.tick_duration.to_json(),
            "tick_late_us": self.tick_lateness.to_json(),
        })
    }
}

/// How many rooms, seats and watchers there are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Rooms running.
    pub rooms: u64,
    /// Seats taken, bots included.
    pub players: u64,
    /// Seats taken by bots.
    pub bots: u64,
    /// People watching.
    pub spectators: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let h = DurationHistogram::default();
        for us in [
            0u64, 5, 5, 999, 1_000, 1_099, 1_100, 99_999, 100_000, 10_000_000,
        ] {
            h.record(Duration::from_micros(us));
        }
        let pairs: Vec<(u64, u64)> = h
            .to_json()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (0, 1),
                (5, 2),
                (999, 1),
                (1_000, 2),
                (1_100, 1),
                (99_900, 1),
                (100_000, 2)
            ]
        );
        assert_eq!(quantile(&pairs, 0.5), 1_000);
        assert_eq!(quantile(&pairs, 0.4), 999);
        assert_eq!(quantile(&pairs, 0.1), 0);
        assert_eq!(quantile(&pairs, 1.0), 100_000);
        assert_eq!(quantile(&[], 0.99), 0);
    }

    #[test]
    fn process_figures() {
        assert!(process_cpu_us() > 0 || cfg!(not(unix)));
        if cfg!(target_os = "linux") {
            assert!(process_rss_bytes() > 1 << 20);
        }
    }
}
