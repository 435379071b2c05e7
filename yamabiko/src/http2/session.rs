//! A client's HTTP/2 connection, on which it opens WebSockets: [`Session`].

use super::preface::{FirstSettings, WatchSettings};
use super::settings::Http2Settings;
use super::stream::{ConnectionInfo, H2Stream};
use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long, at most, the body of a refused extended CONNECT is waited for.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(1);

/// An HTTP/2 client connection whose server enabled extended CONNECT. Its task runs
/// until the last handle (the dialer's pool holds none) and the last stream are gone.
pub(crate) struct Session {
    send_request: Mutex<h2::client::SendRequest<Bytes>>,
    info: Arc<ConnectionInfo>,
    /// The connection's task has ended (closed, failed or GOAWAY).
    ended: Arc<AtomicBool>,
    /// WebSockets open on this connection.
    streams: AtomicUsize,
}

/// Why opening a stream failed.
pub(crate) enum OpenError {
    /// Before the request went out (the connection is gone or going away): another
    /// connection may succeed.
    NotSent(Error),
    /// The request was sent; the answer (or its absence) is final.
    Failed(Error),
}

/// The server's answer to an extended CONNECT.
pub(crate) enum Answer {
    /// `2xx`: the WebSocket is open on `stream`.
    Open(http::Response<()>, H2Stream),
    /// Any other status, with the start of the body (at most `body_limit` bytes).
    Refused(http::Response<()>, Bytes),
}

/// Counts a stream for its session while it lives.
struct StreamTicket(Arc<Session>);

impl Drop for StreamTicket {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Session {
    /// Runs the HTTP/2 handshake over `io` and waits for the server's first SETTINGS.
    /// Returns the session and whether those SETTINGS enable extended CONNECT; the
    /// caller bounds the wait. Spawns the connection's task (tokio).
    pub(crate) async fn start<T>(
        io: T,
        info: ConnectionInfo,
        settings: &Http2Settings,
    ) -> Result<(Arc<Session>, bool)>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let seen = Arc::new(FirstSettings::default());
        let io = WatchSettings::new(io, seen.clone());
        let (send_request, connection) = settings
            .client_builder()
            .handshake::<_, Bytes>(io)
            .await
            .map_err(super::h2_error)?;
        let mut connection = Box::pin(connection);
        // Drive the connection here until the first SETTINGS frame has been read and
        // applied: h2 applies a peer's SETTINGS as it queues the ACK, within the poll
        // that read them, so once `connection` is pending again the flag below is
        // current.
        let enabled = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = connection.as_mut().poll(cx) {
                return Poll::Ready(Err(match r {
                    Ok(()) => Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the HTTP/2 connection before its SETTINGS",
                    )),
                    Err(e) => super::h2_error(e),
                }));
            }
            match seen.extended_connect() {
                None => Poll::Pending,
                Some(false) => Poll::Ready(Ok(false)),
                // Applied when h2 could queue the ACK; if it could not, it waits for
                // the transport and polls again, and so do we.
                Some(true) if send_request.is_extended_connect_protocol_enabled() => {
                    Poll::Ready(Ok(true))
                }
                Some(true) => Poll::Pending,
            }
        })
        .await?;
        let ended = Arc::new(AtomicBool::new(false));
        tokio::spawn({
            let ended = ended.clone();
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "websocket: HTTP/2 connection ended");
                }
                ended.store(true, Ordering::Release);
            }
        });
        let session = Arc::new(Session {
            send_request: Mutex::new(send_request),
            info: Arc::new(info),
            ended,
            streams: AtomicUsize::new(0),
        });
        Ok((session, enabled))
    }

    /// Whether another WebSocket may be opened here: the connection is up and has a
    /// free stream under the server's SETTINGS_MAX_CONCURRENT_STREAMS.
    pub(crate) fn has_room(&self) -> bool {
        if self.ended.load(Ordering::Acquire) {
            return false;
        }
        let max = match self.send_request.lock() {
            Ok(sr) => sr.current_max_send_streams(),
            Err(_) => return false,
        };
        self.streams.load(Ordering::Acquire) < max
    }

    /// Sends an extended CONNECT (`request` as built by
    /// [`build_connect_request`](crate::proto::handshake::extended_connect::build_connect_request))
    /// and waits for the answer. The caller bounds the wait.
    pub(crate) async fn open(
        self: &Arc<Self>,
        request: http::Request<()>,
        body_limit: usize,
    ) -> std::result::Result<Answer, OpenError> {
        let send_request = match self.send_request.lock() {
            Ok(sr) => sr.clone(),
            Err(_) => {
                return Err(OpenError::NotSent(Error::Io(io::Error::other(
                    "HTTP/2 session poisoned",
                ))))
            }
        };
        let mut send_request = send_request
            .ready()
            .await
            .map_err(|e| OpenError::NotSent(super::h2_error(e)))?;
        let mut request = request;
        request
            .extensions_mut()
            .insert(h2::ext::Protocol::from_static(
                crate::proto::handshake::extended_connect::PROTOCOL,
            ));
        let (response, send) = send_request
            .send_request(request, false)
            .map_err(|e| OpenError::NotSent(super::h2_error(e)))?;
        // Counted from here: the stream is open on the connection.
        self.streams.fetch_add(1, Ordering::AcqRel);
        let ticket = StreamTicket(self.clone());
        let response = response
            .await
            .map_err(|e| OpenError::Failed(super::h2_error(e)))?;
        let (parts, mut body) = response.into_parts();
        let head = http::Response::from_parts(parts, ());
        if head.status().is_success() {
            let stream = H2Stream::new(send, body, self.info.clone(), Arc::new(ticket));
            return Ok(Answer::Open(head, stream));
        }
        // Refused: keep the start of the body for the error (bounded by the caller's
        // deadline and by `body_limit`).
        let mut kept = BytesMut::new();
        let read_body = async {
            while kept.len() < body_limit {
                match body.data().await {
                    Some(Ok(chunk)) => {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        let take = chunk.len().min(body_limit - kept.len());
                        kept.extend_from_slice(&chunk[..take]);
                    }
                    _ => break,
                }
            }
        };
        // Whatever arrived by then is kept.
        let _ = tokio::time::timeout(ERROR_BODY_WAIT, read_body).await;
        drop(send);
        Ok(Answer::Refused(head, kept.freeze()))
    }
}
