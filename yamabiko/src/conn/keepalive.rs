//! Keepalive: a ping every `interval`; a connection from which nothing at all arrives
//! within `timeout` of a ping is failed.
//!
//! [`Schedule`] decides, without a clock of its own, when a ping is due and when the
//! peer counts as gone; the async driver ([`Heartbeat`], a timer polled inside the
//! reader, so no task of its own) and the blocking driver (socket timeouts) feed it
//! the time and what they heard.
//!
//! **What counts as an answer: anything.** Every byte read from the peer after a ping
//! proves the path alive, not only the pong: a peer busy sending a large message has
//! its pong queued behind that message, and must not be dropped for being busy. A
//! path that is dead (a peer that slept, a NAT that forgot the mapping, a half-open
//! TCP connection) delivers nothing at all, which is what the timeout catches.

use std::future::Future;
use std::ops::{Add, Sub};
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

/// Keepalive settings: ping every `interval`; if nothing at all (a pong, a message,
/// any frame) arrives within `timeout` of a ping, fail the connection — reads return
/// [`Error::KeepaliveTimeout`](crate::Error::KeepaliveTimeout), the peer gets close
/// 1011 if the transport still takes it, and the transport is dropped.
///
/// On by default ([`Keepalive::default`], 20 s and 20 s, as python-websockets), for
/// [`Upgrader`](crate::Upgrader), [`Dialer`](crate::Dialer), the axum extractor and
/// the blocking API alike; `keepalive(None)` turns it off. Why on: without it a peer
/// that vanished without a word (a laptop that slept, a NAT or load balancer that
/// dropped the mapping, a half-open TCP connection) is never noticed — a server keeps
/// its memory and descriptor forever, a client waits forever for the next message —
/// and TCP's own keepalive starts after two hours. A ping every 20 s also keeps
/// connections open through proxies that close idle ones (commonly after 60 s). It
/// costs a 6-byte frame (10 from a client) each way per interval, and no task.
///
/// Like every control frame handler, keepalive runs inside read calls: pings go out
/// and the timeout is checked while a task reads the connection (`read_message`,
/// `next_reader`, the `Stream`), which a connection should always have anyway.
///
/// ```no_run
/// use std::time::Duration;
/// use yamabiko::{Keepalive, Upgrader};
/// // Notice a dead peer within 10 s at most: a ping every 5 s, 5 s to hear back.
/// let upgrader = Upgrader::new().keepalive(Keepalive::new(
///     Duration::from_secs(5),
///     Duration::from_secs(5),
/// ));
/// # let _ = upgrader;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// How often to ping (at least 1 ms).
    pub interval: Duration,
    /// How long after a ping something must arrive (at least 1 ms).
    pub timeout: Duration,
}

impl Keepalive {
    /// Pings every `interval`; fails the connection when nothing arrives within
    /// `timeout` of a ping. A dead peer is noticed between `timeout` and
    /// `interval + timeout` after it went silent.
    pub const fn new(interval: Duration, timeout: Duration) -> Self {
        Keepalive { interval, timeout }
    }
}

impl Default for Keepalive {
    /// 20 s and 20 s (python-websockets' defaults).
    fn default() -> Self {
        Keepalive::new(Duration::from_secs(20), Duration::from_secs(20))
    }
}

/// The reason of the close frame (1011) that ends a connection whose peer did not
/// answer a keepalive ping.
pub(crate) const KEEPALIVE_REASON: &str = "keepalive ping timeout";

/// The shortest interval and timeout: a zero would ping in a loop.
const MIN_PERIOD: Duration = Duration::from_millis(1);

/// What is due at a given time.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<I> {
    /// Nothing until the given instant.
    Wait(I),
    /// Send a ping with this payload; then nothing until the given instant.
    Ping([u8; 4], I),
    /// Nothing arrived within the timeout of a ping: fail the connection.
    Dead,
}

/// When to ping and when to give up, given the time and whether anything arrived.
/// Generic over the instant type: tokio's for the async driver, `std`'s for the
/// blocking one.
#[derive(Debug)]
pub(crate) struct Schedule<I> {
    interval: Duration,
    timeout: Duration,
    next_ping: I,
    /// When the oldest ping not yet followed by anything from the peer must have
    /// been answered.
    answer_by: Option<I>,
    /// Something arrived since the last [`step`](Self::step).
    heard: bool,
    /// The payload of the last ping (its sequence number).
    sequence: u32,
    /// When the last ping went out, until its pong arrives.
    sent_at: Option<I>,
    latency: Option<Duration>,
}

