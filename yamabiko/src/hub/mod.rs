//! Publish/subscribe fan-out: one message in, the same frame out to every subscriber
//! of a topic.
//!
//! A [`Hub`] maps topics to subscribed connections. [`Hub::publish`] frames the
//! message once (and compresses it once per distinct permessage-deflate setting, as
//! [`PreparedMessage`] does) and appends that frame to each subscriber's write queue
//! by reference (a connection with a long queue gets small frames copied into its
//! write buffer instead, so that one write takes the whole queue). It never waits
//! for a connection: it is a plain function, usable from any task or thread, and
//! holds no lock across an `.await` because it has none.
//!
//! **Who writes.** A hub has no task per subscriber. Deliveries that find a
//! connection idle are written by one flusher task per thread (started on the
//! publishing thread's tokio runtime when first needed): it runs after the tasks
//! already ready — a publisher reading its next messages among them — and writes each
//! connection's whole queue, everything published since, in one system call, 128
//! connections per turn before it lets other tasks run. Nobody's task is woken per
//! delivery. A write in progress on the connection (`write_message`,
//! `flush`) takes the deliveries along instead; a connection whose socket is full
//! gets the rest from its own reader (the task that awaits `read_message`,
//! `next_reader` or a [`Stream`](futures_core::Stream) of it) once it has room, and
//! so does every connection when the publishing thread has no tokio runtime. So keep
//! a reader running on every subscribed connection, as gorilla asks anyway for pings
//! and close frames; a connection whose reader never ran gets its deliveries at its
//! next write.
//!
//! **Slow subscribers.** Each subscription bounds its connection's unsent bytes
//! ([`Backpressure`]); a message that would go over the bound is dropped, held as
//! the latest of its state key, or makes the hub close the connection with a code of
//! your choice ([`Overflow`]). A stalled subscriber costs a publish nothing more than
//! a lock and a comparison, and never delays the others.
//!
//! **Order.** Each subscriber receives the messages of a topic in the order they were
//! published (from one task; concurrent publishers are ordered by who takes the
//! topic's lock first). Latest-wins messages held back at the bound may go out after
//! later messages of other state keys, never after a newer one of their own key.
//!
//! **Compression.** A connection that compresses without context takeover gets the
//! shared compressed frame; one with context takeover (its compressor's window
//! differs from everyone else's) gets hub messages uncompressed, which
//! permessage-deflate allows message by message. Client connections mask each frame
//! themselves.
//!
//! A broadcast server whole — every message goes to every connection, the sender too
//! (this is `yamabiko echo --broadcast`):
//!
//! ```no_run
//! use yamabiko::hub::{Backpressure, Hub};
//!
//! #[tokio::main]
//! async fn main() -> yamabiko::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//!     let hub: Hub<()> = Hub::new();
//!     loop {
//!         let (tcp, _) = listener.accept().await?;
//!         let hub = hub.clone();
//!         tokio::spawn(async move {
//!             let Ok(mut conn) = yamabiko::Upgrader::new().upgrade(tcp).await else { return };
//!             let _subscription = hub.subscribe((), &conn, Backpressure::default());
//!             // The reader also answers pings and goes on with deliveries that
//!             // found the socket full.
//!             while let Ok(msg) = conn.read_message().await {
//!                 hub.publish(&(), msg);
//!             }
//!         });
//!     }
//! }
//! ```
//!
//! And a runnable one, with a connection over an in-memory pipe:
//!
//! ```
//! use yamabiko::hub::{Backpressure, Hub};
//! use yamabiko::{Conn, Message, Role};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> yamabiko::Result<()> {
//! let (server_io, client_io) = tokio::io::duplex(64 * 1024);
//! let config = yamabiko::Config::default();
//! let mut server = Conn::from_raw(server_io, Role::Server, &config, Default::default());
//! let mut client = Conn::from_raw(client_io, Role::Client, &config, Default::default());
//!
//! let hub = Hub::new();
//! let subscription = hub.subscribe("news".to_string(), &server, Backpressure::default());
//! // The server's reader: pings, close, and deliveries that found the socket full.
//! tokio::spawn(async move { while server.read_message().await.is_ok() {} });
//!
//! let published = hub.publish("news", "extra, extra");
//! assert_eq!(published.queued, 1);
//! assert_eq!(client.read_message().await?, Message::text("extra, extra"));
//! assert_eq!(hub.stats().delivered, 1);
//! drop(subscription); // unsubscribes
//! assert_eq!(hub.subscribers("news"), 0);
//! # Ok(()) }
//! ```

