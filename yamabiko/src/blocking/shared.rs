//! The sending side that the halves and every [`ControlHandle`](super::ControlHandle)
//! share: the transport's write handle and the bytes encoded but not yet written, under
//! one lock, so frames never interleave (control frames may go between a message's
//! fragments, §5.4). A write that times out keeps its unsent bytes queued; they go out
//! first on the next write, so the stream is never left with half a frame.

use super::transport::Transport;
use crate::error::{Error, Result};
use crate::proto::encoder::encode_frame;
use crate::proto::{OpCode, Role};
use bytes::{Buf, BytesMut};
use std::io;
use std::sync::{Mutex, MutexGuard};
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
    pub(crate) io: S,
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
    pub(crate) role: Role,
}

impl<S> Shared<S> {
    pub(crate) fn new(io: S, role: Role) -> Self {
        Shared {
            state: Mutex::new(WriteState {
                io,
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

    pub(crate) fn into_inner(self) -> S {
        self.state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .io
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

    /// Queues a whole frame encoded elsewhere (a prepared message; server role).
    pub(crate) fn push_encoded(&mut self, frame: &[u8]) {
        self.pending.extend_from_slice(frame);
    }
}

impl<S: Transport> WriteState<S> {
    /// Writes everything pending, returning by `deadline` ([`Error::Timeout`], the rest
    /// stays queued). A transport error is final: every later write returns it.
    pub(crate) fn flush(&mut self, deadline: Option<Instant>) -> Result<()> {
        if let Some(kind) = self.failed {
            return Err(Error::Io(io::Error::new(
                kind,
                "websocket: transport failed earlier",
            )));
        }
        // Bounded: every round writes at least one byte or returns.
        loop {
            let timeout = timeout_until(deadline)?;
            if self.write_timeout != Some(timeout) {
                self.io.set_write_timeout(timeout)?;
                self.write_timeout = Some(timeout);
            }
            let written = if self.pending.is_empty() {
                match self.io.flush() {
                    Ok(()) => break,
                    Err(e) => Err(e),
                }
            } else {
                self.io.write(&self.pending)
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
        self.failed = Some(e.kind());
        Error::Io(e)
    }
}
