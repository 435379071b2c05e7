//! HTTP and WebSocket on one port: the page's assets, and `/ws`.
//!
//! Each TCP connection's request head is read with [`Upgrader::read_request`]; `/ws`
//! is upgraded, anything else gets an embedded asset (or 404) and the connection is
//! closed. A WebSocket connection is one task: its reader parses and validates each
//! message, talks to storage and sends replies through the [`Hub`] (to the
//! connection's own topic); the library's keepalive pings it every
//! [`Timing::ping_period`] and drops it when nothing comes back within
//! [`Timing::pong_wait`] of a ping. What the hub queues on the
//! connection — replies, posts, presence — the same reader writes out whenever it
//! waits for input (see [`yamabiko::hub`]); a connection that falls
//! [`super::hub::MAX_QUEUED_BYTES`] behind is closed with 1008.

use super::hub::{prepare, BoardEvent, ClientId, FanOut, Hub, Topic, View};
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

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const APP_JS: &str = include_str!("../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

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
    let upgrader = upgrader(&board.timing);
    let tracker = tokio_util::task::TaskTracker::new();
    while let Some((tcp, peer, permit)) =
        crate::limits::accept_admitted(&listener, &limit, &shutdown).await
    {
        let board = board.clone();
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
    tracing::info!(connections = board.hub.len(), "shutting down");
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
    upgrader: Upgrader,
    mut tcp: S,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let read = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = upgrader.read_request(&mut tcp) => r,
    };
    let (request, leftover) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "bad or no request");
            return;
        }
    };
    if request.uri().path() != "/ws" {
        serve_http(&mut tcp, &request).await;
        return;
    }
    let conn = match upgrader.upgrade_request(tcp, &request, leftover).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%peer, error = %e, "websocket handshake refused");
            return;
        }
    };
    let id = board.next_client();
    let span = tracing::info_span!("client", id, %peer);
    run_client(board, conn, id, shutdown, request.version())
        .instrument(span)
        .await;
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
pub(super) async fn run_client<S>(
    board: Arc<Board>,
    conn: yamabiko::Conn<S>,
    id: ClientId,
    shutdown: CancellationToken,
    version: http::Version,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
        view: None,
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
                client.handle(text.as_str()).await;
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
    /// The subscription to what the connection views.
    view: Option<Subscription<Topic>>,
    /// The subscription to the connection's own topic (replies).
    _own: Subscription<Topic>,
    posts: SlidingWindow,
    messages: SlidingWindow,
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
        if let Some(subscription) = self.board.hub.set_view(self.id, view, &self.write) {
            self.view = subscription;
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
        let message = match e {
            StoreError::Backend(_) => "the server could not save or load that; try again".into(),
            other => other.to_string(),
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
        match self.board.store.list_threads(THREAD_LIST_LEN).await {
            Ok(mut threads) => {
                self.board.hub.fill_online(&mut threads);
                self.reply(&ServerMsg::Threads { threads });
            }
            Err(e) => self.store_fault(e, None),
        }
    }

    async fn open_thread(&mut self, thread_id: i64, after: Option<i64>) {
        let before = match self.board.store.thread(thread_id).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.watch(View::Nothing);
                return self.store_fault(StoreError::ThreadNotFound(thread_id), None);
            }
            Err(e) => return self.store_fault(e, None),
        };
        // Watch first, then read (the page drops posts it already has, by id). Live
        // posts count from a point no later than the page: every post after it is
        // either in the page or delivered (in order) afterwards.
        self.watch(View::Thread(thread_id));
        self.board.ordered.watching(&before).await;
        let store = &self.board.store;
        let page = match after {
            Some(after) => store.posts_after(thread_id, after, RESYNC_PAGE_SIZE).await,
            None => store.latest_posts(thread_id, PAGE_SIZE).await,
        };
        let page = match page {
            Ok(p) => p,
            Err(e) => return self.store_fault(e, None),
        };
        let thread = match store.thread(thread_id).await {
            Ok(Some(mut t)) => {
                t.online = self.board.hub.online(thread_id);
                t
            }
            Ok(None) => return self.store_fault(StoreError::ThreadNotFound(thread_id), None),
            Err(e) => return self.store_fault(e, None),
        };
        let (has_older, has_newer) = match after {
            Some(_) => (false, page.more),
            None => (page.more, false),
        };
        self.reply(&ServerMsg::Thread {
            thread,
            posts: page.posts,
            has_older,
            has_newer,
        });
    }

    async fn older(&mut self, thread_id: i64, before: i64, limit: usize) {
        match self
            .board
            .store
            .posts_before(thread_id, before, limit)
            .await
        {
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
            (Some(t), _) => board.store.create_post(t, new).await,
            (None, Some(title)) => board.store.create_thread(title, new).await,
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
