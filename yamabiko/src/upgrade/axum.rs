//! axum 0.8: [`WebSocketUpgrade`], an extractor in the style of axum's own, yielding
//! yamabiko's [`Conn`](crate::Conn) — with streaming readers and writers, deadlines,
//! handlers, `write_control` and compression.
//!
//! ```no_run
//! use axum::{response::Response, routing::get, Router};
//! use yamabiko::upgrade::axum::WebSocketUpgrade;
//!
//! async fn echo(ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["echo"])
//!         .max_message_size(1 << 20)
//!         .enable_compression(true)
//!         .on_upgrade(|mut conn| async move {
//!             while let Ok(msg) = conn.read_message().await {
//!                 if conn.write_message(msg).await.is_err() { break }
//!             }
//!         })
//! }
//!
//! # async fn run() {
//! let app: Router = Router::new().route("/ws", get(echo));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```
//!
//! Extraction checks the request's form (a `GET` with `Upgrade: websocket`,
//! `Connection: upgrade`, version 13 and a valid key) and refuses with
//! [`WebSocketUpgradeRejection`]; the policy set with the builder methods (origin,
//! subprotocols, compression) is applied by [`on_upgrade`](WebSocketUpgrade::on_upgrade),
//! whose response is then a `403` for a refused origin. `Option<WebSocketUpgrade>` is
//! `None` for a request that asks for no upgrade, so one route can serve both a page
//! and a socket.
//!
//! **HTTP/2** (RFC 8441, feature `http2`): the extractor also takes an extended
//! CONNECT (`:protocol websocket`, version 13), answered `200` by `on_upgrade`, with
//! the same callback and [`HyperConn`]. A route must accept both methods —
//! `any(handler)`, or `get(handler).connect(handler)` — because `get` alone does not
//! route CONNECT. `axum::serve` enables extended CONNECT on its HTTP/2 connections
//! (axum's `http2` feature) but keeps hyper's default windows, under which one
//! WebSocket that stops reading can stall or end its connection's others; serving the
//! `Router` on hyper's `http2::Builder` with
//! [`Http2Settings::configure_hyper`](crate::http2::Http2Settings::configure_hyper)
//! (through `hyper_util::service::TowerToHyperService`) avoids that — see
//! [`http2`](crate::http2) for what remains.
//!
//! ```no_run
//! # use axum::{response::Response, routing::{any, get}, Router};
//! # use yamabiko::upgrade::axum::WebSocketUpgrade;
//! # async fn echo(ws: WebSocketUpgrade) -> Response { ws.on_upgrade(|_| async {}) }
//! // HTTP/1.1 GET upgrades and HTTP/2 CONNECTs on one route:
//! let app: Router = Router::new().route("/ws", any(echo));
//! let same: Router = Router::new().route("/ws", get(echo).connect(echo));
//! ```

use super::hyper::{error_response, request_head, switching_response, upgrading, HyperConn};
use crate::error::Error;
use crate::proto::deflate::DeflateConfig;
use crate::proto::handshake::{self, extended_connect, HandshakeError};
use crate::server::Upgrader;
use ::hyper::upgrade::OnUpgrade;
use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use std::fmt;
use std::future::Future;

/// Extractor for a WebSocket upgrade: configure it, then answer the request with
/// [`on_upgrade`](Self::on_upgrade). Starts from [`Upgrader::new`]'s defaults
/// (same-origin check, no subprotocols, no compression, 64 MiB messages).
pub struct WebSocketUpgrade {
    upgrader: Upgrader,
    head: http::Request<()>,
    /// The `:protocol` of an HTTP/2 extended CONNECT.
    protocol: Option<String>,
    on_upgrade: OnUpgrade,
}

impl fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("upgrader", &self.upgrader)
            .field("uri", self.head.uri())
            .finish()
    }
}

impl WebSocketUpgrade {
    fn map(mut self, f: impl FnOnce(Upgrader) -> Upgrader) -> Self {
        self.upgrader = f(std::mem::take(&mut self.upgrader));
        self
    }

