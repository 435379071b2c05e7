//! This server's connections, what each views, and who sees what.
//!
//! Delivery is the library's [`yamabiko::Hub`]: every connection subscribes to its
//! own topic ([`Topic::Client`], for replies) and to the topic of what it views (the
//! thread list or one thread), and a broadcast is framed once and queued on every
//! subscriber's connection, which the library's flusher writes out. Every
//! subscription has the same bound: a connection with more than
//! [`MAX_QUEUED_BYTES`] unsent is too slow and is closed with 1008 ([`TOO_SLOW`]), so
//! a client that stops reading cannot make the server hold more than that; it gets
//! the write timeout to take what was queued and the close frame, then its transport
//! is dropped.
//!
//! * **Opening a thread.** A connection is subscribed to a thread's posts only once its
//!   `thread` reply is queued ([`Hub::finish_open`]); the posts delivered while it
//!   opens the thread are held for it and queued right after the reply, skipping the
//!   ones the reply holds: no live post of a thread reaches a page before that thread's
//!   reply (the page resyncs from what it holds, so a post before the reply could be
//!   skipped for good), and none the reply had is sent again.
//! * **Online counts** are state, not events. A change only marks its thread; every
//!   [`PRESENCE_PERIOD`] [`Hub::flush_presence`] publishes each marked thread's count
//!   as latest-wins state ([`yamabiko::Hub::publish_state`], the thread as the key) to
//!   subscriptions bounded at [`PRESENCE_MAX_QUEUED`]: a connection that far behind
//!   keeps only the newest count of each thread waiting, outside its queue. A join
//!   storm costs each viewer a few counts, and a slow viewer loses counts long before
//!   it could lose its connection.
//!
//! A committed post reaches this server's hub directly (through
//! [`super::order::Ordered`], which keeps each thread's posts in order), and the other
//! servers through a [`FanOut`]: [`SingleServer`] when there are none, or
//! [`super::broker::RedisFanOut`], whose subscriber task on every server passes what
//! it receives to the same ordered delivery. Presence (who views which thread) is
//! counted here for this server's connections; the counts of other servers are added
//! with [`Hub::set_remote_online`].

use super::protocol::{PostView, ServerMsg, ThreadView};
use super::store::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use yamabiko::hub::{Backpressure, Overflow, Subscriber, Subscription};
use yamabiko::{CloseCode, Message, PreparedMessage};

/// A connection's number, unique in this process.
pub type ClientId = u64;

/// What a connection is looking at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Nothing yet.
    Nothing,
    /// The thread list.
    List,
    /// One thread.
    Thread(i64),
}

/// Something that happened on the board, for every server's hub.
#[derive(Clone, Debug)]
pub enum BoardEvent {
    /// A post was committed (the first post of a new thread, too).
    Posted {
        /// The post.
        post: PostView,
        /// Its thread's new summary.
        thread: ThreadView,
    },
}

/// Tells the other board servers about events of this one (this server's own
/// connections get them directly).
pub trait FanOut: Send + Sync + 'static {
    /// Publishes an event. Returns once it is handed to the transport, without waiting
    /// for the other servers; delivery is best effort (pages catch up by id).
    fn publish(&self, event: BoardEvent) -> BoxFuture<'_, Result<(), String>>;
}

/// The [`FanOut`] of a board running as one server: there is nobody to tell.
pub struct SingleServer;

impl FanOut for SingleServer {
    fn publish(&self, _event: BoardEvent) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// The close reason of a connection that fell too far behind.
pub const TOO_SLOW: (CloseCode, &str) = (CloseCode::POLICY_VIOLATION, "too slow: queue full");

/// Unsent bytes a connection may have before it counts as too slow.
pub const MAX_QUEUED_BYTES: usize = 1 << 20;

/// Unsent bytes past which a connection's online counts wait latest-wins (one per
/// thread, the newest) instead of being queued.
pub const PRESENCE_MAX_QUEUED: usize = 64 * 1024;

/// Posts held for a connection while it opens a thread, at most (beyond it the
/// opening reads its page again).
pub const HOLD_MAX: usize = 1024;

/// How often changed online counts go out: at most this often per thread.
pub const PRESENCE_PERIOD: Duration = Duration::from_millis(250);

/// What a connection subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Changes to the thread list.
    List,
    /// The online counts shown in the thread list.
    ListOnline,
    /// One thread's posts.
    Thread(i64),
    /// One thread's online count.
    Online(i64),
    /// Replies to one connection.
    Client(ClientId),
}

