//! The part of a connection both halves touch: the transport and the queue of frames
//! waiting to be written.
//!
//! Frames are appended to the queue whole, under a short lock, so frames from the
//! writer, from `write_control` callers and from the reader's automatic replies never
//! interleave mid-frame (control frames may go between a message's fragments, §5.4).
//! One future at a time — the *flusher* — drives the queue into the transport; others
//! wait for it. That keeps exactly one task registered for write readiness, because
//! tokio transports remember only the last task that polled a direction. A flusher
//! that is dropped hands the job on, so cancelling a write never strands the queue;
//! and because bytes leave the queue only as the transport accepts them, cancelling
//! never leaves half a frame behind either.
//!
//! Frames can also arrive from outside the connection's own tasks: a
//! [`Hub`](crate::hub::Hub) appends published frames under the same short lock and, if
//! nobody is writing, claims the write: the hub's flusher (or a cork) then writes the
//! queue from its own task ([`Shared::write_now`]), or, without one, wakes the
//! connection's *driver* — the task of its reader, which registers itself whenever it
//! waits for input and writes everything queued before it waits again. Either way,
//! frames published in between go out together in one write. If the socket is full,
//! the driver is what waits for room and goes on.
//!
//! The transport can be closed at once from any half or handle ([`Shared::close_now`]):
//! it is dropped, and the tasks waiting on it are woken to find it gone. The wakers of
//! the reader (the driver) and the flusher are kept here for that, because a tokio
//! transport that is dropped forgets the tasks waiting on it without waking them.

use crate::proto::encoder::{encode_frame, encode_header, header};
use crate::proto::frame::{FrameHeader, MAX_HEADER_LEN};
use crate::proto::mask::apply_mask;
use crate::proto::{CloseFrame, OpCode, Role};
use bytes::{Buf, Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Payloads at least this large are queued by reference instead of copied (server side;
/// a client must copy to mask).
const ZERO_COPY_THRESHOLD: usize = 16 * 1024;
/// At most this many buffers go into one vectored write.
const MAX_IOVECS: usize = 64;
/// Frames encoded elsewhere (a hub's, a prepared message's) are queued by reference,
/// not copied, while fewer than this many buffers wait: a fan-out then copies no
/// frame into thousands of write buffers (the kernel copies it out of the one shared
/// frame). Past it they are copied, so that one write still takes a long queue.
const SHARED_FRAMES: usize = 16;
/// The flusher identity of a hub writing for a corked publish (real ones start at 2).
const HUB_FLUSH_ID: u64 = 1;
/// A fresh staging buffer starts this large (it is freed again once written), so
/// that a burst of small frames is copied into it without a chain of reallocations.
const STAGING_START: usize = 1024;
/// Written staging buffers kept per thread for the next connection that needs one
/// (about 1 KiB each): a hub that queues a message on thousands of idle connections
/// at once would otherwise make the allocator hand out, and take back, one buffer per
/// delivery, which costs more than the delivery itself.
const STAGING_POOL: usize = 2048;

thread_local! {
    static STAGING_BUFFERS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A staging buffer of `STAGING_START` bytes, from the thread's pool if it has one.
fn fresh_staging() -> BytesMut {
    STAGING_BUFFERS
        .try_with(|pool| pool.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| BytesMut::with_capacity(STAGING_START))
}

/// Gives a written (empty) staging buffer back to the thread's pool, or frees it.
fn recycle_staging(mut buf: BytesMut) {
    if !(STAGING_START..=4 * STAGING_START).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    let _ = STAGING_BUFFERS.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            if pool.len() < STAGING_POOL {
                pool.push(buf);
            }
        }
    });
}

/// Frames waiting to be written, in order: `chunks` first, then `staging`.
#[derive(Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`, kept so that the queue's length is known without a walk.
    chunks_len: usize,
    staging: BytesMut,
}

