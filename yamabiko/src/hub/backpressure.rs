//! What a subscription does when its connection falls behind.

use crate::proto::CloseCode;
use std::time::Duration;

/// A subscription's bound on its connection's unsent bytes, and what happens to a
/// message that would go over it.
///
/// The bound counts every byte waiting in the connection's write queue (the
/// connection's own messages too), so it caps what a subscriber that stops reading
/// can make the server hold: about `max_queued` plus, with
/// [`Overflow::LatestWins`], one message per state key. A message that meets an
/// empty queue is always queued, however large.
///
/// ```
/// use std::time::Duration;
/// use yamabiko::hub::{Backpressure, Overflow};
/// use yamabiko::CloseCode;
///
/// // Chat: a reader that falls 1 MiB behind is told to come back later.
/// let chat = Backpressure::close(1 << 20, CloseCode::TRY_AGAIN_LATER, Duration::from_secs(5));
/// // A game's snapshots: only the newest one is worth sending.
/// let snapshots = Backpressure::latest_wins(64 * 1024);
/// assert!(matches!(snapshots.overflow, Overflow::LatestWins));
/// # let _ = chat;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backpressure {
    /// Most unsent bytes the connection may have before `overflow` applies.
    pub max_queued: usize,
    /// What happens to a message that does not fit.
    pub overflow: Overflow,
}

/// What happens to a message that would take a subscriber over its
/// [`Backpressure::max_queued`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The message is not sent to this subscriber (counted as dropped); later ones are,
    /// once there is room again. For data where a gap is acceptable.
    DropNewest,
    /// The message waits outside the queue until there is room, replacing any older
    /// waiting message with the same state key (the replaced one counts as dropped).
    /// For state — counts, positions, snapshots — where only the newest matters. Under
    /// the bound messages go out in order like any other.
    LatestWins,
    /// The subscriber is closed: a close frame with `code` and `reason` is queued
    /// after what is already waiting (nothing more is), and if it is not written
    /// within `grace`, the transport is dropped. The connection's reader then returns
    /// [`Error::TooSlow`](crate::Error::TooSlow). No message is ever skipped: the
    /// subscriber sees an unbroken prefix of the stream, then the close.
    Close {
        /// 1008 (policy violation) or 1013 (try again later) are the usual ones.
        code: CloseCode,
        /// The close reason (at most 123 bytes).
        reason: &'static str,
        /// How long the queued data and the close frame may take to go out.
        grace: Duration,
    },
}

impl Backpressure {
    /// At most `max_queued` unsent bytes; above it, new messages are dropped.
    pub fn drop_newest(max_queued: usize) -> Self {
        Backpressure {
            max_queued,
            overflow: Overflow::DropNewest,
        }
    }

    /// At most `max_queued` unsent bytes; above it, only the newest message of each
    /// state key waits.
    pub fn latest_wins(max_queued: usize) -> Self {
        Backpressure {
            max_queued,
            overflow: Overflow::LatestWins,
        }
    }

    /// At most `max_queued` unsent bytes; above it, the connection is closed with
    /// `code` (reason "too slow"), giving it `grace` to take the close frame.
    pub fn close(max_queued: usize, code: CloseCode, grace: Duration) -> Self {
        Backpressure {
            max_queued,
            overflow: Overflow::Close {
                code,
                reason: "too slow",
                grace,
            },
        }
    }
}

impl Default for Backpressure {
    /// 1 MiB, then close with 1008 (policy violation) and 5 seconds' grace.
    fn default() -> Self {
        Backpressure::close(1 << 20, CloseCode::POLICY_VIOLATION, Duration::from_secs(5))
    }
}
