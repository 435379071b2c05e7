//! One chat connection: a read pump that hands the client's messages to the hub, and a
//! write pump that sends the room's messages and the pings (gorilla's `Client` with its
//! `readPump` and `writePump`).
//!
//! Liveness is gorilla's: the writer pings every `ping_period`; the reader's deadline is
//! `pong_wait` ahead and every pong pushes it further, so a peer that vanished is
//! noticed within `pong_wait`. Every write has `write_wait` to complete, so a peer that
//! stopped reading is dropped at its write deadline. Whichever pump ends first ends
//! the other: the writer closes the connection (which wakes the reader), the reader
//! leaves the hub (which closes the writer's outbox).

use crate::hub::{Ending, Hub, Outbox};
use crate::Settings;
use std::time::Instant;
use tokio::net::TcpStream;
use yamabiko::{is_unexpected_close_error, CloseCode, Conn, Control, Error, ReadHalf, WriteHalf};

/// Runs one client until its connection ends; returns why it ended.
pub async fn run(conn: Conn<TcpStream>, hub: Hub, settings: Settings) -> Ending {
    let Some((id, outbox)) = hub.join().await else {
        return Ending::Closed; // the hub is gone: the server is stopping
    };
    let (read, write) = conn.split();
    let writer = tokio::spawn(write_pump(write, outbox, settings.clone()));
    let ending = match read_pump(read, &hub, &settings).await {
        Some(ending) => {
            // Leaving closes the outbox, which ends the writer.
            hub.leave(id, ending).await;
            let _ = writer.await;
            ending
        }
        None => {
            // The writer ended first and closed the connection: it knows why.
            let ending = writer.await.unwrap_or(Ending::Closed);
            hub.leave(id, ending).await;
            ending
        }
    };
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
            Ok(message) => hub.broadcast(message).await,
            Err(Error::AlreadyClosed) => return None,
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

/// Sends what the hub puts in the outbox, and a ping every `ping_period`. Messages
/// that queued up meanwhile go out together, in one system call.
async fn write_pump(
    mut write: WriteHalf<TcpStream>,
    mut outbox: Outbox,
    settings: Settings,
) -> Ending {
    let start = tokio::time::Instant::now() + settings.ping_period;
    let mut ping = tokio::time::interval_at(start, settings.ping_period);
    let ending = loop {
        tokio::select! {
            next = outbox.recv() => {
                let deadline = Instant::now() + settings.write_wait;
                let Some(first) = next else {
                    // The hub closed the outbox: the client is too slow, or it left.
                    let bye = Control::close(CloseCode::NORMAL, "");
                    let _ = write.write_control(bye, deadline).await;
                    break Ending::Dropped;
                };
                write.set_write_deadline(deadline);
                let mut queued = write.queue_prepared(&first);
                // At most an outbox's worth per flush: what waits in memory stays bounded.
                for _ in 1..settings.queue_len {
                    let Ok(()) = queued else { break };
                    let Ok(more) = outbox.try_recv() else { break };
                    queued = write.queue_prepared(&more);
                }
                match queued.and(write.flush().await) {
                    Ok(()) => {}
                    Err(Error::Timeout) => break Ending::WriteTimeout,
                    Err(_) => break Ending::Closed,
                }
            }
            _ = ping.tick() => {
                let deadline = Instant::now() + settings.write_wait;
                match write.write_control(Control::ping(""), deadline).await {
                    Ok(()) => {}
                    Err(Error::Timeout) => break Ending::WriteTimeout,
                    Err(_) => break Ending::Closed,
                }
            }
        }
    };
    // gorilla's writePump ends with conn.Close(): it wakes the read pump.
    write.close();
    ending
}
