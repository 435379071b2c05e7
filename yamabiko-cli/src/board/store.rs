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
