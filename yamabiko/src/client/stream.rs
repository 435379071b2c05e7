//! The transport of a dialled connection: plain TCP for `ws://`, TLS over TCP for
//! `wss://`, or a stream of an HTTP/2 connection (feature `http2`).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A TCP stream, with or without TLS, or an HTTP/2 stream: what
/// [`Dialer::dial`](super::Dialer::dial) connects over (tokio). It reads and writes
/// like the stream inside it. The blocking dialer's counterpart is
/// [`blocking::BlockingStream`](crate::blocking::BlockingStream).
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
    /// A `ws://` connection.
    Plain(TcpStream),
    /// A `wss://` connection (boxed: a TLS session is large).
    Tls(Box<TlsStream<TcpStream>>),
    /// A stream of an HTTP/2 connection (RFC 8441), which other WebSockets may share;
    /// the connection itself is driven by a task of its own.
    #[cfg(feature = "http2")]
    Http2(Box<crate::http2::H2Stream>),
}

impl MaybeTlsStream {
    /// The TCP stream underneath; `None` for an HTTP/2 stream, whose connection
    /// belongs to its task (see [`local_addr`](Self::local_addr) and
    /// [`peer_addr`](Self::peer_addr)).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            MaybeTlsStream::Plain(s) => Some(s),
            MaybeTlsStream::Tls(s) => Some(s.get_ref().0),
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(_) => None,
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(_) => false,
            MaybeTlsStream::Tls(_) => true,
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => s.is_tls(),
        }
    }

    /// Whether the WebSocket runs over HTTP/2 (RFC 8441).
    pub fn is_http2(&self) -> bool {
        #[cfg(feature = "http2")]
        if let MaybeTlsStream::Http2(_) = self {
            return true;
        }
        false
    }

    /// The TLS session (protocol version, cipher suite, peer certificates), for
    /// `wss://` over HTTP/1.1 (an HTTP/2 connection keeps its session in its task).
    pub fn tls_session(&self) -> Option<&rustls::ClientConnection> {
        match self {
            MaybeTlsStream::Tls(s) => Some(s.get_ref().1),
            _ => None,
        }
    }

    /// The local address of the TCP connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => s.local_addr(),
            MaybeTlsStream::Plain(s) => s.local_addr(),
            MaybeTlsStream::Tls(s) => s.get_ref().0.local_addr(),
        }
    }

    /// The remote address of the TCP connection (the proxy's, when dialled through
    /// one).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => s.peer_addr(),
            MaybeTlsStream::Plain(s) => s.peer_addr(),
            MaybeTlsStream::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(s) => s.is_write_vectored(),
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTlsStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(feature = "http2")]
            MaybeTlsStream::Http2(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
