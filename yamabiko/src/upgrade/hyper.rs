//! hyper 1: [`Upgrader::upgrade_hyper`] turns a `hyper::Request` into the `101`
//! response to send and a future ([`Upgrading`]) that yields the [`Conn`] once hyper
//! hands the connection over.
//!
//! ```no_run
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//! use yamabiko::upgrade::hyper::error_response;
//! use yamabiko::Upgrader;
//!
//! async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
//!     let upgrader = Upgrader::new();
//!     match upgrader.upgrade_hyper(&mut req) {
//!         Ok((response, upgrading)) => {
//!             tokio::spawn(async move {
//!                 let Ok(mut conn) = upgrading.await else { return };
//!                 while let Ok(msg) = conn.read_message().await {
//!                     if conn.write_message(msg).await.is_err() { break }
//!                 }
//!             });
//!             Ok(response)
//!         }
//!         Err(e) => Ok(error_response(&e)),
//!     }
//! }
//! ```
//!
//! hyper's HTTP/1 server must be built with `.with_upgrades()` for hyper to hand the
//! connection over.
//!
//! **HTTP/2** (RFC 8441, feature `http2`): the same call takes an extended CONNECT
//! (`:protocol websocket`) on a hyper HTTP/2 server that enables it
//! ([`Http2Settings::configure_hyper`](crate::http2::Http2Settings::configure_hyper)),
//! answers `200`, and the future yields the same [`HyperConn`], running over the
//! request's stream. A refused request gets its status on that stream; the
//! connection's other streams go on. hyper's upgraded HTTP/2 streams hand received
//! data over when the connection reads it and return flow-control credit as they do;
//! writes wait for send capacity (hyper 1.11 and later, the minimum this crate
//! accepts). A peer's RST_STREAM(CANCEL) reads as the end of the stream (close code
//! 1006); a reset with another reason as an [`Error::Io`]. Received frames wait in
//! h2's queue until the application reads, which is why several WebSockets that stop
//! reading while their client floods them with tiny messages can make h2 end the
//! connection: [`Http2Settings`](crate::http2::Http2Settings) says when, and how
//! to raise the limit.

use crate::conn::{Config, Conn};
use crate::error::{Error, Result};
use crate::proto::deflate::{DeflateConfig, DeflateParams};
use crate::proto::handshake;
use crate::proto::Role;
use crate::server::{Negotiated, Upgrader};
use ::hyper::upgrade::{OnUpgrade, Upgraded};
use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The stream of an upgraded hyper connection, as a tokio stream.
pub type HyperStream = TokioIo<Upgraded>;

/// A connection upgraded through hyper.
pub type HyperConn = Conn<HyperStream>;

/// Resolves to the [`HyperConn`] once hyper has sent the `101` response and handed the
/// connection over (so it must be polled in a task of its own, after the response was
/// returned to hyper). Fails with [`Error::Io`] when the connection ended first.
pub struct Upgrading {
    inner: Pin<Box<dyn Future<Output = Result<HyperConn>> + Send>>,
}

impl std::fmt::Debug for Upgrading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upgrading")
    }
}

