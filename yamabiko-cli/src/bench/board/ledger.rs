//! What the generator's tasks record, shared: one clock, the measuring window,
//! counters, latency histograms, every acknowledged post, and per thread and post
//! number what the viewers saw (which id, how many viewers, when the last one got it).
//!
//! Hot-path updates (a viewer receiving a post) are atomics and one sharded histogram
//! lock, so thousands of viewer tasks do not queue behind each other.

use super::wire::Tag;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

/// Nanoseconds since the generator started: the time written into post bodies.
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Now, in nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The measuring window: posts sent inside it are counted and timed.
pub struct Window {
    start_ns: AtomicU64,
    end_ns: AtomicU64,
}

impl Window {
    /// A window that has not started.
    pub fn new() -> Self {
        Window {
            start_ns: AtomicU64::new(u64::MAX),
            end_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Opens the window at `ns`.
    pub fn open(&self, ns: u64) {
        self.start_ns.store(ns, Ordering::SeqCst);
    }

    /// Closes the window at `ns`.
    pub fn close(&self, ns: u64) {
        self.end_ns.store(ns, Ordering::SeqCst);
    }

    /// Whether a post sent at `ns` was sent inside the window.
    pub fn contains(&self, ns: u64) -> bool {
        ns >= self.start_ns.load(Ordering::Relaxed) && ns < self.end_ns.load(Ordering::Relaxed)
    }
}

/// A latency histogram in microseconds, sharded so concurrent recorders rarely meet.
pub struct Hist {
    shards: Vec<Mutex<Histogram<u64>>>,
}

/// Longest latency recorded (longer ones are clamped): 10 minutes, in microseconds.
const HIST_MAX_US: u64 = 600_000_000;

impl Hist {
    /// An empty histogram with `shards` locks.
    pub fn new(shards: usize) -> Self {
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(
                    Histogram::new_with_bounds(1, HIST_MAX_US, 3)
                        .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures")),
                )
            })
            .collect();
        Hist { shards }
    }

    /// Records `ns` nanoseconds in the shard of recorder `who`.
    pub fn record_ns(&self, who: usize, ns: u64) {
        let us = (ns / 1000).clamp(1, HIST_MAX_US);
        let shard = &self.shards[who % self.shards.len()];
        if let Ok(mut h) = shard.lock() {
            let _ = h.record(us);
        }
    }

    /// All shards added together.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, HIST_MAX_US, 3)
            .unwrap_or_else(|_| Histogram::new(3).expect("3 significant figures"));
        for s in &self.shards {
            if let Ok(h) = s.lock() {
                let _ = all.add(&*h);
            }
        }
        all
    }
}

/// What viewers saw of one post of one thread.
#[derive(Default)]
pub struct Slot {
    /// The id viewers received at this post number (0: none yet).
    pub id: AtomicI64,
    /// Viewers that received it (live or by resync).
    pub count: AtomicU32,
    /// When the last of them received it.
    pub last_ns: AtomicU64,
    /// When it was sent (from its body; 0 if not a post of this run).
    pub sent_ns: AtomicU64,
}

/// Slots per thread, by post number, growing in chunks.
pub struct Slots {
    chunks: RwLock<Vec<Box<[Slot]>>>,
}

const CHUNK: usize = 4096;
/// Post numbers tracked per thread, at most (16.7 million).
const MAX_CHUNKS: usize = 4096;

impl Slots {
    fn new() -> Self {
        Slots {
            chunks: RwLock::new(Vec::new()),
        }
    }

    /// Runs `f` on the slot of post number `no` (1, 2, …); `None` past the bound.
    pub fn with<R>(&self, no: i64, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        let i = usize::try_from(no.checked_sub(1)?).ok()?;
        let (c, o) = (i / CHUNK, i % CHUNK);
        if c >= MAX_CHUNKS {
            return None;
        }
        {
            let chunks = self.chunks.read().unwrap_or_else(|p| p.into_inner());
            if let Some(chunk) = chunks.get(c) {
                return Some(f(&chunk[o]));
            }
        }
        let mut chunks = self.chunks.write().unwrap_or_else(|p| p.into_inner());
        while chunks.len() <= c {
            chunks.push((0..CHUNK).map(|_| Slot::default()).collect());
        }
        Some(f(&chunks[c][o]))
    }
}

