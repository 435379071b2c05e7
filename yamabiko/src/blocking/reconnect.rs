//! The blocking reconnecting client: an iterator of connections.

use super::{BlockingStream, Conn};
use crate::client::Dialer;
use crate::error::{Error, Result};
use crate::reconnect::{Backoff, Plan};
use std::fmt;
use std::time::Instant;

/// A blocking client that dials again each time its connection ended, from
/// [`Dialer::reconnecting_blocking`]: an iterator whose `next` sleeps the backoff,
/// dials until a connection is made or a fatal error happens, and yields it; after a
/// fatal error it yields that error once, then ends. See the
/// [`reconnect`](crate::reconnect) module for which errors are fatal and how dials
/// are spaced.
///
/// ```no_run
/// let mut client = yamabiko::Dialer::new().reconnecting_blocking("ws://127.0.0.1:9001/feed");
/// while let Some(dialed) = client.next() {
///     let (mut conn, _response) = match dialed {
///         Ok(dialed) => dialed,
///         Err(fatal) => return eprintln!("giving up: {fatal}"),
///     };
///     let end = loop {
///         match conn.read_message() {
///             Ok(message) => println!("{message:?}"),
///             Err(end) => break end,
///         }
///     };
///     client.ended(&end); // optional: lets 1001/1012/1013 mean "come back later"
/// }
/// ```
pub struct Reconnecting {
    dialer: Dialer,
    url: String,
    plan: Plan,
    done: bool,
}

impl fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("url", &self.url)
            .field("plan", &self.plan)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// The blocking [`reconnecting`](Self::reconnecting): an iterator of connections
    /// to `url`, each dialed with [`dial_blocking`](Self::dial_blocking) once the
    /// previous one is asked to be replaced.
    pub fn reconnecting_blocking(&self, url: impl Into<String>) -> Reconnecting {
        Reconnecting {
            dialer: self.clone(),
            url: url.into(),
            plan: Plan::new(Backoff::default()),
            done: false,
        }
    }
}

impl Reconnecting {
    /// Replaces the backoff ([`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.plan.set_backoff(backoff);
        self
    }

    /// The URL dialed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Tells how the last connection ended (the error its reads returned): a close
    /// from the server with 1001, 1012 or 1013 makes the next dial wait the backoff
    /// even if the connection was long-lived. Optional.
    pub fn ended(&mut self, how: &Error) {
        self.plan.ended(how);
    }
}

impl Iterator for Reconnecting {
    type Item = Result<(Conn<BlockingStream>, http::Response<()>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // Bounded by the fatal errors and the caller: each round sleeps at least the
        // backoff's jittered delay after a failure.
        loop {
            let wait = self.plan.before_dial(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            match self.dialer.dial_blocking(&self.url) {
                Ok(dialed) => {
                    self.plan.connected(Instant::now());
                    return Some(Ok(dialed));
                }
                Err(e) => {
                    if self.plan.failed(&e).is_err() {
                        self.done = true;
                        return Some(Err(e));
                    }
                    tracing::debug!(url = %self.url, error = %e, "websocket: dial failed, retrying");
                }
            }
        }
    }
}
