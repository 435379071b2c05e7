//! Fan-out: the hub of gorilla's chat example, in Rust.
//!
//! The [`Hub`] knows this server's connections and what each is looking at (the thread
//! list or one thread). Every connection has a bounded outbound queue drained by its
//! writer task; the hub only ever `try_send`s into it, so a client too slow to keep
//! up cannot make the server hold more than its queue — it is disconnected instead
//! (close 1008). A broadcast is serialised and framed once ([`PreparedMessage`]) and
//! the same bytes are queued on every connection.
//!
//! * **Opening a thread.** A connection's thread posts are held while it opens the
//!   thread, and queued right after its `thread` reply ([`Hub::finish_open`]): no live
//!   post of a thread reaches a page before that thread's reply, and none the reply
//!   had is sent again.
//! * **Online counts** are state, not events. A change only marks its thread; every
//!   [`PRESENCE_PERIOD`] [`Hub::flush_presence`] puts each marked thread's count into
//!   the [`Latest`] slot of every connection showing it — latest-wins, never queued
//!   behind posts — so a join storm costs each viewer a few counts, and a slow viewer
//!   loses counts before it could lose its connection.
//!
//! A committed post reaches this server's hub directly (through
//! [`super::order::Ordered`], which keeps each thread's posts in order), and the other
//! servers through a [`FanOut`]: [`SingleServer`] when there are none, or
//! [`super::broker::RedisFanOut`], whose subscriber task on every server passes what it
//! receives to the same ordered delivery. Presence (who views which thread) is counted
//! here for this server's connections; the counts of other servers are added with
//! [`Hub::set_remote_online`].

use super::latest::Latest;
use super::protocol::{PostView, ServerMsg, ThreadView};
use super::store::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
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

/// Why a connection is being stopped, decided by whoever stops it first.
pub struct Stop {
    token: CancellationToken,
    server: CancellationToken,
    reason: OnceLock<(CloseCode, &'static str)>,
}

impl Stop {
    /// A stop signal that also fires when `server` (the whole server) shuts down.
    pub fn new(server: &CancellationToken) -> Self {
        Stop {
            token: server.child_token(),
            server: server.clone(),
            reason: OnceLock::new(),
        }
    }

    /// Stops the connection; its writer sends a close frame with `code` and `reason`.
    pub fn close(&self, code: CloseCode, reason: &'static str) {
        let _ = self.reason.set((code, reason));
        self.token.cancel();
    }

    /// Stops the connection without a close frame (it is dead or already closed).
    pub fn drop_now(&self) {
        self.token.cancel();
    }

    /// Completes when the connection is to stop.
    pub async fn stopped(&self) {
        self.token.cancelled().await
    }

    /// Whether the connection is to stop.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The close frame to send, if any.
    pub fn close_reason(&self) -> Option<(CloseCode, &'static str)> {
        if let Some(r) = self.reason.get() {
            return Some(*r);
        }
        if self.server.is_cancelled() {
            return Some((CloseCode::GOING_AWAY, "server shutting down"));
        }
        None
    }
}

/// The close reason of a connection whose queue overflowed.
pub const TOO_SLOW: (CloseCode, &str) = (CloseCode::POLICY_VIOLATION, "too slow: queue full");

/// Posts held for a connection while it opens a thread, at most (beyond it the
/// opening reads its page again).
pub const HOLD_MAX: usize = 1024;

/// How often changed online counts go out: at most this often per thread.
pub const PRESENCE_PERIOD: Duration = Duration::from_millis(250);

/// A connection as the hub sees it.
struct Client {
    queue: mpsc::Sender<PreparedMessage>,
    /// Online counts, latest-wins, outside the queue.
    latest: Arc<Latest>,
    stop: Arc<Stop>,
    view: View,
    /// While it opens a thread (its `thread` reply not yet queued): the thread's posts
    /// delivered meanwhile, by id, queued after the reply (see [`Hub::finish_open`]).
    opening: Option<Held>,
    /// The thread's posts up to this id are in the reply it got: never sent again.
    floor: i64,
}

/// Posts held while a connection opens a thread.
#[derive(Default)]
struct Held {
    posts: Vec<(i64, PreparedMessage)>,
    /// More than [`HOLD_MAX`] came: some were dropped.
    overflowed: bool,
}

#[derive(Default)]
struct Inner {
    clients: HashMap<ClientId, Client>,
    /// Viewers per thread on this server (absent = 0).
    viewers: HashMap<i64, usize>,
    /// Viewers per thread on the other servers, as last heard (absent = 0).
    remote: HashMap<i64, usize>,
    /// Told this server's count of a thread when it changed (at most once a period).
    on_presence: Option<mpsc::Sender<(i64, usize)>>,
    /// Threads whose count changed since counts last went out.
    dirty: BTreeSet<i64>,
}

/// This server's connections and what they look at.
#[derive(Default)]
pub struct Hub {
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
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection, viewing nothing yet: its messages go into `queue`, its online
    /// counts into `latest`.
    pub fn register(
        &self,
        id: ClientId,
        queue: mpsc::Sender<PreparedMessage>,
        latest: Arc<Latest>,
        stop: Arc<Stop>,
    ) {
        self.lock().clients.insert(
            id,
            Client {
                queue,
                latest,
                stop,
                view: View::Nothing,
                opening: None,
                floor: 0,
            },
        );
    }

