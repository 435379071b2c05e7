//! A client that comes back by itself: [`Dialer::reconnecting`](crate::Dialer::reconnecting)
//! (async, [`Reconnecting`]) and
//! [`Dialer::reconnecting_blocking`](crate::Dialer::reconnecting_blocking) (an
//! iterator, [`blocking::Reconnecting`](crate::blocking::Reconnecting)) hand out a new
//! connection each time the previous one ended, dialing again with exponential
//! backoff and jitter ([`Backoff`]).
//!
//! **Which failures end it.** A dial that fails for a reason that retrying cannot
//! change ends the reconnecting client with that error: a bad URL, a TLS error (a
//! certificate for another name or from an unknown issuer, no common protocol), an
//! HTTP answer in the 1xx–4xx range (e.g. 401, 403, 404; a redirect is not followed),
//! a `101` that breaks the handshake rules, or a setting the dialer cannot use. Every
//! other failure is retried: refused, reset, timed out, a name that did not resolve,
//! a 5xx answer, and 429 — for 429 and 503 a `Retry-After` (seconds or an HTTP date)
//! is waited at least (at most 10 minutes).
//!
//! **When the next dial happens.** The first dial is at once. After a failed dial the
//! next one waits the backoff, which doubles from [`Backoff::initial`] up to
//! [`Backoff::max`], each delay drawn at random between half and all of it (so that
//! many clients of a restarted server do not come back in step). A connection that
//! stayed up for [`Backoff::stable_after`] resets the backoff, and the next dial after
//! it follows after a short random delay (at most `initial`); a connection that ended
//! sooner counts as a failure, so a server that accepts and drops at once is not
//! dialed in a tight loop. A connection the server closed with 1001 (going away),
//! 1012 (service restart) or 1013 (try again later) — told with
//! [`Reconnecting::ended`] — means "come back later": the next dial waits the backoff
//! even after a long-lived connection.

mod backoff;
mod dial;
mod verdict;

pub use backoff::Backoff;
pub(crate) use backoff::Plan;
pub use dial::Reconnecting;
pub use verdict::is_fatal;
