//! One WebSocket's HTTP/2 stream as a tokio byte stream: [`H2Stream`].
//!
//! What a [`Conn`](crate::Conn) needs from its transport, mapped onto an HTTP/2
//! stream (RFC 8441 §5):
//!
//! * **Reading.** A small task per stream takes DATA frames off the h2 connection as
//!   they arrive and keeps them (small frames packed together) until the `Conn`
//!   reads them. Flow-control credit goes back to the peer only as the `Conn` reads,
//!   so a stream never holds more than its window, however slowly it is read; and
//!   because frames leave h2's queues at once, a reader that falls behind does not
//!   use up the connection's budget for queued small frames (which h2 defends with
//!   a GOAWAY that would end every stream on the connection).
//! * **Writing.** A write waits for send capacity (the peer's stream and connection
//!   windows, and [`Http2Settings::max_send_buffer`](super::Http2Settings)) and
//!   sends what fits as one DATA frame; a vectored write (frame header and payload)
//!   becomes one frame.
//! * **Ending.** `shutdown`, and dropping the stream, send END_STREAM — the orderly
//!   end, like a TCP FIN; [`H2Stream::reset`] sends RST_STREAM(CANCEL), the abrupt
//!   one. A peer's END_STREAM or RST_STREAM(CANCEL) reads as the end of the stream,
//!   so a `Conn` that saw no close frame reports code 1006; a reset with an error
//!   code reads as an I/O error (`ConnectionReset`) that names it.

use bytes::{Buf, Bytes, BytesMut};
use h2::{FlowControl, Reason, RecvStream, SendStream};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// DATA frames smaller than this are copied together; larger ones are kept as
/// received, without a copy.
const PACK_BELOW: usize = 4096;

/// What an [`H2Stream`] knows about the connection it runs on.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionInfo {
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) tls: bool,
}

/// The WebSocket's stream on an HTTP/2 connection, read and written as bytes.
///
/// The transport of a [`Conn`](crate::Conn) dialled over HTTP/2
/// ([`MaybeTlsStream::Http2`](crate::MaybeTlsStream)). Several of them can share one
/// connection; the connection stays open while one of them lives (or, with a shared
/// connection, while the dialer may still use it).
pub struct H2Stream {
    send: SendStream<Bytes>,
    sending: Sending,
    recv: Arc<RecvShared>,
    flow: FlowControl,
    info: Arc<ConnectionInfo>,
    /// Keeps the connection this stream runs on open.
    _connection: Arc<dyn Send + Sync>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sending {
    Open,
    Ended,
    Reset,
}

impl fmt::Debug for H2Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Stream")
            .field("stream_id", &self.stream_id())
            .field("sending", &self.sending)
            .field("peer_addr", &self.info.peer_addr)
            .field("tls", &self.info.tls)
            .finish()
    }
}

/// What the receive task hands to the reader.
#[derive(Default)]
struct RecvState {
    /// Received bytes in order: `chunks` first, then `packed`.
    chunks: VecDeque<Bytes>,
    packed: BytesMut,
    /// How the stream ended, once it did.
    end: Option<RecvEnd>,
    reader: Option<Waker>,
    pump: Option<Waker>,
    /// The `H2Stream` is gone: the receive task stops.
    closed: bool,
}

#[derive(Clone, Debug)]
enum RecvEnd {
    /// END_STREAM or RST_STREAM: reads return 0.
    Eof,
    /// The connection failed.
    Failed(io::ErrorKind, String),
}

#[derive(Default)]
struct RecvShared(Mutex<RecvState>);

impl RecvShared {
    fn lock(&self) -> MutexGuard<'_, RecvState> {
        // A panic elsewhere cannot leave the queue half-updated in a way that matters
        // here; keep going with what is there.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn store_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl H2Stream {
    /// Wraps an open stream (the response to the extended CONNECT was a 2xx) and
    /// starts its receive task. Needs a tokio runtime.
    pub(crate) fn new(
        send: SendStream<Bytes>,
        mut recv: RecvStream,
        info: Arc<ConnectionInfo>,
        connection: Arc<dyn Send + Sync>,
    ) -> Self {
        let flow = recv.flow_control().clone();
        let shared = Arc::new(RecvShared::default());
        tokio::spawn(receive(recv, shared.clone()));
        H2Stream {
            send,
            sending: Sending::Open,
            recv: shared,
            flow,
            info,
            _connection: connection,
        }
    }

    /// The HTTP/2 stream identifier.
    pub fn stream_id(&self) -> u32 {
        self.send.stream_id().as_u32()
    }