/// A connection's subscriptions for what it views; dropping it leaves the view.
#[derive(Debug, Default)]
pub struct Watching {
    /// The thread's posts or the list's changes (a thread's only once it is open).
    events: Option<Subscription<Topic>>,
    /// The online counts shown (held only to stay subscribed).
    _online: Option<Subscription<Topic>>,
}

/// What became of [`Hub::finish_open`].
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The reply and the held posts are queued; the connection receives the thread's
    /// posts from now on.
    Live,
    /// The reply is queued; posts stay held (it said `has_newer`: the page asks again).
    Holding,
    /// More posts came than could be held; nothing was queued: read the page again.
    Overflowed,
    /// The connection views something else now (or is gone); nothing was queued.
    Gone,
}

/// A connection opening a thread: the thread's posts delivered meanwhile.
struct Opening {
    thread_id: i64,
    /// (number in the thread, the `post` message), in delivery order.
    posts: Vec<(i64, PreparedMessage)>,
    /// More than [`HOLD_MAX`] came: some were dropped.
    overflowed: bool,
}

impl Opening {
    fn new(thread_id: i64) -> Self {
        Opening {
            thread_id,
            posts: Vec::new(),
            overflowed: false,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// What each connection of this server views.
    views: HashMap<ClientId, View>,
    /// The connections opening a thread (few at a time).
    opening: HashMap<ClientId, Opening>,
    /// Viewers per thread on this server (absent = 0).
    viewers: HashMap<i64, usize>,
    /// Viewers per thread on the other servers, as last heard (absent = 0).
    remote: HashMap<i64, usize>,
    /// Told this server's count of a thread when it changed (at most once a period).
    on_presence: Option<mpsc::Sender<(i64, usize)>>,
    /// Threads whose count changed since counts last went out.
    dirty: BTreeSet<i64>,
}

/// This server's connections, what they look at, and the topics they receive.
pub struct Hub {
    topics: yamabiko::Hub<Topic>,
    backpressure: Backpressure,
    inner: Mutex<Inner>,
}

/// Serialises a message once, framed for every server connection.
pub fn prepare(msg: &ServerMsg) -> PreparedMessage {
    // Serialising these plain structs cannot fail (no maps with non-string keys).
    let text = serde_json::to_string(msg).unwrap_or_else(|e| {
        tracing::error!(error = %e, "serialising a message failed");
        String::from(r#"{"type":"error","code":"internal","message":"serialisation failed"}"#)
    });
    PreparedMessage::new(Message::text(text))
}

impl Hub {
    /// An empty hub; a connection that falls [`MAX_QUEUED_BYTES`] behind is closed
    /// with 1008 and given `grace` to take what was queued before it is dropped.
    pub fn new(grace: Duration) -> Self {
        Hub {
            topics: yamabiko::Hub::new(),
            backpressure: Backpressure {
                max_queued: MAX_QUEUED_BYTES,
                overflow: Overflow::Close {
                    code: TOO_SLOW.0,
                    reason: TOO_SLOW.1,
                    grace,
                },
            },
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection, viewing nothing yet; its replies go through the returned
    /// subscription (keep it as long as the connection).
    pub fn register(&self, id: ClientId, conn: &impl Subscriber) -> Subscription<Topic> {
        self.lock().views.insert(id, View::Nothing);
        self.subscribe(Topic::Client(id), conn)
    }

    /// Subscribes a connection to a topic with the board's bound.
    fn subscribe(&self, topic: Topic, conn: &impl Subscriber) -> Subscription<Topic> {
        self.topics
            .subscribe(topic, conn, self.backpressure.clone())
    }

    /// Subscribes a connection to online counts: latest-wins past
    /// [`PRESENCE_MAX_QUEUED`].
    fn subscribe_online(&self, topic: Topic, conn: &impl Subscriber) -> Subscription<Topic> {
        self.topics
            .subscribe(topic, conn, Backpressure::latest_wins(PRESENCE_MAX_QUEUED))
    }

    /// Removes a connection (no-op if already gone).
    pub fn unregister(&self, id: ClientId) {
        let mut inner = self.lock();
        inner.opening.remove(&id);
        if let Some(View::Thread(t)) = inner.views.remove(&id) {
            inner.presence_changed(t, -1);
        }
    }

    /// Moves a connection to another view and counts it as a viewer there. Returns
    /// the subscriptions of the new view (the caller drops the old ones after this),
    /// or `None` if the connection is gone or the view (other than a thread) stays
    /// the same.
    ///
    /// Viewing a thread starts with opening it: the connection gets the thread's online
    /// count now, but its posts are held, not sent, until [`Hub::finish_open`] queues
    /// the `thread` reply. Opening the thread already viewed (a resync) starts a new
    /// opening: the returned [`Watching`] is not live, and the old one must go.
    pub fn set_view(&self, id: ClientId, view: View, conn: &impl Subscriber) -> Option<Watching> {
        let mut inner = self.lock();
        let old = *inner.views.get(&id)?;
        if old == view && !matches!(view, View::Thread(_)) {
            return None;
        }
        let watching = match view {
            View::Nothing => Watching::default(),
            View::List => Watching {
                events: Some(self.subscribe(Topic::List, conn)),
                _online: Some(self.subscribe_online(Topic::ListOnline, conn)),
            },
            View::Thread(t) => Watching {
                events: None,
                _online: Some(self.subscribe_online(Topic::Online(t), conn)),
            },
        };
        match view {
            View::Thread(t) => inner.opening.insert(id, Opening::new(t)),
            _ => inner.opening.remove(&id),
        };
        inner.views.insert(id, view);
        if old != view {
            if let View::Thread(t) = old {
                inner.presence_changed(t, -1);
            }
            if let View::Thread(t) = view {
                inner.presence_changed(t, 1);
            }
        }
        Some(watching)
    }

    /// Ends a connection's opening of `thread_id` with `reply` (its `thread` message).
    ///
    /// With `floor = Some(no)` — the reply holds every post of the thread up to number
    /// `no`, and no post up to it will be delivered again (see
    /// [`super::order::Ordered::caught_up`]) — queues the reply, then the posts held
    /// since the opening began numbered above `no`, and subscribes the connection to
    /// the thread's posts (into `watching`): [`Opened::Live`]. All under the hub's lock,
    /// which [`Hub::deliver`] takes too: each post is held or sent live, never both,
    /// never neither.
    ///
    /// With `floor = None` (the reply says `has_newer`: the page asks again from its
    /// last post) the reply is queued and posts stay held. When more posts came than
    /// could be held, nothing is queued and the opening starts over.
    pub fn finish_open(
        &self,
        id: ClientId,
        thread_id: i64,
        floor: Option<i64>,
        reply: &PreparedMessage,
        conn: &impl Subscriber,
        watching: &mut Watching,
    ) -> Opened {
        let mut inner = self.lock();
        if inner.views.get(&id) != Some(&View::Thread(thread_id)) {
            return Opened::Gone;
        }
        let Some(opening) = inner.opening.get_mut(&id) else {
            return Opened::Gone;
        };
        if opening.thread_id != thread_id {
            return Opened::Gone;
        }
        if opening.overflowed {
            *opening = Opening::new(thread_id);
            return Opened::Overflowed;
        }
        let Some(floor) = floor else {
            self.send_to(id, reply);
            return Opened::Holding;
        };
        let held = std::mem::take(&mut opening.posts);
        inner.opening.remove(&id);
        self.send_to(id, reply);
        for (no, msg) in &held {
            if *no > floor {
                self.send_to(id, msg);
            }
        }
        watching.events = Some(self.subscribe(Topic::Thread(thread_id), conn));
        drop(inner);
        Opened::Live
    }

    /// Sends a message to one connection.
    pub fn send_to(&self, id: ClientId, msg: &PreparedMessage) {
        self.topics.publish_prepared(&Topic::Client(id), msg);
    }

    /// Connections viewing a thread, on this server and (as last heard) on the others.
    pub fn online(&self, thread_id: i64) -> usize {
        self.lock().total(thread_id)
    }

    /// Connections of this server viewing a thread.
    pub fn local_online(&self, thread_id: i64) -> usize {
        self.lock().viewers.get(&thread_id).copied().unwrap_or(0)
    }

    /// This server's viewer count of every thread it has viewers of.
    pub fn local_viewers(&self) -> Vec<(i64, usize)> {
        self.lock().viewers.iter().map(|(t, n)| (*t, *n)).collect()
    }

    /// From now on, sends `(thread, this server's viewers)` into `tx` when that count
    /// changed, at most once per [`PRESENCE_PERIOD`] (see [`Hub::flush_presence`];
    /// dropped when `tx` is full: the periodic refresh repairs it).
    pub fn watch_presence(&self, tx: mpsc::Sender<(i64, usize)>) {
        self.lock().on_presence = Some(tx);
    }

    /// Sets the number of viewers of a thread on the other servers; when the total
    /// changes, the connections that show it are told at the next
    /// [`Hub::flush_presence`].
    pub fn set_remote_online(&self, thread_id: i64, remote: usize) {
        let mut inner = self.lock();
        let old = inner.remote.get(&thread_id).copied().unwrap_or(0);
        if old == remote {
            return;
        }
        if remote == 0 {
            inner.remote.remove(&thread_id);
        } else {
            inner.remote.insert(thread_id, remote);
        }
        inner.dirty.insert(thread_id);
    }

    /// Sends the online count of every thread whose count changed since the last call
    /// to the connections that show it (that thread's viewers and the thread list's),
    /// as latest-wins state keyed by the thread, and tells the `watch_presence` channel
    /// this server's new counts. Called every [`PRESENCE_PERIOD`] by
    /// [`run_presence`]: a thousand viewers joining at once cost each viewer a few
    /// counts, not a thousand.
    pub fn flush_presence(&self) {
        let mut inner = self.lock();
        if inner.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut inner.dirty);
        let counts: Vec<(i64, usize, usize)> = dirty
            .iter()
            .map(|&t| {
                let local = inner.viewers.get(&t).copied().unwrap_or(0);
                (t, local, inner.total(t))
            })
            .collect();
        if let Some(tx) = &inner.on_presence {
            for &(t, local, _) in &counts {
                let _ = tx.try_send((t, local));
            }
        }
        drop(inner);
        for (thread_id, _, online) in counts {
            let msg = prepare(&ServerMsg::Presence { thread_id, online });
            let key = thread_id as u64;
            let text = msg.message().clone();
            self.topics
                .publish_state(&Topic::Online(thread_id), key, text.clone());
            self.topics.publish_state(&Topic::ListOnline, key, text);
        }
    }

    /// Threads with viewers on other servers, as last heard.
    pub fn remote_threads(&self) -> Vec<i64> {
        self.lock().remote.keys().copied().collect()
    }

    /// The library hub's counters (deliveries, drops, connections closed as too slow)
    /// and the bytes waiting on this server's connections.
    pub fn stats(&self) -> yamabiko::hub::HubStats {
        self.topics.stats()
    }

    /// Connections in the hub.
    pub fn len(&self) -> usize {
        self.lock().views.len()
    }

    /// Whether no connection is in the hub.
    pub fn is_empty(&self) -> bool {
        self.lock().views.is_empty()
    }

    /// Fills in the `online` field of thread summaries.
    pub fn fill_online(&self, threads: &mut [ThreadView]) {
        let inner = self.lock();
        for t in threads {
            t.online = inner.total(t.id);
        }
    }

    /// Delivers an event to the connections it concerns: a post to its thread's
    /// viewers (held for those still opening it), the thread's new summary to the
    /// thread list's viewers.
    pub fn deliver(&self, event: &BoardEvent) {
        match event {
            BoardEvent::Posted { post, thread } => {
                let mut thread = thread.clone();
                let to_thread = prepare(&ServerMsg::Post { post: post.clone() });
                {
                    // Under the lock: an opening either holds this post or is live
                    // before it (see `finish_open`).
                    let mut inner = self.lock();
                    thread.online = inner.total(thread.id);
                    for opening in inner.opening.values_mut() {
                        if opening.thread_id != post.thread_id {
                            continue;
                        }
                        if opening.posts.len() < HOLD_MAX {
                            opening.posts.push((post.no, to_thread.clone()));
                        } else {
                            opening.overflowed = true;
                        }
                    }
                    self.topics
                        .publish_prepared(&Topic::Thread(post.thread_id), &to_thread);
                }
                let to_list = prepare(&ServerMsg::ThreadUpdated { thread });
                self.topics.publish_prepared(&Topic::List, &to_list);
            }
        }
    }
}

impl Inner {
    fn total(&self, thread_id: i64) -> usize {
        let local = self.viewers.get(&thread_id).copied().unwrap_or(0);
        let remote = self.remote.get(&thread_id).copied().unwrap_or(0);
        local.saturating_add(remote)
    }

    /// Counts a viewer more or less; the change goes out at the next flush.
    fn presence_changed(&mut self, thread_id: i64, delta: isize) {
        let n = self.viewers.entry(thread_id).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.viewers.remove(&thread_id);
        }
        self.dirty.insert(thread_id);
    }
}

/// Flushes changed online counts every [`PRESENCE_PERIOD`] until `shutdown`.
pub async fn run_presence(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PRESENCE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => hub.flush_presence(),
        }
    }
}

/// A server connection over an in-memory pipe, for the board's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;
    use yamabiko::{Conn, Role, WriteHalf};

