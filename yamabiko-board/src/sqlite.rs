//! [`Storage`] on SQLite (bundled), in WAL mode with full fsync on commit.
//!
//! Two connections to one file:
//!
//! * **writes** (new posts and threads) go to one writer thread, which commits
//!   whatever is waiting **as one transaction** — a group commit: one fsync for a
//!   batch of posts instead of one each, which is what bounds SQLite's posts per
//!   second on a real disk. Each post runs inside its own savepoint, so one that
//!   fails (a client id conflict, a thread that does not exist) is rolled back alone.
//!   Nobody is answered before the `COMMIT` returns: an acknowledged post is on disk.
//!   There is no waiting to fill a batch: a batch is what queued up while the
//!   previous commit was being written, so a lone post is committed at once.
//! * **reads** use the other connection, behind a mutex on tokio's blocking pool; in
//!   WAL mode they never wait for the writer, and see every commit that returned.

use super::protocol::{PostView, ThreadView};
use super::store::{BoxFuture, Committed, NewPost, Page, Storage, StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS threads (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    title         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    post_count    INTEGER NOT NULL DEFAULT 0,
    last_post_id  INTEGER NOT NULL DEFAULT 0,
    last_post_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS posts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id   INTEGER NOT NULL REFERENCES threads(id),
    no          INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    client_id   TEXT
);
CREATE INDEX IF NOT EXISTS posts_by_thread ON posts(thread_id, id);
CREATE UNIQUE INDEX IF NOT EXISTS posts_by_client_id ON posts(client_id);
CREATE INDEX IF NOT EXISTS threads_by_activity ON threads(last_post_id);
";

/// Posts committed in one transaction, at most.
pub const MAX_BATCH: usize = 512;
/// Writes waiting for the writer thread, at most (callers wait beyond it).
const WRITE_QUEUE: usize = 4096;

/// SQLite storage.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    writes: mpsc::Sender<Write>,
}

/// A write for the writer thread, and where its answer goes.
struct Write {
    op: WriteOp,
    answer: oneshot::Sender<StoreResult<Committed>>,
}

enum WriteOp {
    Post { thread_id: i64, post: NewPost },
    Thread { title: String, post: NewPost },
}

/// Opens a connection with the board's settings.
fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    // WAL: readers never block the writer; FULL: a commit is on disk before the
    // post is acknowledged (survives a crash of the process or the machine).
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite did not switch to WAL mode");
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
    )
    .map_err(backend)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its schema, and starts
    /// the writer thread (it ends when the last clone of the store is dropped).
    pub fn open(path: &Path) -> StoreResult<Self> {
        let writer = connect(path)?;
        writer.execute_batch(SCHEMA).map_err(backend)?;
        let reader = connect(path)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, rx))
            .map_err(|e| StoreError::Backend(format!("starting the writer thread: {e}")))?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(reader)),
            writes: tx,
        })
    }

    /// Hands a write to the writer thread and waits for its commit.
    fn write(&self, op: WriteOp) -> BoxFuture<'_, StoreResult<Committed>> {
        Box::pin(async move {
            let (answer, rx) = oneshot::channel();
            self.writes
                .send(Write { op, answer })
                .await
                .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
            rx.await
                .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    fn with<T, F>(&self, f: F) -> BoxFuture<'_, StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A panic inside a previous call poisons the mutex; the connection
                // itself is still consistent (transactions roll back on drop).
                let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut guard)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("storage task failed: {e}")))?
        })
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

const THREAD_COLUMNS: &str = "id, title, post_count, last_post_id, last_post_at, created_at";
const POST_COLUMNS: &str = "id, thread_id, no, name, body, created_at";

fn thread_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ThreadView> {
    Ok(ThreadView {
        id: r.get(0)?,
        title: r.get(1)?,
        post_count: r.get(2)?,
        last_post_id: r.get(3)?,
        last_post_at: r.get(4)?,
        created_at: r.get(5)?,
        online: 0,
    })
}