    /// Removes a connection (no-op if already gone).
    pub fn unregister(&self, id: ClientId) {
        let mut inner = self.lock();
        if let Some(c) = inner.clients.remove(&id) {
            if let View::Thread(t) = c.view {
                inner.presence_changed(t, -1);
            }
        }
    }

    /// Moves a connection to another view, announcing presence changes.
    ///
    /// Viewing a thread starts with its opening: the thread's posts are held for the
    /// connection, not sent, until [`Hub::finish_open`] queues the `thread` reply —
    /// no live post of a thread reaches a page before that thread's reply (the page
    /// resyncs from what the reply holds, so a post before it could be skipped for good).
    /// Opening the thread already viewed (a resync) starts a new opening.
    pub fn set_view(&self, id: ClientId, view: View) {
        let mut inner = self.lock();
        let Some(c) = inner.clients.get_mut(&id) else {
            return;
        };
        c.opening = match view {
            View::Thread(_) => Some(Held::default()),
            _ => None,
        };
        c.floor = 0;
        let old = std::mem::replace(&mut c.view, view);
        if old == view {
            return;
        }
        if let View::Thread(t) = old {
            inner.presence_changed(t, -1);
        }
        if let View::Thread(t) = view {
            inner.presence_changed(t, 1);
        }
    }

    /// Ends a connection's opening of `thread_id`: queues `reply` (the `thread`
    /// message), then the posts held since the opening began with an id above `floor`
    /// (the reply holds every post of the thread up to `floor`), and from then on
    /// sends the thread's posts above `floor` live.
    ///
    /// `floor` is `None` when the reply is not the end of the opening (it says
    /// `has_newer`: the page asks again from its last post): the reply is queued and
    /// posts stay held. Returns `false`, queueing nothing, when more posts came during
    /// the opening than could be held: the caller reads its page again (the opening
    /// starts over).
    pub fn finish_open(
        &self,
        id: ClientId,
        thread_id: i64,
        floor: Option<i64>,
        reply: PreparedMessage,
    ) -> bool {
        let mut inner = self.lock();
        let Some(c) = inner.clients.get_mut(&id) else {
            return true;
        };
        if c.view != View::Thread(thread_id) {
            return true;
        }
        let mut slow = false;
        match floor {
            None => {
                slow |= !queue_or_slow(&c.queue, reply);
            }
            Some(floor) => {
                let held = c.opening.take().unwrap_or_default();
                if held.overflowed {
                    c.opening = Some(Held::default());
                    return false;
                }
                c.floor = floor;
                slow |= !queue_or_slow(&c.queue, reply);
                for (post_id, msg) in held.posts {
                    if post_id > floor && !slow {
                        slow |= !queue_or_slow(&c.queue, msg);
                    }
                }
            }
        }
        drop(inner);
        if slow {
            self.kick(vec![id]);
        }
        true
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
    /// latest-wins: into each connection's [`Latest`] slot for the thread, never its
    /// queue, replacing a count still waiting there. Tells the `watch_presence`
    /// channel this server's new counts. Called every [`PRESENCE_PERIOD`] by
    /// [`run_presence`]: a thousand viewers joining at once cost each viewer a few
    /// counts, not a thousand.
    pub fn flush_presence(&self) {
        let mut inner = self.lock();
        if inner.dirty.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut inner.dirty);
        let msgs: Vec<(i64, PreparedMessage)> = dirty
            .iter()
            .map(|&t| {
                let online = inner.total(t);
                (
                    t,
                    prepare(&ServerMsg::Presence {
                        thread_id: t,
                        online,
                    }),
                )
            })
            .collect();
        if let Some(tx) = &inner.on_presence {
            for &t in &dirty {
                let local = inner.viewers.get(&t).copied().unwrap_or(0);
                let _ = tx.try_send((t, local));
            }
        }
        for c in inner.clients.values() {
            match c.view {
                View::List => {
                    for (t, m) in &msgs {
                        c.latest.set(*t, m.clone());
                    }
                }
                View::Thread(id) => {
                    if let Ok(i) = msgs.binary_search_by_key(&id, |(t, _)| *t) {
                        c.latest.set(id, msgs[i].1.clone());
                    }
                }
                View::Nothing => {}
            }
        }
    }