/// One thread the run uses.
pub struct ThreadState {
    /// Its id on the board.
    pub id: i64,
    /// Viewers watching it from the start (each must receive every post).
    pub viewers: AtomicU32,
    /// The highest post number acknowledged to a poster.
    pub max_acked_no: AtomicI64,
    /// What viewers saw, by post number.
    pub slots: Slots,
}

impl ThreadState {
    /// A thread with no viewers yet.
    pub fn new(id: i64) -> Self {
        ThreadState {
            id,
            viewers: AtomicU32::new(0),
            max_acked_no: AtomicI64::new(0),
            slots: Slots::new(),
        }
    }
}

/// An acknowledged post.
#[derive(Clone, Copy, Debug)]
pub struct Acked {
    /// Index of its thread in the run.
    pub thread: usize,
    /// Its id.
    pub id: i64,
    /// Its number in the thread.
    pub no: i64,
    /// Its tag.
    pub tag: Tag,
    /// When it was first sent.
    pub sent_ns: u64,
}

/// Where a viewer is: how far it holds every post of its thread.
pub struct Mark {
    /// Index of its thread.
    pub thread: usize,
    /// The highest post number up to which it holds every post (-1: not started).
    pub last_no: AtomicI64,
    /// Whether it took part from the start (it must get every post).
    pub counted: AtomicBool,
    /// Whether it is connected, subscribed and caught up right now.
    pub live: AtomicBool,
}

/// Counters, all monotonic.
#[derive(Default)]
pub struct Counters {
    /// Posts sent (first sends, not resends).
    pub posts_sent: AtomicU64,
    /// Posts re-sent after a reconnect (same client id).
    pub resent: AtomicU64,
    /// Acknowledgements received.
    pub acked: AtomicU64,
    /// Posts refused by an `error` naming them (any code but the two limits).
    pub refused: AtomicU64,
    /// Refusals for the post rate limit (the generator should stay within it).
    pub rate_limited: AtomicU64,
    /// `too_many_requests` errors.
    pub too_many_requests: AtomicU64,
    /// Posts with neither an ack nor an error within the post timeout.
    pub hung: AtomicU64,
    /// Scheduled posts no poster could send in time (the generator fell short).
    pub late: AtomicU64,
    /// Longest time a refusal took, in nanoseconds.
    pub refusal_max_ns: AtomicU64,
    /// Posts received by viewers (live and by resync).
    pub deliveries: AtomicU64,
    /// ... of which during the measuring window (by receive time).
    pub window_deliveries: AtomicU64,
    /// Live `post` messages of a thread that arrived before that thread's reply.
    pub early: AtomicU64,
    /// Posts a viewer received a second time.
    pub duplicates: AtomicU64,
    /// Posts that arrived after a gap in the numbering (out of order).
    pub gaps: AtomicU64,
    /// A post number received with another id than other viewers got.
    pub mismatched: AtomicU64,
    /// `presence` messages received by viewers.
    pub presence: AtomicU64,
    /// `error` messages received by viewers.
    pub viewer_errors: AtomicU64,
    /// Messages that were not JSON of the board's protocol.
    pub unparsable: AtomicU64,
    /// Connections that ended while in use.
    pub disconnects: AtomicU64,
    /// Connections made again after one ended.
    pub reconnects: AtomicU64,
    /// Attempts to connect that failed.
    pub connect_failures: AtomicU64,
}

/// Everything the tasks share.
pub struct Ledger {
    /// The clock post bodies carry.
    pub clock: Clock,
    /// The measuring window.
    pub window: Window,
    /// Counters.
    pub counters: Counters,
    /// Post sent → its ack.
    pub ack_latency: Hist,
    /// Post sent → one viewer has it (every delivery).
    pub delivery_latency: Hist,
    /// The same, for deliveries to a viewer on another instance than the post was
    /// sent to (with several instances).
    pub cross_latency: Hist,
    /// The threads of the run, by index.
    pub threads: Vec<ThreadState>,
    /// Every viewer's progress, by viewer index.
    pub marks: Vec<Mark>,
    /// Acknowledged posts.
    pub acked: Mutex<Vec<Acked>>,
    /// Refusal codes and how often each came.
    pub refusals: Mutex<BTreeMap<String, u64>>,
    /// The first refusal message of each code, for the report.
    pub refusal_texts: Mutex<BTreeMap<String, String>>,
    /// Close codes of connections that ended, and how often.
    pub close_codes: Mutex<BTreeMap<u16, u64>>,
    /// Viewers that were live and are not now.
    pub not_live: AtomicI64,
    /// Set once every viewer had its chance to connect: later ones are not counted.
    pub setup_over: AtomicBool,
}