mod backpressure;
mod flusher;
mod outlet;
mod stats;

pub use backpressure::{Backpressure, Overflow};
pub(crate) use outlet::{Offer, Offered, Outgoing, Outlet};
pub(crate) use stats::Counters;
pub use stats::{HubStats, Published};

use crate::message::Message;
use crate::prepared::PreparedMessage;
use bytes::Bytes;
use slab::Slab;
use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

/// Topics and their subscribers; see the [module docs](self).
///
/// Cheap to clone (the clones share the topics). `T` is the topic: a `String`, an
/// enum of your rooms, or `()` for a single one.
pub struct Hub<T = String> {
    shared: Arc<HubShared<T>>,
}

struct HubShared<T> {
    topics: Mutex<HashMap<T, Arc<Topic>>>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
}

/// One topic's subscribers. Its own lock, so that publishing to one topic does not
/// hold up subscribing to another.
#[derive(Default)]
struct Topic {
    subscribers: Mutex<Slab<Entry>>,
}

struct Entry {
    /// Unique in the process, so that a slot reused after an unsubscribe is told apart.
    id: u64,
    outlet: Arc<dyn Outlet>,
    backpressure: Backpressure,
    framing: Framing,
}

/// How a subscriber's frames are made.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Framing {
    /// A server connection without compression (or with context takeover): the
    /// plain frame.
    Plain,
    /// A server connection compressing each message on its own: the compressed frame
    /// for its setting, for messages of `threshold` bytes or more.
    Deflate {
        window_bits: u8,
        level: u32,
        threshold: usize,
    },
    /// A client connection: frames masked by the connection.
    Masked,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks calls user code, so a poisoned lock only means a
    // panic elsewhere left consistent data behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// The drivers a publish wakes once its locks are let go (kept for the next one).
    static WAKES: Cell<Vec<Waker>> = const { Cell::new(Vec::new()) };
    /// The connections a publish hands to the thread's flusher (kept for the next one).
    static DEFERRED: Cell<flusher::Batch> = const { Cell::new(Vec::new()) };
}

impl<T> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Hub {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Eq + Hash> Default for Hub<T> {
    fn default() -> Self {
        Hub {
            shared: Arc::new(HubShared {
                topics: Mutex::new(HashMap::new()),
                counters: Arc::default(),
                next_id: AtomicU64::new(1),
            }),
        }
    }
}

impl<T> fmt::Debug for Hub<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("topics", &lock(&self.shared.topics).len())
            .finish()
    }
}

impl<T: Eq + Hash + Clone> Hub<T> {
    /// A hub with no topics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes a connection (a [`Conn`](crate::Conn), a
    /// [`WriteHalf`](crate::WriteHalf) or a [`ControlHandle`](crate::ControlHandle))
    /// to `topic` until the returned
    /// [`Subscription`] is dropped. A connection may hold several subscriptions, to
    /// the same topic too (it then gets each message once per subscription).
    ///
    /// The connection's compression setting is taken now; see the
    /// [module docs](self) for who writes the deliveries.
    pub fn subscribe(
        &self,
        topic: T,
        connection: &impl Subscriber,
        backpressure: Backpressure,
    ) -> Subscription<T> {
        let target = connection.target();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let mut topics = lock(&self.shared.topics);
        // Room for one subscriber at first: a topic per connection (its replies) is
        // common, and a slab's first growth would make room for four.
        let t = topics.entry(topic.clone()).or_insert_with(|| {
            Arc::new(Topic {
                subscribers: Mutex::new(Slab::with_capacity(1)),
            })
        });
        let slot = lock(&t.subscribers).insert(Entry {
            id,
            outlet: target.outlet,
            backpressure,
            framing: target.framing,
        });
        drop(topics);
        Subscription {
            hub: self.shared.clone(),
            topic,
            slot,
            id,
        }
    }

