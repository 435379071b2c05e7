//! Fan-out between board servers over Redis pub/sub (`yamabiko serve --redis URL`).
//!
//! Every server publishes what happens on it and subscribes to what happens on the
//! others:
//!
//! * **channels**: one per thread, `{prefix}:thread:{id}`; a server subscribes to the
//!   pattern `{prefix}:thread:*`. A message is a JSON envelope `{"v":1,"from":
//!   INSTANCE,"kind":"posted"|"presence",…}` — a committed post with its thread's new
//!   summary, or the number of this server's connections viewing the thread.
//! * **own events**: a server delivers its own posts to its own connections directly
//!   (so they keep flowing while Redis is down) and ignores messages whose `from` is
//!   its own instance id.
//! * **order and gaps**: received posts go through [`Ordered`], which delivers each
//!   thread's posts in order and reads any it missed from the database.
//! * **Redis down**: publishing never holds up a post — events wait in a bounded
//!   queue while Redis is unreachable and are sent when it is back (beyond
//!   [`PUBLISH_QUEUE`] the oldest are dropped, and logged). Both
//!   connections are re-made with exponential backoff and jitter; once the
//!   subscription is back, every thread viewed on this server is caught up from the
//!   database, so its pages get what they missed, live.
//! * **online counts**: the hash `{prefix}:online` holds one field per server and
//!   thread, `{instance}:{thread}` → `{count}:{expires_unix_ms}`, rewritten every
//!   [`ONLINE_REFRESH`] with an expiry [`ONLINE_TTL`] ahead. Every server reads the hash
//!   at each refresh, sums the other servers' live fields and deletes expired ones
//!   (left by a server that died). Between refreshes, presence messages keep the
//!   counts current; a server shutting down withdraws its fields. Approximate: a dead server's viewers are counted until its
//!   fields expire, and the expiry assumes the servers' clocks roughly agree.

use super::hub::{BoardEvent, FanOut, Hub};
use super::order::Ordered;
use super::protocol::{PostView, ThreadView};
use super::store::BoxFuture;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a server rewrites its online-count fields and re-reads the others'.
pub const ONLINE_REFRESH: Duration = Duration::from_secs(10);
/// How long an online-count field counts after it was written.
pub const ONLINE_TTL: Duration = Duration::from_secs(30);
/// Events waiting to be published, at most (beyond it they are dropped).
pub const PUBLISH_QUEUE: usize = 1024;
/// Connecting to Redis, or one command, may take this long.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// First delay before reconnecting; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest delay before reconnecting.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the subscription connection is pinged (a dead peer is noticed).
const SUB_PING: Duration = Duration::from_secs(10);
/// Largest message accepted from the broker.
const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// A board event as it travels between servers.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// Format version.
    v: u8,
    /// Instance id of the sending server.
    from: String,
    #[serde(flatten)]
    body: Body,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Body {
    Posted { post: PostView, thread: ThreadView },
    Presence { thread_id: i64, online: usize },
}

/// What the publisher task is asked to send.
struct Outgoing {
    channel: String,
    payload: String,
}

/// A random number, from the standard library's per-process hash keys.
fn random_u64() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one(nanos)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_MAX);
        let half = d / 2;
        let span = u64::try_from(half.as_millis()).unwrap_or(0).max(1);
        half + Duration::from_millis(random_u64() % span)
    }
}

/// Names of this deployment's channels and keys.
#[derive(Clone)]
struct Names {
    prefix: String,
}

impl Names {
    fn thread(&self, id: i64) -> String {
        format!("{}:thread:{id}", self.prefix)
    }
    fn pattern(&self) -> String {
        format!("{}:thread:*", self.prefix)
    }
    fn online(&self) -> String {
        format!("{}:online", self.prefix)
    }
}

/// The [`FanOut`] over Redis; see the module documentation.
pub struct RedisFanOut {
    /// The publisher task, awaited by [`RedisFanOut::finish`].
    publisher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    instance: String,
    names: Names,
    queue: mpsc::Sender<Outgoing>,
    dropped: std::sync::atomic::AtomicU64,
}

impl RedisFanOut {
    fn envelope(&self, body: Body) -> Option<String> {
        let env = Envelope {
            v: 1,
            from: self.instance.clone(),
            body,
        };
        match serde_json::to_string(&env) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "serialising a broker message failed");
                None
            }
        }
    }
}