impl WriteQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.staging.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.chunks_len + self.staging.len()
    }

    fn push_back_chunk(&mut self, chunk: Bytes) {
        self.chunks_len += chunk.len();
        self.chunks.push_back(chunk);
    }

    pub(crate) fn push_frame(
        &mut self,
        role: Role,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: PayloadRef<'_>,
    ) {
        match role {
            Role::Client => {
                let key: [u8; 4] = rand::random();
                let payload = match payload {
                    // A large payload nobody else holds is masked where it is and
                    // queued as is: no copy, no staging buffer of its size.
                    PayloadRef::Owned(bytes) if bytes.len() >= ZERO_COPY_THRESHOLD => {
                        match bytes.try_into_mut() {
                            Ok(mut owned) => {
                                apply_mask(&mut owned, key, 0);
                                let head = header(opcode, fin, rsv1, Some(key), owned.len());
                                self.push_chunk(&head, owned.freeze());
                                return;
                            }
                            Err(shared) => PayloadRef::Owned(shared),
                        }
                    }
                    other => other,
                };
                let staging = self.staging(MAX_HEADER_LEN + payload.as_slice().len());
                encode_frame(staging, opcode, fin, rsv1, Some(key), payload.as_slice());
            }
            Role::Server => match payload {
                PayloadRef::Shared(bytes) if bytes.len() >= ZERO_COPY_THRESHOLD => {
                    let head = header(opcode, fin, rsv1, None, bytes.len());
                    self.push_chunk(&head, bytes.clone());
                }
                PayloadRef::Owned(bytes) if bytes.len() >= ZERO_COPY_THRESHOLD => {
                    let head = header(opcode, fin, rsv1, None, bytes.len());
                    self.push_chunk(&head, bytes);
                }
                other => {
                    let staging = self.staging(MAX_HEADER_LEN + other.as_slice().len());
                    encode_frame(staging, opcode, fin, rsv1, None, other.as_slice());
                }
            },
        }
    }

    /// Queues a frame header (after whatever is staged) and then its payload by
    /// reference.
    fn push_chunk(&mut self, head: &FrameHeader, payload: Bytes) {
        encode_header(self.staging(MAX_HEADER_LEN), head);
        let staged = self.staging.split().freeze();
        self.push_back_chunk(staged);
        self.push_back_chunk(payload);
    }

    /// The staging buffer, with room for at least `n` more bytes if it was empty.
    fn staging(&mut self, n: usize) -> &mut BytesMut {
        if self.staging.capacity() == 0 {
            if n <= STAGING_START {
                self.staging = fresh_staging();
            } else {
                self.staging.reserve(n);
            }
        }
        &mut self.staging
    }

    /// Queues a frame encoded elsewhere (a prepared message, a hub's), by reference
    /// when large, or when `share` (the transport writes several buffers at once) and
    /// nothing is staged and few buffers wait; else copied.
    pub(crate) fn push_encoded(&mut self, frame: &Bytes, share: bool) {
        let shared = share && self.staging.is_empty() && self.chunks.len() < SHARED_FRAMES;
        if shared || frame.len() >= ZERO_COPY_THRESHOLD {
            if !self.staging.is_empty() {
                let head = self.staging.split().freeze();
                self.push_back_chunk(head);
            }
            self.push_back_chunk(frame.clone());
        } else {
            self.staging(frame.len()).extend_from_slice(frame);
        }
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            if let Some(front) = self.chunks.front_mut() {
                let take = n.min(front.len());
                front.advance(take);
                self.chunks_len -= take;
                n -= take;
                if front.is_empty() {
                    self.chunks.pop_front();
                }
            } else if n >= self.staging.len() {
                self.staging.clear(); // the usual case: everything went; freed below
                break;
            } else {
                self.staging.advance(n);
                break;
            }
        }
        if self.is_empty() {
            // Everything went out: hold no memory while the connection is quiet.
            recycle_staging(std::mem::take(&mut self.staging));
            if self.chunks.capacity() > 0 {
                self.chunks = VecDeque::new();
            }
        }
    }
}

/// A payload to frame: borrowed (copied into the queue), shared (may be queued as
/// is) or given up by its owner (a client may also mask it in place).
pub(crate) enum PayloadRef<'a> {
    Slice(&'a [u8]),
    Shared(&'a Bytes),
    Owned(Bytes),
}

impl PayloadRef<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            PayloadRef::Slice(s) => s,
            PayloadRef::Shared(b) => b,
            PayloadRef::Owned(b) => b,
        }
    }
}

pub(crate) struct Inner<S> {
    /// The transport; `None` once [`Shared::close_now`] dropped it.
    io: Option<S>,
    pub(crate) queue: WriteQueue,
    /// The flusher that last found the transport not ready to write: woken by
    /// `close_now` (the reader is the `driver`, below).
    write_waker: Option<Waker>,
    flusher: Option<u64>,
    waiters: Vec<Waker>,
    next_id: u64,
    /// A close frame was queued: no more frames may follow (§5.5.1).
    pub(crate) close_sent: bool,
    /// `driver` was woken and has not run since.
    driver_woken: bool,
    /// The last write found the transport full: whoever made it is registered for
    /// writability and goes on when there is room.
    write_blocked: bool,
    /// The transport failed while writing; the stream is unusable.
    write_error: Option<io::ErrorKind>,
    /// The task to wake when frames are queued from outside (a hub) while nobody
    /// writes: the reader's, registered whenever it waits for input.
    driver: Option<Waker>,
    /// What a hub left with this connection besides frames (rare, so boxed).
    pub(crate) hub: Option<Box<super::outlet::HubSide>>,
}