impl<I> Schedule<I>
where
    I: Copy + Ord + Add<Duration, Output = I> + Sub<I, Output = Duration>,
{
    /// The first ping is due one interval after `now`.
    pub(crate) fn new(keepalive: Keepalive, now: I) -> Self {
        let interval = keepalive.interval.max(MIN_PERIOD);
        Schedule {
            interval,
            timeout: keepalive.timeout.max(MIN_PERIOD),
            next_ping: now + interval,
            answer_by: None,
            heard: false,
            // Random, so that the pongs of the application's own pings (of
            // whatever payload) are rarely taken for ours.
            sequence: rand::random(),
            sent_at: None,
            latency: None,
        }
    }

    /// Notes that bytes arrived from the peer.
    #[inline]
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// When [`step`](Self::step) has something to do next.
    pub(crate) fn wake_at(&self) -> I {
        match self.answer_by {
            Some(by) => by.min(self.next_ping),
            None => self.next_ping,
        }
    }

    /// What is due at `now`. Nothing heard between a ping and its timeout is
    /// [`Step::Dead`]; otherwise a ping when one is due, and the next instant to call
    /// again (always after `now`).
    pub(crate) fn step(&mut self, now: I) -> Step<I> {
        if std::mem::take(&mut self.heard) {
            // The peer was heard from since the pings before: they are answered.
            self.answer_by = None;
        }
        if self.answer_by.is_some_and(|by| now >= by) {
            return Step::Dead;
        }
        if now < self.next_ping {
            return Step::Wait(self.wake_at());
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.sent_at = Some(now);
        self.answer_by.get_or_insert(now + self.timeout);
        // After a long pause (nobody read), the schedule starts again from now
        // rather than sending the pings it missed.
        self.next_ping = now + self.interval;
        Step::Ping(self.sequence.to_be_bytes(), self.wake_at())
    }

    /// A pong arrived: if it answers the last ping, its round trip is the latency.
    pub(crate) fn pong(&mut self, payload: &[u8], now: I) {
        if payload == self.sequence.to_be_bytes() {
            if let Some(sent) = self.sent_at.take() {
                self.latency = Some(now - sent);
            }
        }
    }

    /// The round trip of the last ping that was answered.
    pub(crate) fn latency(&self) -> Option<Duration> {
        self.latency
    }
}

/// A [`Heartbeat`] put away with a sleeping connection: its schedule alone, the
/// instants as nanoseconds from [`epoch`] — inline, about half a boxed heartbeat.
pub(crate) struct Nap {
    interval: u64,
    timeout: u64,
    next_ping: u64,
    /// `u64::MAX`: none.
    answer_by: u64,
    /// `u64::MAX`: none.
    sent_at: u64,
    /// `u64::MAX`: none.
    latency: u64,
    sequence: u32,
    heard: bool,
}

/// The instant sleeping connections count from: fixed the first time it is asked
/// for (a [`Hibernator`](crate::Hibernator) asks when it is made).
pub(crate) fn epoch() -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    tokio::time::Instant::from_std(*EPOCH.get_or_init(std::time::Instant::now))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

impl Nap {
    fn pack(s: &Schedule<tokio::time::Instant>) -> Nap {
        let e = epoch();
        // An instant before the epoch (only a ping sent before any connection slept)
        // counts as the epoch: at worst one latency figure is off.
        let at = |i: tokio::time::Instant| nanos(i.saturating_duration_since(e));
        Nap {
            interval: nanos(s.interval),
            timeout: nanos(s.timeout),
            next_ping: at(s.next_ping),
            answer_by: s.answer_by.map_or(u64::MAX, at),
            sent_at: s.sent_at.map_or(u64::MAX, at),
            latency: s.latency.map_or(u64::MAX, nanos),
            sequence: s.sequence,
            heard: s.heard,
        }
    }

    fn unpack(&self) -> Schedule<tokio::time::Instant> {
        let e = epoch();
        let at = |n: u64| e + Duration::from_nanos(n);
        let some = |n: u64| (n != u64::MAX).then_some(n);
        Schedule {
            interval: Duration::from_nanos(self.interval),
            timeout: Duration::from_nanos(self.timeout),
            next_ping: at(self.next_ping),
            answer_by: some(self.answer_by).map(at),
            heard: self.heard,
            sequence: self.sequence,
            sent_at: some(self.sent_at).map(at),
            latency: some(self.latency).map(Duration::from_nanos),
        }
    }

    /// When [`step`](Self::step) has something to do next.
    pub(crate) fn due(&self) -> tokio::time::Instant {
        self.unpack().wake_at()
    }

    /// Notes that bytes arrived (read for the connection while it slept).
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    /// A pong arrived while the connection slept (see [`Schedule::pong`]).
    pub(crate) fn pong(&mut self, payload: &[u8], now: tokio::time::Instant) {
        let mut schedule = self.unpack();
        schedule.pong(payload, now);
        *self = Nap::pack(&schedule);
    }

    /// What is due at `now` (see [`Schedule::step`]).
    pub(crate) fn step(&mut self, now: tokio::time::Instant) -> Step<tokio::time::Instant> {
        let mut schedule = self.unpack();
        let step = schedule.step(now);
        *self = Nap::pack(&schedule);
        step
    }
}

/// Keepalive in the async driver: the schedule and one timer, polled by the reader
/// where it would otherwise wait for input (so a connection needs no task of its
/// own for it). The timer is made on first use, inside the runtime.
pub(crate) struct Heartbeat {
    schedule: Schedule<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// What the reader must do, from [`Heartbeat::poll`].
pub(crate) enum Beat {
    /// Nothing; the task is woken when something may be due.
    Idle,
    /// Queue a ping with this payload (then poll again).
    Ping([u8; 4]),
    /// Fail the connection.
    Dead,
}

impl Heartbeat {
    pub(crate) fn new(keepalive: Keepalive) -> Box<Self> {
        Box::new(Heartbeat {
            schedule: Schedule::new(keepalive, tokio::time::Instant::now()),
            sleep: None,
        })
    }

    /// Notes that bytes arrived.
    #[inline]
    pub(crate) fn heard(&mut self) {
        self.schedule.heard();
    }

    /// A pong arrived.
    pub(crate) fn pong(&mut self, payload: &[u8]) {
        self.schedule.pong(payload, tokio::time::Instant::now());
    }

    /// See [`Schedule::latency`].
    pub(crate) fn latency(&self) -> Option<Duration> {
        self.schedule.latency()
    }

    /// The schedule, to put away while the connection sleeps (the timer goes with
    /// the heartbeat).
    pub(crate) fn to_nap(&self) -> Nap {
        Nap::pack(&self.schedule)
    }

    /// The heartbeat of a connection woken up.
    pub(crate) fn from_nap(nap: &Nap) -> Box<Self> {
        Box::new(Heartbeat {
            schedule: nap.unpack(),
            sleep: None,
        })
    }

    /// Called where the reader is about to return `Pending`: whether a ping or the
    /// end is due, and otherwise arranges to be woken when one may be.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Beat {
        let at = self.schedule.wake_at();
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        if sleep.as_mut().poll(cx).is_pending() {
            return Beat::Idle;
        }
        // The timer fired: it is at least `at`, whatever the clock's rounding says.
        let now = tokio::time::Instant::now().max(at);
        let beat = match self.schedule.step(now) {
            Step::Wait(_) => Beat::Idle,
            Step::Ping(payload, _) => Beat::Ping(payload),
            Step::Dead => return Beat::Dead,
        };
        // Arm the timer for what comes next (later than `now`, so it is pending).
        let next = self.schedule.wake_at();
        sleep.as_mut().reset(next);
        if sleep.as_mut().poll(cx).is_ready() {
            // Due already (a deadline inside the timer's current tick): be polled
            // again rather than never.
            cx.waker().wake_by_ref();
        }
        beat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ping_at(schedule: &mut Schedule<Instant>, now: Instant) -> [u8; 4] {
        match schedule.step(now) {
            Step::Ping(payload, _) => payload,
            other => panic!("expected a ping, got {other:?}"),
        }
    }

    #[test]
    fn pings_every_interval_and_fails_without_an_answer() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Keepalive::new(secs(20), secs(10)), t0);
        assert_eq!(s.wake_at(), t0 + secs(20));
        assert_eq!(s.step(t0 + secs(5)), Step::Wait(t0 + secs(20)));
        // The ping; its answer is due 10 s later, before the next ping.
        match s.step(t0 + secs(20)) {
            Step::Ping(_, next) => assert_eq!(next, t0 + secs(30)),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.step(t0 + secs(29)), Step::Wait(t0 + secs(30)));
        assert_eq!(s.step(t0 + secs(30)), Step::Dead);
    }

    #[test]
    fn anything_heard_after_the_ping_is_an_answer() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Keepalive::new(secs(20), secs(10)), t0);
        ping_at(&mut s, t0 + secs(20));
        s.heard(); // a data frame, not the pong
        assert_eq!(s.step(t0 + secs(30)), Step::Wait(t0 + secs(40)));
        // The next ping needs an answer of its own.
        ping_at(&mut s, t0 + secs(40));
        assert_eq!(s.step(t0 + secs(50)), Step::Dead);
    }

    #[test]
    fn what_was_heard_before_a_ping_does_not_answer_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Keepalive::new(secs(20), secs(10)), t0);
        s.heard();
        ping_at(&mut s, t0 + secs(20));
        assert_eq!(s.step(t0 + secs(30)), Step::Dead);
    }

    #[test]
    fn a_timeout_longer_than_the_interval_counts_from_the_oldest_unanswered_ping() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Keepalive::new(secs(5), secs(12)), t0);
        ping_at(&mut s, t0 + secs(5)); // answer by 17
        ping_at(&mut s, t0 + secs(10));
        ping_at(&mut s, t0 + secs(15));
        assert_eq!(s.step(t0 + secs(16)), Step::Wait(t0 + secs(17)));
        assert_eq!(s.step(t0 + secs(17)), Step::Dead);
        // Heard in between: the clock starts again at the next ping.
        let mut s = Schedule::new(Keepalive::new(secs(5), secs(12)), t0);
        ping_at(&mut s, t0 + secs(5));
        s.heard();
        ping_at(&mut s, t0 + secs(10)); // answer by 22
        assert_eq!(s.step(t0 + secs(12)), Step::Wait(t0 + secs(15)));
        ping_at(&mut s, t0 + secs(15));
        ping_at(&mut s, t0 + secs(20));
        assert_eq!(s.step(t0 + secs(21)), Step::Wait(t0 + secs(22)));
        assert_eq!(s.step(t0 + secs(22)), Step::Dead);
    }

    #[test]
    fn latency_is_the_round_trip_of_the_last_ping() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Keepalive::new(secs(20), secs(10)), t0);
        assert_eq!(s.latency(), None);
        let payload = ping_at(&mut s, t0 + secs(20));
        s.pong(b"other", t0 + secs(21)); // the application's own ping
        assert_eq!(s.latency(), None);
        s.heard(); // the driver notes the bytes, then hands over the pong
        s.pong(&payload, t0 + secs(20) + Duration::from_millis(35));
        assert_eq!(s.latency(), Some(Duration::from_millis(35)));
        // A second copy of the pong does not measure again.
        s.pong(&payload, t0 + secs(25));
        assert_eq!(s.latency(), Some(Duration::from_millis(35)));
        // Each ping has its own payload.
        let next = ping_at(&mut s, t0 + secs(40));
        assert_ne!(next, payload);
    }

    #[test]
    fn a_late_reader_pings_once_and_starts_again_from_now() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Keepalive::new(secs(20), secs(10)), t0);
        match s.step(t0 + secs(95)) {
            Step::Ping(_, next) => assert_eq!(next, t0 + secs(105)),
            other => panic!("{other:?}"),
        }
        s.heard();
        assert_eq!(s.step(t0 + secs(105)), Step::Wait(t0 + secs(115)));
    }

    #[test]
    fn zero_periods_are_raised_to_a_millisecond() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Keepalive::new(Duration::ZERO, Duration::ZERO), t0);
        match s.step(t0 + MIN_PERIOD) {
            Step::Ping(_, next) => assert!(next > t0 + MIN_PERIOD),
            other => panic!("{other:?}"),
        }
    }
}
