//! Delivers each thread's posts to this server's connections in order, once.
//!
//! Posts reach a server by two roads: its own commits, and other servers' commits
//! through the broker. The broker may reorder them (two servers publish at the same
//! moment), repeat nothing but may lose some (pub/sub is at most once, and nothing is
//! published to a server while its broker connection is down). Storage guarantees
//! that within a thread the post numbers (`no`) count up with no hole, in the order
//! of commits (see [`super::postgres`]), so this server remembers, for each thread its
//! connections view, the last post it delivered, and for each new one:
//!
//! * `no` already delivered → dropped (a repeat);
//! * the next `no` → delivered;
//! * a jump → the posts in between are committed (a later post of the same thread
//!   is). Usually they are on their way: posts committed together (a group commit)
//!   reach here in whatever order their tasks wake. So the post waits, up to
//!   [`GAP_GRACE`], for the gap to close by itself; what is still missing then is read
//!   from storage and delivered first.
//!
//! [`Ordered::catch_up`] does the same read for every watched thread after the broker
//! connection comes back. Threads nobody views here are not tracked; a page opening
//! one sets the starting point from the thread's summary read before its page of
//! posts (a post after that point is in the page, or delivered afterwards, or both —
//! pages keep posts by id).

use super::hub::{BoardEvent, Hub};
use super::protocol::{PostView, ThreadView, RESYNC_PAGE_SIZE};
use super::store::Storage;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long a post after a gap waits for the posts in between before they are read
/// from storage.
pub const GAP_GRACE: Duration = Duration::from_millis(50);

/// The last post delivered in a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    id: i64,
    no: i64,
}

/// Ordered, de-duplicated delivery of posts into a [`Hub`].
pub struct Ordered {
    store: Arc<dyn Storage>,
    hub: Arc<Hub>,
    /// Per watched thread, the last post delivered. The async lock also makes
    /// deliveries one at a time.
    marks: tokio::sync::Mutex<HashMap<i64, Mark>>,
    /// Told whenever a mark moves (posts waiting after a gap look again).
    advanced: Notify,
}

impl Ordered {
    /// Delivery into `hub`, filling gaps from `store`.
    pub fn new(store: Arc<dyn Storage>, hub: Arc<Hub>) -> Self {
        Ordered {
            store,
            hub,
            marks: tokio::sync::Mutex::new(HashMap::new()),
            advanced: Notify::new(),
        }
    }

    /// A connection is opening a thread whose summary was `thread` before its posts
    /// are read: later posts count from there, unless the thread is already tracked.
    pub async fn watching(&self, thread: &ThreadView) {
        self.marks.lock().await.entry(thread.id).or_insert(Mark {
            id: thread.last_post_id,
            no: thread.post_count,
        });
    }

    /// An opening's reply holds every post of `thread` up to number `no`: delivers
    /// (from storage) those of them not delivered yet, so that none of them is
    /// delivered after the opening goes live. Returns whether every post up to `no`
    /// is delivered (a storage error or a very long gap can leave some, which may
    /// then reach the page twice; the page keeps one of each).
    pub async fn caught_up(&self, thread: &ThreadView, no: i64) -> bool {
        let mut marks = self.marks.lock().await;
        // Tracked since `watching` (a thread stops being tracked only when nobody here
        // views it, and the opening connection does).
        let Some(mark) = marks.get(&thread.id).copied() else {
            return false;
        };
        if mark.no >= no {
            return true;
        }
        let new = self
            .fill(thread.id, mark, no.saturating_add(1), thread)
            .await;
        marks.insert(thread.id, new);
        self.advanced.notify_waiters();
        new.no >= no
    }

