//! The [`Dialer`] over HTTP/2 (RFC 8441): choosing the HTTP version, sharing
//! connections, and the extended CONNECT.

use super::proxy::Proxy;
use super::stream::MaybeTlsStream;
use super::version::HttpVersion;
use super::{bad_handshake, error_body_limit, Dialer, Target};
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::http2::session::{Answer, OpenError, Session};
use crate::http2::ConnectionInfo;
use crate::proto::deflate;
use crate::proto::handshake::extended_connect;
use crate::proto::handshake::{self, HandshakeError};
use crate::proto::Role;
use bytes::BytesMut;
use http::header::AUTHORIZATION;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// How long a server whose HTTP/2 connections do not enable extended CONNECT is
/// dialled over HTTP/1.1 straight away.
const REMEMBER_NO_EXTENDED_CONNECT: Duration = Duration::from_secs(300);

const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Where a connection goes: scheme, host and port, and the proxy it goes through.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Origin {
    tls: bool,
    authority: String,
    proxy: Option<String>,
}

#[derive(Default)]
struct Entry {
    /// The shared connection, while something holds it.
    session: Weak<Session>,
    /// Serialises opening the shared connection, so concurrent dials wait for one
    /// connection instead of each opening their own.
    opening: Arc<tokio::sync::Mutex<()>>,
    /// Until when this origin is dialled over HTTP/1.1 directly.
    no_extended_connect_until: Option<Instant>,
}

/// The HTTP/2 connections of a dialer and its clones, by origin.
#[derive(Default)]
pub(crate) struct Pool(Mutex<HashMap<Origin, Entry>>);

impl Pool {
    fn with<R>(&self, origin: &Origin, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(origin.clone()).or_default())
    }

    fn live(&self, origin: &Origin) -> Option<Arc<Session>> {
        self.with(origin, |e| e.session.upgrade().filter(|s| s.has_room()))
    }

    fn lacks_extended_connect(&self, origin: &Origin) -> bool {
        self.with(origin, |e| {
            e.no_extended_connect_until
                .is_some_and(|until| Instant::now() < until)
        })
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let live = map
            .values()
            .filter(|e| e.session.strong_count() > 0)
            .count();
        f.debug_struct("Pool").field("connections", &live).finish()
    }
}

/// What [`Dialer::session`] came back with.
enum Route {
    /// An HTTP/2 connection that takes extended CONNECT.
    Http2(Arc<Session>),
    /// ALPN chose HTTP/1.1: go on over this stream.
    Http1(MaybeTlsStream),
    /// HTTP/2 without extended CONNECT: dial again over HTTP/1.1.
    Redial,
}

impl Dialer {
    /// Dials `target` with the HTTP version [`HttpVersion`] asks for.
    pub(crate) async fn dial_any(
        &self,
        target: &Target,
        proxy: Option<&Proxy>,
        deadline: Instant,
    ) -> Result<(Conn<MaybeTlsStream>, http::Response<()>)> {
        let forced = self.http_version == HttpVersion::Http2;
        let wants_h2 = match self.http_version {
            HttpVersion::Http1 => false,
            HttpVersion::Http2 => true,
            HttpVersion::Auto => target.tls,
        };
        let origin = Origin {
            tls: target.tls,
            authority: target.authority(),
            proxy: self.proxy.clone(),
        };
        if !wants_h2 || (!forced && self.pool.lacks_extended_connect(&origin)) {
            return self.dial_http1(target, proxy, deadline).await;
        }
        // A shared connection may have gone away (GOAWAY) between the check and the
        // request: then one more try, on a fresh connection.
        for attempt in 0..2 {
            let session = match self.session(&origin, target, proxy, deadline).await? {
                Route::Http2(s) => s,
                Route::Http1(stream) => return self.handshake(stream, target, deadline).await,
                Route::Redial => return self.dial_http1(target, proxy, deadline).await,
            };
            match self.open_websocket(&session, target, deadline).await {
                Ok(done) => return Ok(done),
                Err(OpenError::NotSent(e)) if attempt == 0 => {
                    tracing::debug!(error = %e, "websocket: HTTP/2 connection unusable, retrying");
                    self.pool.with(&origin, |entry| {
                        if entry.session.ptr_eq(&Arc::downgrade(&session)) {
                            entry.session = Weak::new();
                        }
                    });
                }
                Err(OpenError::NotSent(e) | OpenError::Failed(e)) => return Err(e),
            }
        }
        Err(Error::Io(std::io::Error::other(
            "no usable HTTP/2 connection",
        )))
    }

    /// HTTP/1.1, with ALPN `http/1.1` for `wss://` (so a server that prefers `h2`
    /// does not pick it).
    async fn dial_http1(
        &self,
        target: &Target,
        proxy: Option<&Proxy>,
        deadline: Instant,
    ) -> Result<(Conn<MaybeTlsStream>, http::Response<()>)> {
        let stream = timeout_at(deadline, self.open(target, proxy, &[ALPN_HTTP1]))
            .await
            .map_err(|_| Error::Timeout)??;
        self.handshake(stream, target, deadline).await
    }