    /// Threads with viewers on other servers, as last heard.
    pub fn remote_threads(&self) -> Vec<i64> {
        self.lock().remote.keys().copied().collect()
    }

    /// Connections in the hub.
    pub fn len(&self) -> usize {
        self.lock().clients.len()
    }

    /// Fills in the `online` field of thread summaries.
    pub fn fill_online(&self, threads: &mut [ThreadView]) {
        let inner = self.lock();
        for t in threads {
            t.online = inner.total(t.id);
        }
    }

    /// Delivers an event to the connections it concerns: a post to its thread's
    /// viewers (held for those still opening it, skipped for those whose reply had it),
    /// the thread's new summary to the thread list's viewers.
    pub fn deliver(&self, event: &BoardEvent) {
        let mut inner = self.lock();
        let mut slow = Vec::new();
        match event {
            BoardEvent::Posted { post, thread } => {
                let mut thread = thread.clone();
                thread.online = inner.total(thread.id);
                let to_thread = prepare(&ServerMsg::Post { post: post.clone() });
                let to_list = prepare(&ServerMsg::ThreadUpdated { thread });
                let viewing = View::Thread(post.thread_id);
                for (id, c) in inner.clients.iter_mut() {
                    if c.view == View::List {
                        if !queue_or_slow(&c.queue, to_list.clone()) {
                            slow.push(*id);
                        }
                    } else if c.view == viewing {
                        if let Some(held) = &mut c.opening {
                            if held.posts.len() < HOLD_MAX {
                                held.posts.push((post.id, to_thread.clone()));
                            } else {
                                held.overflowed = true;
                            }
                        } else if post.id > c.floor && !queue_or_slow(&c.queue, to_thread.clone()) {
                            slow.push(*id);
                        }
                    }
                }
            }
        }
        drop(inner);
        self.kick(slow);
    }

