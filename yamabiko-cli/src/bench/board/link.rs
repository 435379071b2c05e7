//! Connecting the way the board's page does: one dial bounded in time, and on a lost
//! connection exponential backoff with jitter — 0.5–1 × min(15 s, 0.5 s × 2ⁿ) — whose
//! attempt count is kept until a connection has stayed up for [`STABLE_AFTER`] (the
//! page's rule since a reconnect storm that did not settle; see `assets/app.js`).

use std::time::Duration;
use yamabiko::{Conn, Dialer, Error, MaybeTlsStream};

/// A connection to the board.
pub type BoardConn = Conn<MaybeTlsStream>;

/// The page's first reconnect delay ceiling.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The page's largest reconnect delay ceiling.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// A connection open this long has proved stable: the backoff starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The page's reconnect backoff.
pub struct Backoff {
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff at its first attempt.
    pub fn new() -> Self {
        Backoff {
            attempt: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// The next delay: jittered in [ceiling/2, ceiling], the ceiling doubling.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = BACKOFF_MIN
            .saturating_mul(1u32 << self.attempt.min(10))
            .min(BACKOFF_MAX);
        self.attempt = (self.attempt + 1).min(10);
        let half = ceiling / 2;
        half + half.mul_f64(self.rng.f64())
    }

    /// The connection proved stable: start over.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Dials `url`, bounded by the dialer's handshake timeout.
pub async fn dial(dialer: &Dialer, url: &str) -> Result<BoardConn, String> {
    match dialer.dial(url).await {
        Ok((conn, _)) => Ok(conn),
        Err(Error::BadHandshake(resp)) => Err(format!("refused: HTTP {}", resp.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// The close code a failed read means: the peer's close frame, or 1006.
pub fn close_code(e: &Error) -> u16 {
    match e {
        Error::Closed(frame) => frame.code.0,
        _ => 1006,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_caps_and_resets() {
        let mut b = Backoff::new();
        let d = b.next_delay();
        assert!(d >= BACKOFF_MIN / 2 && d <= BACKOFF_MIN, "{d:?}");
        let d = b.next_delay();
        assert!(d >= BACKOFF_MIN && d <= BACKOFF_MIN * 2, "{d:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= BACKOFF_MAX);
        }
        assert!(b.next_delay() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }
}