    /// Sends `message` to every subscriber of `topic`; returns what became of it.
    /// Never waits: see [`Backpressure`] for subscribers that fall behind.
    pub fn publish<Q>(&self, topic: &Q, message: impl Into<Message>) -> Published
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.publish_prepared(topic, &PreparedMessage::new(message))
    }

    /// Like [`publish`](Self::publish), with a message framed beforehand (to send
    /// it to several topics, or to connections directly too).
    pub fn publish_prepared<Q>(&self, topic: &Q, message: &PreparedMessage) -> Published
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.deliver(topic, message, None, None)
    }

    /// Sends a piece of state — the one for `key`, replacing the one before (a count,
    /// a position, a snapshot). For subscribers with [`Overflow::LatestWins`] that are
    /// at their bound, only the newest message of each key waits; for the others it
    /// is an ordinary message. (Plain [`publish`](Self::publish) messages share one
    /// key of their own per subscription.)
    pub fn publish_state<Q>(&self, topic: &Q, key: u64, message: impl Into<Message>) -> Published
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.deliver(topic, &PreparedMessage::new(message), Some(key), None)
    }

    /// Starts a batch of publishes whose deliveries are written when the returned
    /// [`Cork`] is dropped, by the task that drops it: one write per subscriber for
    /// the whole batch, and no subscriber's task woken to make it (uWebSockets'
    /// cork). For a publisher that has many messages at hand at once (a game tick's
    /// updates). Subscribers whose connection is full or busy writing get the rest
    /// from their own reader, as without a cork.
    ///
    /// For a stream of messages that arrive one at a time, plain
    /// [`publish`](Self::publish) batches better under load: its writes wait for the
    /// thread's flusher, which runs after the publisher has read on and takes
    /// everything published meanwhile, while a cork writes to every subscriber before
    /// the publisher reads on (measured with
    /// `yamabiko bench --broadcast`, 1,000 subscribers, 8 messages in flight: about
    /// one write per delivery with a cork per message, against one per seven without).
    pub fn cork(&self) -> Cork<'_, T> {
        Cork {
            hub: self,
            pending: Vec::new(),
        }
    }

    fn deliver<Q>(
        &self,
        topic: &Q,
        message: &PreparedMessage,
        key: Option<u64>,
        mut corked: Option<&mut flusher::Batch>,
    ) -> Published
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(topic) = lock(&self.shared.topics).get(topic).cloned() else {
            return Published::default();
        };
        let mut wakes = WAKES.take();
        let mut deferred = DEFERRED.take();
        let mut published = Published::default();
        let mut frames = Frames::new(message);
        {
            let mut subscribers = lock(&topic.subscribers);
            let mut gone = Vec::new();
            for (slot, entry) in subscribers.iter() {
                let compressed;
                let frame = match entry.framing {
                    Framing::Plain => Outgoing::Encoded(message.server_frame()),
                    Framing::Deflate {
                        window_bits,
                        level,
                        threshold,
                    } => {
                        compressed = frames.compressed(window_bits, level, threshold);
                        Outgoing::Encoded(&compressed)
                    }
                    Framing::Masked => {
                        Outgoing::Payload(message.kind().opcode(), message.message().payload())
                    }
                };
                let offer = Offer {
                    frame,
                    subscription: entry.id,
                    key,
                    backpressure: &entry.backpressure,
                    counters: &self.shared.counters,
                };
                let (offered, write_due) = entry.outlet.offer(&offer, &mut wakes);
                if write_due {
                    // The cork, or else the thread's flusher, writes it.
                    let pending = match &mut corked {
                        Some(pending) => &mut **pending,
                        None => &mut deferred,
                    };
                    pending.push(entry.outlet.clone());
                }
                match offered {
                    Offered::Queued => published.queued += 1,
                    Offered::Held => published.held += 1,
                    Offered::Replaced => {
                        published.held += 1;
                        published.dropped += 1;
                    }
                    Offered::Dropped => published.dropped += 1,
                    Offered::Closed => {
                        published.closed += 1;
                        published.dropped += 1;
                        gone.push(slot);
                    }
                    Offered::Closing => gone.push(slot),
                }
            }
            for slot in gone {
                subscribers.remove(slot);
            }
        }
        self.shared.counters.add(&published);
        for w in wakes.drain(..) {
            w.wake();
        }
        WAKES.set(wakes);
        flusher::hand_over(&mut deferred);
        DEFERRED.set(deferred);
        published
    }

    /// Subscriptions to `topic`.
    pub fn subscribers<Q>(&self, topic: &Q) -> usize
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(topic) = lock(&self.shared.topics).get(topic).cloned() else {
            return 0;
        };
        let n = lock(&topic.subscribers).len();
        n
    }

    /// The hub's counters, and the bytes its subscribers have waiting now.
    pub fn stats(&self) -> HubStats {
        let topics: Vec<Arc<Topic>> = lock(&self.shared.topics).values().cloned().collect();
        let mut stats = HubStats {
            topics: topics.len(),
            delivered: self.shared.counters.delivered.load(Ordering::Relaxed),
            dropped: self.shared.counters.dropped.load(Ordering::Relaxed),
            closed_slow: self.shared.counters.closed_slow.load(Ordering::Relaxed),
            ..HubStats::default()
        };
        let mut seen = HashSet::new();
        for topic in topics {
            let subscribers = lock(&topic.subscribers);
            stats.subscriptions += subscribers.len();
            for (_, entry) in subscribers.iter() {
                let connection = Arc::as_ptr(&entry.outlet) as *const () as usize;
                if seen.insert(connection) {
                    stats.queued_bytes += entry.outlet.queued_bytes() as u64;
                }
            }
        }
        stats
    }
}

