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
//! connection over; HTTP/2 (RFC 8441) is not supported.

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
    /// returns the `101 Switching Protocols` response to send, plus the future that
    /// yields the connection. A refused request gives [`Error::Handshake`] (turn it
    /// into the HTTP answer with [`error_response`]); a request hyper cannot upgrade
    /// (HTTP/2, or a server without `.with_upgrades()`) gives [`Error::InvalidInput`].
    #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
    pub fn upgrade_hyper<B, Bd: Default>(
        &self,
        req: &mut http::Request<B>,
    ) -> Result<(http::Response<Bd>, Upgrading)> {
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
            agreed,
        );
        Ok((response, upgrading))
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
    agreed: Negotiated,
) -> Upgrading {
    let deflate: Option<DeflateParams> = agreed.deflate;
    let subprotocol = agreed.subprotocol;
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

/// The HTTP answer to a failed upgrade: a refused handshake's status (400, 403, 405,
/// 426, 431) with its headers (`Sec-WebSocket-Version: 13`, `Allow: GET`) and a
/// one-line body; `500` for other errors.
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
            let (parts, ()) = head.into_parts();
            http::Response::from_parts(parts, Bd::from(body))
        }
        _ => {
            let mut r = http::Response::new(Bd::from(String::new()));
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            r
        }
    }
}
