//! [`Storage`] on PostgreSQL, for several board servers sharing one database.
//!
//! A small connection pool (deadpool) of `tokio-postgres` clients, plain TCP (no TLS:
//! keep the database on a private network or a local socket tunnel). The schema is
//! created or migrated on start inside a transaction holding an advisory lock, so
//! servers starting together do not race.
//!
//! Ids come from identity columns. A post's transaction locks its thread's row
//! (`SELECT … FOR UPDATE`) before it draws its id, so within one thread the order of
//! ids, of post numbers and of commits is the same: once post *n* of a thread is
//! committed, every earlier post of that thread is too. Resync by id (`after`) relies
//! on exactly that. `create_post` and `create_thread` return only after `COMMIT`.

use super::protocol::{PostView, ThreadView};
use super::store::{BoxFuture, Committed, NewPost, Page, Storage, StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

/// Connections kept open to the database, at most.
pub const POOL_SIZE: usize = 16;
/// How long a call waits for a free connection or for a new one to be made.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Key of the advisory lock held while the schema is migrated.
const MIGRATION_LOCK: i64 = 0x5961_6d61_6269_6b6f; // "Yamabiko"

/// Schema migrations, in order; `board_schema` records how many have run.
const MIGRATIONS: &[&str] = &["
CREATE TABLE board_threads (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    post_count    BIGINT NOT NULL DEFAULT 0,
    last_post_id  BIGINT NOT NULL DEFAULT 0,
    last_post_at  BIGINT NOT NULL
);
CREATE TABLE board_posts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    thread_id   BIGINT NOT NULL REFERENCES board_threads(id),
    no          BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    client_id   TEXT   UNIQUE,
    UNIQUE (thread_id, no)
);
CREATE INDEX board_posts_by_thread ON board_posts(thread_id, id);
CREATE INDEX board_threads_by_activity ON board_threads(last_post_id);
"];

/// PostgreSQL storage.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

/// A readable message for a database error: SQLSTATE and the server's text when the
/// server sent one.
fn pg_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend(match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // "error connecting to server" says little without its cause.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            for _ in 0..4 {
                let Some(s) = source else { break };
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    })
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        other => StoreError::Backend(format!("database connection: {other}")),
    }
}

const THREAD_COLUMNS: &str = "id, title, post_count, last_post_id, last_post_at, created_at";
const POST_COLUMNS: &str = "id, thread_id, no, name, body, created_at";

fn thread_row(r: &Row) -> StoreResult<ThreadView> {
    Ok(ThreadView {
        id: r.try_get(0).map_err(pg_err)?,
        title: r.try_get(1).map_err(pg_err)?,
        post_count: r.try_get(2).map_err(pg_err)?,
        last_post_id: r.try_get(3).map_err(pg_err)?,
        last_post_at: r.try_get(4).map_err(pg_err)?,
        created_at: r.try_get(5).map_err(pg_err)?,
        online: 0,
    })
}

fn post_row(r: &Row) -> StoreResult<PostView> {
    Ok(PostView {
        id: r.try_get(0).map_err(pg_err)?,
        thread_id: r.try_get(1).map_err(pg_err)?,
        no: r.try_get(2).map_err(pg_err)?,
        name: r.try_get(3).map_err(pg_err)?,
        body: r.try_get(4).map_err(pg_err)?,
        created_at: r.try_get(5).map_err(pg_err)?,
    })
}

/// `limit + 1`, as a query parameter (reading one more tells whether more exist).
fn limit_plus_one(limit: usize) -> i64 {
    i64::try_from(limit)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1)
}