    /// A registered connection with its reader running, and the page's end.
    pub(crate) struct TestClient {
        pub(crate) id: ClientId,
        pub(crate) write: WriteHalf<DuplexStream>,
        pub(crate) page: Conn<DuplexStream>,
        pub(crate) reader: JoinHandle<yamabiko::Error>,
        _own: Subscription<Topic>,
        pub(crate) watching: Watching,
    }

    /// Registers connection `id`; the pipe holds `buffer` bytes each way.
    pub(crate) fn client(hub: &Hub, id: ClientId, buffer: usize) -> TestClient {
        let (server_io, page_io) = tokio::io::duplex(buffer);
        let config = yamabiko::Config::default();
        let server = Conn::from_raw(server_io, Role::Server, &config, Default::default());
        let page = Conn::from_raw(page_io, Role::Client, &config, Default::default());
        let (mut read, write) = server.split();
        let own = hub.register(id, &write);
        let reader = tokio::spawn(async move {
            loop {
                if let Err(e) = read.read_message().await {
                    return e;
                }
            }
        });
        TestClient {
            id,
            write,
            page,
            reader,
            _own: own,
            watching: Watching::default(),
        }
    }

    impl TestClient {
        /// Moves to another view, as the connection's task does.
        pub(crate) fn view(&mut self, hub: &Hub, view: View) {
            if let Some(watching) = hub.set_view(self.id, view, &self.write) {
                self.watching = watching;
            }
        }