/// State shared between the halves of one connection.
pub(crate) struct Shared<S> {
    inner: Mutex<Inner<S>>,
    pub(crate) role: Role,
    /// Set (once) by a hub that closed the connection for falling behind; the reader
    /// looks at it on every poll without taking the lock.
    pub(crate) kicked: AtomicBool,
    /// The subprotocol agreed in the handshake (one copy for both halves).
    pub(crate) subprotocol: Option<Box<str>>,
}

impl<S> Shared<S> {
    pub(crate) fn new(io: S, role: Role, subprotocol: Option<String>) -> Self {
        Self::with_subprotocol(io, role, subprotocol.map(String::into_boxed_str))
    }

    pub(crate) fn with_subprotocol(io: S, role: Role, subprotocol: Option<Box<str>>) -> Self {
        Shared {
            inner: Mutex::new(Inner {
                io: Some(io),
                queue: WriteQueue::default(),
                write_waker: None,
                flusher: None,
                waiters: Vec::new(),
                next_id: 1,
                close_sent: false,
                driver_woken: false,
                write_blocked: false,
                write_error: None,
                driver: None,
                hub: None,
            }),
            role,
            kicked: AtomicBool::new(false),
            subprotocol,
        }
    }

    /// Whether nothing is queued, being written, failed or closing, and no hub left
    /// anything here: the connection is only its transport and could sleep.
    pub(crate) fn is_at_rest(&self) -> bool {
        let g = self.lock();
        g.io.is_some()
            && g.queue.is_empty()
            && g.flusher.is_none()
            && g.waiters.is_empty()
            && !g.close_sent
            && g.write_error.is_none()
            && g.hub.is_none()
            && !self.kicked.load(Ordering::Acquire)
    }

    /// The transport and subprotocol (see [`is_at_rest`](Self::is_at_rest)); itself
    /// back if the transport was dropped.
    #[allow(clippy::result_large_err)] // itself back, unchanged
    pub(crate) fn into_rest(self) -> Result<(S, Option<Box<str>>), Self> {
        let mut inner = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        match inner.io.take() {
            Some(io) => Ok((io, self.subprotocol)),
            None => Err(Shared {
                inner: Mutex::new(inner),
                role: self.role,
                kicked: self.kicked,
                subprotocol: self.subprotocol,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        // A panic while locked cannot leave the queue half-updated in a way that
        // matters more than the panic itself; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh identity for a future that may drive the queue.
    pub(crate) fn new_flush_id(&self) -> u64 {
        let mut g = self.lock();
        g.next_id += 1;
        g.next_id
    }

    /// The transport, unless it was closed.
    pub(crate) fn into_inner(self) -> Option<S> {
        self.inner
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .io
    }

    /// Runs `f` with the transport; `None` once it was closed.
    pub(crate) fn with_io<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.lock().io.as_ref().map(f)
    }

    /// Closes the transport at once (gorilla's `Close`): drops it, so the peer sees
    /// the connection end now, whatever halves and handles still share it. Whoever
    /// waits on it is woken and then fails with [`closed_error`].
    pub(crate) fn close_now(&self) {
        let io = {
            let mut g = self.lock();
            let io = g.io.take();
            g.queue = WriteQueue::default();
            g.flusher = None;
            let wakers = g.driver.take().into_iter().chain(g.write_waker.take());
            for w in wakers.chain(g.waiters.drain(..)).collect::<Vec<_>>() {
                w.wake();
            }
            io
        };
        // Outside the lock: dropping a transport may take a while (TLS, deregistering).
        drop(io);
    }

    /// Whether [`close_now`](Self::close_now) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().io.is_none()
    }

    /// Stops being the flusher, if `id` is, and wakes whoever waits for the queue.
    pub(crate) fn release(&self, id: u64) {
        let mut g = self.lock();
        if g.flusher == Some(id) {
            g.flusher = None;
            for w in g.waiters.drain(..) {
                w.wake();
            }
        }
    }

    /// Like [`release`](Self::release), for a flusher that was dropped before the
    /// queue was written: the transport may now wake a task that no longer writes,
    /// so the driver is woken to take over what is left.
    pub(crate) fn release_cancelled(&self, id: u64) {
        let mut g = self.lock();
        if g.flusher != Some(id) {
            return;
        }
        g.flusher = None;
        for w in g.waiters.drain(..) {
            w.wake();
        }
        if !g.queue.is_empty() {
            g.write_blocked = false;
            if let Some(driver) = g.driver.clone() {
                g.driver_woken = true;
                drop(g);
                driver.wake();
            }
        }
    }

    /// Like [`release`](Self::release), and registers `cx` to be woken when the queue
    /// is next driven to completion or handed on: for a reader that stops reading
    /// until its replies can be written. One lock, so no wake-up falls in between.
    pub(crate) fn release_and_wait(&self, id: u64, cx: &mut Context<'_>) {
        let mut g = self.lock();
        if g.flusher == Some(id) {
            g.flusher = None;
            for w in g.waiters.drain(..) {
                w.wake();
            }
        }
        if !g.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            g.waiters.push(cx.waker().clone());
        }
    }
}

impl<S> Inner<S> {
    /// Queues one frame. The caller checked `close_sent` where that matters.
    pub(crate) fn push_frame(
        &mut self,
        role: Role,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: PayloadRef<'_>,
    ) {
        if opcode == OpCode::Close {
            self.close_sent = true;
        }
        self.queue.push_frame(role, opcode, fin, rsv1, payload);
    }