impl Future for Upgrading {
    type Output = Result<HyperConn>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl Upgrader {
    /// Checks a hyper (or any `http`) request with this upgrader's settings and
    /// returns the response to send — `101 Switching Protocols` for an HTTP/1.1
    /// upgrade, `200` for an HTTP/2 extended CONNECT — plus the future that yields the
    /// connection. A refused request gives [`Error::Handshake`] (turn it into the HTTP
    /// answer with [`error_response`]); a request hyper cannot upgrade (a server
    /// without `.with_upgrades()`, HTTP/2 without the `http2` feature) gives
    /// [`Error::InvalidInput`].
    #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
    pub fn upgrade_hyper<B, Bd: Default>(
        &self,
        req: &mut http::Request<B>,
    ) -> Result<(http::Response<Bd>, Upgrading)> {
        if req.version() >= http::Version::HTTP_2 {
            return self.upgrade_hyper_h2(req);
        }
        let agreed = self.negotiate(&request_head(req))?;
        let on_upgrade = req.extensions_mut().remove::<OnUpgrade>().ok_or_else(|| {
            Error::InvalidInput(
                "hyper cannot upgrade this connection (HTTP/2, or no .with_upgrades())".into(),
            )
        })?;
        let response = switching_response(&agreed)?;
        let upgrading = upgrading(
            on_upgrade,
            self.config().clone(),
            self.compression_config().cloned(),
            agreed.subprotocol,
            agreed.deflate,
        );
        Ok((response, upgrading))
    }

    /// [`upgrade_hyper`](Self::upgrade_hyper) for an HTTP/2 request (RFC 8441).
    #[cfg(feature = "http2")]
    fn upgrade_hyper_h2<B, Bd: Default>(
        &self,
        req: &mut http::Request<B>,
    ) -> Result<(http::Response<Bd>, Upgrading)> {
        let protocol = req
            .extensions()
            .get::<::hyper::ext::Protocol>()
            .map(|p| p.as_str());
        let agreed = self.negotiate_extended_connect(&request_head(req), protocol)?;
        let on_upgrade = req.extensions_mut().remove::<OnUpgrade>().ok_or_else(|| {
            Error::InvalidInput("hyper cannot hand over this HTTP/2 stream".into())
        })?;
        let (parts, ()) = agreed.response.into_parts();
        let upgrading = upgrading(
            on_upgrade,
            self.config().clone(),
            self.compression_config().cloned(),
            agreed.subprotocol,
            agreed.deflate,
        );
        Ok((http::Response::from_parts(parts, Bd::default()), upgrading))
    }

    #[cfg(not(feature = "http2"))]
    fn upgrade_hyper_h2<B, Bd: Default>(
        &self,
        _req: &mut http::Request<B>,
    ) -> Result<(http::Response<Bd>, Upgrading)> {
        Err(Error::InvalidInput(
            "WebSockets over HTTP/2 need the `http2` feature".into(),
        ))
    }
}

/// The method, target, version and headers of a request, for the sans-IO handshake.
pub(crate) fn request_head<B>(req: &http::Request<B>) -> http::Request<()> {
    let mut head = http::Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

/// The 101 response of a negotiation, as an `http::Response` (parsed back from the
/// head the handshake code built, so the two cannot differ).
pub(crate) fn switching_response<Bd: Default>(agreed: &Negotiated) -> Result<http::Response<Bd>> {
    let (head, _) = handshake::parse_response(&agreed.response, usize::MAX)?
        .ok_or_else(|| Error::InvalidInput("incomplete 101 response".into()))?;
    let (parts, ()) = head.into_parts();
    Ok(http::Response::from_parts(parts, Bd::default()))
}

/// The future that waits for hyper's hand-over and wraps the connection.
pub(crate) fn upgrading(
    on_upgrade: OnUpgrade,
    config: Config,
    compression: Option<DeflateConfig>,
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
) -> Upgrading {
    Upgrading {
        inner: Box::pin(async move {
            let upgraded = on_upgrade
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?;
            let conn = Conn::from_parts(
                TokioIo::new(upgraded),
                Role::Server,
                &config,
                BytesMut::new(),
                subprotocol,
            );
            Ok(match (&deflate, &compression) {
                (Some(params), Some(config)) => conn.with_deflate(params, config),
                _ => conn,
            })
        }),
    }
}

/// The HTTP answer to a failed upgrade, for HTTP/1.1 and HTTP/2 alike: a refused
/// handshake's status (400, 403, 405, 426, 431) with its headers
/// (`Sec-WebSocket-Version: 13`, `Allow`) and a one-line body; `500` for other
/// errors. It leaves the connection to hyper (no `Connection: close`): over HTTP/2
/// only the request's stream is answered, the connection's other streams go on.
pub fn error_response<Bd: From<String>>(e: &Error) -> http::Response<Bd> {
    let raw = match e {
        Error::Handshake(h) => h.to_http_response(),
        other => {
            let mut r = http::Response::new(Bd::from(format!("{other}\n")));
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
    };
    match handshake::parse_response(&raw, usize::MAX) {
        Ok(Some((head, used))) => {
            let body = String::from_utf8_lossy(&raw[used..]).into_owned();
            let (mut parts, ()) = head.into_parts();
            // Connection-specific: hyper decides, and HTTP/2 forbids it.
            parts.headers.remove(http::header::CONNECTION);
            http::Response::from_parts(parts, Bd::from(body))
        }
        _ => {
            let mut r = http::Response::new(Bd::from(String::new()));
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            r
        }
    }
}