fn post_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PostView> {
    Ok(PostView {
        id: r.get(0)?,
        thread_id: r.get(1)?,
        no: r.get(2)?,
        name: r.get(3)?,
        body: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn get_thread(conn: &Connection, id: i64) -> rusqlite::Result<Option<ThreadView>> {
    conn.query_row(
        &format!("SELECT {THREAD_COLUMNS} FROM threads WHERE id = ?1"),
        [id],
        thread_row,
    )
    .optional()
}

/// Reads up to `limit + 1` rows to learn whether more exist.
fn page(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    limit: usize,
    newest_first: bool,
) -> StoreResult<Page> {
    let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
    let mut posts = stmt
        .query_map(params, post_row)
        .map_err(backend)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    let more = posts.len() > limit;
    posts.truncate(limit);
    if newest_first {
        posts.reverse();
    }
    Ok(Page { posts, more })
}

/// Looks a client id up: `Some` when it was committed before. A resend of the same
/// post is a duplicate; the same id on a different post is a conflict.
fn existing_by_client_id(
    tx: &Connection,
    post: &NewPost,
    thread_id: Option<i64>,
) -> StoreResult<Option<Committed>> {
    let found = tx
        .query_row(
            &format!("SELECT {POST_COLUMNS} FROM posts WHERE client_id = ?1"),
            [&post.client_id],
            post_row,
        )
        .optional()
        .map_err(backend)?;
    let Some(found) = found else {
        return Ok(None);
    };
    let same_thread = match thread_id {
        Some(t) => t == found.thread_id,
        None => found.no == 1,
    };
    let same = found.body == post.body && same_thread;
    if !same {
        return Err(StoreError::ClientIdConflict);
    }
    let thread = get_thread(tx, found.thread_id)
        .map_err(backend)?
        .ok_or(StoreError::ThreadNotFound(found.thread_id))?;
    Ok(Some(Committed {
        post: found,
        thread,
        duplicate: true,
    }))
}

/// Inserts a post into a thread that exists; the caller commits.
fn insert_post(tx: &Connection, thread_id: i64, post: &NewPost) -> StoreResult<Committed> {
    let count: i64 = tx
        .query_row(
            "SELECT post_count FROM threads WHERE id = ?1",
            [thread_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?
        .ok_or(StoreError::ThreadNotFound(thread_id))?;
    let no = count + 1;
    tx.execute(
        "INSERT INTO posts (thread_id, no, name, body, created_at, client_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            thread_id,
            no,
            post.name,
            post.body,
            post.created_at,
            post.client_id
        ],
    )
    .map_err(backend)?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE threads SET post_count = ?2, last_post_id = ?3, last_post_at = ?4 WHERE id = ?1",
        params![thread_id, no, id, post.created_at],
    )
    .map_err(backend)?;
    let thread = get_thread(tx, thread_id)
        .map_err(backend)?
        .ok_or(StoreError::ThreadNotFound(thread_id))?;
    Ok(Committed {
        post: PostView {
            id,
            thread_id,
            no,
            name: post.name.clone(),
            body: post.body.clone(),
            created_at: post.created_at,
        },
        thread,
        duplicate: false,
    })
}

impl Storage for SqliteStore {
    fn list_threads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<ThreadView>>> {
        self.with(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {THREAD_COLUMNS} FROM threads ORDER BY last_post_id DESC LIMIT ?1"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map([limit as i64], thread_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn thread(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<ThreadView>>> {
        self.with(move |conn| get_thread(conn, id).map_err(backend))
    }

    fn latest_posts(&self, thread_id: i64, limit: usize) -> BoxFuture<'_, StoreResult<Page>> {
        self.with(move |conn| {
            page(
                conn,
                &format!(
                    "SELECT {POST_COLUMNS} FROM posts WHERE thread_id = ?1
                     ORDER BY id DESC LIMIT ?2"
                ),
                params![thread_id, limit as i64 + 1],
                limit,
                true,
            )
        })
    }

    fn posts_after(
        &self,
        thread_id: i64,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        self.with(move |conn| {
            page(
                conn,
                &format!(
                    "SELECT {POST_COLUMNS} FROM posts WHERE thread_id = ?1 AND id > ?2
                     ORDER BY id ASC LIMIT ?3"
                ),
                params![thread_id, after, limit as i64 + 1],
                limit,
                false,
            )
        })
    }

    fn posts_before(
        &self,
        thread_id: i64,
        before: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        self.with(move |conn| {
            page(
                conn,
                &format!(
                    "SELECT {POST_COLUMNS} FROM posts WHERE thread_id = ?1 AND id < ?2
                     ORDER BY id DESC LIMIT ?3"
                ),
                params![thread_id, before, limit as i64 + 1],
                limit,
                true,
            )
        })
    }

    fn create_post(&self, thread_id: i64, post: NewPost) -> BoxFuture<'_, StoreResult<Committed>> {
        self.write(WriteOp::Post { thread_id, post })
    }

    fn create_thread(&self, title: String, post: NewPost) -> BoxFuture<'_, StoreResult<Committed>> {
        self.write(WriteOp::Thread { title, post })
    }
}

/// Runs one write inside the open transaction (a savepoint of it).
fn apply(conn: &Connection, op: &WriteOp) -> StoreResult<Committed> {
    match op {
        WriteOp::Post { thread_id, post } => {
            if let Some(done) = existing_by_client_id(conn, post, Some(*thread_id))? {
                return Ok(done);
            }
            insert_post(conn, *thread_id, post)
        }
        WriteOp::Thread { title, post } => {
            if let Some(done) = existing_by_client_id(conn, post, None)? {
                return Ok(done);
            }
            conn.execute(
                "INSERT INTO threads (title, created_at, last_post_at) VALUES (?1, ?2, ?2)",
                params![title, post.created_at],
            )
            .map_err(backend)?;
            let thread_id = conn.last_insert_rowid();
            insert_post(conn, thread_id, post)
        }
    }
}

/// The writer thread: takes what is waiting (up to [`MAX_BATCH`]), commits it as one
/// transaction, answers, and again, until every sender is gone.
fn write_loop(mut conn: Connection, mut rx: mpsc::Receiver<Write>) {
    let mut batch: Vec<Write> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let results = commit_batch(&mut conn, &batch);
        for (w, r) in batch.drain(..).zip(results) {
            // The caller may have gone (its connection closed): the post stays.
            let _ = w.answer.send(r);
        }
    }
}

