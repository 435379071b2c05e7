//! The sending side that the halves and every [`ControlHandle`](super::ControlHandle)
//! share: the transport's write handle and the bytes encoded but not yet written, under
//! one lock, so frames never interleave (control frames may go between a message's
//! fragments, §5.4). A write that times out keeps its unsent bytes queued; they go out
//! first on the next write, so the stream is never left with half a frame.
//!
//! `close` ends the connection at once from any half or handle ([`Shared::close_now`]):
//! through the transport's [`ShutdownHandle`] when it has one (made when the connection
//! is split or a handle is taken), so that threads blocked reading or writing it
//! return now, then by dropping the transport.

use super::transport::{ShutdownHandle, Transport};
use crate::error::{Error, Result};
use crate::proto::encoder::encode_frame;
use crate::proto::{OpCode, Role};
use bytes::{Buf, BytesMut};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The socket timeout that makes a call return by `deadline`; [`Error::Timeout`] when it
/// has already passed. `None` (no deadline) blocks.
pub(crate) fn timeout_until(deadline: Option<Instant>) -> Result<Option<Duration>> {
    let Some(at) = deadline else {
        return Ok(None);
    };
    let now = Instant::now();
    if at <= now {
        return Err(Error::Timeout);
    }
    // A zero timeout means "none" to the OS: never pass one.
    Ok(Some((at - now).max(Duration::from_millis(1))))
}

/// Whether an I/O error is a socket timeout firing.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(crate) struct WriteState<S> {
    /// The transport; `None` once the connection was closed with `close`.
    pub(crate) io: Option<S>,
    /// Set by `close` (shared with [`Shared`]), so that a write the shutdown cut off
    /// reports [`Error::AlreadyClosed`] rather than a broken pipe.
    closed: Arc<AtomicBool>,
    pending: BytesMut,
    /// A close frame was queued: no more frames may follow (§5.5.1).
    pub(crate) close_sent: bool,
    failed: Option<io::ErrorKind>,
    /// The write timeout last given to the transport (`None`: not known), to skip the
    /// system call when it does not change.
    write_timeout: Option<Option<Duration>>,
}

/// State shared by the halves of one blocking connection.
pub(crate) struct Shared<S> {
    state: Mutex<WriteState<S>>,
    closed: Arc<AtomicBool>,
    /// Ends the transport without its lock (which a blocked write holds).
    shutdown: Mutex<Option<ShutdownHandle>>,
    pub(crate) role: Role,
}

impl<S> Shared<S> {
    pub(crate) fn new(io: S, role: Role) -> Self {
        let closed = Arc::new(AtomicBool::new(false));
        Shared {
            closed: closed.clone(),
            shutdown: Mutex::new(None),
            state: Mutex::new(WriteState {
                io: Some(io),
                closed,
                pending: BytesMut::new(),
                close_sent: false,
                failed: None,
                write_timeout: None,
            }),
            role,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, WriteState<S>> {
        // A panic while locked leaves at worst a partly written frame; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The transport, unless it was closed.
    pub(crate) fn into_inner(self) -> Option<S> {
        self.state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .io
    }

    /// Runs `f` with the transport; `None` once it was closed.
    pub(crate) fn with_io<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.lock().io.as_ref().map(f)
    }

    /// Whether `close` was called by any half or handle.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the transport at once (gorilla's `Close`): shuts it down through the
    /// shutdown handle, which returns threads blocked in a read or a write on it, then
    /// drops it. Later calls of every half and handle fail with
    /// [`Error::AlreadyClosed`].
    pub(crate) fn close_now(&self) {
        self.closed.store(true, Ordering::Release);
        let handle = self
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            handle.shutdown();
        }
        // Without a handle this waits for a blocked write (bounded by its deadline).
        let io = self.lock().io.take();
        drop(io);
    }
}

impl<S: Transport> Shared<S> {
    /// Makes sure `close` from another half or handle can end the transport while a
    /// read or a write blocks on it: called when the connection is split or a
    /// [`ControlHandle`](super::ControlHandle) is taken (for TCP it costs a second
    /// descriptor of the socket, so connections that are never shared do without).
    pub(crate) fn prepare_close(&self) {
        let mut slot = self.shutdown.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() && !self.is_closed() {
            *slot = self.lock().io.as_ref().and_then(Transport::shutdown_handle);
        }
    }
}

impl<S> WriteState<S> {
    /// Encodes one frame (masked for a client, §5.3) behind what is pending.
    pub(crate) fn push_frame(
        &mut self,
        role: Role,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: &[u8],
    ) {
        if opcode == OpCode::Close {
            self.close_sent = true;
        }
        let mask = (role == Role::Client).then(rand::random::<[u8; 4]>);
        encode_frame(&mut self.pending, opcode, fin, rsv1, mask, payload);
    }

    /// Whether a data or control frame may be queued: not once the transport was
    /// closed, nor after a close frame (§5.5.1).
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.io.is_none() {
            return Err(Error::AlreadyClosed);
        }
        if self.close_sent {
            return Err(Error::CloseSent);
        }
        Ok(())
    }

    /// Queues a whole frame encoded elsewhere (a prepared message; server role).
    pub(crate) fn push_encoded(&mut self, frame: &[u8]) {
        self.pending.extend_from_slice(frame);
    }
}

impl<S: Transport> WriteState<S> {
    /// Writes everything pending, returning by `deadline` ([`Error::Timeout`], the rest
    /// stays queued). A transport error is final: every later write returns it.
    pub(crate) fn flush(&mut self, deadline: Option<Instant>) -> Result<()> {
        let Some(io) = self.io.as_mut() else {
            return Err(Error::AlreadyClosed);
        };
        if let Some(kind) = self.failed {
            return Err(Error::Io(io::Error::new(kind, "transport failed earlier")));
        }
        // Bounded: every round writes at least one byte or returns.
        loop {
            let timeout = timeout_until(deadline)?;
            if self.write_timeout != Some(timeout) {
                io.set_write_timeout(timeout)?;
                self.write_timeout = Some(timeout);
            }
            let written = if self.pending.is_empty() {
                match io.flush() {
                    Ok(()) => break,
                    Err(e) => Err(e),
                }
            } else {
                io.write(&self.pending)
            };
            match written {
                Ok(0) => return Err(self.fail(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(Error::Timeout),
                Err(e) => return Err(self.fail(e)),
            }
        }
        if self.pending.capacity() > 64 * 1024 {
            // Don't keep a large buffer around after a large message.
            self.pending = BytesMut::new();
        }
        Ok(())
    }

    fn fail(&mut self, e: io::Error) -> Error {
        if self.closed.load(Ordering::Acquire) {
            return Error::AlreadyClosed; // the shutdown of `close` cut the write off
        }
        self.failed = Some(e.kind());
        Error::Io(e)
    }
}
