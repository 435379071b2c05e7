//! What a hub needs of a connection: a place to put frames without waiting.
//!
//! Implemented by the async connection's shared state (`conn/outlet.rs`), so that one
//! [`Hub`](super::Hub) can hold connections over different transports.

use super::backpressure::Backpressure;
use super::stats::Counters;
use crate::proto::OpCode;
use bytes::Bytes;
use std::sync::Arc;
use std::task::Waker;

/// A frame for one subscriber.
#[derive(Clone, Copy)]
pub(crate) enum Outgoing<'a> {
    /// Encoded whole for a server connection (compressed or not).
    Encoded(&'a Bytes),
    /// A payload a client connection frames (and masks) itself.
    Payload(OpCode, &'a Bytes),
}

impl Outgoing<'_> {
    /// Bytes it takes in a write queue (about: a client adds a header).
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Encoded(b) => b.len(),
            Outgoing::Payload(_, b) => b.len() + 6,
        }
    }
}

/// One delivery offered to one subscriber.
pub(crate) struct Offer<'a> {
    pub(crate) frame: Outgoing<'a>,
    /// The subscription (unique in the process), for latest-wins slots.
    pub(crate) subscription: u64,
    /// The state key of a latest-wins message (`None`: the subscription's own slot).
    pub(crate) key: Option<u64>,
    pub(crate) backpressure: &'a Backpressure,
    pub(crate) counters: &'a Arc<Counters>,
}

/// What became of an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offered {
    /// Queued for writing.
    Queued,
    /// Held back until the queue has room (latest wins).
    Held,
    /// Replaced an older held message with the same key (latest wins).
    Replaced,
    /// Dropped: the queue was at its bound (drop newest).
    Dropped,
    /// The queue was at its bound: the connection is being closed (close policy).
    Closed,
    /// The connection is closing anyway (a close frame was sent).
    Closing,
}

/// A connection as a hub sees it.
pub(crate) trait Outlet: Send + Sync {
    /// Queues (or holds, drops, or closes on) one delivery without waiting. Returns
    /// what became of it, and whether the connection now needs someone to write its
    /// queue (nobody is writing it, and nobody was asked to): the hub then calls
    /// [`write_now`](Self::write_now) or [`wake_driver`](Self::wake_driver) once its
    /// locks are let go. A driver that must be woken regardless (a connection being
    /// closed as too slow) goes into `wakes`.
    fn offer(&self, offer: &Offer<'_>, wakes: &mut Vec<Waker>) -> (Offered, bool);

    /// Bytes waiting in the connection's write queue.
    fn queued_bytes(&self) -> usize;

    /// Writes what is queued now, from the caller's task (a corked publish, or the
    /// thread's flusher), after `offer` said a write was due. If the transport is
    /// full, the connection's own task is registered to go on when it has room.
    fn write_now(&self);

    /// Wakes the connection's own task to write what is queued, after `offer` said a
    /// write was due and nobody else will make it.
    fn wake_driver(&self);
}
