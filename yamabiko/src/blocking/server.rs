//! The opening handshake on blocking streams, server side: the [`Upgrader`]'s own
//! settings and negotiation ([`Upgrader::negotiate`]), only the I/O is blocking.

use super::shared::{is_timeout, timeout_until};
use super::{Conn, Transport};
use crate::error::{Error, Result};
use crate::proto::handshake::{self, HandshakeError};
use crate::proto::Role;
use crate::server::Upgrader;
use bytes::BytesMut;
use std::io;
use std::time::{Duration, Instant};

/// Reads an HTTP head with `parse` by `deadline`; returns it with the bytes after it.
pub(super) fn read_head<S: Transport, T>(
    stream: &mut S,
    deadline: Instant,
    parse: impl Fn(&[u8]) -> std::result::Result<Option<(T, usize)>, HandshakeError>,
) -> Result<(T, BytesMut)> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    // Bounded by the deadline and by the head size limit `parse` enforces.
    loop {
        if let Some((head, used)) = parse(&buf)? {
            let _ = buf.split_to(used);
            return Ok((head, buf));
        }
        stream.set_read_timeout(timeout_until(Some(deadline))?)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(Error::Timeout),
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

/// Writes all of `bytes` by `deadline`.
pub(super) fn write_all_by<S: Transport>(
    stream: &mut S,
    bytes: &[u8],
    deadline: Instant,
) -> Result<()> {
    stream.set_write_timeout(timeout_until(Some(deadline))?)?;
    match stream.write_all(bytes).and_then(|()| stream.flush()) {
        Ok(()) => Ok(()),
        Err(e) if is_timeout(&e) => Err(Error::Timeout),
        Err(e) => Err(Error::Io(e)),
    }
}

impl Upgrader {
    /// The blocking [`upgrade`](Self::upgrade): reads the upgrade request from a
    /// blocking `stream` (a [`TcpStream`](std::net::TcpStream), a rustls
    /// [`StreamOwned`](rustls::StreamOwned) …), checks it with this upgrader's settings,
    /// answers 101 and returns a [`blocking::Conn`](super::Conn). A bad request gets its
    /// HTTP error response (400, 403, 405, 426, 431) and an [`Error::Handshake`]; a
    /// client that stalls past the handshake timeout gets [`Error::Timeout`].
    pub fn upgrade_blocking<S: Transport>(&self, stream: S) -> Result<Conn<S>> {
        self.upgrade_blocking_with_request(stream)
            .map(|(conn, _)| conn)
    }

    /// Like [`upgrade_blocking`](Self::upgrade_blocking), also returning the request.
    pub fn upgrade_blocking_with_request<S: Transport>(
        &self,
        mut stream: S,
    ) -> Result<(Conn<S>, http::Request<()>)> {
        let (request, leftover) = self.read_request_blocking(&mut stream)?;
        let conn = self.upgrade_request_blocking(stream, &request, leftover)?;
        Ok((conn, request))
    }

    /// The blocking [`read_request`](Self::read_request): one request head, within the
    /// handshake timeout and header limit, with the bytes read past it.
    pub fn read_request_blocking<S: Transport>(
        &self,
        stream: &mut S,
    ) -> Result<(http::Request<()>, BytesMut)> {
        let (timeout, max_head) = self.handshake_limits();
        let deadline = Instant::now() + timeout;
        match read_head(stream, deadline, |b| handshake::parse_request(b, max_head)) {
            Err(Error::Handshake(e)) => {
                refuse(stream, &e);
                Err(Error::Handshake(e))
            }
            other => other,
        }
    }

    /// The blocking [`upgrade_request`](Self::upgrade_request): validates a request
    /// already read, runs the origin check, negotiates and writes the 101 response.
    pub fn upgrade_request_blocking<S: Transport>(
        &self,
        mut stream: S,
        request: &http::Request<()>,
        leftover: BytesMut,
    ) -> Result<Conn<S>> {
        let agreed = match self.negotiate(request) {
            Ok(r) => r,
            Err(e) => {
                refuse(&mut stream, &e);
                return Err(Error::Handshake(e));
            }
        };
        let (timeout, _) = self.handshake_limits();
        write_all_by(&mut stream, &agreed.response, Instant::now() + timeout)?;
        let conn = Conn::from_parts(
            stream,
            Role::Server,
            self.config(),
            leftover,
            agreed.subprotocol,
        );
        Ok(match (&agreed.deflate, self.compression_config()) {
            (Some(params), Some(config)) => conn.with_deflate(params, config),
            _ => conn,
        })
    }
}

/// Answers a refused handshake with its HTTP error, within a second.
fn refuse<S: Transport>(stream: &mut S, e: &HandshakeError) {
    tracing::debug!(error = %e, "websocket: handshake refused");
    let deadline = Instant::now() + Duration::from_secs(1);
    if write_all_by(stream, &e.to_http_response(), deadline).is_ok() {
        let _ = stream.shutdown_write();
    }
}
