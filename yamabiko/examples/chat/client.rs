//! One chat connection: a read pump that hands the client's messages to the hub and,
//! woken by the hub, writes the room's messages to this client (gorilla's `Client`
//! with its `readPump`; its `writePump` is not needed here, see below).
//!
//! Liveness is the library's keepalive ([`yamabiko::Keepalive`], set on the upgrader
//! in `main.rs`): the connection pings every `ping_period` from inside the read pump's
//! own reads, and when nothing (no pong, no message) arrives within `pong_wait` of a
//! ping the read fails with [`Error::KeepaliveTimeout`] and the peer gets 1011. That is
//! gorilla's ping ticker, read deadline and pong handler, without writing any of them.
//! A peer that stops reading the room's messages is closed by the hub at its bound
//! (see `hub.rs`).

use crate::hub::{Ending, Hub};
use crate::Settings;
use tokio::net::TcpStream;
use yamabiko::{is_unexpected_close_error, CloseCode, Conn, Error};

/// Runs one client until its connection ends; returns why it ended.
pub async fn run(conn: Conn<TcpStream>, hub: Hub, settings: Settings) -> Ending {
    let (mut read, write) = conn.split();
    // The read pump also writes what the room publishes to this connection.
    let subscription = hub.join(&write);
    read.set_read_limit(settings.max_message_size);
    let ending = loop {
        match read.read_message().await {
            Ok(message) => hub.broadcast(message),
            // The hub closed it for falling too far behind.
            Err(Error::TooSlow(_)) => break Ending::Dropped,
            Err(Error::KeepaliveTimeout) => break Ending::ReadTimeout,
            Err(e) => {
                if is_unexpected_close_error(&e, &[CloseCode::GOING_AWAY, CloseCode::NORMAL]) {
                    eprintln!("chat: read: {e}");
                }
                break Ending::Closed;
            }
        }
    };
    drop(subscription);
    drop(write);
    hub.left(ending);
    ending
}
