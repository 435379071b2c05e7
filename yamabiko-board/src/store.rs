//! Storage behind a small trait, so that a shared database can replace SQLite when
//! several board servers run side by side.

use super::protocol::{PostView, ThreadView};
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (keeps [`Storage`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What storage calls return.
pub type StoreResult<T> = Result<T, StoreError>;

/// A storage failure.
#[derive(Debug)]
pub enum StoreError {
    /// The thread does not exist.
    ThreadNotFound(i64),
    /// The client id was already used for a different post.
    ClientIdConflict,
    /// The database failed.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::ThreadNotFound(id) => write!(f, "thread {id} does not exist"),
            StoreError::ClientIdConflict => {
                f.write_str("client_id was already used for another post")
            }
            StoreError::Backend(e) => write!(f, "storage failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A post to store.
#[derive(Clone, Debug)]
pub struct NewPost {
    /// Display name (already validated).
    pub name: String,
    /// Text (already validated).
    pub body: String,
    /// The page's idempotency key.
    pub client_id: String,
    /// Unix time in milliseconds.
    pub created_at: i64,
}

/// A committed post and its thread's new summary.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The post as stored.
    pub post: PostView,
    /// The thread after the post (its `online` is 0: presence is not stored).
    pub thread: ThreadView,
    /// The client id had been committed before (a resend): nothing new was stored.
    pub duplicate: bool,
}

/// A page of posts in id order, and whether more exist beyond it.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// Posts in increasing id order.
    pub posts: Vec<PostView>,
    /// More posts exist beyond the page, in the direction it was read.
    pub more: bool,
}

/// The board's storage. Every call commits before it returns: once `create_post`
/// returns `Ok`, the post survives a crash.
pub trait Storage: Send + Sync + 'static {
    /// Up to `limit` threads, most recent activity first.
    fn list_threads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<ThreadView>>>;
    /// One thread's summary.
    fn thread(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<ThreadView>>>;
    /// The newest `limit` posts of a thread (`more`: older ones exist).
    fn latest_posts(&self, thread_id: i64, limit: usize) -> BoxFuture<'_, StoreResult<Page>>;
    /// Up to `limit` posts with id > `after` (`more`: newer ones exist).
    fn posts_after(
        &self,
        thread_id: i64,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>>;
    /// Up to `limit` posts with id < `before`, the newest of them (`more`: older exist).
    fn posts_before(
        &self,
        thread_id: i64,
        before: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>>;
    /// Appends a post to a thread and commits.
    fn create_post(&self, thread_id: i64, post: NewPost) -> BoxFuture<'_, StoreResult<Committed>>;
    /// Creates a thread with its first post and commits.
    fn create_thread(&self, title: String, post: NewPost) -> BoxFuture<'_, StoreResult<Committed>>;
}

/// The behaviour every [`Storage`] must have, run against each implementation.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn post(body: &str, client_id: &str) -> NewPost {
        NewPost {
            name: "n".into(),
            body: body.into(),
            client_id: client_id.into(),
            created_at: 1,
        }
    }

    /// Threads, numbering, pages in both directions, idempotent client ids, errors and
    /// the thread list's order. `tag` makes client ids unique in a shared database.
    pub(crate) async fn behaves_like_a_store(store: &dyn Storage, tag: &str) {
        let cid = |s: &str| format!("{tag}-{s}");
        let a = store
            .create_thread("A".into(), post("first", &cid("c0")))
            .await
            .unwrap();
        let t = a.thread.id;
        assert!(!a.duplicate);
        assert_eq!((a.post.no, a.thread.post_count), (1, 1));
        assert_eq!(a.thread.last_post_id, a.post.id);
        let mut last = a.post.id;
        for i in 1..=9 {
            let c = store
                .create_post(t, post(&format!("p{i}"), &cid(&format!("c{i}"))))
                .await
                .unwrap();
            assert_eq!(c.post.no, i + 1);
            assert!(c.post.id > last, "ids increase");
            last = c.post.id;
            assert_eq!(
                (c.thread.post_count, c.thread.last_post_id),
                (i + 1, c.post.id)
            );
        }
        // A resend is acknowledged again, nothing new stored.
        let again = store.create_post(t, post("p3", &cid("c3"))).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.post.no, 4);
        let first_again = store
            .create_thread("A".into(), post("first", &cid("c0")))
            .await
            .unwrap();
        assert!(first_again.duplicate);
        assert_eq!(first_again.thread.id, t);
        assert!(matches!(
            store.create_post(t, post("other", &cid("c3"))).await,
            Err(StoreError::ClientIdConflict)
        ));
        assert!(matches!(
            store
                .create_thread("X".into(), post("p3", &cid("c3")))
                .await,
            Err(StoreError::ClientIdConflict)
        ));
        let missing = i64::MAX - 7;
        assert!(matches!(
            store.create_post(missing, post("x", &cid("cx"))).await,
            Err(StoreError::ThreadNotFound(id)) if id == missing
        ));
        assert!(store.thread(missing).await.unwrap().is_none());
        assert_eq!(store.thread(t).await.unwrap().unwrap().post_count, 10);
        let latest = store.latest_posts(t, 4).await.unwrap();
        assert!(latest.more);
        let nos: Vec<i64> = latest.posts.iter().map(|p| p.no).collect();
        assert_eq!(nos, [7, 8, 9, 10]);
        let older = store.posts_before(t, latest.posts[0].id, 4).await.unwrap();
        let nos: Vec<i64> = older.posts.iter().map(|p| p.no).collect();
        assert_eq!((nos, older.more), (vec![3, 4, 5, 6], true));
        let oldest = store.posts_before(t, older.posts[0].id, 4).await.unwrap();
        let nos: Vec<i64> = oldest.posts.iter().map(|p| p.no).collect();
        assert_eq!((nos, oldest.more), (vec![1, 2], false));
        let after = store.posts_after(t, older.posts[3].id, 100).await.unwrap();
        assert_eq!((after.posts.len(), after.more), (4, false));
        let after = store.posts_after(t, 0, 3).await.unwrap();
        let nos: Vec<i64> = after.posts.iter().map(|p| p.no).collect();
        assert_eq!((nos, after.more), (vec![1, 2, 3], true));
        let b = store
            .create_thread("B".into(), post("b", &cid("b0")))
            .await
            .unwrap();
        let mine = |list: Vec<ThreadView>| -> Vec<ThreadView> {
            list.into_iter()
                .filter(|x| x.id == t || x.id == b.thread.id)
                .collect()
        };
        let list = mine(store.list_threads(100).await.unwrap());
        assert_eq!(list[0].id, b.thread.id, "newest activity first");
        store
            .create_post(t, post("bump", &cid("c10")))
            .await
            .unwrap();
        let list = mine(store.list_threads(100).await.unwrap());
        assert_eq!((list[0].id, list[0].post_count), (t, 11));
        assert_eq!(list[0].title, "A");
    }
}
