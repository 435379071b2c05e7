//! A settable point in time after which an operation fails, usable from `poll` code.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use tokio::time::{Instant, Sleep};

/// gorilla's `SetReadDeadline` / `SetWriteDeadline` state: `None` means no deadline.
#[derive(Default)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub(crate) fn set(&mut self, at: Option<std::time::Instant>) {
        self.at = at.map(Instant::from_std);
    }

    pub(crate) fn get(&self) -> Option<std::time::Instant> {
        self.at.map(Instant::into_std)
    }

    /// Whether the deadline has passed; otherwise arranges a wake-up for it.
    #[inline]
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        match self.at {
            None => false,
            Some(at) => self.poll_expired_at(at, cx),
        }
    }

    fn poll_expired_at(&mut self, at: Instant, cx: &mut Context<'_>) -> bool {
        if Instant::now() >= at {
            return true;
        }
        match &mut self.sleep {
            Some(s) if s.deadline() == at => {}
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        match self.sleep.as_mut() {
            Some(s) => s.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }
}