    /// Queues a close frame carrying `frame` (no status if its code may not be sent).
    /// The caller checked `close_sent` where that matters.
    pub(crate) fn push_close(&mut self, role: Role, frame: &CloseFrame) {
        let mut payload = Vec::with_capacity(2 + frame.reason.len());
        if frame.encode(&mut payload).is_err() {
            payload.clear();
        }
        self.push_frame(
            role,
            OpCode::Close,
            true,
            false,
            PayloadRef::Slice(&payload),
        );
    }

    /// Queues a whole data frame encoded elsewhere (server role only: no mask).
    pub(crate) fn push_encoded(&mut self, frame: &Bytes)
    where
        S: AsyncWrite,
    {
        let share = self.vectored();
        self.queue.push_encoded(frame, share);
    }

    /// Whether the transport takes several buffers in one write.
    pub(crate) fn vectored(&self) -> bool
    where
        S: AsyncWrite,
    {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.queue.len()
    }

    /// After frames were queued from outside the connection's tasks: whether a write
    /// must be arranged (after the lock is let go) because nobody else will make it.
    /// If so, the driver counts as asked until it runs or someone writes for it.
    pub(crate) fn claim_write(&mut self) -> bool {
        if self.flusher.is_some()
            || self.write_blocked
            || self.driver_woken
            || self.driver.is_none()
        {
            return false;
        }
        self.driver_woken = true;
        true
    }

    /// The driver, whatever the state of the queue (a hub closing the connection
    /// needs the reader to see it).
    pub(crate) fn driver_now(&mut self) -> Option<Waker> {
        self.driver_woken = true;
        self.driver.clone()
    }

    /// Whether a data or control frame may be queued: not once the transport was
    /// closed, nor after a close frame (§5.5.1).
    pub(crate) fn check_writable(&self) -> crate::Result<()> {
        if self.io.is_none() {
            return Err(crate::Error::AlreadyClosed);
        }
        if self.close_sent {
            return Err(crate::Error::CloseSent);
        }
        Ok(())
    }

    /// Registers `cx` as the task to wake for frames queued from outside.
    fn register_driver(&mut self, cx: &Context<'_>) {
        if !self
            .driver
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.driver = Some(cx.waker().clone());
        }
    }
}

