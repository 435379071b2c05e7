//! What a hub has done: totals since it was made, and the outcome of one publish.

use std::sync::atomic::{AtomicU64, Ordering};

/// A hub's running totals.
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) closed_slow: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, published: &Published) {
        let add = |c: &AtomicU64, n: usize| {
            if n > 0 {
                c.fetch_add(n as u64, Ordering::Relaxed);
            }
        };
        add(&self.delivered, published.queued);
        add(&self.dropped, published.dropped);
        add(&self.closed_slow, published.closed);
    }
}

/// What became of one published message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Subscribers whose write queue took it.
    pub queued: usize,
    /// Latest-wins subscribers that hold it back until their queue has room.
    pub held: usize,
    /// Subscribers that did not get it: over their bound with
    /// [`Overflow::DropNewest`](super::Overflow::DropNewest), or closed because of it;
    /// and older held messages it replaced.
    pub dropped: usize,
    /// Subscribers closed because it did not fit ([`Overflow::Close`](super::Overflow::Close)).
    pub closed: usize,
}

/// A snapshot of a hub's counters ([`Hub::stats`](super::Hub::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Topics with at least one subscriber.
    pub topics: usize,
    /// Subscriptions, over all topics.
    pub subscriptions: usize,
    /// Messages handed to a subscriber's write queue, in total (held latest-wins
    /// messages count when they enter the queue).
    pub delivered: u64,
    /// Deliveries dropped at a subscriber's bound, or replaced while held.
    pub dropped: u64,
    /// Subscribers closed for falling behind.
    pub closed_slow: u64,
    /// Bytes now waiting in the write queues of the subscribed connections (each
    /// connection counted once).
    pub queued_bytes: u64,
}
