//! HTTP and WebSocket on one port: the page's assets, and `/ws`.
//!
//! Each TCP connection's request head is read with [`Upgrader::read_request`]; `/ws`
//! is upgraded, anything else gets an embedded asset (or 404) and the connection is
//! closed. A WebSocket connection is one task: its reader parses and validates each
//! message, talks to storage and sends replies through the [`Hub`] (to the
//! connection's own topic); the library's keepalive pings it every
//! [`Timing::ping_period`] and drops it when nothing comes back within
//! [`Timing::pong_wait`] of a ping. What the hub queues on the
//! connection — replies, posts, presence — the hub's flusher writes out, and the
//! same reader when the socket was full (see [`yamabiko::hub`]); a connection that
//! falls [`super::hub::MAX_QUEUED_BYTES`] behind is closed with 1008.

use super::hub::{prepare, BoardEvent, ClientId, FanOut, Hub, Opened, Topic, View, Watching};
use super::order::Ordered;
use super::protocol::{
    parse_client, ClientMsg, ErrorCode, Limits, ProtocolFault, ServerMsg, MAX_BODY_CHARS,
    MAX_NAME_CHARS, MAX_TITLE_CHARS, PAGE_SIZE, RESYNC_PAGE_SIZE,
};
use super::ratelimit::SlidingWindow;
use super::store::{NewPost, Storage, StoreError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use yamabiko::hub::Subscription;
use yamabiko::{CloseCode, Control, Error, Keepalive, Message, ReadHalf, Upgrader, WriteHalf};

/// Default of [`Timing::pong_wait`].
pub const PONG_WAIT: Duration = Duration::from_secs(60);
/// Default of [`Timing::ping_period`].
pub const PING_PERIOD: Duration = Duration::from_secs(20);
/// Default of [`Timing::write_wait`].
pub const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Keep-alive and write timing of every connection.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often the server pings (keep it well inside `pong_wait`).
    pub ping_period: Duration,
    /// How long after a ping a peer may stay silent (no pong, no message) before it
    /// is dropped.
    pub pong_wait: Duration,
    /// How long a ping or close frame may take to go out, and how long a peer closed
    /// as too slow gets to take what was queued for it, before it is dropped.
    pub write_wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ping_period: PING_PERIOD,
            pong_wait: PONG_WAIT,
            write_wait: WRITE_WAIT,
        }
    }
}
/// Largest message a page may send (a 2,000-character body, escaped, fits easily).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Posts (and new threads) per connection per [`POST_WINDOW`].
pub const POSTS_PER_WINDOW: usize = 5;
/// The post rate-limit window.
pub const POST_WINDOW: Duration = Duration::from_secs(10);
/// Messages of any kind per connection per [`POST_WINDOW`].
pub const MESSAGES_PER_WINDOW: usize = 100;
/// Threads in the list.
pub const THREAD_LIST_LEN: usize = 100;
/// Longest wait for storage: past it, the page is told the database is unavailable
/// (a post's outcome is then unknown, and a resend with its client id is stored once).
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reads of an opening, at most, when posts keep overflowing the hold
/// ([`super::hub::HOLD_MAX`]); then the connection is closed with 1013.
const OPEN_ATTEMPTS: usize = 3;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The board: storage, fan-out and this server's connections.
pub struct Board {
    store: Arc<dyn Storage>,
    fanout: Arc<dyn FanOut>,
    hub: Arc<Hub>,
    /// Delivers each thread's posts to this server's pages in order (a page that has
    /// post N of a thread has every earlier one), whichever server committed them.
    ordered: Arc<Ordered>,
    next_client: AtomicU64,
    /// WebSockets that came as HTTP/2 extended CONNECTs (RFC 8441).
    http2_websockets: AtomicU64,
    timing: Timing,
}