impl<S: AsyncWrite + Unpin> Shared<S> {
    /// Drives the queue into the transport until it is empty and flushed, as the
    /// flusher `id`; if another future is the flusher, waits for it.
    pub(crate) fn poll_flush_queue(&self, cx: &mut Context<'_>, id: u64) -> Poll<io::Result<()>> {
        let mut guard = self.lock();
        let g = &mut *guard;
        if let Some(kind) = g.write_error {
            return Poll::Ready(Err(io::Error::new(kind, "transport failed earlier")));
        }
        if g.io.is_none() {
            return Poll::Ready(Err(closed_error()));
        }
        match g.flusher {
            Some(other) if other != id => {
                if !g.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    g.waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            _ => g.flusher = Some(id),
        }
        let result = ready!(self.poll_write_queue(g, cx));
        g.flusher = None;
        for w in g.waiters.drain(..) {
            w.wake();
        }
        Poll::Ready(result)
    }

    /// Writes what is queued (with held hub frames as they fit) until the queue is
    /// empty and the transport flushed. The caller is the flusher.
    fn poll_write_queue(&self, g: &mut Inner<S>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(io) = g.io.as_mut() else {
            return Poll::Ready(Err(closed_error()));
        };
        let vectored = io.is_write_vectored();
        let result = loop {
            if let Some(hub) = &mut g.hub {
                hub.release_held(&mut g.queue, self.role, vectored);
            }
            if g.queue.is_empty() {
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Pending => {
                        remember(&mut g.write_waker, cx);
                        return Poll::Pending;
                    }
                    Poll::Ready(r) => break r,
                }
            }
            let written = if g.queue.chunks.is_empty() {
                // The common case (small frames, all in staging): one plain write.
                Pin::new(&mut *io).poll_write(cx, &g.queue.staging)
            } else if io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                for c in g.queue.chunks.iter().take(MAX_IOVECS - 1) {
                    slices[n] = IoSlice::new(c);
                    n += 1;
                }
                if n < MAX_IOVECS && !g.queue.staging.is_empty() {
                    slices[n] = IoSlice::new(&g.queue.staging);
                    n += 1;
                }
                Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
            } else {
                let first: &[u8] = match g.queue.chunks.front() {
                    Some(c) => c,
                    None => &g.queue.staging,
                };
                Pin::new(&mut *io).poll_write(cx, first)
            };
            match written {
                Poll::Pending => {
                    g.write_blocked = true;
                    remember(&mut g.write_waker, cx);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => break Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    g.write_blocked = false;
                    g.queue.advance(n);
                }
                Poll::Ready(Err(e)) => break Err(e),
            }
        };
        if let Err(e) = &result {
            g.write_error = Some(e.kind());
        }
        Poll::Ready(result)
    }

    /// The reader's turn as driver, before it waits for input: writes what is queued
    /// unless another future is writing it. Never waits for the transport — a full
    /// one wakes this task when there is room — and never stays the flusher.
    fn drive(&self, g: &mut Inner<S>, cx: &mut Context<'_>, id: u64) -> io::Result<()> {
        g.driver_woken = false;
        let idle = g.queue.is_empty() && g.hub.as_ref().is_none_or(|h| h.held_is_empty());
        if idle || g.write_error.is_some() || g.flusher.is_some_and(|f| f != id) {
            return Ok(());
        }
        g.flusher = Some(id);
        let result = self.poll_write_queue(g, cx);
        g.flusher = None;
        for w in g.waiters.drain(..) {
            w.wake();
        }
        match result {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// A hub delivery written from the publisher's task (a cork) or the thread's
    /// flusher, instead of waking the driver (the hub claimed the write, so nobody
    /// else is writing). If the transport is full, the driver is what it registers,
    /// so the driver goes on from there; if it failed, the driver is woken to find
    /// out. The driver's waker is used in place, not cloned: a clone would touch the
    /// driver's task, out of cache when thousands of connections are written in turn.
    pub(crate) fn write_now(&self) {
        let mut guard = self.lock();
        let g = &mut *guard;
        g.driver_woken = false;
        if g.flusher.is_some() || g.write_blocked || g.write_error.is_some() {
            return;
        }
        let Some(driver) = g.driver.take() else {
            return;
        };
        g.flusher = Some(HUB_FLUSH_ID);
        let result = self.poll_write_queue(g, &mut Context::from_waker(&driver));
        g.flusher = None;
        for w in g.waiters.drain(..) {
            w.wake();
        }
        let failed = matches!(result, Poll::Ready(Err(_)));
        // The reader may have registered anew meanwhile only by running, which it
        // cannot while this lock is held: put the driver back.
        g.driver = Some(driver);
        if failed {
            let driver = g.driver_now();
            drop(guard);
            if let Some(driver) = driver {
                driver.wake();
            }
        }
    }

    /// Half-closes the transport (TCP FIN) without a close handshake.
    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut g = self.lock();
        match g.io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

thread_local! {
    /// Where an idle connection reads: it owns no buffer until bytes arrive.
    static SCRATCH: RefCell<Vec<MaybeUninit<u8>>> = const { RefCell::new(Vec::new()) };
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    /// Reads at most `max` bytes from the transport into a fresh buffer of exactly the
    /// size that arrived (empty at end of stream). Until something arrives no memory
    /// is held for the connection: the read goes through a buffer of the thread's.
    ///
    /// Like every read of the reader (flusher `id`), it first writes what is queued
    /// ([`drive`](Self::drive)) and, if nothing arrived, registers the task as the
    /// connection's driver.
    pub(crate) fn poll_read_fresh(
        &self,
        cx: &mut Context<'_>,
        max: usize,
        id: u64,
    ) -> Poll<io::Result<BytesMut>> {
        let via_scratch = SCRATCH.try_with(|scratch| {
            // Busy if re-entered from inside a transport's poll_read.
            let mut scratch = scratch.try_borrow_mut().ok()?;
            if scratch.len() < max {
                scratch.resize(max, MaybeUninit::uninit());
            }
            let mut read_buf = ReadBuf::uninit(&mut scratch[..max]);
            let mut guard = self.lock();
            let g = &mut *guard;
            if let Err(e) = self.drive(g, cx, id) {
                return Some(Poll::Ready(Err(e)));
            }
            let Some(io) = g.io.as_mut() else {
                return Some(Poll::Ready(Err(closed_error())));
            };
            Some(match Pin::new(io).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(BytesMut::from(read_buf.filled()))),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    g.register_driver(cx);
                    Poll::Pending
                }
            })
        });
        if let Ok(Some(polled)) = via_scratch {
            return polled;
        }
        let mut buf = BytesMut::with_capacity(max);
        ready!(self.poll_read_into(cx, &mut buf, id))?;
        Poll::Ready(Ok(buf))
    }

    /// Reads from the transport into the spare capacity of `buf` (after writing what
    /// is queued, as [`poll_read_fresh`](Self::poll_read_fresh)).
    pub(crate) fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        id: u64,
    ) -> Poll<io::Result<usize>> {
        let mut guard = self.lock();
        let g = &mut *guard;
        self.drive(g, cx, id)?;
        let Some(io) = g.io.as_mut() else {
            return Poll::Ready(Err(closed_error()));
        };
        let polled = tokio_util::io::poll_read_buf(Pin::new(io), cx, buf);
        if polled.is_pending() {
            g.register_driver(cx);
        }
        polled
    }

    /// Whether a hub closed the connection for falling behind: the close frame it
    /// queued and the instant after which the transport is given up.
    #[inline]
    pub(crate) fn take_kick(&self) -> Option<(crate::proto::CloseFrame, std::time::Instant)> {
        if !self.kicked.load(Ordering::Acquire) {
            return None;
        }
        self.take_kick_slow()
    }

    #[cold]
    fn take_kick_slow(&self) -> Option<(crate::proto::CloseFrame, std::time::Instant)> {
        self.lock().hub.as_mut()?.kicked.take()
    }
}

