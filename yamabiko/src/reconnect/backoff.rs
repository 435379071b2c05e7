//! The backoff settings and the plan of when to dial next — no clock or sleep of its
//! own: the async and the blocking reconnecting clients give it the time and sleep.

use super::verdict::{come_back_later, verdict, Verdict};
use crate::error::Error;
use std::time::{Duration, Instant, SystemTime};

/// How a reconnecting client spaces its dials (see the [module](crate::reconnect)).
///
/// The delay before the n-th retry in a row is drawn at random between half and all
/// of `initial × 2ⁿ⁻¹`, at most `max`; a connection that stayed up for
/// `stable_after` resets it.
///
/// ```
/// use std::time::Duration;
/// use yamabiko::reconnect::Backoff;
/// let backoff = Backoff {
///     initial: Duration::from_millis(250),
///     max: Duration::from_secs(10),
///     ..Backoff::default()
/// };
/// # let _ = backoff;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay (and the most a redial after a long-lived connection waits).
    pub initial: Duration,
    /// The longest delay: the doubling stops here.
    pub max: Duration,
    /// How long a connection must have stayed up for the backoff to start again from
    /// `initial`.
    pub stable_after: Duration,
}

impl Default for Backoff {
    /// 1 s doubling to 60 s; reset after a connection stayed up 10 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            stable_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before the retry after `failures` failures in a row (≥ 1): between
    /// half and all of `initial × 2^(failures−1)`, at most `max`.
    fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let full = self
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        jittered(full / 2, full)
    }
}

/// A uniformly random duration in `low..=high`.
fn jittered(low: Duration, high: Duration) -> Duration {
    let span = u64::try_from((high - low).as_nanos()).unwrap_or(u64::MAX);
    low + Duration::from_nanos(rand::random_range(0..=span))
}

/// When a reconnecting client dials next, from what happened so far.
#[derive(Debug)]
pub(crate) struct Plan {
    backoff: Backoff,
    /// Dials that failed, and connections that ended too soon, in a row.
    failures: u32,
    /// When the connection handed out last was made, until the next dial.
    up_since: Option<Instant>,
    /// The last connection was told to come back later.
    later: bool,
    /// How long to wait before the next dial.
    wait: Duration,
}

impl Plan {
    pub(crate) fn new(backoff: Backoff) -> Self {
        Plan {
            backoff,
            failures: 0,
            up_since: None,
            later: false,
            wait: Duration::ZERO,
        }
    }

    pub(crate) fn set_backoff(&mut self, backoff: Backoff) {
        self.backoff = backoff;
    }

    /// How long to wait before the next dial, now that one is wanted.
    pub(crate) fn before_dial(&mut self, now: Instant) -> Duration {
        if let Some(since) = self.up_since.take() {
            let later = std::mem::take(&mut self.later);
            if now.saturating_duration_since(since) >= self.backoff.stable_after {
                self.failures = 0;
                // Not all clients of a restarted server at the same instant.
                self.wait = jittered(Duration::ZERO, self.backoff.initial);
                if later {
                    self.failures = 1;
                    self.wait = self.backoff.delay(1);
                }
            } else {
                self.failures = self.failures.saturating_add(1);
                self.wait = self.backoff.delay(self.failures);
            }
        }
        std::mem::take(&mut self.wait)
    }

    /// A dial succeeded at `now`.
    pub(crate) fn connected(&mut self, now: Instant) {
        self.up_since = Some(now);
        self.later = false;
    }

    /// A dial failed: `Err` when the error is fatal, else the wait is set.
    pub(crate) fn failed(&mut self, error: &Error) -> Result<(), ()> {
        match verdict(error, SystemTime::now()) {
            Verdict::Fatal => Err(()),
            Verdict::Retry(asked) => {
                self.failures = self.failures.saturating_add(1);
                let delay = self.backoff.delay(self.failures);
                self.wait = asked.map_or(delay, |asked| asked.max(delay));
                Ok(())
            }
        }
    }

    /// How the last connection ended.
    pub(crate) fn ended(&mut self, error: &Error) {
        self.later = come_back_later(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CloseCode, CloseFrame};
    use std::io;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn backoff() -> Backoff {
        Backoff {
            initial: ms(100),
            max: ms(1000),
            stable_after: ms(5000),
        }
    }

    fn refused() -> Error {
        Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn delays_double_with_jitter_up_to_the_bound() {
        let b = backoff();
        for _ in 0..200 {
            for (failures, full) in [
                (1, 100),
                (2, 200),
                (3, 400),
                (4, 800),
                (5, 1000),
                (60, 1000),
            ] {
                let d = b.delay(failures);
                assert!(d >= ms(full) / 2 && d <= ms(full), "{failures}: {d:?}");
            }
        }
    }

    #[test]
    fn the_first_dial_is_at_once_and_failures_back_off() {
        let t0 = Instant::now();
        let mut plan = Plan::new(backoff());
        assert_eq!(plan.before_dial(t0), Duration::ZERO);
        let mut highest = Duration::ZERO;
        for n in 1..=6u32 {
            plan.failed(&refused()).expect("transient");
            let wait = plan.before_dial(t0);
            let full = ms(100 * (1 << (n - 1))).min(ms(1000));
            assert!(wait >= full / 2 && wait <= full, "{n}: {wait:?}");
            highest = highest.max(wait);
        }
        assert!(highest <= ms(1000));
        assert!(plan.failed(&Error::Url("bad".into())).is_err());
    }

    #[test]
    fn only_a_connection_that_stayed_up_resets_the_backoff() {
        let t0 = Instant::now();
        let mut plan = Plan::new(backoff());
        plan.before_dial(t0);
        for _ in 0..4 {
            plan.failed(&refused()).expect("transient");
            plan.before_dial(t0);
        }
        // Up for a moment only: still backing off (the fifth failure in a row).
        plan.connected(t0);
        let wait = plan.before_dial(t0 + ms(10));
        assert!(wait >= ms(500), "{wait:?}");
        // Up long enough: the next dial is soon, and the backoff starts again.
        plan.connected(t0);
        let wait = plan.before_dial(t0 + ms(6000));
        assert!(wait <= ms(100), "{wait:?}");
        plan.failed(&refused()).expect("transient");
        let wait = plan.before_dial(t0 + ms(6000));
        assert!(wait >= ms(50) && wait <= ms(100), "{wait:?}");
    }

    #[test]
    fn come_back_later_waits_even_after_a_long_connection() {
        let t0 = Instant::now();
        let mut plan = Plan::new(Backoff {
            initial: ms(1000),
            ..backoff()
        });
        plan.before_dial(t0);
        plan.connected(t0);
        plan.ended(&Error::Closed(CloseFrame::new(
            CloseCode::SERVICE_RESTART,
            "",
        )));
        let wait = plan.before_dial(t0 + ms(6000));
        assert!(wait >= ms(500), "{wait:?}");
    }

    #[test]
    fn retry_after_is_waited_at_least() {
        let t0 = Instant::now();
        let mut plan = Plan::new(backoff());
        plan.before_dial(t0);
        let response = http::Response::builder()
            .status(503)
            .header("retry-after", "3")
            .body(())
            .expect("response");
        let e = crate::client::bad_handshake(response, bytes::Bytes::new());
        plan.failed(&e).expect("transient");
        assert_eq!(plan.before_dial(t0), Duration::from_secs(3));
    }
}