/// A batch of publishes written out together when it is dropped; see [`Hub::cork`].
///
/// Holds no lock: deliveries are queued as each publish happens (and count against
/// the subscribers' bounds at once); only the writing waits for the drop. Do not keep
/// one across an `.await` that may take long, or the deliveries wait with it.
pub struct Cork<'a, T: Eq + Hash + Clone> {
    hub: &'a Hub<T>,
    /// Connections to write on drop.
    pending: flusher::Batch,
}

impl<T: Eq + Hash + Clone> Cork<'_, T> {
    /// [`Hub::publish`], written when the cork is dropped.
    pub fn publish<Q>(&mut self, topic: &Q, message: impl Into<Message>) -> Published
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.publish_prepared(topic, &PreparedMessage::new(message))
    }

    /// [`Hub::publish_prepared`], written when the cork is dropped.
    pub fn publish_prepared<Q>(&mut self, topic: &Q, message: &PreparedMessage) -> Published
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.hub
            .deliver(topic, message, None, Some(&mut self.pending))
    }

    /// [`Hub::publish_state`], written when the cork is dropped.
    pub fn publish_state<Q>(
        &mut self,
        topic: &Q,
        key: u64,
        message: impl Into<Message>,
    ) -> Published
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.hub.deliver(
            topic,
            &PreparedMessage::new(message),
            Some(key),
            Some(&mut self.pending),
        )
    }
}

impl<T: Eq + Hash + Clone> Drop for Cork<'_, T> {
    fn drop(&mut self) {
        for outlet in self.pending.drain(..) {
            outlet.write_now();
        }
    }
}

impl<T: Eq + Hash + Clone> fmt::Debug for Cork<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cork")
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// The frames of one published message, compressed ones made once per setting.
struct Frames<'a> {
    message: &'a PreparedMessage,
    compressed: Vec<(u8, u32, Bytes)>,
}

impl<'a> Frames<'a> {
    fn new(message: &'a PreparedMessage) -> Self {
        Frames {
            message,
            compressed: Vec::new(),
        }
    }