impl Ledger {
    /// A ledger for `threads` (by id) and `viewers` viewers (viewer `i` watches thread
    /// `i % threads.len()`).
    pub fn new(threads: &[i64], viewers: usize) -> Self {
        let shards = 64;
        Ledger {
            clock: Clock::new(),
            window: Window::new(),
            counters: Counters::default(),
            ack_latency: Hist::new(8),
            delivery_latency: Hist::new(shards),
            cross_latency: Hist::new(shards),
            threads: threads.iter().map(|&id| ThreadState::new(id)).collect(),
            marks: (0..viewers)
                .map(|i| Mark {
                    thread: i % threads.len().max(1),
                    last_no: AtomicI64::new(-1),
                    counted: AtomicBool::new(false),
                    live: AtomicBool::new(false),
                })
                .collect(),
            acked: Mutex::new(Vec::new()),
            refusals: Mutex::new(BTreeMap::new()),
            refusal_texts: Mutex::new(BTreeMap::new()),
            close_codes: Mutex::new(BTreeMap::new()),
            not_live: AtomicI64::new(0),
            setup_over: AtomicBool::new(false),
        }
    }

    /// Counts a refusal of `code`, keeping the first message of each code.
    pub fn refusal(&self, code: &str, message: &str) {
        if let Ok(mut m) = self.refusals.lock() {
            *m.entry(code.to_string()).or_default() += 1;
        }
        if let Ok(mut m) = self.refusal_texts.lock() {
            m.entry(code.to_string())
                .or_insert_with(|| message.to_string());
        }
    }

    /// Counts a connection that ended with `code` (1006: without a close frame).
    pub fn closed(&self, code: u16) {
        self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.close_codes.lock() {
            *m.entry(code).or_default() += 1;
        }
    }

    /// Records an acknowledged post.
    pub fn ack(&self, a: Acked) {
        if let Some(t) = self.threads.get(a.thread) {
            t.max_acked_no.fetch_max(a.no, Ordering::Relaxed);
        }
        if let Ok(mut v) = self.acked.lock() {
            v.push(a);
        }
    }

    /// Viewers that took part from the start and do not yet hold every acknowledged
    /// post of their thread.
    pub fn behind(&self) -> usize {
        self.marks
            .iter()
            .filter(|m| {
                m.counted.load(Ordering::Relaxed)
                    && m.last_no.load(Ordering::Relaxed)
                        < self.threads[m.thread].max_acked_no.load(Ordering::Relaxed)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_grow_and_keep_values() {
        let s = Slots::new();
        assert!(s.with(0, |_| ()).is_none());
        s.with(1, |slot| slot.count.fetch_add(1, Ordering::Relaxed));
        s.with(5000, |slot| slot.id.store(9, Ordering::Relaxed));
        assert_eq!(
            s.with(1, |slot| slot.count.load(Ordering::Relaxed)),
            Some(1)
        );
        assert_eq!(
            s.with(5000, |slot| slot.id.load(Ordering::Relaxed)),
            Some(9)
        );
        assert!(s.with((CHUNK * MAX_CHUNKS) as i64 + 1, |_| ()).is_none());
    }

    #[test]
    fn histogram_shards_merge() {
        let h = Hist::new(4);
        for i in 0..100u64 {
            h.record_ns(i as usize, (i + 1) * 1_000_000);
        }
        let m = h.merged();
        assert_eq!(m.len(), 100);
        assert!(m.value_at_quantile(0.5) >= 49_000 && m.value_at_quantile(0.5) <= 51_000);
    }

    #[test]
    fn window_bounds() {
        let w = Window::new();
        assert!(!w.contains(5));
        w.open(10);
        assert!(w.contains(10) && w.contains(1000));
        w.close(20);
        assert!(w.contains(19) && !w.contains(20) && !w.contains(9));
    }
}