impl RedisFanOut {
    /// After shutdown: waits (at most [`REDIS_TIMEOUT`]) for the publisher to withdraw
    /// this server's online counts, so the other servers stop counting its viewers now
    /// rather than when the counts expire.
    pub async fn finish(&self) {
        let task = self
            .publisher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            if tokio::time::timeout(REDIS_TIMEOUT, task).await.is_err() {
                tracing::debug!("online counts not withdrawn in time (they expire)");
            }
        }
    }
}

impl FanOut for RedisFanOut {
    fn publish(&self, event: BoardEvent) -> BoxFuture<'_, Result<(), String>> {
        let BoardEvent::Posted { post, thread } = event;
        let channel = self.names.thread(post.thread_id);
        let result = match self.envelope(Body::Posted { post, thread }) {
            None => Err("could not serialise the event".to_string()),
            Some(payload) => match self.queue.try_send(Outgoing { channel, payload }) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let n = self
                        .dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Err(format!(
                        "publish queue full (Redis slow or down); {} events dropped so far",
                        n.saturating_add(1)
                    ))
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    Err("the publisher task has stopped".to_string())
                }
            },
        };
        Box::pin(async move { result })
    }
}

/// Other servers' viewers per thread: instance → (count, counts until).
#[derive(Default)]
struct Remote {
    threads: HashMap<i64, HashMap<String, (usize, Instant)>>,
}

impl Remote {
    fn sum(&self, thread_id: i64, now: Instant) -> usize {
        self.threads.get(&thread_id).map_or(0, |m| {
            m.values()
                .filter(|(_, until)| *until > now)
                .map(|(n, _)| *n)
                .sum()
        })
    }

    fn set(&mut self, thread_id: i64, instance: &str, count: usize, until: Instant) {
        let entry = self.threads.entry(thread_id).or_default();
        if count == 0 {
            entry.remove(instance);
        } else {
            entry.insert(instance.to_string(), (count, until));
        }
        if entry.is_empty() {
            self.threads.remove(&thread_id);
        }
    }
}

/// Everything the two tasks share.
struct Shared {
    client: redis::Client,
    instance: String,
    names: Names,
    hub: Arc<Hub>,
    ordered: Arc<Ordered>,
    remote: Mutex<Remote>,
    /// Wakes the publisher to refresh online counts (after a resubscription).
    refresh_now: Notify,
}

impl Shared {
    fn remote(&self) -> std::sync::MutexGuard<'_, Remote> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes the other servers' counts of `threads` into the hub.
    fn push_remote(&self, threads: impl IntoIterator<Item = i64>) {
        let now = Instant::now();
        let sums: Vec<(i64, usize)> = {
            let remote = self.remote();
            threads
                .into_iter()
                .map(|t| (t, remote.sum(t, now)))
                .collect()
        };
        for (t, n) in sums {
            self.hub.set_remote_online(t, n);
        }
    }
}

/// Connects the board to Redis at `url`: starts the publisher and subscriber tasks
/// (they stop with `shutdown`) and returns the [`FanOut`]. Fails only on a malformed
/// URL; an unreachable Redis is retried in the background while the board serves.
pub fn start(
    url: &str,
    prefix: &str,
    hub: Arc<Hub>,
    ordered: Arc<Ordered>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<RedisFanOut>> {
    let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("bad --redis URL: {e}"))?;
    let instance = format!("{}-{:08x}", std::process::id(), random_u64() as u32);
    let names = Names {
        prefix: prefix.to_string(),
    };
    let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
    let (presence_tx, presence_rx) = mpsc::channel(PUBLISH_QUEUE);
    hub.watch_presence(presence_tx);
    let shared = Arc::new(Shared {
        client,
        instance: instance.clone(),
        names: names.clone(),
        hub,
        ordered,
        remote: Mutex::new(Remote::default()),
        refresh_now: Notify::new(),
    });
    tracing::info!(%instance, prefix, "fan-out over Redis");
    let publisher = tokio::spawn(publisher(shared.clone(), rx, presence_rx, shutdown.clone()));
    tokio::spawn(subscriber(shared, shutdown));
    Ok(Arc::new(RedisFanOut {
        publisher: Mutex::new(Some(publisher)),
        instance,
        names,
        queue: tx,
        dropped: std::sync::atomic::AtomicU64::new(0),
    }))
}