    fn compressed(&mut self, window_bits: u8, level: u32, threshold: usize) -> Bytes {
        if self.message.message().len() < threshold {
            return self.message.server_frame().clone();
        }
        if let Some((_, _, frame)) = self
            .compressed
            .iter()
            .find(|(w, l, _)| *w == window_bits && *l == level)
        {
            return frame.clone();
        }
        let frame = match self.message.compressed_server_frame(window_bits, level) {
            Ok(frame) => frame,
            Err(e) => {
                // Uncompressed is always allowed.
                tracing::debug!(error = %e, "hub: compression failed, sending uncompressed");
                self.message.server_frame().clone()
            }
        };
        self.compressed.push((window_bits, level, frame.clone()));
        frame
    }
}

/// A connection's subscription to a topic; dropping it unsubscribes.
///
/// A hub that closes a subscriber for falling behind ([`Overflow::Close`]) removes
/// its subscriptions itself; dropping them later does nothing more.
pub struct Subscription<T: Eq + Hash = String> {
    hub: Arc<HubShared<T>>,
    topic: T,
    slot: usize,
    id: u64,
}

impl<T: Eq + Hash> Subscription<T> {
    /// The topic.
    pub fn topic(&self) -> &T {
        &self.topic
    }

    /// Unsubscribes (the same as dropping it).
    pub fn unsubscribe(self) {}
}

impl<T: Eq + Hash> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl<T: Eq + Hash> Drop for Subscription<T> {
    fn drop(&mut self) {
        let mut topics = lock(&self.hub.topics);
        let Some(topic) = topics.get(&self.topic) else {
            return;
        };
        let mut subscribers = lock(&topic.subscribers);
        if subscribers.get(self.slot).is_some_and(|e| e.id == self.id) {
            let entry = subscribers.remove(self.slot);
            drop(subscribers);
            // Dropped outside the topic's lock: it may be the last reference to the
            // connection.
            drop(entry);
            subscribers = lock(&topic.subscribers);
        }
        if subscribers.is_empty() {
            drop(subscribers);
            topics.remove(&self.topic);
        }
    }
}

mod sealed {
    /// What [`Subscriber`](super::Subscriber) hands a hub; not nameable outside.
    #[allow(missing_debug_implementations)] // sealed: nobody outside can hold one
    pub struct Target {
        pub(crate) outlet: std::sync::Arc<dyn super::Outlet>,
        pub(crate) framing: super::Framing,
    }

    pub trait Sealed {
        fn target(&self) -> Target;
    }
}

/// A connection that can subscribe to a [`Hub`]: an async [`Conn`](crate::Conn), its
/// [`WriteHalf`](crate::WriteHalf), or a [`ControlHandle`](crate::ControlHandle) of
/// either, over any transport that is `Send`.
///
/// A `ControlHandle` lets a task that does not own the connection subscribe it (a game
/// room that seats a player, say). It does not know the write half's compression
/// setting, so its subscriptions get every message uncompressed (which
/// permessage-deflate allows message by message); subscribe the `Conn` or `WriteHalf`
/// itself to share compressed frames.
pub trait Subscriber: sealed::Sealed {}

impl<S> sealed::Sealed for crate::ControlHandle<S>
where
    S: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn target(&self) -> sealed::Target {
        let framing = match self.shared.role {
            crate::proto::Role::Client => Framing::Masked,
            crate::proto::Role::Server => Framing::Plain,
        };
        sealed::Target {
            outlet: self.shared.clone(),
            framing,
        }
    }
}

impl<S> Subscriber for crate::ControlHandle<S> where
    S: tokio::io::AsyncWrite + Unpin + Send + 'static
{
}

impl<S> sealed::Sealed for crate::WriteHalf<S>
where
    S: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn target(&self) -> sealed::Target {
        sealed::Target {
            outlet: self.shared.clone(),
            framing: self.framing(),
        }
    }
}

impl<S> Subscriber for crate::WriteHalf<S> where S: tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<S> sealed::Sealed for crate::Conn<S>
where
    S: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn target(&self) -> sealed::Target {
        self.write_half().target()
    }
}

impl<S> Subscriber for crate::Conn<S> where S: tokio::io::AsyncWrite + Unpin + Send + 'static {}