        /// Ends the opening of `thread_id` with an empty reply holding posts up to
        /// number `floor`.
        pub(crate) fn finish(&mut self, hub: &Hub, thread_id: i64, floor: Option<i64>) -> Opened {
            let reply = prepare(&ServerMsg::Presence {
                thread_id: -1,
                online: 0,
            });
            hub.finish_open(
                self.id,
                thread_id,
                floor,
                &reply,
                &self.write,
                &mut self.watching,
            )
        }

        /// Views a thread and opens it at once (its reply holds posts up to `floor`).
        pub(crate) fn open(&mut self, hub: &Hub, thread_id: i64, floor: i64) {
            self.view(hub, View::Thread(thread_id));
            assert_eq!(self.finish(hub, thread_id, Some(floor)), Opened::Live);
        }

        /// The messages that arrive within a short while.
        pub(crate) async fn messages(&mut self) -> Vec<serde_json::Value> {
            let mut out = Vec::new();
            let wait = std::time::Duration::from_millis(100);
            while let Ok(Ok(m)) = tokio::time::timeout(wait, self.page.read_message()).await {
                out.push(serde_json::from_slice(m.as_bytes()).expect("JSON"));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{client, TestClient};
    use super::*;

    fn post(id: i64, thread_id: i64, body: &str) -> BoardEvent {
        BoardEvent::Posted {
            post: PostView {
                id,
                thread_id,
                no: id,
                name: "n".into(),
                body: body.into(),
                created_at: 0,
            },
            thread: ThreadView {
                id: thread_id,
                title: "t".into(),
                post_count: id,
                last_post_id: id,
                last_post_at: 0,
                created_at: 0,
                online: 0,
            },
        }
    }

    /// What a page got: "post N", "presence T=N", "reply" (the test reply) or the type.
    fn kinds(msgs: &[serde_json::Value]) -> Vec<String> {
        msgs.iter()
            .map(|m| match m["type"].as_str().unwrap_or("") {
                "post" => format!("post {}", m["post"]["id"]),
                "presence" if m["thread_id"] == -1 => "reply".to_string(),
                "presence" => format!("presence {}={}", m["thread_id"], m["online"]),
                other => other.to_string(),
            })
            .collect()
    }

    async fn got(c: &mut TestClient) -> Vec<String> {
        kinds(&c.messages().await)
    }

    #[tokio::test]
    async fn presence_and_delivery_by_view() {
        let hub = Hub::new(Duration::from_secs(1));
        let mut list = client(&hub, 1, 1 << 16);
        let mut a = client(&hub, 2, 1 << 16);
        let mut b = client(&hub, 3, 1 << 16);
        list.view(&hub, View::List);
        a.open(&hub, 7, 0);
        assert_eq!(hub.online(7), 1);
        assert_eq!(got(&mut a).await, ["reply"]);
        assert!(got(&mut list).await.is_empty(), "counts wait for the flush");
        hub.flush_presence();
        assert_eq!(got(&mut list).await, ["presence 7=1"]);
        assert_eq!(got(&mut a).await, ["presence 7=1"]);
        b.open(&hub, 7, 0);
        assert_eq!(hub.online(7), 2);
        for _ in 0..10 {
            hub.flush_presence();
        }
        assert_eq!(got(&mut b).await, ["reply", "presence 7=2"]);
        hub.deliver(&post(1, 7, "hello"));
        assert_eq!(got(&mut a).await, ["presence 7=2", "post 1"]);
        assert_eq!(got(&mut b).await, ["post 1"]);
        assert_eq!(got(&mut list).await, ["presence 7=2", "thread_updated"]);
        // A thread nobody views here reaches only the list.
        hub.deliver(&post(2, 8, "elsewhere"));
        assert!(a.messages().await.is_empty());
        assert_eq!(got(&mut list).await, ["thread_updated"]);
        // Leaving: the count drops and the others are told at the flush.
        hub.unregister(3);
        assert_eq!(hub.online(7), 1);
        hub.flush_presence();
        assert_eq!(got(&mut a).await, ["presence 7=1"]);
        assert_eq!(hub.len(), 2);
    }

    /// Defect 2 of issue 17: a live post used to reach a page before the reply to its
    /// `open_thread`. Posts delivered during the opening are held, then queued after
    /// the reply, without those the reply holds.
    #[tokio::test]
    async fn posts_wait_for_the_thread_reply_and_are_not_sent_twice() {
        let hub = Hub::new(Duration::from_secs(1));
        let mut c = client(&hub, 1, 1 << 16);
        c.view(&hub, View::Thread(7));
        // Delivered while the page is read: 5 is in the page, 6 is not.
        hub.deliver(&post(5, 7, "x"));
        hub.deliver(&post(6, 7, "x"));
        hub.deliver(&post(9, 8, "x")); // another thread
        assert!(got(&mut c).await.is_empty(), "nothing before the reply");
        assert_eq!(c.finish(&hub, 7, Some(5)), Opened::Live);
        hub.deliver(&post(7, 7, "x"));
        assert_eq!(got(&mut c).await, ["reply", "post 6", "post 7"]);
        // A resync of the same thread holds posts again; `has_newer` keeps holding.
        c.view(&hub, View::Thread(7));
        hub.deliver(&post(8, 7, "x"));
        assert_eq!(c.finish(&hub, 7, None), Opened::Holding);
        assert_eq!(got(&mut c).await, ["reply"]);
        c.view(&hub, View::Thread(7));
        hub.deliver(&post(10, 7, "x"));
        assert_eq!(c.finish(&hub, 7, Some(8)), Opened::Live);
        hub.deliver(&post(11, 7, "x"));
        assert_eq!(got(&mut c).await, ["reply", "post 10", "post 11"]);
        // Another view meanwhile: the opening's reply is not sent.
        c.view(&hub, View::Thread(7));
        c.view(&hub, View::List);
        assert_eq!(c.finish(&hub, 7, Some(11)), Opened::Gone);
        assert!(got(&mut c).await.is_empty());
        assert_eq!(hub.online(7), 0);
    }

    #[tokio::test]
    async fn an_opening_flooded_past_the_hold_reads_again() {
        let hub = Hub::new(Duration::from_secs(1));
        let mut c = client(&hub, 1, 1 << 16);
        c.view(&hub, View::Thread(7));
        for id in 1..=(HOLD_MAX as i64 + 1) {
            hub.deliver(&post(id, 7, "x"));
        }
        assert_eq!(c.finish(&hub, 7, Some(1)), Opened::Overflowed);
        assert!(got(&mut c).await.is_empty());
        hub.deliver(&post(2000, 7, "x"));
        assert_eq!(c.finish(&hub, 7, Some(1999)), Opened::Live);
        assert_eq!(got(&mut c).await, ["reply", "post 2000"]);
    }

    /// Defect 1 of issue 17: every join used to send a count to every viewer, queued
    /// behind posts, so a thousand joins were a million messages and filled the queues
    /// of viewers (1008). Now counts go out once a period, latest-wins.
    #[tokio::test]
    async fn a_thousand_joins_cost_each_viewer_a_few_counts_and_nobody_its_connection() {
        let hub = Hub::new(Duration::from_secs(1));
        let mut viewers = Vec::new();
        for id in 0..1000u64 {
            let mut c = client(&hub, id, 1 << 12);
            c.open(&hub, 7, 0);
            viewers.push(c);
            if id % 300 == 0 {
                hub.flush_presence();
            }
        }
        hub.flush_presence();
        assert_eq!(hub.stats().closed_slow, 0);
        for c in viewers.iter_mut().step_by(97) {
            let seen = got(c).await;
            assert!(seen.len() <= 6, "{seen:?}");
            assert_eq!(seen.last().map(String::as_str), Some("presence 7=1000"));
        }
    }

    /// A viewer that stops reading loses online counts (only the newest of each thread
    /// waits) long before posts make it too slow (1008); the others lose nothing.
    #[tokio::test]
    async fn a_slow_viewer_loses_counts_before_its_connection() {
        let hub = Hub::new(Duration::from_millis(200));
        let mut slow = client(&hub, 1, 4096);
        let mut fine = client(&hub, 2, 1 << 20);
        slow.open(&hub, 7, 0);
        fine.open(&hub, 7, 0);
        // Posts fill the slow one's queue past the counts' bound, not its own.
        let body = "x".repeat(2000);
        let mut id = 0;
        while hub.stats().queued_bytes < (PRESENCE_MAX_QUEUED + 8192) as u64 {
            id += 1;
            hub.deliver(&post(id, 7, &body));
            tokio::task::yield_now().await;
        }
        let before = hub.stats();
        for n in 0..50 {
            hub.set_remote_online(7, n + 1);
            hub.flush_presence();
        }
        let after = hub.stats();
        assert_eq!(after.closed_slow, 0, "counts never close a connection");
        // The slow viewer holds one count (each newer replaces it); fine got all 50.
        assert_eq!(after.dropped - before.dropped, 49);
        let posts = id;
        let reading = tokio::spawn(async move {
            let mut n = 0;
            let mut last = String::new();
            while n < 50 {
                let m = fine.page.read_message().await.unwrap();
                let v: serde_json::Value = serde_json::from_slice(m.as_bytes()).unwrap();
                if v["type"] == "presence" && v["thread_id"] == 7 {
                    n += 1;
                    last = v["online"].to_string();
                }
            }
            last
        });
        assert_eq!(reading.await.unwrap(), "52");
        // The slow one still gets every post, then the newest count.
        let mut seen = Vec::new();
        while seen.last().map(String::as_str) != Some("presence 7=52") {
            let m = tokio::time::timeout(Duration::from_secs(5), slow.page.read_message())
                .await
                .expect("in time")
                .unwrap();
            seen.extend(kinds(&[serde_json::from_slice(m.as_bytes()).unwrap()]));
        }
        let post_count = seen.iter().filter(|k| k.starts_with("post")).count();
        assert_eq!(post_count as i64, posts);
        assert!(seen.iter().filter(|k| k.starts_with("presence")).count() <= 3);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_with_1008() {
        let hub = Hub::new(Duration::from_millis(200));
        let mut slow = client(&hub, 1, 4096);
        let mut fine = client(&hub, 2, 1 << 20);
        slow.open(&hub, 7, 0);
        fine.open(&hub, 7, 0);
        let body = "x".repeat(2000);
        let reading = tokio::spawn(async move {
            let mut posts = 0;
            while let Ok(m) = fine.page.read_message().await {
                if m.as_bytes().starts_with(br#"{"type":"post""#) {
                    posts += 1;
                    if posts == 2000 {
                        break;
                    }
                }
            }
            posts
        });
        for i in 0..2000 {
            hub.deliver(&post(i, 7, &body));
            tokio::task::yield_now().await;
        }
        // The slow one's reader ends: it was closed as too slow, with 1008.
        let ended = tokio::time::timeout(Duration::from_secs(10), &mut slow.reader)
            .await
            .expect("closed in time")
            .expect("reader task");
        match ended {
            yamabiko::Error::TooSlow(f) => assert_eq!(f.code, CloseCode::POLICY_VIOLATION),
            other => panic!("expected TooSlow, got {other}"),
        }
        // The other one got every post.
        let posts = tokio::time::timeout(Duration::from_secs(10), reading).await;
        assert_eq!(posts.expect("in time").expect("reader"), 2000);
    }

    #[tokio::test]
    async fn remote_counts_add_up_and_go_out_at_the_flush() {
        let hub = Hub::new(Duration::from_secs(1));
        let (tx, mut changes) = mpsc::channel(16);
        hub.watch_presence(tx);
        let mut c = client(&hub, 1, 1 << 16);
        c.view(&hub, View::Thread(3));
        hub.set_remote_online(3, 5);
        assert!(
            changes.try_recv().is_err(),
            "told at the flush, not per change"
        );
        hub.flush_presence();
        assert_eq!(got(&mut c).await, ["presence 3=6"]);
        assert_eq!(changes.try_recv().ok(), Some((3, 1)));
        hub.set_remote_online(3, 5);
        hub.flush_presence();
        assert!(got(&mut c).await.is_empty(), "unchanged");
    }
}
