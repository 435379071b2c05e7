//! Keepalive in the blocking driver: the same [`Schedule`] as the async driver, run by
//! the reading thread. Its reads get a socket timeout no later than the next keepalive
//! event, so a read with no deadline of its own still wakes to ping and to notice a
//! silent peer; nothing runs while no thread reads (as with the control handlers).
//!
//! The ping goes out under the write lock, which a writer thread may hold for as long
//! as its write blocks: the reader never waits for it — it tries the lock, and while it
//! cannot take it, it keeps reading in short slices and tries again. The timeout
//! keeps running meanwhile, so a peer that is gone is noticed all the same.

use super::shared::Shared;
use super::transport::Transport;
use crate::conn::keepalive::{Schedule, Step};
use crate::conn::Keepalive;
use crate::proto::OpCode;
use std::time::{Duration, Instant};

/// How often a ping the write lock kept back is tried again.
const RETRY_PING: Duration = Duration::from_millis(20);

/// The longest a ping's write may block the reader (a full transport); what is not
/// written by then goes out with the next write.
const PING_WRITE_WAIT: Duration = Duration::from_secs(1);

/// A reader's keepalive state.
pub(crate) struct Heartbeat {
    schedule: Schedule<Instant>,
    /// A ping that is due but could not be queued yet (the write lock was busy).
    owed: Option<[u8; 4]>,
    timeout: Duration,
}

/// What the reader does before its next read.
pub(crate) enum Turn {
    /// Read with at most this timeout.
    Read(Duration),
    /// Fail the connection: nothing came back in time.
    Dead,
}

impl Heartbeat {
    pub(crate) fn new(keepalive: Keepalive) -> Box<Self> {
        Box::new(Heartbeat {
            schedule: Schedule::new(keepalive, Instant::now()),
            owed: None,
            timeout: keepalive.timeout,
        })
    }

    #[inline]
    pub(crate) fn heard(&mut self) {
        self.schedule.heard();
    }

    pub(crate) fn pong(&mut self, payload: &[u8]) {
        self.schedule.pong(payload, Instant::now());
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        self.schedule.latency()
    }

    /// Before a read: sends the ping that is due (if the write lock is free), and
    /// says how long the read may block before the next keepalive event.
    pub(crate) fn turn<S: Transport>(&mut self, shared: &Shared<S>) -> Turn {
        let now = Instant::now();
        if now >= self.schedule.wake_at() {
            match self.schedule.step(now) {
                Step::Wait(_) => {}
                Step::Ping(payload, _) => self.owed = Some(payload),
                Step::Dead => return Turn::Dead,
            }
        }
        if let Some(payload) = self.owed {
            if send_ping(shared, &payload, now + self.timeout.min(PING_WRITE_WAIT)) {
                self.owed = None;
            }
        }
        let until = self
            .schedule
            .wake_at()
            .saturating_duration_since(Instant::now());
        let until = match self.owed {
            Some(_) => until.min(RETRY_PING),
            None => until,
        };
        Turn::Read(coarse(until))
    }
}

/// `until` rounded down to a power of two milliseconds (at least 1 ms: a zero
/// timeout means "none" to the OS). Waking a little early costs one more turn; the
/// rounding keeps the socket timeout the same from one read to the next, so that it
/// is not set again (a system call) before every read.
fn coarse(until: Duration) -> Duration {
    let ms = u64::try_from(until.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(1 << ms.ilog2())
}

/// Queues a ping and writes it (by `by`; the rest stays queued), unless another
/// thread holds the write lock: `false` then, to try again later.
fn send_ping<S: Transport>(shared: &Shared<S>, payload: &[u8; 4], by: Instant) -> bool {
    let Some(mut g) = shared.try_lock() else {
        return false;
    };
    if g.check_writable().is_err() {
        return true; // closing or closed: no more pings
    }
    g.push_frame(shared.role, OpCode::Ping, true, false, payload);
    // A failure shows in the next read or write; a timeout leaves the ping queued.
    let _ = g.flush(Some(by));
    true
}

#[cfg(test)]
mod tests {
    use super::coarse;
    use std::time::Duration;

    #[test]
    fn read_timeouts_are_powers_of_two_milliseconds_not_above_the_wait() {
        let ms = Duration::from_millis;
        assert_eq!(coarse(Duration::ZERO), ms(1));
        assert_eq!(coarse(Duration::from_micros(300)), ms(1));
        assert_eq!(coarse(ms(3)), ms(2));
        assert_eq!(coarse(ms(1024)), ms(1024));
        assert_eq!(coarse(ms(20_000)), ms(16_384));
        assert_eq!(coarse(ms(19_000)), coarse(ms(17_000)));
    }
}
