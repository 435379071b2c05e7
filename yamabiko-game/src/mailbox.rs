//! A connection's outbox: one slot for the latest state and a small bounded queue for
//! events that must not be lost.
//!
//! Rooms and the lobby never wait on a connection: they drop a message into its
//! mailbox and move on. A snapshot put into the slot replaces one the connection has
//! not sent yet (a slow page skips states instead of falling behind); events (the
//! welcome, roster changes, tags) queue in order, at most [`EVENT_QUEUE_LEN`] of them —
//! a connection that lets that many pile up is closed as too slow. The connection's
//! writer task takes everything at once, events first, and writes it in one flush.
//!
//! Memory: a mailbox holds at most one snapshot and [`EVENT_QUEUE_LEN`] events, and
//! these are handles to frames shared by the whole room (`PreparedMessage`), so a
//! stalled connection costs a few KiB, not a growing queue.
//!
//! A mailbox may also carry a handle on its connection
//! ([`for_connection`](Mailbox::for_connection)): rooms subscribe that to their
//! pub/sub hub ([`HubTopic`](crate::fanout::HubTopic)), which then writes the room's
//! snapshots and events to the connection directly; the mailbox keeps what is for
//! this connection alone (the welcome, notices, the lobby).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use yamabiko::{ControlHandle, PreparedMessage};

/// Most events a mailbox holds before its connection counts as too slow.
pub const EVENT_QUEUE_LEN: usize = 64;

/// How a connection is to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Send a close frame with this code and reason, then drop the connection.
    Close(u16, String),
    /// Drop the connection without a close frame (the peer is gone or closed first).
    Drop,
}

/// The event queue was full; the mailbox is now closed as too slow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
    wake: Notify,
    /// Set on close; read on every publish, so a plain atomic.
    is_closed: AtomicBool,
    closed: CancellationToken,
    /// The connection, for rooms to subscribe to their hub (`None` in unit tests).
    connection: Option<ControlHandle<TcpStream>>,
}

#[derive(Debug, Default)]
struct Inner {
    latest: Option<PreparedMessage>,
    events: VecDeque<PreparedMessage>,
    closing: Option<Closing>,
}

impl Mailbox {
    /// An empty, open mailbox.
    pub fn new() -> Mailbox {
        Mailbox::default()
    }

    /// An empty, open mailbox of `connection`, which rooms may subscribe to their hub.
    pub fn for_connection(connection: ControlHandle<TcpStream>) -> Mailbox {
        Mailbox {
            connection: Some(connection),
            ..Mailbox::default()
        }
    }

    /// The connection's handle, if the mailbox has one.
    pub fn connection(&self) -> Option<&ControlHandle<TcpStream>> {
        self.connection.as_ref()
    }