impl Board {
    /// A fresh client id.
    pub(super) fn next_client(&self) -> ClientId {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// How many WebSockets came as HTTP/2 extended CONNECTs so far.
    pub fn http2_websockets(&self) -> u64 {
        self.http2_websockets.load(Ordering::Relaxed)
    }

    /// A board over `store`: committed posts go to this server's `hub` through
    /// `ordered`, and to the other servers through `fanout`.
    pub fn new(
        store: Arc<dyn Storage>,
        fanout: Arc<dyn FanOut>,
        hub: Arc<Hub>,
        ordered: Arc<Ordered>,
        timing: Timing,
    ) -> Self {
        Board {
            store,
            fanout,
            hub,
            ordered,
            next_client: AtomicU64::new(1),
            http2_websockets: AtomicU64::new(0),
            timing,
        }
    }
}

/// Accepts connections until `shutdown` fires, then gives open connections a moment
/// to send their close frames. Connections beyond `limit` are answered with 503.
/// With `tls`, connections are HTTPS: ALPN `h2` gets HTTP/2 (see [`super::https`]),
/// `http/1.1` the same handling as plain connections.
pub async fn serve(
    listener: TcpListener,
    board: Arc<Board>,
    shutdown: CancellationToken,
    limit: crate::limits::ConnLimit,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let upgrader = Arc::new(upgrader(&board.timing));
    let tracker = tokio_util::task::TaskTracker::new();
    while let Some((tcp, peer, permit)) =
        crate::limits::accept_admitted(&listener, &limit, &shutdown).await
    {
        let board = board.clone();
        // Shared: a connection's task then holds a pointer, not a copy of the settings.
        let upgrader = upgrader.clone();
        let shutdown = shutdown.clone();
        match &tls {
            None => tracker.spawn(async move {
                handle_tcp(board, upgrader, tcp, peer, shutdown).await;
                drop(permit);
            }),
            Some(acceptor) => tracker.spawn(super::https::handle_tls(
                acceptor.clone(),
                board,
                upgrader,
                tcp,
                peer,
                shutdown,
                permit,
            )),
        };
    }
    drop(listener);
    tracker.close();
    let stats = board.hub.stats();
    tracing::info!(
        connections = board.hub.len(),
        delivered = stats.delivered,
        dropped_counts = stats.dropped,
        closed_slow = stats.closed_slow,
        "shutting down"
    );
    if tokio::time::timeout(Duration::from_secs(3), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    Ok(())
}

/// The WebSocket settings of the board's `/ws`.
pub(super) fn upgrader(timing: &Timing) -> Upgrader {
    Upgrader::new()
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .handshake_timeout(Duration::from_secs(10))
        .keepalive(Keepalive::new(timing.ping_period, timing.pong_wait))
}

/// One HTTP/1.1 connection (plain or TLS): a page asset, or the WebSocket.
pub(super) async fn handle_tcp<S>(
    board: Arc<Board>,
    upgrader: Arc<Upgrader>,
    tcp: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The handshake runs in its own (boxed) future, freed once it is done: a
    // connection's task is then only as large as the connection's own state.
    // The connection passes from the handshake's result straight into the client's
    // task: no binding of it lives across the client's await (it would be a second
    // copy of the connection in every idle task).
    let client = {
        let upgraded = Box::pin(read_and_upgrade(&board, &upgrader, tcp, peer, &shutdown)).await;
        drop(upgrader);
        match upgraded {
            Some((conn, id, version, span)) => span
                .in_scope(|| run_client(board, conn, id, shutdown, version))
                .instrument(span),
            None => return,
        }
    };
    client.await;
}

/// Reads the request: answers plain HTTP (`None`), or upgrades `/ws` and returns the
/// WebSocket connection with its number, HTTP version and log span.
async fn read_and_upgrade<S>(
    board: &Board,
    upgrader: &Upgrader,
    mut tcp: S,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Option<(yamabiko::Conn<S>, ClientId, http::Version, tracing::Span)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read = tokio::select! {
        _ = shutdown.cancelled() => return None,
        r = upgrader.read_request(&mut tcp) => r,
    };
    let (request, leftover) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad or no request");
            return None;
        }
    };
    if request.uri().path() != "/ws" {
        serve_http(&mut tcp, &request).await;
        return None;
    }
    let conn = match upgrader.upgrade_request(tcp, &request, leftover).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%peer, error = %e, "websocket handshake refused");
            return None;
        }
    };
    let id = board.next_client();
    Some((
        conn,
        id,
        request.version(),
        tracing::info_span!("client", id, %peer),
    ))
}

