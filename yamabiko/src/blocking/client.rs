//! The opening handshake on blocking streams, client side: the [`Dialer`]'s own request
//! and response checks ([`Dialer::start_handshake`], [`Dialer::finish_handshake`]),
//! only the I/O is blocking.

use super::server::{read_head, write_all_by};
use super::shared::{is_timeout, timeout_until};
use super::{BlockingStream, Conn, Transport};
use crate::client::{bad_handshake, error_body_limit, tls, Dialer, Target};
use crate::error::{Error, Result};
use crate::proto::handshake;
use crate::proto::Role;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use url::Host;

/// How long, at most, the body of a refused handshake is waited for.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(1);

impl Dialer {
    /// The blocking [`dial`](Self::dial): connects to a `ws://` or `wss://` URL (TLS
    /// with rustls) and performs the opening handshake, all within the handshake
    /// timeout (name resolution excepted: the system resolver blocks as long as it
    /// takes). Proxies are not supported here ([`Error::InvalidInput`]); open the
    /// tunnel yourself and use [`dial_blocking_with_stream`](Self::dial_blocking_with_stream).
    pub fn dial_blocking(&self, url: &str) -> Result<(Conn<BlockingStream>, http::Response<()>)> {
        if self.has_proxy() {
            return Err(Error::InvalidInput(
                "the blocking dialer does not support proxies".into(),
            ));
        }
        let target = Target::parse(url)?;
        let (timeout, _) = self.handshake_limits();
        let deadline = Instant::now() + timeout;
        let tcp = connect_tcp(&target, deadline)?;
        let stream = if target.tls {
            let name = tls::server_name(&target.host)?;
            let session = rustls::ClientConnection::new(self.tls_client_config()?, name)
                .map_err(Error::Tls)?;
            let mut tls = rustls::StreamOwned::new(session, tcp);
            // Bounded by the deadline: every round reads or writes, or times out.
            while tls.conn.is_handshaking() {
                let t = timeout_until(Some(deadline))?;
                tls.sock.set_read_timeout(t)?;
                tls.sock.set_write_timeout(t)?;
                match tls.conn.complete_io(&mut tls.sock) {
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => return Err(Error::Timeout),
                    Err(e) => return Err(tls::map_io_error(e)),
                }
            }
            BlockingStream::Tls(Box::new(tls))
        } else {
            BlockingStream::Plain(tcp)
        };
        self.handshake_blocking(stream, &target, deadline)
    }

    /// The blocking [`dial_with_stream`](Self::dial_with_stream): the opening handshake
    /// for `url` over a stream the caller opened (for `wss://`, already encrypted).
    pub fn dial_blocking_with_stream<S: Transport>(
        &self,
        stream: S,
        url: &str,
    ) -> Result<(Conn<S>, http::Response<()>)> {
        let target = Target::parse(url)?;
        let (timeout, _) = self.handshake_limits();
        self.handshake_blocking(stream, &target, Instant::now() + timeout)
    }

    fn handshake_blocking<S: Transport>(
        &self,
        mut stream: S,
        target: &Target,
        deadline: Instant,
    ) -> Result<(Conn<S>, http::Response<()>)> {
        let pending = self.start_handshake(target);
        write_all_by(&mut stream, &pending.request, deadline)?;
        let (_, max_head) = self.handshake_limits();
        let (response, mut leftover) = read_head(&mut stream, deadline, |b| {
            handshake::parse_response(b, max_head)
        })?;
        if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            // Whatever of the body arrives in time is kept; errors end it.
            let limit = error_body_limit(&response);
            let body_deadline = deadline.min(Instant::now() + ERROR_BODY_WAIT);
            let mut chunk = [0u8; 1024];
            while leftover.len() < limit {
                let Ok(t) = timeout_until(Some(body_deadline)) else {
                    break;
                };
                if stream.set_read_timeout(t).is_err() {
                    break;
                }
                match stream.read(&mut chunk[..limit - leftover.len()]) {
                    Ok(n) if n > 0 => leftover.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    _ => break,
                }
            }
            leftover.truncate(limit);
            return Err(bad_handshake(response, leftover.freeze()));
        }
        let (protocol, deflate) = self.finish_handshake(&pending, &response)?;
        let conn = Conn::from_parts(stream, Role::Client, self.config(), leftover, protocol);
        let conn = match (&deflate, self.compression_config()) {
            (Some(params), Some(config)) => conn.with_deflate(params, config),
            _ => conn,
        };
        Ok((conn, response))
    }
}

/// Resolves the target and connects to its addresses in turn, by `deadline`.
fn connect_tcp(target: &Target, deadline: Instant) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match &target.host {
        Host::Ipv4(a) => vec![SocketAddr::from((*a, target.port))],
        Host::Ipv6(a) => vec![SocketAddr::from((*a, target.port))],
        Host::Domain(name) => (name.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {name:?}: {e}")))?
            .collect(),
    };
    let mut last_error = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} has no addresses", target.host),
    );
    for addr in addrs {
        let Some(timeout) = timeout_until(Some(deadline))? else {
            break;
        };
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                // Frames are written whole; Nagle would only delay them.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) if is_timeout(&e) => return Err(Error::Timeout),
            Err(e) => last_error = io::Error::new(e.kind(), format!("connecting to {addr}: {e}")),
        }
    }
    Err(Error::Io(last_error))
}
