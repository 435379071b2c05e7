//! One chat connection: a read pump that hands the client's messages to the hub (and,
//! woken by the hub, writes the room's messages to this client), and a write pump that
//! sends the pings (gorilla's `Client` with its `readPump` and `writePump`).
//!
//! Liveness is gorilla's: the writer pings every `ping_period`; the reader's deadline is
//! `pong_wait` ahead and every pong pushes it further, so a peer that vanished is
//! noticed within `pong_wait`. A ping has `write_wait` to go out; a peer that stops
//! reading the room's messages is closed by the hub at its bound (see `hub.rs`).
//! Whichever pump ends first ends the other: the writer closes the connection (which
//! wakes the reader), the reader stops the writer.

use crate::hub::{Ending, Hub};
use crate::Settings;
use std::time::Instant;
use tokio::net::TcpStream;
use yamabiko::{is_unexpected_close_error, CloseCode, Conn, Control, Error, ReadHalf, WriteHalf};

/// Runs one client until its connection ends; returns why it ended.
pub async fn run(conn: Conn<TcpStream>, hub: Hub, settings: Settings) -> Ending {
    let (read, write) = conn.split();
    // The read pump also writes what the room publishes to this connection.
    let subscription = hub.join(&write);
    let writer = tokio::spawn(write_pump(write, settings.clone()));
    let ending = match read_pump(read, &hub, &settings).await {
        Some(ending) => {
            // Ends the writer, and wakes it if it waits on a stuck ping.
            writer.abort();
            let _ = writer.await;
            ending
        }
        // The writer ended first and closed the connection: it knows why.
        None => writer.await.unwrap_or(Ending::Closed),
    };
    drop(subscription);
    hub.left(ending);
    ending
}

/// Reads the client's messages and broadcasts them. `None` when the writer closed the
/// connection (the writer knows why).
async fn read_pump(
    mut read: ReadHalf<TcpStream>,
    hub: &Hub,
    settings: &Settings,
) -> Option<Ending> {
    read.set_read_limit(settings.max_message_size);
    read.set_read_deadline(Instant::now() + settings.pong_wait);
    let pong_wait = settings.pong_wait;
    read.set_pong_handler(move |ctx, _| {
        ctx.set_read_deadline(Instant::now() + pong_wait);
        Ok(())
    });
    loop {
        match read.read_message().await {
            Ok(message) => hub.broadcast(message),
            Err(Error::AlreadyClosed) => return None,
            // The hub closed it for falling too far behind.
            Err(Error::TooSlow(_)) => return Some(Ending::Dropped),
            Err(Error::Timeout) => return Some(Ending::ReadTimeout),
            Err(e) => {
                if is_unexpected_close_error(&e, &[CloseCode::GOING_AWAY, CloseCode::NORMAL]) {
                    eprintln!("chat: read: {e}");
                }
                return Some(Ending::Closed);
            }
        }
    }
}

/// Sends a ping every `ping_period`, each within `write_wait`. (The room's messages
/// are written by the read pump, which the hub wakes.)
async fn write_pump(write: WriteHalf<TcpStream>, settings: Settings) -> Ending {
    let start = tokio::time::Instant::now() + settings.ping_period;
    let mut ping = tokio::time::interval_at(start, settings.ping_period);
    let ending = loop {
        ping.tick().await;
        let deadline = Instant::now() + settings.write_wait;
        match write.write_control(Control::ping(""), deadline).await {
            Ok(()) => {}
            Err(Error::Timeout) => break Ending::WriteTimeout,
            Err(_) => break Ending::Closed,
        }
    };
    // gorilla's writePump ends with conn.Close(): it wakes the read pump.
    write.close();
    ending
}