/// An embedded asset (or the error) for a plain HTTP request: status line text,
/// content type and body.
pub(super) fn asset(
    method: &http::Method,
    path: &str,
) -> (&'static str, &'static str, &'static [u8]) {
    if method != http::Method::GET && method != http::Method::HEAD {
        return (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            b"method not allowed\n",
        );
    }
    match path {
        "/" | "/index.html" => ("200 OK", "text/html; charset=utf-8", INDEX_HTML.as_bytes()),
        "/app.js" => (
            "200 OK",
            "text/javascript; charset=utf-8",
            APP_JS.as_bytes(),
        ),
        "/style.css" => ("200 OK", "text/css; charset=utf-8", STYLE_CSS.as_bytes()),
        "/healthz" => ("200 OK", "text/plain; charset=utf-8", b"ok\n"),
        _ => ("404 Not Found", "text/plain; charset=utf-8", b"not found\n"),
    }
}

/// Headers of every asset response.
pub(super) const ASSET_HEADERS: [(&str, &str); 4] = [
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
];

/// Answers a plain HTTP request with an embedded asset and closes the connection.
async fn serve_http<S: AsyncWrite + Unpin>(tcp: &mut S, request: &http::Request<()>) {
    let method = request.method();
    let (status, content_type, body) = asset(method, request.uri().path());
    let mut head = format!(
        "HTTP/1.1 {status}\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in ASSET_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if status.starts_with("405") {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let write = async {
        tcp.write_all(head.as_bytes()).await?;
        if method != http::Method::HEAD {
            tcp.write_all(body).await?;
        }
        tcp.shutdown().await
    };
    match tokio::time::timeout(WRITE_WAIT, write).await {
        Ok(Ok(())) => tracing::debug!(path = %request.uri().path(), status, "http"),
        Ok(Err(e)) => tracing::debug!(error = %e, "http response failed"),
        Err(_) => tracing::debug!("http response timed out"),
    }
}

/// Runs one WebSocket connection until it ends. `version` is the HTTP version its
/// handshake came in (HTTP/2: an extended CONNECT stream, RFC 8441).
#[allow(clippy::manual_async_fn)]
pub(super) fn run_client<S>(
    board: Arc<Board>,
    conn: yamabiko::Conn<S>,
    id: ClientId,
    shutdown: CancellationToken,
    version: http::Version,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Set up before the task starts, so that the task holds the connection's halves
    // once (an `async fn` would also keep `conn` itself, as an argument).
    let via = if version >= http::Version::HTTP_2 {
        board.http2_websockets.fetch_add(1, Ordering::Relaxed);
        "HTTP/2 extended CONNECT"
    } else {
        "HTTP/1.1 upgrade"
    };
    tracing::info!(online = board.hub.len() + 1, via, "connected");
    let timing = board.timing;
    let (mut read, write) = conn.split();
    read.set_read_limit(MAX_MESSAGE_BYTES);
    let own = board.hub.register(id, &write);
    let mut client = ClientState {
        board: board.clone(),
        id,
        write,
        view: Watching::default(),
        close: None,
        _own: own,
        posts: SlidingWindow::new(POSTS_PER_WINDOW, POST_WINDOW),
        messages: SlidingWindow::new(MESSAGES_PER_WINDOW, POST_WINDOW),
    };
    client.reply(&ServerMsg::Hello {
        server: format!("yamabiko {}", env!("CARGO_PKG_VERSION")),
        limits: Limits {
            name: MAX_NAME_CHARS,
            body: MAX_BODY_CHARS,
            title: MAX_TITLE_CHARS,
            posts: POSTS_PER_WINDOW as u32,
            per_seconds: POST_WINDOW.as_secs(),
        },
    });
    async move {
        let close = read_pump(&mut read, &mut client, &shutdown).await;
        board.hub.unregister(id);
        if let Some((code, reason)) = close {
            let deadline = Instant::now() + timing.write_wait.min(Duration::from_secs(1));
            match client
                .write
                .write_control(Control::close(code, reason), Some(deadline))
                .await
            {
                Ok(()) | Err(Error::CloseSent) => {}
                Err(e) => tracing::debug!(error = %e, "close frame not sent"),
            }
        }
        drop(client);
        tracing::info!(online = board.hub.len(), "disconnected");
    }
}