/// Keeps the waker of a task that waits on the transport, for `close_now` (a cheap
/// comparison when it is the same task as last time, the usual case).
#[inline]
fn remember(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// What a transport that was closed with `close()` reports: turned into
/// [`Error::AlreadyClosed`](crate::Error::AlreadyClosed) by [`Error::from_io`](crate::Error).
#[cold]
#[inline(never)]
pub(crate) fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, crate::error::LocalClose)
}

/// Marks a future as a (possible) flusher; hands the job on when dropped.
pub(crate) struct FlushGuard<'a, S> {
    pub(crate) shared: &'a Shared<S>,
    pub(crate) id: u64,
}

impl<S> Drop for FlushGuard<'_, S> {
    fn drop(&mut self) {
        self.shared.release_cancelled(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_small_frames_is_staged_without_reallocating() {
        let mut q = WriteQueue::default();
        let push = |q: &mut WriteQueue| {
            let payload = PayloadRef::Slice(&[7; 20]);
            q.push_frame(Role::Server, OpCode::Binary, true, false, payload);
        };
        push(&mut q);
        let start = q.staging.as_ptr();
        assert!(q.staging.capacity() >= STAGING_START);
        for _ in 1..16 {
            push(&mut q);
        }
        assert_eq!(q.staging.as_ptr(), start, "the staging buffer moved");
        assert_eq!(q.len(), 16 * 22);
        assert_eq!(&q.staging[..3], &[0x82, 20, 7]);
        q.advance(16 * 22);
        assert!(q.is_empty());
        assert_eq!(q.staging.capacity(), 0, "a written queue holds no memory");
    }
}