/// Commits `batch` in one transaction, each write in its own savepoint; returns each
/// write's result, all errors if the transaction itself failed.
fn commit_batch(conn: &mut Connection, batch: &[Write]) -> Vec<StoreResult<Committed>> {
    let fail_all = |e: rusqlite::Error| -> Vec<StoreResult<Committed>> {
        let text = e.to_string();
        batch
            .iter()
            .map(|_| Err(StoreError::Backend(text.clone())))
            .collect()
    };
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(e),
    };
    let mut results = Vec::with_capacity(batch.len());
    for w in batch {
        let result = match tx.savepoint() {
            Ok(mut sp) => {
                let r = apply(&sp, &w.op);
                match r {
                    Ok(c) => sp.commit().map(|()| c).map_err(backend),
                    Err(e) => {
                        let _ = sp.rollback();
                        Err(e)
                    }
                }
            }
            Err(e) => Err(backend(e)),
        };
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => {
            tracing::error!(error = %e, posts = batch.len(), "commit failed");
            fail_all(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many posts at once are committed in batches; every one is answered once, the
    /// numbers run 1, 2, 3, … in the order of commits, and a failing post in a batch
    /// (a client id reused for another text) fails alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_posts_are_group_committed_each_in_its_own_savepoint() {
        let dir = std::env::temp_dir().join(format!("yamabiko-board-group-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("group.db");
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let post = |i: usize, body: &str| NewPost {
            name: "n".into(),
            body: body.into(),
            client_id: format!("g{i}"),
            created_at: 1,
        };
        let t = store
            .create_thread("t".into(), post(0, "first"))
            .await
            .unwrap()
            .thread
            .id;
        let mut tasks = Vec::new();
        for i in 1..=300 {
            let store = store.clone();
            // Every 50th reuses an earlier client id for another text: a conflict.
            let (cid, body) = if i % 50 == 0 {
                (i - 1, "other")
            } else {
                (i, "same")
            };
            tasks.push(tokio::spawn(async move {
                let p = NewPost {
                    client_id: format!("g{cid}"),
                    ..post(cid, body)
                };
                store.create_post(t, p).await
            }));
        }
        let mut ok = 0;
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(c) if !c.duplicate => ok += 1,
                Ok(_) => panic!("no resend here"),
                Err(StoreError::ClientIdConflict) => conflicts += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, conflicts), (294, 6));
        let all = store.posts_after(t, 0, 1000).await.unwrap();
        let nos: Vec<i64> = all.posts.iter().map(|p| p.no).collect();
        assert_eq!(nos, (1..=295).collect::<Vec<_>>());
        assert!(all.posts.windows(2).all(|w| w[0].id < w[1].id));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn threads_posts_pages_and_idempotency() {
        let dir = std::env::temp_dir().join(format!("yamabiko-board-unit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("unit.db");
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).unwrap();
        crate::store::tests::behaves_like_a_store(&store, "sqlite").await;
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
