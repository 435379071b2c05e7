//! A connection put to sleep: its transport and its settings, nothing else.
//!
//! An idle [`Conn`] holds a task, a shared state with its write queue and wakers, a
//! decoder, and often a keepalive timer — about 2 KB, most of it waiting for bytes
//! that may not come for minutes. A [`Dormant`] keeps what is needed to build the
//! same connection again when they do: the transport, the role and subprotocol, the
//! limits, handlers, deadlines, keepalive schedule and compression state. A
//! [`Hibernator`](crate::Hibernator) holds dormant connections, reads for them, pings
//! them on their keepalive schedule, and wakes them.

use super::keepalive::{Nap, Step};
use super::read::{ReadExtra, ReadRest};
use super::shared::Shared;
use super::write::{WriteExtra, WriteRest};
use super::{Conn, ReadHalf, WriteHalf};
use crate::proto::encoder::encode_frame;
use crate::proto::{Decoder, DecoderConfig, Incoming, OpCode, Role};
use bytes::{Bytes, BytesMut};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Most bytes read for a dormant connection at once; the rest is read by the
/// connection once awake.
const ARRIVAL_READ: usize = 4096;

/// A connection reduced to its transport and settings: what every connection has
/// inline, the rest (compression, handlers, deadlines, a subprotocol) in one box
/// only when any of it is set.
pub(crate) struct Dormant<S> {
    io: S,
    nap: Option<Nap>,
    config: DecoderConfig,
    read_buffer_size: u32,
    write_buffer_size: u32,
    extra: Option<Box<Extra>>,
}

/// The rarer part of a [`Dormant`].
struct Extra {
    subprotocol: Option<Box<str>>,
    read: Option<Box<ReadExtra>>,
    write: Option<Box<WriteExtra>>,
}

impl<S> Dormant<S> {
    fn new(io: S, subprotocol: Option<Box<str>>, read: ReadRest, write: WriteRest) -> Self {
        let extra =
            (subprotocol.is_some() || read.extra.is_some() || write.extra.is_some()).then(|| {
                Box::new(Extra {
                    subprotocol,
                    read: read.extra,
                    write: write.extra,
                })
            });
        Dormant {
            io,
            nap: read.nap,
            config: read.config,
            // Sizes past 4 GiB are not buffer sizes anyone asks for.
            read_buffer_size: u32::try_from(read.read_buffer_size).unwrap_or(u32::MAX),
            write_buffer_size: u32::try_from(write.write_buffer_size).unwrap_or(u32::MAX),
            extra,
        }
    }

    /// The parts again: subprotocol, reader, writer.
    fn into_parts(self) -> (S, Option<Box<str>>, ReadRest, WriteRest) {
        let (subprotocol, read_extra, write_extra) = match self.extra.map(|e| *e) {
            Some(Extra {
                subprotocol,
                read,
                write,
            }) => (subprotocol, read, write),
            None => (None, None, None),
        };
        (
            self.io,
            subprotocol,
            ReadRest {
                config: self.config,
                read_buffer_size: self.read_buffer_size as usize,
                nap: self.nap,
                extra: read_extra,
            },
            WriteRest {
                write_buffer_size: self.write_buffer_size as usize,
                extra: write_extra,
            },
        )
    }

    fn read_deadline(&self) -> Option<std::time::Instant> {
        self.extra.as_ref()?.read.as_ref()?.deadline
    }
}

/// What became of bytes that arrived for a dormant connection, from
/// [`Dormant::absorb`].
pub(crate) enum Absorbed {
    /// Keepalive traffic, taken: the connection sleeps on.
    Yes,
    /// Keepalive traffic, taken, but an answer did not go out whole: wake the
    /// connection with the rest to send first.
    Partly(Bytes),
    /// Not only keepalive traffic: wake the connection with the bytes.
    No,
}

