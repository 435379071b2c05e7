//! A settable point in time after which an operation fails, usable from `poll` code,
//! and what the deadline setters accept.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use tokio::time::{Instant, Sleep};

/// What a deadline setter accepts (`set_read_deadline`, `set_write_deadline`,
/// `write_control`, the handlers' `set_read_deadline`, async and blocking): an instant
/// of either clock — [`std::time::Instant`] or [`tokio::time::Instant`] — to set one,
/// `Some(std_instant)`, or `None` to clear it.
///
/// ```no_run
/// # async fn run(mut conn: yamabiko::Conn<tokio::net::TcpStream>) {
/// use std::time::Duration;
/// conn.set_read_deadline(tokio::time::Instant::now() + Duration::from_secs(60));
/// conn.set_read_deadline(std::time::Instant::now() + Duration::from_secs(60));
/// conn.set_read_deadline(Some(std::time::Instant::now() + Duration::from_secs(60)));
/// conn.set_read_deadline(None); // no deadline
/// # }
/// ```
///
/// `Option<tokio::time::Instant>` is not accepted, so that a bare `None` needs no type
/// annotation: pass the tokio instant itself, or `None`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a deadline",
    label = "expected an `Instant` (std or tokio), `Some(std::time::Instant)` or `None`",
    note = "for an `Option<tokio::time::Instant>`, pass `t.map(|t| t.into_std())`"
)]
pub trait IntoDeadline {
    /// The deadline as a `std` instant; `None` for no deadline.
    fn into_deadline(self) -> Option<std::time::Instant>;
}

impl IntoDeadline for Option<std::time::Instant> {
    fn into_deadline(self) -> Option<std::time::Instant> {
        self
    }
}

impl IntoDeadline for std::time::Instant {
    fn into_deadline(self) -> Option<std::time::Instant> {
        Some(self)
    }
}

impl IntoDeadline for Instant {
    fn into_deadline(self) -> Option<std::time::Instant> {
        Some(self.into_std())
    }
}

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