    /// Uses all the settings of `upgrader` (shared with raw-stream servers).
    pub fn upgrader(self, upgrader: Upgrader) -> Self {
        self.map(|_| upgrader)
    }

    /// Subprotocols the server speaks, most preferred first.
    pub fn protocols<I, T>(self, protocols: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.map(|u| u.subprotocols(protocols))
    }

    /// The subprotocol [`on_upgrade`](Self::on_upgrade) will agree on, if any.
    pub fn selected_protocol(&self) -> Option<String> {
        if self.is_http2() {
            return self
                .upgrader
                .negotiate_extended_connect(&self.head, self.protocol.as_deref())
                .ok()
                .and_then(|n| n.subprotocol);
        }
        self.upgrader
            .negotiate(&self.head)
            .ok()
            .and_then(|n| n.subprotocol)
    }

    /// Whether the request is an HTTP/2 extended CONNECT (RFC 8441) rather than an
    /// HTTP/1.1 upgrade.
    pub fn is_http2(&self) -> bool {
        self.head.version() >= http::Version::HTTP_2
    }

    /// Largest message accepted (default 64 MiB) → close 1009.
    pub fn max_message_size(self, bytes: usize) -> Self {
        self.map(|u| u.max_message_size(bytes))
    }

    /// Largest frame accepted (default 16 MiB) → close 1009.
    pub fn max_frame_size(self, bytes: usize) -> Self {
        self.map(|u| u.max_frame_size(bytes))
    }

    /// Read buffer size of the connection.
    pub fn read_buffer_size(self, bytes: usize) -> Self {
        self.map(|u| u.read_buffer_size(bytes))
    }

    /// Write buffer (fragment) size of the connection's message writers.
    pub fn write_buffer_size(self, bytes: usize) -> Self {
        self.map(|u| u.write_buffer_size(bytes))
    }

    /// Accepts permessage-deflate offers with these settings (`None`: refuse them).
    pub fn compression(self, config: Option<DeflateConfig>) -> Self {
        self.map(|u| u.compression(config))
    }

    /// Accepts permessage-deflate offers with the default settings.
    pub fn enable_compression(self, enable: bool) -> Self {
        self.map(|u| u.enable_compression(enable))
    }

    /// Replaces the origin check (default: `Origin`'s host must be `Host`).
    pub fn check_origin(
        self,
        check: impl Fn(&http::Request<()>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.map(|u| u.check_origin(check))
    }

    /// Adds a header to the 101 response.
    pub fn response_header(self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.map(|u| u.response_header(name, value))
    }

    /// The request's method, target, version and headers.
    pub fn request(&self) -> &http::Request<()> {
        &self.head
    }

    /// Answers the request — `101 Switching Protocols` for HTTP/1.1, `200` for an
    /// HTTP/2 extended CONNECT — and once axum has handed the connection (or stream)
    /// over, runs `callback` with it in a task of its own. A request the settings
    /// refuse gets its error response instead (`403` for a refused origin).
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(HyperConn) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (response, subprotocol, deflate) = if self.is_http2() {
            let agreed = match self
                .upgrader
                .negotiate_extended_connect(&self.head, self.protocol.as_deref())
            {
                Ok(a) => a,
                Err(e) => return error_response(&Error::Handshake(e)),
            };
            let (parts, ()) = agreed.response.into_parts();
            (
                Response::from_parts(parts, Body::empty()),
                agreed.subprotocol,
                agreed.deflate,
            )
        } else {
            let agreed = match self.upgrader.negotiate(&self.head) {
                Ok(a) => a,
                Err(e) => return error_response(&Error::Handshake(e)),
            };
            match switching_response::<Body>(&agreed) {
                Ok(r) => (r, agreed.subprotocol, agreed.deflate),
                Err(e) => return error_response(&e),
            }
        };
        let pending = upgrading(
            self.on_upgrade,
            self.upgrader.config().clone(),
            self.upgrader.compression_config().cloned(),
            subprotocol,
            deflate,
        );
        tokio::spawn(async move {
            match pending.await {
                Ok(conn) => callback(conn).await,
                Err(e) => tracing::debug!(error = %e, "websocket: upgrade failed"),
            }
        });
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut head = http::Request::new(());
        *head.method_mut() = parts.method.clone();
        *head.uri_mut() = parts.uri.clone();
        *head.version_mut() = parts.version;
        *head.headers_mut() = parts.headers.clone();
        let protocol = if head.version() >= http::Version::HTTP_2 {
            let protocol = connect_protocol(parts);
            extended_connect::validate_connect_request(&head, protocol.as_deref())
                .map_err(WebSocketUpgradeRejection::Handshake)?;
            protocol
        } else {
            handshake::validate_request(&head).map_err(WebSocketUpgradeRejection::Handshake)?;
            None
        };
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(WebSocketUpgradeRejection::ConnectionNotUpgradable)?;
        Ok(WebSocketUpgrade {
            upgrader: Upgrader::new(),
            head: request_head(&head),
            protocol,
            on_upgrade,
        })
    }
}

