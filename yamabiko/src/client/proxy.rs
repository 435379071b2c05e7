//! Dialling through an HTTP proxy with `CONNECT` (RFC 9110 §9.3.6), as gorilla's
//! `Dialer.Proxy` does: the proxy opens a TCP tunnel to the WebSocket server, and the
//! handshake (and TLS, for `wss://`) runs inside it.

use super::target::{percent_decode, Target};
use crate::error::{Error, Result};
use crate::proto::handshake;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::{Host, Url};

/// An `http://[user:password@]host[:port]` proxy.
#[derive(Debug, Clone)]
pub(crate) struct Proxy {
    host: Host<String>,
    port: u16,
    auth: Option<String>,
}

impl Proxy {
    /// Parses the proxy URL; only `http://` proxies are supported.
    pub fn parse(url: &str) -> Result<Proxy> {
        let parsed = Url::parse(url).map_err(|e| Error::Url(format!("proxy {url:?}: {e}")))?;
        if parsed.scheme() != "http" {
            return Err(Error::Url(format!(
                "proxy {url:?}: scheme {:?} is not supported (only http)",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host()
            .map(|h| h.to_owned())
            .ok_or_else(|| Error::Url(format!("proxy {url:?}: no host")))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let auth = if parsed.username().is_empty() && parsed.password().is_none() {
            None
        } else {
            let mut credentials = percent_decode(parsed.username());
            credentials.push(b':');
            credentials.extend(percent_decode(parsed.password().unwrap_or("")));
            Some(format!("Basic {}", BASE64.encode(credentials)))
        };
        Ok(Proxy { host, port, auth })
    }

    /// Connects to the proxy and asks it for a tunnel to `target`. On success the
    /// stream is the tunnel: the next bytes go to the WebSocket server.
    pub async fn tunnel(&self, target: &Target, max_head_bytes: usize) -> Result<TcpStream> {
        let mut tcp = super::connect_tcp(&self.host, self.port).await?;
        let authority = target.authority();
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(auth) = &self.auth {
            request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await?;

        let mut buf = BytesMut::with_capacity(1024);
        let (response, used) = loop {
            if let Some(parsed) = handshake::parse_response(&buf, max_head_bytes)? {
                break parsed;
            }
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "proxy closed the connection before answering CONNECT",
                )));
            }
        };
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("proxy refused CONNECT {authority}: {status}"),
            )));
        }
        // The server speaks only after our request (or ClientHello), so a proxy that
        // sends more than its answer is broken; those bytes would corrupt the tunnel.
        if buf.len() > used {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "proxy sent data after its CONNECT response",
            )));
        }
        Ok(tcp)
    }
}