/// The publishing connection: made on demand, re-made after a failure no sooner
/// than the backoff allows.
struct Link {
    shared: Arc<Shared>,
    conn: Option<MultiplexedConnection>,
    backoff: Backoff,
    retry_at: Instant,
    /// Unsent events dropped (queue full) since the connection was lost.
    dropped: u64,
    /// Threads this server has an online-count field for.
    written: std::collections::HashSet<i64>,
    down: bool,
}

impl Link {
    async fn conn(&mut self) -> Option<&mut MultiplexedConnection> {
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return None;
            }
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT));
            match self
                .shared
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(c) => {
                    if self.down {
                        tracing::info!(
                            dropped = self.dropped,
                            "Redis publishing connection is back; sending what waited"
                        );
                    }
                    self.conn = Some(c);
                    self.backoff.reset();
                    self.down = false;
                    self.dropped = 0;
                }
                Err(e) => {
                    self.fail(&e);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn fail(&mut self, e: &redis::RedisError) {
        self.conn = None;
        let delay = self.backoff.delay();
        self.retry_at = Instant::now() + delay;
        if !self.down {
            tracing::warn!(error = %e, "Redis unreachable for publishing; this server's own \
                clients are still served; retrying with backoff");
        } else {
            tracing::debug!(error = %e, retry_in = ?delay, "Redis still unreachable");
        }
        self.down = true;
    }

    /// Runs one command; on failure drops the connection (`None`).
    async fn run<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Option<T> {
        let conn = self.conn().await?;
        match cmd.query_async::<T>(conn).await {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }
}

/// Sends queued events and presence changes, and refreshes online counts. While
/// Redis is unreachable, events wait (the oldest dropped beyond [`PUBLISH_QUEUE`]) and
/// go out once it is back: the other servers' pages get them late, not never.
async fn publisher(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut presence_rx: mpsc::Receiver<(i64, usize)>,
    shutdown: CancellationToken,
) {
    let mut link = Link {
        shared: shared.clone(),
        conn: None,
        backoff: Backoff::new(),
        retry_at: Instant::now(),
        dropped: 0,
        written: Default::default(),
        down: false,
    };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut refresh = tokio::time::interval(ONLINE_REFRESH);
    let mut stopping = false;
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let retry_at = link.retry_at;
        let waiting = !pending.is_empty();
        tokio::select! {
            _ = shutdown.cancelled() => {
                stopping = true;
                break;
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                push(&mut pending, &mut link, Pending::Event(out));
            }
            p = presence_rx.recv() => {
                let Some((thread_id, online)) = p else { break };
                push(&mut pending, &mut link, Pending::Presence(thread_id, online));
            }
            _ = refresh.tick() => refresh_online(&mut link).await,
            _ = shared.refresh_now.notified() => {
                // The subscription is back: so is Redis, most likely.
                link.retry_at = Instant::now();
                refresh_online(&mut link).await;
            }
            _ = tokio::time::sleep_until(retry_at), if waiting => {}
        }
        // Bounded: at most the queue, in order; stops at the first failure.
        while let Some(item) = pending.front() {
            let sent = match item {
                Pending::Event(out) => {
                    let cmd = redis::cmd("PUBLISH")
                        .arg(&out.channel)
                        .arg(&out.payload)
                        .clone();
                    link.run::<i64>(&cmd).await.is_some()
                }
                Pending::Presence(thread_id, online) => {
                    publish_presence(&mut link, *thread_id, *online).await
                }
            };
            if !sent {
                break;
            }
            pending.pop_front();
        }
    }
    if stopping && link.conn.is_some() {
        // Withdraw this server's counts (its connections are closing). One attempt
        // each, without reconnecting: what is left expires.
        let threads: Vec<i64> = link.written.iter().copied().collect();
        for t in threads {
            if !publish_presence(&mut link, t, 0).await {
                break;
            }
        }
    }
}

/// What the publisher has yet to send.
enum Pending {
    Event(Outgoing),
    Presence(i64, usize),
}

fn push(pending: &mut VecDeque<Pending>, link: &mut Link, item: Pending) {
    if pending.len() >= PUBLISH_QUEUE {
        pending.pop_front();
        link.dropped += 1;
        if link.dropped.is_power_of_two() {
            tracing::warn!(
                dropped = link.dropped,
                "Redis unreachable: oldest unsent events dropped (pages catch up by id)"
            );
        }
    }
    pending.push_back(item);
}

fn online_field(instance: &str, thread_id: i64) -> String {
    format!("{instance}:{thread_id}")
}

fn online_value(count: usize) -> String {
    let ttl = i64::try_from(ONLINE_TTL.as_millis()).unwrap_or(i64::MAX);
    format!("{count}:{}", unix_ms().saturating_add(ttl))
}