async fn get_thread(
    c: &impl deadpool_postgres::GenericClient,
    id: i64,
) -> StoreResult<Option<ThreadView>> {
    let row = c
        .query_opt(
            &format!("SELECT {THREAD_COLUMNS} FROM board_threads WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg_err)?;
    row.as_ref().map(thread_row).transpose()
}

/// As in the SQLite store: `Some` when the client id was committed before (a resend);
/// the same id on a different post is a conflict.
async fn existing_by_client_id(
    tx: &deadpool_postgres::Transaction<'_>,
    post: &NewPost,
    thread_id: Option<i64>,
) -> StoreResult<Option<Committed>> {
    let row = tx
        .query_opt(
            &format!("SELECT {POST_COLUMNS} FROM board_posts WHERE client_id = $1"),
            &[&post.client_id],
        )
        .await
        .map_err(pg_err)?;
    let Some(row) = row else { return Ok(None) };
    let found = post_row(&row)?;
    let same_thread = match thread_id {
        Some(t) => t == found.thread_id,
        None => found.no == 1,
    };
    if found.body != post.body || !same_thread {
        return Err(StoreError::ClientIdConflict);
    }
    let thread = get_thread(tx, found.thread_id)
        .await?
        .ok_or(StoreError::ThreadNotFound(found.thread_id))?;
    Ok(Some(Committed {
        post: found,
        thread,
        duplicate: true,
    }))
}

/// Inserts a post into an existing thread, holding the thread's row lock; the caller
/// commits.
async fn insert_post(
    tx: &deadpool_postgres::Transaction<'_>,
    thread_id: i64,
    post: &NewPost,
) -> StoreResult<Committed> {
    let count: i64 = tx
        .query_opt(
            "SELECT post_count FROM board_threads WHERE id = $1 FOR UPDATE",
            &[&thread_id],
        )
        .await
        .map_err(pg_err)?
        .ok_or(StoreError::ThreadNotFound(thread_id))?
        .try_get(0)
        .map_err(pg_err)?;
    let no = count.saturating_add(1);
    let row = tx
        .query_one(
            "INSERT INTO board_posts (thread_id, no, name, body, created_at, client_id)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &thread_id,
                &no,
                &post.name,
                &post.body,
                &post.created_at,
                &post.client_id,
            ],
        )
        .await
        .map_err(pg_err_keep_unique)?;
    let id: i64 = row.try_get(0).map_err(pg_err)?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE board_threads SET post_count = $2, last_post_id = $3, last_post_at = $4
                 WHERE id = $1 RETURNING {THREAD_COLUMNS}"
            ),
            &[&thread_id, &no, &id, &post.created_at],
        )
        .await
        .map_err(pg_err)?;
    Ok(Committed {
        post: PostView {
            id,
            thread_id,
            no,
            name: post.name.clone(),
            body: post.body.clone(),
            created_at: post.created_at,
        },
        thread: thread_row(&row)?,
        duplicate: false,
    })
}

/// Marks a unique violation (another server committed the same client id first) so
/// that the caller retries and finds it.
fn pg_err_keep_unique(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Backend(UNIQUE_RACE.into())
    } else {
        pg_err(e)
    }
}

const UNIQUE_RACE: &str = "client_id committed concurrently";

