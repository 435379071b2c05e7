//! `Stream` and `Sink` implementations, for `StreamExt`/`SinkExt` users.
//!
//! The stream ends (`None`) after the peer's close frame, the end of the transport or a
//! local `close`; other errors are yielded once and then the stream ends too.

use super::{Conn, ReadHalf, WriteHalf};
use crate::error::{Error, Result};
use crate::message::Message;
use futures_core::Stream;
use futures_sink::Sink;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

fn end_of_stream(r: Result<Message>) -> Option<Result<Message>> {
    match r {
        Err(Error::Closed(_) | Error::AlreadyClosed) => None,
        other => Some(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<S> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_read_message(cx).map(end_of_stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Conn<S> {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().read.poll_read_message(cx).map(end_of_stream)
    }
}

impl<S: AsyncWrite + Unpin> Sink<Message> for WriteHalf<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_sink_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().sink_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_sink_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_sink_close(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for Conn<S> {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().write.poll_sink_ready(cx)
    }
    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.get_mut().write.sink_send(item)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().write.poll_sink_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().write.poll_sink_close(cx)
    }
}