    /// Disconnects connections whose queue overflowed.
    fn kick(&self, slow: Vec<ClientId>) {
        if slow.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for id in slow {
            if let Some(c) = inner.clients.remove(&id) {
                tracing::warn!(client = id, "client too slow, disconnecting (close 1008)");
                c.stop.close(TOO_SLOW.0, TOO_SLOW.1);
                if let View::Thread(t) = c.view {
                    inner.presence_changed(t, -1);
                }
            }
        }
    }
}

/// Queues `msg`; `false` when the queue is full (the connection is too slow). A
/// closed queue counts as done: its reader unregisters shortly.
fn queue_or_slow(queue: &mpsc::Sender<PreparedMessage>, msg: PreparedMessage) -> bool {
    !matches!(queue.try_send(msg), Err(mpsc::error::TrySendError::Full(_)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn client(hub: &Hub, id: ClientId, cap: usize) -> (mpsc::Receiver<PreparedMessage>, Arc<Stop>) {
        let (rx, _, stop) = client_with_latest(hub, id, cap);
        (rx, stop)
    }

    fn client_with_latest(
        hub: &Hub,
        id: ClientId,
        cap: usize,
    ) -> (mpsc::Receiver<PreparedMessage>, Arc<Latest>, Arc<Stop>) {
        let (tx, rx) = mpsc::channel(cap);
        let latest = Arc::new(Latest::new());
        let stop = Arc::new(Stop::new(&CancellationToken::new()));
        hub.register(id, tx, latest.clone(), stop.clone());
        (rx, latest, stop)
    }

    /// The online counts waiting in a connection's latest-wins slots.
    fn counts(latest: &Latest) -> Vec<(i64, u64)> {
        latest
            .take()
            .iter()
            .map(|m| {
                let v: serde_json::Value = serde_json::from_slice(m.message().as_bytes()).unwrap();
                assert_eq!(v["type"], "presence");
                (
                    v["thread_id"].as_i64().unwrap(),
                    v["online"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn text(m: &PreparedMessage) -> String {
        String::from_utf8_lossy(m.message().as_bytes()).into_owned()
    }

    fn prepare_reply() -> PreparedMessage {
        PreparedMessage::new(Message::text(r#"{"type":"thread"}"#))
    }

    fn post(id: i64, thread_id: i64) -> BoardEvent {
        BoardEvent::Posted {
            post: PostView {
                id,
                thread_id,
                no: id,
                name: "n".into(),
                body: "b".into(),
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

    fn kinds_and_ids(rx: &mut mpsc::Receiver<PreparedMessage>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| {
                let v: serde_json::Value = serde_json::from_slice(m.message().as_bytes()).unwrap();
                match v["type"].as_str().unwrap() {
                    "post" => format!("post {}", v["post"]["id"]),
                    other => other.to_string(),
                }
            })
            .filter(|k| k != "presence")
            .collect()
    }

    #[test]
    fn posts_wait_for_the_thread_reply_and_are_not_sent_twice() {
        let hub = Hub::new();
        let (mut rx, _) = client(&hub, 1, 64);
        hub.set_view(1, View::Thread(7));
        // Delivered while the page is read: 5 is in the page, 6 is not.
        hub.deliver(&post(5, 7));
        hub.deliver(&post(6, 7));
        hub.deliver(&post(9, 8)); // another thread
        assert_eq!(
            kinds_and_ids(&mut rx),
            Vec::<String>::new(),
            "nothing before the reply"
        );
        assert!(hub.finish_open(1, 7, Some(5), prepare_reply()));
        hub.deliver(&post(5, 7)); // late repeat of a post the reply had
        hub.deliver(&post(7, 7));
        assert_eq!(kinds_and_ids(&mut rx), ["thread", "post 6", "post 7"]);
        // A resync of the same thread holds posts again; `has_newer` keeps holding.
        hub.set_view(1, View::Thread(7));
        hub.deliver(&post(8, 7));
        assert!(hub.finish_open(1, 7, None, prepare_reply()));
        assert_eq!(kinds_and_ids(&mut rx), ["thread"]);
        hub.set_view(1, View::Thread(7));
        hub.deliver(&post(10, 7));
        assert!(hub.finish_open(1, 7, Some(8), prepare_reply()));
        assert_eq!(kinds_and_ids(&mut rx), ["thread", "post 10"]);
    }

    #[test]
    fn an_opening_flooded_past_the_hold_reads_again() {
        let hub = Hub::new();
        let (mut rx, _) = client(&hub, 1, 64);
        hub.set_view(1, View::Thread(7));
        for id in 1..=(HOLD_MAX as i64 + 1) {
            hub.deliver(&post(id, 7));
        }
        assert!(!hub.finish_open(1, 7, Some(1), prepare_reply()));
        assert_eq!(kinds_and_ids(&mut rx), Vec::<String>::new());
        hub.deliver(&post(2000, 7));
        assert!(hub.finish_open(1, 7, Some(1999), prepare_reply()));
        assert_eq!(kinds_and_ids(&mut rx), ["thread", "post 2000"]);
    }

    #[test]
    fn presence_goes_out_latest_wins_and_slow_clients_are_closed_for_posts_only() {
        let hub = Hub::new();
        let (mut list_rx, list_latest, _) = client_with_latest(&hub, 1, 16);
        let (mut a_rx, a_latest, _) = client_with_latest(&hub, 2, 16);
        // b's queue holds one message: the reply. Counts never take queue space.
        let (_b_rx, b_latest, b_stop) = client_with_latest(&hub, 3, 1);
        hub.set_view(1, View::List);
        hub.set_view(2, View::Thread(7));
        assert!(hub.finish_open(2, 7, Some(0), prepare_reply()));
        assert_eq!(hub.online(7), 1);
        assert!(counts(&list_latest).is_empty(), "counts wait for the flush");
        hub.flush_presence();
        assert_eq!(counts(&list_latest), [(7, 1)]);
        assert_eq!(counts(&a_latest), [(7, 1)]);
        hub.set_view(3, View::Thread(7));
        assert!(hub.finish_open(3, 7, Some(0), prepare_reply()));
        for _ in 0..100 {
            hub.flush_presence(); // nothing changed: nothing sent
        }
        assert_eq!(hub.online(7), 2);
        hub.flush_presence();
        assert_eq!(counts(&a_latest), [(7, 2)]);
        assert_eq!(counts(&b_latest), [(7, 2)]);
        hub.deliver(&post(1, 7));
        // b could not take the post: kicked with 1008, presence drops back to 1.
        assert!(b_stop.is_stopped());
        assert_eq!(
            b_stop.close_reason().unwrap().0,
            CloseCode::POLICY_VIOLATION
        );
        assert_eq!(hub.online(7), 1);
        hub.flush_presence();
        assert_eq!(counts(&a_latest), [(7, 1)]);
        assert_eq!(counts(&list_latest), [(7, 1)]);
        assert_eq!(kinds_and_ids(&mut a_rx), ["thread", "post 1"]);
        let list_msgs: Vec<String> = std::iter::from_fn(|| list_rx.try_recv().ok())
            .map(|m| text(&m))
            .collect();
        assert!(list_msgs.iter().any(|m| m.contains("thread_updated")));
        assert!(list_msgs.iter().all(|m| !m.contains("presence")));
        hub.unregister(2);
        assert_eq!(hub.online(7), 0);
    }

    /// Defect 1 of issue 17: every join used to send a count to every viewer through
    /// its queue, so a thousand joins were a million messages and filled the queues of
    /// viewers (1008). Now each viewer holds one count per thread, the newest.
    #[test]
    fn a_thousand_joins_cost_each_viewer_one_count_and_nobody_its_connection() {
        let hub = Hub::new();
        let mut viewers = Vec::new();
        for id in 0..1000u64 {
            let (rx, latest, stop) = client_with_latest(&hub, id, 4);
            hub.set_view(id, View::Thread(7));
            assert!(hub.finish_open(id, 7, Some(0), prepare_reply()));
            viewers.push((rx, latest, stop));
            if id % 300 == 0 {
                hub.flush_presence();
            }
        }
        hub.flush_presence();
        for (mut rx, latest, stop) in viewers {
            assert!(!stop.is_stopped());
            assert_eq!(counts(&latest), [(7, 1000)]);
            assert_eq!(kinds_and_ids(&mut rx), ["thread"]);
        }
    }

    #[test]
    fn remote_counts_add_up_and_go_out_at_the_flush() {
        let hub = Hub::new();
        let (tx, mut changes) = mpsc::channel(16);
        hub.watch_presence(tx);
        let (_rx, latest, _) = client_with_latest(&hub, 1, 4);
        hub.set_view(1, View::Thread(3));
        hub.set_remote_online(3, 5);
        assert!(
            changes.try_recv().is_err(),
            "told at the flush, not per change"
        );
        hub.flush_presence();
        assert_eq!(counts(&latest), [(3, 6)]);
        assert_eq!(changes.try_recv().ok(), Some((3, 1)));
        hub.set_remote_online(3, 5);
        hub.flush_presence();
        assert!(counts(&latest).is_empty(), "unchanged");
    }
}
