//! This server's connections, what each views, and who sees what.
//!
//! Delivery is the library's [`yamabiko::Hub`]: every connection subscribes to its
//! own topic ([`Topic::Client`], for replies) and to the topic of what it views (the
//! thread list or one thread), and a broadcast is framed once and queued on every
//! subscriber's connection, which its reader writes out. Every subscription has the
//! same bound: a connection with more than [`MAX_QUEUED_BYTES`] unsent is too slow and
//! is closed with 1008 ([`TOO_SLOW`]), so a client that stops reading cannot make the
//! server hold more than that; it gets the write timeout to take what was queued and
//! the close frame, then its transport is dropped.
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
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
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

/// What a connection subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Changes to the thread list (and the online counts shown in it).
    List,
    /// One thread's posts (and its online count).
    Thread(i64),
    /// Replies to one connection.
    Client(ClientId),
}

impl View {
    /// The topic a connection with this view subscribes to, besides its own.
    fn topic(self) -> Option<Topic> {
        match self {
            View::Nothing => None,
            View::List => Some(Topic::List),
            View::Thread(t) => Some(Topic::Thread(t)),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// What each connection of this server views.
    views: HashMap<ClientId, View>,
    /// Viewers per thread on this server (absent = 0).
    viewers: HashMap<i64, usize>,
    /// Viewers per thread on the other servers, as last heard (absent = 0).
    remote: HashMap<i64, usize>,
    /// Told this server's count of a thread whenever it changes.
    on_presence: Option<mpsc::Sender<(i64, usize)>>,
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

    /// Removes a connection (no-op if already gone).
    pub fn unregister(&self, id: ClientId) {
        let mut inner = self.lock();
        if let Some(View::Thread(t)) = inner.views.remove(&id) {
            let announce = vec![inner.presence_changed(t, -1)];
            drop(inner);
            self.announce(announce);
        }
    }

    /// Moves a connection to another view: subscribes it to the view's topic
    /// (returned; the caller drops the old one after this) and announces presence
    /// changes. `None` if the view stays the same, or for [`View::Nothing`].
    pub fn set_view(
        &self,
        id: ClientId,
        view: View,
        conn: &impl Subscriber,
    ) -> Option<Option<Subscription<Topic>>> {
        let mut inner = self.lock();
        let old = *inner.views.get(&id)?;
        if old == view {
            return None;
        }
        // Subscribed before the counts change, so that the page gets its own
        // presence update too.
        let subscription = view.topic().map(|t| self.subscribe(t, conn));
        inner.views.insert(id, view);
        let mut announce = Vec::new();
        if let View::Thread(t) = old {
            announce.push(inner.presence_changed(t, -1));
        }
        if let View::Thread(t) = view {
            announce.push(inner.presence_changed(t, 1));
        }
        drop(inner);
        self.announce(announce);
        Some(subscription)
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

    /// From now on, sends `(thread, this server's viewers)` into `tx` whenever that
    /// count changes (dropped when `tx` is full: the periodic refresh repairs it).
    pub fn watch_presence(&self, tx: mpsc::Sender<(i64, usize)>) {
        self.lock().on_presence = Some(tx);
    }

    /// Sets the number of viewers of a thread on the other servers and, when the total
    /// changes, tells the connections that show it.
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
        let announce = vec![(thread_id, inner.total(thread_id))];
        drop(inner);
        self.announce(announce);
    }

    /// Threads with viewers on other servers, as last heard.
    pub fn remote_threads(&self) -> Vec<i64> {
        self.lock().remote.keys().copied().collect()
    }

    /// Connections in the hub.
    pub fn len(&self) -> usize {
        self.lock().views.len()
    }

    /// Fills in the `online` field of thread summaries.
    pub fn fill_online(&self, threads: &mut [ThreadView]) {
        let inner = self.lock();
        for t in threads {
            t.online = inner.total(t.id);
        }
    }

    /// Delivers an event to the connections it concerns.
    pub fn deliver(&self, event: &BoardEvent) {
        match event {
            BoardEvent::Posted { post, thread } => {
                let mut thread = thread.clone();
                thread.online = self.online(thread.id);
                let to_thread = prepare(&ServerMsg::Post { post: post.clone() });
                self.topics
                    .publish_prepared(&Topic::Thread(post.thread_id), &to_thread);
                let to_list = prepare(&ServerMsg::ThreadUpdated { thread });
                self.topics.publish_prepared(&Topic::List, &to_list);
            }
        }
    }

    /// Sends threads' total viewer counts to the connections that show them.
    fn announce(&self, counts: Vec<(i64, usize)>) {
        for (thread_id, online) in counts {
            let msg = prepare(&ServerMsg::Presence { thread_id, online });
            self.topics.publish_prepared(&Topic::List, &msg);
            self.topics
                .publish_prepared(&Topic::Thread(thread_id), &msg);
        }
    }
}

impl Inner {
    fn total(&self, thread_id: i64) -> usize {
        let local = self.viewers.get(&thread_id).copied().unwrap_or(0);
        let remote = self.remote.get(&thread_id).copied().unwrap_or(0);
        local.saturating_add(remote)
    }

    /// Counts a viewer more or less; returns the thread's new total to announce.
    fn presence_changed(&mut self, thread_id: i64, delta: isize) -> (i64, usize) {
        let n = self.viewers.entry(thread_id).or_insert(0);
        *n = n.saturating_add_signed(delta);
        let local = *n;
        if local == 0 {
            self.viewers.remove(&thread_id);
        }
        if let Some(tx) = &self.on_presence {
            let _ = tx.try_send((thread_id, local));
        }
        (thread_id, self.total(thread_id))
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
        view: Option<Subscription<Topic>>,
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
            view: None,
        }
    }

    impl TestClient {
        /// Moves to another view, as the connection's task does.
        pub(crate) fn view(&mut self, hub: &Hub, view: View) {
            if let Some(subscription) = hub.set_view(self.id, view, &self.write) {
                self.view = subscription;
            }
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
    use super::testing::client;
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

    fn types(msgs: &[serde_json::Value]) -> Vec<&str> {
        msgs.iter().filter_map(|m| m["type"].as_str()).collect()
    }

    #[tokio::test]
    async fn presence_and_delivery_by_view() {
        let hub = Hub::new(Duration::from_secs(1));
        let mut list = client(&hub, 1, 1 << 16);
        let mut a = client(&hub, 2, 1 << 16);
        let mut b = client(&hub, 3, 1 << 16);
        list.view(&hub, View::List);
        a.view(&hub, View::Thread(7));
        assert_eq!(hub.online(7), 1);
        let seen = list.messages().await;
        assert_eq!(seen[0]["type"], "presence");
        assert_eq!(seen[0]["online"], 1);
        b.view(&hub, View::Thread(7));
        assert_eq!(hub.online(7), 2);
        // b gets its own arrival.
        assert_eq!(b.messages().await[0]["online"], 2);
        hub.deliver(&post(1, 7, "hello"));
        let at_a = a.messages().await;
        assert_eq!(types(&at_a), ["presence", "presence", "post"]);
        assert_eq!(at_a[2]["post"]["body"], "hello");
        assert_eq!(types(&b.messages().await), ["post"]);
        assert_eq!(
            types(&list.messages().await),
            ["presence", "thread_updated"]
        );
        // A thread nobody views here reaches only the list.
        hub.deliver(&post(2, 8, "elsewhere"));
        assert!(a.messages().await.is_empty());
        assert_eq!(types(&list.messages().await), ["thread_updated"]);
        // Replies go to one connection.
        hub.send_to(
            3,
            &prepare(&ServerMsg::Presence {
                thread_id: 0,
                online: 0,
            }),
        );
        assert_eq!(b.messages().await.len(), 1);
        assert!(a.messages().await.is_empty());
        // Leaving: the count drops and the others are told.
        hub.unregister(3);
        assert_eq!(hub.online(7), 1);
        assert_eq!(a.messages().await[0]["online"], 1);
        assert_eq!(hub.len(), 2);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_with_1008() {
        let hub = Hub::new(Duration::from_millis(200));
        let mut slow = client(&hub, 1, 4096);
        let mut fine = client(&hub, 2, 1 << 20);
        slow.view(&hub, View::Thread(7));
        fine.view(&hub, View::Thread(7));
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
}