/// What a dormant connection needs from its keeper, from [`Dormant::tend`].
pub(crate) enum Tend {
    /// Nothing until the given instant (`None`: nothing until bytes arrive).
    Sleep(Option<Instant>),
    /// Wake it: its read deadline passed, its keepalive timed out, or a ping could
    /// not be written whole (the rest is to be sent first).
    Wake(Option<Bytes>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// The connection as a [`Dormant`], if it is at rest: nothing buffered or half
    /// read, nothing queued or being written, not closing, and no other holder of its
    /// shared state (a [`ControlHandle`](super::ControlHandle), a hub subscription).
    /// Otherwise the connection itself, unchanged.
    // The connection itself comes back unchanged: no larger than the caller had it.
    #[allow(clippy::result_large_err)]
    pub(crate) fn into_dormant(self) -> Result<Dormant<S>, Conn<S>> {
        let shared = &self.read.shared;
        if Arc::strong_count(shared) != 2
            || Arc::weak_count(shared) != 0
            || !shared.is_at_rest()
            || !self.read.is_at_rest()
        {
            return Err(self);
        }
        let Conn { read, write } = self;
        let write = write.into_rest();
        let (shared, read) = match read.into_rest() {
            Ok(parts) => parts,
            Err(read) => {
                let write = WriteHalf::from_rest(read.shared.clone(), write);
                return Err(Conn { read, write });
            }
        };
        // The halves held the only two references: this is the last one.
        let shared = match Arc::try_unwrap(shared) {
            Ok(shared) => shared,
            Err(shared) => return Err(Dormant::rebuild(shared, read, write, BytesMut::new())),
        };
        match shared.into_rest() {
            Ok((io, subprotocol)) => Ok(Dormant::new(io, subprotocol, read, write)),
            Err(shared) => Err(Dormant::rebuild(
                Arc::new(shared),
                read,
                write,
                BytesMut::new(),
            )),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Dormant<S> {
    fn rebuild(
        shared: Arc<Shared<S>>,
        read: ReadRest,
        write: WriteRest,
        leftover: BytesMut,
    ) -> Conn<S> {
        Conn {
            read: ReadHalf::from_rest(shared.clone(), read, leftover),
            write: WriteHalf::from_rest(shared, write),
        }
    }

    /// The connection again: `leftover` (what arrived while it slept) is decoded
    /// first, and `unsent` (the rest of a ping the keeper could not write whole)
    /// goes out before anything else.
    pub(crate) fn wake(mut self, leftover: BytesMut, unsent: Option<Bytes>) -> Conn<S> {
        if !leftover.is_empty() {
            // Read here, not by the reader: keepalive must count them all the same.
            if let Some(nap) = self.nap.as_mut() {
                nap.heard();
            }
        }
        let role = self.config.role;
        let (io, subprotocol, read, write) = self.into_parts();
        let shared = Arc::new(Shared::with_subprotocol(io, role, subprotocol));
        if let Some(unsent) = unsent {
            shared.lock().queue.push_encoded(&unsent, false);
        }
        Dormant::rebuild(shared, read, write, leftover)
    }

    /// Reads what arrived, registering `cx` for readiness if nothing did. An empty
    /// buffer is the end of the stream; either that or an error wakes the connection,
    /// whose first read then finds the same.
    pub(crate) fn poll_arrival(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<BytesMut>> {
        let mut space = [MaybeUninit::<u8>::uninit(); ARRIVAL_READ];
        let mut buf = ReadBuf::uninit(&mut space);
        match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(BytesMut::from(buf.filled()))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Takes what arrived while the connection slept if it is keepalive traffic and
    /// nothing else: whole pings (answered here, as the default handler does) and
    /// pongs (noted by keepalive). Anything else — data, a close, a frame not yet
    /// whole, a handler of the application's to run — is left to the connection.
    pub(crate) fn absorb(
        &mut self,
        arrived: &BytesMut,
        now: Instant,
        cx: &mut Context<'_>,
    ) -> Absorbed {
        let handlers = self.extra.as_ref().and_then(|e| e.read.as_ref());
        if handlers.is_some_and(|r| r.has_control_handler()) {
            return Absorbed::No;
        }
        // Decoded from a copy: if it is not all pings and pongs, the connection
        // decodes the bytes itself.
        let mut probe = arrived.clone();
        let mut decoder = Decoder::new(self.config);
        let mut pings = Vec::new();
        let mut pongs = Vec::new();
        while !probe.is_empty() {
            match decoder.decode(&mut probe) {
                Ok(Some(Incoming::Ping(data))) => pings.push(data),
                Ok(Some(Incoming::Pong(data))) => pongs.push(data),
                _ => return Absorbed::No,
            }
        }
        if let Some(nap) = self.nap.as_mut() {
            nap.heard();
            for data in &pongs {
                nap.pong(data, now);
            }
        }
        let mask = || (self.config.role == Role::Client).then(rand::random::<[u8; 4]>);
        let mut replies = BytesMut::new();
        for data in &pings {
            encode_frame(&mut replies, OpCode::Pong, true, false, mask(), data);
        }
        match self.write_all(replies.freeze(), cx) {
            None => Absorbed::Yes,
            Some(unsent) => Absorbed::Partly(unsent),
        }
    }

    /// Writes `frame` to the transport now; what did not fit (or `Some` of the
    /// frame, if the transport could not flush it) is for the woken connection.
    fn write_all(&mut self, mut frame: Bytes, cx: &mut Context<'_>) -> Option<Bytes> {
        while !frame.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &frame) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    let _ = frame.split_to(n);
                }
                // Full (or failed: the connection finds out when it writes).
                _ => return Some(frame),
            }
        }
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(Ok(())) => None,
            // A transport that buffers (TLS) and cannot flush now: the connection's
            // writer finishes it.
            _ => Some(Bytes::new()),
        }
    }

    /// When [`tend`](Self::tend) has something to do: the read deadline or the
    /// keepalive schedule's next step.
    pub(crate) fn due(&self) -> Option<Instant> {
        let deadline = self.read_deadline().map(Instant::from_std);
        let beat = self.nap.as_ref().map(|h| h.due());
        match (deadline, beat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Does what is due at `now`: a keepalive ping is written straight to the
    /// transport (the rest of one that did not fit goes out first when the
    /// connection is woken for it); a passed deadline or an unanswered ping wakes the
    /// connection, whose first read reports it as usual.
    pub(crate) fn tend(&mut self, now: Instant, cx: &mut Context<'_>) -> Tend {
        if self
            .read_deadline()
            .is_some_and(|d| Instant::from_std(d) <= now)
        {
            return Tend::Wake(None);
        }
        let role = self.config.role;
        let Some(heartbeat) = self.nap.as_mut() else {
            return Tend::Sleep(self.due());
        };
        // Not yet due is `Step::Wait`: the schedule decides, as in the reader.
        match heartbeat.step(now) {
            Step::Wait(_) => Tend::Sleep(self.due()),
            Step::Dead => Tend::Wake(None),
            Step::Ping(payload, _) => {
                let mut frame = BytesMut::new();
                let mask = (role == Role::Client).then(rand::random::<[u8; 4]>);
                encode_frame(&mut frame, OpCode::Ping, true, false, mask, &payload);
                match self.write_all(frame.freeze(), cx) {
                    None => Tend::Sleep(self.due()),
                    Some(unsent) => Tend::Wake(Some(unsent)),
                }
            }
        }
    }
}
