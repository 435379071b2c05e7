//! Watching for the server's first SETTINGS frame on a client connection.
//!
//! A client may send an extended CONNECT only once the server's SETTINGS enabled it
//! (RFC 8441 §3), and the h2 crate's handshake returns before those SETTINGS arrive.
//! [`WatchSettings`] wraps the transport and reads along the first frame the server
//! sends — which must be SETTINGS (RFC 9113 §3.4) — so the dialer knows when it has
//! arrived and whether it carries `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`. After that
//! frame it only passes bytes through.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// RFC 9113 §6.5: the SETTINGS frame type.
const SETTINGS: u8 = 0x4;
/// RFC 9113 §6.5: the ACK flag.
const ACK: u8 = 0x1;
/// RFC 8441 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL.
const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
/// RFC 9113 §4.1: the frame header.
const FRAME_HEADER: usize = 9;

const WAITING: u8 = 0;
const DISABLED: u8 = 1;
const ENABLED: u8 = 2;

/// What the server's first SETTINGS frame said, shared with the dialer.
#[derive(Debug, Default)]
pub(crate) struct FirstSettings(AtomicU8);

impl FirstSettings {
    /// `None` while the frame has not been read whole; then whether it enabled
    /// extended CONNECT.
    pub(crate) fn extended_connect(&self) -> Option<bool> {
        match self.0.load(Ordering::Acquire) {
            WAITING => None,
            state => Some(state == ENABLED),
        }
    }

    fn set(&self, enabled: bool) {
        self.0
            .store(if enabled { ENABLED } else { DISABLED }, Ordering::Release);
    }
}

/// Parses the first frame as it streams by.
#[derive(Debug)]
struct Parser {
    header: [u8; FRAME_HEADER],
    header_len: usize,
    /// Payload bytes still to come.
    remaining: usize,
    entry: [u8; 6],
    entry_len: usize,
    enabled: bool,
    done: bool,
}

impl Parser {
    fn new() -> Self {
        Parser {
            header: [0; FRAME_HEADER],
            header_len: 0,
            remaining: 0,
            entry: [0; 6],
            entry_len: 0,
            enabled: false,
            done: false,
        }
    }

    /// Feeds received bytes; `Some(enabled)` once the first frame is complete.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<bool> {
        while !self.done && !bytes.is_empty() {
            if self.header_len < FRAME_HEADER {
                let n = (FRAME_HEADER - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER {
                    let [l0, l1, l2, kind, flags, ..] = self.header;
                    if kind != SETTINGS || flags & ACK != 0 {
                        // Not the preface h2 expects; h2 reports the error itself.
                        self.done = true;
                        return Some(false);
                    }
                    self.remaining = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                }
            } else {
                let n = self.remaining.min(bytes.len());
                for &b in &bytes[..n] {
                    // RFC 9113 §6.5.1: 16-bit identifier, 32-bit value.
                    self.entry[self.entry_len] = b;
                    self.entry_len += 1;
                    if self.entry_len == self.entry.len() {
                        let id = u16::from_be_bytes([self.entry[0], self.entry[1]]);
                        let value = u32::from_be_bytes([
                            self.entry[2],
                            self.entry[3],
                            self.entry[4],
                            self.entry[5],
                        ]);
                        if id == ENABLE_CONNECT_PROTOCOL {
                            // A later entry for the same setting wins (§6.5.3).
                            self.enabled = value == 1;
                        }
                        self.entry_len = 0;
                    }
                }
                self.remaining -= n;
                bytes = &bytes[n..];
            }
            if self.header_len == FRAME_HEADER && self.remaining == 0 {
                self.done = true;
                return Some(self.enabled);
            }
        }
        None
    }
}

/// A transport that reports the server's first SETTINGS frame to [`FirstSettings`].
#[derive(Debug)]
pub(crate) struct WatchSettings<T> {
    io: T,
    /// Dropped once the frame has been seen.
    parser: Option<Box<Parser>>,
    seen: Arc<FirstSettings>,
}

impl<T> WatchSettings<T> {
    pub(crate) fn new(io: T, seen: Arc<FirstSettings>) -> Self {
        WatchSettings {
            io,
            parser: Some(Box::new(Parser::new())),
            seen,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchSettings<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(parser)) = (&result, this.parser.as_mut()) {
            if let Some(enabled) = parser.feed(&buf.filled()[before..]) {
                this.seen.set(enabled);
                this.parser = None;
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchSettings<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(payload);
        out
    }

    fn setting(id: u16, value: u32) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&value.to_be_bytes());
        out
    }

    #[test]
    fn finds_the_setting_byte_by_byte() {
        let mut payload = setting(0x3, 100);
        payload.extend(setting(ENABLE_CONNECT_PROTOCOL, 1));
        payload.extend(setting(0x4, 65_535));
        let mut bytes = frame(SETTINGS, 0, &payload);
        // What follows the frame is not looked at.
        bytes.extend(frame(0x8, 0, &[0, 0, 0, 1]));
        let mut p = Parser::new();
        let mut result = None;
        for b in &bytes {
            if let Some(r) = p.feed(std::slice::from_ref(b)) {
                assert!(result.is_none());
                result = Some(r);
            }
        }
        assert_eq!(result, Some(true));
    }

    #[test]
    fn absent_zero_or_overridden_setting_is_off() {
        let cases = [
            frame(SETTINGS, 0, &[]),
            frame(SETTINGS, 0, &setting(ENABLE_CONNECT_PROTOCOL, 0)),
            frame(SETTINGS, 0, &{
                let mut p = setting(ENABLE_CONNECT_PROTOCOL, 1);
                p.extend(setting(ENABLE_CONNECT_PROTOCOL, 0));
                p
            }),
            // Not SETTINGS first, or an ACK: a broken preface, never "enabled".
            frame(0x0, 0, &[1, 2, 3]),
            frame(SETTINGS, ACK, &[]),
        ];
        for bytes in cases {
            assert_eq!(Parser::new().feed(&bytes), Some(false), "{bytes:?}");
        }
        // Incomplete: no answer yet.
        let whole = frame(SETTINGS, 0, &setting(ENABLE_CONNECT_PROTOCOL, 1));
        assert_eq!(Parser::new().feed(&whole[..whole.len() - 1]), None);
    }
}