impl PgStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`) and creates or migrates
    /// the schema.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("bad PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("yamabiko serve");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("database pool: {e}")))?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Runs the migrations not yet recorded in `board_schema`; returns the version.
    pub async fn migrate(&self) -> StoreResult<usize> {
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(pg_err)?;
        // No "already exists, skipping" notices in the log on every start.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await
            .map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_err)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS board_schema (version INTEGER NOT NULL)")
            .await
            .map_err(pg_err)?;
        let done: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0)::INTEGER FROM board_schema",
                &[],
            )
            .await
            .map_err(pg_err)?
            .try_get(0)
            .map_err(pg_err)?;
        let done = usize::try_from(done).unwrap_or(0);
        if done > MIGRATIONS.len() {
            return Err(StoreError::Backend(format!(
                "the database schema is version {done}, newer than this program's {}; \
                 upgrade yamabiko",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
            tx.batch_execute(sql).await.map_err(pg_err)?;
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO board_schema (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(pg_err)?;
            tracing::info!(version, "database schema migrated");
        }
        tx.commit().await.map_err(pg_err)?;
        Ok(MIGRATIONS.len())
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_err)
    }

    async fn page(
        &self,
        sql: String,
        thread_id: i64,
        bound: Option<i64>,
        limit: usize,
        newest_first: bool,
    ) -> StoreResult<Page> {
        let client = self.client().await?;
        let n = limit_plus_one(limit);
        let rows = match bound {
            Some(b) => client.query(&sql, &[&thread_id, &b, &n]).await,
            None => client.query(&sql, &[&thread_id, &n]).await,
        }
        .map_err(pg_err)?;
        let mut posts = rows.iter().map(post_row).collect::<StoreResult<Vec<_>>>()?;
        let more = posts.len() > limit;
        posts.truncate(limit);
        if newest_first {
            posts.reverse();
        }
        Ok(Page { posts, more })
    }

    /// One attempt at writing a post (`thread_id`) or a new thread (`title`).
    async fn write_once(
        &self,
        thread_id: Option<i64>,
        title: Option<&str>,
        post: &NewPost,
    ) -> StoreResult<Committed> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_err)?;
        if let Some(done) = existing_by_client_id(&tx, post, thread_id).await? {
            return Ok(done);
        }
        let thread_id = match (thread_id, title) {
            (Some(t), _) => t,
            (None, title) => tx
                .query_one(
                    "INSERT INTO board_threads (title, created_at, last_post_at)
                     VALUES ($1, $2, $2) RETURNING id",
                    &[&title.unwrap_or_default(), &post.created_at],
                )
                .await
                .map_err(pg_err)?
                .try_get(0)
                .map_err(pg_err)?,
        };
        let committed = insert_post(&tx, thread_id, post).await?;
        // Acknowledged only once this returns: the post is durable.
        tx.commit().await.map_err(pg_err)?;
        Ok(committed)
    }

    /// Writes, retrying once when another server committed the same client id in the
    /// meantime (the retry finds it and answers as for a resend).
    async fn write(
        &self,
        thread_id: Option<i64>,
        title: Option<&str>,
        post: &NewPost,
    ) -> StoreResult<Committed> {
        match self.write_once(thread_id, title, post).await {
            Err(StoreError::Backend(e)) if e == UNIQUE_RACE => {
                self.write_once(thread_id, title, post).await
            }
            other => other,
        }
    }
}

impl Storage for PgStore {
    fn list_threads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<ThreadView>>> {
        Box::pin(async move {
            let client = self.client().await?;
            let n = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    &format!(
                        "SELECT {THREAD_COLUMNS} FROM board_threads
                         ORDER BY last_post_id DESC LIMIT $1"
                    ),
                    &[&n],
                )
                .await
                .map_err(pg_err)?;
            rows.iter().map(thread_row).collect()
        })
    }

    fn thread(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<ThreadView>>> {
        Box::pin(async move {
            let client = self.client().await?;
            get_thread(&client, id).await
        })
    }

    fn latest_posts(&self, thread_id: i64, limit: usize) -> BoxFuture<'_, StoreResult<Page>> {
        Box::pin(self.page(
            format!(
                "SELECT {POST_COLUMNS} FROM board_posts WHERE thread_id = $1
                 ORDER BY id DESC LIMIT $2"
            ),
            thread_id,
            None,
            limit,
            true,
        ))
    }

    fn posts_after(
        &self,
        thread_id: i64,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        Box::pin(self.page(
            format!(
                "SELECT {POST_COLUMNS} FROM board_posts WHERE thread_id = $1 AND id > $2
                 ORDER BY id ASC LIMIT $3"
            ),
            thread_id,
            Some(after),
            limit,
            false,
        ))
    }

    fn posts_before(
        &self,
        thread_id: i64,
        before: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Page>> {
        Box::pin(self.page(
            format!(
                "SELECT {POST_COLUMNS} FROM board_posts WHERE thread_id = $1 AND id < $2
                 ORDER BY id DESC LIMIT $3"
            ),
            thread_id,
            Some(before),
            limit,
            true,
        ))
    }

    fn create_post(&self, thread_id: i64, post: NewPost) -> BoxFuture<'_, StoreResult<Committed>> {
        Box::pin(async move { self.write(Some(thread_id), None, &post).await })
    }

    fn create_thread(&self, title: String, post: NewPost) -> BoxFuture<'_, StoreResult<Committed>> {
        Box::pin(async move { self.write(None, Some(&title), &post).await })
    }
}

/// Against a real server: `YAMABIKO_TEST_POSTGRES=postgres://… cargo test -p
/// yamabiko-board --features multi-instance-tests postgres`. Missing the
/// variable is a failure, not a skip.
#[cfg(all(test, feature = "multi-instance-tests"))]
mod tests {
    use super::*;

