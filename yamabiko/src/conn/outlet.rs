//! The connection's side of a [`Hub`](crate::hub::Hub): deliveries go straight into
//! the write queue under its short lock (the hub never waits for a connection), and
//! what a hub leaves besides frames — latest-wins messages waiting for room, the close
//! of a subscriber that fell behind — stays here until the connection's writer or
//! reader takes it.

use super::shared::{PayloadRef, Shared, WriteQueue};
use crate::hub::Counters;
use crate::hub::{Offer, Offered, Outgoing, Outlet, Overflow};
use crate::proto::{CloseFrame, OpCode, Role};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

/// What hubs left with one connection besides queued frames.
#[derive(Default)]
pub(crate) struct HubSide {
    /// Latest-wins messages waiting for room in the queue, oldest first.
    held: Vec<Held>,
    /// Set when a hub closed the connection for falling behind: the close frame it
    /// queued and when to give up on the transport. Taken by the reader.
    pub(crate) kicked: Option<(CloseFrame, Instant)>,
}

/// A latest-wins message waiting for room.
struct Held {
    subscription: u64,
    key: Option<u64>,
    max_queued: usize,
    frame: HeldFrame,
    counters: Arc<Counters>,
}

enum HeldFrame {
    Encoded(Bytes),
    Payload(OpCode, Bytes),
}

impl HeldFrame {
    fn from(frame: Outgoing<'_>) -> Self {
        match frame {
            Outgoing::Encoded(b) => HeldFrame::Encoded(b.clone()),
            Outgoing::Payload(op, b) => HeldFrame::Payload(op, b.clone()),
        }
    }

    fn as_outgoing(&self) -> Outgoing<'_> {
        match self {
            HeldFrame::Encoded(b) => Outgoing::Encoded(b),
            HeldFrame::Payload(op, b) => Outgoing::Payload(*op, b),
        }
    }
}

impl HubSide {
    pub(crate) fn held_is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Moves held messages into the queue, oldest first, while they fit.
    pub(crate) fn release_held(&mut self, queue: &mut WriteQueue, role: Role, vectored: bool) {
        while let Some(first) = self.held.first() {
            let queued = queue.len();
            if queued > 0 && queued + first.frame.as_outgoing().len() > first.max_queued {
                return;
            }
            let held = self.held.remove(0);
            push(queue, held.frame.as_outgoing(), role, vectored);
            held.counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Queues a frame for a server (encoded once by the hub; shared by reference if the
/// transport is `vectored`) or a client (masked here).
fn push(queue: &mut WriteQueue, frame: Outgoing<'_>, role: Role, vectored: bool) {
    match frame {
        Outgoing::Encoded(bytes) => queue.push_encoded(bytes, vectored),
        Outgoing::Payload(opcode, payload) => {
            queue.push_frame(role, opcode, true, false, PayloadRef::Shared(payload))
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin + Send> Outlet for Shared<S> {
    fn offer(&self, offer: &Offer<'_>, wakes: &mut Vec<Waker>) -> (Offered, bool) {
        let mut g = self.lock();
        if g.check_writable().is_err() {
            // A close frame was sent, or `close()` dropped the transport.
            return (Offered::Closing, false);
        }
        let latest_wins = matches!(offer.backpressure.overflow, Overflow::LatestWins);
        if latest_wins {
            // A newer state replaces one still waiting, even if there is room now:
            // the older one must not go out after it.
            let waiting = g.hub.as_mut().and_then(|h| {
                h.held
                    .iter_mut()
                    .find(|h| h.subscription == offer.subscription && h.key == offer.key)
            });
            if let Some(held) = waiting {
                held.frame = HeldFrame::from(offer.frame);
                return (Offered::Replaced, false);
            }
        }
        let queued = g.queued_bytes();
        if queued == 0 || queued + offer.frame.len() <= offer.backpressure.max_queued {
            let vectored = g.vectored();
            push(&mut g.queue, offer.frame, self.role, vectored);
            return (Offered::Queued, g.claim_write());
        }
        match &offer.backpressure.overflow {
            Overflow::DropNewest => (Offered::Dropped, false),
            Overflow::LatestWins => {
                g.hub.get_or_insert_default().held.push(Held {
                    subscription: offer.subscription,
                    key: offer.key,
                    max_queued: offer.backpressure.max_queued,
                    frame: HeldFrame::from(offer.frame),
                    counters: offer.counters.clone(),
                });
                (Offered::Held, g.claim_write())
            }
            Overflow::Close {
                code,
                reason,
                grace,
            } => {
                let frame = CloseFrame::new(*code, *reason);
                // A code that may not be sent closes without a status.
                g.push_close(self.role, &frame);
                g.hub.get_or_insert_default().kicked = Some((frame, Instant::now() + *grace));
                self.kicked.store(true, Ordering::Release);
                wakes.extend(g.driver_now());
                (Offered::Closed, false)
            }
        }
    }

    fn queued_bytes(&self) -> usize {
        self.lock().queued_bytes()
    }

    fn write_now(&self) {
        Shared::write_now(self);
    }

    fn wake_driver(&self) {
        let driver = self.lock().driver_now();
        if let Some(driver) = driver {
            driver.wake();
        }
    }
}