    /// Runs `f` on what waits (events in order, then the latest state, taken out) with
    /// the mailbox locked, so that no [`take_with`](Self::take_with) is half done
    /// meanwhile: what was taken before is in the connection's write queue, what is
    /// handed to `f` is not. For a room that subscribes the connection to its hub and
    /// must queue the welcome before the first hub delivery.
    pub fn with_pending<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = PreparedMessage>) -> R,
    ) -> R {
        let mut inner = self.lock();
        let latest = inner.latest.take();
        let mut pending = inner.events.drain(..).chain(latest);
        f(&mut pending)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `msg` in the latest-state slot. Returns whether an unsent message was
    /// replaced (the connection skipped it). Ignored once closed.
    pub fn put_latest(&self, msg: PreparedMessage) -> bool {
        let replaced = {
            let mut inner = self.lock();
            if inner.closing.is_some() {
                return false;
            }
            inner.latest.replace(msg).is_some()
        };
        self.wake.notify_one();
        replaced
    }

    /// Queues an event. When [`EVENT_QUEUE_LEN`] are already waiting, the mailbox
    /// closes with 1008 ("too slow") instead. Ignored once closed.
    pub fn push_event(&self, msg: PreparedMessage) -> Result<(), Overflow> {
        {
            let mut inner = self.lock();
            if inner.closing.is_some() {
                return Ok(());
            }
            if inner.events.len() >= EVENT_QUEUE_LEN {
                drop(inner);
                self.close(Closing::Close(
                    crate::protocol::close::TOO_SLOW,
                    "too slow: events piled up".into(),
                ));
                return Err(Overflow);
            }
            inner.events.push_back(msg);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Closes the mailbox; the first reason given wins. Pending messages are dropped.
    pub fn close(&self, how: Closing) {
        {
            let mut inner = self.lock();
            if inner.closing.is_some() {
                return;
            }
            inner.closing = Some(how);
            inner.latest = None;
            inner.events.clear();
        }
        self.is_closed.store(true, Ordering::Release);
        self.closed.cancel();
        self.wake.notify_one();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.is_closed.load(Ordering::Acquire)
    }

    /// Resolves once the mailbox is closed.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// How the connection is to end, once closed.
    pub fn closing(&self) -> Option<Closing> {
        self.lock().closing.clone()
    }

    /// Messages waiting (events and the latest state).
    pub fn pending(&self) -> usize {
        let inner = self.lock();
        inner.events.len() + usize::from(inner.latest.is_some())
    }

    /// Waits until something is waiting, then moves it into `out`: the events in
    /// order, then the latest state. Returns how the connection is to end instead,
    /// once the mailbox is closed. Cancel-safe: nothing is taken unless it returns.
    pub async fn take(&self, out: &mut Vec<PreparedMessage>) -> Result<(), Closing> {
        self.take_with(|m| {
            out.push(m);
            true
        })
        .await
    }

    /// Like [`take`](Self::take), handing each message to `queue` with the mailbox
    /// locked (a connection's writer queues them on the connection; see
    /// [`with_pending`](Self::with_pending)). `queue` returning `false` drops the rest.
    pub async fn take_with(
        &self,
        mut queue: impl FnMut(PreparedMessage) -> bool,
    ) -> Result<(), Closing> {
        loop {
            // Register for a wake-up before looking, so a put in between is not missed.
            let notified = self.wake.notified();
            {
                let mut inner = self.lock();
                if let Some(how) = &inner.closing {
                    return Err(how.clone());
                }
                if !inner.events.is_empty() || inner.latest.is_some() {
                    let latest = inner.latest.take();
                    for m in inner.events.drain(..).chain(latest) {
                        if !queue(m) {
                            break;
                        }
                    }
                    return Ok(());
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn msg(text: &str) -> PreparedMessage {
        PreparedMessage::new(text.to_owned())
    }

    fn texts(v: &[PreparedMessage]) -> Vec<String> {
        v.iter()
            .map(|m| String::from_utf8_lossy(m.message().as_bytes()).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn latest_wins_and_events_keep_their_order() {
        let mb = Mailbox::new();
        assert!(!mb.put_latest(msg("s1")));
        assert!(mb.put_latest(msg("s2")), "an unsent snapshot is replaced");
        mb.push_event(msg("e1")).unwrap();
        mb.push_event(msg("e2")).unwrap();
        assert!(mb.put_latest(msg("s3")));
        assert_eq!(mb.pending(), 3);
        let mut out = vec![];
        mb.take(&mut out).await.unwrap();
        assert_eq!(texts(&out), ["e1", "e2", "s3"]);
        assert_eq!(mb.pending(), 0);
    }

    #[tokio::test]
    async fn take_waits_for_a_put() {
        let mb = Arc::new(Mailbox::new());
        let taker = {
            let mb = mb.clone();
            tokio::spawn(async move {
                let mut out = vec![];
                mb.take(&mut out).await.map(|_| texts(&out))
            })
        };
        tokio::task::yield_now().await;
        mb.put_latest(msg("s"));
        assert_eq!(taker.await.unwrap(), Ok(vec!["s".to_owned()]));
    }

    #[tokio::test]
    async fn a_full_event_queue_closes_as_too_slow() {
        let mb = Mailbox::new();
        for i in 0..EVENT_QUEUE_LEN {
            mb.push_event(msg(&format!("e{i}"))).unwrap();
        }
        assert_eq!(mb.push_event(msg("one too many")), Err(Overflow));
        assert!(mb.is_closed());
        assert_eq!(
            mb.closing(),
            Some(Closing::Close(1008, "too slow: events piled up".into()))
        );
        let mut out = vec![];
        assert!(mb.take(&mut out).await.is_err());
        assert!(out.is_empty(), "pending messages are dropped on close");
        // Nothing more is accepted.
        assert!(!mb.put_latest(msg("late")));
        assert_eq!(mb.pending(), 0);
    }

    #[tokio::test]
    async fn the_first_close_wins_and_wakes_the_taker() {
        let mb = Arc::new(Mailbox::new());
        let taker = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.take(&mut vec![]).await })
        };
        tokio::task::yield_now().await;
        mb.close(Closing::Close(4003, "taken over".into()));
        mb.close(Closing::Drop);
        assert_eq!(
            taker.await.unwrap(),
            Err(Closing::Close(4003, "taken over".into()))
        );
        mb.closed().await;
    }
}