    fn url() -> String {
        std::env::var("YAMABIKO_TEST_POSTGRES").expect(
            "YAMABIKO_TEST_POSTGRES must name a PostgreSQL database for these tests \
             (scripts/multi-instance-test.sh starts one)",
        )
    }

    fn tag() -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}-{nanos}", std::process::id())
    }

    fn post(body: &str, client_id: String) -> NewPost {
        NewPost {
            name: "n".into(),
            body: body.into(),
            client_id,
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn behaves_like_the_sqlite_store() {
        let store = PgStore::connect(&url()).await.unwrap();
        // Migrating again is a no-op.
        assert_eq!(store.migrate().await.unwrap(), MIGRATIONS.len());
        crate::store::tests::behaves_like_a_store(&store, &tag()).await;
    }

    /// Two stores (two servers' pools) writing one thread at once: numbers without
    /// holes or repeats, ids in the same order, one winner per client id.
    #[tokio::test]
    async fn concurrent_servers_agree_on_order_and_idempotency() {
        let (a, b) = (
            PgStore::connect(&url()).await.unwrap(),
            PgStore::connect(&url()).await.unwrap(),
        );
        let tag = tag();
        let t = a
            .create_thread("race".into(), post("0", format!("{tag}-0")))
            .await
            .unwrap()
            .thread
            .id;
        let mut tasks = Vec::new();
        for i in 1..=20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let cid = format!("{tag}-{i}");
            tasks.push(tokio::spawn(async move {
                store.create_post(t, post(&i.to_string(), cid)).await
            }));
        }
        // The same client id from both servers at once.
        let same = format!("{tag}-same");
        let (x, y) = tokio::join!(
            a.create_post(t, post("same", same.clone())),
            b.create_post(t, post("same", same.clone()))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x.post.id, y.post.id);
        assert!(x.duplicate != y.duplicate, "exactly one stored it");
        for task in tasks {
            assert!(!task.await.unwrap().unwrap().duplicate);
        }
        let page = a.posts_after(t, 0, 100).await.unwrap();
        let nos: Vec<i64> = page.posts.iter().map(|p| p.no).collect();
        assert_eq!(nos, (1..=22).collect::<Vec<i64>>());
        assert!(page.posts.windows(2).all(|w| w[0].id < w[1].id));
        let summary = b.thread(t).await.unwrap().unwrap();
        assert_eq!(summary.post_count, 22);
        assert_eq!(summary.last_post_id, page.posts[21].id);
    }

    #[tokio::test]
    async fn a_bad_url_or_unreachable_server_is_a_clear_error() {
        let e = PgStore::connect("postgres://nobody@127.0.0.1:1/none")
            .await
            .err()
            .unwrap();
        assert!(matches!(e, StoreError::Backend(_)), "{e}");
        let e = PgStore::connect("not a url").await.err().unwrap();
        assert!(e.to_string().contains("URL"), "{e}");
    }
}