/// The `:protocol` pseudo-header of an HTTP/2 request, as hyper hands it over.
#[cfg(feature = "http2")]
fn connect_protocol(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<::hyper::ext::Protocol>()
        .map(|p| p.as_str().to_owned())
}

/// Without the `http2` feature hyper does not hand `:protocol` over.
#[cfg(not(feature = "http2"))]
fn connect_protocol(_parts: &Parts) -> Option<String> {
    None
}

/// `Option<WebSocketUpgrade>`: `None` for a request that asks for no upgrade (no
/// `Upgrade: websocket`; over HTTP/2, not a CONNECT with `:protocol`), so one route
/// can serve a page and a socket; a request that asks for one but is malformed is
/// still refused.
impl<S: Send + Sync> OptionalFromRequestParts<S> for WebSocketUpgrade {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let wants_upgrade = if parts.version >= http::Version::HTTP_2 {
            // RFC 8441 §4: a request for a WebSocket is a CONNECT with `:protocol`.
            parts.method == http::Method::CONNECT && connect_protocol(parts).is_some()
        } else {
            handshake::header_tokens(&parts.headers, "upgrade")
                .iter()
                .any(|t| t.eq_ignore_ascii_case("websocket"))
        };
        if !wants_upgrade {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// Why [`WebSocketUpgrade`] could not be extracted; answered with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebSocketUpgradeRejection {
    /// Not a valid upgrade request: not `GET` (405), missing `Upgrade`/`Connection`
    /// tokens or key (400), another version than 13 (426); over HTTP/2 not `CONNECT`
    /// (405), `:protocol` not `websocket` (400).
    Handshake(HandshakeError),
    /// The server cannot hand this connection over (hyper without upgrades): 426.
    ConnectionNotUpgradable,
}

impl WebSocketUpgradeRejection {
    /// The HTTP status of the answer.
    pub fn status(&self) -> http::StatusCode {
        match self {
            WebSocketUpgradeRejection::Handshake(e) => {
                http::StatusCode::from_u16(e.status()).unwrap_or(http::StatusCode::BAD_REQUEST)
            }
            WebSocketUpgradeRejection::ConnectionNotUpgradable => {
                http::StatusCode::UPGRADE_REQUIRED
            }
        }
    }
}

impl fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebSocketUpgradeRejection::Handshake(e) => write!(f, "{e}"),
            WebSocketUpgradeRejection::ConnectionNotUpgradable => {
                f.write_str("this connection cannot be upgraded")
            }
        }
    }
}

impl std::error::Error for WebSocketUpgradeRejection {}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            WebSocketUpgradeRejection::Handshake(e) => error_response(&Error::Handshake(e)),
            other => {
                let mut r = Response::new(Body::from(format!("{other}\n")));
                *r.status_mut() = other.status();
                r
            }
        }
    }
}