    /// Delivers a committed post (and its thread's summary) in order.
    pub async fn deliver(&self, post: PostView, thread: ThreadView) {
        let deadline = tokio::time::Instant::now() + GAP_GRACE;
        let thread_id = post.thread_id;
        let mut marks = loop {
            let marks = self.marks.lock().await;
            let Some(mark) = marks.get(&thread_id) else {
                break marks;
            };
            if post.no <= mark.no.saturating_add(1)
                || tokio::time::Instant::now() >= deadline
                || self.hub.local_online(thread_id) == 0
            {
                break marks;
            }
            // A gap: wait (without the lock) for the posts in between to come.
            let advanced = self.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            drop(marks);
            let _ = tokio::time::timeout_at(deadline, advanced).await;
        };
        if self.hub.local_online(thread_id) == 0 {
            // Nobody here views the thread: only the thread list cares.
            marks.remove(&thread_id);
            self.hub.deliver(&BoardEvent::Posted { post, thread });
            return;
        }
        let Some(mark) = marks.get(&thread_id).copied() else {
            marks.insert(
                thread_id,
                Mark {
                    id: post.id,
                    no: post.no,
                },
            );
            self.hub.deliver(&BoardEvent::Posted { post, thread });
            return;
        };
        if post.no <= mark.no {
            return;
        }
        let mut mark = mark;
        if post.no > mark.no.saturating_add(1) {
            mark = self.fill(thread_id, mark, post.no, &thread).await;
        }
        if post.no > mark.no {
            mark = Mark {
                id: post.id,
                no: post.no,
            };
            self.hub.deliver(&BoardEvent::Posted { post, thread });
        }
        marks.insert(thread_id, mark);
        self.advanced.notify_waiters();
    }

