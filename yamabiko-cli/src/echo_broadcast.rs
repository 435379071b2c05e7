//! `yamabiko echo --broadcast`: every text or binary message from any connection goes,
//! unchanged, to every open connection (the sender too), through a [`yamabiko::Hub`].
//!
//! Each connection's task subscribes it to the hub's one topic and reads; what it
//! reads it publishes, and the same read loop is what writes the other connections'
//! messages to it (see the hub's documentation). A connection that falls behind by
//! `--max-queued` bytes is handled by `--on-slow`.

use crate::echo::log_end;
use clap::ValueEnum;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use yamabiko::hub::{Backpressure, Overflow};
use yamabiko::{CloseCode, Conn, Control, Error, Hub};

/// What `--on-slow` does with a message that would take a connection over its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnSlow {
    /// Skip the message for that connection (counted as dropped).
    Drop,
    /// Keep only the newest message waiting (latest wins).
    Latest,
    /// Close the connection with --slow-close-code, after --slow-grace at most.
    Close,
}

/// The hub every connection of a broadcast server shares, and their subscriptions'
/// backpressure.
pub struct Broadcast {
    /// The one topic is `()`.
    pub hub: Hub<()>,
    /// Every subscription's bound and policy.
    pub backpressure: Backpressure,
}

impl Broadcast {
    /// A hub, with each subscriber's queue bounded at `max_queued` bytes under `on_slow`.
    pub fn new(max_queued: usize, on_slow: OnSlow, close_code: u16, grace: Duration) -> Self {
        let overflow = match on_slow {
            OnSlow::Drop => Overflow::DropNewest,
            OnSlow::Latest => Overflow::LatestWins,
            OnSlow::Close => Overflow::Close {
                code: CloseCode(close_code),
                reason: "too slow",
                grace,
            },
        };
        Broadcast {
            hub: Hub::new(),
            backpressure: Backpressure {
                max_queued,
                overflow,
            },
        }
    }
}

/// Parses `--slow-close-code`: a code a server may send.
pub fn parse_close_code(text: &str) -> Result<u16, String> {
    let code: u16 = text
        .parse()
        .map_err(|_| format!("not a close code: {text}"))?;
    if CloseCode(code).is_valid_on_wire() {
        Ok(code)
    } else {
        Err(format!(
            "{code} may not be sent in a close frame (try 1008 or 1013)"
        ))
    }
}

/// Broadcasts what `conn` sends until it ends (`None`), or it is idle for `idle`
/// (unless zero) or `shutdown` fires: then the reason to close it with 1001.
pub async fn broadcast_loop<S>(
    conn: &mut Conn<S>,
    broadcast: &Broadcast,
    peer: SocketAddr,
    idle: Duration,
    shutdown: &CancellationToken,
) -> Option<&'static str>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = move || (!idle.is_zero()).then(|| Instant::now() + idle);
    if !idle.is_zero() {
        conn.set_ping_handler(move |ctx, data| {
            ctx.send(Control::Pong(data.clone()));
            ctx.set_read_deadline(deadline());
            Ok(())
        });
    }
    let subscription = broadcast
        .hub
        .subscribe((), conn, broadcast.backpressure.clone());
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let reason = loop {
        if !idle.is_zero() {
            conn.set_read_deadline(deadline());
        }
        tokio::select! {
            biased;
            r = conn.read_message() => match r {
                Ok(msg) => {
                    broadcast.hub.publish(&(), msg);
                }
                Err(Error::Timeout) => break "idle timeout",
                Err(Error::TooSlow(frame)) => {
                    tracing::debug!(%peer, code = frame.code.0, "closed as too slow");
                    return None;
                }
                Err(e) => {
                    log_end(peer, &e);
                    return None;
                }
            },
            _ = &mut cancelled => break "server shutting down",
        }
    };
    drop(subscription);
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes() {
        assert_eq!(parse_close_code("1008"), Ok(1008));
        assert_eq!(parse_close_code("1013"), Ok(1013));
        assert!(parse_close_code("1006").is_err());
        assert!(parse_close_code("x").is_err());
    }
}
