//! What the blocking driver needs of a stream besides `Read + Write`: deadlines become
//! socket timeouts, a second handle lets a reader and a writer block at once, and a
//! shutdown handle lets `close` end the connection while they do.

use rustls::{ConnectionCommon, SideData, StreamOwned};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// Ends a connection at once from any thread, even while other threads are blocked
/// reading or writing it — what `close` on a split connection or a
/// [`ControlHandle`](super::ControlHandle) uses. For TCP: a second descriptor of the
/// socket, shut down in both directions.
pub struct ShutdownHandle(Box<dyn FnOnce() + Send>);

impl ShutdownHandle {
    /// A handle that runs `shutdown` (once) to end the connection.
    pub fn new(shutdown: impl FnOnce() + Send + 'static) -> Self {
        ShutdownHandle(Box::new(shutdown))
    }

    /// A handle that shuts `tcp` (a duplicate of the connection's socket) down.
    pub fn tcp(tcp: &TcpStream) -> Option<Self> {
        let dup = tcp.try_clone().ok()?;
        Some(ShutdownHandle::new(move || {
            let _ = dup.shutdown(Shutdown::Both);
        }))
    }

    /// Ends the connection.
    pub fn shutdown(self) {
        (self.0)()
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShutdownHandle")
    }
}

/// A blocking byte stream a [`Conn`](super::Conn) can run over: implemented for
/// [`TcpStream`], rustls' [`StreamOwned`] over a `TcpStream` (`wss://`, server or
/// client side) and [`BlockingStream`].
///
/// Deadlines are mapped onto `set_read_timeout` / `set_write_timeout` before every
/// system call, so a blocked call returns when the deadline passes.
pub trait Transport: Read + Write {
    /// Bounds the next reads (`None`: block until data arrives).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bounds the next writes (`None`: block until the peer takes the data).
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// A second handle on the same connection that can read while the original
    /// writes from another thread (`TcpStream::try_clone`). `None` when the stream
    /// has state that cannot be shared (TLS): then reads and writes take turns under a
    /// lock, and a blocked reader lets writers in every few milliseconds.
    fn duplicate(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
    /// Ends the sending direction (TCP FIN; for TLS, `close_notify` first). Best effort.
    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// A handle that ends the connection at once from another thread, even while a
    /// read or a write blocks on it ([`ShutdownHandle::tcp`] for streams over TCP).
    /// Default `None`: `close` from another thread then waits for a blocked write to
    /// return (at its deadline) and a blocked read is not woken.
    fn shutdown_handle(&self) -> Option<ShutdownHandle> {
        None
    }
}

impl Transport for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn duplicate(&self) -> Option<Self> {
        self.try_clone().ok()
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn shutdown_handle(&self) -> Option<ShutdownHandle> {
        ShutdownHandle::tcp(self)
    }
}

impl<C, D> Transport for StreamOwned<C, TcpStream>
where
    C: DerefMut + Deref<Target = ConnectionCommon<D>>,
    D: SideData,
{
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        self.sock.shutdown(Shutdown::Write)
    }

    fn shutdown_handle(&self) -> Option<ShutdownHandle> {
        ShutdownHandle::tcp(&self.sock)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(timeout)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        (**self).shutdown_write()
    }

    fn shutdown_handle(&self) -> Option<ShutdownHandle> {
        (**self).shutdown_handle()
    }
}

/// The stream of a blocking dialled connection
/// ([`Dialer::dial_blocking`](crate::Dialer::dial_blocking)): plain TCP for `ws://`,
/// rustls over TCP for `wss://`. The async dialer's counterpart is
/// [`MaybeTlsStream`](crate::MaybeTlsStream); the two have different names so that
/// they cannot be mixed up.
#[derive(Debug)]
#[non_exhaustive]
pub enum BlockingStream {
    /// A `ws://` connection.
    Plain(TcpStream),
    /// A `wss://` connection (boxed: a TLS session is large).
    Tls(Box<StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl BlockingStream {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            BlockingStream::Plain(s) => s,
            BlockingStream::Tls(s) => &s.sock,
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, BlockingStream::Tls(_))
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.read(buf),
            BlockingStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.write(buf),
            BlockingStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(s) => s.flush(),
            BlockingStream::Tls(s) => s.flush(),
        }
    }
}

impl Transport for BlockingStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }

    fn duplicate(&self) -> Option<Self> {
        match self {
            BlockingStream::Plain(s) => s.try_clone().ok().map(BlockingStream::Plain),
            BlockingStream::Tls(_) => None,
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(s) => Transport::shutdown_write(s),
            BlockingStream::Tls(s) => s.shutdown_write(),
        }
    }

    fn shutdown_handle(&self) -> Option<ShutdownHandle> {
        ShutdownHandle::tcp(self.tcp())
    }
}
