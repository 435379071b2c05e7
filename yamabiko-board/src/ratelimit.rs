//! Per-connection rate limits: a sliding window over the last N events.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `max` events in any `window`.
#[derive(Debug)]
pub struct SlidingWindow {
    max: usize,
    window: Duration,
    events: VecDeque<Instant>,
}

impl SlidingWindow {
    /// A limiter allowing `max` events per `window`. It holds nothing until the first
    /// event (an idle connection costs no buffer), then at most `max` instants.
    pub fn new(max: usize, window: Duration) -> Self {
        SlidingWindow {
            max: max.max(1),
            window,
            events: VecDeque::new(),
        }
    }

    /// Records an event at `now` if allowed; otherwise returns how long until the
    /// oldest event leaves the window.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        while let Some(&oldest) = self.events.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                self.events.pop_front();
            } else {
                break;
            }
        }
        if self.events.len() < self.max {
            self.events.push_back(now);
            return Ok(());
        }
        let oldest = self.events.front().copied().unwrap_or(now);
        Err(self
            .window
            .saturating_sub(now.saturating_duration_since(oldest)))
    }

    /// Forgets the last recorded event (the action it allowed did not happen).
    pub fn undo(&mut self) {
        self.events.pop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_per_ten_seconds() {
        let t0 = Instant::now();
        let mut rl = SlidingWindow::new(5, Duration::from_secs(10));
        for i in 0..5 {
            assert!(rl.check(t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = rl.check(t0 + Duration::from_secs(5)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5));
        assert!(rl.check(t0 + Duration::from_secs(10)).is_ok());
        rl.undo();
        assert!(rl.check(t0 + Duration::from_millis(10_500)).is_ok());
        assert!(rl.check(t0 + Duration::from_millis(10_600)).is_err());
    }
}