    /// The shared connection to `origin` if there is one with room, else a new one.
    async fn session(
        &self,
        origin: &Origin,
        target: &Target,
        proxy: Option<&Proxy>,
        deadline: Instant,
    ) -> Result<Route> {
        let forced = self.http_version == HttpVersion::Http2;
        let _opening = if self.share_http2 {
            let gate = self.pool.with(origin, |e| e.opening.clone());
            let guard = timeout_at(deadline, gate.lock_owned())
                .await
                .map_err(|_| Error::Timeout)?;
            if let Some(session) = self.pool.live(origin) {
                return Ok(Route::Http2(session));
            }
            Some(guard)
        } else {
            None
        };
        let alpn: &[&[u8]] = if forced {
            &[ALPN_H2]
        } else {
            &[ALPN_H2, ALPN_HTTP1]
        };
        let opened = timeout_at(deadline, self.open(target, proxy, alpn))
            .await
            .map_err(|_| Error::Timeout)?;
        let stream = match opened {
            // A TLS server that knows ALPN but not h2 refuses the handshake.
            Err(Error::Tls(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol,
            ))) if forced => return Err(Error::Handshake(HandshakeError::NoExtendedConnect)),
            other => other?,
        };
        let h2 = match &stream {
            MaybeTlsStream::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(ALPN_H2),
            // Cleartext: HTTP/2 with prior knowledge, only when asked for.
            _ => forced,
        };
        if !h2 {
            if forced {
                return Err(Error::Handshake(HandshakeError::NoExtendedConnect));
            }
            return Ok(Route::Http1(stream));
        }
        let info = ConnectionInfo {
            local_addr: stream.tcp().and_then(|t| t.local_addr().ok()),
            peer_addr: stream.tcp().and_then(|t| t.peer_addr().ok()),
            tls: stream.is_tls(),
        };
        let (session, enabled) = timeout_at(deadline, Session::start(stream, info, &self.http2))
            .await
            .map_err(|_| Error::Timeout)??;
        if !enabled {
            tracing::debug!(
                origin = %origin.authority,
                "websocket: the server's HTTP/2 SETTINGS do not enable extended CONNECT"
            );
            self.pool.with(origin, |e| {
                e.no_extended_connect_until = Some(Instant::now() + REMEMBER_NO_EXTENDED_CONNECT)
            });
            if forced {
                return Err(Error::Handshake(HandshakeError::NoExtendedConnect));
            }
            return Ok(Route::Redial);
        }
        if self.share_http2 {
            self.pool.with(origin, |e| {
                e.session = Arc::downgrade(&session);
                e.no_extended_connect_until = None;
            });
        }
        Ok(Route::Http2(session))
    }

    /// The extended CONNECT on `session` (RFC 8441 §4, §5), checked like a `101`.
    async fn open_websocket(
        &self,
        session: &Arc<Session>,
        target: &Target,
        deadline: Instant,
    ) -> std::result::Result<(Conn<MaybeTlsStream>, http::Response<()>), OpenError> {
        let offer = self.compression.as_ref().map(deflate::client_offer);
        let mut headers = self.headers.clone();
        if let Some(auth) = &target.basic_auth {
            if !headers.contains_key(AUTHORIZATION) {
                headers.insert(AUTHORIZATION, auth.clone());
            }
        }
        let request = extended_connect::build_connect_request(
            &target.host_header,
            target.tls,
            &target.path_and_query,
            &self.subprotocols,
            offer.as_deref(),
            &headers,
        )
        .map_err(|e| OpenError::NotSent(Error::Handshake(e)))?;
        let answer = timeout_at(deadline, session.open(request, super::MAX_ERROR_BODY))
            .await
            .map_err(|_| OpenError::Failed(Error::Timeout))??;
        let (response, stream) = match answer {
            Answer::Open(response, stream) => (response, stream),
            Answer::Refused(response, mut body) => {
                let limit = error_body_limit(&response);
                body.truncate(limit);
                return Err(OpenError::Failed(bad_handshake(response, body)));
            }
        };
        let agreed = self.check_connect_answer(&response, offer.is_some());
        let (protocol, deflate) = agreed.map_err(OpenError::Failed)?;
        let stream = MaybeTlsStream::Http2(Box::new(stream));
        let conn = Conn::from_parts(
            stream,
            Role::Client,
            &self.config,
            BytesMut::new(),
            protocol,
        );
        let conn = match (&deflate, &self.compression) {
            (Some(params), Some(config)) => conn.with_deflate(params, config),
            _ => conn,
        };
        Ok((conn, response))
    }

    /// The subprotocol and permessage-deflate parameters of a `2xx` answer.
    fn check_connect_answer(
        &self,
        response: &http::Response<()>,
        offered_deflate: bool,
    ) -> Result<(Option<String>, Option<deflate::DeflateParams>)> {
        let protocol = extended_connect::validate_connect_response(
            response,
            &self.subprotocols,
            offered_deflate,
        )?;
        let Some(config) = &self.compression else {
            return Ok((protocol, None));
        };
        // RFC 7692 §7.1: a response we cannot accept fails the connection.
        let answer =
            handshake::header_tokens(response.headers(), "sec-websocket-extensions").join(", ");
        match deflate::negotiate_client(&answer, config) {
            Ok(params) => Ok((protocol, params)),
            Err(e) => Err(Error::Handshake(HandshakeError::UnrequestedExtension(
                e.to_string(),
            ))),
        }
    }
}