/// Reads (the library's keepalive pings meanwhile) until the connection ends; returns
/// the close frame to send, if one is to be sent.
async fn read_pump<S>(
    read: &mut ReadHalf<S>,
    client: &mut ClientState<S>,
    shutdown: &CancellationToken,
) -> Option<(CloseCode, &'static str)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => {
                return Some((CloseCode::GOING_AWAY, "server shutting down"));
            }
            r = read.read_message() => r,
        };
        match result {
            Ok(Message::Text(text)) => {
                // Boxed: the handler's state (storage calls, a post's strings) exists
                // only while a message is handled, not in every idle connection's task.
                Box::pin(client.handle(text.as_str())).await;
                if let Some(close) = client.close {
                    return Some(close);
                }
            }
            Ok(Message::Binary(_)) => {
                client.fault(ProtocolFault::new(
                    ErrorCode::BadMessage,
                    "binary messages are not part of the protocol: send JSON text",
                ));
            }
            Err(Error::KeepaliveTimeout) => {
                tracing::info!("no answer to a keepalive ping in time, dropped");
                return None;
            }
            Err(Error::TooSlow(_)) => {
                tracing::warn!("client too slow, disconnecting (close 1008)");
                return None;
            }
            Err(e) => {
                if yamabiko::is_unexpected_close_error(
                    &e,
                    &[
                        CloseCode::NORMAL,
                        CloseCode::GOING_AWAY,
                        CloseCode::NO_STATUS,
                    ],
                ) {
                    tracing::info!(error = %e, "connection ended");
                } else {
                    tracing::debug!(error = %e, "connection closed");
                }
                return None;
            }
        }
    }
}

