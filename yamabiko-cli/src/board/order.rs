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
//! * a jump → the posts in between are read from storage (they are committed: a
//!   later post of the same thread is) and delivered first.
//!
//! [`Ordered::catch_up`] does the same read for every watched thread after the broker
//! connection comes back. Threads nobody views here are not tracked; a page opening
//! one sets the starting point from what it read.

use super::hub::{BoardEvent, Hub};
use super::protocol::{PostView, ThreadView, RESYNC_PAGE_SIZE};
use super::store::Storage;
use std::collections::HashMap;
use std::sync::Arc;

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
}

impl Ordered {
    /// Delivery into `hub`, filling gaps from `store`.
    pub fn new(store: Arc<dyn Storage>, hub: Arc<Hub>) -> Self {
        Ordered {
            store,
            hub,
            marks: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A connection opened a thread and read it up to `thread` (its summary, read
    /// after the posts): later posts count from there, unless already tracked.
    pub async fn watching(&self, thread: &ThreadView) {
        self.marks.lock().await.entry(thread.id).or_insert(Mark {
            id: thread.last_post_id,
            no: thread.post_count,
        });
    }

    /// Delivers a committed post (and its thread's summary) in order.
    pub async fn deliver(&self, post: PostView, thread: ThreadView) {
        let mut marks = self.marks.lock().await;
        let thread_id = post.thread_id;
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
        if post.no > mark.no + 1 {
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
    }
}