    /// Reads and delivers the posts after `mark` and before number `until` (all of
    /// them with `until = i64::MAX`); returns the new mark.
    async fn fill(&self, thread_id: i64, mut mark: Mark, until: i64, thread: &ThreadView) -> Mark {
        // Bounded: a few pages at most; a page missing more is told by its own resync.
        for _ in 0..4 {
            let page = match self
                .store
                .posts_after(thread_id, mark.id, RESYNC_PAGE_SIZE)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(thread = thread_id, error = %e, "could not read missed posts");
                    return mark;
                }
            };
            for p in page.posts {
                if p.no <= mark.no {
                    continue;
                }
                if p.no >= until {
                    return mark;
                }
                mark = Mark { id: p.id, no: p.no };
                tracing::debug!(thread = thread_id, post = p.id, "delivering a missed post");
                self.hub.deliver(&BoardEvent::Posted {
                    post: p,
                    thread: thread.clone(),
                });
            }
            if !page.more {
                break;
            }
        }
        mark
    }

    /// Delivers every post committed after the last one delivered, in each thread
    /// viewed here (after the broker was unreachable and events may have been lost).
    pub async fn catch_up(&self) {
        let mut marks = self.marks.lock().await;
        let threads: Vec<(i64, Mark)> = marks.iter().map(|(t, m)| (*t, *m)).collect();
        for (thread_id, mark) in threads {
            if self.hub.local_online(thread_id) == 0 {
                marks.remove(&thread_id);
                continue;
            }
            let summary = match self.store.thread(thread_id).await {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(thread = thread_id, error = %e, "catch-up failed");
                    continue;
                }
            };
            if summary.post_count <= mark.no {
                continue;
            }
            let new = self.fill(thread_id, mark, i64::MAX, &summary).await;
            marks.insert(thread_id, new);
        }
        self.advanced.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::testing::{client, TestClient};
    use crate::hub::View;
    use crate::sqlite::SqliteStore;
    use crate::store::NewPost;

    fn new_post(i: usize) -> NewPost {
        NewPost {
            name: "n".into(),
            body: format!("b{i}"),
            client_id: format!("c{i}"),
            created_at: 1,
        }
    }

    /// Ids of the posts that reached a connection.
    async fn received(c: &mut TestClient) -> Vec<i64> {
        c.messages()
            .await
            .into_iter()
            .filter_map(|v| (v["type"] == "post").then(|| v["post"]["id"].as_i64())?)
            .collect()
    }

    #[tokio::test]
    async fn out_of_order_repeated_and_missing_posts_arrive_in_order_once() {
        let dir = std::env::temp_dir().join(format!("yamabiko-order-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("order.db");
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let hub = Arc::new(Hub::new(std::time::Duration::from_secs(1)));
        let ordered = Ordered::new(store.clone(), hub.clone());

        let first = store.create_thread("t".into(), new_post(0)).await.unwrap();
        let t = first.thread.id;
        let mut page = client(&hub, 1, 1 << 16);
        page.view(&hub, View::Thread(t));
        ordered.watching(&first.thread).await;
        page.finish(&hub, t, Some(first.post.no));
        page.messages().await;

        let mut posts = Vec::new();
        for i in 1..=5 {
            posts.push(store.create_post(t, new_post(i)).await.unwrap());
        }
        let ids: Vec<i64> = posts.iter().map(|c| c.post.id).collect();
        let send = |i: usize| (posts[i].post.clone(), posts[i].thread.clone());
        // 2 arrives first: 1 is read from storage. Then 1 again (late), 2 again.
        let (p, th) = send(1);
        ordered.deliver(p, th).await;
        let (p, th) = send(0);
        ordered.deliver(p, th).await;
        let (p, th) = send(1);
        ordered.deliver(p, th).await;
        assert_eq!(received(&mut page).await, ids[..2]);
        // 3 and 4 never arrive; after a catch-up the page has them, then 5 once.
        ordered.catch_up().await;
        let (p, th) = send(4);
        ordered.deliver(p, th).await;
        assert_eq!(received(&mut page).await, ids[2..]);
        // A thread nobody views here is not tracked.
        page.view(&hub, View::List);
        let (p, th) = send(3);
        ordered.deliver(p, th).await;
        assert!(ordered.marks.lock().await.is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Posts committed together reach `deliver` in any order (their tasks wake in any
    /// order): a post after a gap waits for the ones in between instead of reading
    /// them from storage.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn posts_arriving_out_of_order_wait_for_each_other_without_reading_storage() {
        let dir = std::env::temp_dir().join(format!("yamabiko-order-grace-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("order.db");
        let _ = std::fs::remove_file(&path);
        let sqlite = SqliteStore::open(&path).unwrap();
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let store = Arc::new(Counting {
            inner: sqlite.clone(),
            reads: reads.clone(),
        });
        let hub = Arc::new(Hub::new(std::time::Duration::from_secs(1)));
        let ordered = Arc::new(Ordered::new(store.clone(), hub.clone()));
        let first = sqlite.create_thread("t".into(), new_post(0)).await.unwrap();
        let t = first.thread.id;
        let mut page = client(&hub, 1, 1 << 16);
        page.view(&hub, View::Thread(t));
        ordered.watching(&first.thread).await;
        page.finish(&hub, t, Some(first.post.no));
        page.messages().await;
        let mut posts = Vec::new();
        for i in 1..=4 {
            posts.push(sqlite.create_post(t, new_post(i)).await.unwrap());
        }
        // 4, 3 and 2 arrive before 1.
        let mut waiting = Vec::new();
        for c in posts.iter().skip(1).rev() {
            let (o, p, th) = (ordered.clone(), c.post.clone(), c.thread.clone());
            waiting.push(tokio::spawn(async move { o.deliver(p, th).await }));
            tokio::task::yield_now().await;
        }
        ordered
            .deliver(posts[0].post.clone(), posts[0].thread.clone())
            .await;
        for w in waiting {
            w.await.unwrap();
        }
        let ids: Vec<i64> = posts.iter().map(|c| c.post.id).collect();
        assert_eq!(received(&mut page).await, ids);
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "no storage read"
        );
        drop(ordered);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// SQLite, counting the reads `Ordered` makes to fill gaps.
    struct Counting {
        inner: SqliteStore,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    use crate::protocol::ThreadView;
    use crate::store::{BoxFuture, Committed, Page, StoreResult};

    impl Storage for Counting {
        fn list_threads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<ThreadView>>> {
            self.inner.list_threads(limit)
        }
        fn thread(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<ThreadView>>> {
            self.inner.thread(id)
        }
        fn latest_posts(&self, thread_id: i64, limit: usize) -> BoxFuture<'_, StoreResult<Page>> {
            self.inner.latest_posts(thread_id, limit)
        }
        fn posts_after(
            &self,
            thread_id: i64,
            after: i64,
            limit: usize,
        ) -> BoxFuture<'_, StoreResult<Page>> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.posts_after(thread_id, after, limit)
        }
        fn posts_before(
            &self,
            thread_id: i64,
            before: i64,
            limit: usize,
        ) -> BoxFuture<'_, StoreResult<Page>> {
            self.inner.posts_before(thread_id, before, limit)
        }
        fn create_post(
            &self,
            thread_id: i64,
            post: NewPost,
        ) -> BoxFuture<'_, StoreResult<Committed>> {
            self.inner.create_post(thread_id, post)
        }
        fn create_thread(
            &self,
            title: String,
            post: NewPost,
        ) -> BoxFuture<'_, StoreResult<Committed>> {
            self.inner.create_thread(title, post)
        }
    }
}
