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
//! [`LocalTopic`] implements it over the mailboxes directly. The library's pub/sub hub
//! offers the same two policies (latest-wins and a bounded queue that closes the slow)
//! per subscription; moving rooms onto it means implementing this trait over a hub
//! topic, and nothing in the rooms changes.

use crate::mailbox::Mailbox;
use std::sync::Arc;
use yamabiko::PreparedMessage;

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
