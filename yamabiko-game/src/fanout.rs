//! Fan-out of a room's messages to its connections, behind a small interface.
//!
//! A [`Topic`] is a set of subscribers (connection [`Mailbox`]es) and two ways to
//! publish one framed message ([`PreparedMessage`]: encoded once, its bytes shared by
//! every subscriber):
//! * [`Topic::publish_latest`] for state that a newer one replaces (snapshots, the
//!   lobby list): a subscriber that has not sent the previous one skips it;
//! * [`Topic::publish_event`] for what must not be lost (roster changes, tags): queued
//!   in order, bounded; a subscriber whose queue is full is closed as too slow.
//!
//! [`HubTopic`] implements it over the library's pub/sub hub ([`yamabiko::hub`]): the
//! rooms use it. [`LocalTopic`] implements it over the mailboxes directly: the lobby
//! uses it (its list goes to few connections, rarely).

use crate::mailbox::Mailbox;
use crate::protocol::close;
use crate::stats::{add, Stats};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use yamabiko::hub::{Backpressure, Hub, Overflow, Published, Subscription};
use yamabiko::{CloseCode, PreparedMessage};

/// Identifies a subscriber (the connection's id).
pub type SubscriberId = u64;

/// What one publish did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers it was handed to.
    pub delivered: usize,
    /// Subscribers whose unsent previous state it replaced (latest-wins skips).
    pub replaced: usize,
    /// Subscribers closed as too slow because their event queue was full.
    pub overflowed: usize,
}

/// A set of subscribers a room publishes to. See the module documentation.
pub trait Topic: Send {
    /// Adds a subscriber (replacing one with the same id).
    fn subscribe(&mut self, id: SubscriberId, mailbox: Arc<Mailbox>);
    /// Removes a subscriber, returning its mailbox.
    fn unsubscribe(&mut self, id: SubscriberId) -> Option<Arc<Mailbox>>;
    /// How many subscribers there are.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Publishes replaceable state (latest wins).
    fn publish_latest(&mut self, msg: &PreparedMessage) -> Delivery;
    /// Publishes an event (in order, bounded, never dropped silently).
    fn publish_event(&mut self, msg: &PreparedMessage) -> Delivery;
}

/// A [`Topic`] over the subscribers' mailboxes in this process.
#[derive(Debug, Default)]
pub struct LocalTopic {
    subscribers: Vec<(SubscriberId, Arc<Mailbox>)>,
}

impl LocalTopic {
    /// A topic without subscribers.
    pub fn new() -> LocalTopic {
        LocalTopic::default()
    }

    /// Drops subscribers whose connection has closed.
    fn prune(&mut self) {
        self.subscribers.retain(|(_, m)| !m.is_closed());
    }
}

impl Topic for LocalTopic {
    fn subscribe(&mut self, id: SubscriberId, mailbox: Arc<Mailbox>) {
        self.unsubscribe(id);
        self.subscribers.push((id, mailbox));
    }

    fn unsubscribe(&mut self, id: SubscriberId) -> Option<Arc<Mailbox>> {
        let i = self.subscribers.iter().position(|(s, _)| *s == id)?;
        Some(self.subscribers.swap_remove(i).1)
    }

    fn len(&self) -> usize {
        self.subscribers.len()
    }

    fn publish_latest(&mut self, msg: &PreparedMessage) -> Delivery {
        let mut d = Delivery::default();
        let mut closed = false;
        for (_, mailbox) in &self.subscribers {
            if mailbox.is_closed() {
                closed = true;
                continue;
            }
            d.delivered += 1;
            if mailbox.put_latest(msg.clone()) {
                d.replaced += 1;
            }
        }
        if closed {
            self.prune();
        }
        d
    }