/// Tells the other servers this server's new count for a thread; `false` if Redis
/// could not be reached.
async fn publish_presence(link: &mut Link, thread_id: i64, online: usize) -> bool {
    let shared = link.shared.clone();
    let field = online_field(&shared.instance, thread_id);
    let key = shared.names.online();
    let cmd = if online == 0 {
        redis::cmd("HDEL").arg(&key).arg(&field).clone()
    } else {
        redis::cmd("HSET")
            .arg(&key)
            .arg(&field)
            .arg(online_value(online))
            .clone()
    };
    if link.run::<i64>(&cmd).await.is_none() {
        return false;
    }
    if online == 0 {
        link.written.remove(&thread_id);
    } else {
        link.written.insert(thread_id);
    }
    let env = Envelope {
        v: 1,
        from: shared.instance.clone(),
        body: Body::Presence { thread_id, online },
    };
    if let Ok(payload) = serde_json::to_string(&env) {
        let cmd = redis::cmd("PUBLISH")
            .arg(shared.names.thread(thread_id))
            .arg(payload)
            .clone();
        return link.run::<i64>(&cmd).await.is_some();
    }
    true
}

/// Rewrites this server's fields, re-reads everyone's, and forgets expired counts.
async fn refresh_online(link: &mut Link) {
    let shared = link.shared.clone();
    let key = shared.names.online();
    let local = shared.hub.local_viewers();
    if !local.is_empty() {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key);
        for (t, n) in &local {
            cmd.arg(online_field(&shared.instance, *t))
                .arg(online_value(*n));
        }
        if link.run::<i64>(&cmd).await.is_some() {
            link.written.extend(local.iter().map(|(t, _)| *t));
        }
    }
    let all: Option<HashMap<String, String>> = link.run(redis::cmd("HGETALL").arg(&key)).await;
    let before: Vec<i64> = shared.remote().threads.keys().copied().collect();
    if let Some(all) = all {
        let now_ms = unix_ms();
        let now = Instant::now();
        let own_prefix = format!("{}:", shared.instance);
        let mut remote = Remote::default();
        let mut expired = Vec::new();
        for (field, value) in all {
            let Some((count, until_ms)) = parse_online(&field, &value) else {
                expired.push(field);
                continue;
            };
            if until_ms <= now_ms {
                expired.push(field);
                continue;
            }
            if field.starts_with(&own_prefix) {
                continue;
            }
            let Some((instance, thread)) = field.rsplit_once(':') else {
                continue;
            };
            let Ok(thread_id) = thread.parse::<i64>() else {
                continue;
            };
            let left = u64::try_from(until_ms - now_ms).unwrap_or(0);
            remote.set(
                thread_id,
                instance,
                count,
                now + Duration::from_millis(left).min(ONLINE_TTL),
            );
        }
        if !expired.is_empty() {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(&key).arg(&expired);
            let _: Option<i64> = link.run(&cmd).await;
        }
        *shared.remote() = remote;
    } else {
        // Redis unreachable: counts heard before fade out as they expire.
        let now = Instant::now();
        let mut remote = shared.remote();
        for m in remote.threads.values_mut() {
            m.retain(|_, (_, until)| *until > now);
        }
        remote.threads.retain(|_, m| !m.is_empty());
    }
    let mut threads: Vec<i64> = shared.remote().threads.keys().copied().collect();
    threads.extend(before);
    threads.extend(shared.hub.remote_threads());
    threads.sort_unstable();
    threads.dedup();
    shared.push_remote(threads);
}

/// Parses a field `{instance}:{thread}` and value `{count}:{until_ms}`.
fn parse_online(field: &str, value: &str) -> Option<(usize, i64)> {
    let (_, thread) = field.rsplit_once(':')?;
    thread.parse::<i64>().ok()?;
    let (count, until) = value.split_once(':')?;
    Some((count.parse().ok()?, until.parse().ok()?))
}