    /// The local address of the TCP connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.info
            .local_addr
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no local address"))
    }

    /// The remote address of the TCP connection (the proxy's, when dialled through
    /// one).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.info
            .peer_addr
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no peer address"))
    }

    /// Whether the connection is encrypted (`wss://`, ALPN h2) or not (`ws://`,
    /// prior knowledge).
    pub fn is_tls(&self) -> bool {
        self.info.tls
    }

    /// Ends the stream abruptly with RST_STREAM(CANCEL) (RFC 8441 §5: the abrupt end
    /// of the connection); the other streams of the connection go on. Later writes
    /// fail; the peer's `Conn` reads code 1006.
    pub fn reset(&mut self) {
        if self.sending != Sending::Reset {
            self.send.send_reset(Reason::CANCEL);
            self.sending = Sending::Reset;
        }
    }

    /// Waits for send capacity, then sends up to that much of `bufs` as one frame.
    fn poll_send(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let wanted: usize = bufs.iter().map(|b| b.len()).sum();
        if wanted == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.sending != Sending::Open {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the HTTP/2 stream was ended",
            )));
        }
        loop {
            let capacity = self.send.capacity();
            if capacity > 0 {
                let n = capacity.min(wanted);
                let mut frame = BytesMut::with_capacity(n);
                for b in bufs {
                    let take = (n - frame.len()).min(b.len());
                    frame.extend_from_slice(&b[..take]);
                    if frame.len() == n {
                        break;
                    }
                }
                return match self.send.send_data(frame.freeze(), false) {
                    Ok(()) => Poll::Ready(Ok(n)),
                    Err(e) => Poll::Ready(Err(send_error(e))),
                };
            }
            // The total wanted, not an increment; h2 assigns what the windows and
            // the send buffer allow.
            self.send.reserve_capacity(wanted);
            match self.send.poll_capacity(cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(send_error(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the HTTP/2 stream was reset",
                    )))
                }
                Poll::Pending => {}
            }
            // Waiting for a WINDOW_UPDATE; a RST_STREAM ends the wait too.
            return match self.send.poll_reset(cx) {
                Poll::Ready(Ok(reason)) => {
                    self.sending = Sending::Reset;
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        format!("the peer reset the HTTP/2 stream ({reason})"),
                    )))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(send_error(e))),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// Sends END_STREAM once.
    fn end(&mut self) {
        if self.sending == Sending::Open {
            // Fails only when the stream is already reset: nothing left to end.
            let _ = self.send.send_data(Bytes::new(), true);
            self.sending = Sending::Ended;
        }
    }
}

/// An h2 error on the sending side as an I/O error.
fn send_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return io;
        }
        return io::Error::other("HTTP/2 connection failed");
    }
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

impl AsyncRead for H2Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut guard = this.recv.lock();
        let state = &mut *guard;
        let mut copied = 0;
        while buf.remaining() > 0 {
            if state.chunks.is_empty() && !state.packed.is_empty() {
                state.chunks.push_back(state.packed.split().freeze());
            }
            let Some(chunk) = state.chunks.front_mut() else {
                break;
            };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.advance(n);
            if chunk.is_empty() {
                state.chunks.pop_front();
            }
            copied += n;
        }
        if copied > 0 {
            drop(guard);
            // Credit back to the peer for what the reader took (fails only once the
            // stream is gone, when credit no longer matters).
            let _ = this.flow.release_capacity(copied);
            return Poll::Ready(Ok(()));
        }
        match &guard.end {
            Some(RecvEnd::Eof) => Poll::Ready(Ok(())),
            Some(RecvEnd::Failed(kind, msg)) => {
                Poll::Ready(Err(io::Error::new(*kind, msg.clone())))
            }
            None => {
                store_waker(&mut guard.reader, cx);
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Data handed to h2 is written by the connection's task; there is nothing to
    /// wait for here.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends END_STREAM (RFC 8441 §5: the orderly end, like a TCP FIN).
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().end();
        Poll::Ready(Ok(()))
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        // As dropping a TCP stream sends FIN: end the stream in order.
        self.end();
        let mut state = self.recv.lock();
        state.closed = true;
        let pump = state.pump.take();
        drop(state);
        if let Some(w) = pump {
            w.wake();
        }
    }
}

/// The receive task: moves DATA frames off the h2 connection as they arrive, until
/// the stream ends or the [`H2Stream`] is dropped.
async fn receive(mut recv: RecvStream, shared: Arc<RecvShared>) {
    std::future::poll_fn(|cx| loop {
        {
            let mut state = shared.lock();
            if state.closed {
                return Poll::Ready(());
            }
            store_waker(&mut state.pump, cx);
        }
        let (end, data) = match recv.poll_data(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(data))) => (None, Some(data)),
            Poll::Ready(None) => (Some(RecvEnd::Eof), None),
            Poll::Ready(Some(Err(e))) => (Some(recv_end(e)), None),
        };
        let mut state = shared.lock();
        if let Some(data) = data {
            if data.len() < PACK_BELOW {
                state.packed.extend_from_slice(&data);
            } else {
                if !state.packed.is_empty() {
                    let packed = state.packed.split().freeze();
                    state.chunks.push_back(packed);
                }
                state.chunks.push_back(data);
            }
        }
        let finished = end.is_some();
        if finished {
            state.end = end;
        }
        let reader = state.reader.take();
        drop(state);
        if let Some(w) = reader {
            w.wake();
        }
        if finished {
            return Poll::Ready(());
        }
    })
    .await;
}

/// How a receive error ends the stream: RST_STREAM(CANCEL) — RFC 8441 §5's abrupt
/// end — or (NO_ERROR) is the end of the stream, as hyper's upgraded streams read it
/// on the server side; a reset with an error code, or a failed connection, is an
/// I/O error that names it.
fn recv_end(e: h2::Error) -> RecvEnd {
    match e.reason() {
        Some(Reason::CANCEL | Reason::NO_ERROR) if e.is_reset() => return RecvEnd::Eof,
        Some(reason) if e.is_reset() => {
            return RecvEnd::Failed(
                io::ErrorKind::ConnectionReset,
                format!("the peer reset the HTTP/2 stream ({reason})"),
            )
        }
        _ => {}
    }
    match e.get_io() {
        Some(io) => RecvEnd::Failed(io.kind(), io.to_string()),
        None => RecvEnd::Failed(
            io::ErrorKind::ConnectionAborted,
            format!("HTTP/2 connection failed: {e}"),
        ),
    }
}