    fn publish_event(&mut self, msg: &PreparedMessage) -> Delivery {
        let mut d = Delivery::default();
        let mut closed = false;
        for (_, mailbox) in &self.subscribers {
            if mailbox.is_closed() {
                closed = true;
                continue;
            }
            match mailbox.push_event(msg.clone()) {
                Ok(()) => d.delivered += 1,
                Err(_) => {
                    d.overflowed += 1;
                    closed = true;
                }
            }
        }
        if closed {
            self.prune();
        }
        d
    }
}

/// The topics of a room's hub: its two streams, and one for a subscriber's first
/// messages (the welcome), used for a moment while subscribing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Snapshots: latest wins.
    Snapshots,
    /// Events: in order, bounded, the slow closed.
    Events,
    /// What waited in a new subscriber's mailbox, queued ahead of the hub's deliveries.
    Welcome,
}

/// Most unsent bytes a connection may have for a snapshot to be queued behind them;
/// past it only the newest snapshot waits (outside the queue). Two snapshots of a full
/// room and some events: a page that keeps up never meets it.
pub const SNAPSHOT_BOUND: usize = 2 * 1024;

/// Most unsent bytes a connection may have for an event to be queued behind them; past
/// it the connection is closed as too slow (1008). About [`EVENT_QUEUE_LEN`] events of
/// the usual size, as the mailbox allows.
///
/// [`EVENT_QUEUE_LEN`]: crate::mailbox::EVENT_QUEUE_LEN
pub const EVENT_BOUND: usize = 16 * 1024;

/// How long the close frame of a connection closed as too slow may take to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A [`Topic`] over the library's pub/sub hub: each subscriber's connection is
/// subscribed to the room's snapshots ([`Overflow::LatestWins`] at [`SNAPSHOT_BOUND`])
/// and events ([`Overflow::Close`] with 1008 at [`EVENT_BOUND`]). A publish frames the
/// message once and queues the frame on every connection without waiting for any; the
/// snapshot of a tick is published corked, so the room's task writes it (and the
/// tick's events before it) to every connection, one write each, instead of waking each
/// connection's task to do it.
///
/// A subscriber's mailbox keeps what is for that connection alone; what waits in it
/// when it subscribes (the welcome) is queued ahead of the first hub delivery. A
/// mailbox without a connection (unit tests) is served through the mailbox, as by
/// [`LocalTopic`].
pub struct HubTopic {
    hub: Hub<Channel>,
    subscribers: HashMap<SubscriberId, Subscribed>,
    local: LocalTopic,
    stats: Option<Arc<Stats>>,
}

struct Subscribed {
    mailbox: Arc<Mailbox>,
    _snapshots: Subscription<Channel>,
    _events: Subscription<Channel>,
}

impl std::fmt::Debug for HubTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubTopic")
            .field("subscribers", &self.subscribers.len())
            .field("local", &self.local.len())
            .finish()
    }
}

impl HubTopic {
    /// A topic without subscribers; what it queues is counted in `stats`
    /// (`bytes_out`, `frames_out`) if given.
    pub fn new(stats: Option<Arc<Stats>>) -> HubTopic {
        HubTopic {
            hub: Hub::new(),
            subscribers: HashMap::new(),
            local: LocalTopic::new(),
            stats,
        }
    }

    /// The hub's counters (delivered, dropped, closed as slow, bytes waiting).
    pub fn hub_stats(&self) -> yamabiko::hub::HubStats {
        self.hub.stats()
    }

    /// Drops subscribers whose connection has ended.
    fn prune(&mut self) {
        self.subscribers.retain(|_, s| !s.mailbox.is_closed());
    }

    fn count(&self, msg: &PreparedMessage, frames: usize) {
        if let Some(stats) = &self.stats {
            let len = msg.message().len() as u64;
            let bytes = len + if len < 126 { 2 } else { 4 };
            add(&stats.bytes_out, bytes * frames as u64);
            add(&stats.frames_out, frames as u64);
        }
    }
}