/// Keeps a subscription to every thread channel, reconnecting with backoff.
async fn subscriber(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new();
    let mut lost = false;
    // Failed attempts in a row: the first is a warning, then one a minute or so.
    let mut failures: u32 = 0;
    let pattern = shared.names.pattern();
    while !shutdown.is_cancelled() {
        let connected = tokio::time::timeout(REDIS_TIMEOUT, async {
            let pubsub = shared.client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            sink.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        })
        .await;
        match connected {
            Ok(Ok((sink, stream))) => {
                failures = 0;
                if lost {
                    tracing::info!("Redis subscription is back; catching up from the database");
                } else {
                    tracing::info!(%pattern, "subscribed to Redis");
                }
                backoff.reset();
                // Subscribed first, then read what was missed: nothing falls between.
                shared.ordered.catch_up().await;
                shared.refresh_now.notify_one();
                let why = listen(&shared, sink, stream, &shutdown).await;
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!(
                    reason = %why,
                    "lost the Redis subscription; serving this server's clients only \
                     until it is back"
                );
                lost = true;
            }
            Ok(Err(e)) => {
                failures = failures.saturating_add(1);
                if failures % 12 == 1 {
                    tracing::warn!(error = %e, failures, "cannot subscribe to Redis; retrying");
                }
                lost = true;
            }
            Err(_) => {
                failures = failures.saturating_add(1);
                if failures % 12 == 1 {
                    tracing::warn!(failures, "cannot subscribe to Redis: timed out; retrying");
                }
                lost = true;
            }
        }
        let delay = backoff.delay();
        tracing::debug!(retry_in = ?delay, "reconnecting to Redis");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Handles messages until the subscription ends; returns why it ended.
async fn listen(
    shared: &Shared,
    mut sink: redis::aio::PubSubSink,
    mut stream: redis::aio::PubSubStream,
    shutdown: &CancellationToken,
) -> String {
    let mut ping = tokio::time::interval_at(Instant::now() + SUB_PING, SUB_PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return "shutting down".into(),
            msg = stream.next() => {
                let Some(msg) = msg else { return "connection closed".into() };
                handle(shared, msg.get_payload_bytes()).await;
            }
            _ = ping.tick() => {
                match tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("ping failed: {e}"),
                    Err(_) => return "ping timed out".into(),
                }
            }
        }
    }
}

/// Acts on one message from another server; anything malformed is logged and ignored.
async fn handle(shared: &Shared, payload: &[u8]) {
    if payload.len() > MAX_ENVELOPE_BYTES {
        tracing::warn!(
            bytes = payload.len(),
            "ignoring an oversized broker message"
        );
        return;
    }
    let env: Envelope = match serde_json::from_slice(payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed broker message");
            return;
        }
    };
    if env.v != 1 {
        tracing::warn!(
            version = env.v,
            "ignoring a broker message of another version"
        );
        return;
    }
    if env.from == shared.instance {
        return; // Our own: already delivered here.
    }
    match env.body {
        Body::Posted { post, thread } => {
            if post.thread_id != thread.id {
                tracing::warn!("ignoring a broker post whose thread does not match");
                return;
            }
            shared.ordered.deliver(post, thread).await;
        }
        Body::Presence { thread_id, online } => {
            shared
                .remote()
                .set(thread_id, &env.from, online, Instant::now() + ONLINE_TTL);
            shared.push_remote([thread_id]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new();
        let first = b.delay();
        assert!(first >= BACKOFF_MIN / 2 && first <= BACKOFF_MIN);
        for _ in 0..20 {
            let d = b.delay();
            assert!(d <= BACKOFF_MAX && d >= BACKOFF_MIN / 2);
        }
        assert!(b.delay() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.delay() <= BACKOFF_MIN);
    }

    #[test]
    fn envelopes_round_trip_and_online_fields_parse() {
        let env = Envelope {
            v: 1,
            from: "1-abc".into(),
            body: Body::Presence {
                thread_id: 3,
                online: 2,
            },
        };
        let text = serde_json::to_string(&env).unwrap();
        assert!(text.contains(r#""kind":"presence""#), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert!(matches!(
            back.body,
            Body::Presence {
                thread_id: 3,
                online: 2
            }
        ));
        assert_eq!(parse_online("1-abc:3", "2:1000"), Some((2, 1000)));
        assert_eq!(parse_online("1-abc:x", "2:1000"), None);
        assert_eq!(parse_online("1-abc:3", "junk"), None);
        let mut r = Remote::default();
        let now = Instant::now();
        r.set(3, "a", 2, now + ONLINE_TTL);
        r.set(3, "b", 1, now + ONLINE_TTL);
        r.set(3, "c", 5, now); // already expired
        assert_eq!(r.sum(3, now), 3);
        r.set(3, "a", 0, now + ONLINE_TTL);
        assert_eq!(r.sum(3, now), 1);
    }
}
