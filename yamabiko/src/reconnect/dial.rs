//! The async reconnecting client.

use super::{Backoff, Plan};
use crate::client::{Dialer, MaybeTlsStream};
use crate::conn::Conn;
use crate::error::{Error, Result};
use std::fmt;
use std::time::Instant;

/// A client that dials again each time its connection ended, from
/// [`Dialer::reconnecting`]: [`next`](Self::next) waits the backoff, dials until a
/// connection is made or a fatal error happens, and returns it (see the
/// [module](crate::reconnect) for which errors are fatal and how dials are spaced).
///
/// ```no_run
/// # async fn run() {
/// let mut client = yamabiko::Dialer::new().reconnecting("ws://127.0.0.1:9001/feed");
/// while let Some(dialed) = client.next().await {
///     let (mut conn, _response) = match dialed {
///         Ok(dialed) => dialed,
///         Err(fatal) => return eprintln!("giving up: {fatal}"),
///     };
///     let end = loop {
///         match conn.read_message().await {
///             Ok(message) => println!("{message:?}"),
///             Err(end) => break end,
///         }
///     };
///     client.ended(&end); // optional: lets 1001/1012/1013 mean "come back later"
/// }
/// # }
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
    /// A client of `url` that comes back by itself: each [`Reconnecting::next`] dials
    /// (with this dialer's settings) after the backoff and hands out the next
    /// connection, until an error that retrying cannot change.
    pub fn reconnecting(&self, url: impl Into<String>) -> Reconnecting {
        Reconnecting {
            dialer: self.clone(),
            url: url.into(),
            plan: Plan::new(Backoff::default()),
            done: false,
        }
    }
}

impl Reconnecting {
    /// Replaces the backoff ([`Backoff::default`]: 1 s doubling to 60 s, reset after
    /// a connection stayed up 10 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.plan.set_backoff(backoff);
        self
    }

    /// The URL dialed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next connection: waits the backoff (none before the first dial), then
    /// dials until it succeeds — retrying transient failures — and returns it.
    /// `Some(Err(_))` with a fatal error once, then `None`. Transient failures are
    /// logged with `tracing` at `debug`.
    pub async fn next(&mut self) -> Option<Result<(Conn<MaybeTlsStream>, http::Response<()>)>> {
        if self.done {
            return None;
        }
        // Bounded by the fatal errors and the caller: each round waits at least the
        // backoff's jittered delay after a failure.
        loop {
            let wait = self.plan.before_dial(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            match self.dialer.dial(&self.url).await {
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

    /// Tells how the last connection ended (the error its reads returned): a close
    /// from the server with 1001, 1012 or 1013 makes the next dial wait the backoff
    /// even if the connection was long-lived. Optional.
    pub fn ended(&mut self, how: &Error) {
        self.plan.ended(how);
    }
}