impl Topic for HubTopic {
    fn subscribe(&mut self, id: SubscriberId, mailbox: Arc<Mailbox>) {
        self.unsubscribe(id);
        let Some(connection) = mailbox.connection() else {
            return self.local.subscribe(id, mailbox);
        };
        let hub = &self.hub;
        let subscribed = mailbox.with_pending(|pending| {
            // Nobody else is subscribed to `Welcome`: the room's task is the only one
            // that subscribes, and it lets go before it returns.
            let welcome = hub.subscribe(Channel::Welcome, connection, Backpressure::default());
            for msg in pending {
                hub.publish_prepared(&Channel::Welcome, &msg);
            }
            drop(welcome);
            Subscribed {
                mailbox: mailbox.clone(),
                _snapshots: hub.subscribe(
                    Channel::Snapshots,
                    connection,
                    Backpressure::latest_wins(SNAPSHOT_BOUND),
                ),
                _events: hub.subscribe(
                    Channel::Events,
                    connection,
                    Backpressure {
                        max_queued: EVENT_BOUND,
                        overflow: Overflow::Close {
                            code: CloseCode::from(close::TOO_SLOW),
                            reason: "too slow: events piled up",
                            grace: CLOSE_GRACE,
                        },
                    },
                ),
            }
        });
        self.subscribers.insert(id, subscribed);
    }

    fn unsubscribe(&mut self, id: SubscriberId) -> Option<Arc<Mailbox>> {
        match self.subscribers.remove(&id) {
            Some(s) => Some(s.mailbox),
            None => self.local.unsubscribe(id),
        }
    }

    fn len(&self) -> usize {
        self.subscribers.len() + self.local.len()
    }

    fn publish_latest(&mut self, msg: &PreparedMessage) -> Delivery {
        let p: Published = {
            let mut cork = self.hub.cork();
            cork.publish_prepared(&Channel::Snapshots, msg)
        };
        self.count(msg, p.queued);
        if self.subscribers.values().any(|s| s.mailbox.is_closed()) {
            self.prune();
        }
        let local = self.local.publish_latest(msg);
        Delivery {
            // A replaced held snapshot is counted as held and as dropped.
            delivered: p.queued + p.held + local.delivered,
            replaced: p.dropped + local.replaced,
            overflowed: local.overflowed,
        }
    }

    fn publish_event(&mut self, msg: &PreparedMessage) -> Delivery {
        let p = self.hub.publish_prepared(&Channel::Events, msg);
        self.count(msg, p.queued);
        let local = self.local.publish_event(msg);
        Delivery {
            delivered: p.queued + local.delivered,
            replaced: 0,
            overflowed: p.closed + local.overflowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{Closing, EVENT_QUEUE_LEN};

    #[tokio::test]
    async fn one_frame_for_all_and_slow_subscribers_are_cut_loose() {
        let mut topic = LocalTopic::new();
        let fast = Arc::new(Mailbox::new());
        let slow = Arc::new(Mailbox::new());
        topic.subscribe(1, fast.clone());
        topic.subscribe(2, slow.clone());
        let snap = PreparedMessage::new(vec![0x82u8, 1, 2, 3]);
        assert_eq!(
            topic.publish_latest(&snap),
            Delivery {
                delivered: 2,
                replaced: 0,
                overflowed: 0
            }
        );
        let mut out = vec![];
        fast.take(&mut out).await.unwrap();
        // The slow one has not taken the first: the second replaces it.
        let d = topic.publish_latest(&snap);
        assert_eq!((d.delivered, d.replaced), (2, 1));
        // Events overflow only the one that does not read.
        for _ in 0..EVENT_QUEUE_LEN {
            topic.publish_event(&snap);
            fast.take(&mut out).await.unwrap();
        }
        let d = topic.publish_event(&snap);
        assert_eq!((d.delivered, d.overflowed), (1, 1));
        assert_eq!(topic.len(), 1, "the closed subscriber is gone");
        assert!(matches!(slow.closing(), Some(Closing::Close(1008, _))));
        assert!(topic.unsubscribe(1).is_some());
        assert!(topic.is_empty());
    }
}
