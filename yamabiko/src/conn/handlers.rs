//! Control-frame handlers: what happens when a close, ping or pong arrives.
//!
//! As in gorilla/websocket, handlers run only inside read calls (`read_message`,
//! `next_reader` and the message reader's reads): a connection nobody reads from
//! answers no pings. Keep a reader running.

use crate::error::Result;
use crate::message::Control;
use crate::proto::{CloseFrame, OpCode};
use bytes::Bytes;
use std::time::Instant;

/// What a handler may do: queue control frames to send, and move the read deadline
/// (the classic keep-alive: push the deadline out whenever a pong arrives).
pub struct HandlerContext<'a> {
    pub(crate) replies: &'a mut Vec<Control>,
    pub(crate) read_deadline: &'a mut Option<Instant>,
}

impl std::fmt::Debug for HandlerContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerContext")
            .field("replies", &self.replies)
            .field("read_deadline", &self.read_deadline)
            .finish()
    }
}

impl HandlerContext<'_> {
    /// Queues a control frame; it is written before the read call returns data.
    pub fn send(&mut self, control: Control) {
        self.replies.push(control);
    }

    /// Sets the read deadline, as [`Conn::set_read_deadline`](crate::Conn::set_read_deadline)
    /// (a `std` or tokio instant, or `None`).
    pub fn set_read_deadline(&mut self, deadline: impl crate::IntoDeadline) {
        *self.read_deadline = deadline.into_deadline();
    }

    /// The current read deadline.
    pub fn read_deadline(&self) -> Option<Instant> {
        *self.read_deadline
    }
}

/// Runs when a close frame arrives; `None` when it carried no status code.
/// Default: reply with a close frame carrying the same code (empty if none).
/// Afterwards the read call returns [`Error::Closed`](crate::Error::Closed).
pub type CloseHandler =
    Box<dyn FnMut(&mut HandlerContext<'_>, Option<&CloseFrame>) -> Result<()> + Send>;
/// Runs when a ping arrives. Default: reply with a pong carrying the same data.
pub type PingHandler = Box<dyn FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send>;
/// Runs when a pong arrives. Default: nothing.
pub type PongHandler = Box<dyn FnMut(&mut HandlerContext<'_>, &Bytes) -> Result<()> + Send>;

/// The three handlers; `None` means gorilla's default.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) close: Option<CloseHandler>,
    pub(crate) ping: Option<PingHandler>,
    pub(crate) pong: Option<PongHandler>,
}

impl Handlers {
    pub(crate) fn on_close(
        &mut self,
        ctx: &mut HandlerContext<'_>,
        frame: Option<&CloseFrame>,
    ) -> Result<()> {
        match &mut self.close {
            Some(h) => h(ctx, frame),
            None => {
                // gorilla's default: echo the code, without the reason.
                let reply = frame.map(|f| CloseFrame::new(f.code, ""));
                ctx.send(Control::Close(reply));
                Ok(())
            }
        }
    }

    pub(crate) fn on_ping(&mut self, ctx: &mut HandlerContext<'_>, data: &Bytes) -> Result<()> {
        match &mut self.ping {
            Some(h) => h(ctx, data),
            None => {
                ctx.send(Control::Pong(data.clone()));
                Ok(())
            }
        }
    }

    pub(crate) fn on_pong(&mut self, ctx: &mut HandlerContext<'_>, data: &Bytes) -> Result<()> {
        match &mut self.pong {
            Some(h) => h(ctx, data),
            None => Ok(()),
        }
    }
}

/// The frame a handler's reply goes out as: a close frame the RFC does not allow is
/// sent without a status code, an oversized ping or pong is dropped (`None`). Shared by
/// the async and the blocking drivers.
pub(crate) fn reply_frame(reply: &Control) -> Option<(OpCode, Bytes)> {
    match reply.frame() {
        Ok(frame) => Some(frame),
        Err(_) if matches!(reply, Control::Close(_)) => Some((OpCode::Close, Bytes::new())),
        Err(_) => None,
    }
}