/// The connection's state between reads: its write half (to subscribe and to send
/// control frames), its subscriptions and its rate limits.
struct ClientState<S> {
    board: Arc<Board>,
    id: ClientId,
    write: WriteHalf<S>,
    /// The subscriptions to what the connection views.
    view: Watching,
    /// Set when the connection is to be closed with this code and reason.
    close: Option<(CloseCode, &'static str)>,
    /// The subscription to the connection's own topic (replies).
    _own: Subscription<Topic>,
    posts: SlidingWindow,
    messages: SlidingWindow,
}

/// A storage call bounded by [`STORE_TIMEOUT`]: no page waits longer for an answer.
async fn within<T>(
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(STORE_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Backend(format!(
            "no answer from the database within {} s",
            STORE_TIMEOUT.as_secs()
        ))),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl<S> ClientState<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Queues a reply (in order with what the hub queues on this connection); a
    /// connection too far behind is closed (1008).
    fn reply(&self, msg: &ServerMsg) {
        self.board.hub.send_to(self.id, &prepare(msg));
    }

    /// Views something else: subscribes to it (before the caller reads storage, so
    /// that nothing committed in between is missed) and leaves the old view.
    fn watch(&mut self, view: View) {
        if let Some(watching) = self.board.hub.set_view(self.id, view, &self.write) {
            self.view = watching;
        }
    }

    fn fault(&self, fault: ProtocolFault) {
        tracing::debug!(code = ?fault.code, message = %fault.message, "refused a message");
        self.reply(&fault.to_msg());
    }

    fn store_fault(&self, e: StoreError, client_id: Option<String>) {
        let code = match e {
            StoreError::ThreadNotFound(_) => ErrorCode::NotFound,
            StoreError::ClientIdConflict => ErrorCode::Invalid,
            StoreError::Backend(ref detail) => {
                tracing::error!(error = %detail, "storage failed");
                ErrorCode::Internal
            }
        };
        let message = match (e, &client_id) {
            (StoreError::Backend(_), Some(_)) => "the post could not be confirmed as saved: the \
                database is unavailable. Send it again in a moment (it will not appear twice)"
                .into(),
            (StoreError::Backend(_), None) => {
                "the server could not load that: the database is unavailable; try again".into()
            }
            (other, _) => other.to_string(),
        };
        self.fault(ProtocolFault {
            code,
            message,
            client_id,
        });
    }

    async fn handle(&mut self, text: &str) {
        if let Err(wait) = self.messages.check(Instant::now()) {
            self.reply(&ServerMsg::Error {
                code: ErrorCode::TooManyRequests,
                message: format!(
                    "too many messages: at most {MESSAGES_PER_WINDOW} every {} seconds",
                    POST_WINDOW.as_secs()
                ),
                client_id: None,
                retry_after_ms: Some(wait.as_millis() as u64),
            });
            return;
        }
        let msg = match parse_client(text) {
            Ok(m) => m,
            Err(fault) => return self.fault(fault),
        };
        match msg {
            ClientMsg::ListThreads => self.list_threads().await,
            ClientMsg::OpenThread { thread_id, after } => self.open_thread(thread_id, after).await,
            ClientMsg::Older {
                thread_id,
                before,
                limit,
            } => {
                self.older(thread_id, before, limit.unwrap_or(PAGE_SIZE))
                    .await
            }
            ClientMsg::Post {
                thread_id,
                name,
                body,
                client_id,
            } => {
                self.post(Some(thread_id), None, name, body, client_id)
                    .await
            }
            ClientMsg::NewThread {
                title,
                name,
                body,
                client_id,
            } => self.post(None, Some(title), name, body, client_id).await,
        }
    }

    async fn list_threads(&mut self) {
        // Watch first, then read: a post committed in between arrives twice at worst
        // (the page keeps the newest summary), never not at all.
        self.watch(View::List);
        match within(self.board.store.list_threads(THREAD_LIST_LEN)).await {
            Ok(mut threads) => {
                self.board.hub.fill_online(&mut threads);
                self.reply(&ServerMsg::Threads { threads });
            }
            Err(e) => self.store_fault(e, None),
        }
    }

    async fn open_thread(&mut self, thread_id: i64, after: Option<i64>) {
        let before = match within(self.board.store.thread(thread_id)).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.watch(View::Nothing);
                return self.store_fault(StoreError::ThreadNotFound(thread_id), None);
            }
            Err(e) => return self.store_fault(e, None),
        };
        // Watch first, then read. From here on the thread's posts are held for this
        // connection until its reply is queued (`Hub::finish_open`), then the ones the
        // reply lacks follow it and the connection goes live: no live post reaches the
        // page before the reply, and none is lost or sent twice. Live posts count from
        // a point no later than the page (`Ordered::watching`).
        self.watch(View::Thread(thread_id));
        self.board.ordered.watching(&before).await;
        for _ in 0..OPEN_ATTEMPTS {
            let store = &self.board.store;
            let page = match after {
                Some(after) => within(store.posts_after(thread_id, after, RESYNC_PAGE_SIZE)).await,
                None => within(store.latest_posts(thread_id, PAGE_SIZE)).await,
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => return self.open_failed(e),
            };
            let thread = match within(store.thread(thread_id)).await {
                Ok(Some(mut t)) => {
                    t.online = self.board.hub.online(thread_id);
                    t
                }
                Ok(None) => return self.open_failed(StoreError::ThreadNotFound(thread_id)),
                Err(e) => return self.open_failed(e),
            };
            let (has_older, has_newer) = match after {
                Some(_) => (false, page.more),
                None => (page.more, false),
            };
            // The reply holds every post of the thread up to its last one (and those
            // up to `before`, committed before the read); with `has_newer` the page
            // asks again and the opening goes on. Posts up to there that this server
            // has not delivered yet go out now, so none comes again after the reply.
            let floor = match has_newer {
                true => None,
                false => {
                    let last = page.posts.last().map_or(0, |p| p.no);
                    let floor = last.max(before.post_count);
                    if !self.board.ordered.caught_up(&before, floor).await {
                        tracing::debug!(thread = thread_id, "opening before catching up");
                    }
                    Some(floor)
                }
            };
            let reply = prepare(&ServerMsg::Thread {
                thread,
                posts: page.posts,
                has_older,
                has_newer,
            });
            let opened = self.board.hub.finish_open(
                self.id,
                thread_id,
                floor,
                &reply,
                &self.write,
                &mut self.view,
            );
            if opened != Opened::Overflowed {
                return;
            }
            tracing::debug!(
                thread = thread_id,
                "posts overflowed the hold while opening; reading again"
            );
        }
        tracing::warn!(
            thread = thread_id,
            "could not open a thread under a flood of posts (close 1013)"
        );
        self.close = Some((CloseCode::TRY_AGAIN_LATER, "busy: reconnect and resync"));
    }

    /// The reads of an opening failed: the connection views nothing (the page asks
    /// again) and is told why.
    fn open_failed(&mut self, e: StoreError) {
        self.watch(View::Nothing);
        self.store_fault(e, None);
    }

    async fn older(&mut self, thread_id: i64, before: i64, limit: usize) {
        match within(self.board.store.posts_before(thread_id, before, limit)).await {
            Ok(page) => self.reply(&ServerMsg::OlderPosts {
                thread_id,
                posts: page.posts,
                has_older: page.more,
            }),
            Err(e) => self.store_fault(e, None),
        }
    }

    /// A reply (`thread_id`) or a new thread (`title`).
    async fn post(
        &mut self,
        thread_id: Option<i64>,
        title: Option<String>,
        name: String,
        body: String,
        client_id: String,
    ) {
        if let Err(wait) = self.posts.check(Instant::now()) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            self.reply(&ServerMsg::Error {
                code: ErrorCode::RateLimited,
                message: format!(
                    "too many posts: at most {POSTS_PER_WINDOW} every {} seconds; try again in {secs} s",
                    POST_WINDOW.as_secs()
                ),
                client_id: Some(client_id),
                retry_after_ms: Some(wait.as_millis() as u64),
            });
            return;
        }
        let new = NewPost {
            name,
            body,
            client_id: client_id.clone(),
            created_at: now_ms(),
        };
        let board = self.board.clone();
        let result = match (thread_id, title) {
            (Some(t), _) => within(board.store.create_post(t, new)).await,
            (None, Some(title)) => within(board.store.create_thread(title, new)).await,
            (None, None) => return,
        };
        let committed = match result {
            Ok(c) => c,
            Err(e) => {
                self.posts.undo();
                return self.store_fault(e, Some(client_id));
            }
        };
        if committed.duplicate {
            tracing::info!(post = committed.post.id, "resent post acknowledged again");
        } else {
            tracing::info!(
                thread = committed.post.thread_id,
                post = committed.post.id,
                no = committed.post.no,
                "post committed"
            );
            // This server's pages first (never waits for the broker), then the others.
            board
                .ordered
                .deliver(committed.post.clone(), committed.thread.clone())
                .await;
            let event = BoardEvent::Posted {
                post: committed.post.clone(),
                thread: committed.thread.clone(),
            };
            if let Err(e) = board.fanout.publish(event).await {
                tracing::warn!(error = %e, "publishing a post to the other servers failed");
            }
        }
        let mut thread = committed.thread;
        thread.online = board.hub.online(thread.id);
        self.reply(&ServerMsg::Ack {
            client_id,
            post: committed.post,
            thread: thread_id.is_none().then_some(thread),
        });
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::SingleServer;
    use crate::protocol::ThreadView;
    use crate::sqlite::SqliteStore;
    use crate::store::{Committed, Page, StoreResult};
    use tokio::sync::Notify;

    /// SQLite whose page reads (`latest_posts`, `posts_after`) stop half-way — after
    /// reading when `after_read`, else before — until released: a post can be
    /// committed and delivered while an opening reads its page.
    struct Gated {
        inner: SqliteStore,
        after_read: bool,
        entered: Notify,
        release: Notify,
    }

    impl Gated {
        fn gate<'a>(
            &'a self,
            read: BoxFuture<'a, StoreResult<Page>>,
        ) -> BoxFuture<'a, StoreResult<Page>> {
            Box::pin(async move {
                if self.after_read {
                    let page = read.await;
                    self.entered.notify_one();
                    self.release.notified().await;
                    page
                } else {
                    self.entered.notify_one();
                    self.release.notified().await;
                    read.await
                }
            })
        }
    }

    use crate::store::BoxFuture;

    impl Storage for Gated {
        fn list_threads(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<ThreadView>>> {
            self.inner.list_threads(limit)
        }
        fn thread(&self, id: i64) -> BoxFuture<'_, StoreResult<Option<ThreadView>>> {
            self.inner.thread(id)
        }
        fn latest_posts(&self, thread_id: i64, limit: usize) -> BoxFuture<'_, StoreResult<Page>> {
            self.gate(self.inner.latest_posts(thread_id, limit))
        }
        fn posts_after(
            &self,
            thread_id: i64,
            after: i64,
            limit: usize,
        ) -> BoxFuture<'_, StoreResult<Page>> {
            self.gate(self.inner.posts_after(thread_id, after, limit))
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

    fn new_post(i: usize) -> NewPost {
        NewPost {
            name: "n".into(),
            body: format!("b{i}"),
            client_id: format!("c{i}"),
            created_at: 1,
        }
    }

    /// Opens a thread (fresh, or resyncing `after` its first post) while another
    /// connection's post is committed and delivered during the page read; returns
    /// what the opening connection was sent, in order: "thread [ids]" or "post id".
    async fn open_during_a_post(after_read: bool, resync: bool) -> (Vec<String>, i64) {
        let dir = std::env::temp_dir().join(format!(
            "yamabiko-open-race-{}-{after_read}-{resync}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let inner = SqliteStore::open(&dir.join("b.db")).unwrap();
        let first = inner.create_thread("t".into(), new_post(0)).await.unwrap();
        let t = first.thread.id;
        let gated = Arc::new(Gated {
            inner: inner.clone(),
            after_read,
            entered: Notify::new(),
            release: Notify::new(),
        });
        let store: Arc<dyn Storage> = gated.clone();
        let hub = Arc::new(Hub::new(Duration::from_secs(1)));
        let ordered = Arc::new(Ordered::new(store.clone(), hub.clone()));
        let board = Arc::new(Board::new(
            store,
            Arc::new(SingleServer),
            hub.clone(),
            ordered.clone(),
            Timing::default(),
        ));
        // A server connection over loopback TCP, and the page's end.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialing = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, dialed) = tokio::join!(listener.accept(), dialing);
        let config = yamabiko::Config::default();
        let server = yamabiko::Conn::from_raw(
            accepted.unwrap().0,
            yamabiko::Role::Server,
            &config,
            Default::default(),
        );
        let mut page = yamabiko::Conn::from_raw(
            dialed.unwrap(),
            yamabiko::Role::Client,
            &config,
            Default::default(),
        );
        let (mut read, write) = server.split();
        tokio::spawn(async move { while read.read_message().await.is_ok() {} });
        let own = hub.register(1, &write);
        let mut client = ClientState {
            board,
            id: 1,
            write,
            view: Watching::default(),
            close: None,
            _own: own,
            posts: SlidingWindow::new(POSTS_PER_WINDOW, POST_WINDOW),
            messages: SlidingWindow::new(MESSAGES_PER_WINDOW, POST_WINDOW),
        };
        let after = resync.then_some(first.post.id);
        let opening = tokio::spawn(async move {
            client.open_thread(t, after).await;
            client
        });
        gated.entered.notified().await;
        // Another connection posts now: committed, then delivered to this server.
        let c = inner.create_post(t, new_post(1)).await.unwrap();
        ordered.deliver(c.post.clone(), c.thread.clone()).await;
        gated.release.notify_one();
        let client = opening.await.unwrap();
        let mut received = Vec::new();
        let wait = Duration::from_millis(200);
        while let Ok(Ok(m)) = tokio::time::timeout(wait, page.read_message()).await {
            received.push(m);
        }
        drop(client);
        let sent = received
            .iter()
            .filter_map(|m| {
                let v: serde_json::Value = serde_json::from_slice(m.as_bytes()).unwrap();
                match v["type"].as_str().unwrap() {
                    "thread" => Some(format!(
                        "thread {:?}",
                        v["posts"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|p| p["id"].as_i64().unwrap())
                            .collect::<Vec<_>>()
                    )),
                    "post" => Some(format!("post {}", v["post"]["id"])),
                    _ => None,
                }
            })
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        (sent, c.post.id)
    }

    /// Defect 2 of issue 17: a live post used to reach the page before the reply to its
    /// `open_thread` when it was committed during the page read. Now the reply comes
    /// first, and the post is in it or right after it — once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_live_post_before_the_thread_reply_and_none_twice() {
        // Committed before the read: in the page, and not sent again.
        let (sent, id) = open_during_a_post(false, false).await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].starts_with("thread") && sent[0].contains(&id.to_string()));
        // Committed after the read: the reply first, then the post.
        let (sent, id) = open_during_a_post(true, false).await;
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent[0].starts_with("thread") && !sent[0].contains(&id.to_string()));
        assert_eq!(sent[1], format!("post {id}"));
        // The same for a resync (`after`).
        let (sent, id) = open_during_a_post(true, true).await;
        assert_eq!(sent, ["thread []".to_string(), format!("post {id}")]);
        let (sent, id) = open_during_a_post(false, true).await;
        assert_eq!(sent, [format!("thread [{id}]")]);
    }
}
